"""The update rules of adamx in plain PyTorch, for parameters the C++ kernel
cannot step in place: on another device (a GPU) or not contiguous.

Each rule computes the equations of its C++ header (include/adamx/rules/*.hpp,
docs/design.md) with the same per-step constants, computed in double and
rounded once to the arithmetic type, and the same element operations in the
same order, one torch operation each (a separate multiplication and addition
are never fused, as the C++ library is compiled without contraction). What
differs is how sums are ordered: s, a group's squared gradient norm (summed
here in float64 by torch's reduction, in the C++ by fixed blocks), and Muon's
matrix products (torch's BLAS against Eigen's). So results agree with the C++
engine to rounding, not bit for bit; tests/python/test_fallback.py holds them
to it.

    step_group(name, options, params, grads, states, steps, group) -> applied
    check_group(name, options, params, grads) -> bool   (the nonfinite policy alone)
    to_eval(options, params, states, group)    (ScheduleFreeAdamW: y -> x)
    to_train(options, params, states, group)   (ScheduleFreeAdamW: x -> y)

Arithmetic type: the parameter's for float32 and float64 parameters; float32
for bfloat16 and float16 ones, whose state is float32 too, each element
widened exactly when loaded and rounded once when the parameter is stored.
The group's s is summed in float64 from the transformed gradients (after
maximize and L2 decay), over the listed tensors.
"""
import functools
import math

import torch

from adamx._core import NonFiniteGradientError

__all__ = ["DEFAULTS", "SLOTS", "SCALARS", "step_group", "check_group", "to_eval", "to_train", "state_dtype"]

# ---- options, slots and group scalars, as the C++ declares them -------------

_ADAM_FAMILY = {
    "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "beta3": 1.0, "beta_norm": 0.99, "eps": 1e-8,
    "weight_decay": 0.0, "decay_mode": "l2", "amsgrad": False, "maximize": False, "nonfinite": "propagate",
}

#: Every optimizer's default options (rules/*.hpp); tests check them against
#: Engine.default_options(). Options given to step_group override them.
DEFAULTS = {
    "Adam": dict(_ADAM_FAMILY),
    "AdamW": dict(_ADAM_FAMILY, weight_decay=1e-2, decay_mode="decoupled"),
    "AdamX": dict(_ADAM_FAMILY, beta3=0.99),
    "RAdam": dict(_ADAM_FAMILY),
    "AdaBound": dict(_ADAM_FAMILY, final_lr=0.1, bound_speed=1e-3),
    "AdaMod": dict(_ADAM_FAMILY, beta_step=0.999),
    "Lion": {"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0, "maximize": False,
             "nonfinite": "propagate"},
    "Adan": {"lr": 1e-3, "beta1": 0.98, "beta2": 0.92, "beta3": 0.99, "eps": 1e-8, "weight_decay": 0.0,
             "no_prox": False, "maximize": False, "nonfinite": "propagate"},
    "ScheduleFreeAdamW": {"lr": 0.0025, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                          "warmup_steps": 0.0, "r": 0.0, "weight_lr_power": 2.0, "maximize": False,
                          "nonfinite": "propagate"},
    "Muon": {"muon": True, "lr": 0.02, "momentum": 0.95, "nesterov": True, "weight_decay": 0.0,
             "adjust_lr": "original", "ns_steps": 5.0, "beta1": 0.9, "beta2": 0.95, "eps": 1e-10,
             "maximize": False, "nonfinite": "propagate"},
}

#: Every rule's slot names, in the C++ order (Engine.slot_names).
SLOTS = {
    "Adam": ("m", "v", "v_max"), "AdamW": ("m", "v", "v_max"), "AdamX": ("m", "v", "v_max"),
    "RAdam": ("m", "v", "v_max"), "AdaBound": ("m", "v", "v_max"), "AdaMod": ("m", "v", "v_max", "step_avg"),
    "Lion": ("m",), "Adan": ("m", "v", "n", "prev_grad"), "ScheduleFreeAdamW": ("z", "v"),
    "Muon": ("m", "v", "momentum_buffer"),
}

