"""adamx.torch: the C++ path bit for bit against the library stepped directly,
parity with torch.optim.Adam/AdamW, state_dict resume, schedulers, errors."""
import copy
import io
import os
import subprocess
import tempfile

import numpy as np
import pytest
import torch

import adamx
import adamx.torch as at
from adamx import _core, _options

ALL = ["Adam", "AdamW", "AdamX", "RAdam", "AdaBound", "AdaMod", "Lion", "Adan", "ScheduleFreeAdamW", "Muon"]


def _params(seed, dtype=torch.float32, shapes=((7,), (3, 5), (4, 2, 3))):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for s in shapes]


def _grads(seed, params, steps, scale=1.0):
    g = torch.Generator().manual_seed(10_000 + seed)
    return [[(scale * torch.randn(p.shape, generator=g, dtype=torch.float64)).to(p.dtype) for p in params] for _ in range(steps)]


def _bits(t):
    t = t.detach().contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


# ---- bit for bit with the C++ library ----------------------------------------

STEPPER = os.environ.get("ADAMX_CPP_STEPPER")

# Options each optimizer is stepped with; the matrices are for Muon.
BITWISE_CASES = [
    ("Adam", "float32", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", "float32", {"lr": 0.01, "weight_decay": 0.1}),
    ("AdamX", "float32", {"lr": 0.01, "beta3": 0.9, "maximize": True}),
    ("AdamX", "float64", {"lr": 0.01, "beta3": 0.9, "amsgrad": True}),
    ("AdamX", "bfloat16", {"lr": 0.01, "beta3": 0.9}),
    ("AdamX", "float16", {"lr": 0.01, "beta3": 0.9}),
    ("RAdam", "float32", {"lr": 0.01}),
    ("AdaBound", "float32", {"lr": 0.01, "final_lr": 0.05}),
    ("AdaMod", "float32", {"lr": 0.01, "beta_step": 0.99}),
    ("Lion", "float32", {"lr": 0.001, "weight_decay": 0.1}),
    ("Adan", "float32", {"lr": 0.01, "weight_decay": 0.02}),
    ("ScheduleFreeAdamW", "float32", {"lr": 0.01, "warmup_steps": 3.0}),
    ("Muon", "float32", {"lr": 0.02}),
]
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _spec_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


@pytest.mark.skipif(STEPPER is None, reason="ADAMX_CPP_STEPPER (ctest sets it) names the C++ stepper")
@pytest.mark.parametrize("name,dtype,options", BITWISE_CASES, ids=["%s-%s" % (c[0], c[1]) for c in BITWISE_CASES])
def test_bitwise_with_the_library(name, dtype, options):
    """adamx.torch's C++ path and the library stepped directly (tests/python_stepper.cpp)
    give the same bits: parameters, every state slot and the group scalars, over 25 steps
    in which some parameters have no gradient (their own step counts differ)."""
    shapes = [(6, 4), (5, 3), (8, 2)] if name == "Muon" else [(9,), (4, 5), (3,)]
    torch_dtype = TORCH_DTYPES[dtype]
    params = _params(3, torch_dtype, shapes)
    steps = 25
    grads = _grads(3, params, steps)
    present = ["".join("0" if (s + j) % 4 == 3 and j > 0 else "1" for j in range(len(params))) for s in range(steps)]
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "spec.txt"), "w") as f:
            f.write("optimizer %s\ndtype %s\n" % (name, dtype))
            full = _options.defaults(name)
            full.update(options)
            for k, v in _core.Engine(name, "float64").checked_options(_options.to_adamx(name, full)).items():
                f.write("option %s %s\n" % (k, _spec_value(v)))
            f.write("shapes %s\n" % " ".join("%dx%d" % ((p.shape[0], p.numel() // p.shape[0]) if name == "Muon" else (p.numel(), 1)) for p in params))
            f.write("present %s\n" % " ".join(present))
        with open(os.path.join(d, "params.bin"), "wb") as f:
            for p in params:
                f.write(_bits(p))
        with open(os.path.join(d, "grads.bin"), "wb") as f:
            for step in grads:
                for g in step:
                    f.write(_bits(g))
        subprocess.run([STEPPER, d], check=True)
        expected = open(os.path.join(d, "out.bin"), "rb").read()
        scalars = open(os.path.join(d, "scalars.txt")).read().split("\n")

    opt = getattr(at, name)(params, **options)
    for s in range(steps):
        for j, p in enumerate(params):
            p.grad = grads[s][j].clone() if present[s][j] == "1" else None
        opt.step()
    assert opt.uses_cpp_kernel
    got = b"".join(_bits(p) for p in params)
    state = opt.state
    engine = opt._engine
    for j, p in enumerate(params):
        slots = engine.tensor_state(0, j)
        for slot in engine.slot_names:
            if slot in slots:
                got += slots[slot].tobytes()
    assert got == expected
    assert "t %d" % opt.param_groups[0]["step"] == scalars[0]
    for line in scalars[1:]:
        if line:
            key, value = line.split()
            assert float.fromhex(value) == opt.param_groups[0][key], key
    # The torch-layout state holds the same values.
    for j, p in enumerate(params):
        assert state[p]["step"].item() == sum(1 for s in range(steps) if present[s][j] == "1")


# ---- parity with torch.optim -------------------------------------------------

PARITY_OPTIONS = [
    {"lr": 1e-3},
    {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6},
    {"lr": 3e-3, "weight_decay": 0.1},
    {"lr": 1e-2, "amsgrad": True},
    {"lr": 1e-2, "maximize": True, "weight_decay": 0.01},
]


def _model(seed, dtype):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(dtype)


@pytest.mark.parametrize("kind", ["Adam", "AdamW", "AdamX"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("options", PARITY_OPTIONS, ids=range(len(PARITY_OPTIONS)))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_torch_optim(kind, dtype, options, seed):
    """adamx.torch.Adam/AdamW (and AdamX with beta3=1, which is Adam) step like
    torch.optim.Adam/AdamW over 200 steps of a small model's training, both fed the
    gradients of torch's model (so the comparison measures the update rule, not the
    model's chaotic amplification of last-bit differences).

    Tolerance: the C++ adapter's parity tolerance (tests/test_torch.cpp), the largest
    parameter difference within 100 eps of the dtype relative to the largest parameter.
    Why it holds, step by step: the two evaluate the same formula in a different order
    (torch: sqrt(v)/sqrt(1-b2^t) + eps, then addcdiv with lr/(1-b1^t); adamx: the fused
    kernel's per-step coefficients), so an update u differs by at most a few roundings
    of itself, 8 eps |u|; storing theta + u rounds once more, at most eps |theta| on
    each side; with the same gradients going to both, differences only add up, to at
    most sum over steps of (8 eps max|u_t| + 2 eps max|theta_t|), also asserted. In
    practice most roundings agree or cancel: measured at most 2.3 eps (float64) and
    2.1 eps (float32) over these 90 runs. A formula difference (eps inside the root, a
    missing bias correction) changes every update by a relative 1e-3 or more."""
    model = _model(seed, dtype)
    theirs = [p.detach().clone() for p in model.parameters()]
    ours_params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    ref_cls = torch.optim.AdamW if kind == "AdamW" else torch.optim.Adam
    reference = ref_cls(model.parameters(), foreach=False, **options)
    extra = {"beta3": 1.0} if kind == "AdamX" else {}
    ours = getattr(at, kind)(ours_params, **options, **extra)
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(64, 10, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, 3, (64,), generator=g)
    eps = torch.finfo(dtype).eps
    bound = 0.0
    for _ in range(200):
        reference.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        before = [p.detach().clone() for p in model.parameters()]
        for p, q in zip(model.parameters(), ours_params):
            q.grad = p.grad.clone()
        reference.step()
        ours.step()
        update = max((p.detach() - b).abs().max().item() for p, b in zip(model.parameters(), before))
        theta = max(p.detach().abs().max().item() for p in model.parameters())
        bound += 8 * eps * update + 2 * eps * theta
    assert ours.uses_cpp_kernel
    ref = [p.detach() for p in model.parameters()]
    deviation = max((a - b).abs().max().item() for a, b in zip(ref, ours_params))
    assert deviation <= bound, (deviation, bound)
    scale = max(p.abs().max().item() for p in ref)
    assert deviation / scale <= 100 * eps, deviation / scale / eps
    moved = max((a - b).abs().max().item() for a, b in zip(theirs, ref))
    assert moved > 1e-2
    # The state in torch's layout matches torch's own, within the same kind of bound
    # (m and v are sums of the same gradients: a few roundings per step, relative).
    for p_ref, p_ours in zip(model.parameters(), ours_params):
        s_ref, s_ours = reference.state[p_ref], ours.state[p_ours]
        assert s_ours["step"].item() == s_ref["step"].item()
        for key in ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if options.get("amsgrad") else ()):
            scale_k = s_ref[key].abs().max().item() or 1.0
            assert (s_ref[key] - s_ours[key]).abs().max().item() / scale_k <= 4 * 200 * eps


# ---- state_dict: exact resume -------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_state_dict_resumes_exactly(name):
    """Stepping 10, saving through torch.save/torch.load into a new optimizer and
    stepping 10 more gives the bits of 20 uninterrupted steps."""
    shapes = [(6, 4), (5, 3)] if name == "Muon" else [(9,), (4, 5)]
    params_a = _params(5, torch.float32, shapes)
    params_b = [p.detach().clone().requires_grad_() for p in params_a]
    grads = _grads(5, params_a, 20)
    opt_a = getattr(at, name)(params_a, lr=0.01)
    for s in range(20):
        for p, gr in zip(params_a, grads[s]):
            p.grad = gr.clone()
        opt_a.step()
    opt_b = getattr(at, name)(params_b, lr=0.01)
    for s in range(10):
        for p, gr in zip(params_b, grads[s]):
            p.grad = gr.clone()
        opt_b.step()
    buffer = io.BytesIO()
    torch.save(opt_b.state_dict(), buffer)
    buffer.seek(0)
    params_c = [p.detach().clone().requires_grad_() for p in params_b]
    opt_c = getattr(at, name)(params_c, lr=0.5)  # the saved options replace these
    opt_c.load_state_dict(torch.load(buffer))
    assert opt_c.param_groups[0]["lr"] == 0.01
    for s in range(10, 20):
        for p, gr in zip(params_c, grads[s]):
            p.grad = gr.clone()
        opt_c.step()
    for a, c in zip(params_a, params_c):
        assert _bits(a) == _bits(c)
    sa, sc = opt_a.state_dict(), opt_c.state_dict()
    for i in sa["state"]:
        for key, value in sa["state"][i].items():
            assert _bits(value) == _bits(sc["state"][i][key]), key
    assert sa["param_groups"][0]["step"] == sc["param_groups"][0]["step"] == 20


def test_state_dict_layout_is_torchs():
    p = _params(1)[1]
    opt = at.AdamX([p], lr=0.01, amsgrad=True)
    p.grad = torch.ones_like(p)
    opt.step()
    sd = opt.state_dict()
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][0]["exp_avg"].shape == p.shape
    group = sd["param_groups"][0]
    assert group["params"] == [0] and group["step"] == 1
    assert group["betas"] == (0.9, 0.999) or list(group["betas"]) == [0.9, 0.999]
    assert "gamma" in group and "h" in group
    assert opt.gamma(0) == group["gamma"]


def test_load_state_dict_refuses_and_changes_nothing():
    params = _params(2)
    opt = at.AdamX(params, lr=0.01)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    before = opt.state_dict()
    bad = copy.deepcopy(before)
    del bad["state"][1]["exp_avg_sq"]  # Adam's v must be there
    with pytest.raises(ValueError, match="exp_avg_sq|v_max|sizes"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(before)
    bad["state"][1]["step"] = torch.tensor(5.0)  # more steps than its group's 1
    with pytest.raises(ValueError, match="steps"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(before)
    bad["state"][0]["exp_avg"] = torch.zeros(3)  # wrong size
    with pytest.raises(ValueError):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(before)
    bad["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    for i in before["state"]:
        for key in before["state"][i]:
            assert _bits(before["state"][i][key]) == _bits(after["state"][i][key])
    assert before["param_groups"][0]["lr"] == after["param_groups"][0]["lr"]


# ---- schedulers ----------------------------------------------------------------


def test_lr_schedulers_drive_the_kernel():
    """A scheduler's lr reaches the C++ kernel: adamx.torch.Adam under StepLR matches
    torch.optim.Adam under StepLR (same tolerance as the parity test)."""
    model_a = _model(7, torch.float64)
    model_b = copy.deepcopy(model_a)
    ref = torch.optim.Adam(model_a.parameters(), lr=0.05, foreach=False)
    ours = at.Adam(model_b.parameters(), lr=0.05)
    sched_a = torch.optim.lr_scheduler.StepLR(ref, step_size=5, gamma=0.5)
    sched_b = torch.optim.lr_scheduler.StepLR(ours, step_size=5, gamma=0.5)
    x = torch.randn(32, 10, dtype=torch.float64)
    y = torch.randint(0, 3, (32,))
    for _ in range(30):
        for model, opt, sched in ((model_a, ref, sched_a), (model_b, ours, sched_b)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            sched.step()
    assert ours.param_groups[0]["lr"] == ref.param_groups[0]["lr"]
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        assert (a - b).abs().max().item() <= 100 * torch.finfo(torch.float64).eps * max(1.0, a.abs().max().item())
    # Schedulers' own state_dict round trip works with ours too.
    sd = sched_b.state_dict()
    torch.optim.lr_scheduler.StepLR(ours, step_size=5, gamma=0.5).load_state_dict(sd)


def test_reduce_lr_on_plateau_and_onecycle_accept_it():
    p = _params(0)[0]
    opt = at.AdamX([p], lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0)
    onecycle_opt = at.AdamW([p.detach().clone().requires_grad_()], lr=0.1)
    onecycle = torch.optim.lr_scheduler.OneCycleLR(onecycle_opt, max_lr=0.1, total_steps=10)
    for loss in [1.0, 2.0, 3.0]:
        p.grad = torch.ones_like(p)
        opt.step()
        plateau.step(loss)
    assert opt.param_groups[0]["lr"] < 0.1
    for _ in range(5):
        onecycle_opt.param_groups[0]["params"][0].grad = torch.ones(7)
        onecycle_opt.step()
        onecycle.step()


# ---- errors ------------------------------------------------------------------------


def test_bad_options_raise_value_error_with_the_library_message():
    p = _params(0)[0]
    with pytest.raises(ValueError, match="beta3"):
        at.AdamX([p], beta3=1.5)
    with pytest.raises(ValueError, match="lr"):
        at.Adam([p], lr=-1.0)
    with pytest.raises(TypeError, match="unknown option"):
        at.Adam([p], momentum=0.9)
    opt = at.AdamX([p], lr=0.01)
    opt.param_groups[0]["eps"] = float("nan")
    p.grad = torch.ones_like(p)
    before = _bits(p)
    with pytest.raises(ValueError, match="eps"):
        opt.step()
    assert _bits(p) == before


def test_nonfinite_error_changes_nothing():
    params = _params(0)
    opt = at.AdamX(params, lr=0.01, nonfinite="error")
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    before = [_bits(p) for p in params]
    sd = opt.state_dict()
    params[1].grad[0, 0] = float("nan")
    with pytest.raises(adamx.NonFiniteGradientError):
        opt.step()
    assert [_bits(p) for p in params] == before
    after = opt.state_dict()
    for i in sd["state"]:
        for key in sd["state"][i]:
            assert _bits(sd["state"][i][key]) == _bits(after["state"][i][key])
    assert isinstance(adamx.NonFiniteGradientError("x"), ValueError)


def test_tensors_the_kernel_does_not_take_go_through_pytorch():
    """Mixed dtypes or a non-contiguous parameter: the pure-PyTorch path steps them
    (the kernel takes one dtype of contiguous CPU memory)."""
    a = _params(0)[1]
    b = _params(1, torch.float64)[1]
    opt = at.AdamX([{"params": [a]}, {"params": [b]}], lr=0.01)
    a.grad, b.grad = torch.ones_like(a), torch.ones_like(b)
    before = a.detach().clone()
    opt.step()
    assert not opt.uses_cpp_kernel
    assert not torch.equal(before, a.detach())
    assert opt.state[a]["step"].item() == 1


def test_closure_and_zero_grad():
    model = _model(0, torch.float32)
    opt = at.AdamX(model.parameters(), lr=0.01)
    x = torch.randn(8, 10)

    def closure():
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    first = opt.step(closure).item()
    for _ in range(20):
        last = opt.step(closure).item()
    assert last < first
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())


def test_add_param_group_after_steps():
    a, b = _params(0)[:2]
    opt = at.AdamX([a], lr=0.01)
    a.grad = torch.ones_like(a)
    opt.step()
    opt.add_param_group({"params": [b], "lr": 0.001, "beta3": 0.5})
    b.grad = torch.ones_like(b)
    a.grad = torch.ones_like(a)
    opt.step()
    assert opt.state[b]["step"].item() == 1 and opt.state[a]["step"].item() == 2
    assert opt.param_groups[1]["step"] == 1


def test_gil_is_released_during_the_step():
    """Two threads stepping two optimizers over large tensors overlap in time: the
    step releases the GIL (measured as the steps of thread B starting before thread
    A's step ends, not as a speed)."""
    import threading
    import time

    n = 1 << 22
    events = []

    def worker(tag):
        p = torch.zeros(n, requires_grad=True)
        p.grad = torch.ones(n)
        opt = at.Adam([p])
        opt.step()
        for _ in range(5):
            events.append((tag, "start", time.perf_counter()))
            opt.step()
            events.append((tag, "end", time.perf_counter()))

    threads = [threading.Thread(target=worker, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Overlap: some step of one thread starts while a step of the other is running.
    intervals = {"a": [], "b": []}
    starts = {}
    for tag, kind, when in events:
        if kind == "start":
            starts[tag] = when
        else:
            intervals[tag].append((starts[tag], when))
    overlap = any(sa < eb and sb < ea for sa, ea in intervals["a"] for sb, eb in intervals["b"])
    assert overlap


# ---- the pure-PyTorch path inside the optimizer ---------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_switching_paths_carries_the_state(name):
    """5 steps through the C++ kernel, 5 with the parameters made non-contiguous (the
    pure-PyTorch path takes over with the kernel's state), 5 more through the kernel
    again, against 15 kernel steps.

    Tolerance: the two paths compute the same equations with the same per-step
    constants; only the float64 sum s behind AdamX's gamma may round differently (another
    summation order), which reaches an element through gamma by at most a few ulps per
    step. Bound: 64 k eps relative to the largest parameter after k steps (the
    fallback's own tests derive it, tests/python/test_fallback.py); measured: equal bits
    for every rule in float32 here."""
    shapes = [(6, 4), (5, 3)] if name == "Muon" else [(9,), (4, 5)]
    ref = _params(11, torch.float32, shapes)
    ours = [p.detach().clone().requires_grad_() for p in ref]
    grads = _grads(11, ref, 15)
    opt_ref = getattr(at, name)(ref, lr=0.01)
    opt = getattr(at, name)(ours, lr=0.01)
    for s in range(15):
        if s == 5:  # the same values in non-contiguous memory
            for p in ours:
                if p.dim() >= 2:
                    p.data = p.data.t().contiguous().t()
                else:
                    p.data = torch.stack([p.data, p.data], 1)[:, 0]
                assert not p.is_contiguous()
        if s == 10:
            for p in ours:
                p.data = p.data.contiguous()
        for p, q, g in zip(ref, ours, grads[s]):
            p.grad = g.clone()
            q.grad = g.clone()
        opt_ref.step()
        opt.step()
        assert opt.uses_cpp_kernel == (s < 5 or s >= 10)
    eps = torch.finfo(torch.float32).eps
    scale = max(p.abs().max().item() for p in ref)
    for p, q in zip(ref, ours):
        assert (p - q).abs().max().item() <= 64 * 15 * eps * scale
    sr, so = opt_ref.state_dict(), opt.state_dict()
    for i in sr["state"]:
        assert set(sr["state"][i]) == set(so["state"][i])
        assert sr["state"][i]["step"].item() == so["state"][i]["step"].item()


def test_state_dict_moves_between_paths():
    """A state_dict saved by the kernel path loads into an optimizer whose parameters
    take the pure-PyTorch path, and back, bit for bit where the values are copied."""
    params = _params(4)
    opt = at.AdamX(params, lr=0.01)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    sd = opt.state_dict()
    other = [p.detach().transpose(0, -1).contiguous().transpose(0, -1).requires_grad_() if p.dim() >= 2 else p.detach().clone().requires_grad_() for p in params]
    opt2 = at.AdamX(other, lr=0.5)
    opt2.load_state_dict(sd)
    assert not opt2.uses_cpp_kernel
    sd2 = opt2.state_dict()
    for i in sd["state"]:
        for key in sd["state"][i]:
            assert _bits(sd["state"][i][key]) == _bits(sd2["state"][i][key])
    assert sd2["param_groups"][0]["gamma"] == sd["param_groups"][0]["gamma"]


def test_schedule_free_eval_train_round_trip_and_unstepped_parameters():
    """eval() moves stepped parameters to x and leaves a parameter that has never had
    a gradient as it is (its starting point is its x); train() puts y back bit for bit."""
    a, b = _params(6)[:2]
    opt = at.ScheduleFreeAdamW([a, b], lr=0.01)
    for _ in range(3):
        a.grad = torch.ones_like(a)
        opt.step()
    ya, yb = a.detach().clone(), b.detach().clone()
    opt.eval()
    assert not torch.equal(a.detach(), ya)
    assert torch.equal(b.detach(), yb)
    with pytest.raises(RuntimeError, match="eval"):
        opt.step()
    opt.train()
    assert _bits(a) == _bits(ya) and _bits(b) == _bits(yb)
