"""Every optimizer of adamx as a ``torch.optim.Optimizer``.

    import adamx.torch
    opt = adamx.torch.AdamX(model.parameters(), lr=1e-3, beta3=0.99)
    loss.backward(); opt.step(); opt.zero_grad()

They follow torch's conventions: ``params`` or param-group dicts, options named
as torch names them (``lr``, ``betas``, ``eps``, ``weight_decay``,
``amsgrad``, ``maximize``, ``decoupled_weight_decay``) plus adamx's own
(AdamX's ``beta3``, ``beta_norm``, ``nonfinite``; each optimizer's in its
class), ``step(closure=None)``, ``zero_grad``, ``add_param_group``, and
``state_dict``/``load_state_dict`` in torch's layout, so ``torch.save``,
``torch.load`` and the ``torch.optim.lr_scheduler`` classes work unchanged.

Two ways to step, with the same equations:

* **The fused C++ kernel** (adamx's own), when every parameter is a dense,
  contiguous CPU tensor of one dtype (float32, float64, bfloat16, float16)
  with a gradient like it. It reads and writes the tensors' memory in place,
  copies nothing, and releases the GIL while it runs. The state lives in the
  kernel's storage; ``optimizer.state`` is a copy of it made when read.
* **Pure PyTorch** (foreach ops), for anything else: tensors on a GPU, or not
  contiguous. The state then lives in ``optimizer.state``.

An optimizer moves between the two as its parameters do (``model.cuda()``
after some CPU steps), carrying its state over.

State layout (``optimizer.state[p]``, and ``state_dict()["state"]``): torch's
names where torch has the quantity (``exp_avg``, ``exp_avg_sq``,
``max_exp_avg_sq``, ``step``), the rule's own otherwise; each a tensor shaped
like the parameter (float32 for bfloat16 and float16 parameters, whose
arithmetic adamx does in float32). Each parameter counts its own steps, as in
torch. Per group, ``param_groups[i]`` holds the group's step count
``"step"`` and its rule's group scalars: AdamX's γ and h as ``"gamma"`` and
``"h"`` (1 and 0 for Adam), Schedule-Free AdamW's ``"lr_max"`` and
``"weight_sum"``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch
from torch.optim import Optimizer

from adamx import _core, _options
from adamx._core import CheckpointError, NonFiniteGradientError

__all__ = [
    "Adam",
    "AdamW",
    "AdamX",
    "RAdam",
    "AdaBound",
    "AdaMod",
    "Lion",
    "Adan",
    "ScheduleFreeAdamW",
    "Muon",
    "AdamxOptimizer",
    "NonFiniteGradientError",
    "CheckpointError",
]

_DTYPES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.bfloat16: "bfloat16",
    torch.float16: "float16",
}

# The rule's slot names -> the key torch (or the authors' code) gives them.
_ADAM_KEYS = {"m": "exp_avg", "v": "exp_avg_sq", "v_max": "max_exp_avg_sq"}
_SLOT_KEYS = {
    "Adam": _ADAM_KEYS,
    "AdamW": _ADAM_KEYS,
    "AdamX": _ADAM_KEYS,
    "RAdam": _ADAM_KEYS,
    "AdaBound": _ADAM_KEYS,
    "AdaMod": dict(_ADAM_KEYS, step_avg="exp_avg_lr"),
    "Lion": {"m": "exp_avg"},
    "Adan": {"m": "exp_avg", "v": "exp_avg_diff", "n": "exp_avg_sq", "prev_grad": "pre_grad"},
    "ScheduleFreeAdamW": {"z": "z", "v": "exp_avg_sq"},
    "Muon": {"m": "exp_avg", "v": "exp_avg_sq", "momentum_buffer": "momentum_buffer"},
}

# One engine per optimizer, for validating options and reading the rule's
# facts (slot names, group scalars) without parameters.
_PROTOTYPES: Dict[str, Any] = {}


def _prototype(name: str):
    if name not in _PROTOTYPES:
        _PROTOTYPES[name] = _core.Engine(name, "float64")
    return _PROTOTYPES[name]


class AdamxOptimizer(Optimizer):
    """The base of adamx's torch optimizers; use one of its subclasses."""

    _name: str = ""

    def __init__(self, params, defaults: Optional[Dict[str, Any]] = None, *, threads: int = 1, **options):
        if type(self) is AdamxOptimizer:
            raise TypeError("AdamxOptimizer is a base class: use adamx.torch.AdamX, Adam, ...")
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError("adamx.%s: threads must be an int >= 1, not %r" % (self._name, threads))
        merged = _options.defaults(self._name)
        merged.update(defaults or {})
        merged.update(options)
        self._check_names(merged, "the optimizer's options")
        self._adamx_options(merged, "defaults")  # validates; ValueError names the problem
        self._engine = None  # the C++ engine while the parameters suit it
        self._threads = threads
        self._stale = False  # the engine stepped since `state` was last copied out
        self._group_data: List[Dict[str, Any]] = []  # per group: "t" and the scalars (pure-PyTorch path)
        self._eval_mode = False
        self._option_keys = sorted(self._option_names())
        self._matrices = _prototype(self._name).steps_matrices
        super().__init__(params, merged)

    # ---- options -------------------------------------------------------

    def _option_names(self):
        return set(_options.defaults(self._name))

    def _check_names(self, options: Dict[str, Any], what: str):
        known = self._option_names()
        unknown = sorted(k for k in options if k not in known)
        if unknown:
            raise TypeError(
                "adamx.%s: %s name unknown option%s %s (its options: %s)"
                % (self._name, what, "s" if len(unknown) > 1 else "", ", ".join(unknown), ", ".join(sorted(known)))
            )

    def _adamx_options(self, group: Dict[str, Any], where: str) -> Dict[str, Any]:
        """The group's options in adamx's names, validated (ValueError)."""
        known = self._option_names()
        torch_style = {k: v for k, v in group.items() if k in known}
        return _prototype(self._name).checked_options(_options.to_adamx(self._name, torch_style), where)

    def _step_options(self):
        """Every group's options in adamx's names, validated; a group whose torch-named
        values are those of the last step reuses that step's conversion (a step's
        Python overhead is mostly this when nothing changed)."""
        names = self._option_keys
        cache = self.__dict__.setdefault("_options_cache", [])
        out = []
        for g, group in enumerate(self.param_groups):
            values = [group.get(k) for k in names]
            if g < len(cache) and cache[g][0] == values:
                out.append(cache[g][1])
                continue
            converted = self._adamx_options(group, "group %d" % g)
            if g < len(cache):
                cache[g] = (values, converted)
            else:
                cache.append((values, converted))
            out.append(converted)
        return out

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Adds a group as torch does; its options are validated first (ValueError)."""
        if not isinstance(param_group, dict):
            raise TypeError("adamx.%s: a param group must be a dict" % self._name)
        trial = dict(self.defaults)
        trial.update({k: v for k, v in param_group.items() if k != "params"})
        self._adamx_options(trial, "group %d" % len(self.param_groups))
        super().add_param_group(param_group)
        self._group_data.append({"t": 0})
        self.param_groups[-1].setdefault("step", 0)
        for scalar in _prototype(self._name).scalar_names:
            self.param_groups[-1].setdefault(scalar, _initial_scalar(scalar))
        if self._engine is not None:
            self._engine_add_groups(self._engine)
            self._engine_options.append(self._engine.options(self._engine.num_groups - 1))
            self._seen_shapes.append([p.shape for p in self.param_groups[-1]["params"]])

    # ---- the state, copied out of the engine when read ------------------

    @property
    def state(self):
        if self.__dict__.get("_stale"):
            self._copy_state_out()
        return self.__dict__["_state_dict"]

    @state.setter
    def state(self, value):
        self.__dict__["_state_dict"] = value

    def _copy_state_out(self):
        self._stale = False
        engine = self._engine
        keys = _SLOT_KEYS[self._name]
        state = self.__dict__["_state_dict"]
        for g, group in enumerate(self.param_groups):
            counts = engine.parameter_steps(g)
            for j, p in enumerate(group["params"]):
                slots = engine.tensor_state(g, j)
                if counts[j] == 0 and not state.get(p):
                    continue
                entry = {"step": torch.tensor(float(counts[j]))}
                for slot, values in slots.items():
                    entry[keys[slot]] = torch.from_numpy(values).view(p.shape)
                state[p] = entry
            group["step"] = engine.step_count(g)
            group.update(engine.scalars(g))

    # ---- stepping -------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None):
        """One step of every group over the parameters that have a gradient.

        Raises ValueError (bad options or tensors) or NonFiniteGradientError
        (``nonfinite="error"``) before anything changes."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._eval_mode:
            raise RuntimeError("adamx.%s: step: the parameters hold the evaluation point (eval()); call train() first" % self._name)
        options = self._step_options()
        kernel = self._kernel_entries()
        if kernel is not None:
            self._engine_step(kernel[0], kernel[1], options)
        else:
            self._torch_step(options)
        return loss

    def _kernel_entries(self):
        """(dtype, entries) if the C++ kernel can step every parameter and gradient:
        dense contiguous CPU tensors of one supported dtype; entries lists
        (group, index, parameter address, gradient address) for those with a
        gradient. None otherwise (the pure-PyTorch path steps them)."""
        dtype = None
        entries = []
        append = entries.append
        strided = torch.strided
        for g, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):
                if not p.is_cpu or p.layout is not strided or not p.is_contiguous():
                    return None
                if p.dtype is not dtype:
                    if dtype is not None or p.dtype not in _DTYPES:
                        return None
                    dtype = p.dtype
                grad = p.grad
                if grad is not None:
                    if (not grad.is_cpu or grad.layout is not strided or not grad.is_contiguous()
                            or grad.dtype is not dtype or grad.shape != p.shape):
                        return None
                    append((g, j, p.data_ptr(), grad.data_ptr()))
        return (_DTYPES[dtype], entries) if dtype is not None else None

    def _engine_dtype(self) -> Optional[str]:
        """The dtype the C++ kernel steps, if every parameter and gradient suits it; else None."""
        dtype = None
        for group in self.param_groups:
            for p in group["params"]:
                if p.device.type != "cpu" or p.layout != torch.strided or not p.is_contiguous() or p.dtype not in _DTYPES:
                    return None
                if dtype is None:
                    dtype = p.dtype
                elif p.dtype != dtype:
                    return None
                grad = p.grad
                if grad is not None and (
                    grad.device.type != "cpu" or grad.layout != torch.strided or not grad.is_contiguous() or grad.dtype != dtype
                ):
                    return None
        return _DTYPES[dtype] if dtype is not None else None

    def _shape_of(self, p: torch.Tensor):
        if self._matrices and p.dim() >= 2 and p.numel() > 0:
            return (p.shape[0], p.numel() // p.shape[0])
        return (p.numel(), 1)

    def _engine_add_groups(self, engine):
        for g in range(engine.num_groups, len(self.param_groups)):
            group = self.param_groups[g]
            engine.add_group([self._shape_of(p) for p in group["params"]], self._adamx_options(group, "group %d" % g))

    def _check_gradients(self):
        for g, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):
                if p.grad is not None and p.grad.shape != p.shape:
                    raise ValueError(
                        "adamx.%s: group %d parameter %d: its gradient has shape %s, the parameter %s; nothing was changed"
                        % (self._name, g, j, tuple(p.grad.shape), tuple(p.shape))
                    )

    def _engine_step(self, dtype: str, entries, options):
        engine = self._engine
        if engine is not None and engine.dtype != dtype:
            self._leave_engine()
            engine = None
        if engine is None:
            engine = self._enter_engine(dtype)
        # The shapes the engine was built with must still hold (the kernel
        # trusts them): checked against each parameter's shape as last seen.
        seen = self._seen_shapes
        for g, group in enumerate(self.param_groups):
            known = seen[g]
            for j, p in enumerate(group["params"]):
                if p.shape != known[j]:
                    shape = self._shape_of(p)
                    had = engine.shapes(g)[j]
                    if shape != had:
                        raise ValueError(
                            "adamx.%s: group %d parameter %d has shape %s, the optimizer stepped it as %d x %d; "
                            "nothing was changed" % (self._name, g, j, tuple(p.shape), had[0], had[1]))
                    known[j] = p.shape
        for g, o in enumerate(options):
            if o is not self._engine_options[g] and o != self._engine_options[g]:
                engine.set_options(g, o)
            self._engine_options[g] = o
        engine.step(entries)
        self._stale = True

    def _enter_engine(self, dtype: str):
        """Builds the engine for `dtype`, carrying over any state the pure-PyTorch path kept."""
        engine = _core.Engine(self._name, dtype)
        engine.set_threads(self._threads)
        self._engine_add_groups(engine)
        state = self.__dict__["_state_dict"]
        if any(state.get(p) for group in self.param_groups for p in group["params"]):
            engine.restore(self._restore_list(state, [gd["t"] for gd in self._group_data], self._group_data))
        self._engine = engine
        self._engine_options = [engine.options(g) for g in range(engine.num_groups)]
        self._seen_shapes = [[p.shape for p in group["params"]] for group in self.param_groups]
        return engine

    def _leave_engine(self):
        """Copies the engine's state into `state` and drops it (the pure-PyTorch path takes over)."""
        if self._engine is None:
            return
        self._copy_state_out()
        for g, group in enumerate(self.param_groups):
            data = {"t": self._engine.step_count(g)}
            data.update(self._engine.scalars(g))
            self._group_data[g] = data
        self._engine = None

    def _restore_list(self, state, ts, scalars):
        """The engine's restore() argument from torch-layout `state` (keyed by parameter)."""
        keys = _SLOT_KEYS[self._name]
        out = []
        for g, group in enumerate(self.param_groups):
            tensors, steps = [], []
            for p in group["params"]:
                entry = state.get(p) or {}
                slots = {}
                for slot, key in keys.items():
                    if key in entry:
                        slots[slot] = entry[key].detach().reshape(-1).to("cpu", _state_dtype(p.dtype)).numpy()
                tensors.append(slots)
                steps.append(int(_as_number(entry.get("step", 0))))
            out.append(
                {
                    "t": int(ts[g]),
                    "options": self._adamx_options(group, "group %d" % g),
                    "scalars": {s: float(scalars[g].get(s, _initial_scalar(s))) for s in _prototype(self._name).scalar_names},
                    "tensors": tensors,
                    "steps": steps,
                }
            )
        return out

    def _torch_step(self, options):
        from adamx import _torch_fallback

        self._check_gradients()
        self._leave_engine()
        keys = _SLOT_KEYS[self._name]
        state = self.__dict__["_state_dict"]
        stepped = [[p for p in group["params"] if p.grad is not None] for group in self.param_groups]
        # Every group's non-finite policy first: an 'error' in any group
        # changes no group, as in the C++ driver.
        for g, params in enumerate(stepped):
            _torch_fallback.check_group(self._name, options[g], params, [p.grad for p in params])
        for g, group in enumerate(self.param_groups):
            params = stepped[g]
            if not params:
                continue
            slot_states = []
            for p in params:
                entry = state[p]
                slot_states.append({slot: entry[key] for slot, key in keys.items() if key in entry})
            steps = [int(_as_number(state[p].get("step", 0))) for p in params]
            data = self._group_data[g]
            applied = _torch_fallback.step_group(
                self._name, options[g], params, [p.grad for p in params], slot_states, steps, data
            )
            for p, slots, count in zip(params, slot_states, steps):
                entry = state[p]
                # The slots the options keep now, and only those (turning
                # amsgrad off drops max_exp_avg_sq, as the C++ state does).
                for slot, key in keys.items():
                    if slot in slots:
                        entry[key] = slots[slot]
                    else:
                        entry.pop(key, None)
                entry["step"] = torch.tensor(float(count + 1 if applied else count))
            group["step"] = data["t"]
            for scalar in _prototype(self._name).scalar_names:
                if scalar in data:
                    group[scalar] = data[scalar]

    # ---- state_dict -----------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """torch's layout: per-parameter state by index, the groups with their options,
        step counts and group scalars. The tensors are copies."""
        if self._eval_mode:
            raise RuntimeError("adamx.%s: state_dict: the parameters hold the evaluation point (eval()); call train() first" % self._name)
        if self._stale:
            self._copy_state_out()  # the groups' step counts and scalars too
        out = super().state_dict()
        out["state"] = {k: {n: (v.clone() if torch.is_tensor(v) else v) for n, v in s.items()} for k, s in out["state"].items()}
        return out

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restores what state_dict() gave (also after torch.save/torch.load).
        Everything is checked first; a refused dict raises ValueError and
        changes nothing."""
        if self._eval_mode:
            raise RuntimeError("adamx.%s: load_state_dict: the parameters hold the evaluation point (eval()); call train() first" % self._name)
        where = "adamx.%s: load_state_dict: " % self._name
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(where + "expected a dict with 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(where + "the state has %d param groups, this optimizer %d" % (len(saved_groups), len(self.param_groups)))
        index = {}
        for g, (own, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(own["params"]) != len(saved["params"]):
                raise ValueError(where + "group %d has %d parameters in the state, %d here" % (g, len(saved["params"]), len(own["params"])))
            for p, i in zip(own["params"], saved["params"]):
                index[p] = i
        # The new groups: the saved options and scalars, these parameters.
        known = self._option_names()
        new_groups = []
        for g, (own, saved) in enumerate(zip(self.param_groups, saved_groups)):
            group = dict(own)
            group.update({k: v for k, v in saved.items() if k != "params"})
            group["params"] = own["params"]
            self._adamx_options({k: v for k, v in group.items() if k in known or k == "params"}, "group %d" % g)
            new_groups.append(group)
        saved_state = state_dict["state"]
        new_state = {}
        for p, i in index.items():
            entry = saved_state.get(i)
            if entry is None:
                continue
            converted = {}
            for key, value in entry.items():
                if key == "step":
                    converted[key] = torch.tensor(float(_as_number(value)))
                elif torch.is_tensor(value):
                    if value.numel() != p.numel():
                        raise ValueError(where + "parameter %d: its '%s' has %d elements, the parameter %d" % (i, key, value.numel(), p.numel()))
                    converted[key] = value.detach().to(p.device, _state_dtype(p.dtype)).reshape(p.shape).clone()
                else:
                    raise ValueError(where + "parameter %d: '%s' is not a tensor" % (i, key))
            new_state[p] = converted
        ts = [int(_as_number(saved.get("step", _max_step(saved, saved_state)))) for saved in saved_groups]
        scalars = [{s: float(saved.get(s, _initial_scalar(s))) for s in _prototype(self._name).scalar_names} for saved in saved_groups]
        # Check it all by restoring into a fresh engine (the C++ checks: shapes,
        # finite values, counts within the group's t), whichever path steps next.
        old_groups = self.param_groups
        self.param_groups = new_groups
        try:
            dtype = self._engine_dtype() or "float64"
            engine = _core.Engine(self._name, dtype)
            engine.set_threads(self._threads)
            self._engine_add_groups(engine)
            engine.restore(self._restore_list(new_state, ts, scalars))
        except Exception:
            self.param_groups = old_groups
            raise
        # Accepted: nothing below can fail.
        from collections import defaultdict

        state = defaultdict(dict)
        state.update(new_state)
        self.__dict__["_state_dict"] = state
        self._group_data = [dict(scalars[g], t=ts[g]) for g in range(len(new_groups))]
        for g, group in enumerate(new_groups):
            group["step"] = ts[g]
            group.update(scalars[g])
        if self._engine_dtype() is not None:
            self._engine = engine
            self._engine_options = [engine.options(g) for g in range(engine.num_groups)]
            self._seen_shapes = [[p.shape for p in group["params"]] for group in self.param_groups]
            self._stale = True
        else:
            self._engine = None
            self._stale = False

    # ---- misc -----------------------------------------------------------

    def gamma(self, group: int = 0) -> float:
        """γ of group `group` after the last step (1 before the first, always 1 for Adam/AdamW)."""
        if self._engine is not None:
            return self._engine.scalars(group).get("gamma", 1.0)
        return float(self._group_data[group].get("gamma", 1.0))

    def set_threads(self, threads: int) -> None:
        """Threads the C++ kernel may use per step (results do not depend on it)."""
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError("adamx.%s: threads must be an int >= 1, not %r" % (self._name, threads))
        self._threads = threads
        if self._engine is not None:
            self._engine.set_threads(threads)

    @property
    def uses_cpp_kernel(self) -> bool:
        """Whether the last step (or load) went through the C++ kernel."""
        return self._engine is not None

    def __getstate__(self):
        raise TypeError("adamx.%s cannot be pickled whole: save optimizer.state_dict() instead" % self._name)

    def __repr__(self):
        return "adamx.torch.%s(%d groups, %s)" % (
            self._name,
            len(self.param_groups),
            "C++ kernel" if self._engine is not None else "pure PyTorch",
        )


def _initial_scalar(name: str) -> float:
    return 1.0 if name == "gamma" else 0.0


def _state_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def _as_number(value) -> float:
    if torch.is_tensor(value):
        if value.numel() != 1:
            raise ValueError("adamx: a step count must be a single number")
        value = value.item()
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value != int(value):
        raise ValueError("adamx: a step count must be a whole number, not %r" % (value,))
    return value


def _max_step(saved_group, saved_state) -> int:
    counts = [int(_as_number(saved_state[i]["step"])) for i in saved_group["params"] if i in saved_state and "step" in saved_state[i]]
    return max(counts, default=0)


def _make(name: str, doc: str):
    class _Optimizer(AdamxOptimizer):
        _name = name

        def __init__(self, params, lr: Optional[float] = None, *, threads: int = 1, **options):
            if lr is not None:
                options["lr"] = lr
            super().__init__(params, threads=threads, **options)

    _Optimizer.__name__ = name
    _Optimizer.__qualname__ = name
    _Optimizer.__doc__ = doc + "\n\nDefaults: %s." % ", ".join("%s=%r" % kv for kv in _options.defaults(name).items())
    return _Optimizer


Adam = _make("Adam", "Adam (Kingma & Ba, 2015) with torch.optim.Adam's semantics (L2 weight decay).")
AdamW = _make("AdamW", "AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay.")
AdamX = _make(
    "AdamX",
    "AdamX: Adam whose second moment is scaled, per group, by γ, which follows the group's squared "
    "gradient norm against its own history (beta3: γ's averaging, beta_norm: the norm history's).",
)
RAdam = _make("RAdam", "RAdam (Liu et al., 2020): Adam with the variance of the adaptive rate rectified.")
AdaBound = _make("AdaBound", "AdaBound (Luo et al., 2019): Adam's step size clipped into bounds converging to final_lr.")
AdaMod = _make("AdaMod", "AdaMod (Ding et al., 2019): Adam's step size bounded by its own running average (beta_step).")
Lion = _make("Lion", "Lion (Chen et al., 2023): the sign of an interpolated momentum.")
Adan = _make("Adan", "Adan (Xie et al., 2024): adaptive Nesterov momentum; betas is (beta1, beta2, beta3).")
Muon = _make(
    "Muon",
    "Muon (Jordan et al., 2024): momentum orthogonalised by Newton-Schulz for matrices (groups with muon=True); "
    "AdamW for groups with muon=False.",
)


class ScheduleFreeAdamW(AdamxOptimizer):
    """Schedule-Free AdamW (Defazio et al., 2024). The parameters hold the
    training point y: call eval() before evaluating (it moves them to x) and
    train() before training again (it puts y back bit for bit)."""

    _name = "ScheduleFreeAdamW"

    def __init__(self, params, lr: Optional[float] = None, *, threads: int = 1, **options):
        if lr is not None:
            options["lr"] = lr
        super().__init__(params, threads=threads, **options)

    @torch.no_grad()
    def eval(self) -> None:
        """Moves every parameter to the point to evaluate. Does nothing in eval mode."""
        if self._eval_mode:
            return
        self._move_point(True)

    @torch.no_grad()
    def train(self) -> None:
        """Puts back the training point eval() kept. Does nothing if not in eval mode."""
        if not self._eval_mode:
            return
        self._move_point(False)

    def _move_point(self, to_eval: bool):
        dtype = self._engine_dtype()
        if dtype is not None:
            engine = self._engine
            if engine is None or engine.dtype != dtype:
                self._leave_engine()
                engine = self._enter_engine(dtype)
            points = [(g, j, p.data_ptr()) for g, group in enumerate(self.param_groups) for j, p in enumerate(group["params"])]
            (engine.eval if to_eval else engine.train)(points)
            self._stale = True
        else:
            from adamx import _torch_fallback

            self._leave_engine()
            keys = _SLOT_KEYS[self._name]
            state = self.__dict__["_state_dict"]
            for g, group in enumerate(self.param_groups):
                params = list(group["params"])
                slot_states = [{slot: state[p][key] for slot, key in keys.items() if key in state[p]} for p in params]
                move = _torch_fallback.to_eval if to_eval else _torch_fallback.to_train
                move(self._adamx_options(group, "group %d" % g), params, slot_states, self._group_data[g])
        self._eval_mode = to_eval


ScheduleFreeAdamW.__doc__ += "\n\nDefaults: %s." % ", ".join("%s=%r" % kv for kv in _options.defaults("ScheduleFreeAdamW").items())
