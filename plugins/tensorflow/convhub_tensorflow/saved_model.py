"""TensorFlow SavedModels: reading one signature's specs and running it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from convhub.errors import InputError
from convhub.types import Artifact, TensorSpec, input_facts

from convhub_tensorflow import _tf

DEFAULT_SIGNATURE = "serving_default"


def detect(thing: Any) -> bool:
    return isinstance(thing, Path) and thing.is_dir() and (
        (thing / "saved_model.pb").exists() or (thing / "saved_model.pbtxt").exists()
    )


def _signature(path: Path, name: str):
    tf = _tf.tensorflow()
    loaded = tf.saved_model.load(str(path))
    if name not in loaded.signatures:
        available = ", ".join(sorted(loaded.signatures)) or "none"
        raise InputError(f"{path} has no signature {name!r} (available: {available})")
    return loaded, loaded.signatures[name]


def _specs(fn) -> list[TensorSpec]:
    return [
        TensorSpec(name, tuple(spec.shape.as_list()), _tf.numpy_dtype(spec.dtype))
        for name, spec in fn.structured_input_signature[1].items()
    ]


def _output_names(fn) -> list[str]:
    # TF returns signature outputs in hash order; output_10 after output_9, like Keras numbered them.
    def natural(name: str):
        stem, _, index = name.rpartition("_")
        return (stem, int(index)) if index.isdigit() else (name, -1)

    return sorted(fn.structured_outputs, key=natural)


def op_types(fn) -> set[str]:
    """Every op type in a signature's graph, including the functions it calls."""
    graph_def = fn.graph.as_graph_def()
    ops = {node.op for node in graph_def.node}
    ops.update(node.op for function in graph_def.library.function for node in function.node_def)
    return ops


def read(thing: Any, options: Mapping[str, Any]) -> Artifact:
    if not detect(thing):
        raise InputError(f"{thing} is not a SavedModel directory (no saved_model.pb inside)")
    signature = options.get("signature") or DEFAULT_SIGNATURE
    loaded, fn = _signature(thing, signature)
    specs = _specs(fn)
    return Artifact(
        "savedmodel",
        path=thing,
        facts={
            **input_facts(specs),
            "outputs": _output_names(fn),
            "signature": signature,
            "signatures": sorted(loaded.signatures),
            # StableHLO wrapped in XlaCallModule (native JAX export): tf2onnx and tensorflowjs can't take it.
            "xla_call_module": "XlaCallModule" in op_types(fn),
        },
    )


class Session:
    """Runs one signature of a SavedModel with TensorFlow."""

    def __init__(self, artifact: Artifact):
        self._loaded, self._fn = _signature(artifact.path, artifact.facts.get("signature", DEFAULT_SIGNATURE))
        self.inputs = _specs(self._fn)
        self.outputs = _output_names(self._fn)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        tf = _tf.tensorflow()
        result = self._fn(**{name: tf.constant(value) for name, value in feeds.items()})
        return {name: result[name].numpy() for name in self.outputs}
