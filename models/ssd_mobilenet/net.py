"""face-api's SSD-MobileNet-v1 face detector, rebuilt in PyTorch from its weights.

Op for op what face-api's SsdMobilenetv1.ts does (src/ssdMobilenetv1/), a TensorFlow Object
Detection API SSD trained on WIDER FACE:
- input NHWC RGB scaled to [-1, 1] (x / 127.5 - 1), as BlazeFace's, square, 512 in face-api
  (any multiple of 32 here);
- MobileNet-v1: a 3x3 stride-2 conv, then 13 pairs of (3x3 depthwise conv + batch norm, 1x1
  conv), every conv followed by ReLU6; the pointwise convs' batch norm is already folded into a
  bias (`convolution_bn_offset`); the depthwise batch norm (eps 1e-3) is folded here;
- TF's 'same' padding: a stride-2 3x3 conv pads 0 before and 1 after (PyTorch's symmetric
  padding would shift every feature by a pixel), written as an explicit zero pad;
- eight extra layers (1x1 then 3x3 stride 2, four times) and six box predictors (1x1 conv +
  bias) on the stride-16 map of pair 11 (3 anchors a cell), the stride-32 output (6), and the
  four extra maps (6 each), their outputs flattened cell by cell (NHWC order) and concatenated.

Outputs: box encodings (1, A, 4) as (dy, dx, dh, dw) and class logits (1, A, 3) (background,
face, unused); `postprocess.py` decodes them against the anchors, as face-api's outputLayer.ts.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.facerec.net import read_weights

BN_EPSILON = 0.0010000000474974513  # mobileNetV1.ts
# (channels out, depthwise stride) of MobileNet-v1's 13 conv pairs; pair 11's output feeds predictor 0.
PAIRS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
         (512, 1), (1024, 2), (1024, 1)]
# (channels out, kernel, stride) of the eight extra layers after MobileNet (predictionLayer.ts).
EXTRAS = [(256, 1, 1), (512, 3, 2), (128, 1, 1), (256, 3, 2), (128, 1, 1), (256, 3, 2), (64, 1, 1), (128, 3, 2)]
ANCHORS_PER_CELL = (3, 6, 6, 6, 6, 6)
NUM_CLASSES = 3


class SameConv(nn.Module):
    """A conv with TF's 'same' padding, then ReLU6 unless `relu6` is False."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int = 1, relu6: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=0, groups=groups, bias=True)
        self.kernel, self.stride, self.relu6 = kernel, stride, relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = same_padding(x.shape[-1], self.kernel, self.stride)
        x = self.conv(F.pad(x, pad * 2) if any(pad) else x)
        return torch.clamp(x, 0.0, 6.0) if self.relu6 else x


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF's 'same' padding (before, after) of a square map: the extra pixel goes after."""
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return total // 2, total - total // 2


class SsdMobilenetV1(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = SameConv(3, 32, 3, 2)
        layers, cin = [], 32
        for cout, stride in PAIRS:
            layers += [SameConv(cin, cin, 3, stride, groups=cin), SameConv(cin, cout, 1, 1)]
            cin = cout
        self.pairs = nn.ModuleList(layers)
        extras = []
        for cout, kernel, stride in EXTRAS:
            extras.append(SameConv(cin, cout, kernel, stride))
            cin = cout
        self.extras = nn.ModuleList(extras)
        sources = (512, 1024, 512, 256, 256, 128)
        self.box = nn.ModuleList(SameConv(c, a * 4, 1, 1, relu6=False) for c, a in zip(sources, ANCHORS_PER_CELL))
        self.cls = nn.ModuleList(SameConv(c, a * NUM_CLASSES, 1, 1, relu6=False)
                                 for c, a in zip(sources, ANCHORS_PER_CELL))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv0(x.permute(0, 3, 1, 2))
        for i, layer in enumerate(self.pairs):
            x = layer(x)
            if i == 21:  # the pointwise conv of pair 11
                conv11 = x
        maps = [conv11, x]
        for i, layer in enumerate(self.extras):
            x = layer(x)
            if i % 2:
                maps.append(x)
        boxes = [self._flat(head(m), 4) for head, m in zip(self.box, maps)]
        logits = [self._flat(head(m), NUM_CLASSES) for head, m in zip(self.cls, maps)]
        return torch.cat(boxes, 1), torch.cat(logits, 1)

    @staticmethod
    def _flat(x: torch.Tensor, width: int) -> torch.Tensor:
        """(1, A*w, H, W) -> (1, H*W*A, w) in TF's order: row, column, anchor."""
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, width)


