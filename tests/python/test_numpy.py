"""adamx.numpy: the library's optimizers over NumPy arrays, and the option
names of adamx._options.

- Adam and AdamX against a reference written here straight from the
  equations of docs/design.md (sections 2 and 3, D1-D5, "Clamping r and
  gamma"), one element at a time in float64 Python arithmetic;
- every optimizer against the C++ engine stepped directly (adamx.numpy is a
  front for it, so the two must agree bit for bit), with groups, skipped
  parameters and options changed between steps;
- state_dict()/load_state_dict() resuming bit for bit;
- every kind of bad input refused with ValueError naming the problem, and
  leaving parameters, state and options exactly as they were.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adamx
import adamx.numpy as anp
from adamx import _core, _options

NAMES = list(_core.optimizer_names())


# ---- helpers -------------------------------------------------------------


def make_params(name, dtype, seed=0):
    """Two groups: a 3x4 matrix with a 5-vector, and a 2x3x2 array. Muon's
    vectors go into a group of their own with muon=False."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, (3, 4)).astype(dtype)
    b = rng.uniform(-1, 1, 5).astype(dtype)
    c = rng.uniform(-1, 1, (2, 3, 2)).astype(dtype)
    if name == "Muon":
        return [w, c, b], [{"params": [w, c]}, {"params": [b], "muon": False, "lr": 3e-4}]
    return [w, b, c], [{"params": [w, b], "lr": 2e-3}, {"params": [c]}]


def gradients(params, rng, step):
    # Norm bursts every 7th step, so that AdamX's gamma moves.
    scale = 8.0 if step % 7 == 3 else 0.5
    return [(rng.standard_normal(p.shape) * scale).astype(p.dtype) for p in params]


def engine_state(opt):
    """Everything the optimizer holds, as bytes: options, counts, scalars and
    every slot of every parameter."""
    e = opt._engine
    out = []
    for g in range(e.num_groups):
        out.append(sorted(e.options(g).items()))
        out.append((e.step_count(g), list(e.parameter_steps(g))))
        out.append(sorted((k, float(v).hex()) for k, v in e.scalars(g).items()))
        for j in range(len(e.shapes(g))):
            out.append(sorted((k, v.dtype.str, v.tobytes()) for k, v in e.tensor_state(g, j).items()))
    return out


def snapshot(opt, params):
    return [p.tobytes() for p in params], engine_state(opt), [dict(group) for group in opt.param_groups]


def assert_unchanged(opt, params, before):
    params_bytes, state, groups = before
    assert [p.tobytes() for p in params] == params_bytes, "a parameter changed"
    assert engine_state(opt) == state, "the optimizer's state changed"
    for group, saved in zip(opt.param_groups, groups):
        assert group.keys() == saved.keys()
        for key in group:
            if key == "params":
                assert all(a is b for a, b in zip(group[key], saved[key]))
            else:
                assert repr(group[key]) == repr(saved[key])


# ---- the reference: Adam and AdamX from docs/design.md ------------------------


