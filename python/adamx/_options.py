"""Options between torch's names and the library's.

torch calls the moment rates ``betas`` (a pair; Adan's is a triple) and the
weight-decay form ``decoupled_weight_decay``; the library has ``beta1``,
``beta2`` (``beta3``) and ``decay_mode`` ("l2" or "decoupled"), and counts
Newton-Schulz iterations (``ns_steps``) as a number. Every other option has
the same name in both. adamx.torch and adamx.numpy take torch's names.
"""
from typing import Any, Dict

from adamx import _core

_ENGINES: Dict[str, Any] = {}


def _engine(name: str):
    if name not in _ENGINES:
        _ENGINES[name] = _core.Engine(name, "float64")
    return _ENGINES[name]


def _betas_of(name: str) -> tuple:
    # Adan's three rates are its betas (as its authors' code takes them);
    # elsewhere AdamX's beta3 is an option of its own.
    return ("beta1", "beta2", "beta3") if name == "Adan" else ("beta1", "beta2")


def from_adamx(name: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """The library's options of optimizer `name` in torch's names."""
    betas = _betas_of(name)
    out: Dict[str, Any] = {}
    if all(b in options for b in betas):
        out["betas"] = tuple(options[b] for b in betas)
    for key, value in options.items():
        if key in betas:
            continue
        if key == "decay_mode":
            out["decoupled_weight_decay"] = value == "decoupled"
        elif key == "ns_steps":
            out["ns_steps"] = int(value)
        else:
            out[key] = value
    return out


def to_adamx(name: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """torch-named options of optimizer `name` in the library's names (only
    those given; the library validates the values)."""
    betas = _betas_of(name)
    out: Dict[str, Any] = {}
    for key, value in options.items():
        if key == "betas":
            try:
                values = tuple(value)
            except TypeError:
                raise ValueError("adamx.%s: betas must be a tuple of %d numbers, not %r" % (name, len(betas), value)) from None
            if len(values) != len(betas):
                raise ValueError("adamx.%s: betas must be a tuple of %d numbers, not %r" % (name, len(betas), value))
            out.update(zip(betas, (float(v) if hasattr(v, "__float__") and not isinstance(v, bool) else v for v in values)))
        elif key == "decoupled_weight_decay":
            if not isinstance(value, bool):
                raise ValueError("adamx.%s: decoupled_weight_decay must be a bool, not %r" % (name, value))
            out["decay_mode"] = "decoupled" if value else "l2"
        elif key == "ns_steps":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
                raise ValueError("adamx.%s: ns_steps must be a whole number, not %r" % (name, value))
            out["ns_steps"] = float(value)
        else:
            out[key] = value
    return out


def defaults(name: str) -> Dict[str, Any]:
    """Optimizer `name`'s defaults in torch's names (the library's defaults)."""
    return from_adamx(name, dict(_engine(name).default_options()))
