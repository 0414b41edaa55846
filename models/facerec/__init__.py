"""Face identity: dlib's 128-d face descriptor ResNet (face-api's weights) rebuilt in PyTorch,
the face alignment it expects, and its conversion (TorchScript, ONNX, TVM) and runtime."""
