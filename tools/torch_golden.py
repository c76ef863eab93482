#!/usr/bin/python3
"""Golden vectors from PyTorch for adamx's parity and schedule tests.

    /usr/bin/python3 tools/torch_golden.py [OUTPUT_DIR]      (default: tests/data)

Run by hand, never by CI: it needs Debian's python3-torch (PyTorch 1.13;
`apt-get install python3-torch`, then use /usr/bin/python3, which sees it).
It writes these files, whose layouts tests/data/README.md documents:

  adam_parity.bin   torch.optim.Adam / AdamW parameter trajectories
  schedules.txt     learning rates from torch.optim.lr_scheduler
  schedules_more.txt  the same for the schedulers of schedule_factor.hpp,
                    schedule_cycle.hpp and schedule_compose.hpp
  clip.txt          torch.nn.utils.clip_grad_norm_ / clip_grad_value_ results
  radam_parity.bin  torch.optim.RAdam trajectories (the layout of adam_parity.bin)
  adan_parity.bin   Adan trajectories from AdanTranscription below (the same
                    layout, each group record followed by Adan's β3 and no_prox)
  schedule_free_parity.bin  Schedule-Free AdamW trajectories from
                    ScheduleFreeAdamWTranscription below (the same layout, each
                    group record followed by warmup_steps, r, weight_lr_power)
  muon_parity.bin   Muon trajectories from MuonTranscription below (the same
                    layout with tensors of their own, each group record
                    followed by use_muon, momentum, nesterov, adjust_lr, ns_steps)

Every input is made from a splitmix64 stream with integer arithmetic only, so
the C++ tests regenerate the same gradients bit for bit without Python
(tests/golden/golden_inputs.hpp implements the same functions). The output has
no timestamp and a fixed order: re-running this script reproduces the
committed files byte for byte (check with `git diff --exit-code tests/data`).

PyTorch runs on one thread with ATEN_CPU_CAPABILITY=default, i.e. its baseline
x86-64 kernels without AVX or FMA. The results then do not depend on which
vector instructions the generating machine has.
"""

import os
import sys
import warnings

os.environ["ATEN_CPU_CAPABILITY"] = "default"  # before torch is imported

import math  # noqa: E402
import struct  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

MASK64 = (1 << 64) - 1
STEPS = 300


# ---- inputs (mirrored in tests/golden/golden_inputs.hpp) --------------------

class SplitMix64:
    """Vigna's splitmix64 generator: a 64-bit counter through a fixed mixer."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def int21(self):
        """An integer in [-2^20, 2^20): the top 21 bits, centred."""
        return (self.next() >> 43) - (1 << 20)


# Gradient regimes: each tensor of a run follows one. All values are
# k * 2^e with |k| < 2^21, so they are exact in float32 and float64.
NOISE, DRIFT_DECAY, TINY, BURSTS = 0, 1, 2, 3


def gradient_value(regime, k, element, t):
    if regime == NOISE:  # stationary noise in [-1, 1)
        return math.ldexp(k, -20)
    if regime == DRIFT_DECAY:  # a per-element bias plus noise, halving every 25 steps
        return math.ldexp(k + ((element % 7) - 3) * (1 << 18), -20 - t // 25)
    if regime == TINY:  # about eps in size (so eps's placement matters), zero for 40 steps
        return 0.0 if 100 <= t < 140 else math.ldexp(k, -47)
    if regime == BURSTS:  # small, with a 4096-fold larger gradient every 50th step
        return math.ldexp(k, -12 if t % 50 == 0 else -24)
    raise ValueError(regime)


def initial_values(rng, n):
    """Initial parameters: n values in [-1, 1)."""
    return [math.ldexp(rng.int21(), -20) for _ in range(n)]


def step_gradients(rng, tensors, t):
    """One step's gradients, per tensor, in row-major element order."""
    out = []
    for rows, cols, regime in tensors:
        out.append([gradient_value(regime, rng.int21(), i, t) for i in range(rows * cols)])
    return out


def fnv1a64(data, h=0xCBF29CE484222325):
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    return h


# ---- Adam / AdamW trajectories ----------------------------------------------

# (rows, cols, regime) of the four tensors every run holds.
TENSORS = [(4, 5, NOISE), (6, 1, DRIFT_DECAY), (3, 1, TINY), (1, 3, BURSTS)]

ADAM, ADAMW, RADAM, ADAN, SCHEDULE_FREE, MUON = 0, 1, 2, 3, 4, 5

# Muon's runs hold matrices (Muon's groups take nothing else), tall and wide,
# beside two vectors for its AdamW group.
MUON_TENSORS = [(4, 5, NOISE), (7, 3, DRIFT_DECAY), (6, 6, BURSTS), (5, 1, TINY), (1, 3, NOISE)]


def warmup_cosine(opt):
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=20)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS - 20, eta_min=1e-4)
    return torch.optim.lr_scheduler.SequentialLR(opt, [warm, cosine], milestones=[20])


def step_decay(opt):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=60, gamma=0.5)


def group(tensors, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
          maximize=False, beta3=None, no_prox=False, warmup_steps=0, r=0.0, weight_lr_power=2.0,
          use_muon=False, momentum=0.95, nesterov=True, adjust_lr=0, ns_steps=5):
    return dict(tensors=tensors, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                amsgrad=amsgrad, maximize=maximize, beta3=beta3, no_prox=no_prox,
                warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power,
                use_muon=use_muon, momentum=momentum, nesterov=nesterov, adjust_lr=adjust_lr,
                ns_steps=ns_steps)


