"""Option names between torch's conventions and the library's.

adamx.torch and adamx.numpy take options as torch names them ("torch-style");
the C++ library (adamx._core.Engine, checkpoint files) names them as its
option structs do ("adamx"). The two differ in four places only:

    torch-style                         adamx
    betas=(b1, b2)                      beta1=b1, beta2=b2
    betas=(b1, b2, b3)   (Adan only)    beta1=b1, beta2=b2, beta3=b3
    decoupled_weight_decay=True/False   decay_mode="decoupled"/"l2"
    ns_steps=5, warmup_steps=0 (ints)   the same names, as numbers

Every other option has the same name, value and meaning on both sides: lr,
eps, weight_decay, amsgrad, maximize, nonfinite ("propagate", "skip",
"error"), AdamX's beta3 and beta_norm (which Adam, AdamW and the baselines
have too, beta3 fixed at 1), AdaBound's final_lr and bound_speed, AdaMod's
beta_step, Adan's no_prox, Schedule-Free AdamW's r and weight_lr_power,
Muon's muon, momentum, nesterov and adjust_lr ("original",
"match_rms_adamw").

Which options an optimizer has, their order and their defaults come from the
library itself (Engine.default_options), so the two sides cannot disagree and
an option added to the library appears here with no edit. This module only
renames: values are not validated beyond their form (betas' length,
decoupled_weight_decay a bool); the library validates them (Engine's
checked_options, add_group, set_options, restore) and its ValueError names
the problem. Every optimizer that has decay_mode defaults to the library's
choice: decoupled for AdamW, L2 for the others (torch's Adam and AdamW
defaults).
"""
from typing import Any, Dict, List, Mapping, Tuple

from adamx import _core

__all__ = ["defaults", "from_adamx", "option_names", "to_adamx"]

# Options whose library value is a whole number held as a double; torch-style
# they are ints.
_WHOLE_NUMBERS = ("ns_steps", "warmup_steps")

# Per optimizer: the library's defaults (a dict in declaration order).
_LIBRARY_DEFAULTS: Dict[str, Dict[str, Any]] = {}


def _library_defaults(name: str) -> Dict[str, Any]:
    if name not in _LIBRARY_DEFAULTS:
        if name not in _core.optimizer_names():
            raise ValueError("adamx: no optimizer named %r (the optimizers: %s)" % (name, ", ".join(_core.optimizer_names())))
        _LIBRARY_DEFAULTS[name] = dict(_core.Engine(name, "float64").default_options())
    return _LIBRARY_DEFAULTS[name]


def _betas_of(name: str) -> Tuple[str, ...]:
    """The library's options that torch-style `betas` holds, in order: Adan's
    three rates (as its authors' code takes them), elsewhere beta1 and beta2
    (AdamX's beta3 is an option of its own there); () if the optimizer has
    no beta1 and beta2."""
    library = _library_defaults(name)
    betas = ("beta1", "beta2", "beta3") if name == "Adan" else ("beta1", "beta2")
    return betas if all(b in library for b in betas) else ()


def _torch_name(name: str, key: str) -> str:
    """The torch-style name of library option `key` of optimizer `name`."""
    betas = _betas_of(name)
    if key in betas:
        return "betas"
    if key == "decay_mode":
        return "decoupled_weight_decay"
    return key


def option_names(name: str) -> List[str]:
    """Optimizer `name`'s options in torch's names, in the library's order
    (betas where beta1 is declared)."""
    out: List[str] = []
    for key in _library_defaults(name):
        torch_name = _torch_name(name, key)
        if torch_name not in out:
            out.append(torch_name)
    return out


def defaults(name: str) -> Dict[str, Any]:
    """Optimizer `name`'s defaults in torch's names (a new dict each call).
    They are the library's: e.g. AdamW's decoupled_weight_decay=True and
    weight_decay=0.01, Muon's lr=0.02 (for its muon=False groups the authors
    use lr=3e-4, betas=(0.9, 0.95), eps=1e-10, which such a group should set)."""
    return from_adamx(name, _library_defaults(name))


