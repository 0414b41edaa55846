"""Read conv weights out of a .tflite flatbuffer, and run the file with LiteRT as reference.

The flatbuffer is parsed with the schema module that ships with ai-edge-litert, so no
TensorFlow is imported. BlazeFace stores its weights as float16 constants feeding
DEQUANTIZE ops; float16 -> float32 is exact, so PyTorch sees the values LiteRT computes with.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as fb

_OP_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
_DTYPES = {fb.TensorType.FLOAT32: np.float32, fb.TensorType.FLOAT16: np.float16,
           fb.TensorType.INT32: np.int32}


@dataclass
class ConvWeights:
    """One CONV_2D / DEPTHWISE_CONV_2D op: kernel in TFLite layout (OHWI, depthwise 1HWC)."""
    name: str
    depthwise: bool
    kernel: np.ndarray
    bias: np.ndarray
    stride: int
    same_padding: bool


def read_convs(path: Path) -> list[ConvWeights]:
    """Every convolution of the (single) subgraph, in execution order."""
    buf = Path(path).read_bytes()
    model = fb.Model.GetRootAs(buf, 0)
    graph = model.Subgraphs(0)
    producer: dict[int, int] = {}  # DEQUANTIZE output tensor -> its float16 input tensor
    convs = []

    def constant(tensor_index: int) -> np.ndarray:
        t = graph.Tensors(producer.get(tensor_index, tensor_index))
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        return data.view(_DTYPES[t.Type()]).reshape(t.ShapeAsNumpy()).astype(np.float32)

    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = _OP_NAMES[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        if name == "DEQUANTIZE":
            producer[op.Outputs(0)] = op.Inputs(0)
        elif name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opts = fb.BuiltinOptionsCreator(op.BuiltinOptionsType(), op.BuiltinOptions())
            assert opts.strideH == opts.strideW and opts.dilationHFactor == 1, "unsupported conv options"
            assert opts.fusedActivationFunction == fb.ActivationFunctionType.NONE
            kernel_name = graph.Tensors(producer.get(op.Inputs(1), op.Inputs(1))).Name().decode()
            convs.append(ConvWeights(
                name=kernel_name.rsplit("/", 1)[0], depthwise=name == "DEPTHWISE_CONV_2D",
                kernel=constant(op.Inputs(1)), bias=constant(op.Inputs(2)),
                stride=opts.strideH, same_padding=opts.padding == fb.Padding.SAME))
    return convs


def litert_infer(path: Path, num_threads: int = 1):
    """MediaPipe's own runtime on the .tflite (LiteRT, XNNPACK delegate): NHWC input -> outputs."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=num_threads)
    interp.allocate_tensors()
    index = interp.get_input_details()[0]["index"]
    outs = {o["shape"][-1]: o["index"] for o in interp.get_output_details()}

    def infer(x_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        interp.set_tensor(index, np.ascontiguousarray(x_nhwc, np.float32))
        interp.invoke()
        return interp.get_tensor(outs[16]), interp.get_tensor(outs[1])

    return infer


def run_litert(path: Path, x_nhwc: np.ndarray, num_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Reference outputs (regressors, classificators) of the .tflite for one NHWC float input."""
    return litert_infer(path, num_threads)(x_nhwc)