#: Every rule's group scalars with their values before the first step
#: (group_scalars.hpp; Engine.scalar_names).
SCALARS = {name: {"gamma": 1.0, "h": 0.0} for name in ("Adam", "AdamW", "AdamX", "RAdam", "AdaBound", "AdaMod")}
SCALARS.update({"Lion": {}, "Adan": {}, "Muon": {}, "ScheduleFreeAdamW": {"lr_max": -1.0, "weight_sum": 0.0}})


def _options(name, options):
    if name not in DEFAULTS:
        raise ValueError("adamx: no optimizer named '%s' (known: %s)" % (name, ", ".join(DEFAULTS)))
    merged = dict(DEFAULTS[name])
    merged.update(options)
    return merged


def _used_slots(name, o):
    """The slots a group with options `o` keeps (the rule's uses_slot)."""
    if name == "Muon":
        return ("momentum_buffer",) if o["muon"] else ("m", "v")
    if name in ("Lion", "Adan", "ScheduleFreeAdamW"):
        return SLOTS[name]
    used = ("m", "v", "v_max") if o["amsgrad"] else ("m", "v")
    return used + ("step_avg",) if name == "AdaMod" else used


# ---- precision --------------------------------------------------------------

def state_dtype(dtype):
    """The state's and the arithmetic's type for parameters of `dtype`."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def _rounder(dtype):
    """Rounds a Python float (a double) once to `dtype`, returned as the Python
    float of the same value: the C++'s static_cast<Scalar> of a per-step
    constant. torch then uses it exactly."""
    if dtype == torch.float64:
        return float
    if dtype == torch.float32:
        return _round_float32
    return lambda x: torch.tensor(x, dtype=dtype).item()


@functools.lru_cache(maxsize=4096)
def _round_float32(x):
    return torch.tensor(x, dtype=torch.float32).item()


def _pow(x, y):
    """std::pow: C's results where Python's math.pow raises."""
    try:
        return math.pow(x, y)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.inf if x == 0.0 and y < 0.0 else math.nan


def _where_scalar(condition, a, b):
    """torch.where with Python floats allowed on either side."""
    if not isinstance(a, torch.Tensor):
        a = torch.full_like(b, a)
    if not isinstance(b, torch.Tensor):
        b = torch.full_like(a, b)
    return torch.where(condition, a, b)


# ---- the gradient and its squared norm ----------------------------------------

def _widen(tensors, dtype):
    return [x if x.dtype == dtype else x.to(dtype) for x in tensors]


def _rule_gradients(name, o, thetas, grads, l2):
    """The gradients the rule's state sees (the C++'s Rule::gradient): −g when
    maximizing, plus λθ for Adam-family L2 decay. They may be the caller's
    gradients themselves, which are only ever read."""
    g = torch._foreach_neg(grads) if o["maximize"] else list(grads)  # only ever read
    if l2 is not None:  # grad + λ·θ
        g = torch._foreach_add(g, torch._foreach_mul(thetas, l2))
    return g


def _l2_coefficient(name, o, rnd):
    """λ rounded to the arithmetic type when the rule decays through the
    gradient (the Adam family with decay_mode 'l2'), else None."""
    if name in _ADAM_RULES and o["weight_decay"] != 0.0 and o["decay_mode"] == "l2":
        return rnd(o["weight_decay"])
    return None


def _squared_norms(g):
    """Each tensor's Σ g², squared and summed in float64 (a 0-d tensor each)."""
    out = []
    for x in g:
        d = x.to(torch.float64)
        out.append(torch.sum(d * d))
    return out


def _group_norm(parts):
    """s: the tensors' squared norms added in order, in float64."""
    if not parts:
        return 0.0
    return float(torch.stack([x.to(parts[0].device) for x in parts]).sum().item())


def _first_nonfinite(parts):
    running = torch.cumsum(torch.stack([x.to(parts[0].device) for x in parts]), 0)
    bad = (~torch.isfinite(running)).nonzero()
    return int(bad[0].item()) if bad.numel() else len(parts) - 1


