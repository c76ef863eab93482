"""The library's checkpoint files (adamx::save_checkpoint's format, any
version it reads) as plain dicts of NumPy arrays.

    import adamx.checkpoint

    ckpt = adamx.checkpoint.load("run.ckpt")
    ckpt["groups"][0]["tensors"][0]["slots"]["m"]      # a 1-D array
    adamx.checkpoint.save("copy.ckpt", ckpt)

A checkpoint dict:

    {"optimizer": "AdamX",         # the optimizer, as adamx._core.optimizer_names() names it
     "dtype": "float32",           # its parameters: float32, float64, bfloat16 or float16
     "state_dtype": "float32",     # its state arrays: float64 for float64 parameters, else float32
     "version": 3,                 # the file's format version (load only)
     "groups": [
         {"name": "fc1",
          "options": {"lr": 0.001, "beta1": 0.9, ...},   # the library's names
          "t": 10,                                        # the group's step count
          "scalars": {"gamma": 1.0, "h": 0.25},           # the rule's group scalars ({} for Lion)
          "tensors": [
              {"name": "weight", "shape": (rows, cols), "row_major": True,
               "slots": {"m": array, "v": array}}]}]}     # the slots the options keep

Options are named as the library names them (beta1, beta2, decay_mode, ...;
adamx._options.from_adamx gives torch's names). Each slot is a 1-D array of
state_dtype holding the tensor's rows * cols elements in its memory order
(row by row when row_major); a slot the group's options do not keep (v_max
without amsgrad) is absent.

Both functions are the C++ library's: load() builds the optimizer the file's
header names and loads the file into it with adamx::load_checkpoint, so every
check applies (magic, version, types, checksums, sizes, every value); save()
builds that optimizer from the dict, restores the state into it (which checks
it) and writes it with adamx::save_checkpoint: a temporary file, flushed to
disk, renamed over `path`, so `path` is the previous file or the complete new
one. A file that cannot be read or written, or is not a valid checkpoint,
raises CheckpointError with the library's message (ending with the operating
system's reason for file errors); a dict that is not a valid state raises
ValueError (of which CheckpointError is a kind) naming the problem, and
nothing is written.
"""
import os
import operator
from typing import Any, Dict, Mapping

import numpy as np

from adamx import _core
from adamx._core import CheckpointError

__all__ = ["load", "save", "CheckpointError"]

_DTYPES = ("float32", "float64", "bfloat16", "float16")
_TOP_KEYS = {"optimizer", "dtype", "state_dtype", "version", "groups"}
_GROUP_KEYS = {"name", "options", "t", "scalars", "tensors"}
_TENSOR_KEYS = {"name", "shape", "row_major", "slots"}


def _path(path: Any) -> str:
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError("adamx.checkpoint: a path must be a str or os.PathLike, not %s" % type(path).__name__) from None


def load(path) -> Dict[str, Any]:
    """Reads the checkpoint file `path` (format version 2 or 3) into a dict
    (see the module's documentation). CheckpointError with the library's
    message if it cannot."""
    return _core.load_checkpoint_file(_path(path))


def _fail(where: str, what: str):
    raise ValueError("adamx.checkpoint.save: %s%s" % (where, what))


def _keys(value: Any, required: set, allowed: set, where: str, what: str) -> None:
    if not isinstance(value, Mapping):
        _fail(where, "%s must be a dict, not %s" % (what, type(value).__name__))
    missing = sorted(required - set(value))
    if missing:
        _fail(where, "%s has no %s" % (what, ", ".join(repr(k) for k in missing)))
    unknown = sorted(str(k) for k in set(value) - allowed)
    if unknown:
        _fail(where, "%s has unknown keys %s (its keys: %s)" % (what, ", ".join(map(repr, unknown)), ", ".join(sorted(allowed))))


