"""YuNet-s in PyTorch, built from libfacedetection's own arrays (models/yunet/weights.py).

The layers follow libfacedetection's `objectdetect_cnn` (src/facedetectcnn-model.cpp):
a 3x3 stride-2 conv (stored unrolled as a 1x1 over 32 channels: 27 are the 3x3x3 input
window, row, column, channel), then pointwise+depthwise blocks with 2x2 max pools, a
top-down neck (nearest x2 upsample + add) and heads at strides 8/16/32. ReLU follows every
backbone and neck block; the heads have none.

Made for the TVM chain: the network takes NHWC (1, H, W, 3) BGR 0-255 (H, W multiples of
32), so the compiled graph starts with no transpose; all padding is the convs' own. The
four heads of a level (cls 1, obj 1, bbox 4, kps 10 channels) are one pointwise conv
64->16 and one depthwise conv of 16 channels (the same arithmetic: every output channel
of a pointwise or depthwise conv is computed on its own), and the levels' cells are
concatenated into one output (1, cells, 16), row-major per level, strides 8, 16, 32: raw
logits and offsets, decoded in numpy (models/yunet/postprocess.py).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .spec import BACKBONE, CELL_WIDTH, HEADS, NECK_CHANNELS, STRIDES, dp_names


class DP(nn.Module):
    """Pointwise 1x1 then depthwise 3x3 (padding 1), ReLU after if `relu`."""

    def __init__(self, cin: int, cout: int, relu: bool = True):
        super().__init__()
        self.pw = nn.Conv2d(cin, cout, 1)
        self.dw = nn.Conv2d(cout, cout, 3, padding=1, groups=cout)
        self.relu = relu

    def forward(self, x):
        x = self.dw(self.pw(x))
        return F.relu(x) if self.relu else x

    def load(self, parts: list[dict[str, torch.Tensor]]) -> None:
        """Weights from `dp_tensors` of one block, or of several stacked along the output channels."""
        for conv, kind in ((self.pw, "pw"), (self.dw, "dw")):
            conv.weight.copy_(torch.cat([p[f"{kind}_weight"] for p in parts]))
            conv.bias.copy_(torch.cat([p[f"{kind}_bias"] for p in parts]))


def dp_tensors(arrays, prefix: str) -> dict[str, torch.Tensor]:
    """A pointwise+depthwise block's arrays as OIHW tensors.

    libfacedetection stores a pointwise weight as [out][in] and a depthwise one as
    [tap][channel] (the 9 taps of the 3x3 window, row-major; see `Filters::operator=`).
    """
    t = {k: torch.from_numpy(arrays[f"{prefix}_{k}"]) for k in ("pw_weight", "pw_bias", "dw_weight", "dw_bias")}
    cout = t["pw_bias"].numel()
    t["pw_weight"] = t["pw_weight"].reshape(cout, -1, 1, 1)
    t["dw_weight"] = t["dw_weight"].reshape(3, 3, cout).permute(2, 0, 1).unsqueeze(1)
    return t


class YuNet(nn.Module):
    """(1, H, W, 3) NHWC BGR 0-255 -> (1, cells, 16): cls, obj, bbox (4), kps (10) per cell."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.stages = nn.ModuleList(nn.Sequential(*(DP(cin, cout) for cin, cout in blocks)) for _, blocks in BACKBONE)
        self.lateral = nn.ModuleList(DP(NECK_CHANNELS, NECK_CHANNELS) for _ in STRIDES)
        self.heads = nn.ModuleList(DP(NECK_CHANNELS, CELL_WIDTH, relu=False) for _ in STRIDES)

    def levels(self, x):
        """NCHW BGR 0-255 -> the three levels' head outputs, NCHW (1, 16, H/s, W/s)."""
        x = F.relu(self.head(x))
        x = self.stages[0](x)
        x = self.stages[2](self.stages[1](F.max_pool2d(x, 2)))
        f8 = self.stages[3](F.max_pool2d(x, 2))
        f16 = self.stages[4](F.max_pool2d(f8, 2))
        f32 = self.lateral[2](self.stages[5](F.max_pool2d(f16, 2)))
        f16 = self.lateral[1](f16 + F.interpolate(f32, scale_factor=2.0, mode="nearest"))
        f8 = self.lateral[0](f8 + F.interpolate(f16, scale_factor=2.0, mode="nearest"))
        return [head(f) for head, f in zip(self.heads, (f8, f16, f32))]

    def forward(self, x):
        cells = [y.permute(0, 2, 3, 1).reshape(1, -1, CELL_WIDTH) for y in self.levels(x.permute(0, 3, 1, 2))]
        return torch.cat(cells, dim=1)

    @torch.no_grad()
    def load(self, arrays) -> None:
        w = torch.from_numpy(arrays["backbone__model0_pw_weight"]).reshape(16, -1)[:, :27]
        self.head.weight.copy_(w.reshape(16, 3, 3, 3).permute(0, 3, 1, 2))  # (out, row, col, ch) -> OIHW
        self.head.bias.copy_(torch.from_numpy(arrays["backbone__model0_pw_bias"]))
        for stage, (name, blocks) in zip(self.stages, BACKBONE):
            for block, prefix in zip(stage, dp_names(name, len(blocks))):
                block.load([dp_tensors(arrays, prefix)])
        for level, (lateral, head) in enumerate(zip(self.lateral, self.heads)):
            lateral.load([dp_tensors(arrays, f"neck__lateral_convs__{level}")])
            head.load([dp_tensors(arrays, f"bbox_head__multi_level_{name}__{level}") for name, _ in HEADS])


def from_weights(arrays=None) -> YuNet:
    """The network with libfacedetection's weights (the verified cache by default), in eval mode."""
    if arrays is None:
        from .weights import load

        arrays = load()
    net = YuNet()
    net.load(arrays)
    return net.eval()


OPENCV_OUTPUTS = tuple(f"{head}_{s}" for head, _ in HEADS for s in STRIDES)  # cls_8 ... kps_32


class OpenCVYuNet(nn.Module):
    """The same network as OpenCV's `cv2.FaceDetectorYN` loads it: NCHW BGR 0-255 in, twelve
    outputs named `OPENCV_OUTPUTS`, each (1, cells of its level, channels), cls and obj
    through a sigmoid (FaceDetectorYN reads them as probabilities)."""

    def __init__(self, net: YuNet):
        super().__init__()
        self.net = net

    def forward(self, x):
        per_level = [y.permute(0, 2, 3, 1).reshape(1, -1, y.shape[1]) for y in self.net.levels(x)]
        out = {}
        start = 0
        for head, width in HEADS:
            for stride, cells in zip(STRIDES, per_level):
                part = cells[:, :, start:start + width]
                out[f"{head}_{stride}"] = torch.sigmoid(part) if head in ("cls", "obj") else part
            start += width
        return tuple(out[name] for name in OPENCV_OUTPUTS)
