"""The face detector models, one entry each: what the build chain and the runtime need of a model.

    blazeface full / short   MediaPipe BlazeFace (models/blazeface/), weights from the .tflite
    ssd-mobilenet            face-api's SSD-MobileNet-v1 (models/ssd_mobilenet/), weights from
                             face-api's npm package

Every model takes one NHWC RGB frame in [-1, 1], letterboxed to a square (the same
preprocessing), and gives two raw outputs; its entry turns them into boxes, scores and
keypoints in input pixels. The build (`models/build.py`: TorchScript -> ONNX -> TVM) and the
runtime (`models/runtime.py`) know nothing else about a model. Nothing here imports torch
until a network is asked for: the detector service runs compiled models without it.
"""
from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class DetectorModel(abc.ABC):
    """A face detector network and its post-processing."""
    name: str                      # also its build folder, models/build/<name>/
    input_size: int
    outputs: tuple[str, str]       # the ONNX output names
    output_widths: tuple[int, int]  # last dimension of each output, (1, anchors, width)
    anchors: int
    code: tuple[Path, ...]         # files whose bytes key the build cache

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.input_size, self.input_size, 3)

    @abc.abstractmethod
    def weights_digest(self) -> str:
        """sha256 of the weights the network is made from (part of the build's cache key)."""

    @abc.abstractmethod
    def network(self):
        """The PyTorch network with its weights, in eval mode."""

    @abc.abstractmethod
    def detections(self, outputs, score_threshold: float, nms_iou: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw outputs -> (boxes x1 y1 x2 y2, scores, keypoints (N, K, 2)) in input pixels."""


@dataclass(frozen=True)
class BlazeFaceModel(DetectorModel):
    variant: str = "full"

    def weights_digest(self) -> str:
        from .weights import sha256, tflite_path

        return sha256(tflite_path(self.variant))

    def network(self):
        from .blazeface import from_tflite
        from .weights import tflite_path

        return from_tflite(self.variant, tflite_path(self.variant))

    def detections(self, outputs, score_threshold, nms_iou):
        from .blazeface.postprocess import ANCHOR_OPTIONS, decode, ssd_anchors, weighted_nms

        regressors, logits = outputs
        anchors = ssd_anchors(**ANCHOR_OPTIONS[self.variant])
        boxes, scores, kps = decode(regressors, logits, anchors, self.input_size, score_threshold)
        return weighted_nms(boxes, scores, kps, nms_iou)


@dataclass(frozen=True)
class SsdMobilenetModel(DetectorModel):
    def _manifest(self) -> Path:
        from .facerec.weights import fetch

        return fetch() / "model" / "ssd_mobilenetv1_model-weights_manifest.json"

    def weights_digest(self) -> str:
        manifest = self._manifest()
        h = hashlib.sha256(manifest.read_bytes())
        h.update((manifest.parent / "ssd_mobilenetv1_model.bin").read_bytes())
        return h.hexdigest()

    def network(self):
        from .ssd_mobilenet.net import from_manifest

        return from_manifest(self._manifest())[0]

    def detections(self, outputs, score_threshold, nms_iou):
        from .ssd_mobilenet.postprocess import anchors, decode, hard_nms, to_input_pixels

        encodings, logits = outputs
        boxes, scores = decode(encodings, logits, anchors(self.input_size))
        keep = hard_nms(boxes, scores, score_threshold, nms_iou)
        return (to_input_pixels(boxes[keep], self.input_size), scores[keep],
                np.zeros((len(keep), 0, 2), np.float32))


_BLAZEFACE_CODE = (MODELS_DIR / "blazeface" / "net.py", MODELS_DIR / "blazeface" / "tflite.py")
MODELS: dict[str, DetectorModel] = {
    "full": BlazeFaceModel("full", 192, ("regressors", "classificators"), (16, 1), 2304, _BLAZEFACE_CODE, "full"),
    "short": BlazeFaceModel("short", 128, ("regressors", "classificators"), (16, 1), 896, _BLAZEFACE_CODE, "short"),
    "ssd-mobilenet": SsdMobilenetModel("ssd-mobilenet", 512, ("box_encodings", "class_logits"), (4, 3), 5118,
                                       (MODELS_DIR / "ssd_mobilenet" / "net.py",)),
}