def reference_adamx(params, grads_seq, lr, beta1, beta2, beta3, beta_norm, eps, weight_decay, decoupled, amsgrad,
                    maximize):
    """Sections 2 and 3 of docs/design.md, one element at a time, in float64
    Python arithmetic; one group. Returns the parameters, m, v, gamma and h
    after every step."""
    theta = [[float(x) for x in p.ravel()] for p in params]
    m = [[0.0] * len(t) for t in theta]
    v = [[0.0] * len(t) for t in theta]
    v_max = [[0.0] * len(t) for t in theta]
    gamma, h = 1.0, 0.0
    bound = 1.0 / (1.0 - beta_norm)
    history = []
    for t, grads in enumerate(grads_seq, start=1):
        s = 0.0
        bc1 = 1.0 - beta1 ** t
        bc2 = 1.0 - beta2 ** t
        for k, grad in enumerate(grads):
            for i, g in enumerate(float(x) for x in grad.ravel()):
                if maximize:
                    g = -g
                if decoupled:
                    theta[k][i] *= 1.0 - lr * weight_decay
                else:
                    g = g + weight_decay * theta[k][i]
                m[k][i] = beta1 * m[k][i] + (1.0 - beta1) * g
                v[k][i] = beta2 * v[k][i] + (1.0 - beta2) * gamma * g * g  # D1: the previous gamma
                v_max[k][i] = max(v_max[k][i], v[k][i])
                d = v_max[k][i] if amsgrad else v[k][i]
                theta[k][i] -= lr / bc1 * m[k][i] / (math.sqrt(d) / math.sqrt(bc2) + eps)
                s += g * g
        # D2: the history includes this step's s, bias-corrected; D3: no eps.
        h = beta_norm * h + (1.0 - beta_norm) * s
        h_hat = h / (1.0 - beta_norm ** t)
        r = min(s / h_hat, bound) if h_hat > 0 else 1.0
        gamma = min(beta3 * gamma + (1.0 - beta3) * r, bound)
        history.append(([list(x) for x in theta], [list(x) for x in m], [list(x) for x in v], gamma, h))
    return history


REFERENCE_CASES = {
    "adamx_default": ("AdamX", {}),
    "adamx_l2_amsgrad_maximize": ("AdamX", {"weight_decay": 0.05, "amsgrad": True, "maximize": True}),
    "adamx_decoupled_betas": ("AdamX", {"weight_decay": 0.1, "decoupled_weight_decay": True, "betas": (0.8, 0.99),
                                        "beta3": 0.9, "beta_norm": 0.95, "eps": 1e-6}),
    "adam_default": ("Adam", {}),
    "adamw_default": ("AdamW", {}),
}


@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_matches_the_equations_of_the_design(case):
    """float64: the engine evaluates the step in the algebraically identical
    folded form [lr sqrt(1 - b2^t) / (1 - b1^t)] m / (sqrt(v) + eps sqrt(1 -
    b2^t)), with the per-step constants rounded once, and sums s in its own
    order (docs/design.md, "Precision of the per-step constants", "How s is
    summed"); the reference follows the equations literally. Each step
    therefore differs by a few ulps of the step itself (about lr * 1e-16 =
    1e-19 here) and of gamma; nothing amplifies that (the gradients do not
    depend on the parameters but through the weight decay, a contraction), so
    40 steps stay within 1e-12 relative, the design's own parity target for
    float64 (section 8), with orders of magnitude to spare."""
    name, options = REFERENCE_CASES[case]
    rng = np.random.default_rng(11)
    params = [rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, 5)]
    start = [p.copy() for p in params]
    grads_seq = [gradients(params, rng, t) for t in range(40)]
    opt = getattr(anp, name)(params, lr=1e-2, **options)
    full = dict(_options.defaults(name))
    full.update(options)
    history = reference_adamx(
        start, grads_seq, lr=1e-2, beta1=full["betas"][0], beta2=full["betas"][1], beta3=full["beta3"],
        beta_norm=full["beta_norm"], eps=full["eps"], weight_decay=full["weight_decay"],
        decoupled=full["decoupled_weight_decay"], amsgrad=full["amsgrad"], maximize=full["maximize"])
    for t, (grads, (theta, m, v, gamma, h)) in enumerate(zip(grads_seq, history), start=1):
        opt.step(grads)
        got = np.concatenate([p.ravel() for p in params])
        want = np.array([x for tensor in theta for x in tensor])
        assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want)), "step %d" % t
        state = opt.state_dict()["state"]
        for slot, reference in (("m", m), ("v", v)):
            got = np.concatenate([state[k][slot].ravel() for k in range(2)])
            want = np.array([x for tensor in reference for x in tensor])
            assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want)), "%s at step %d" % (slot, t)
        assert opt.gamma(0) == pytest.approx(gamma, rel=1e-12, abs=0), "gamma at step %d" % t
        assert opt.state_dict()["param_groups"][0]["h"] == pytest.approx(h, rel=1e-12)
    if name == "AdamX":
        assert abs(opt.gamma(0) - 1.0) > 1e-3, "the bursts should have moved gamma"
    else:
        assert opt.gamma(0) == 1.0  # D4


