"""The package's surface: every optimizer of the library is there, the type
stubs state the library's defaults, docstrings exist, torch's calling
conventions hold."""
import ast
import os

import pytest
import torch

import adamx
import adamx.torch as at
from adamx import _options


def _stub_defaults():
    path = os.path.join(os.path.dirname(at.__file__), "torch.pyi")
    tree = ast.parse(open(path).read())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    args = item.args.args[2:] + item.args.kwonlyargs
                    defaults = item.args.defaults[1:] + item.args.kw_defaults
                    lr = ast.literal_eval(item.args.defaults[0])
                    out[node.name] = dict({a.arg: ast.literal_eval(d) for a, d in zip(item.args.kwonlyargs, item.args.kw_defaults)}, lr=lr)
    return out


def test_every_optimizer_is_a_torch_optimizer_with_docs():
    for name in adamx.optimizer_names():
        cls = getattr(at, name)
        assert issubclass(cls, torch.optim.Optimizer)
        assert cls.__doc__ and "Defaults" in cls.__doc__


def test_stubs_state_the_library_defaults():
    stubs = _stub_defaults()
    assert set(stubs) == set(adamx.optimizer_names())
    for name, stub in stubs.items():
        stub = dict(stub)
        assert stub.pop("threads") == 1
        assert stub == _options.defaults(name), name


def test_torch_calling_conventions():
    p = torch.zeros(3, requires_grad=True)
    opt = at.AdamX([p], 0.01)  # lr positional, as torch.optim.Adam takes it
    assert opt.param_groups[0]["lr"] == 0.01
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)
    opt = at.Adam([{"params": [p], "lr": 0.1}], lr=0.01, betas=(0.8, 0.9))
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["betas"] == (0.8, 0.9)
    with pytest.raises(TypeError):
        at.Adam(p)  # a tensor, not an iterable of tensors (torch's own check)
    with pytest.raises(ValueError):
        at.Adam([], lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        at.Adam([p], betas=(0.9,))
    with pytest.raises(ValueError, match="threads"):
        at.Adam([p], threads=0)


def test_version_and_instruction_set():
    assert adamx.__version__.count(".") == 2
    assert adamx.instruction_set() in ("baseline", "avx2", "avx512")
