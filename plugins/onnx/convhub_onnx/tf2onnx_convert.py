"""SavedModel → ONNX and TFLite → ONNX with tf2onnx, in process, each result validated before it is written."""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from convhub.errors import UsageError
from convhub.types import Artifact
from convhub_tensorflow import frameworks

from convhub_onnx import validate

# tf2onnx 1.17 "supports and tests ONNX opset-14 to opset-18" (its README) and stops with
# "Opset N is not supported yet" above 18. 17 is the newest that onnxruntime releases of the
# last years all run.
DEFAULT_OPSET = 17
OPSETS = range(14, 19)

XLA_CALL_MODULE_REASON = (
    "it holds XlaCallModule ops (StableHLO from a native JAX export), which tf2onnx 1.17 cannot convert"
    " (it fails with 'Could not infer the attribute type from the elements of the passed Iterable value');"
    " the TFLite converter can, so go through tflite"
)

TENSOR_PORT = re.compile(r":\d+$")


def opset_from(options: Mapping[str, Any]) -> int:
    """The 'opset' option (default 17), checked before any framework is imported."""
    value = options.get("opset")
    if value is None:
        return DEFAULT_OPSET
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"option 'opset' must be an integer from {OPSETS[0]} to {OPSETS[-1]}, got {value!r}")
    if value not in OPSETS:
        raise UsageError(
            f"option 'opset' {value} is out of range: tf2onnx 1.17 writes opsets {OPSETS[0]} to {OPSETS[-1]}"
        )
    return value


def refuse_saved_model(facts: Mapping[str, Any]) -> str | None:
    return XLA_CALL_MODULE_REASON if facts.get("xla_call_module") else None


# --- ops tf2onnx 1.17 has no handler for, but that plain ONNX ops express exactly -------------
# Keras' default GELU (approximate=False) is 0.5·x·erfc(-x/√2) on TensorFlow, and the TFLite
# converter fuses it into one GELU op: without these two, no Keras model with a GELU converts.


def _erfc(ctx, node, name, args):
    """Erfc(x) = 1 - Erf(x); ONNX has Erf but no Erfc."""
    import numpy as np
    from tf2onnx import utils

    x, out = node.input[0], node.output[0]
    shapes, dtypes = node.output_shapes, node.output_dtypes
    one = np.array(1, utils.map_onnx_to_numpy_type(ctx.get_dtype(x)))
    ctx.remove_node(node.name)
    erf = ctx.make_node("Erf", [x], op_name_scope=name, shapes=shapes, dtypes=dtypes)
    one_node = ctx.make_const(utils.make_name(f"{name}_one"), one)
    ctx.make_node("Sub", [one_node.output[0], erf.output[0]], outputs=[out], name=name, shapes=shapes, dtypes=dtypes)


def _tfl_gelu(ctx, node, name, args):
    """TFLite's GELU as 0.5·x·(1 + erf(x/√2)), or its tanh approximation; ONNX's Gelu needs opset 20."""
    import numpy as np
    from tf2onnx import utils

    x, out = node.input[0], node.output[0]
    shapes, dtypes = node.output_shapes, node.output_dtypes
    np_dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(x))
    approximate = bool(node.get_attr_value("approximate", 0))
    ctx.remove_node(node.name)

    def const(value):
        return ctx.make_const(utils.make_name(f"{name}_c"), np.array(value, np_dtype)).output[0]

    def op(op_type, *inputs):
        return ctx.make_node(op_type, list(inputs), op_name_scope=name, shapes=shapes, dtypes=dtypes).output[0]

    if approximate:
        cube = op("Mul", x, op("Mul", x, x))
        inner = op("Mul", const(math.sqrt(2 / math.pi)), op("Add", x, op("Mul", const(0.044715), cube)))
        gate = op("Tanh", inner)
    else:
        gate = op("Erf", op("Mul", x, const(1 / math.sqrt(2))))
    half_x = op("Mul", x, const(0.5))
    ctx.make_node("Mul", [half_x, op("Add", gate, const(1.0))], outputs=[out], name=name, shapes=shapes, dtypes=dtypes)


