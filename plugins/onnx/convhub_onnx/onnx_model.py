"""ONNX models: detecting and reading .onnx files (or in-memory ModelProtos), running them with onnxruntime."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from convhub.errors import InputError
from convhub.types import Artifact, TensorSpec, input_facts

from convhub_onnx import validate

# The first bytes of a serialized ModelProto: field 1 (ir_version, a small varint), then the
# tag of one of the fields that follow it in field order (producer_name ... opset_import).
# IR versions start at 3 (2017): a SavedModel's saved_model.pb starts with the same two tags
# but a schema version of 1.
IR_VERSION_TAG = 0x08
IR_VERSIONS = range(3, 33)
NEXT_FIELD_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42}

# onnxruntime names element types as ONNX does ("tensor(float)"); these differ from NumPy's names.
ONNX_TO_NUMPY = {"float": "float32", "double": "float64", "string": "object"}


def _is_model_proto(obj: Any) -> bool:
    # Judged from the class's module name, so detection never imports onnx.
    return type(obj).__name__ == "ModelProto" and type(obj).__module__.split(".")[0] == "onnx"


def _looks_like_onnx(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(3)
    return len(head) == 3 and head[0] == IR_VERSION_TAG and head[1] in IR_VERSIONS and head[2] in NEXT_FIELD_TAGS


def detect(thing: Any) -> bool:
    if isinstance(thing, Path):
        return thing.is_file() and (thing.suffix.lower() == ".onnx" or _looks_like_onnx(thing))
    return _is_model_proto(thing)


def default_opset(model) -> int | None:
    """The version of the default ("ai.onnx") operator set a model imports."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


# Ops that quantize activations on the fly from float (onnxruntime's quantize_dynamic writes these)...
DYNAMIC_QUANTIZED_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}
INT8_TYPES = {"INT8", "UINT8"}


def _static_quantized(op_type: str) -> bool:
    """An op of activations quantized with fixed scales: QuantizeLinear (QDQ format, what tf2onnx
    writes from an int8 .tflite) or a QLinear* op (onnxruntime's QOperator format)."""
    return op_type == "QuantizeLinear" or op_type.startswith("QLinear")


def precision_of(model) -> str:
    """What an ONNX model computes in, for the parity tolerance, judged from its ops and initializers:

    - "dynamic-range": activations quantized at run time (DynamicQuantizeLinear, MatMulInteger,
      ConvInteger), or int8/uint8 weights dequantized (DequantizeLinear) into a float graph;
    - "int8": activations quantized with fixed scales (QuantizeLinear, QLinear* ops);
    - "float16": most float weights hold float16 values: float16 initializers, or float32 ones
      whose values are all float16 numbers (tf2onnx widens a float16 .tflite's weights so);
    - "float32" otherwise.
    """
    import onnx

    graphs = list(validate._graphs(model.graph))
    ops = {node.op_type for graph in graphs for node in graph.node}
    sizes: dict[str, int] = {}
    for init in (i for graph in graphs for i in graph.initializer):
        name = onnx.TensorProto.DataType.Name(init.data_type)
        if name == "FLOAT" and _float16_valued(init):
            name = "FLOAT16"
        sizes[name] = sizes.get(name, 0) + math.prod(init.dims)
    if ops & DYNAMIC_QUANTIZED_OPS:
        return "dynamic-range"
    if any(_static_quantized(op) for op in ops):
        return "int8"
    if "DequantizeLinear" in ops and INT8_TYPES & set(sizes):
        return "dynamic-range"
    if sizes.get("FLOAT16", 0) > sizes.get("FLOAT", 0):
        return "float16"
    return "float32"


def _float16_valued(init) -> bool:
    """A float32 initializer holding float16 numbers only. Few distinct values (zeros, ones, a
    batch norm's fresh statistics) prove nothing; weights stored outside the file are not read."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    if init.data_location == onnx.TensorProto.EXTERNAL:
        return False
    values = numpy_helper.to_array(init)
    return bool(np.array_equal(values.astype(np.float16).astype(np.float32), values)) and len(np.unique(values)) >= 16


def read(thing: Any, options: Mapping[str, Any]) -> Artifact:
    import onnx

    if isinstance(thing, Path):
        if not thing.is_file():
            raise InputError(f"{thing} is not an ONNX file")
        try:
            model = onnx.load(str(thing), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - protobuf says it is not a ModelProto
            raise InputError(f"{thing} is not an ONNX model: {exc}") from exc
        if not model.graph.node and not model.graph.output:
            raise InputError(f"{thing} is not an ONNX model (it parses, but holds no graph)")
        artifact = Artifact("onnx", path=thing)
    elif _is_model_proto(thing):
        model, artifact = thing, Artifact("onnx", model=thing)
    else:
        raise InputError(f"a {type(thing).__name__} is not an ONNX model")
    session = Session(artifact)  # proves onnxruntime loads it, and gives the specs it will run with
    artifact.facts = {
        **input_facts(session.inputs),
        "outputs": list(session.outputs),
        "opset": default_opset(model),
        "precision": precision_of(model),
    }
    return artifact


def numpy_dtype(onnx_type: str) -> str:
    """'tensor(float)' → 'float32'; non-tensor types (sequences, maps) are returned as they are."""
    if not (onnx_type.startswith("tensor(") and onnx_type.endswith(")")):
        return onnx_type
    name = onnx_type[len("tensor("):-1]
    return ONNX_TO_NUMPY.get(name, name)


def _dims(shape) -> tuple[int | None, ...]:
    # onnxruntime gives a symbolic dim as its name ('batch') or None; convhub says None for both.
    return tuple(d if isinstance(d, int) and d >= 0 else None for d in shape)


class Session:
    """Runs an ONNX model with onnxruntime on the CPU."""

    def __init__(self, artifact: Artifact):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: warnings about unused initializers are noise here
        source = str(artifact.path) if artifact.path is not None else artifact.model.SerializeToString()
        self._session = ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
        self.inputs = [TensorSpec(i.name, _dims(i.shape), numpy_dtype(i.type)) for i in self._session.get_inputs()]
        self.outputs = [o.name for o in self._session.get_outputs()]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        values = self._session.run(self.outputs, {s.name: feeds[s.name] for s in self.inputs})
        return dict(zip(self.outputs, values))