# ---- the Adam family: Adam, AdamW, AdamX, RAdam, AdaBound, AdaMod, Muon's AdamW
#
#   Adam:    D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
#   AdamW:   I. Loshchilov, F. Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
#   AMSGrad: S. J. Reddi, S. Kale, S. Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
#   AdamX:   docs/design.md, sections 3 and 4 (γ_{t−1} scales g², D1; γ and h, D2–D5).
#   RAdam:   L. Liu, H. Jiang, P. He, W. Chen, X. Liu, J. Gao, J. Han, "On the Variance of the
#            Adaptive Learning Rate and Beyond", ICLR 2020.
#   AdaBound: L. Luo, Y. Xiong, Y. Liu, X. Sun, "Adaptive Gradient Methods with Dynamic Bound
#            of Learning Rate", ICLR 2019.
#   AdaMod:  J. Ding, X. Ren, R. Luo, X. Sun, "An Adaptive and Momental Bound Method for
#            Stochastic Learning", arXiv:1910.12249, 2019.
#
# rules/adam.hpp: m ← m·β1 + (1−β1)·g; v ← v·β2 + ((1−β2)γ·g)·g; v_max ← max(v_max, v)
# propagating NaN; θ ← θ·(1−αλ) (decoupled) + [−α·sqrt(1−β2^t)/(1−β1^t)]·m / (sqrt(v) +
# ε·sqrt(1−β2^t)), the bracketed constants folded per step in double.

_ADAM_RULES = ("Adam", "AdamW", "AdamX", "RAdam", "AdaBound", "AdaMod")


def _adam_coefficients(name, o, t, gamma, rnd):
    """Coefficients<Scalar>::make (and the baselines' extensions) for step t
    of a tensor, with the group's γ after the previous step."""
    td = float(t)
    bias1 = 1.0 - _pow(o["beta1"], td)
    sqrt_bias2 = math.sqrt(1.0 - _pow(o["beta2"], td))
    c = {
        "neg_step": rnd(-(o["lr"] * sqrt_bias2 / bias1)),
        "eps": rnd(o["eps"] * sqrt_bias2),
        "v_coefficient": rnd((1.0 - o["beta2"]) * gamma),
    }
    if name == "RAdam":
        power = _pow(o["beta2"], td)
        rho_inf = 2.0 / (1.0 - o["beta2"]) - 1.0
        rho_t = rho_inf - 2.0 * td * power / (1.0 - power)
        c["rectified"] = rho_t > 5.0
        if c["rectified"]:
            factor = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
            c["neg_step"] = rnd(-(o["lr"] * factor * sqrt_bias2 / bias1))
        else:
            c["neg_step"] = rnd(-(o["lr"] / bias1))
    elif name in ("AdaBound", "AdaMod"):
        # StepSizeCoefficients: the numerator of η, and ε unscaled (added to
        # sqrt(v) before the bias correction, as the authors' code does).
        c["step_size"] = -c["neg_step"]
        c["eps"] = rnd(o["eps"])
        if name == "AdaBound":
            c["lower"] = rnd(o["final_lr"] * (1.0 - 1.0 / (o["bound_speed"] * td + 1.0)))
            c["upper"] = rnd(o["final_lr"] * (1.0 + 1.0 / (o["bound_speed"] * td)))
    return c