def _plain(value: Any) -> Any:
    """NumPy's 0-d booleans as Python bools (the library takes a bool option
    as a bool, and a number as anything with __float__)."""
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    if kind == "b" and getattr(value, "shape", None) == ():
        return bool(value)
    return value


def to_adamx(name: str, group: Mapping[str, Any], strict: bool = True) -> Dict[str, Any]:
    """The torch-style options in `group` in the library's names, for
    optimizer `name`: only the options present (the library fills in the
    others with its defaults). "params" is skipped. Any other key that is not
    one of the optimizer's torch-style options (option_names) raises
    ValueError naming it if `strict`, and is skipped if not (torch lets param
    groups carry keys of their own, e.g. "initial_lr" from its schedulers).

    ValueError also if betas is not a sequence of 2 numbers (3 for Adan) or
    decoupled_weight_decay not a bool; every value is otherwise passed on as
    given, for the library to validate."""
    betas = _betas_of(name)
    known = option_names(name)
    out: Dict[str, Any] = {}
    unknown: List[str] = []
    for key, value in group.items():
        if key == "params":
            continue
        if key not in known:
            unknown.append(str(key))
            continue
        if key == "betas":
            form = "a tuple of %d numbers (%s)" % (len(betas), ", ".join(betas))
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or not hasattr(value, "__iter__"):
                raise ValueError("adamx.%s: betas must be %s, not %r" % (name, form, value))
            values = tuple(value)
            if len(values) != len(betas):
                raise ValueError("adamx.%s: betas must be %s, not %r" % (name, form, value))
            for beta, v in zip(betas, values):
                v = _plain(v)
                # Numbers of other types (NumPy's, a 0-d tensor) as floats;
                # a bool or a non-number goes on for the library to refuse.
                out[beta] = float(v) if hasattr(v, "__float__") and not isinstance(v, bool) else v
        elif key == "decoupled_weight_decay":
            value = _plain(value)
            if not isinstance(value, bool):
                raise ValueError("adamx.%s: decoupled_weight_decay must be a bool, not %r" % (name, value))
            out["decay_mode"] = "decoupled" if value else "l2"
        else:
            out[key] = _plain(value)
    if unknown and strict:
        raise ValueError(
            "adamx.%s: no option named %s (its options: %s)"
            % (name, ", ".join(repr(k) for k in unknown), ", ".join(known))
        )
    return out


def from_adamx(name: str, options: Mapping[str, Any]) -> Dict[str, Any]:
    """The library's options of optimizer `name` (a full dict as
    Engine.options gives it, or any part of it that holds betas' parts
    together) in torch's names, in the same order. ValueError for a name the
    optimizer does not have, or betas' parts apart."""
    betas = _betas_of(name)
    library = _library_defaults(name)
    present = [b for b in betas if b in options]
    if present and len(present) != len(betas):
        raise ValueError(
            "adamx.%s: torch-style betas needs %s together, not %s alone" % (name, ", ".join(betas), ", ".join(present))
        )
    out: Dict[str, Any] = {}
    for key, value in options.items():
        if key not in library:
            raise ValueError("adamx.%s: no option named %r (its options: %s)" % (name, key, ", ".join(library)))
        if key in betas:
            if "betas" not in out:
                out["betas"] = tuple(options[b] for b in betas)
        elif key == "decay_mode":
            if value not in ("decoupled", "l2"):
                raise ValueError("adamx.%s: decay_mode is %r; it must be 'l2' or 'decoupled'" % (name, value))
            out["decoupled_weight_decay"] = value == "decoupled"
        elif key in _WHOLE_NUMBERS and isinstance(value, float) and value.is_integer():
            out[key] = int(value)
        else:
            out[key] = value
    return out
