"""face-api's tiny face detector (a Tiny-YOLOv2 with depthwise separable convs), in PyTorch.

Op for op what face-api's TinyFaceDetector / TinyYolov2Base.runMobilenet does
(src/tinyFaceDetector/, src/tinyYolov2/):
- input RGB, the mean RGB (117.001, 114.697, 97.404) subtracted, divided by 255; square, any
  multiple of 32 (face-api: 128 to 608, 416 by default);
- a 3x3 'valid' conv + bias, leaky ReLU (0.1); 2x2 max pool stride 2 ('same': the extra row and
  column go after, as ceil_mode does);
- five (zero pad 1, 3x3 depthwise, 1x1 pointwise + bias, leaky ReLU) blocks with 16..512
  channels, a 2x2 max pool after each: stride 2 after the first four, stride 1 ('same', padded
  after) after the fifth;
- a 1x1 conv + bias to 5 anchors x (x, y, w, h, score) per cell.

Output: (1, S/32, S/32, 25) raw, NHWC like face-api's; `postprocess.py` decodes it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.facerec.net import read_weights

MEAN_RGB = (117.001, 114.697, 97.404)
CHANNELS = (16, 32, 64, 128, 256, 512)
NUM_ANCHORS = 5


def _leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.10000000149011612)


class SeparableConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _leaky(self.pointwise(self.depthwise(x)))


class TinyFaceDetector(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, CHANNELS[0], 3, bias=True)
        self.blocks = nn.ModuleList(SeparableConv(a, b) for a, b in zip(CHANNELS, CHANNELS[1:]))
        self.conv8 = nn.Conv2d(CHANNELS[-1], NUM_ANCHORS * 5, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, S, S) RGB as face-api scales it -> (1, S/32, S/32, 25)."""
        x = F.max_pool2d(_leaky(self.conv0(x)), 2, 2, ceil_mode=True)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < 4:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            else:  # 2x2 stride 1 'same': one row and column after, which cannot win a max
                x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, 1)
        return self.conv8(x).permute(0, 2, 3, 1)


def _conv_weight(filters: np.ndarray, depthwise: bool = False) -> torch.Tensor:
    """TF's HWIO (or depthwise HW C 1) filters as PyTorch's OIHW."""
    t = torch.from_numpy(filters)
    return t.permute(2, 3, 0, 1) if depthwise else t.permute(3, 2, 0, 1)


def from_manifest(manifest: Path) -> TinyFaceDetector:
    """The network with face-api's weights, in eval mode; every tensor of the manifest is used."""
    w = read_weights(manifest)
    net = TinyFaceDetector()
    params = {
        net.conv0.weight: _conv_weight(w["conv0/filters"]), net.conv0.bias: w["conv0/bias"],
        net.conv8.weight: _conv_weight(w["conv8/filters"]), net.conv8.bias: w["conv8/bias"],
    }
    for i, block in enumerate(net.blocks, start=1):
        params[block.depthwise.weight] = _conv_weight(w[f"conv{i}/depthwise_filter"], depthwise=True)
        params[block.pointwise.weight] = _conv_weight(w[f"conv{i}/pointwise_filter"])
        params[block.pointwise.bias] = w[f"conv{i}/bias"]
    for param, value in params.items():
        value = torch.as_tensor(value)
        if value.shape != param.shape:
            raise ValueError(f"{manifest}: a tensor of shape {tuple(value.shape)} where {tuple(param.shape)} belongs")
        param.data.copy_(value)
    if len(w) != len(params):
        raise ValueError(f"{manifest}: {len(w)} tensors, the network uses {len(params)}")
    return net.eval()
