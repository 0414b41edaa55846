"""Input sizes of the two variants (torch-free: the runtime needs them without the network)."""

INPUT_SIZE = {"short": 128, "full": 192}


def input_shape(variant: str) -> tuple[int, int, int, int]:
    """NHWC input of one frame, as the .tflite takes it."""
    return (1, INPUT_SIZE[variant], INPUT_SIZE[variant], 3)
