"""YuNet-s's layers as libfacedetection stores them: names, shapes, strides. No torch here.

libfacedetection (src/facedetectcnn-model.cpp, -data.cpp) keeps every conv as a 1x1
pointwise or a 3x3 depthwise filter with BatchNorm folded in. The first layer is a 3x3
stride-2 conv over the image, stored as a 1x1 over the 27 unrolled input values (3 rows x
3 columns x 3 channels, in that order) padded to 32 channels. Every other block is a
pointwise conv then a depthwise conv ("dp"). Heads at strides 8/16/32 give cls (1), obj (1),
bbox (4) and kps (10) per cell; the network takes BGR 0-255.
"""
from __future__ import annotations

STRIDES = (8, 16, 32)
HEADS = (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10))  # per-cell channels, in output order
CELL_WIDTH = sum(c for _, c in HEADS)  # 16: one output row per anchor (cls, obj, bbox, kps)
NUM_KEYPOINTS = 5  # right eye, left eye, nose tip, right mouth corner, left mouth corner
PAD = 32  # the input's sides are multiples of this
HEAD_IN = 32  # channels of the unrolled 3x3x3 input of the first layer (27 used)

# Backbone stages: (name, [(in, out) per pointwise+depthwise block]); a 2x2 max pool
# comes before model1 and before model3, model4 and model5 (the last three give the
# features at strides 8, 16, 32).
BACKBONE = (
    ("model0", [(16, 16)]),
    ("model1", [(16, 16), (16, 32)]),
    ("model2", [(32, 32), (32, 64)]),
    ("model3", [(64, 64), (64, 64)]),
    ("model4", [(64, 64), (64, 64)]),
    ("model5", [(64, 64), (64, 64)]),
)
NECK_CHANNELS = 64


def dp_names(stage: str, blocks: int) -> list[str]:
    """Symbol prefixes of a stage's pointwise+depthwise blocks (model0 has one, named dp)."""
    return [f"backbone__{stage}_dp"] if blocks == 1 else [f"backbone__{stage}_dp{i + 1}" for i in range(blocks)]


def tensor_sizes() -> dict[str, int]:
    """Every weight and bias array the network needs -> its number of floats."""
    sizes = {"backbone__model0_pw_weight": 16 * HEAD_IN, "backbone__model0_pw_bias": 16}

    def dp(prefix: str, cin: int, cout: int) -> None:
        sizes.update({f"{prefix}_pw_weight": cout * cin, f"{prefix}_pw_bias": cout,
                      f"{prefix}_dw_weight": cout * 9, f"{prefix}_dw_bias": cout})

    for stage, blocks in BACKBONE:
        for prefix, (cin, cout) in zip(dp_names(stage, len(blocks)), blocks):
            dp(prefix, cin, cout)
    for level in range(len(STRIDES)):
        dp(f"neck__lateral_convs__{level}", NECK_CHANNELS, NECK_CHANNELS)
        for head, width in HEADS:
            dp(f"bbox_head__multi_level_{head}__{level}", NECK_CHANNELS, width)
    return sizes


def padded_size(width: int, height: int) -> tuple[int, int]:
    """The network input (width, height) for a frame scaled to (width, height): next multiples of PAD."""
    return -(-width // PAD) * PAD, -(-height // PAD) * PAD


def anchors(width: int, height: int) -> int:
    """Cells of all three heads for a padded input of (width, height)."""
    return sum((width // s) * (height // s) for s in STRIDES)