def _adam_family_update(name, o, rnd, thetas, g, states, ts, gamma):
    """The element update of rules/adam.hpp (and radam, adabound, adamod);
    returns the new θ in the arithmetic type. `g` is the transformed gradient."""
    coefficients = {}
    cs = []
    for t in ts:
        if t not in coefficients:
            coefficients[t] = _adam_coefficients(name, o, t, gamma, rnd)
        cs.append(coefficients[t])
    beta1, one_minus_beta1, beta2 = rnd(o["beta1"]), rnd(1.0 - o["beta1"]), rnd(o["beta2"])
    decoupled = o["weight_decay"] != 0.0 and o["decay_mode"] == "decoupled"
    p = torch._foreach_mul(thetas, rnd(1.0 - o["lr"] * o["weight_decay"])) if decoupled else thetas
    m = [s["m"] for s in states]
    v = [s["v"] for s in states]
    torch._foreach_mul_(m, beta1)
    torch._foreach_add_(m, torch._foreach_mul(g, one_minus_beta1))
    torch._foreach_mul_(v, beta2)
    torch._foreach_add_(v, torch._foreach_mul(torch._foreach_mul(g, [c["v_coefficient"] for c in cs]), g))
    second = v
    if o["amsgrad"]:
        second = []
        for s, vv in zip(states, v):
            previous = s["v_max"]
            # max that propagates a NaN v, as torch.maximum does
            previous.copy_(torch.where((previous < vv) | torch.isnan(vv), vv, previous))
            second.append(previous)
    root = torch._foreach_sqrt(second)
    if name in ("Adam", "AdamW", "AdamX", "RAdam"):
        denominator = torch._foreach_add(root, [c["eps"] for c in cs])
        steps = torch._foreach_mul(m, [c["neg_step"] for c in cs])
        out = []
        for pj, step, den, c in zip(p, steps, denominator, cs):
            # RAdam before rectification: θ + (−α/(1−β1^t))·m, no denominator.
            out.append(pj + (step / den if c.get("rectified", True) else step))
        return out
    # AdaBound and AdaMod: θ − bound(η)·m with η = step_size/(sqrt(v) + ε).
    eta = torch._foreach_div([torch.full_like(r, c["step_size"]) for r, c in zip(root, cs)],
                             torch._foreach_add(root, [c["eps"] for c in cs]))
    bounded = []
    if name == "AdaBound":
        for e, c in zip(eta, cs):
            # clipped to [lower, upper]; a NaN fails both tests and stays NaN
            bounded.append(_where_scalar(e < c["lower"], c["lower"], _where_scalar(e > c["upper"], c["upper"], e)))
    else:
        averages = [s["step_avg"] for s in states]
        torch._foreach_mul_(averages, rnd(o["beta_step"]))
        torch._foreach_add_(averages, torch._foreach_mul(eta, rnd(1.0 - o["beta_step"])))
        for e, a in zip(eta, averages):
            # min(η, average) that returns NaN when either is NaN, as torch.min does
            bounded.append(torch.where((a < e) | torch.isnan(a), a, e))
    return torch._foreach_sub(p, torch._foreach_mul(bounded, m))


def _advance_correction(scalars, s, t, o):
    """correction.hpp: γ and h after group step t with squared norm s; a
    non-finite s leaves both (D5)."""
    if not math.isfinite(s):
        return
    beta_norm = o["beta_norm"]
    h = beta_norm * scalars["h"] + (1.0 - beta_norm) * s
    h_hat = h / (1.0 - _pow(beta_norm, float(t)))
    bound = 1.0 / (1.0 - beta_norm)
    r = min(s / h_hat, bound) if h_hat > 0.0 else 1.0
    scalars["gamma"] = min(o["beta3"] * scalars["gamma"] + (1.0 - o["beta3"]) * r, bound)
    scalars["h"] = h


# ---- Lion ---------------------------------------------------------------------
#
#   X. Chen, C. Liang, D. Huang, E. Real, K. Wang, Y. Liu, H. Pham, X. Dong, T. Luong,
#   C.-J. Hsieh, Y. Lu, Q. V. Le, "Symbolic Discovery of Optimization Algorithms",
#   NeurIPS 2023 (arXiv:2302.06675), Algorithm 2 (rules/lion.hpp):
#     c = β1·m + (1 − β1)·g;  θ ← θ·(1 − αλ) − α·sign(c);  m ← β2·m + (1 − β2)·g
# sign(0) = +0 and sign(NaN) = NaN (torch.sign gives 0 for NaN, so it is built here).

def _lion_update(o, rnd, thetas, g, states):
    m = [s["m"] for s in states]
    interpolated = torch._foreach_add(torch._foreach_mul(m, rnd(o["beta1"])),
                                      torch._foreach_mul(g, rnd(1.0 - o["beta1"])))
    torch._foreach_mul_(m, rnd(o["beta2"]))
    torch._foreach_add_(m, torch._foreach_mul(g, rnd(1.0 - o["beta2"])))
    signs = []
    for c in interpolated:
        zero_or_nan = torch.where(torch.isnan(c), c, torch.zeros_like(c))
        signs.append(_where_scalar(c > 0, 1.0, _where_scalar(c < 0, -1.0, zero_or_nan)))
    return torch._foreach_add(torch._foreach_mul(thetas, rnd(1.0 - o["lr"] * o["weight_decay"])),
                              torch._foreach_mul(signs, rnd(-o["lr"])))