def test_float32_matches_the_reference_within_float_rounding():
    """float32 parameters against the float64 reference: each step's update
    carries a relative error of a few float ulps (2^-24 each) and each
    stored parameter one rounding of at most 2^-24 |theta| <= 6e-8; over 40
    steps of lr 1e-2 the drift stays below 40 * (6e-8 + 1e-2 * 1e-6) = 3e-6,
    so 1e-5 absolute (the parameters are about 1) is a bound, not a fit."""
    rng = np.random.default_rng(12)
    start = [rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, 5)]
    params = [p.astype(np.float32) for p in start]
    grads_seq = [gradients(params, rng, t) for t in range(40)]
    opt = anp.AdamX(params, lr=1e-2)
    history = reference_adamx([p.astype(np.float64) for p in params], grads_seq, 1e-2, 0.9, 0.999, 0.99, 0.99, 1e-8,
                              0.0, False, False, False)
    for grads, (theta, _, _, gamma, _) in zip(grads_seq, history):
        opt.step(grads)
        got = np.concatenate([p.ravel() for p in params]).astype(np.float64)
        want = np.array([x for tensor in theta for x in tensor])
        assert np.max(np.abs(got - want)) <= 1e-5
        # gamma and h are double whatever the parameters (section 3); s sums
        # the float gradients' exact squares.
        assert opt.gamma(0) == pytest.approx(gamma, rel=1e-6)


# ---- the same as the engine, bit for bit --------------------------------------