def _identity(ctx, node, name, args):
    """PreventGradient(x) = x at inference (a non-native jax2tf export wraps values in it); tf2onnx
    leaves it in the graph unconverted."""
    x, out = node.input[0], node.output[0]
    shapes, dtypes = node.output_shapes, node.output_dtypes
    ctx.remove_node(node.name)
    ctx.make_node("Identity", [x], outputs=[out], name=name, shapes=shapes, dtypes=dtypes)


def _select_as_where(ctx, node, name, args):
    """Select / SelectV2 as ONNX Where, always. tf2onnx writes them as cond·x + (1−cond)·y (faster
    in onnxruntime) unless it sees a NaN or Inf constant among the inputs; one that arrives any
    other way poisons every value, since 0·NaN is NaN. jnp.take's out-of-bounds fill does exactly
    that (a NaN broadcast to the gathered shape): every Flax Embed came out all NaN."""
    from tf2onnx.onnx_opset.controlflow import Select

    node.set_attr("handles_nan", True)
    Select.version_9(ctx, node)


def _custom_op_handlers() -> dict:
    # tf2onnx's old-style handlers: {op type: (handler(ctx, node, name, args), args)}.
    return {"Erfc": (_erfc, []), "TFL_GELU": (_tfl_gelu, []), "PreventGradient": (_identity, []),
            "Select": (_select_as_where, []), "SelectV2": (_select_as_where, [])}


# --- making the result readable and checking it ------------------------------------------------


def _rename_values(model, renames: Mapping[str, str]) -> None:
    """Rename tensors everywhere they are named: graph inputs/outputs, nodes, initializers, subgraphs."""
    taken = {n for g in validate._graphs(model.graph) for node in g.node for n in (*node.input, *node.output)}
    taken |= {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer}
    # Never merge two tensors into one name: a rename whose target is in use (or wanted twice) is skipped.
    wanted = Counter(renames.values())
    renames = {
        old: new for old, new in renames.items()
        if old != new and wanted[new] == 1 and (new not in taken or new in renames)
    }
    if not renames:
        return
    for graph in validate._graphs(model.graph):
        for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
            value.name = renames.get(value.name, value.name)
        for node in graph.node:
            node.input[:] = [renames.get(n, n) for n in node.input]
            node.output[:] = [renames.get(n, n) for n in node.output]


def _order_outputs(model, names: list[str]) -> None:
    """Put the graph outputs in the signature's order (unknown names last, as they were)."""
    rank = {name: i for i, name in enumerate(names)}
    ordered = sorted(model.graph.output, key=lambda o: rank.get(o.name, len(rank)))
    copies = [type(o)() for o in ordered]
    for copy, original in zip(copies, ordered):
        copy.CopyFrom(original)
    del model.graph.output[:]
    model.graph.output.extend(copies)


def _name_dynamic_dims(model) -> None:
    """tf2onnx calls each unknown dim 'unk__N'; call a leading one 'batch' and the others '<tensor>_dim<i>'.

    A leading dim is called 'batch' when every input has a dynamic leading dim (the Keras and
    SavedModel convention); the same 'unk__N' gets the same new name everywhere.
    """
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    outputs = list(model.graph.output)

    def dims(value):
        return value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else []

    batch = bool(inputs) and all(len(dims(i)) > 0 and not dims(i)[0].HasField("dim_value") for i in inputs)
    renamed: dict[str, str] = {}
    for value in inputs + outputs:
        for i, dim in enumerate(dims(value)):
            if dim.HasField("dim_value") or (dim.dim_param and not dim.dim_param.startswith("unk__")):
                continue
            new = renamed.get(dim.dim_param) or ("batch" if i == 0 and batch else f"{value.name}_dim{i}")
            if dim.dim_param:
                renamed[dim.dim_param] = new
            dim.dim_param = new
    for value in model.graph.value_info:
        for dim in dims(value):
            if dim.dim_param in renamed:
                dim.dim_param = renamed[dim.dim_param]