class AdanTranscription(torch.optim.Optimizer):
    """Adan (Xie, Zhou, Li, Lin, Yan, TPAMI 2024) as the authors' reference
    code computes it: github.com/sail-sg/Adan, adan.py, class Adan, its
    single-tensor path without gradient clipping (max_grad_norm = 0). Written
    for adamx from a reading of that code, operation by operation in its
    order and with its in-place semantics, not copied from it:

      at a group's step 1 the previous gradient is the gradient (d = 0);
      d = g - g_prev; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*d;
      e = b2*d + g; n = b3*n + (1-b3)*e*e;
      den = sqrt(n)/sqrt(1-b3^t) + eps;
      no_prox: p *= 1 - lr*wd, then the two steps below; otherwise the two
      steps, then p /= 1 + lr*wd:
        p += -(lr/(1-b1^t)) * m/den;  p += -(lr*b2/(1-b2^t)) * v/den.

    The scalar constants are Python floats (double), as in the authors' code.
    """

    def __init__(self, params, lr=1e-3, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.0,
                 no_prox=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      no_prox=no_prox))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2, beta3 = group["betas"]
            group["step"] = group.get("step", 0) + 1
            t = group["step"]
            bias_correction1 = 1.0 - beta1 ** t
            bias_correction2 = 1.0 - beta2 ** t
            bias_correction3_sqrt = math.sqrt(1.0 - beta3 ** t)
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if len(state) == 0:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_diff"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                if "neg_prev_grad" not in state or t == 1:
                    state["neg_prev_grad"] = -g.clone()
                m, v, n = state["exp_avg"], state["exp_avg_diff"], state["exp_avg_sq"]
                d = state["neg_prev_grad"].add_(g)          # g - g_prev
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).add_(d, alpha=1 - beta2)
                e = d.mul_(beta2).add_(g)                   # g + b2*d
                n.mul_(beta3).addcmul_(e, e, value=1 - beta3)
                den = (n.sqrt() / bias_correction3_sqrt).add_(eps)
                if group["no_prox"]:
                    p.mul_(1 - lr * wd)
                    p.addcdiv_(m, den, value=-lr / bias_correction1)
                    p.addcdiv_(v, den, value=-lr * beta2 / bias_correction2)
                else:
                    p.addcdiv_(m, den, value=-lr / bias_correction1)
                    p.addcdiv_(v, den, value=-lr * beta2 / bias_correction2)
                    p.div_(1 + lr * wd)
                state["neg_prev_grad"].zero_().add_(g, alpha=-1.0)


ALL = [0, 1, 2, 3]
# name, optimizer, groups, scheduler (stepped after every optimizer step), seed
RUNS = [
    ("adam_default", ADAM, [group(ALL)], None, 1),
    ("adam_weight_decay", ADAM, [group(ALL, weight_decay=1e-2)], None, 2),
    ("adam_amsgrad", ADAM, [group(ALL, amsgrad=True)], None, 3),
    ("adam_maximize", ADAM, [group(ALL, maximize=True)], None, 4),
    ("adam_warmup_cosine", ADAM, [group(ALL, lr=1e-2)], warmup_cosine, 5),
    ("adamw_default", ADAMW, [group(ALL, weight_decay=5e-2)], None, 6),
    # Two groups with their own options (decay on the weights only), AMSGrad,
    # maximize, non-default betas and eps, and a step-decay schedule.
    ("adamw_groups_amsgrad_maximize_steplr", ADAMW,
     [group([0, 1], lr=2e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=5e-2, amsgrad=True,
            maximize=True),
      group([2, 3], lr=1e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0, amsgrad=True,
            maximize=True)],
     step_decay, 7),
]

# torch.optim.RAdam (1.13 has no amsgrad or maximize; its groups ignore them).
RADAM_RUNS = [
    ("radam_default", RADAM, [group(ALL)], None, 21),
    ("radam_weight_decay_betas", RADAM, [group(ALL, lr=3e-3, betas=(0.8, 0.99), eps=1e-6,
                                               weight_decay=1e-2)], None, 22),
]

