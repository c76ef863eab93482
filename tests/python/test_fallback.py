"""adamx._torch_fallback (the update rules in plain PyTorch, for parameters on
another device or not contiguous) against the C++ engine (adamx._core):
every optimizer, several option sets, seeds and parameter types, 24 steps in
which some parameters have no gradient (so each counts its own steps, one is
trained later than the rest, and one step lists no parameter at all). After
every step the parameters, every state slot, the group's t and scalars, the
per-parameter counts and the `applied` flags must agree.

Run: cd /work/main && PYTHONPATH=python /usr/bin/python3 -m pytest -q tests/python/test_fallback.py

Tolerances (derived here, used below)
-------------------------------------
Element-wise rules (every optimizer but Muon's matrix groups). The fallback
performs the C++ rule's element operations in the same order, one correctly
rounded IEEE operation each, on the same per-step constants (computed in
double and rounded once to the arithmetic type). The one input that can
differ is s, the group's squared gradient norm: both sum it in float64, in a
different order, so |Δs| ≤ 2(n − 1)·u·s for n elements (u = 2^-53, the
standard bound for a sum of non-negative terms, for each order). s reaches the
elements only through AdamX's γ, as the constant (1 − β2)·γ rounded to the
arithmetic type: at most one ulp of it per step (ε of the type, relative) when
the two γ round to neighbouring values. One ulp in v's increment moves v by at
most ε relative; the step divides by sqrt(v) (half of that) and each of the
four or five operations after it adds at most half an ulp, so one step
perturbs θ and the slots by at most about 4ε relative to their size, and the
absolute differences add over k steps: normwise (max|Δ| / max|x|) at most
4·k·ε. We allow `64 * k * eps` (16 times that) for parameters and slots:
    float32: 64·k·2^-23 ≈ 7.6e-6·k,  float64: 64·k·2^-52 ≈ 1.4e-14·k.
(Most comparisons are in fact bitwise equal.)

Group scalars (γ, h; lr_max, W). Both compute them in double with the same
operations from s: h's relative error is at most that of s plus three
roundings per step, r = s/ĥ adds both errors and one rounding, γ is a convex
combination: relative error ≤ (4n + 8k)·u. We allow `8 * (n + k) * 2^-52`
(= 16·(n + k)·u, at least twice that).

bfloat16 and float16 parameters. The arithmetic is float32 (tolerance as
above for the slots, which are float32), θ is rounded once to its type. Where
the two float32 values of θ differ, rounding can land on neighbouring values
of the narrow type: one of its ulps (ε of the type, relative to the element);
two values less than one ulp apart stay at most one ulp apart after the next
step (|decay| ≤ 1), and a further float32 difference can make it two. So
θ: `2 * eps_narrow` normwise (2^-6 for bfloat16, 2^-9 for float16).

Muon's matrix groups. The momentum is element-wise (above). The update
X = NS5(U) runs matrix products whose order differs (torch's BLAS against
Eigen): each product of the wide m×n matrix (m ≤ n) adds at most n·ε relative
per element (a dot product of length ≤ n, entries ≤ about 1.2 after the
normalisation), three products per Newton–Schulz step. An error entering at
step i is amplified by at most |p'(σ)| ≤ 4 per later step (p(σ) = aσ + bσ³ +
cσ⁵ on [0, 1.2]), so after five steps |ΔX| ≤ 3·n·ε·(1 + 4 + … + 4^4) ≤ 1023·n·ε;
W moves by lr·scale·X per step and decays by ≤ 1, so over k steps
|ΔW| ≤ k·lr·scale·1023·n·ε. We allow `k * lr * scale * 4096 * n * eps`
(absolute, four times that). A wrong orientation, scale or sign moves W by
about lr·scale per element per step, far above it.
"""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adamx._core as core
from adamx import _torch_fallback as fb
from adamx._core import NonFiniteGradientError