# ---- Adan ---------------------------------------------------------------------
#
#   X. Xie, P. Zhou, H. Li, Z. Lin, S. Yan, "Adan: Adaptive Nesterov Momentum Algorithm for
#   Faster Optimizing Deep Models", IEEE TPAMI 2024 (arXiv:2208.06677), Algorithm 1 as the
#   authors' code computes it (rules/adan.hpp):
#     d = g − g_prev (d₁ = 0); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·d;
#     n ← β3·n + (1−β3)·(g + β2·d)²;
#     u = [α·c₃/(1−β1^t)·m + α·β2·c₃/(1−β2^t)·v] / (sqrt(n) + ε·c₃), c₃ = sqrt(1−β3^t);
#     θ ← (θ − u)/(1 + αλ)  (proximal), or θ·(1 − αλ) − u (no_prox).

def _adan_update(o, rnd, thetas, g, states, ts):
    m_steps, v_steps, epss = [], [], []
    for t in ts:
        td = float(t)
        bias1 = 1.0 - _pow(o["beta1"], td)
        bias2 = 1.0 - _pow(o["beta2"], td)
        sqrt_bias3 = math.sqrt(1.0 - _pow(o["beta3"], td))
        m_steps.append(rnd(o["lr"] * sqrt_bias3 / bias1))
        v_steps.append(rnd(o["lr"] * o["beta2"] * sqrt_bias3 / bias2))
        epss.append(rnd(o["eps"] * sqrt_bias3))
    beta2 = rnd(o["beta2"])
    d = []
    for s, gj, t in zip(states, g, ts):
        previous = gj if t == 1 else s["prev_grad"]  # at step 1 the previous gradient is this one
        d.append(gj - previous)
        s["prev_grad"].copy_(gj)
    m = [s["m"] for s in states]
    v = [s["v"] for s in states]
    n = [s["n"] for s in states]
    torch._foreach_mul_(m, rnd(o["beta1"]))
    torch._foreach_add_(m, torch._foreach_mul(g, rnd(1.0 - o["beta1"])))
    torch._foreach_mul_(v, beta2)
    torch._foreach_add_(v, torch._foreach_mul(d, rnd(1.0 - o["beta2"])))
    extrapolated = torch._foreach_add(g, torch._foreach_mul(d, beta2))
    torch._foreach_mul_(n, rnd(o["beta3"]))
    torch._foreach_add_(n, torch._foreach_mul(torch._foreach_mul(extrapolated, rnd(1.0 - o["beta3"])), extrapolated))
    denominator = torch._foreach_add(torch._foreach_sqrt(n), epss)
    step = torch._foreach_div(torch._foreach_add(torch._foreach_mul(m, m_steps), torch._foreach_mul(v, v_steps)),
                              denominator)
    if not (o["weight_decay"] != 0.0 and o["lr"] != 0.0):
        return torch._foreach_sub(thetas, step)
    if o["no_prox"]:
        return torch._foreach_sub(torch._foreach_mul(thetas, rnd(1.0 - o["lr"] * o["weight_decay"])), step)
    return torch._foreach_mul(torch._foreach_sub(thetas, step), rnd(1.0 / (1.0 + o["lr"] * o["weight_decay"])))


# ---- Schedule-Free AdamW ---------------------------------------------------------
#
#   A. Defazio, X. Yang, H. Mehta, K. Mishchenko, A. Khaled, A. Cutkosky, "The Road Less
#   Scheduled", NeurIPS 2024 (arXiv:2405.15682), as the authors' AdamWScheduleFree computes
#   it (rules/schedule_free_adamw.hpp):
#     lr_t = lr·min(1, t/warmup_steps); lr_max = max(lr_max, lr_t); w_t = t^r·lr_max^p;
#     W_t = W_{t−1} + w_t; c_t = w_t/W_t; v ← β2·v + (1−β2)·g²;
#     u = sqrt(1−β2^t)·g/(sqrt(v) + ε·sqrt(1−β2^t)) + λ·y;
#     y ← lerp(y, z, c_t) + lr_t·(β1·(1 − c_t) − 1)·u;  z ← z − lr_t·u (z starts as θ).
# The parameters hold y; x = y + (1 − 1/β1)·(z − y) is the point to evaluate.

def _averaging(o, t, scalars):
    """Step t's lr_t, lr_max, W_t and c_t, in double (the rule's averaging())."""
    td = float(t)
    warmup = o["warmup_steps"]
    lr = o["lr"] * (td / warmup) if warmup > 0.0 and td < warmup else o["lr"]
    lr_max = scalars["lr_max"] if lr < scalars["lr_max"] else lr  # std::max(lr, lr_max)
    w = _pow(td, o["r"]) * _pow(lr_max, o["weight_lr_power"])
    weight_sum = scalars["weight_sum"] + w
    return lr, lr_max, weight_sum, (w / weight_sum if weight_sum != 0.0 else 0.0)