def engine_shape(name, a):
    if name == "Muon" and a.ndim >= 2:
        return (a.shape[0], a.size // a.shape[0])  # the engine reads Muon's matrices by rows
    return (a.size, 1)


def address(a):
    return a.__array_interface__["data"][0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_steps_bitwise_like_the_engine(name, dtype):
    params, groups = make_params(name, dtype)
    opt = getattr(anp, name)(groups)
    twins = [p.copy() for p in params]
    engine = _core.Engine(name, np.dtype(dtype).name)
    group_of = []  # (group, index) of each parameter, in order
    twin_at = 0
    for g, group in enumerate(opt.param_groups):
        engine.add_group([engine_shape(name, a) for a in group["params"]], _options.to_adamx(name, group))
        for j in range(len(group["params"])):
            group_of.append((g, j, twin_at))
            twin_at += 1
    rng = np.random.default_rng(3)
    for t in range(12):
        grads = gradients(params, rng, t)
        if t in (4, 9):
            grads[1] = None  # skipped: its own step count stays
        if t == 6:  # a schedule's change, applied from this step
            opt.param_groups[0]["lr"] *= 0.5
            engine.set_options(0, _options.to_adamx(name, opt.param_groups[0]))
        applied = opt.step(grads)
        entries = [(g, j, address(twins[i]), address(grads[i])) for g, j, i in group_of if grads[i] is not None]
        assert applied == list(engine.step(entries))
        for p, twin in zip(params, twins):
            assert p.tobytes() == twin.tobytes()
    for g, j, _ in group_of:
        ours, theirs = opt._engine.tensor_state(g, j), engine.tensor_state(g, j)
        assert ours.keys() == theirs.keys()
        for slot in ours:
            assert ours[slot].tobytes() == theirs[slot].tobytes()
    for g in range(engine.num_groups):
        assert opt._engine.parameter_steps(g) == engine.parameter_steps(g)
        assert opt._engine.scalars(g) == engine.scalars(g)
    sd = opt.state_dict()
    assert sd["state"][1]["step"] == 10 and sd["param_groups"][0]["step"] == 12


def test_threads_give_the_same_bits():
    rng = np.random.default_rng(5)
    a = [rng.standard_normal(20000).astype(np.float32)]
    b = [a[0].copy()]
    one, two = anp.AdamX(a), anp.AdamX(b)
    try:
        two.set_threads(2)
    except ValueError as error:  # a build without OpenMP says so, and stays on one thread
        assert "OpenMP" in str(error)
    one.set_threads(1)
    for t in range(3):
        g = gradients(a, rng, t)
        one.step(g)
        two.step(g)
    assert a[0].tobytes() == b[0].tobytes()
    with pytest.raises(ValueError, match="threads"):
        one.set_threads(0)


def muon_reference(w, grads_seq, lr=0.02, momentum=0.95, weight_decay=0.0, ns_steps=5):
    """docs/design.md, "Muon": W a rows x cols matrix, float64."""
    w = w.astype(np.float64).copy()
    buffer = np.zeros_like(w)
    rows, cols = w.shape
    a, b, c = 3.4445, -4.7750, 2.0315
    for grad in grads_seq:
        buffer = momentum * buffer + (1 - momentum) * grad
        u = (1 - momentum) * grad + momentum * buffer  # Nesterov
        x = u.T if rows > cols else u
        x = x / (np.linalg.norm(x) + 1e-7)
        for _ in range(ns_steps):
            gram = x @ x.T
            x = a * x + (b * gram + c * gram @ gram) @ x
        if rows > cols:
            x = x.T
        w = w * (1 - lr * weight_decay) - lr * math.sqrt(max(1.0, rows / cols)) * x
    return w


def _muon_case(shape):
    rng = np.random.default_rng(8)
    w = rng.standard_normal(shape)
    grads = [rng.standard_normal(shape) for _ in range(6)]
    want = muon_reference(w, grads, weight_decay=0.1)
    opt = anp.Muon([w], weight_decay=0.1)
    for g in grads:
        opt.step([g])
    # Newton-Schulz's products sum in Eigen's order, not NumPy's: the last
    # bits differ and five quintic steps spread them by a few hundred ulps
    # at most; 1e-10 relative is far from any real difference (a wrong scale
    # or orientation changes the first digits).
    np.testing.assert_allclose(w, want, rtol=1e-10, atol=1e-12)


def test_muon_matches_the_equations_square():
    _muon_case((4, 4))


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (2, 3, 2)])
def test_muon_matches_the_equations_not_square(shape):
    """Wide and tall matrices (the lr scale sqrt(max(1, rows/cols)) and the
    orientation of Newton-Schulz depend on which is which), and an array of
    three dimensions, the matrix shape[0] x rest."""
    if len(shape) == 3:
        rng = np.random.default_rng(8)
        w = rng.standard_normal(shape)
        grads = [rng.standard_normal(shape) for _ in range(6)]
        want = muon_reference(w.reshape(shape[0], -1), [g.reshape(shape[0], -1) for g in grads], weight_decay=0.1)
        opt = anp.Muon([w], weight_decay=0.1)
        for g in grads:
            opt.step([g])
        np.testing.assert_allclose(w.reshape(shape[0], -1), want, rtol=1e-10, atol=1e-12)
        return
    _muon_case(shape)


