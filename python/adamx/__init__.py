"""adamx: AdamX, Adam/AdamW and the optimizers compared with them, stepped by
the fused C++ kernel of the adamx library.

    import adamx.torch            # torch.optim.Optimizer subclasses
    import adamx.numpy            # the same optimizers over NumPy arrays
    import adamx.checkpoint       # the library's checkpoint files as dicts
"""
from adamx._core import CheckpointError, NonFiniteGradientError, instruction_set, optimizer_names, version

__version__ = version()
__all__ = ["CheckpointError", "NonFiniteGradientError", "instruction_set", "optimizer_names", "__version__"]