def _schedule_free_update(o, rnd, thetas, g, states, ts, scalars):
    # Each tensor's constants come from its own t with the group's lr_max and
    # W after the previous group step, as the C++ driver's per-tensor
    # Coefficients::make does.
    beta2, one_minus_beta2 = rnd(o["beta2"]), rnd(1.0 - o["beta2"])
    decays = o["weight_decay"] != 0.0
    out = []
    for theta, gj, s, t in zip(thetas, g, states, ts):
        lr, _, _, weight = _averaging(o, t, scalars)
        sqrt_bias2 = math.sqrt(1.0 - _pow(o["beta2"], float(t)))
        z = theta if t == 1 else s["z"]
        v = s["v"]
        v.mul_(beta2).add_((gj * one_minus_beta2) * gj)
        u = (gj * rnd(sqrt_bias2)) / (torch.sqrt(v) + rnd(o["eps"] * sqrt_bias2))
        if decays:
            u = u + theta * rnd(o["weight_decay"])
        towards_z = z - theta
        if weight >= 0.5:  # torch.lerp's form from the nearer end
            interpolated = z - towards_z * rnd(1.0 - weight)
        else:
            interpolated = theta + towards_z * rnd(weight)
        new_z = z + u * rnd(-lr)
        out.append(interpolated + u * rnd(lr * (o["beta1"] * (1.0 - weight) - 1.0)))
        s["z"].copy_(new_z)
    return out


def _eval_weights(o, rnd):
    w = 1.0 - 1.0 / o["beta1"]
    return rnd(w), rnd(1.0 - w), w >= 0.5


def to_eval(options, params, states, group):
    """Moves a ScheduleFreeAdamW group's parameters from y (training) to
    x = y + (1 − 1/β1)·(z − y), as Optimizer::eval() does, keeping a copy of
    y in group["eval_y"] for to_train(). Does nothing if the group is already
    in eval mode. `params`: every parameter of the group, in order; `states`:
    theirs (a parameter that has not stepped, without "z", keeps its value)."""
    if "eval_y" in group:
        return
    o = _options("ScheduleFreeAdamW", options)
    kept = [p.detach().clone() for p in params]
    if group.get("t", 0) > 0:  # before the group's first step z does not exist: x = y
        for p, s in zip(params, states):
            z = s.get("z")
            # A parameter that has not stepped (no z yet) holds its starting
            # point, which is also its point to evaluate: it does not move.
            # The C++ engine behind adamx.torch does the same (it moves a
            # copy of such a parameter, since the library's eval() moves every
            # tensor of a group that has stepped).
            if z is None:
                continue
            S = state_dtype(p.dtype)
            weight, one_minus_weight, near_end_z = _eval_weights(o, _rounder(S))
            y = p.detach().to(S)
            towards_z = z - y
            x = z - towards_z * one_minus_weight if near_end_z else y + towards_z * weight
            with torch.no_grad():
                p.copy_(x)
    group["eval_y"] = kept


def to_train(options, params, states, group):
    """Puts back, bit for bit, the y that to_eval() kept (Optimizer::train()).
    Does nothing if the group is not in eval mode."""
    kept = group.pop("eval_y", None)
    if kept is None:
        return
    with torch.no_grad():
        for p, y in zip(params, kept):
            p.copy_(y)


# ---- Muon -----------------------------------------------------------------------
#
#   K. Jordan, Y. Jin, V. Boza, J. You, F. Cesista, L. Newhouse, J. Bernstein, "Muon: An
#   optimizer for hidden layers in neural networks", 2024 (kellerjordan.github.io/posts/muon)
#   (rules/muon.hpp, newton_schulz.hpp): for a matrix W (rows × cols) with gradient G,
#     B ← lerp(B, G, 1 − μ); U = lerp(G, B, μ) (nesterov) or B;
#     X = U/(‖U‖_F + 1e-7) (Uᵀ when rows > cols), five times A = X·Xᵀ, X ← a·X + (b·A + c·A·A)·X;
#     W ← W·(1 − lr·λ) − lr·s·X, s = sqrt(max(1, rows/cols)) or 0.2·sqrt(max(rows, cols)).
# A parameter of two or more dimensions is the row-major matrix size(0) × (numel/size(0)),
# as the libtorch adapter sees it. A group with muon = False is AdamW (the Adam family above).