EPS = {torch.float64: 2.0 ** -52, torch.float32: 2.0 ** -23, torch.bfloat16: 2.0 ** -7, torch.float16: 2.0 ** -10}
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
STEPS = 24
IDLE_STEP = 10  # no parameter has a gradient: the group does not step
# Gradient scales by step (bursts and lulls, so that AdamX's γ moves).
SCALES = [1.0, 0.5, 3.0, 1.0, 0.1, 8.0, 1.0]


def has_grad(j, k):
    """Whether parameter j has a gradient at step k (0-based): parameter 1
    misses every third step, 2 starts at step 4 (trained later: its count
    stays behind), 3 misses every fourth step."""
    if k == IDLE_STEP:
        return False
    return {1: k % 3 != 1, 2: k >= 4, 3: k % 4 != 3}.get(j, True)


def elementwise_tol(dtype, k):
    """Normwise relative tolerance of an element-wise rule's parameters and
    slots after k steps (the module's docstring)."""
    return 64 * k * EPS[fb.state_dtype(dtype)]


def scalar_tol(n, k):
    return 8 * (n + k) * EPS[torch.float64]


# ---- how the fallback holds a parameter the engine holds contiguous ----------------
#
# The engine always steps the contiguous (C order) tensor; the fallback holds
# the same logical tensor as "plain": a contiguous copy; "strided": not
# contiguous, a copy with its dimensions' order reversed in memory (seen
# through the reversing transpose) for two or more dimensions, every other
# element of a buffer for one; "spaced": every other element of a buffer,
# whatever the dimensions.

def spaced(x):
    buffer = torch.zeros(2 * x.numel(), dtype=x.dtype)
    buffer[::2] = x.reshape(-1)
    return buffer[::2].view(x.shape)


def to_fallback(x, layout):
    if layout == "plain":
        return x.clone()
    if layout == "spaced" or x.dim() < 2:
        return spaced(x)
    return x.transpose(0, -1).contiguous().transpose(0, -1)


def grad_view(x, layout):
    """The fallback's gradient: the engine's, held the way the parameter is."""
    return x if layout == "plain" else to_fallback(x, layout)


def engine_shape(name, options, shape):
    """The (rows, cols) the engine is given: a parameter of Muon's matrix
    groups is the row-major matrix size(0) × (numel/size(0)) at its own
    contiguous memory (as the libtorch adapter and the fallback see it);
    anything else is a column of its elements."""
    if name == "Muon" and options.get("muon", True) and len(shape) >= 2:
        return shape[0], math.prod(shape) // shape[0]
    return math.prod(shape), 1


def assert_close(actual, expected, rel, what, absolute=0.0):
    """max|actual − expected| ≤ rel·max|expected| + absolute over the finite
    elements; NaN and infinities in the same places with the same values."""
    a = actual.detach().to(torch.float64).reshape(-1)
    e = expected.detach().to(torch.float64).reshape(-1)
    assert a.shape == e.shape, "%s: %d elements, expected %d" % (what, a.numel(), e.numel())
    nan = torch.isnan(e)
    assert torch.equal(torch.isnan(a), nan), "%s: NaN in other places" % what
    inf = torch.isinf(e)
    assert torch.equal(a[inf], e[inf]) and not torch.isinf(a[~inf]).any(), "%s: infinities differ" % what
    finite = ~(nan | inf)
    if not finite.any():
        return
    diff = (a[finite] - e[finite]).abs().max().item()
    scale = e[finite].abs().max().item()
    assert diff <= rel * scale + absolute, "%s: max|diff| %.3g > %.3g (rel %.3g of max %.3g, abs %.3g)" % (
        what, diff, rel * scale + absolute, rel, scale, absolute)


# ---- one run: the engine and the fallback side by side ------------------------

