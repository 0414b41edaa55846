"""Face model: BlazeFace in PyTorch, its conversion (TorchScript, ONNX, TVM) and runtime."""
