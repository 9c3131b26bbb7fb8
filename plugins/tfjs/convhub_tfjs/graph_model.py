"""TF.js graph models on disk: model.json (topology, signature, weights manifest) and weight shards.

Everything here reads and writes JSON only; no framework is imported.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Mapping

from convhub.errors import InputError
from convhub.types import Artifact, TensorSpec, input_facts

MODEL_JSON = "model.json"
GRAPH_MODEL = "graph-model"

# TensorFlow's DataType enum names, as model.json spells them, to NumPy dtype names.
NUMPY_DTYPES = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_HALF": "float16",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_INT16": "int16",
    "DT_INT8": "int8",
    "DT_UINT8": "uint8",
    "DT_UINT16": "uint16",
    "DT_BOOL": "bool",
}


def load(path: Path) -> dict:
    with (path / MODEL_JSON).open(encoding="utf-8") as f:
        return json.load(f)


def detect(thing: Any) -> bool:
    if not (isinstance(thing, Path) and (thing / MODEL_JSON).is_file()):
        return False
    try:
        return load(thing).get("format") == GRAPH_MODEL
    except (OSError, ValueError, AttributeError):
        return False


def _spec(name: str, info: Mapping[str, Any]) -> TensorSpec:
    dtype = NUMPY_DTYPES.get(info.get("dtype", ""))
    if dtype is None:
        raise InputError(f"input {name!r} has dtype {info.get('dtype')!r}, which convhub cannot feed")
    shape = info.get("tensorShape", {})
    if shape.get("unknownRank"):
        raise InputError(f"input {name!r} has an unknown rank in model.json")
    dims = tuple(None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in shape.get("dim", []))
    return TensorSpec(name, dims, dtype)


def signature_of(model_json: Mapping[str, Any], where: Path) -> tuple[list[TensorSpec], list[str]]:
    """Input specs and output names, by the signature's names (those of the SavedModel signature)."""
    signature = model_json.get("signature") or {}
    if not signature.get("inputs") or not signature.get("outputs"):
        raise InputError(f"{where / MODEL_JSON} has no signature with inputs and outputs")
    inputs = [_spec(name, info) for name, info in signature["inputs"].items() if "resourceId" not in info]
    return inputs, list(signature["outputs"])


# The weights' quantization dtype (tfjs_quantize, and in the weights manifest) → the "precision"
# fact. With several in one manifest the coarsest wins: the tolerance fits the worst weights.
QUANTIZED_PRECISION = {"uint8": "uint8-weights", "float16": "float16", "uint16": "uint16-weights"}


def precision_of(model_json: Mapping[str, Any]) -> str:
    """What the weights were stored as (TF.js computes in float32 either way); "float32" if not quantized."""
    found = {
        (weight.get("quantization") or {}).get("dtype")
        for group in model_json.get("weightsManifest", [])
        for weight in group.get("weights", [])
    }
    return next((p for dtype, p in QUANTIZED_PRECISION.items() if dtype in found), "float32")


def read(thing: Any, options: Mapping[str, Any]) -> Artifact:
    if not detect(thing):
        raise InputError(f"{thing} is not a TF.js graph model directory (model.json with format {GRAPH_MODEL!r})")
    model_json = load(thing)
    inputs, _ = signature_of(model_json, thing)
    return Artifact("tfjs", path=thing, facts={**input_facts(inputs), "precision": precision_of(model_json)})


def shard_files(path: Path) -> list[Path]:
    return [path / p for group in load(path).get("weightsManifest", []) for p in group["paths"]]


def _graphs(model_json: Mapping[str, Any]):
    """Every node list in a model.json: the graph, its functions, and the table initializer."""
    for graph in (model_json.get("modelTopology") or {}, model_json.get("modelInitializer") or {}):
        yield graph.get("node", [])
        for function in (graph.get("library") or {}).get("function", []):
            yield function.get("nodeDef", [])


def ops_of(model_json: Mapping[str, Any]) -> set[str]:
    return {node["op"] for nodes in _graphs(model_json) for node in nodes}


def rewrite_erfc(model_json: dict) -> int:
    """Replace each top-level Erfc node by Sub(OnesLike(x), Erf(x)); returns how many.

    TF's exact GELU (Keras' default `gelu`) computes 0.5·x·erfc(-x/√2), and TF.js has Erf but no
    Erfc op. The Sub keeps the Erfc's name, so the nodes that read it are unchanged.
    """
    nodes = (model_json.get("modelTopology") or {}).get("node", [])
    rewritten = []
    count = 0
    for node in nodes:
        if node["op"] != "Erfc":
            rewritten.append(node)
            continue
        count += 1
        name, attr, device = node["name"], node.get("attr", {}), node.get("device")
        extra = {"device": device} if device else {}
        x = node["input"][:1]
        controls = [i for i in node["input"] if i.startswith("^")]
        rewritten += [
            {"name": f"{name}/convhub_ones", "op": "OnesLike", "input": x, "attr": attr, **extra},
            {"name": f"{name}/convhub_erf", "op": "Erf", "input": x, "attr": attr, **extra},
            {"name": name, "op": "Sub", "input": [f"{name}/convhub_ones", f"{name}/convhub_erf", *controls],
             "attr": attr, **extra},
        ]
    if count:
        model_json["modelTopology"]["node"] = rewritten
    return count


