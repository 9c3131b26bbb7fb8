"""Writing .tflite files from SavedModels and running them with the LiteRT interpreter."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from convhub.errors import InputError
from convhub.types import Artifact, TensorSpec

FLATBUFFER_ID = b"TFL3"  # bytes 4..8 of every TFLite flatbuffer


def _is_flatbuffer(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(8)[4:8] == FLATBUFFER_ID


def detect(thing: Any) -> bool:
    return isinstance(thing, Path) and thing.is_file() and (thing.suffix.lower() == ".tflite" or _is_flatbuffer(thing))


def read(thing: Any, options: Mapping[str, Any]) -> Artifact:
    if not (isinstance(thing, Path) and thing.is_file() and _is_flatbuffer(thing)):
        raise InputError(f"{thing} is not a TFLite flatbuffer")
    session = Session(Artifact("tflite", path=thing))
    return Artifact("tflite", path=thing, facts={"inputs": session.inputs, "signature": session.signature})


def from_saved_model(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    signature = artifact.facts.get("signature", "serving_default")
    # Every signature the SavedModel serves survives into the .tflite; the checked one first.
    keys = [signature] + [s for s in artifact.facts.get("signatures", []) if s != signature]
    converter = tf.lite.TFLiteConverter.from_saved_model(str(artifact.path), signature_keys=keys)
    destination.write_bytes(converter.convert())
    return {"precision": "float32", "signature": signature}


class Session:
    """Runs a .tflite signature with ai_edge_litert's Interpreter (resizing dynamic dims as needed)."""

    def __init__(self, artifact: Artifact):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(artifact.path))
        signatures = self._interpreter.get_signature_list()
        wanted = artifact.facts.get("signature")
        self.signature = wanted if wanted in signatures else next(iter(signatures), None)
        if self.signature is None:
            raise InputError(f"{artifact.path} has no signature to run")
        self._runner = self._interpreter.get_signature_runner(self.signature)
        details = self._runner.get_input_details()
        self.inputs = [
            TensorSpec(
                name,
                tuple(None if d < 0 else int(d) for d in detail["shape_signature"]),
                detail["dtype"].__name__ if isinstance(detail["dtype"], type) else str(detail["dtype"]),
            )
            for name, detail in details.items()
        ]
        self.outputs = list(self._runner.get_output_details())

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        result = self._runner(**feeds)
        return {name: result[name] for name in self.outputs}
