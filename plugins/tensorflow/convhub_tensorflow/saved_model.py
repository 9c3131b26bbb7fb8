"""TensorFlow SavedModels: reading one signature's specs and running it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from convhub.errors import InputError
from convhub.types import Artifact, TensorSpec, input_facts

from convhub_tensorflow import frameworks, graph_ranges

DEFAULT_SIGNATURE = "serving_default"


def detect(thing: Any) -> bool:
    return isinstance(thing, Path) and thing.is_dir() and (
        (thing / "saved_model.pb").exists() or (thing / "saved_model.pbtxt").exists()
    )


def _signature(path: Path, name: str):
    tf = frameworks.tensorflow()
    loaded = tf.saved_model.load(str(path))
    if name not in loaded.signatures:
        available = ", ".join(sorted(loaded.signatures)) or "none"
        raise InputError(f"{path} has no signature {name!r} (available: {available})")
    return loaded, loaded.signatures[name]


def _specs(fn) -> list[TensorSpec]:
    return [
        TensorSpec(name, tuple(spec.shape.as_list()), frameworks.numpy_dtype(spec.dtype))
        for name, spec in fn.structured_input_signature[1].items()
    ]


def natural_order(names) -> list[str]:
    """Signature output names in the order convhub gives them: TF keeps them in a map (hash order),
    so they are sorted, output_10 after output_9 as Keras numbered them."""
    def natural(name: str):
        stem, _, index = name.rpartition("_")
        return (stem, int(index)) if index.isdigit() else (name, -1)

    return sorted(names, key=natural)


def _output_names(fn) -> list[str]:
    return natural_order(fn.structured_outputs)


def signature_outputs(path: Path, signature: str) -> list[str]:
    """A signature's output names from saved_model.pb, in natural_order, without loading the model."""
    frameworks.tensorflow()
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    for meta_graph in saved.meta_graphs:
        if signature in meta_graph.signature_def:
            return natural_order(meta_graph.signature_def[signature].outputs)
    raise InputError(f"{path} has no signature {signature!r}")


def op_types(graph_def) -> set[str]:
    """Every op type in a signature's graph (its GraphDef), including the functions it calls."""
    ops = {node.op for node in graph_def.node}
    ops.update(node.op for function in graph_def.library.function for node in function.node_def)
    return ops


def read(thing: Any, options: Mapping[str, Any]) -> Artifact:
    if not detect(thing):
        raise InputError(f"{thing} is not a SavedModel directory (no saved_model.pb inside)")
    signature = options.get("signature") or DEFAULT_SIGNATURE
    loaded, fn = _signature(thing, signature)
    specs = _specs(fn)
    graph_def = fn.graph.as_graph_def()  # serialised once: read for its ops and its input ranges
    facts = {
        **input_facts(specs),
        "outputs": _output_names(fn),
        "signature": signature,
        "signatures": sorted(loaded.signatures),
        # StableHLO wrapped in XlaCallModule (native JAX export): tf2onnx and tensorflowjs can't take it.
        "xla_call_module": "XlaCallModule" in op_types(graph_def),
    }
    ranges = graph_ranges.input_ranges(graph_def, [s.name for s in specs])
    if ranges:
        facts["input_ranges"] = ranges
    return Artifact("savedmodel", path=thing, facts=facts)


class Session:
    """Runs one signature of a SavedModel with TensorFlow."""

    def __init__(self, artifact: Artifact):
        self._loaded, self._fn = _signature(artifact.path, artifact.facts.get("signature", DEFAULT_SIGNATURE))
        self.inputs = _specs(self._fn)
        # In the order the hop that wrote it gave (a Keras model's), when it did; else sorted.
        names = _output_names(self._fn)
        given = artifact.facts.get("outputs")
        self.outputs = list(given) if given and sorted(given) == sorted(names) else names

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        tf = frameworks.tensorflow()
        result = self._fn(**{name: tf.constant(value) for name, value in feeds.items()})
        return {name: result[name].numpy() for name in self.outputs}