class Pair:
    """One group stepped by the engine and by the fallback from the same data."""

    def __init__(self, name, dtype, options, specs, seed):
        # specs: one (shape, layout) per parameter
        self.name, self.dtype, self.options = name, DTYPES[dtype], dict(options)
        self.gen = torch.Generator().manual_seed(seed)
        self.specs = specs
        self.engine = core.Engine(name, dtype)
        self.engine.add_group([engine_shape(name, options, shape) for shape, _ in specs], options)
        start = [self.randn(shape) for shape, _ in specs]
        self.e_params = [x.clone() for x in start]
        for x in self.e_params:
            assert x.is_contiguous()
        self.f_params = [to_fallback(x, layout) for x, (_, layout) in zip(start, specs)]
        for y, (_, layout) in zip(self.f_params, specs):
            assert y.is_contiguous() == (layout == "plain")
        self.states = [{} for _ in specs]
        self.group = {"t": 0}
        self.counts = [0] * len(specs)
        self.n = sum(x.numel() for x in start)

    def randn(self, shape, scale=1.0):
        return (torch.randn(shape, generator=self.gen, dtype=torch.float64) * scale).to(self.dtype)

    def gradients(self, k):
        return [self.randn(shape, SCALES[k % len(SCALES)]) for shape, _ in self.specs]

    def step(self, grads, listed):
        applied_e = self.engine.step([(0, j, self.e_params[j].data_ptr(), grads[j].data_ptr()) for j in listed])[0]
        applied_f = fb.step_group(self.name, self.options, [self.f_params[j] for j in listed],
                                  [grad_view(grads[j], self.specs[j][1]) for j in listed],
                                  [self.states[j] for j in listed], [self.counts[j] for j in listed], self.group)
        assert applied_f == applied_e, "applied: fallback %s, engine %s" % (applied_f, applied_e)
        if applied_f:
            for j in listed:
                self.counts[j] += 1
        return applied_f

    def compare(self, k, param_rel=None, slot_rel=None, param_abs=None):
        """Everything after k steps against the engine."""
        e = self.engine
        assert self.group["t"] == e.step_count(0)
        assert self.counts == list(e.parameter_steps(0))
        rel = elementwise_tol(self.dtype, max(k, 1))
        for j, (shape, _) in enumerate(self.specs):
            where = "%s %s %s step %d parameter %d" % (self.name, self.dtype, self.options, k, j)
            absolute = param_abs[j] if param_abs else 0.0
            assert_close(self.f_params[j], self.e_params[j],
                         param_rel if param_rel is not None else rel, where + " θ", absolute)
            kept = e.tensor_state(0, j)
            if self.counts[j] > 0:
                assert set(self.states[j]) == set(kept), "%s: slots %s, engine %s" % (
                    where, sorted(self.states[j]), sorted(kept))
            for slot, values in kept.items():
                mine = self.states[j].get(slot)
                if mine is None:  # not stepped yet: the engine's slots are zeros
                    mine = torch.zeros(shape)
                else:
                    assert mine.dtype == fb.state_dtype(self.dtype) and mine.shape == self.f_params[j].shape
                assert_close(mine, torch.from_numpy(values), slot_rel if slot_rel is not None else rel,
                             "%s slot %s" % (where, slot))
        for key, value in e.scalars(0).items():
            mine = self.group.get(key, fb.SCALARS[self.name][key])
            assert abs(mine - value) <= scalar_tol(self.n, k) * abs(value), "%s %s: %r, engine %r" % (
                self.name, key, mine, value)

    def run(self, steps=STEPS, presence=has_grad, **tolerances):
        for k in range(steps):
            grads = self.gradients(k)
            self.step(grads, [j for j in range(len(self.specs)) if presence(j, k)])
            self.compare(k + 1, **tolerances)


ELEMENT_SPECS = [((5, 3), "plain"), ((7,), "plain"), ((40,), "plain"), ((2, 3, 4), "plain")]


def strided(specs):
    return [(shape, "strided") for shape, _ in specs]


# ---- option sets ------------------------------------------------------------------

