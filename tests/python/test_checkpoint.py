"""adamx.checkpoint: the library's checkpoint files as dicts of NumPy arrays.

- the committed checkpoints written by the C++ library (format version 2,
  tests/data/checkpoints_v2, tests/data/README.md) load with their structure;
- a file the C++ library writes (adamx::save_checkpoint through the engine)
  goes through load() and save() byte for byte, for every optimizer and
  parameter type;
- truncated, corrupt, mismatched and missing files raise CheckpointError with
  the library's message (the OS's reason for file errors), a save that
  fails leaves the existing file as it was, and an invalid dict is refused
  with ValueError before anything is written.
"""
import errno
import os
import struct
import zlib

import numpy as np
import pytest

import adamx
import adamx.checkpoint as ckpt
from adamx import _core
from adamx.checkpoint import CheckpointError

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "checkpoints_v2")
V2_FILES = {
    # file: (optimizer, dtype, state dtype, options that differ from the defaults per group)
    "adamx_float.ckpt": ("AdamX", "float32", "float32", [{"weight_decay": 0.01}, {"lr": 0.003, "amsgrad": True}]),
    "adam_double.ckpt": ("Adam", "float64", "float64", [{"weight_decay": 0.01, "maximize": True}, {}]),
    "adamw_float.ckpt": ("AdamW", "float32", "float32", [{}, {}]),
    "adamod_bfloat16.ckpt": ("AdaMod", "bfloat16", "float32", [{"beta_step": 0.9}, {}]),
    "radam_half.ckpt": ("RAdam", "float16", "float32", [{}, {"beta1": 0.8, "beta2": 0.99}]),
    "adabound_double.ckpt": ("AdaBound", "float64", "float64", [{"amsgrad": True}, {"final_lr": 0.05}]),
}
# The model of those files (tests/test_checkpoint_v2_files.cpp): name, shape, row_major.
V2_GROUPS = [
    ("layer0", [("weight", (3, 4), True), ("bias", (4, 1), False)]),
    ("layer1", [("w", (2, 5), False), ("tiny", (3, 1), False)]),
]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def assert_same(a, b):
    """Two checkpoint dicts hold the same values, arrays and doubles bit for bit."""
    assert type(a) is type(b) or (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)))
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b)
    else:
        assert a == b


# ---- files written by the C++ library -------------------------------------------


@pytest.mark.parametrize("name", sorted(V2_FILES))
def test_committed_files_load_with_their_structure(name):
    optimizer, dtype, state_dtype, changed = V2_FILES[name]
    data = ckpt.load(os.path.join(DATA, name))
    assert set(data) == {"optimizer", "dtype", "state_dtype", "version", "groups"}
    assert (data["optimizer"], data["dtype"], data["state_dtype"], data["version"]) == (optimizer, dtype, state_dtype, 2)
    defaults = _core.Engine(optimizer, "float64").default_options()
    assert [g["name"] for g in data["groups"]] == [g for g, _ in V2_GROUPS]
    for group, (_, tensors), changes in zip(data["groups"], V2_GROUPS, changed):
        assert group["t"] == 10
        assert {k: v for k, v in group["options"].items() if v != defaults[k]} == changes
        assert set(group["scalars"]) == {"gamma", "h"}
        assert group["scalars"]["h"] > 0
        if optimizer == "AdamX":
            assert group["scalars"]["gamma"] != 1.0
        else:
            assert group["scalars"]["gamma"] == 1.0
        assert [(t["name"], t["shape"], t["row_major"]) for t in group["tensors"]] == tensors
        slots = ["m", "v"] + (["v_max"] if group["options"]["amsgrad"] else []) + (["step_avg"] if optimizer == "AdaMod" else [])
        for tensor in group["tensors"]:
            assert list(tensor["slots"]) == slots
            rows, cols = tensor["shape"]
            for values in tensor["slots"].values():
                assert values.dtype == np.dtype(state_dtype) and values.shape == (rows * cols,)
                assert np.all(np.isfinite(values))
            assert np.all(tensor["slots"]["v"] >= 0)
        assert any(np.any(tensor["slots"]["m"] != 0) for tensor in group["tensors"])


@pytest.mark.parametrize("name", sorted(V2_FILES))
def test_save_then_load_is_bitwise(name, tmp_path):
    data = ckpt.load(os.path.join(DATA, name))
    path = tmp_path / "copy.ckpt"
    ckpt.save(path, data)
    again = ckpt.load(path)
    assert again.pop("version") == 3 and data.pop("version") == 2  # saving writes the current format
    assert_same(again, data)
    ckpt.save(str(path), again)  # a str path too; the same bytes again
    first = read(path)
    ckpt.save(path, ckpt.load(path))
    assert read(path) == first
    assert not os.path.exists(str(path) + ".partial")