class ScheduleFreeAdamWTranscription(torch.optim.Optimizer):
    """Schedule-Free AdamW (Defazio, Yang, Mehta, Mishchenko, Khaled,
    Cutkosky, NeurIPS 2024) as the authors' AdamWScheduleFree computes it
    (github.com/facebookresearch/schedule_free, schedulefree/
    adamw_schedulefree.py, its current version, not the paper-version class),
    the per-tensor path. Written for adamx from a reading of that code,
    operation by operation in its order, not copied from it. Per group and
    step t = k + 1:

      sched = t/warmup_steps while k < warmup_steps, else 1; lr = lr*sched;
      lr_max = max(lr, lr_max) (from -1); weight = t^r * lr_max^weight_lr_power;
      weight_sum += weight; ckp1 = weight/weight_sum (0 if weight_sum is 0);
      per tensor (z = a copy of p at its first step, v = 0):
        v = b2*v + (1-b2)*g*g; denom = sqrt(v/(1-b2^t)) + eps; u = g/denom;
        u += wd*y (y = p before this step); y = lerp(y, z, ckp1);
        y += lr*(b1*(1-ckp1)-1)*u; z -= lr*u.
    """

    def __init__(self, params, lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 warmup_steps=0, r=0.0, weight_lr_power=2.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      warmup_steps=warmup_steps, r=r,
                                      weight_lr_power=weight_lr_power, k=0, lr_max=-1.0,
                                      weight_sum=0.0))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            k = group["k"]
            warmup = group["warmup_steps"]
            sched = (k + 1) / warmup if k < warmup else 1.0
            bias_correction2 = 1 - beta2 ** (k + 1)
            lr = group["lr"] * sched
            lr_max = group["lr_max"] = max(lr, group["lr_max"])
            weight = ((k + 1) ** group["r"]) * (lr_max ** group["weight_lr_power"])
            weight_sum = group["weight_sum"] = group["weight_sum"] + weight
            ckp1 = weight / weight_sum if weight_sum != 0 else 0
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "z" not in state:
                    state["z"] = torch.clone(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                y, z, v = p, state["z"], state["exp_avg_sq"]
                grad = p.grad.clone()
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = v.div(bias_correction2).sqrt_().add_(group["eps"])
                grad.div_(denom)
                if group["weight_decay"] != 0:
                    grad.add_(y, alpha=group["weight_decay"])
                y.lerp_(end=z, weight=ckp1)
                y.add_(grad, alpha=lr * (beta1 * (1 - ckp1) - 1))
                z.sub_(grad, alpha=lr)
            group["k"] = k + 1


class MuonTranscription(torch.optim.Optimizer):
    """Muon (K. Jordan et al. 2024) with its AdamW for the other tensors, as
    the authors' reference code computes it: github.com/KellerJordan/Muon,
    muon.py, SingleDeviceMuonWithAuxAdam with muon_update and
    zeropower_via_newtonschulz5, plus torch.optim.Muon's two options
    (nesterov; adjust_lr_fn "match_rms_adamw", code 1, whose scale multiplies
    lr). Written for adamx from a reading of that code, operation by operation
    in its order and with its in-place semantics, not copied from it:

      Muon groups (use_muon):  B.lerp_(G, 1 - mu);  U = G.lerp(B, mu) (nesterov)
        or B;  X = U (transposed when rows > cols);  X = X/(||X||_F + 1e-7);
        ns_steps times: A = X X^T; Bq = b*A + c*(A @ A); X = a*X + Bq @ X;
        original: X *= sqrt(max(1, rows/cols)), p *= 1 - lr*wd, p += -lr*X;
        match_rms_adamw: p *= 1 - lr*wd, p += -(lr*0.2*sqrt(max(rows, cols)))*X.
      AdamW groups: m.lerp_(g, 1 - b1); v.lerp_(g*g, 1 - b2);
        u = (m/(1 - b1^t))/((v/(1 - b2^t)).sqrt() + eps);
        p *= 1 - lr*wd; p += -lr*u.

    One deviation, so that the comparison measures the algorithm and not a
    precision: the authors cast X to bfloat16 for the Newton-Schulz steps
    (on a GPU); this runs them in the parameter's dtype, as adamx does. The
    products go through PyTorch's BLAS, on Debian the reference BLAS
    (libblas3: plain loops, no vector instructions chosen at run time), so
    the file does not depend on the generating machine.
    """

    def __init__(self, params):
        super().__init__(params, dict())

    @torch.no_grad()
    def step(self):
        a, b, c = 3.4445, -4.7750, 2.0315
        for group in self.param_groups:
            for p in group["params"]:
                grad = p.grad.clone()
                state = self.state[p]
                if group["use_muon"]:
                    if len(state) == 0:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    mu = group["momentum"]
                    buf = state["momentum_buffer"]
                    buf.lerp_(grad, 1 - mu)
                    update = grad.lerp_(buf, mu) if group["nesterov"] else buf
                    rows, cols = update.size(-2), update.size(-1)
                    x = update.mT if rows > cols else update
                    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
                    for _ in range(group["ns_steps"]):
                        big_a = x @ x.mT
                        big_b = b * big_a + c * big_a @ big_a
                        x = a * x + big_b @ x
                    if rows > cols:
                        x = x.mT
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    if group["adjust_lr"] == 0:
                        x = x * max(1, rows / cols) ** 0.5
                        p.add_(x, alpha=-group["lr"])
                    else:
                        p.add_(x, alpha=-(group["lr"] * 0.2 * math.sqrt(max(rows, cols))))
                else:
                    if len(state) == 0:
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                        state["step"] = 0
                    state["step"] += 1
                    beta1, beta2 = group["betas"]
                    state["exp_avg"].lerp_(grad, 1 - beta1)
                    state["exp_avg_sq"].lerp_(grad.square(), 1 - beta2)
                    m_hat = state["exp_avg"] / (1 - beta1 ** state["step"])
                    v_hat = state["exp_avg_sq"] / (1 - beta2 ** state["step"])
                    update = m_hat / (v_hat.sqrt() + group["eps"])
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update, alpha=-group["lr"])


# Adan: the authors' defaults; and decay both ways with other betas, two groups.
ADAN_RUNS = [
    ("adan_default", ADAN, [group(ALL, betas=(0.98, 0.92), beta3=0.99)], None, 31),
    ("adan_decay_groups_prox_no_prox", ADAN,
     [group([0, 1], lr=2e-3, betas=(0.9, 0.8), eps=1e-6, weight_decay=2e-2, beta3=0.999),
      group([2, 3], lr=1e-3, betas=(0.95, 0.9), weight_decay=5e-2, beta3=0.99, no_prox=True)],
     None, 32),
]