DECAY_L2 = {"weight_decay": 0.1, "decay_mode": "l2"}
DECAY_DECOUPLED = {"weight_decay": 0.1, "decay_mode": "decoupled"}
ELEMENT_CASES = [
    ("Adam", {}),
    ("Adam", dict(DECAY_L2, amsgrad=True)),
    ("Adam", dict(DECAY_DECOUPLED, maximize=True, lr=0.01)),
    ("AdamW", {}),
    ("AdamW", {"amsgrad": True, "maximize": True}),
    ("AdamW", dict(DECAY_L2, lr=0.01)),
    ("AdamX", {}),
    ("AdamX", {"beta3": 0.9, "beta_norm": 0.95, "amsgrad": True}),
    ("AdamX", dict(DECAY_DECOUPLED, beta3=0.5, maximize=True, lr=0.01)),
    ("AdamX", dict(DECAY_L2, beta3=0.8, beta_norm=0.9)),  # s includes λθ
    ("RAdam", {}),  # momentum steps until ρ_t > 5 (t = 6), rectified after
    ("RAdam", dict(DECAY_L2, amsgrad=True, beta2=0.99)),
    ("RAdam", dict(DECAY_DECOUPLED, maximize=True)),
    ("AdaBound", {}),
    ("AdaBound", {"amsgrad": True, "final_lr": 0.01, "bound_speed": 0.1, "lr": 0.01}),  # the bounds bite
    ("AdaBound", dict(DECAY_DECOUPLED, maximize=True)),
    ("AdaMod", {}),
    ("AdaMod", {"amsgrad": True, "beta_step": 0.9, "lr": 0.01}),
    ("AdaMod", dict(DECAY_L2, maximize=True)),
    ("Lion", {}),
    ("Lion", {"weight_decay": 0.5, "lr": 1e-3}),
    ("Lion", {"maximize": True, "beta1": 0.5, "beta2": 0.9}),
    ("Adan", {}),
    ("Adan", {"weight_decay": 0.1, "lr": 0.01}),  # proximal decay
    ("Adan", {"weight_decay": 0.1, "no_prox": True, "maximize": True, "lr": 0.01}),
    ("ScheduleFreeAdamW", {}),
    ("ScheduleFreeAdamW", {"warmup_steps": 5.0, "weight_decay": 0.1}),
    ("ScheduleFreeAdamW", {"warmup_steps": 30.0, "r": 1.0, "weight_lr_power": 1.0, "maximize": True}),
    ("Muon", {"muon": False}),  # AdamW on vectors
    ("Muon", {"muon": False, "weight_decay": 0.1, "maximize": True, "lr": 0.01}),
]


def case_id(case):
    name, options = case
    return name + "-" + ("-".join("%s=%s" % kv for kv in sorted(options.items())) or "defaults")


def test_tables_match_the_engine():
    assert sorted(fb.DEFAULTS) == sorted(core.optimizer_names())
    for name in core.optimizer_names():
        e = core.Engine(name, "float32")
        assert fb.DEFAULTS[name] == e.default_options(), name
        assert list(fb.SLOTS[name]) == list(e.slot_names), name
        assert sorted(fb.SCALARS[name]) == sorted(e.scalar_names), name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", ELEMENT_CASES, ids=case_id)
def test_elementwise_rules_match_the_engine(case, seed, dtype):
    name, options = case
    Pair(name, dtype, options, ELEMENT_SPECS, seed).run()


@pytest.mark.parametrize("case", [c for c in ELEMENT_CASES if c[1] == {} or c[0] == "Adan"], ids=case_id)
def test_non_contiguous_parameters_match_the_contiguous_engine(case):
    name, options = case
    Pair(name, "float32", options, strided(ELEMENT_SPECS), 2).run()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("case", [
    ("Adam", {}), ("AdamW", {"amsgrad": True}), ("AdamX", dict(DECAY_DECOUPLED, beta3=0.8)), ("Lion", {}),
    ("Adan", {"weight_decay": 0.1}), ("ScheduleFreeAdamW", {"warmup_steps": 3.0}), ("Muon", {"muon": False}),
], ids=case_id)
def test_narrow_parameters_round_once(case, dtype):
    name, options = case
    Pair(name, dtype, options, ELEMENT_SPECS, 3).run(param_rel=2 * EPS[DTYPES[dtype]],
                                                     slot_rel=elementwise_tol(torch.float32, STEPS))


# ---- Muon's matrices --------------------------------------------------------------

def muon_scale(rows, cols, options):
    if options.get("adjust_lr", "original") == "original":
        return math.sqrt(max(1.0, rows / cols))
    return 0.2 * math.sqrt(max(rows, cols))