def engine_checkpoint(name, dtype, seed=0):
    """The bytes adamx::save_checkpoint writes for an engine of `name` over
    `dtype` stepped a few times (bfloat16 memory as uint16 bit patterns)."""
    e = _core.Engine(name, dtype)
    storage = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "bfloat16": np.uint16}[dtype]
    rng = np.random.default_rng(seed)
    if name == "Muon":
        shapes = [[(3, 4), (4, 2)], [(5, 1), (2, 1)]]
        options = [{}, {"muon": False, "lr": 3e-4}]
    else:
        shapes = [[(3, 4), (5, 1)], [(2, 1)]]
        options = [{"amsgrad": True} if "amsgrad" in e.default_options() else {}, {}]
    params = []
    for g, (group_shapes, group_options) in enumerate(zip(shapes, options)):
        e.add_group(group_shapes, group_options)
        params.append([rng.uniform(-1, 1, r * c).astype(np.float32) for r, c in group_shapes])

    def as_memory(values):
        if storage is np.uint16:  # bfloat16: the upper half of a float32
            return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        return values.astype(storage)

    memory = [[as_memory(p) for p in group] for group in params]
    for _ in range(3):
        grads = [[as_memory(rng.standard_normal(p.size)) for p in group] for group in memory]
        e.step([(g, j, p.__array_interface__["data"][0], d.__array_interface__["data"][0])
                for g, (group, group_grads) in enumerate(zip(memory, grads)) for j, (p, d) in enumerate(zip(group, group_grads))])
    return bytes(e.save())


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
@pytest.mark.parametrize("name", list(_core.optimizer_names()))
def test_library_files_go_through_load_and_save_byte_for_byte(name, dtype, tmp_path):
    data = engine_checkpoint(name, dtype)
    path = tmp_path / "engine.ckpt"
    write(path, data)
    loaded = ckpt.load(path)
    assert (loaded["optimizer"], loaded["dtype"], loaded["version"]) == (name, dtype, 3)
    assert loaded["state_dtype"] == ("float64" if dtype == "float64" else "float32")
    slots = _core.Engine(name, dtype).slot_names
    for group in loaded["groups"]:
        assert group["t"] == 3
        assert set(group["scalars"]) == set(_core.Engine(name, dtype).scalar_names)
        for tensor in group["tensors"]:
            assert set(tensor["slots"]) <= set(slots) and tensor["slots"]
    out = tmp_path / "again.ckpt"
    ckpt.save(out, loaded)
    assert read(out) == data


# ---- files that are not valid checkpoints ------------------------------------------


@pytest.fixture
def valid(tmp_path):
    path = tmp_path / "valid.ckpt"
    write(path, read(os.path.join(DATA, "adamx_float.ckpt")))
    ckpt.save(path, ckpt.load(path))  # version 3
    return path


def test_truncated_files(valid, tmp_path):
    data = read(valid)
    header_end = 16 + struct.unpack_from("<I", data, 12)[0] + 4
    for size in sorted({0, 1, 7, 8, 11, 12, 15, 16, 40, header_end - 1, header_end, header_end + 5, len(data) - 4,
                        len(data) - 1}):
        cut = tmp_path / ("cut%d" % size)
        write(cut, data[:size])
        with pytest.raises(CheckpointError, match="truncated at byte %d" % size) as error:
            ckpt.load(cut)
        assert str(cut) in str(error.value) and str(error.value).startswith("adamx::load_checkpoint: ")


def test_corrupt_files(valid, tmp_path):
    data = read(valid)
    header_end = 16 + struct.unpack_from("<I", data, 12)[0]
    cases = {
        0: "bad magic bytes",
        8: "unsupported format version",
        20: "header checksum mismatch",
        header_end + 1: "header checksum mismatch",  # the header's CRC itself
        header_end + 10: "checksum mismatch",  # an array
        len(data) - 2: "checksum mismatch",  # the final CRC
    }
    for offset, message in cases.items():
        bad = bytearray(data)
        bad[offset] ^= 0x10
        path = tmp_path / ("flip%d" % offset)
        write(path, bytes(bad))
        with pytest.raises(CheckpointError, match=message):
            ckpt.load(path)
    write(tmp_path / "longer", data + b"\0")
    with pytest.raises(CheckpointError, match="unexpected bytes after the checkpoint's checksum"):
        ckpt.load(tmp_path / "longer")


def with_header(data, change):
    """`data` with its header changed by `change(bytearray)` and the header's
    CRC-32 (zlib's) made right again, so that the change is read."""
    length = struct.unpack_from("<I", data, 12)[0]
    out = bytearray(data)
    change(out)
    struct.pack_into("<I", out, 16 + length, zlib.crc32(bytes(out[: 16 + length])))
    return bytes(out)