# Schedule-Free AdamW: the authors' defaults; warm-up, averaging powers and
# decay with other betas, two groups.
SCHEDULE_FREE_RUNS = [
    ("schedule_free_default", SCHEDULE_FREE,
     [group(ALL, lr=0.0025, betas=(0.9, 0.999), warmup_steps=0, r=0.0, weight_lr_power=2.0)],
     None, 41),
    ("schedule_free_warmup_decay_groups", SCHEDULE_FREE,
     [group([0, 1], lr=1e-2, betas=(0.95, 0.99), eps=1e-6, weight_decay=5e-2, warmup_steps=50,
            r=0.0, weight_lr_power=2.0),
      group([2, 3], lr=5e-3, betas=(0.9, 0.999), weight_decay=0.0, warmup_steps=20, r=1.0,
            weight_lr_power=1.0)],
     None, 42),
]

# Muon: the authors' defaults (Muon for the matrices, its AdamW for the
# vectors); and Muon without Nesterov, match_rms_adamw, decay, a smaller
# momentum (lerp from the other end) and three Newton-Schulz steps on one
# group of matrices, the AdamW group with decay and other betas.
MUON_RUNS = [
    ("muon_default", MUON,
     [group([0, 1, 2], lr=0.02, weight_decay=0.0, use_muon=True, momentum=0.95),
      group([3, 4], lr=3e-4, betas=(0.9, 0.95), eps=1e-10)],
     None, 51),
    ("muon_options_decay", MUON,
     [group([0, 2], lr=0.01, weight_decay=0.1, use_muon=True, momentum=0.95, nesterov=False,
            adjust_lr=1),
      group([1], lr=0.03, weight_decay=0.0, use_muon=True, momentum=0.3, ns_steps=3),
      group([3, 4], lr=1e-3, betas=(0.8, 0.99), eps=1e-8, weight_decay=0.05)],
     None, 52),
]

DTYPES = [(np.float32, 4), (np.float64, 8)]


def pack_str(text):
    data = text.encode("ascii")
    return struct.pack("<H", len(data)) + data


def adam_run(name, kind, groups, make_scheduler, seed, np_dtype, width):
    tensors = MUON_TENSORS if kind == MUON else TENSORS
    rng = SplitMix64(seed)
    sizes = [rows * cols for rows, cols, _ in tensors]
    theta0 = initial_values(rng, sum(sizes))
    params, offset = [], 0
    for (rows, cols, _), n in zip(tensors, sizes):
        values = np.array(theta0[offset:offset + n], dtype=np_dtype).reshape(rows, cols)
        params.append(torch.nn.Parameter(torch.from_numpy(values.copy())))
        offset += n
    inputs_hash = fnv1a64(np.array(theta0, dtype=np_dtype).tobytes())

    torch_groups = []
    for g in groups:
        torch_groups.append(dict(params=[params[i] for i in g["tensors"]], lr=g["lr"],
                                 betas=g["betas"], eps=g["eps"],
                                 weight_decay=g["weight_decay"], amsgrad=g["amsgrad"],
                                 maximize=g["maximize"]))
    if kind == RADAM:
        for g in torch_groups:
            del g["amsgrad"], g["maximize"]
        opt = torch.optim.RAdam(torch_groups, foreach=False)
    elif kind == ADAN:
        for g, spec in zip(torch_groups, groups):
            del g["amsgrad"], g["maximize"]
            g["betas"] = (spec["betas"][0], spec["betas"][1], spec["beta3"])
            g["no_prox"] = spec["no_prox"]
        opt = AdanTranscription(torch_groups)
    elif kind == SCHEDULE_FREE:
        for g, spec in zip(torch_groups, groups):
            del g["amsgrad"], g["maximize"]
            g["warmup_steps"] = spec["warmup_steps"]
            g["r"] = spec["r"]
            g["weight_lr_power"] = spec["weight_lr_power"]
        opt = ScheduleFreeAdamWTranscription(torch_groups)
    elif kind == MUON:
        for g, spec in zip(torch_groups, groups):
            del g["amsgrad"], g["maximize"]
            for key in ("use_muon", "momentum", "nesterov", "adjust_lr", "ns_steps"):
                g[key] = spec[key]
        opt = MuonTranscription(torch_groups)
    else:
        cls = torch.optim.Adam if kind == ADAM else torch.optim.AdamW
        opt = cls(torch_groups, foreach=False)
    scheduler = make_scheduler(opt) if make_scheduler else None

    lrs, trajectory = [], []
    for t in range(1, STEPS + 1):
        grads = step_gradients(rng, tensors, t)
        flat = [x for tensor in grads for x in tensor]
        inputs_hash = fnv1a64(np.array(flat, dtype=np_dtype).tobytes(), inputs_hash)
        for p, g, (rows, cols, _) in zip(params, grads, tensors):
            p.grad = torch.from_numpy(np.array(g, dtype=np_dtype).reshape(rows, cols))
        lrs.append([pg["lr"] for pg in opt.param_groups])
        opt.step()
        if scheduler is not None:
            scheduler.step()
        trajectory.append(b"".join(p.detach().numpy().astype(np_dtype).tobytes() for p in params))

    out = bytearray()
    out += pack_str(name)
    out += struct.pack("<BBQI", kind, width, seed, STEPS)
    out += struct.pack("<I", len(tensors))
    for rows, cols, regime in tensors:
        out += struct.pack("<IIB", rows, cols, regime)
    out += struct.pack("<I", len(groups))
    for g in groups:
        out += struct.pack("<I", len(g["tensors"]))
        out += struct.pack("<%dI" % len(g["tensors"]), *g["tensors"])
        out += struct.pack("<ddddBB", g["betas"][0], g["betas"][1], g["eps"], g["weight_decay"],
                           g["amsgrad"], g["maximize"])
        if kind == ADAN:
            out += struct.pack("<dB", g["beta3"], g["no_prox"])
        if kind == SCHEDULE_FREE:
            out += struct.pack("<ddd", g["warmup_steps"], g["r"], g["weight_lr_power"])
        if kind == MUON:
            out += struct.pack("<BdBBd", g["use_muon"], g["momentum"], g["nesterov"], g["adjust_lr"],
                               g["ns_steps"])
    out += struct.pack("<Q", inputs_hash)
    for step_lrs in lrs:
        out += struct.pack("<%dd" % len(step_lrs), *step_lrs)
    for theta in trajectory:
        out += theta
    return bytes(out)