def run_muon(dtype, options, specs, seed, steps=STEPS):
    """specs: (shape, layout); the engine and the fallback both step the
    parameter's size(0) × rest (engine_shape)."""
    pair = Pair("Muon", dtype, dict(options), specs, seed)
    lr = pair.options.get("lr", 0.02)
    eps = EPS[fb.state_dtype(pair.dtype)]
    narrow = pair.dtype in (torch.bfloat16, torch.float16)
    bounds = []
    for shape, _ in specs:
        rows, cols = engine_shape("Muon", pair.options, shape)
        bounds.append(lr * muon_scale(rows, cols, pair.options) * 4096 * max(rows, cols) * eps)
    for k in range(steps):
        grads = pair.gradients(k)
        pair.step(grads, [j for j in range(len(specs)) if has_grad(j, k)])
        # param_rel: 0 for float32/64 (the bound is absolute); a narrow type's θ
        # may also land on the neighbouring value: 2 of its ulps (docstring).
        pair.compare(k + 1, param_rel=2 * EPS[pair.dtype] if narrow else 0.0,
                     param_abs=[(k + 1) * b for b in bounds])


# Square, wide (rows < cols) and tall (rows > cols: Newton–Schulz runs on the
# transpose, and the default scale sqrt(rows/cols) exceeds 1) matrices.
MUON_SPECS = [((4, 4), "plain"), ((3, 5), "plain"), ((6, 2), "plain"), ((6, 6), "plain")]
# Three-dimensional parameters are size(0) × rest, wide and tall; with
# match_rms_adamw the scale 0.2·sqrt(max(rows, cols)) instead.
MUON_ROWMAJOR_SPECS = [((3, 5), "plain"), ((2, 3, 4), "plain"), ((7, 3), "plain"), ((6, 2, 2), "plain"),
                       ((4, 4), "plain")]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("options", [
    {},
    {"nesterov": False, "weight_decay": 0.1},
    {"maximize": True, "ns_steps": 3.0, "momentum": 0.3},  # lerp from the other end (1 − μ ≥ 1/2)
], ids=["defaults", "no-nesterov-decay", "maximize-ns3-momentum0.3"])
def test_muon_matrices_match_the_engine(options, seed, dtype):
    run_muon(dtype, options, MUON_SPECS, seed)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("options", [{}, {"adjust_lr": "match_rms_adamw", "weight_decay": 0.05}],
                         ids=["original", "match_rms_adamw-decay"])
def test_muon_reads_a_parameter_as_size0_by_rest(options, dtype):
    run_muon(dtype, options, MUON_ROWMAJOR_SPECS, 4)


def test_muon_non_contiguous_and_bfloat16():
    # The fallback's parameters are not contiguous (the engine's are): memory
    # in reversed dimension order, or every other element of a buffer.
    specs = [((4, 4), "strided"), ((3, 5), "strided"), ((6, 2), "spaced"), ((2, 3, 4), "strided"),
             ((7, 3), "spaced")]
    run_muon("float32", {}, specs, 5)
    run_muon("bfloat16", {}, specs, 6)


def test_muon_refuses_vectors_in_a_matrix_group():
    p, g = torch.zeros(5), torch.ones(5)
    before = {"t": 0}
    with pytest.raises(ValueError, match="muon = False"):
        fb.step_group("Muon", {}, [p], [g], [{}], [0], before)
    assert before == {"t": 0} and torch.equal(p, torch.zeros(5))


def test_engine_reads_size0_by_rest_as_the_fallback_does():
    # The engine reads the (rows, cols) given to add_group as a row-major
    # matrix, as the libtorch adapter does: a wrong orientation (NS(Wᵀ) of a
    # non-square W, or its scale) is far outside the tolerance from step 1.
    run_muon("float64", {}, [((3, 5), "plain"), ((2, 6), "plain"), ((5, 2), "plain")], 7, steps=2)


# ---- Schedule-Free's evaluation point -------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("options", [{}, {"beta1": 0.5, "weight_decay": 0.1, "warmup_steps": 4.0}],
                         ids=["defaults", "beta1=0.5-decay-warmup"])