_NS = (3.4445, -4.7750, 2.0315)


def _muon_matrix(p):
    if p.dim() < 2 or p.size(0) < 2 or p.numel() // p.size(0) < 2:
        raise ValueError("adamx.Muon: step: a parameter of shape %s is not a matrix of at least 2x2; a group with "
                         "muon = True steps matrices; put vectors such as biases in a group with muon = False"
                         % (tuple(p.shape),))
    return p.size(0), p.numel() // p.size(0)


def _lerp(a, b, w, rnd):
    """torch.lerp(a, b, w) for w in [0, 1], from the nearer end (rules/muon.hpp)."""
    if w < 0.5:
        return a + (b - a) * w
    return b - (b - a) * rnd(1.0 - w)


def _muon_update(o, rnd, thetas, g, states):
    momentum, one_minus_momentum = rnd(o["momentum"]), rnd(1.0 - o["momentum"])
    decay = rnd(1.0 - o["lr"] * o["weight_decay"])
    a, b, c = (rnd(k) for k in _NS)
    out = []
    for theta, gj, s in zip(thetas, g, states):
        rows, cols = _muon_matrix(theta)
        buffer = s["momentum_buffer"]
        new_buffer = _lerp(buffer, gj, one_minus_momentum, rnd)
        buffer.copy_(new_buffer)
        u = _lerp(gj, new_buffer, momentum, rnd) if o["nesterov"] else new_buffer
        d = u.to(torch.float64)
        # ‖U‖_F from the squares summed in double, rounded to the arithmetic
        # type, plus 1e-7 in that type (a 0-d tensor: no device sync).
        norm = torch.sqrt(torch.sum(d * d)).to(u.dtype) + rnd(1e-7)
        x = u.reshape(rows, cols)
        transposed = rows > cols
        if transposed:
            x = x.t()
        x = x / norm
        for _ in range(int(o["ns_steps"])):
            gram = x @ x.t()
            poly = (gram @ gram) * c + gram * b
            x = x * a + poly @ x
        if transposed:
            x = x.t()
        if o["adjust_lr"] == "original":
            scale = math.sqrt(max(1.0, float(rows) / float(cols)))
        else:
            scale = 0.2 * math.sqrt(max(float(rows), float(cols)))
        out.append(theta * decay + x.reshape(theta.shape) * rnd(-(o["lr"] * scale)))
    return out


def _muon_adamw_options(o):
    return dict(_ADAM_FAMILY, lr=o["lr"], beta1=o["beta1"], beta2=o["beta2"], eps=o["eps"],
                weight_decay=o["weight_decay"], decay_mode="decoupled", amsgrad=False, maximize=o["maximize"],
                nonfinite=o["nonfinite"])


# ---- the driver -------------------------------------------------------------------

def _prepare(name, options, params, grads):
    """The options of the rule the group runs (Muon's AdamW groups: AdamW's),
    that rule's name, the arithmetic type and its rounding, the parameters in
    that type and the transformed gradients."""
    o = _options(name, options)
    rule = name
    if name == "Muon":
        if o["muon"]:
            for p in params:
                _muon_matrix(p)
        else:
            rule, o = "AdamW", _muon_adamw_options(o)
    if any(p.dtype != params[0].dtype or x.dtype != params[0].dtype for p, x in zip(params, grads)):
        raise ValueError("adamx.%s: step: the parameters and gradients of a group must share one dtype, got %s"
                         % (name, sorted({str(x.dtype) for x in list(params) + list(grads)})))
    S = state_dtype(params[0].dtype)
    rnd = _rounder(S)
    thetas = _widen([p.detach() for p in params], S)
    g = _rule_gradients(rule, o, thetas, _widen([x.detach() for x in grads], S), _l2_coefficient(rule, o, rnd))
    return o, rule, S, rnd, thetas, g