FUSED_OPS = {"_FusedMatMul", "FusedConv2D", "_FusedConv2D", "FusedDepthwiseConv2dNative"}
# TF.js's CPU backend runs Relu, Relu6, Elu, LeakyRelu, Prelu and Sigmoid inside a fused op, but
# TF's optimizer fuses others too. These it lacks there, and has as ops of their own:
STANDALONE_ACTIVATIONS = {"Tanh"}


def unfuse_activations(model_json: dict) -> int:
    """Move fused activations TF.js's CPU backend lacks ("Activation tanh has not been implemented
    for the CPU backend") out of fused MatMul/Conv nodes into a node of their own; returns how many.

    The activation node takes the fused node's name, so the nodes that read it are unchanged.
    """
    nodes = (model_json.get("modelTopology") or {}).get("node", [])
    rewritten, count = [], 0
    for node in nodes:
        attr = node.get("attr", {})
        fused = [base64.b64decode(s).decode() for s in attr.get("fused_ops", {}).get("list", {}).get("s", [])]
        activation = fused[-1] if len(fused) > 1 else None
        if node["op"] not in FUSED_OPS or activation not in STANDALONE_ACTIVATIONS:
            rewritten.append(node)
            continue
        count += 1
        name = node["name"]
        inner = {**node, "name": f"{name}/convhub_unfused",
                 "attr": {**attr, "fused_ops": {"list": {"s": [base64.b64encode(op.encode()).decode() for op in fused[:-1]]}}}}
        extra = {"device": node["device"]} if node.get("device") else {}
        rewritten += [inner, {"name": name, "op": activation, "input": [inner["name"]], "attr": {"T": attr.get("T", {"type": "DT_FLOAT"})}, **extra}]
    if count:
        model_json["modelTopology"]["node"] = rewritten
    return count


def return_list_items_whole(model_json: dict) -> int:
    """In each loop body, return the tensor a TensorListSetItem stores instead of an Identity of
    it; how many returns changed.

    TF.js (4.22) disposes every tensor of a function call that is not the call's input or output
    when the call ends, ignoring the keep() a TensorList put on the tensors it holds. A Keras RNN
    with return_sequences stores each step's output in a TensorList and returns Identity(output)
    as the loop state: the stored tensor is disposed at the end of its step, and its memory goes
    with the loop state a step later, so TensorListStack after the loop reads freed tensors
    ("Cannot read properties of undefined (reading 'backend')"). Returning the stored tensor
    itself makes it an output of the call, which TF.js keeps; Identity computes nothing, so the
    values are the same."""
    count = 0
    for function in model_json.get("modelTopology", {}).get("library", {}).get("function", []):
        nodes = {node["name"]: node for node in function.get("nodeDef", [])}
        stored = {node["input"][2] for node in nodes.values()
                  if node["op"] == "TensorListSetItem" and len(node.get("input", [])) > 2}
        for key, value in function.get("ret", {}).items():
            node = nodes.get(value.split(":")[0])
            data = [i for i in (node or {}).get("input", []) if not i.startswith("^")]
            if node is not None and node["op"] == "Identity" and len(data) == 1 and data[0] in stored:
                function["ret"][key] = data[0]
                count += 1
    return count


# Known TF.js failures: (a piece of the error, ops the model must hold, cause and alternative).
KNOWN_FAILURES = [
    ("reading 'backend'", {"While", "TensorListStack"},
     "TF.js freed a tensor a while loop still needed: it disposes what a loop step stores in a"
     " TensorList when the step ends (@tensorflow/tfjs 4.22), and this loop stores one convhub could"
     " not return whole. Instead: build the recurrent layers with unroll=True (a fixed number of"
     " timesteps), or convert to tflite or onnx"),
    ("Cannot compute the outputs", {"Enter", "Exit"},
     "the model holds TF v1 control flow (Enter/Exit/NextIteration), which TF.js graph execution"
     " cannot compute; convhub converts with control_flow_v2=True, so this model's SavedModel"
     " carries v1 loops of its own: re-export it from TF2 (tf.function)"),
]


def hint(error: str, ops: set[str]) -> str:
    """' (cause ... Instead: ...)' for a TF.js error convhub knows, else ''."""
    for piece, needs, why in KNOWN_FAILURES:
        if piece in error and needs <= ops:
            return f" ({why})"
    return ""


def restore_output_names(model_json: dict, names: list[str]) -> int:
    """Give signature outputs that tensorflowjs named by a graph tensor ("Identity_2:0") the
    SavedModel signature's name; returns how many it renamed.

    tensorflowjs looks each frozen output up in the SavedModel's signature and, when freezing
    renamed it (a non-native jax2tf export's), keeps the tensor's name. Paired by order, such
    outputs would be compared with the wrong source output. A signature's outputs are a dict,
    flattened in sorted key order, and freezing numbers its Identity nodes in that order, so the
    k-th output tensor is the k-th name in sorted order. Nothing is renamed unless every output
    either has its name already at that place or a tensor's name.
    """
    outputs = (model_json.get("signature") or {}).get("outputs") or {}
    if not names or len(names) != len(outputs) or set(outputs) == set(names):
        return 0

    def node_order(key):
        stem, _, index = outputs[key]["name"].partition(":")
        base, _, number = stem.rpartition("_")
        return (base, int(number)) if number.isdigit() and base else (stem, 0), int(index or 0)

    keys = sorted(outputs, key=node_order)
    wanted = sorted(names)
    if not all(key == name or ":" in key for key, name in zip(keys, wanted)):
        return 0
    renamed = {name: outputs[key] for key, name in zip(keys, wanted)}
    model_json["signature"]["outputs"] = renamed
    return sum(key != name for key, name in zip(keys, wanted))