def test_a_header_listing_more_than_the_file_holds(tmp_path):
    data = ckpt.load(os.path.join(DATA, "adam_double.ckpt"))
    data["groups"][0]["tensors"][0]["name"] = "large_tensor"
    path = tmp_path / "named.ckpt"
    ckpt.save(path, data)
    raw = read(path)
    at = raw.index(b"large_tensor") + len(b"large_tensor")  # then rows and cols, i64 each
    for rows, cols in ((1 << 40, 4), (1 << 62, 1 << 62), (3, (1 << 63) - 1)):
        def change(out):
            struct.pack_into("<qq", out, at, rows, cols)
        write(path, with_header(raw, change))
        with pytest.raises(CheckpointError, match="more state than the file's %d bytes can hold" % len(raw)):
            ckpt.load(path)
    write(path, with_header(raw, lambda out: struct.pack_into("<q", out, at, -3)))
    with pytest.raises(CheckpointError, match="negative dimension"):
        ckpt.load(path)


def test_other_files(tmp_path):
    with pytest.raises(CheckpointError, match="bad magic bytes"):
        ckpt.load(os.path.join(DATA, "run_adamx_float.run"))
    missing = tmp_path / "missing.ckpt"
    with pytest.raises(CheckpointError) as error:
        ckpt.load(missing)
    assert "cannot open '%s'" % missing in str(error.value) and os.strerror(errno.ENOENT) in str(error.value)
    with pytest.raises(CheckpointError, match=os.strerror(errno.EISDIR)):
        ckpt.load(tmp_path)
    assert issubclass(CheckpointError, ValueError) and adamx.CheckpointError is CheckpointError


# ---- saving ---------------------------------------------------------------------


def test_save_failures_name_the_os_reason_and_keep_the_file(valid, tmp_path):
    data = ckpt.load(valid)
    kept = read(valid)
    with pytest.raises(CheckpointError) as error:
        ckpt.save(tmp_path / "no" / "such" / "dir.ckpt", data)
    assert str(error.value).startswith("adamx::save_checkpoint: cannot create")
    assert os.strerror(errno.ENOENT) in str(error.value)
    with pytest.raises(CheckpointError, match=os.strerror(errno.ENOTDIR)):
        ckpt.save(os.path.join(str(valid), "inside.ckpt"), data)  # a file as a directory
    # The temporary file cannot be made: the existing checkpoint stays.
    os.mkdir(str(valid) + ".partial")
    with pytest.raises(CheckpointError, match="cannot create '%s.partial': %s" % (valid, os.strerror(errno.EISDIR))):
        ckpt.save(valid, data)
    assert read(valid) == kept
    if os.path.isdir(str(valid) + ".partial"):  # the failed save may have removed it (it was empty)
        os.rmdir(str(valid) + ".partial")
    # The rename over the target fails: no temporary file is left behind.
    target = tmp_path / "a_directory"
    os.mkdir(target)
    with pytest.raises(CheckpointError, match="renaming .* failed: %s" % os.strerror(errno.EISDIR)):
        ckpt.save(target, data)
    assert os.path.isdir(target) and not os.listdir(target) and not os.path.exists(str(target) + ".partial")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        os.mkdir(locked, 0o500)
        with pytest.raises(CheckpointError, match=os.strerror(errno.EACCES)):
            ckpt.save(locked / "x.ckpt", data)