def _decide(name, policy, parts):
    """The skip/error policies' decision on the group's s (D5)."""
    s = _group_norm(parts)
    if math.isfinite(s):
        return True, s
    if policy == "error":
        raise NonFiniteGradientError(
            "adamx.%s: step: the gradient is not finite (squared norm %r, first non-finite at parameter %d); "
            "nothing was changed" % (name, s, _first_nonfinite(parts)))
    return False, s


def check_group(name, options, params, grads):
    """The nonfinite policy alone, changing nothing: False if a 'skip' group
    would not be applied, NonFiniteGradientError for an 'error' group with a
    non-finite s, True otherwise. A caller stepping several groups checks them
    all first, so that an error changes no group (docs/design.md D5)."""
    o = _options(name, options)
    if not params or o["nonfinite"] == "propagate":
        return True
    with torch.no_grad():
        _, _, _, _, _, g = _prepare(name, options, params, grads)
        return _decide(name, o["nonfinite"], _squared_norms(g))[0]


def step_group(name, options, params, grads, states, steps, group):
    """One step of one group of optimizer `name` (an adamx name) with options
    `options` (adamx option names; defaults fill the rest): updates `params`
    (those with a gradient this step, any shape, device or strides) and their
    `states` (one dict slot name -> tensor each; missing slots the options use
    are created as zeros) in place, each bias-corrected with its own step
    count steps[j] + 1; advances group["t"] and the rule's group scalars
    (initialised as the C++ does when absent). Returns whether the step was
    applied: False when no parameter is listed or a 'skip' group's s is not
    finite (then nothing changes, t included); 'error' raises
    NonFiniteGradientError before anything changes. The caller increments
    each listed parameter's count when applied."""
    if len(params) != len(grads) or len(params) != len(states) or len(params) != len(steps):
        raise ValueError("adamx.%s: step: %d parameters, %d gradients, %d states and %d step counts"
                         % (name, len(params), len(grads), len(states), len(steps)))
    t_group = int(group.get("t", 0))
    for j, count in enumerate(steps):
        if not 0 <= count <= t_group:
            raise ValueError("adamx.%s: step: parameter %d has taken %d steps, but it must be between 0 and its "
                             "group's t = %d (a parameter steps only with its group)" % (name, j, count, t_group))
    if not params:
        return False  # the group does not step: t and its scalars stay
    for p, x in zip(params, grads):
        if p.shape != x.shape:
            raise ValueError("adamx.%s: step: a gradient of shape %s for a parameter of shape %s"
                             % (name, tuple(x.shape), tuple(p.shape)))
    with torch.no_grad():
        o, rule, S, rnd, thetas, g = _prepare(name, options, params, grads)
        s = math.nan
        if o["nonfinite"] != "propagate":
            applied, s = _decide(name, o["nonfinite"], _squared_norms(g))
            if not applied:
                return False
        elif name in _ADAM_RULES:  # only AdamX's γ and h read s
            s = _group_norm(_squared_norms(g))

        # The slots the options use, created as zeros on first use; the others
        # are dropped, as the C++ allocates only the used ones.
        used = _used_slots(name, _options(name, options))
        for p, st in zip(params, states):
            for k in SLOTS[name]:
                if k in used:
                    if k not in st:
                        st[k] = torch.zeros(p.shape, dtype=S, device=p.device)
                elif k in st:
                    del st[k]

        scalars = {k: group.get(k, v) for k, v in SCALARS[name].items()}
        ts = [count + 1 for count in steps]
        if rule in _ADAM_RULES:
            new = _adam_family_update(rule, o, rnd, thetas, g, states, ts, scalars.get("gamma", 1.0))
        elif rule == "Lion":
            new = _lion_update(o, rnd, thetas, g, states)
        elif rule == "Adan":
            new = _adan_update(o, rnd, thetas, g, states, ts)
        elif rule == "ScheduleFreeAdamW":
            new = _schedule_free_update(o, rnd, thetas, g, states, ts, scalars)
        else:
            new = _muon_update(o, rnd, thetas, g, states)
        for p, x in zip(params, new):
            p.copy_(x)  # rounded once to the parameter's type

        t = t_group + 1
        group["t"] = t
        if name in _ADAM_RULES:
            _advance_correction(scalars, s, t, o)
        elif name == "ScheduleFreeAdamW":  # the averaging follows every step taken
            _, scalars["lr_max"], scalars["weight_sum"], _ = _averaging(o, t, scalars)
        group.update(scalars)
    return True
