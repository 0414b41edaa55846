"""BlazeFace short-range and full-range as PyTorch modules, weights taken from the .tflite.

Layers mirror MediaPipe's graphs op for op (checked by read_convs' order and shapes):
- short-range: 5x5 stem, BlazeBlocks (depthwise 3x3 + 1x1), SSD heads on 16x16 and 8x8.
- full-range: 3x3 stem, bottleneck blocks (dw, 1x1 down, relu, dw, 1x1 up), an FPN
  (bilinear 2x upsampling, half-pixel centres like TF) back to 48x48, one head there.
Stride-2 convs use TF 'SAME' padding, which pads more at the bottom/right than the top/left:
PyTorch's symmetric `padding=` cannot express it, so those layers use an explicit F.pad.
Input: NHWC float32 RGB in [-1, 1], like the .tflite (a compiler that converts the convs to
NHWC then cancels the input transpose against its own). Outputs like the .tflite: regressors
(1, A, 16) and classificator logits (1, A, 1), anchors ordered row-major over each feature map.
The skip path's zero channels are a concat with zeros, not a pad: a pad has no layout
inference in TVM's ConvertLayout, which then wraps it in two transposes.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .spec import INPUT_SIZE, input_shape  # noqa: F401 - re-exported


def _same_pad(k: int, s: int) -> tuple[int, int, int, int]:
    """TF SAME padding (left, right, top, bottom) for even input sizes."""
    total = k - s if s > 1 else k - 1
    return (total // 2, total - total // 2) * 2


class SameConv(nn.Module):
    """Conv2d (optionally depthwise) with TF SAME padding."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, depthwise: bool = False):
        super().__init__()
        self.pad = _same_pad(k, stride)
        symmetric = self.pad[0] == self.pad[1]
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=self.pad[0] if symmetric else 0,
                              groups=cin if depthwise else 1)
        self.explicit_pad = not symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.explicit_pad:
            x = F.pad(x, self.pad)
        return self.conv(x)


def _pointwise(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1)


class _Skip(nn.Module):
    """Residual path: 2x2 max-pool when the block strides, zero channel padding when it widens."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride, self.extra = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            x = F.max_pool2d(x, 2, 2)
        if self.extra:
            n, _, h, w = x.shape
            x = torch.cat([x, x.new_zeros(n, self.extra, h, w)], 1)
        return x


class BlazeBlock(nn.Module):
    """Short-range block: relu(dw3x3 -> 1x1 + skip)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.dw = SameConv(cin, cin, 3, stride, depthwise=True)
        self.pw = _pointwise(cin, cout)
        self.skip = _Skip(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pw(self.dw(x)) + self.skip(x))


class Bottleneck(nn.Module):
    """Full-range block: relu(dw3x3 -> 1x1 down -> relu -> dw3x3 -> 1x1 up + skip)."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int = 1):
        super().__init__()
        self.dw1 = SameConv(cin, cin, 3, stride, depthwise=True)
        self.pw1 = _pointwise(cin, mid)
        self.dw2 = SameConv(mid, mid, 3, 1, depthwise=True)
        self.pw2 = _pointwise(mid, cout)
        self.skip = _Skip(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw2(self.dw2(F.relu(self.pw1(self.dw1(x)))))
        return F.relu(y + self.skip(x))


class FpnStage(nn.Module):
    """Upsample the coarse map, add the lateral one (both 1x1 + relu), refine with bottlenecks."""

    def __init__(self, c_top: int, c_lateral: int, c: int, mid: int, blocks: int):
        super().__init__()
        self.top = _pointwise(c_top, c)
        self.lateral = _pointwise(c_lateral, c)
        self.blocks = nn.Sequential(*(Bottleneck(c, mid, c) for _ in range(blocks)))

    def forward(self, top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(F.relu(self.top(top)), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.blocks(F.relu(self.lateral(lateral)) + up)


def _flatten(x: torch.Tensor, per_anchor: int) -> torch.Tensor:
    """NCHW head output -> (1, H*W*anchors, per_anchor) in TFLite's NHWC order."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, per_anchor)