# ---- state_dict ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_resumes_bitwise(name):
    params, groups = make_params(name, np.float32, seed=1)
    opt = getattr(anp, name)(groups, **({"amsgrad": True} if "amsgrad" in _options.defaults(name) else {}))
    rng = np.random.default_rng(9)
    for t in range(5):
        grads = gradients(params, rng, t)
        if t == 2:
            grads[0] = None
        opt.step(grads)
    sd = opt.state_dict()
    copies, copy_groups = make_params(name, np.float32, seed=1)
    for p, q in zip(copies, params):
        q_bytes = q.copy()
        p[...] = q_bytes
    resumed = getattr(anp, name)(copy_groups)
    resumed.load_state_dict(sd)
    assert resumed.param_groups[0].keys() == opt.param_groups[0].keys()
    for g in range(len(opt.param_groups)):
        for key, value in opt.param_groups[g].items():
            if key != "params":
                assert resumed.param_groups[g][key] == value
    for t in range(5, 10):
        grads = gradients(params, rng, t)
        opt.step(grads)
        resumed.step(grads)
    for p, q in zip(params, copies):
        assert p.tobytes() == q.tobytes()
    assert engine_state(opt) == engine_state(resumed)


def test_state_dict_layout_and_copies():
    w = np.ones((2, 3), np.float64)
    b = np.ones(3, np.float64)
    opt = anp.AdamX([w, b], amsgrad=True)
    opt.step([np.ones_like(w), None])
    sd = opt.state_dict()
    assert sd["optimizer"] == "AdamX" and sd["dtype"] == "float64"
    assert sd["state"][0]["step"] == 1 and sd["state"][1]["step"] == 0
    assert set(sd["state"][0]) == {"step", "m", "v", "v_max"}
    assert sd["state"][0]["m"].shape == (2, 3) and sd["state"][0]["m"].dtype == np.float64
    group = sd["param_groups"][0]
    assert group["params"] == [0, 1] and group["step"] == 1 and group["gamma"] == 1.0 and group["h"] > 0
    assert group["betas"] == (0.9, 0.999) and group["decoupled_weight_decay"] is False
    before = engine_state(opt)
    sd["state"][0]["m"][...] = 7  # a copy: the optimizer's own state is not touched
    assert engine_state(opt) == before


# ---- bad input changes nothing --------------------------------------------------


def stepped(name="AdamX", dtype=np.float32):
    params, groups = make_params(name, dtype, seed=2)
    opt = getattr(anp, name)(groups)
    rng = np.random.default_rng(4)
    for t in range(3):
        opt.step(gradients(params, rng, t))
    return opt, params, gradients(params, rng, 3)


BAD_STEPS = {
    "too few gradients": lambda p, g: g[:2],
    "too many gradients": lambda p, g: g + [g[0]],
    "wrong shape": lambda p, g: [g[0].reshape(4, 3)] + g[1:],
    "wrong shape, same size": lambda p, g: [g[0], g[1], g[2].reshape(3, 4)],
    "wrong dtype": lambda p, g: [g[0].astype(np.float64)] + g[1:],
    "not contiguous": lambda p, g: [np.asfortranarray(g[0])] + g[1:],
    "not an array": lambda p, g: [g[0].tolist()] + g[1:],
    "a scalar": lambda p, g: [1.0] + g[1:],
    "one array for all": lambda p, g: g[0],
    "per-group counts": lambda p, g: [[g[0]], [g[2]]],
    "per-group too many": lambda p, g: [[g[0], g[1], g[1]], [g[2]]],
    "gradient overlapping another parameter": lambda p, g: [g[0], p[0].ravel()[:5], g[2]],
}


@pytest.mark.parametrize("case", sorted(BAD_STEPS))
def test_bad_gradients_change_nothing(case):
    opt, params, grads = stepped()
    opt.param_groups[0]["lr"] = 5e-3  # pending: must not be applied by a refused step
    before = snapshot(opt, params)
    with pytest.raises(ValueError) as error:
        opt.step(BAD_STEPS[case](params, grads))
    assert "adamx" in str(error.value)
    assert_unchanged(opt, params, before)
    opt.step(grads)  # and the optimizer still works