def test_schedule_free_eval_train_round_trip(options, dtype):
    pair = Pair("ScheduleFreeAdamW", dtype, options, ELEMENT_SPECS, 8)
    points = lambda: [(0, j, p.data_ptr()) for j, p in enumerate(pair.e_params)]  # noqa: E731
    for k in range(STEPS):
        # At k = 2 parameter 2 has not stepped yet (it stays at y); by 5 and
        # 17 every parameter has.
        if k in (2, 5, 17):
            before = [p.clone() for p in pair.f_params]
            pair.engine.eval(points())
            fb.to_eval(pair.options, pair.f_params, pair.states, pair.group)
            fb.to_eval(pair.options, pair.f_params, pair.states, pair.group)  # a second eval does nothing
            for j in range(len(pair.specs)):
                assert_close(pair.f_params[j], pair.e_params[j], elementwise_tol(pair.dtype, k),
                             "x of parameter %d" % j)
                if pair.counts[j] == 0:
                    assert torch.equal(pair.e_params[j], before[j]), "engine moved parameter %d" % j
            assert not torch.equal(pair.f_params[0], before[0])
            assert (k == 2) == (pair.counts[2] == 0)
            pair.engine.train(points())
            fb.to_train(pair.options, pair.f_params, pair.states, pair.group)
            fb.to_train(pair.options, pair.f_params, pair.states, pair.group)  # nothing to put back
            for p, y in zip(pair.f_params, before):
                assert torch.equal(p, y)  # y back bit for bit
            assert "eval_y" not in pair.group
        pair.step(pair.gradients(k), [j for j in range(len(pair.specs)) if has_grad(j, k)])
        pair.compare(k + 1)


def test_schedule_free_eval_before_the_first_step_keeps_the_parameters():
    p = torch.randn(6)
    y = p.clone()
    group = {"t": 0}
    fb.to_eval({}, [p], [{}], group)
    assert torch.equal(p, y)
    fb.to_train({}, [p], [{}], group)
    assert torch.equal(p, y)


def test_schedule_free_eval_of_a_parameter_that_has_not_stepped():
    # x = y until a parameter's first step: the engine and the fallback leave
    # it as it is, in a group that has stepped; train() puts y back.
    pair = Pair("ScheduleFreeAdamW", "float64", {}, ELEMENT_SPECS, 9)
    for k in range(2):  # after one step y = z = x: the second makes parameter 0 move
        pair.step(pair.gradients(k), [0])  # parameters 1 to 3 have not stepped
    before = [p.clone() for p in pair.f_params]
    points = [(0, j, p.data_ptr()) for j, p in enumerate(pair.e_params)]
    pair.engine.eval(points)
    fb.to_eval(pair.options, pair.f_params, pair.states, pair.group)
    for j in range(4):
        assert_close(pair.f_params[j], pair.e_params[j], 1e-15, "x of parameter %d" % j)
    assert not torch.equal(pair.f_params[0], before[0])
    for j in range(1, 4):
        assert torch.equal(pair.e_params[j], before[j]) and torch.equal(pair.f_params[j], before[j])
    pair.engine.train(points)
    fb.to_train(pair.options, pair.f_params, pair.states, pair.group)
    for j in range(4):
        assert torch.equal(pair.f_params[j], before[j])  # y back bit for bit
        assert_close(pair.e_params[j], before[j], 1e-15, "y of parameter %d" % j)
    assert "eval_y" not in pair.group
    pair.step(pair.gradients(2), [0, 1, 2, 3])  # and the steps after agree
    pair.compare(3)


# ---- non-finite gradients ------------------------------------------------------