def bad_dicts():
    def edit(change):
        def make(data):
            change(data)
            return data
        return make

    g0 = lambda d: d["groups"][0]  # noqa: E731
    t0 = lambda d: d["groups"][0]["tensors"][0]  # noqa: E731
    return {
        "unknown optimizer": (edit(lambda d: d.update(optimizer="Adamax")), "no optimizer named 'Adamax'"),
        "unknown dtype": (edit(lambda d: d.update(dtype="int8")), "dtype is 'int8'"),
        "other state dtype": (edit(lambda d: d.update(state_dtype="float64")), "state_dtype is 'float64'"),
        "unknown key": (edit(lambda d: d.update(groupz=[])), "unknown keys 'groupz'"),
        "no groups": (edit(lambda d: d.pop("groups")), "has no 'groups'"),
        "invalid lr": (edit(lambda d: g0(d)["options"].update(lr=-1.0)), "invalid lr = -1 for group 'layer0'"),
        "unknown option": (edit(lambda d: g0(d)["options"].update(betas=(0.9, 0.99))), "no option named 'betas'"),
        "negative t": (edit(lambda d: g0(d).update(t=-1)), "invalid t = -1"),
        "t a float": (edit(lambda d: g0(d).update(t=1.0)), "'t' must be an int"),
        "gamma infinite": (edit(lambda d: g0(d)["scalars"].update(gamma=float("inf"))), "invalid gamma = inf"),
        "no h": (edit(lambda d: g0(d)["scalars"].pop("h")), "no group scalar 'h'"),
        "unknown scalar": (edit(lambda d: g0(d)["scalars"].update(beta=1.0)), "keeps no group scalar 'beta'"),
        "short slot": (edit(lambda d: t0(d)["slots"].update(m=t0(d)["slots"]["m"][:5])), r"has 5 elements where its shape \(3, 4\) has 12"),
        "missing slot": (edit(lambda d: t0(d)["slots"].pop("v")), "has m, v, v_max of sizes 12, 0, 0"),
        "slot not kept": (edit(lambda d: t0(d)["slots"].update(v_max=t0(d)["slots"]["v"])), "expected 12, 12, 0"),
        "unknown slot": (edit(lambda d: t0(d)["slots"].update(n=t0(d)["slots"]["v"])), "keeps no state slot 'n'"),
        "float64 slot": (edit(lambda d: t0(d)["slots"].update(m=t0(d)["slots"]["m"].astype(np.float64))), "float32"),
        "2-D slot": (edit(lambda d: t0(d)["slots"].update(m=t0(d)["slots"]["m"].reshape(3, 4))), "1-D"),
        "list slot": (edit(lambda d: t0(d)["slots"].update(m=list(t0(d)["slots"]["m"]))), "NumPy array"),
        "huge shape": (edit(lambda d: t0(d).update(shape=(1 << 40, 1 << 40))), "has 12 elements where its shape"),
        "huge shape, no slots": (edit(lambda d: t0(d).update(shape=(1 << 40, 1 << 40), slots={})), "invalid shape"),
        "large shape, no slots": (edit(lambda d: t0(d).update(shape=(1 << 31, 1 << 20), slots={})),
                                  "no state slots for its 2251799813685248 elements"),
        "empty tensor name": (edit(lambda d: t0(d).update(name="")), "the tensor.s name is empty"),
        "negative shape": (edit(lambda d: t0(d).update(shape=(-3, -4))), "invalid shape"),
        "same tensor names": (edit(lambda d: g0(d)["tensors"][1].update(name="weight")), "weight"),
        "empty group name": (edit(lambda d: g0(d).update(name="")), "the group.s name is empty"),
    }


@pytest.mark.parametrize("case", sorted(bad_dicts()))
def test_invalid_dicts_write_nothing(case, valid, tmp_path):
    change, message = bad_dicts()[case]
    data = change(ckpt.load(valid))
    kept = read(valid)
    with pytest.raises(ValueError, match=message) as error:
        ckpt.save(valid, data)
    assert not isinstance(error.value, CheckpointError), "a dict's problem is a ValueError, not a file's"
    assert read(valid) == kept and sorted(os.listdir(tmp_path)) == ["valid.ckpt"]


def test_a_muon_vector_in_a_muon_group_is_refused(tmp_path):
    path = tmp_path / "muon.ckpt"
    write(path, engine_checkpoint("Muon", "float32"))
    data = ckpt.load(path)
    data["groups"][1]["options"]["muon"] = True  # its tensors are vectors
    data["groups"][1]["tensors"][0]["slots"] = {"momentum_buffer": np.zeros(5, np.float32)}
    data["groups"][1]["tensors"][1]["slots"] = {"momentum_buffer": np.zeros(2, np.float32)}
    with pytest.raises(ValueError, match="steps matrices of at least 2x2"):
        ckpt.save(path, data)


def test_a_checkpoint_from_scratch(tmp_path):
    """A dict written by hand: options not given take the defaults, row_major
    may be left out, a vector's row_major is no matter."""
    m = np.arange(6, dtype=np.float64)
    data = {
        "optimizer": "Lion",
        "dtype": "float64",
        "groups": [{"name": "all", "options": {"lr": 3e-4}, "t": 2, "scalars": {},
                    "tensors": [{"name": "w", "shape": (2, 3), "slots": {"m": m}},
                                {"name": "b", "shape": (1, 3), "row_major": True, "slots": {"m": m[:3]}}]}],
    }
    path = tmp_path / "lion.ckpt"
    ckpt.save(path, data)
    loaded = ckpt.load(path)
    group = loaded["groups"][0]
    assert group["options"]["lr"] == 3e-4 and group["options"]["beta2"] == 0.99 and group["t"] == 2
    assert [(t["name"], t["shape"], t["row_major"]) for t in group["tensors"]] == [("w", (2, 3), False), ("b", (1, 3), False)]
    assert group["tensors"][0]["slots"]["m"].tobytes() == m.tobytes()
