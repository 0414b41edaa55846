"""The descriptor network's contract, importable without PyTorch (the service runs without it)."""
INPUT_SIZE = 150  # aligned RGB chip, pixels per side
DESCRIPTOR_SIZE = 128
MEAN_RGB = (122.782, 117.001, 104.298)  # subtracted, then /255, inside the network
