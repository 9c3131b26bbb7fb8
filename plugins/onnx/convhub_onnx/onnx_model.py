"""ONNX models: detecting and reading .onnx files (or in-memory ModelProtos), running them with onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from convhub.errors import InputError
from convhub.types import Artifact, TensorSpec, input_facts

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