def write_adam_parity(path, runs):
    out = bytearray(b"ADXPAR01")
    out += pack_str("torch " + torch.__version__ + " cpu_capability=default threads=1 foreach=False")
    out += struct.pack("<I", len(runs) * len(DTYPES))
    for np_dtype, width in DTYPES:
        for name, kind, groups, make_scheduler, seed in runs:
            out += adam_run(name, kind, groups, make_scheduler, seed, np_dtype, width)
    with open(path, "wb") as f:
        f.write(out)


# ---- schedules ----------------------------------------------------------------

def lr_sequence(make, epochs, base_lr):
    """lr for epochs 0..epochs-1 (epoch 0: right after construction)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = make(opt)
    lrs = []
    for epoch in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        if epoch + 1 < epochs:  # no step past the last record (OneCycleLR would raise)
            opt.step()
            scheduler.step()
    return lrs


def sched(name):
    return getattr(torch.optim.lr_scheduler, name)


def warmup(start_factor, epochs, then):
    def make(opt):
        first = sched("LinearLR")(opt, start_factor=start_factor, total_iters=epochs)
        return sched("SequentialLR")(opt, [first, then(opt)], milestones=[epochs])
    return make


# name, the adamx construction it is compared with (for the reader), base lr, epochs, factory
SCHEDULES = [
    ("step", "StepLR(0.1, step_size=7, gamma=0.5)", 0.1, 60,
     lambda o: sched("StepLR")(o, step_size=7, gamma=0.5)),
    ("step_default_gamma", "StepLR(0.3, step_size=3)", 0.3, 20,
     lambda o: sched("StepLR")(o, step_size=3)),
    ("exponential", "ExponentialLR(0.1, gamma=0.95)", 0.1, 120,
     lambda o: sched("ExponentialLR")(o, gamma=0.95)),
    ("cosine", "CosineAnnealingLR(0.1, T_max=30, eta_min=0.001)", 0.1, 130,
     lambda o: sched("CosineAnnealingLR")(o, T_max=30, eta_min=0.001)),
    ("cosine_no_floor", "CosineAnnealingLR(0.05, T_max=17)", 0.05, 60,
     lambda o: sched("CosineAnnealingLR")(o, T_max=17)),
    # SequentialLR(LinearLR, LambdaLR(1)): the warm-up hands over to a constant
    # lr exactly (LinearLR alone reaches it by a recursive product, within ulps).
    ("warmup_constant", "LinearWarmup(FixedLR(0.01), epochs=10, start_factor=0.25)", 0.01, 30,
     warmup(0.25, 10, lambda o: sched("LambdaLR")(o, lambda epoch: 1.0))),
    ("warmup_step", "LinearWarmup(StepLR(0.1, 10, 0.5), epochs=5, start_factor=0.1)", 0.1, 60,
     warmup(0.1, 5, lambda o: sched("StepLR")(o, step_size=10, gamma=0.5))),
    ("warmup_exponential", "LinearWarmup(ExponentialLR(0.1, 0.9), epochs=8, start_factor=0.5)",
     0.1, 50, warmup(0.5, 8, lambda o: sched("ExponentialLR")(o, gamma=0.9))),
    ("warmup_cosine", "LinearWarmup(CosineAnnealingLR(0.01, T_max=280, eta_min=1e-4), epochs=20, "
     "start_factor=0.1)", 0.01, 300,
     warmup(0.1, 20, lambda o: sched("CosineAnnealingLR")(o, T_max=280, eta_min=1e-4))),
]


def chained(*parts):
    return lambda o: sched("ChainedScheduler")([make(o) for make in parts])


def sequential(milestones, *parts):
    return lambda o: sched("SequentialLR")(o, [make(o) for make in parts], milestones=milestones)


def constant(factor, total_iters):
    return lambda o: sched("ConstantLR")(o, factor=factor, total_iters=total_iters)


def linear(start_factor, end_factor, total_iters):
    return lambda o: sched("LinearLR")(o, start_factor=start_factor, end_factor=end_factor,
                                       total_iters=total_iters)


def exponential(gamma):
    return lambda o: sched("ExponentialLR")(o, gamma=gamma)


def multistep(milestones, gamma):
    return lambda o: sched("MultiStepLR")(o, milestones=milestones, gamma=gamma)


def one_cycle(**kwargs):
    return lambda o: sched("OneCycleLR")(o, cycle_momentum=False, **kwargs)


def cyclic(**kwargs):
    return lambda o: sched("CyclicLR")(o, cycle_momentum=False, **kwargs)


# The schedules of schedule_factor.hpp, schedule_cycle.hpp and
# schedule_compose.hpp, written to schedules_more.txt in the same layout.
# LambdaLR's and CyclicLR's callables are spelled out again in
# tests/test_schedule_more.cpp. A OneCycleLR record holds total_steps + 1
# lrs: every step PyTorch allows.
MORE_SCHEDULES = [
    ("multistep", "MultiStepLR(0.1, milestones={5, 12, 12, 30}, gamma=0.5)", 0.1, 60,
     multistep([5, 12, 12, 30], 0.5)),
    ("multistep_unsorted_zero", "MultiStepLR(0.2, milestones={20, 7, 0, 7, 7})", 0.2, 40,
     lambda o: sched("MultiStepLR")(o, milestones=[20, 7, 0, 7, 7])),
    ("constant", "ConstantLR(0.1, factor=0.5, total_iters=4)", 0.1, 20, constant(0.5, 4)),
    ("constant_default", "ConstantLR(0.05)", 0.05, 20, lambda o: sched("ConstantLR")(o)),
    ("linear", "LinearLR(0.1, start_factor=0.25, end_factor=1.0, total_iters=10)", 0.1, 30,
     linear(0.25, 1.0, 10)),
    ("linear_down", "LinearLR(0.1, start_factor=1.0, end_factor=0.05, total_iters=25)", 0.1, 40,
     linear(1.0, 0.05, 25)),
    ("linear_partial", "LinearLR(0.3, start_factor=0.5, end_factor=0.2, total_iters=12)", 0.3, 20,
     linear(0.5, 0.2, 12)),
    ("linear_default", "LinearLR(0.3)", 0.3, 15, lambda o: sched("LinearLR")(o)),
    ("polynomial", "PolynomialLR(0.1, total_iters=20, power=1.0)", 0.1, 30,
     lambda o: sched("PolynomialLR")(o, total_iters=20, power=1.0)),
    ("polynomial_2.5", "PolynomialLR(0.1, total_iters=33, power=2.5)", 0.1, 45,
     lambda o: sched("PolynomialLR")(o, total_iters=33, power=2.5)),
    ("polynomial_sqrt", "PolynomialLR(0.02, total_iters=7, power=0.5)", 0.02, 12,
     lambda o: sched("PolynomialLR")(o, total_iters=7, power=0.5)),
    ("lambda_power", "LambdaLR(0.1, e -> 0.95^e)", 0.1, 60,
     lambda o: sched("LambdaLR")(o, lambda e: 0.95 ** e)),
    ("lambda_inverse", "LambdaLR(0.05, e -> 1 / (1 + 0.1 e))", 0.05, 60,
     lambda o: sched("LambdaLR")(o, lambda e: 1.0 / (1.0 + 0.1 * e))),
    ("lambda_warmup", "LambdaLR(0.3, e -> min(1, (e + 1) / 10))", 0.3, 30,
     lambda o: sched("LambdaLR")(o, lambda e: min(1.0, (e + 1) / 10))),
    ("onecycle_cos", "OneCycleLR(0.1, total_steps=100)", 0.1, 101, one_cycle(max_lr=0.1, total_steps=100)),
    ("onecycle_linear", "OneCycleLR(0.05, total_steps=80, pct_start=0.25, linear, div_factor=10, "
     "final_div_factor=100)", 0.05, 81,
     one_cycle(max_lr=0.05, total_steps=80, pct_start=0.25, anneal_strategy="linear", div_factor=10.0,
               final_div_factor=100.0)),
    ("onecycle_three_phase_cos", "OneCycleLR(0.1, total_steps=90, three_phase)", 0.1, 91,
     one_cycle(max_lr=0.1, total_steps=90, three_phase=True)),
    ("onecycle_three_phase_linear", "OneCycleLR(0.2, total_steps=75, pct_start=0.4, linear, div_factor=5, "
     "final_div_factor=50, three_phase)", 0.2, 76,
     one_cycle(max_lr=0.2, total_steps=75, pct_start=0.4, anneal_strategy="linear", div_factor=5.0,
               final_div_factor=50.0, three_phase=True)),
    ("onecycle_epochs", "OneCycleLR(0.01, total_steps=6*11, pct_start=0.35)", 0.01, 67,
     one_cycle(max_lr=0.01, epochs=6, steps_per_epoch=11, pct_start=0.35)),
    ("onecycle_short", "OneCycleLR(0.1, total_steps=7, pct_start=0.5)", 0.1, 8,
     one_cycle(max_lr=0.1, total_steps=7, pct_start=0.5)),
    ("cyclic_triangular", "CyclicLR(0.001, 0.01, step_size_up=5, step_size_down=8)", 0.1, 60,
     cyclic(base_lr=0.001, max_lr=0.01, step_size_up=5, step_size_down=8)),
    ("cyclic_triangular_symmetric", "CyclicLR(0.01, 0.05, step_size_up=6)", 0.1, 40,
     cyclic(base_lr=0.01, max_lr=0.05, step_size_up=6)),
    ("cyclic_triangular2", "CyclicLR(0.01, 0.1, step_size_up=4, step_size_down=7, triangular2)", 0.1, 80,
     cyclic(base_lr=0.01, max_lr=0.1, step_size_up=4, step_size_down=7, mode="triangular2")),
    ("cyclic_exp_range", "CyclicLR(0.001, 0.1, step_size_up=6, step_size_down=3, exp_range, gamma=0.97)",
     0.1, 70, cyclic(base_lr=0.001, max_lr=0.1, step_size_up=6, step_size_down=3, mode="exp_range",
                     gamma=0.97)),
    ("cyclic_scale_cycle", "CyclicLR(0.002, 0.02, step_size_up=3, step_size_down=5, "
     "scale_fn c -> 1 / (1 + 0.5 (c - 1)), cycle)", 0.1, 50,
     cyclic(base_lr=0.002, max_lr=0.02, step_size_up=3, step_size_down=5,
            scale_fn=lambda c: 1.0 / (1.0 + 0.5 * (c - 1)), scale_mode="cycle")),
    ("cyclic_scale_iterations", "CyclicLR(0.002, 0.02, step_size_up=4, step_size_down=2, "
     "scale_fn n -> 1 / (1 + 0.01 n), iterations)", 0.1, 50,
     cyclic(base_lr=0.002, max_lr=0.02, step_size_up=4, step_size_down=2,
            scale_fn=lambda n: 1.0 / (1.0 + 0.01 * n), scale_mode="iterations")),
    ("chained_constant_exponential", "ChainedScheduler(ConstantLR(0.1, 0.5, 4), ExponentialLR(0.1, 0.9))",
     0.1, 40, chained(constant(0.5, 4), exponential(0.9))),
    ("chained_linear_multistep_exponential",
     "ChainedScheduler(LinearLR(0.2, 0.2, 1.0, 6), MultiStepLR(0.2, {0, 10, 20}, 0.5), ExponentialLR(0.2, 0.98))",
     0.2, 50, chained(linear(0.2, 1.0, 6), multistep([0, 10, 20], 0.5), exponential(0.98))),
    ("chained_step_polynomial", "ChainedScheduler(StepLR(0.1, 5, 0.5), PolynomialLR(0.1, 30, 2.0))", 0.1, 40,
     chained(lambda o: sched("StepLR")(o, step_size=5, gamma=0.5),
             lambda o: sched("PolynomialLR")(o, total_iters=30, power=2.0))),
    ("chained_cosine_constant",
     "ChainedScheduler(CosineAnnealingLR(0.1, 20, 0.001), ConstantLR(0.1, 0.5, 6))", 0.1, 50,
     chained(lambda o: sched("CosineAnnealingLR")(o, T_max=20, eta_min=0.001), constant(0.5, 6))),
    ("sequential_linear_cosine",
     "SequentialLR({10}, LinearLR(0.1, 0.1, 1.0, 10), CosineAnnealingLR(0.1, 50))", 0.1, 80,
     sequential([10], linear(0.1, 1.0, 10), lambda o: sched("CosineAnnealingLR")(o, T_max=50))),
    ("sequential_constant_exponential_multistep",
     "SequentialLR({8, 20}, ConstantLR(0.1, 0.5, 5), ExponentialLR(0.1, 0.9), MultiStepLR(0.1, {5, 10}, 0.3))",
     0.1, 40, sequential([8, 20], constant(0.5, 5), exponential(0.9), multistep([5, 10], 0.3))),
    ("sequential_linear_polynomial_lambda",
     "SequentialLR({5, 25}, LinearLR(0.05, 0.2, 1.0, 5), PolynomialLR(0.05, 30, 2.0), LambdaLR(0.05, e -> 0.95^e))",
     0.05, 45, sequential([5, 25], linear(0.2, 1.0, 5),
                          lambda o: sched("PolynomialLR")(o, total_iters=30, power=2.0),
                          lambda o: sched("LambdaLR")(o, lambda e: 0.95 ** e))),
]


def schedule_lines(title, schedules):
    """The header of a schedules file (title: what follows the module's name) and a record per schedule."""
    lines = ["# Learning rates from torch.optim.lr_scheduler%s, written by tools/torch_golden.py." % title,
             "# torch " + torch.__version__ + "; layout in tests/data/README.md.",
             "# Numbers are Python's repr of a double: the shortest text that reads back exactly."]
    for name, construction, base_lr, epochs, make in schedules:
        lrs = lr_sequence(make, epochs, base_lr)
        lines.append("schedule %s %d %s" % (name, epochs, construction))
        lines.append("lr " + " ".join(repr(x) for x in lrs))
    return lines


def write_lines(path, lines):
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def plateau_metrics(seed, epochs, stair):
    """A loss that falls in stairs, flat for `stair` epochs each, plus noise."""
    rng = SplitMix64(seed)
    values = []
    for e in range(epochs):
        base = 1.0 / (1.0 + (e // stair) * 0.5)
        values.append(base + math.ldexp(rng.int21(), -28))  # noise below 2^-8
    return values


# name, base lr, epochs, metric seed, stair length, keyword arguments of ReduceLROnPlateau
PLATEAUS = [
    ("plateau_min_rel", 0.1, 80, 11, 6, dict(mode="min", factor=0.5, patience=2, threshold=1e-2,
                                          threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8)),
    ("plateau_min_abs_cooldown", 0.1, 80, 12, 6,
     dict(mode="min", factor=0.1, patience=1, threshold=1e-3, threshold_mode="abs", cooldown=3,
          min_lr=1e-4, eps=1e-8)),
    ("plateau_max_rel", 1.0, 80, 13, 6, dict(mode="max", factor=0.7, patience=3, threshold=1e-4,
                                          threshold_mode="rel", cooldown=1, min_lr=0.05,
                                          eps=1e-8)),
    ("plateau_max_abs_eps", 0.02, 80, 14, 6,
     dict(mode="max", factor=0.9, patience=0, threshold=0.0, threshold_mode="abs", cooldown=0,
          min_lr=0.0, eps=1e-3)),
    ("plateau_defaults", 0.1, 80, 15, 20, dict()),
]


def write_schedules(path):
    lines = schedule_lines("", SCHEDULES)
    for name, base_lr, epochs, seed, stair, kwargs in PLATEAUS:
        metrics = plateau_metrics(seed, epochs, stair)
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
        lrs = []
        for metric in metrics:
            opt.step()
            plateau.step(metric)
            lrs.append(opt.param_groups[0]["lr"])  # lr for the next epoch
        args = dict(mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                    cooldown=0, min_lr=0.0, eps=1e-8)
        args.update(kwargs)
        lines.append("plateau %s %d %r %s %r %d %r %s %d %r %r" % (
            name, epochs, base_lr, args["mode"], args["factor"], args["patience"],
            args["threshold"], args["threshold_mode"], args["cooldown"], args["min_lr"],
            args["eps"]))
        lines.append("metric " + " ".join(repr(x) for x in metrics))
        lines.append("lr " + " ".join(repr(x) for x in lrs))
    write_lines(path, lines)


# ---- clipping -----------------------------------------------------------------

CLIP_SIZES = [5, 12, 3]


def write_clip(path):
    lines = ["# torch.nn.utils.clip_grad_norm_ and clip_grad_value_, written by tools/torch_golden.py.",
             "# torch " + torch.__version__ + "; layout in tests/data/README.md."]
    cases = []
    for norm_type in [2.0, math.inf, 1.0, 3.0]:
        for label, max_norm in [("large", 1e3), ("small", 0.5), ("boundary", None)]:
            cases.append(("norm", norm_type, label, max_norm))
    for clip_value in [0.25, 2.0]:
        cases.append(("value", None, "clip", clip_value))
    for dtype_name, torch_dtype, np_dtype in [("f32", torch.float32, np.float32),
                                              ("f64", torch.float64, np.float64)]:
        for index, (kind, norm_type, label, limit) in enumerate(cases):
            rng = SplitMix64(100 + index)
            grads = [np.array([math.ldexp(rng.int21(), -19) for _ in range(n)], dtype=np_dtype)
                     for n in CLIP_SIZES]
            params = []
            for g in grads:
                p = torch.nn.Parameter(torch.zeros(len(g), dtype=torch_dtype))
                p.grad = torch.from_numpy(g.copy())
                params.append(p)
            before = [float(x) for g in grads for x in g]
            if kind == "norm":
                if limit is None:
                    # Just below the norm, within PyTorch's 1e-6: no `norm > max_norm` test
                    # would clip here, but max_norm / (norm + 1e-6) < 1 does.
                    exact = torch.norm(torch.stack([torch.norm(torch.from_numpy(g), norm_type)
                                                    for g in grads]), norm_type)
                    limit = float(exact) - 4e-7
                total = torch.nn.utils.clip_grad_norm_(params, limit, norm_type=norm_type)
                result = float(total)
                name = "norm_%s_%s" % ("inf" if norm_type == math.inf else "%g" % norm_type, label)
                header = "clip_norm %s %s %r %r %r" % (name, dtype_name, norm_type, limit, result)
            else:
                torch.nn.utils.clip_grad_value_(params, limit)
                name = "value_%g" % limit
                header = "clip_value %s %s %r" % (name, dtype_name, limit)
            after = [float(x) for p in params for x in p.grad.numpy()]
            lines.append(header)
            lines.append("sizes " + " ".join(str(n) for n in CLIP_SIZES))
            lines.append("in " + " ".join(repr(x) for x in before))
            lines.append("out " + " ".join(repr(x) for x in after))
    write_lines(path, lines)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    # SequentialLR calls scheduler.step(0), which warns that the epoch argument is deprecated.
    warnings.filterwarnings("ignore", category=UserWarning)
    write_adam_parity(os.path.join(out_dir, "adam_parity.bin"), RUNS)
    write_adam_parity(os.path.join(out_dir, "radam_parity.bin"), RADAM_RUNS)
    write_adam_parity(os.path.join(out_dir, "adan_parity.bin"), ADAN_RUNS)
    write_adam_parity(os.path.join(out_dir, "schedule_free_parity.bin"), SCHEDULE_FREE_RUNS)
    write_adam_parity(os.path.join(out_dir, "muon_parity.bin"), MUON_RUNS)
    write_schedules(os.path.join(out_dir, "schedules.txt"))
    write_lines(os.path.join(out_dir, "schedules_more.txt"),
                schedule_lines(" (MultiStepLR to ChainedScheduler)", MORE_SCHEDULES))
    write_clip(os.path.join(out_dir, "clip.txt"))


if __name__ == "__main__":
    main()
