"""adamx's optimizers over NumPy arrays, stepped in place by the C++ kernel.

    import numpy as np
    import adamx.numpy

    w = np.zeros((3, 4), np.float32)
    b = np.zeros(4, np.float32)
    opt = adamx.numpy.AdamX([w, b], lr=1e-3, betas=(0.9, 0.999), beta3=0.99)
    # or param groups, as torch takes them:
    # opt = adamx.numpy.AdamX([{"params": [w], "lr": 1e-2}, {"params": [b]}])
    opt.step([gw, gb])          # one gradient per parameter, in order
    opt.step([[gw], [None]])    # or one list per group; None: no gradient

Parameters are float32 or float64 arrays (one dtype per optimizer),
C-contiguous and writeable: the optimizer keeps them and steps their memory
in place, with the GIL released. Gradients have their parameter's shape and
dtype and are C-contiguous; a parameter given None is skipped and its own
step count stays (as torch skips a parameter without .grad). Options are
named as torch names them (adamx._options has the mapping to the library's
names): lr, betas, eps, weight_decay, amsgrad, maximize,
decoupled_weight_decay and the library's own (beta3, beta_norm, nonfinite,
final_lr, bound_speed, beta_step, no_prox, warmup_steps, r, weight_lr_power,
muon, momentum, nesterov, adjust_lr, ns_steps), each optimizer those it has.
`param_groups` is a list of dicts as in torch: a change to an option there
(a learning-rate schedule) applies from the next step.

Everything is checked before anything changes: a wrong array (type, dtype,
shape, memory), a gradient of the wrong shape or an invalid option raises
ValueError naming it, with the C++ library's words for options and state,
and leaves the parameters, the state and the options as they were.

For Muon, a parameter of two or more dimensions is the matrix
shape[0] x (size / shape[0]), as the authors flatten a convolution's
filters; any other is a vector, which belongs in a group with muon=False.
"""
import operator
from typing import Any, Dict, List, Optional

import numpy as np

from adamx import _core, _options
from adamx._core import CheckpointError, NonFiniteGradientError

__all__ = [
    "Optimizer",
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
    "CheckpointError",
    "NonFiniteGradientError",
]

_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