def _load(layer: SameConv, filters: np.ndarray, bias: np.ndarray, name: str, depthwise: bool = False) -> None:
    weight = torch.from_numpy(filters).permute(2, 3, 0, 1) if depthwise else torch.from_numpy(filters).permute(3, 2, 0, 1)
    if weight.shape != layer.conv.weight.shape or bias.shape != tuple(layer.conv.bias.shape):
        raise ValueError(f"{name}: filters {tuple(weight.shape)}, expected {tuple(layer.conv.weight.shape)}")
    layer.conv.weight.data.copy_(weight)
    layer.conv.bias.data.copy_(torch.from_numpy(bias))


def from_manifest(manifest: Path) -> tuple[SsdMobilenetV1, np.ndarray]:
    """The network with face-api's weights (eval mode), and its 512-input anchors (A, 4) ymin, xmin, ymax, xmax.

    Every float tensor of the manifest is used; the int32 ones are shapes and slice bounds
    of the original TF graph, which the code above writes out.
    """
    w = read_weights(manifest)
    used = set()

    def take(name: str) -> np.ndarray:
        used.add(name)
        return w[name]

    net = SsdMobilenetV1()
    _load(net.conv0, take("MobilenetV1/Conv2d_0_pointwise/weights"),
          take("MobilenetV1/Conv2d_0_pointwise/convolution_bn_offset"), "conv_0")
    for i in range(len(PAIRS)):
        d = f"MobilenetV1/Conv2d_{i + 1}_depthwise"
        gamma, beta = take(f"{d}/BatchNorm/gamma"), take(f"{d}/BatchNorm/beta")
        mean, var = take(f"{d}/BatchNorm/moving_mean"), take(f"{d}/BatchNorm/moving_variance")
        scale = (gamma / np.sqrt(var + np.float32(BN_EPSILON))).astype(np.float32)
        filters = take(f"{d}/depthwise_weights") * scale[None, None, :, None]  # (3, 3, C, 1)
        _load(net.pairs[2 * i], filters, (beta - mean * scale).astype(np.float32), d, depthwise=True)
        p = f"MobilenetV1/Conv2d_{i + 1}_pointwise"
        _load(net.pairs[2 * i + 1], take(f"{p}/weights"), take(f"{p}/convolution_bn_offset"), p)
    for i, layer in enumerate(net.extras):
        p = f"Prediction/Conv2d_{i}_pointwise"
        _load(layer, take(f"{p}/weights"), take(f"{p}/convolution_bn_offset"), p)
    for i in range(len(ANCHORS_PER_CELL)):
        for head, kind in ((net.box[i], "BoxEncodingPredictor"), (net.cls[i], "ClassPredictor")):
            p = f"Prediction/BoxPredictor_{i}/{kind}"
            _load(head, take(f"{p}/weights"), take(f"{p}/biases"), p)
    anchors = take("Output/extra_dim")[0]
    if not (np.isclose(take("Preprocessor/mul/x"), 1 / 127.5) and take("Preprocessor/sub/y") == 1):
        raise ValueError(f"{manifest}: the input is not scaled as x / 127.5 - 1")
    floats = {spec["name"] for group in json.loads(manifest.read_text()) for spec in group["weights"]
              if spec["dtype"] == "float32"}
    unused = floats - used
    if unused:
        raise ValueError(f"{manifest}: float tensors not used by the network: {sorted(unused)}")
    return net.eval(), anchors