NONFINITE_CASES = [("AdamX", {"beta3": 0.9}), ("Adam", DECAY_L2), ("Lion", {}), ("Adan", {}),
                   ("ScheduleFreeAdamW", {}), ("Muon", {"muon": False}), ("AdaMod", {})]


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("policy", ["propagate", "skip"])
@pytest.mark.parametrize("case", NONFINITE_CASES, ids=case_id)
def test_nonfinite_policies_match_the_engine(case, policy, bad):
    name, options = case
    pair = Pair(name, "float32", dict(options, nonfinite=policy), ELEMENT_SPECS, 10)
    for k in range(12):
        grads = pair.gradients(k)
        if k in (3, 7):
            grads[0].view(-1)[2] = bad
        t = pair.group["t"]
        applied = pair.step(grads, [j for j in range(4) if has_grad(j, k)])
        if k in (3, 7):
            # skip: nothing changes, t included; propagate: t advances, γ and h
            # keep their values (D5), the averaging of Schedule-Free advances.
            assert applied == (policy == "propagate")
            assert pair.group["t"] == t + (policy == "propagate")
        pair.compare(k + 1)


@pytest.mark.parametrize("case", NONFINITE_CASES + [("Muon", {})], ids=case_id)
def test_nonfinite_error_changes_nothing(case):
    name, options = case
    specs = MUON_SPECS[:2] if options == {} and name == "Muon" else ELEMENT_SPECS[:2]
    pair = Pair(name, "float64", dict(options, nonfinite="error"), specs, 11)
    for k in range(3):
        pair.step(pair.gradients(k), [0, 1])
    grads = pair.gradients(3)
    grads[1].view(-1)[0] = math.nan
    params = [p.clone() for p in pair.f_params]
    states = [{k: v.clone() for k, v in s.items()} for s in pair.states]
    group = dict(pair.group)
    with pytest.raises(NonFiniteGradientError):
        pair.engine.step([(0, j, pair.e_params[j].data_ptr(), grads[j].data_ptr()) for j in (0, 1)])
    f_grads = [grad_view(grads[j], pair.specs[j][1]) for j in (0, 1)]
    with pytest.raises(NonFiniteGradientError, match="parameter 1"):
        fb.check_group(name, pair.options, pair.f_params, f_grads)
    with pytest.raises(NonFiniteGradientError, match="parameter 1"):
        fb.step_group(name, pair.options, pair.f_params, f_grads, pair.states, pair.counts, pair.group)
    assert pair.group == group
    for p, q in zip(pair.f_params, params):
        assert torch.equal(p, q)
    for s, q in zip(pair.states, states):
        assert set(s) == set(q) and all(torch.equal(s[k], q[k]) for k in s)
    pair.compare(3)


def test_check_group_reports_skip():
    p, g = torch.zeros(3), torch.tensor([1.0, math.inf, 0.0])
    assert fb.check_group("Adam", {"nonfinite": "skip"}, [p], [g]) is False
    assert fb.check_group("Adam", {"nonfinite": "skip"}, [p], [torch.ones(3)]) is True
    assert fb.check_group("Adam", {}, [p], [g]) is True  # propagate: always steps


# ---- random options -------------------------------------------------------------

rate = st.floats(0.0, 0.999)


@st.composite
def adam_family_options(draw):
    name = draw(st.sampled_from(["Adam", "AdamW", "AdamX", "RAdam", "AdaBound", "AdaMod"]))
    o = {"lr": draw(st.floats(1e-4, 0.1)), "beta1": draw(rate), "beta2": draw(rate),
         "eps": draw(st.sampled_from([0.0, 1e-8, 1e-3])), "weight_decay": draw(st.sampled_from([0.0, 0.01, 0.3])),
         "decay_mode": draw(st.sampled_from(["l2", "decoupled"])), "amsgrad": draw(st.booleans()),
         "maximize": draw(st.booleans())}
    if name == "AdamX":
        o.update(beta3=draw(st.floats(0.0, 1.0)), beta_norm=draw(rate))
    if name == "AdaBound":
        o.update(final_lr=draw(st.floats(0.0, 1.0)), bound_speed=draw(st.floats(1e-4, 1.0)))
    if name == "AdaMod":
        o.update(beta_step=draw(rate))
    return name, o


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=adam_family_options(), seed=st.integers(0, 2 ** 16), dtype=st.sampled_from(["float32", "float64"]))
def test_random_adam_family_options(case, seed, dtype):
    name, options = case
    Pair(name, dtype, options, ELEMENT_SPECS[:3], seed).run(steps=16)
