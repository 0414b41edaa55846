"""MediaPipe BlazeFace (short-range 128x128, full-range 192x192) rebuilt in PyTorch.

The PyTorch names load on first use: a process that only runs a compiled model imports
this package for its pre/post-processing and must not pull in torch (~200 MB RSS).
"""
from .spec import INPUT_SIZE, input_shape

__all__ = ["INPUT_SIZE", "BlazeFace", "from_tflite", "input_shape"]


def __getattr__(name: str):
    if name in ("BlazeFace", "from_tflite"):
        from . import net

        return getattr(net, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
