"""SavedModels and Keras files for `convhub inspect`, and convhub's provenance record in a
SavedModel (assets.extra/convhub.json: TensorFlow and TF Serving copy assets.extra along and
never read this file, so it changes nothing the model computes)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from convhub.inspection import histogram, shares
from convhub.types import TensorSpec

from convhub_tensorflow import frameworks, keras_model, saved_model

ASSETS_EXTRA = "assets.extra"
RECORD = "convhub.json"
BOOKKEEPING_OPS = {"NoOp", "Identity", "StatefulPartitionedCall", "PartitionedCall"}


def embed(path: Path, record: Mapping[str, Any]) -> None:
    extra = Path(path) / ASSETS_EXTRA
    extra.mkdir(exist_ok=True)
    (extra / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def embedded(path: Path) -> dict[str, Any] | None:
    file = Path(path) / ASSETS_EXTRA / RECORD
    if not file.is_file():
        return None
    record = json.loads(file.read_text(encoding="utf-8"))
    return record if isinstance(record, dict) else None


def _saved_model_proto(path: Path) -> Any:
    frameworks.tensorflow()
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    return proto


def _specs(tensors: Mapping[str, Any]) -> list[TensorSpec]:
    tf = frameworks.tensorflow()
    specs = []
    for name, info in tensors.items():
        shape = () if info.tensor_shape.unknown_rank else tuple(
            None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)
        specs.append(TensorSpec(name, shape, frameworks.numpy_dtype(tf.dtypes.as_dtype(info.dtype))))
    return specs


def _ordered(specs: list[TensorSpec]) -> list[TensorSpec]:
    by_name = {s.name: s for s in specs}
    return [by_name[n] for n in saved_model.natural_order(by_name)]


def _reachable_ops(meta_graph: Any, signature: Any) -> list[str]:
    """The ops of the functions a signature calls (and the ones they call), bookkeeping left out."""
    functions = {f.signature.name: f for f in meta_graph.graph_def.library.function}
    outputs = {t.name.partition(":")[0] for t in signature.outputs.values()}
    todo = [_called(node) for node in meta_graph.graph_def.node if node.name in outputs]
    seen: set[str] = set()
    ops: list[str] = []
    names = [n for group in todo for n in group]
    while names:
        name = names.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        for node in functions[name].node_def:
            names += _called(node)
            if node.op not in BOOKKEEPING_OPS:
                ops.append(node.op)
    return ops


def _called(node: Any) -> list[str]:
    called = []
    for attr in node.attr.values():
        if attr.HasField("func"):
            called.append(attr.func.name)
        called += [f.name for f in attr.list.func]
    return called


def _parameters(meta_graph: Any, signature: str | None) -> dict[str, int]:
    """Parameters per dtype: the variables the signature's function captures (the object graph's
    bound inputs), each once; every variable when the signature cannot be traced there. (The
    checkpoint can hold one model's weights twice: Keras's export tracks two lists of them.)"""
    tf = frameworks.tensorflow()
    graph = meta_graph.object_graph_def
    ids: set[int] = set()
    if graph.nodes:
        signatures = next((c.node_id for c in graph.nodes[0].children if c.local_name == "signatures"), None)
        for child in graph.nodes[signatures].children if signatures is not None else []:
            function = graph.concrete_functions.get(graph.nodes[child.node_id].bare_concrete_function.concrete_function_name)
            if child.local_name == signature and function is not None:
                ids = set(function.bound_inputs)
    if not ids:
        ids = {i for i, node in enumerate(graph.nodes) if node.WhichOneof("kind") == "variable"}
    counts: dict[str, int] = {}
    for i in ids:
        node = graph.nodes[i]
        if node.WhichOneof("kind") != "variable":
            continue
        dtype = frameworks.numpy_dtype(tf.dtypes.as_dtype(node.variable.dtype))
        counts[dtype] = counts.get(dtype, 0) + math.prod(max(d.size, 0) for d in node.variable.shape.dim)
    return counts


def inspect_saved_model(path: Path) -> dict[str, Any]:
    proto = _saved_model_proto(path)
    meta_graph = proto.meta_graphs[0]
    signatures = {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
    name = saved_model.DEFAULT_SIGNATURE if saved_model.DEFAULT_SIGNATURE in signatures else next(iter(signatures), None)
    chosen = signatures.get(name) if name else None
    counts = _parameters(meta_graph, name)
    extra = Path(path) / ASSETS_EXTRA
    return {
        "inputs": _specs(chosen.inputs) if chosen is not None else [],
        "outputs": _ordered(_specs(chosen.outputs)) if chosen is not None else [],
        "parameters": sum(counts.values()),
        "precision": shares(counts),
        "operators": histogram(_reachable_ops(meta_graph, chosen)) if chosen is not None else {},
        "provenance": embedded(path),
        "details": {
            "signatures": ", ".join(sorted(signatures)) + (f" (inputs and outputs of {name})" if name else ""),
            **({"assets.extra": ", ".join(sorted(p.name for p in extra.iterdir()))} if extra.is_dir() else {}),
        },
    }


def inspect_keras(path: Path) -> dict[str, Any]:
    model = keras_model.read(Path(path), {}).model
    names = keras_model.named_outputs(model) or [f"output_{i}" for i in range(len(model.outputs))]
    outputs = [TensorSpec(n, tuple(t.shape), str(getattr(t.dtype, "name", t.dtype))) for n, t in zip(names, model.outputs)]
    counts: dict[str, int] = {}
    for weight in model.weights:
        dtype = str(getattr(weight.dtype, "name", weight.dtype))
        counts[dtype] = counts.get(dtype, 0) + math.prod(weight.shape)
    return {
        "inputs": keras_model.input_specs(model),
        "outputs": outputs,
        "parameters": int(model.count_params()),
        "precision": shares(counts),
        "operators": histogram(type(layer).__name__ for layer in keras_model._all_layers(model)),
        "provenance": None,
        "details": {"model": f"{type(model).__name__} {model.name!r} (operators are its layers)"},
    }
