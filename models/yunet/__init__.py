"""libfacedetection's YuNet-s (models/zoo.py: "yunet"): rebuilt in PyTorch from the arrays of its own wheel."""
