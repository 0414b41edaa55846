"""dlib's 128-d face descriptor ResNet, rebuilt in PyTorch from face-api's weights.

Op for op what face-api's FaceRecognitionNet.ts does (src/faceRecognitionNet/):
- input 150x150 RGB in 0..255; subtract the mean RGB (122.782, 117.001, 104.298), divide by 255;
- "conv layers" are conv + bias, then a per-channel scale layer (x * w + b), then ReLU;
  conv + bias + scale are folded into one Conv2d here (same arithmetic up to rounding);
- 7x7 stride-2 'valid' stem, 3x3 stride-2 'valid' max-pool;
- residual: conv-relu, conv, + x, relu (3x3 'same');
- residual down: the first conv is 3x3 stride-2 'valid'; the skip is a 2x2 average pool,
  zero-padded in channels; when the conv path comes out one pixel smaller it is padded with
  zeros at the bottom and right (TF concat of zeros on H then W);
- global average, then a 256x128 matrix (no bias). The descriptor is NOT L2-normalised:
  dlib and face-api compare descriptors by Euclidean distance.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .spec import DESCRIPTOR_SIZE, MEAN_RGB

# (name, channels in, channels out, downsamples) in forward order, as in FaceRecognitionNet.ts.
RESIDUALS = [
    ("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
    ("conv64_down", 32, 64, True), ("conv64_1", 64, 64, False), ("conv64_2", 64, 64, False),
    ("conv64_3", 64, 64, False),
    ("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False), ("conv128_2", 128, 128, False),
    ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False), ("conv256_2", 256, 256, False),
    ("conv256_down_out", 256, 256, True),
]


class Residual(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down, self.extra = down, cout - cin
        self.conv1 = nn.Conv2d(cin, cout, 3, 2 if down else 1, padding=0 if down else 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        if self.down:
            x = F.avg_pool2d(x, 2)
            if self.extra:
                x = F.pad(x, (0, 0, 0, 0, 0, self.extra))
            dh, dw = x.shape[2] - out.shape[2], x.shape[3] - out.shape[3]
            if dh or dw:
                out = F.pad(out, (0, dw, 0, dh))
        return F.relu(out + x)


class FaceRecognitionNet(nn.Module):
    """(N, 3, 150, 150) float RGB 0..255 -> (N, 128) descriptors."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, 32, 7, 2)
        self.blocks = nn.ModuleList(Residual(cin, cout, down) for _, cin, cout, down in RESIDUALS)
        self.fc = nn.Linear(256, DESCRIPTOR_SIZE, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / 255.0
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean((2, 3)))


def read_weights(manifest: Path) -> dict[str, np.ndarray]:
    """Every tensor of a tfjs weights manifest, dequantised (value = q * scale + min) to float32."""
    groups = json.loads(manifest.read_text())
    out = {}
    for group in groups:
        data = b"".join((manifest.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"], dtype=np.int64))
            quant = spec.get("quantization")
            if quant is None:
                if spec["dtype"] != "float32":
                    raise ValueError(f"{manifest}: {spec['name']} has unsupported dtype {spec['dtype']}")
                values = np.frombuffer(data, np.float32, count, offset).copy()
                offset += count * 4
            elif quant["dtype"] == "uint8":
                q = np.frombuffer(data, np.uint8, count, offset)
                values = (q.astype(np.float64) * quant["scale"] + quant["min"]).astype(np.float32)
                offset += count
            else:
                raise ValueError(f"{manifest}: {spec['name']} has unsupported quantisation {quant['dtype']}")
            out[spec["name"]] = values.reshape(spec["shape"])
        if offset != len(data):
            raise ValueError(f"{manifest}: {len(data) - offset} bytes left after the last tensor")
    return out


def _load_conv(conv: nn.Conv2d, weights: dict[str, np.ndarray], prefix: str) -> None:
    """Fold conv bias and the scale layer: s * (w x + b) + t = (s w) x + (s b + t)."""
    filters = torch.from_numpy(weights[f"{prefix}/conv/filters"]).permute(3, 2, 0, 1)  # HWIO -> OIHW
    bias = torch.from_numpy(weights[f"{prefix}/conv/bias"])
    scale = torch.from_numpy(weights[f"{prefix}/scale/weights"])
    shift = torch.from_numpy(weights[f"{prefix}/scale/biases"])
    if filters.shape != conv.weight.shape:
        raise ValueError(f"{prefix}: filters {tuple(filters.shape)}, expected {tuple(conv.weight.shape)}")
    conv.weight.data.copy_(filters * scale.view(-1, 1, 1, 1))
    conv.bias.data.copy_(bias * scale + shift)


def from_manifest(manifest: Path) -> FaceRecognitionNet:
    """The network with face-api's weights, in eval mode; every tensor of the manifest is used."""
    weights = read_weights(manifest)
    net = FaceRecognitionNet()
    _load_conv(net.stem, weights, "conv32_down")
    used = {f"conv32_down/{s}" for s in ("conv/filters", "conv/bias", "scale/weights", "scale/biases")}
    for block, (name, *_rest) in zip(net.blocks, RESIDUALS):
        for conv, sub in ((block.conv1, "conv1"), (block.conv2, "conv2")):
            _load_conv(conv, weights, f"{name}/{sub}")
            used |= {f"{name}/{sub}/{s}" for s in ("conv/filters", "conv/bias", "scale/weights", "scale/biases")}
    net.fc.weight.data.copy_(torch.from_numpy(weights["fc"]).T)
    used.add("fc")
    if set(weights) != used:
        raise ValueError(f"{manifest}: tensors not used by the network: {sorted(set(weights) - used)}")
    return net.eval()