class Optimizer:
    """The base of adamx.numpy's optimizers; use one of its subclasses
    (AdamX, Adam, ...), which take the optimizer's options as keywords."""

    _name = ""

    def __init__(self, params, **options: Any):
        if not self._name:
            raise TypeError("adamx.numpy.Optimizer is a base class: use adamx.numpy.AdamX, Adam, ...")
        name = self._name
        self._prototype = _core.Engine(name, "float64")  # validates options before the dtype is known
        self.defaults = self._full_options(options, "the optimizer's options")
        groups = self._groups_of(params)
        arrays = [a for group in groups for a in group["params"]]
        if not arrays:
            raise ValueError(self._where() + "the optimizer got an empty parameter list")
        # The first parameter's dtype is the optimizer's (checked below).
        self._dtype = arrays[0].dtype if isinstance(arrays[0], np.ndarray) and arrays[0].dtype in _DTYPES else None
        self.param_groups: List[Dict[str, Any]] = []
        self._shapes: List[List[tuple]] = []  # each parameter's shape when added
        self._applied: List[Dict[str, Any]] = []  # the options the engine holds, in the library's names
        self._engine = None
        checked = [self._checked_group(group, g, []) for g, group in enumerate(groups)]
        self._engine = _core.Engine(name, _DTYPES[self._dtype])
        for group, adamx_options in checked:
            self._add(group, adamx_options)

    # ---- construction ------------------------------------------------------

    def _where(self, function: str = "") -> str:
        return "adamx.%s: %s" % (self._name, function + ": " if function else "")

    def _full_options(self, options: Dict[str, Any], what: str) -> Dict[str, Any]:
        """defaults(name) updated by `options`, checked (ValueError)."""
        merged = _options.defaults(self._name)
        try:
            _options.to_adamx(self._name, options)  # unknown names
        except ValueError as error:
            raise ValueError("%s (in %s)" % (error, what)) from None
        merged.update(options)
        self._prototype.checked_options(_options.to_adamx(self._name, merged))
        return merged

    def _groups_of(self, params) -> List[Dict[str, Any]]:
        if isinstance(params, np.ndarray):
            raise ValueError(self._where() + "params must be a list of arrays or of param-group dicts, not one array")
        if isinstance(params, dict):
            params = [params]
        try:
            params = list(params)
        except TypeError:
            raise ValueError(
                self._where() + "params must be a list of arrays or of param-group dicts, not %s" % type(params).__name__
            ) from None
        if not params:
            raise ValueError(self._where() + "the optimizer got an empty parameter list")
        if all(isinstance(p, dict) for p in params):
            return [self._group_dict(p, g) for g, p in enumerate(params)]
        if any(isinstance(p, dict) for p in params):
            raise ValueError(self._where() + "params must be all arrays or all param-group dicts")
        return [{"params": params}]

    def _group_dict(self, group: Dict[str, Any], g: int) -> Dict[str, Any]:
        if not isinstance(group, dict):
            raise ValueError(self._where() + "a param group must be a dict, not %s" % type(group).__name__)
        if "params" not in group:
            raise ValueError(self._where() + "param group %d has no 'params'" % g)
        params = group["params"]
        if isinstance(params, np.ndarray):
            params = [params]
        else:
            try:
                params = list(params)
            except TypeError:
                raise ValueError(
                    self._where() + "the 'params' of param group %d must be an array or a list of arrays" % g
                ) from None
        out = dict(group)
        out["params"] = params
        return out

    def _check_parameter(self, a: Any, where: str) -> None:
        if not isinstance(a, np.ndarray):
            raise ValueError(where + "is %s, not a NumPy array" % type(a).__name__)
        if a.dtype not in _DTYPES:
            raise ValueError(where + "has dtype %s; adamx.numpy steps float32 and float64 arrays" % a.dtype)
        if self._dtype is not None and a.dtype != self._dtype:
            raise ValueError(
                where + "has dtype %s, the optimizer's parameters %s (one dtype per optimizer)" % (a.dtype, self._dtype)
            )
        if not a.flags.c_contiguous:
            raise ValueError(
                where + "is not C-contiguous (the optimizer steps the array's memory in place; "
                "a contiguous copy would be stepped instead of it)"
            )
        if not a.flags.aligned:
            raise ValueError(where + "is not aligned to its dtype")
        if not a.flags.writeable:
            raise ValueError(where + "is read-only")

    def _check_disjoint(self, arrays: List[tuple]) -> None:
        """`arrays`: (array, description); ValueError if two share memory."""
        spans = sorted(
            (_address(a), _address(a) + a.nbytes, where) for a, where in arrays if a.nbytes > 0
        )
        for (start, end, first), (next_start, _, second) in zip(spans, spans[1:]):
            if next_start < end:
                raise ValueError(self._where() + "%s and %s share memory" % (first.rstrip(": "), second.rstrip(": ")))

    def _engine_shape(self, a: np.ndarray) -> tuple:
        """The (rows, cols) the engine sees: a column of the elements for
        every element-wise optimizer; for Muon, an array of two or more
        dimensions is the matrix shape[0] x (size / shape[0]), which the
        engine reads row by row (C order), as the libtorch adapter does."""
        if self._prototype.steps_matrices and a.ndim >= 2 and a.size > 0:
            rows = a.shape[0]
            return (rows, a.size // rows)
        return (a.size, 1)

    def _checked_group(self, group: Dict[str, Any], g: int, existing: List[tuple]):
        """A param group dict checked whole: its arrays and its options
        (filled with the defaults). Returns it with the options in the
        library's names, validated."""
        where = self._where()
        try:
            _options.to_adamx(self._name, group)
        except ValueError as error:
            raise ValueError("%s (in param group %d)" % (error, g)) from None
        full = dict(self.defaults)
        full.update(group)
        full["params"] = list(group["params"])
        arrays = list(existing)
        for j, a in enumerate(full["params"]):
            self._check_parameter(a, where + "group %d parameter %d: " % (g, j))
            arrays.append((a, "group %d parameter %d" % (g, j)))
        self._check_disjoint(arrays)
        adamx_options = self._prototype.checked_options(_options.to_adamx(self._name, full), "group%d" % g)
        for j, a in enumerate(full["params"]):
            problem = self._prototype.tensor_problem(adamx_options, self._engine_shape(a))
            if problem:
                raise ValueError(where + "group %d parameter %d of shape %s %s" % (g, j, a.shape, problem))
        return full, adamx_options

    def _add(self, group: Dict[str, Any], adamx_options: Dict[str, Any]) -> None:
        self._engine.add_group([self._engine_shape(a) for a in group["params"]], adamx_options)
        self.param_groups.append(group)
        self._shapes.append([a.shape for a in group["params"]])
        self._applied.append(self._engine.options(self._engine.num_groups - 1))

    def _all_parameters(self) -> List[tuple]:
        return [
            (a, "group %d parameter %d" % (g, j))
            for g, group in enumerate(self.param_groups)
            for j, a in enumerate(group["params"])
        ]

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Adds a group, as torch's add_param_group does: its arrays (the
        optimizer's dtype, sharing no memory with the others) and options
        (the optimizer's defaults for those not given) are checked first."""
        g = len(self.param_groups)
        group = self._group_dict(param_group, g)
        full, adamx_options = self._checked_group(group, g, self._all_parameters())
        self._add(full, adamx_options)

    # ---- options -----------------------------------------------------------

    def _group_options(self) -> List[Dict[str, Any]]:
        """Every group's options as param_groups holds them now, in the
        library's names, validated (ValueError, nothing changed)."""
        out = []
        for g, group in enumerate(self.param_groups):
            adamx_options = self._engine.checked_options(_options.to_adamx(self._name, group, strict=False), "group%d" % g)
            if adamx_options != self._applied[g]:
                for j, a in enumerate(group["params"]):
                    problem = self._engine.tensor_problem(adamx_options, self._engine_shape(a))
                    if problem:
                        raise ValueError(self._where() + "group %d parameter %d of shape %s %s" % (g, j, a.shape, problem))
            out.append(adamx_options)
        return out

    def _apply_options(self, wanted: List[Dict[str, Any]]) -> List[tuple]:
        """Gives the engine every group's options that changed; returns what
        undoes it (for a step that then fails)."""
        undo = []
        try:
            for g, adamx_options in enumerate(wanted):
                if adamx_options != self._applied[g]:
                    self._engine.set_options(g, adamx_options)
                    undo.append((g, self._applied[g]))
                    self._applied[g] = adamx_options
        except BaseException:
            self._undo_options(undo)
            raise
        return undo

    def _undo_options(self, undo: List[tuple]) -> None:
        for g, adamx_options in reversed(undo):
            self._engine.set_options(g, adamx_options)
            self._applied[g] = adamx_options

    # ---- stepping ----------------------------------------------------------

    def _checked_parameters(self, function: str) -> None:
        """The parameters must still be what they were when added."""
        for g, group in enumerate(self.param_groups):
            params = group["params"]
            if len(params) != len(self._shapes[g]):
                raise ValueError(
                    self._where(function) + "group %d has %d parameters, the optimizer was given %d"
                    % (g, len(params), len(self._shapes[g]))
                )
            for j, a in enumerate(params):
                where = self._where(function) + "group %d parameter %d: " % (g, j)
                self._check_parameter(a, where)
                if a.shape != self._shapes[g][j]:
                    raise ValueError(where + "has shape %s, it had %s when added" % (a.shape, self._shapes[g][j]))

    def _gradient_lists(self, grads) -> List[List[Optional[np.ndarray]]]:
        where = self._where("step")
        if isinstance(grads, np.ndarray):
            raise ValueError(where + "grads must be a list (one gradient per parameter, or one list per group)")
        try:
            grads = list(grads)
        except TypeError:
            raise ValueError(where + "grads must be a list, not %s" % type(grads).__name__) from None
        counts = [len(group["params"]) for group in self.param_groups]
        if len(grads) == len(counts) and grads and all(isinstance(x, (list, tuple)) for x in grads):
            out = [list(x) for x in grads]
            for g, (got, count) in enumerate(zip(out, counts)):
                if len(got) != count:
                    raise ValueError(where + "group %d has %d parameters but %d gradients" % (g, count, len(got)))
            return out
        if len(grads) != sum(counts):
            raise ValueError(
                where + "%d gradients for %d parameters (give one per parameter, None for a parameter without one, "
                "or one list per group)" % (len(grads), sum(counts))
            )
        out, start = [], 0
        for count in counts:
            out.append(grads[start : start + count])
            start += count
        return out

    def step(self, grads) -> List[bool]:
        """One step of every parameter given a gradient, in place.

        `grads`: one gradient per parameter, in the order of param_groups
        (group after group), or one list per group; None for a parameter
        without a gradient this step (it is skipped, its state and its own
        step count kept). Returns per group whether it stepped (False for a
        group without gradients, or one a nonfinite="skip" policy skipped).
        Everything is checked first; ValueError (or NonFiniteGradientError
        with nonfinite="error") leaves parameters, state and options as they
        were."""
        lists = self._gradient_lists(grads)
        self._checked_parameters("step")
        entries = []
        for g, (group, group_grads) in enumerate(zip(self.param_groups, lists)):
            for j, (a, grad) in enumerate(zip(group["params"], group_grads)):
                if grad is None:
                    continue
                where = self._where("step") + "group %d parameter %d: " % (g, j)
                if not isinstance(grad, np.ndarray):
                    raise ValueError(where + "the gradient is %s, not a NumPy array" % type(grad).__name__)
                if grad.dtype != self._dtype:
                    raise ValueError(where + "the gradient has dtype %s, the parameter %s" % (grad.dtype, self._dtype))
                if grad.shape != a.shape:
                    raise ValueError(where + "the gradient has shape %s, the parameter %s" % (grad.shape, a.shape))
                if not grad.flags.c_contiguous or not grad.flags.aligned:
                    raise ValueError(where + "the gradient is not C-contiguous and aligned")
                entries.append((g, j, _address(a), _address(grad)))
        wanted = self._group_options()
        undo = self._apply_options(wanted)
        try:
            return list(self._engine.step(entries))
        except BaseException:
            self._undo_options(undo)
            raise

    def set_threads(self, threads: int) -> None:
        """Threads a step may use (default 1); results are bitwise the same
        for any count."""
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(self._where("set_threads") + "threads must be an int >= 1, not %r" % (threads,))
        self._engine.set_threads(threads)

    # ---- reading the state -------------------------------------------------

    @property
    def name(self) -> str:
        """The optimizer's name in the library ("AdamX")."""
        return self._name

    @property
    def dtype(self) -> np.dtype:
        """The parameters' dtype."""
        return self._dtype

    def _group_index(self, group: int) -> int:
        group = operator.index(group)
        if not 0 <= group < len(self.param_groups):
            raise IndexError(self._where() + "group %d does not exist (there are %d)" % (group, len(self.param_groups)))
        return group

    def gamma(self, group: int = 0) -> float:
        """AdamX's gamma of `group` (1 for an optimizer without one)."""
        return float(self._engine.scalars(self._group_index(group)).get("gamma", 1.0))

    def step_count(self, group: int = 0) -> int:
        """How many steps `group` has taken."""
        return int(self._engine.step_count(self._group_index(group)))

    def _refuse_eval_mode(self, function: str) -> None:
        if self._engine.in_eval_mode:
            raise RuntimeError(
                self._where(function) + "the parameters hold the evaluation point (eval()); call train() first"
            )

    def state_dict(self) -> Dict[str, Any]:
        """The whole state as plain data, in torch's layout:

            {"optimizer": "AdamX", "dtype": "float32",
             "state": {i: {"step": int, "m": array, "v": array, ...}},
             "param_groups": [{torch-style options..., "params": [i, ...],
                               "step": t, "gamma": ..., "h": ...}]}

        i numbers the parameters in order, group after group; each slot of
        the optimizer's rule that the group keeps (m, v; v_max with amsgrad;
        Adan's n and prev_grad, ...) is a new array of the parameter's shape;
        a group's step count and its scalars (AdamX's gamma and h, ...) are
        in its param_groups entry. Options changed in param_groups since the
        last step are applied (and so validated) first."""
        self._refuse_eval_mode("state_dict")
        self._apply_options(self._group_options())
        state: Dict[int, Dict[str, Any]] = {}
        groups = []
        index = 0
        for g, group in enumerate(self.param_groups):
            steps = self._engine.parameter_steps(g)
            indices = []
            for j, a in enumerate(group["params"]):
                entry: Dict[str, Any] = {"step": int(steps[j])}
                for slot, values in self._engine.tensor_state(g, j).items():
                    entry[slot] = values.reshape(a.shape)
                state[index] = entry
                indices.append(index)
                index += 1
            saved = _options.from_adamx(self._name, self._applied[g])
            saved["params"] = indices
            saved["step"] = int(self._engine.step_count(g))
            saved.update({k: float(v) for k, v in self._engine.scalars(g).items()})
            groups.append(saved)
        return {"optimizer": self._name, "dtype": _DTYPES[self._dtype], "state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restores a state_dict() of an optimizer of the same kind, dtype and
        groups (as many, with as many parameters of the same shapes): the
        options (the library's defaults for any not given), step counts,
        scalars and every slot, bit for bit. Everything
        is checked first (ValueError, with the library's words for values);
        nothing changes unless all of it is valid."""
        where = self._where("load_state_dict")
        self._refuse_eval_mode("load_state_dict")
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(where + "a state dict has 'state' and 'param_groups'")
        for key, own in (("optimizer", self._name), ("dtype", _DTYPES[self._dtype])):
            if key in state_dict and state_dict[key] != own:
                raise ValueError(where + "the state is of %s %r, this optimizer's %r" % (key, state_dict[key], own))
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
            raise ValueError(where + "'param_groups' must be a list and 'state' a dict")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(where + "the state has %d groups, this optimizer %d" % (len(saved_groups), len(self.param_groups)))
        scalar_names = list(self._engine.scalar_names)
        state_dtype = self._dtype  # float32 and float64 parameters keep state of their own type
        restored = []
        for g, (own, saved) in enumerate(zip(self.param_groups, saved_groups)):
            at = where + "group %d: " % g
            if not isinstance(saved, dict) or "params" not in saved or "step" not in saved:
                raise ValueError(at + "each param group of a state dict has 'params' and 'step'")
            indices = list(saved["params"])
            if len(indices) != len(own["params"]):
                raise ValueError(at + "the state has %d parameters, this group %d" % (len(indices), len(own["params"])))
            options = {k: v for k, v in saved.items() if k not in ("params", "step") and k not in scalar_names}
            try:
                adamx_options = _options.to_adamx(self._name, options)
            except ValueError as error:
                raise ValueError("%s (in group %d of the state dict)" % (error, g)) from None
            missing = [s for s in scalar_names if s not in saved]
            if missing:
                raise ValueError(at + "the state has no %s" % ", ".join(repr(s) for s in missing))
            tensors, steps = [], []
            for j, (i, a) in enumerate(zip(indices, own["params"])):
                entry = saved_state.get(i)
                if not isinstance(entry, dict) or "step" not in entry:
                    raise ValueError(at + "no state (with its 'step') for parameter %d (state key %r)" % (j, i))
                slots = {}
                for slot, values in entry.items():
                    if slot == "step":
                        continue
                    if not isinstance(values, np.ndarray) or values.dtype != state_dtype or values.shape != a.shape:
                        raise ValueError(
                            at + "parameter %d: %r must be a %s array of shape %s, like the parameter"
                            % (j, slot, state_dtype, a.shape)
                        )
                    slots[slot] = np.ascontiguousarray(values).reshape(-1)
                tensors.append(slots)
                steps.append(_int(entry["step"], at + "parameter %d: 'step'" % j))
            restored.append(
                {
                    "t": _int(saved["step"], at + "'step'"),
                    "options": adamx_options,
                    "scalars": {s: saved[s] for s in scalar_names},
                    "tensors": tensors,
                    "steps": steps,
                }
            )
        # The library's restore fills options not given with its defaults
        # and checks every value, count and size before it changes anything.
        self._engine.restore(restored)
        for g, group in enumerate(self.param_groups):
            self._applied[g] = self._engine.options(g)
            group.update(_options.from_adamx(self._name, self._applied[g]))

    def __repr__(self) -> str:
        lines = ["%s (adamx.numpy, %s)" % (self._name, self._dtype)]
        for g, group in enumerate(self.param_groups):
            options = ", ".join("%s=%r" % (k, v) for k, v in group.items() if k != "params")
            lines.append("  group %d: %d parameters; %s" % (g, len(group["params"]), options))
        return "\n".join(lines)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError("%s must be an int, not %r" % (what, value))
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError("%s must be an int, not %r" % (what, value)) from None


class Adam(Optimizer):
    _name = "Adam"


class AdamW(Optimizer):
    _name = "AdamW"


class AdamX(Optimizer):
    _name = "AdamX"


class RAdam(Optimizer):
    _name = "RAdam"


class AdaBound(Optimizer):
    _name = "AdaBound"


class AdaMod(Optimizer):
    _name = "AdaMod"


class Lion(Optimizer):
    _name = "Lion"


class Adan(Optimizer):
    _name = "Adan"


class ScheduleFreeAdamW(Optimizer):
    """Schedule-Free AdamW: the parameters hold the training point y; eval()
    moves them to the evaluation point x, train() back to y (bit for bit).
    In between, step(), state_dict() and load_state_dict() refuse."""

    _name = "ScheduleFreeAdamW"

    def _move(self, function: str) -> None:
        self._checked_parameters(function)
        points = [
            (g, j, _address(a)) for g, group in enumerate(self.param_groups) for j, a in enumerate(group["params"])
        ]
        getattr(self._engine, function)(points)

    def eval(self) -> None:
        """Writes the evaluation point x into the parameters (keeping y)."""
        self._move("eval")

    def train(self) -> None:
        """Puts the training point y back into the parameters."""
        self._move("train")


class Muon(Optimizer):
    """Muon: groups with muon=True step matrices (arrays of two or more
    dimensions, shape[0] x size/shape[0]) along their orthogonalised
    momentum; groups with muon=False step anything else (biases, gains) by
    AdamW, e.g. {"params": [b], "muon": False, "lr": 3e-4, "betas": (0.9,
    0.95), "eps": 1e-10}."""

    _name = "Muon"


_DOC_OPTIMIZERS = [Adam, AdamW, AdamX, RAdam, AdaBound, AdaMod, Lion, Adan, ScheduleFreeAdamW, Muon]
for _cls in _DOC_OPTIMIZERS:
    _defaults = ", ".join("%s=%r" % kv for kv in _options.defaults(_cls._name).items())
    _intro = (_cls.__doc__ + "\n\n") if _cls.__doc__ else ""
    _cls.__doc__ = "%sadamx's %s over NumPy arrays: %s(params, **options).\n\nDefaults: %s." % (
        _intro,
        _cls._name,
        _cls._name,
        _defaults,
    )
del _cls, _defaults, _intro