BAD_OPTIONS = {
    "negative lr": ({"lr": -1.0}, "invalid lr = -1"),
    "nan eps": ({"eps": float("nan")}, "invalid eps = nan"),
    "beta1 of 1": ({"betas": (1.0, 0.999)}, "invalid beta1 = 1"),
    "one beta": ({"betas": (0.9,)}, "betas must be a tuple of 2 numbers"),
    "betas a number": ({"betas": 0.9}, "betas must be a tuple of 2 numbers"),
    "decoupled a string": ({"decoupled_weight_decay": "yes"}, "decoupled_weight_decay must be a bool"),
    "amsgrad a number": ({"amsgrad": 1}, "option 'amsgrad' must be a bool"),
    "lr a string": ({"lr": "big"}, "option 'lr' must be a number"),
    "nonfinite unknown": ({"nonfinite": "ignore"}, "'propagate', 'skip', 'error'"),
    "beta3 > 1": ({"beta3": 1.5}, "invalid beta3 = 1.5"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_options_in_param_groups_change_nothing(case):
    changes, message = BAD_OPTIONS[case]
    opt, params, grads = stepped()
    opt.param_groups[0]["amsgrad"] = True  # valid, pending: must not be applied either
    opt.param_groups[1].update(changes)
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        opt.step(grads)
    assert_unchanged(opt, params, before)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        opt.state_dict()
    assert_unchanged(opt, params, before)


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_options_refused_at_construction(case):
    changes, message = BAD_OPTIONS[case]
    w = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        anp.AdamX([w], **changes)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        anp.AdamX([{"params": [w], **changes}])
    assert not w.any()


def test_other_optimizers_options_are_refused():
    w = np.zeros(3, np.float32)
    for name, option in (("Adam", "final_lr"), ("Lion", "eps"), ("Lion", "amsgrad"), ("Adan", "beta3"),
                         ("AdamX", "momentum"), ("Muon", "beta3")):
        with pytest.raises(ValueError, match="no option named '%s'" % option):
            getattr(anp, name)([w], **{option: 0.5})
    with pytest.raises(ValueError, match="invalid beta3 = 0.99"):
        anp.Adam([w], beta3=0.99)  # only AdamX moves gamma (D4)


def test_nonfinite_error_changes_nothing():
    opt, params, grads = stepped()
    opt.param_groups[0]["nonfinite"] = "error"
    opt.step(grads)
    opt.param_groups[0]["amsgrad"] = True  # pending, turns v_max on: undone when the step fails
    before = snapshot(opt, params)
    grads[1][2] = np.nan
    with pytest.raises(adamx.NonFiniteGradientError):
        opt.step(grads)
    assert_unchanged(opt, params, before)
    assert isinstance(adamx.NonFiniteGradientError("x"), ValueError)


def test_nonfinite_skip_reports_the_group():
    opt, params, grads = stepped()
    opt.param_groups[0]["nonfinite"] = "skip"
    grads[0][0, 0] = np.inf
    w = params[0].copy()
    assert opt.step(grads) == [False, True]
    assert params[0].tobytes() == w.tobytes() and opt.step_count(0) == 3 and opt.step_count(1) == 4


def test_changed_parameters_are_refused():
    opt, params, grads = stepped()
    before = snapshot(opt, params)
    w = params[0]
    w.shape = (4, 3)  # in place: same memory, another shape
    with pytest.raises(ValueError, match="group 0 parameter 0: has shape \\(4, 3\\), it had \\(3, 4\\)"):
        opt.step(grads)
    w.shape = (3, 4)
    w.flags.writeable = False
    with pytest.raises(ValueError, match="group 0 parameter 0: is read-only"):
        opt.step(grads)
    w.flags.writeable = True
    opt.param_groups[0]["params"][0] = np.asfortranarray(w)
    with pytest.raises(ValueError, match="not C-contiguous"):
        opt.step(grads)
    opt.param_groups[0]["params"][0] = w
    assert_unchanged(opt, params, before)


def test_bad_parameters_refused_at_construction():
    w = np.zeros((3, 4), np.float32)
    cases = [
        ([], "empty parameter list"),
        ([w.astype(np.int32)], "has dtype int32"),
        ([w, np.zeros(3, np.float64)], "has dtype float64, the optimizer's parameters float32"),
        ([w.T], "not C-contiguous"),
        ([w[:, 1]], "not C-contiguous"),
        ([w, w], "share memory"),
        ([w, w.ravel()[3:6]], "share memory"),
        ([[1.0, 2.0]], "not a NumPy array"),
        (w, "not one array"),
        ([{"lr": 1e-3}], "has no 'params'"),
        ([{"params": [w]}, w], "all arrays or all param-group dicts"),
    ]
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    cases.append(([ro], "read-only"))
    for params, message in cases:
        with pytest.raises(ValueError, match=message):
            anp.AdamX(params)
    with pytest.raises(ValueError, match="steps matrices of at least 2x2"):
        anp.Muon([np.zeros(4, np.float32)])
    with pytest.raises(TypeError):
        anp.Optimizer([w])


def test_add_param_group():
    opt, params, grads = stepped()
    before = snapshot(opt, params)
    for bad, message in (({"params": [params[0]]}, "share memory"), ({"params": [np.zeros(2)]}, "dtype float64"),
                         ({"params": [np.zeros(2, np.float32)], "lr": -1.0}, "invalid lr")):
        with pytest.raises(ValueError, match=message):
            opt.add_param_group(bad)
        assert_unchanged(opt, params, before)
    extra = np.ones(2, np.float32)
    opt.add_param_group({"params": [extra], "lr": 0.1})
    assert opt.param_groups[2]["lr"] == 0.1 and opt.param_groups[2]["betas"] == (0.9, 0.999)
    opt.step(grads + [np.ones(2, np.float32)])
    assert extra[0] == np.float32(0.9) and opt.step_count(2) == 1


def bad_state_dicts():
    def edit(change):
        def make(sd):
            change(sd)
            return sd
        return make

    return {
        "not a dict": lambda sd: [sd],
        "other optimizer": edit(lambda sd: sd.update(optimizer="Adam")),
        "other dtype": edit(lambda sd: sd.update(dtype="float64")),
        "one group less": edit(lambda sd: sd["param_groups"].pop()),
        "one parameter less": edit(lambda sd: sd["param_groups"][0]["params"].pop()),
        "a missing state": edit(lambda sd: sd["state"].pop(2)),
        "a slot of the wrong shape": edit(lambda sd: sd["state"][0].update(m=np.zeros(12, np.float32))),
        "a slot of the wrong dtype": edit(lambda sd: sd["state"][0].update(m=sd["state"][0]["m"].astype(np.float64))),
        "an unknown slot": edit(lambda sd: sd["state"][0].update(momentum=sd["state"][0]["m"])),
        "a parameter ahead of its group": edit(lambda sd: sd["state"][1].update(step=5)),
        "a negative step": edit(lambda sd: sd["param_groups"][1].update(step=-1)),
        "an invalid lr": edit(lambda sd: sd["param_groups"][1].update(lr=-1.0)),
        "an unknown option": edit(lambda sd: sd["param_groups"][1].update(learning_rate=1.0)),
        "gamma infinite": edit(lambda sd: sd["param_groups"][1].update(gamma=float("inf"))),
        "h negative": edit(lambda sd: sd["param_groups"][0].update(h=-1.0)),
        "no gamma": edit(lambda sd: sd["param_groups"][0].pop("gamma")),
        "amsgrad without v_max": edit(lambda sd: sd["param_groups"][0].update(amsgrad=True)),
        "a step that is not an int": edit(lambda sd: sd["state"][0].update(step=1.5)),
    }


@pytest.mark.parametrize("case", sorted(bad_state_dicts()))
def test_bad_state_dicts_change_nothing(case):
    opt, params, grads = stepped()
    sd = opt.state_dict()
    other, other_params, _ = stepped()
    other.step(grads)  # a different state, so that a partial load would show
    bad = bad_state_dicts()[case](other.state_dict())
    before = snapshot(opt, params)
    with pytest.raises(ValueError):
        opt.load_state_dict(bad)
    assert_unchanged(opt, params, before)
    opt.load_state_dict(sd)


# ---- Schedule-Free AdamW's evaluation point --------------------------------------


def test_schedule_free_eval_and_train():
    opt, params, grads = stepped("ScheduleFreeAdamW", np.float64)
    y = [p.copy() for p in params]
    opt.eval()
    assert any(p.tobytes() != q.tobytes() for p, q in zip(params, y))
    x = [p.copy() for p in params]
    state = engine_state(opt)
    for refused in (lambda: opt.step(grads), opt.state_dict, lambda: opt.load_state_dict({})):
        with pytest.raises(RuntimeError, match="eval"):
            refused()
        assert [p.tobytes() for p in params] == [q.tobytes() for q in x] and engine_state(opt) == state
    opt.train()
    assert [p.tobytes() for p in params] == [q.tobytes() for q in y]
    opt.step(grads)
    assert not hasattr(anp.AdamX, "eval")


# ---- adamx._options --------------------------------------------------------------


def test_option_names_and_defaults():
    assert _options.defaults("AdamW")["decoupled_weight_decay"] is True
    assert _options.defaults("Adam")["decoupled_weight_decay"] is False
    assert _options.defaults("Adan")["betas"] == (0.98, 0.92, 0.99)
    assert "beta3" not in _options.defaults("Adan")
    assert _options.defaults("Muon")["ns_steps"] == 5 and isinstance(_options.defaults("Muon")["ns_steps"], int)
    assert isinstance(_options.defaults("ScheduleFreeAdamW")["warmup_steps"], int)
    assert _options.option_names("Lion") == ["lr", "betas", "weight_decay", "maximize", "nonfinite"]
    assert _options.to_adamx("AdamX", {"params": [], "betas": (0.5, 0.6), "decoupled_weight_decay": True}) == {
        "beta1": 0.5, "beta2": 0.6, "decay_mode": "decoupled"}
    assert _options.to_adamx("AdamX", {"initial_lr": 1.0, "lr": 2.0}, strict=False) == {"lr": 2.0}
    with pytest.raises(ValueError, match="no option named 'initial_lr'"):
        _options.to_adamx("AdamX", {"initial_lr": 1.0})
    with pytest.raises(ValueError, match="betas' parts|together"):
        _options.from_adamx("AdamX", {"beta1": 0.9})
    with pytest.raises(ValueError, match="no optimizer named"):
        _options.defaults("Adamax")
    assert _options.to_adamx("AdamX", {"amsgrad": np.bool_(True), "betas": np.array([0.5, 0.6])}) == {
        "amsgrad": True, "beta1": 0.5, "beta2": 0.6}


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(NAMES), data=st.data())
def test_options_round_trip(name, data):
    """Any valid torch-style options go to the library's names and back
    unchanged, and the library's full options go to torch's and back."""
    torch_style = _options.defaults(name)
    keys = data.draw(st.lists(st.sampled_from(sorted(torch_style)), unique=True))
    rate = st.floats(min_value=0.01, max_value=0.999)
    for key in keys:
        value = torch_style[key]
        if key == "betas":
            torch_style[key] = tuple(data.draw(rate) for _ in value)
        elif isinstance(value, bool):
            torch_style[key] = data.draw(st.booleans())
        elif key in ("lr", "weight_decay", "eps"):
            torch_style[key] = data.draw(st.floats(min_value=1e-12, max_value=10.0))
    library = _core.Engine(name, "float64").checked_options(_options.to_adamx(name, torch_style))
    assert _options.from_adamx(name, library) == torch_style
    assert _options.to_adamx(name, _options.from_adamx(name, library)) == library