class ShortRange(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = SameConv(3, 24, 5, 2)
        chans = [(24, 24, 1), (24, 28, 1), (28, 32, 2), (32, 36, 1), (36, 42, 1), (42, 48, 2),
                 (48, 56, 1), (56, 64, 1), (64, 72, 1), (72, 80, 1), (80, 88, 1)]
        self.stage16 = nn.Sequential(*(BlazeBlock(*c) for c in chans))
        self.stage8 = nn.Sequential(BlazeBlock(88, 96, 2), *(BlazeBlock(96, 96) for _ in range(4)))
        self.classifiers = nn.ModuleList([_pointwise(88, 2), _pointwise(96, 6)])
        self.regressors = nn.ModuleList([_pointwise(88, 32), _pointwise(96, 96)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f16 = self.stage16(F.relu(self.stem(x.permute(0, 3, 1, 2))))
        f8 = self.stage8(f16)
        cls = torch.cat([_flatten(self.classifiers[0](f16), 1), _flatten(self.classifiers[1](f8), 1)], 1)
        reg = torch.cat([_flatten(self.regressors[0](f16), 16), _flatten(self.regressors[1](f8), 16)], 1)
        return reg, cls


class FullRange(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = SameConv(3, 32, 3, 2)
        self.stage48 = nn.Sequential(Bottleneck(32, 8, 32), Bottleneck(32, 8, 32), Bottleneck(32, 12, 48, 2),
                                     Bottleneck(48, 12, 48), Bottleneck(48, 16, 64))
        self.stage24 = nn.Sequential(Bottleneck(64, 24, 96, 2), Bottleneck(96, 32, 128), Bottleneck(128, 32, 128))
        self.stage12 = nn.Sequential(Bottleneck(128, 36, 144, 2), Bottleneck(144, 48, 192),
                                     Bottleneck(192, 64, 256))
        self.stage6 = nn.Sequential(Bottleneck(256, 96, 384, 2), *(Bottleneck(384, 96, 384) for _ in range(3)))
        self.fpn12 = FpnStage(384, 256, 96, 48, blocks=2)
        self.fpn24 = FpnStage(96, 128, 64, 32, blocks=2)
        self.fpn48 = FpnStage(64, 64, 48, 24, blocks=1)
        self.classifier = _pointwise(48, 1)
        self.regressor = _pointwise(48, 16)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f48 = self.stage48(F.relu(self.stem(x.permute(0, 3, 1, 2))))
        f24 = self.stage24(f48)
        f12 = self.stage12(f24)
        f6 = self.stage6(f12)
        p48 = self.fpn48(self.fpn24(self.fpn12(f6, f12), f24), f48)
        return _flatten(self.regressor(p48), 16), _flatten(self.classifier(p48), 1)


BlazeFace: dict[str, type[nn.Module]] = {"short": ShortRange, "full": FullRange}


def from_tflite(variant: str, path: Path) -> nn.Module:
    """Build the variant and copy every conv's weights from the .tflite, in op order."""
    model = BlazeFace[variant]()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    from .tflite import read_convs  # LiteRT's schema: needed only to read weights, not to tune

    tfl = read_convs(path)
    if len(convs) != len(tfl):
        raise ValueError(f"{path}: {len(tfl)} convolutions, the {variant} network has {len(convs)}")
    for conv, w in zip(convs, tfl):
        # OHWI -> OIHW; depthwise 1HWC -> C1HW
        kernel = w.kernel.transpose(3, 0, 1, 2) if w.depthwise else w.kernel.transpose(0, 3, 1, 2)
        if tuple(conv.weight.shape) != kernel.shape or conv.stride[0] != w.stride:
            raise ValueError(f"{path}: {w.name} {kernel.shape}/s{w.stride} does not fit {conv}")
        conv.weight.data = torch.from_numpy(kernel.copy())
        conv.bias.data = torch.from_numpy(w.bias.copy())
    return model.eval()