def _int(value: Any, where: str, what: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        _fail(where, "%s must be an int, not %r" % (what, value))
    try:
        return operator.index(value)
    except TypeError:
        _fail(where, "%s must be an int, not %r" % (what, value))


def _str(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str):
        _fail(where, "%s must be a str, not %r" % (what, value))
    return value


def _checked(checkpoint: Any) -> Dict[str, Any]:
    """The dict's form checked and normalised (exact key sets, Python types);
    its values are the library's to check."""
    _keys(checkpoint, {"optimizer", "dtype", "groups"}, _TOP_KEYS, "", "the checkpoint")
    optimizer = _str(checkpoint["optimizer"], "", "'optimizer'")
    if optimizer not in _core.optimizer_names():
        _fail("", "no optimizer named %r (the optimizers: %s)" % (optimizer, ", ".join(_core.optimizer_names())))
    dtype = _str(checkpoint["dtype"], "", "'dtype'")
    if dtype not in _DTYPES:
        _fail("", "dtype is %r; it must be one of %s" % (dtype, ", ".join(_DTYPES)))
    state_dtype = "float64" if dtype == "float64" else "float32"
    if "state_dtype" in checkpoint and checkpoint["state_dtype"] != state_dtype:
        _fail("", "state_dtype is %r; %s parameters have %s state" % (checkpoint["state_dtype"], dtype, state_dtype))
    groups = checkpoint["groups"]
    if not isinstance(groups, (list, tuple)):
        _fail("", "'groups' must be a list, not %s" % type(groups).__name__)
    out_groups = []
    for g, group in enumerate(groups):
        where = "group %d: " % g
        _keys(group, _GROUP_KEYS, _GROUP_KEYS, where, "the group")
        name = _str(group["name"], where, "'name'")
        if not name:
            _fail(where, "the group's name is empty (a checkpoint matches groups by name)")
        where = "group %r: " % name
        for key in ("options", "scalars"):
            if not isinstance(group[key], Mapping) or not all(isinstance(k, str) for k in group[key]):
                _fail(where, "%r must be a dict with str keys" % key)
        tensors = group["tensors"]
        if not isinstance(tensors, (list, tuple)):
            _fail(where, "'tensors' must be a list, not %s" % type(tensors).__name__)
        out_tensors = []
        for j, tensor in enumerate(tensors):
            at = where + "tensor %d: " % j
            _keys(tensor, {"name", "shape", "slots"}, _TENSOR_KEYS, at, "the tensor")
            tensor_name = _str(tensor["name"], at, "'name'")
            if not tensor_name:
                _fail(at, "the tensor's name is empty (a checkpoint matches tensors by name)")
            at = where + "tensor %r: " % tensor_name
            shape = tensor["shape"]
            if not isinstance(shape, (list, tuple)) or len(shape) != 2:
                _fail(at, "'shape' must be (rows, cols), not %r" % (shape,))
            rows, cols = (_int(n, at, "'shape'") for n in shape)
            if rows < 0 or cols < 0:
                _fail(at, "invalid shape (%d, %d)" % (rows, cols))
            row_major = tensor.get("row_major", False)
            if not isinstance(row_major, (bool, np.bool_)):
                _fail(at, "'row_major' must be a bool, not %r" % (row_major,))
            slots = tensor["slots"]
            if not isinstance(slots, Mapping) or not all(isinstance(k, str) for k in slots):
                _fail(at, "'slots' must be a dict with str keys")
            for slot, values in slots.items():
                if not isinstance(values, np.ndarray) or values.dtype != np.dtype(state_dtype):
                    _fail(at, "slot %r must be a NumPy array of %s (the state of %s parameters), not %s"
                          % (slot, state_dtype, dtype, getattr(values, "dtype", type(values).__name__)))
                if values.ndim != 1:
                    _fail(at, "slot %r must be a 1-D array (the elements in memory order), not of shape %s"
                          % (slot, values.shape))
                if values.size != rows * cols:
                    _fail(at, "slot %r has %d elements where its shape (%d, %d) has %d"
                          % (slot, values.size, rows, cols, rows * cols))
            out_tensors.append(
                {"name": tensor_name, "shape": (rows, cols), "row_major": bool(row_major), "slots": dict(slots)}
            )
        out_groups.append(
            {
                "name": name,
                "options": dict(group["options"]),
                "t": _int(group["t"], where, "'t'"),
                "scalars": dict(group["scalars"]),
                "tensors": out_tensors,
            }
        )
    return {"optimizer": optimizer, "dtype": dtype, "groups": out_groups}


def save(path, checkpoint: Mapping[str, Any]) -> None:
    """Writes `checkpoint` (a dict as load() returns; "state_dtype" and
    "version" may be left out) to the file `path` in the library's current
    format, atomically. ValueError if the dict is not a valid state
    (nothing is written), CheckpointError if the file cannot be written
    (`path` is left as it was)."""
    target = _path(path)
    _core.save_checkpoint_file(target, _checked(checkpoint))