def _finish(model, destination: Path, facts: Mapping[str, Any], opset: int) -> dict:
    _name_dynamic_dims(model)
    validate.check(model)  # raises with a one-line reason: nothing is written for an invalid graph
    destination.write_bytes(model.SerializeToString())
    return {"precision": facts.get("precision", "float32"), "opset": opset}


# --- the conversions -----------------------------------------------------------------------------


def from_saved_model(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict:
    """The SavedModel's checked signature → ONNX, the way `python -m tf2onnx.convert --saved-model` does it."""
    opset = opset_from(options)
    signature = artifact.facts.get("signature") or "serving_default"
    tf = frameworks.tensorflow()
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common

    # Inputs and outputs come back renamed to the signature's names ('image', 'output_0'), not 'image:0'.
    graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
        str(artifact.path), None, None, tag=["serve"], signatures=[signature],
        return_initialized_tables=True, return_tensors_to_rename=True,
    )
    with tf.device("/cpu:0"):
        model, _ = _convert_common(
            graph_def, name=artifact.path.name, opset=opset, input_names=inputs, output_names=outputs,
            tensors_to_rename=renames, initialized_tables=tables, custom_op_handlers=_custom_op_handlers(),
        )
    # tf2onnx sorts outputs as strings (output_10 before output_2); the reader knows the signature's order.
    _order_outputs(model, list(artifact.facts.get("outputs") or []))
    return _finish(model, destination, artifact.facts, opset)


def _tflite_signature(path: Path, wanted: str | None) -> tuple[dict[str, str], list[str]]:
    """For the signature `wanted` (else the first): its {tensor name: input name} and {tensor: output} renames.

    tf2onnx converts the first subgraph only, so a signature served by another one cannot be converted.
    """
    from tf2onnx.tflite.Model import Model

    model = Model.GetRootAsModel(bytearray(path.read_bytes()), 0)
    signatures = [model.SignatureDefs(i) for i in range(model.SignatureDefsLength())]
    if not signatures:
        return {}, []
    keys = [s.SignatureKey().decode() for s in signatures]
    chosen = signatures[keys.index(wanted)] if wanted in keys else signatures[0]
    if chosen.SubgraphIndex() != 0:
        raise ValueError(
            f"signature {chosen.SignatureKey().decode()!r} runs subgraph {chosen.SubgraphIndex()}; tf2onnx"
            " converts only subgraph 0 of a .tflite"
        )
    tensors = model.Subgraphs(0)

    def names(maps) -> dict[str, str]:
        return {tensors.Tensors(m.TensorIndex()).Name().decode(): m.Name().decode() for m in maps}

    inputs = names(chosen.Inputs(i) for i in range(chosen.InputsLength()))
    outputs = names(chosen.Outputs(i) for i in range(chosen.OutputsLength()))
    return {**inputs, **outputs}, list(outputs.values())


def from_tflite(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict:
    """A .tflite → ONNX with tf2onnx's TFLite front end (`tf2onnx.convert --tflite`)."""
    opset = opset_from(options)
    tf = frameworks.tensorflow()
    from tf2onnx.convert import from_tflite as tf2onnx_from_tflite

    renames, output_order = _tflite_signature(artifact.path, artifact.facts.get("signature"))
    with tf.device("/cpu:0"), warnings.catch_warnings():
        # tf2onnx reads tensor shapes with tf.lite.Interpreter, which warns that it is deprecated.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
        model, _ = tf2onnx_from_tflite(str(artifact.path), opset=opset, custom_op_handlers=_custom_op_handlers())
    # The .tflite's tensors are 'serving_default_image:0', 'StatefulPartitionedCall_1:0': use the
    # signature's names instead, so the parity check matches them with the source's by name.
    graph_io = [v.name for v in (*model.graph.input, *model.graph.output)]
    renames = {name: renames.get(name) or TENSOR_PORT.sub("", name) for name in graph_io}
    _rename_values(model, renames)
    _order_outputs(model, output_order)
    return _finish(model, destination, artifact.facts, opset)
