"""MediaPipe BlazeFace (short-range 128x128, full-range 192x192) rebuilt in PyTorch."""
from .net import INPUT_SIZE, BlazeFace, from_tflite, input_shape

__all__ = ["INPUT_SIZE", "BlazeFace", "from_tflite", "input_shape"]
