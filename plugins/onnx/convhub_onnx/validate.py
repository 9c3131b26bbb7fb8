"""Checking a produced ONNX model before anything is written.

tf2onnx leaves an op it has no handler for in the graph as it was (a `PreventGradient` or
`StatefulPartitionedCall` node, a `TFL_GELU`...), logs "Unsupported ops", and still returns
a model. Such a file must never be reported as a conversion, so every model goes through
three checks: no op outside the standard ONNX operator sets, onnx.checker (with its strict
shape inference), and an onnxruntime session that loads it.
"""

from __future__ import annotations

from collections import Counter

# Operator sets whose ops every ONNX runtime is expected to know ("" is ai.onnx).
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


class InvalidONNXError(Exception):
    """The converter returned a model that is not valid, runnable ONNX."""


def _graphs(graph):
    """A graph and every subgraph held in its nodes' attributes (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def unconverted_ops(model) -> Counter:
    """Ops no standard operator set defines (and no model-local function implements), with counts."""
    import onnx

    local_functions = {(f.domain, f.name) for f in model.functions}
    nodes = [n for g in _graphs(model.graph) for n in g.node] + [n for f in model.functions for n in f.node]
    found: Counter = Counter()
    for node in nodes:
        if (node.domain, node.op_type) in local_functions:
            continue
        domain = "" if node.domain == "ai.onnx" else node.domain
        if domain in STANDARD_DOMAINS and onnx.defs.has(node.op_type, domain):
            continue
        found[f"{node.domain}:{node.op_type}" if domain not in STANDARD_DOMAINS else node.op_type] += 1
    return found


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def check(model) -> None:
    """Raise InvalidONNXError, with a one-line reason, unless `model` is valid ONNX onnxruntime can load."""
    import onnx
    import onnxruntime as ort

    leftover = unconverted_ops(model)
    if leftover:
        names = ", ".join(f"{op} (x{n})" if n > 1 else op for op, n in sorted(leftover.items()))
        raise InvalidONNXError(
            f"the graph still holds ops that are not ONNX (tf2onnx could not convert them): {names}."
            " Instead: tflite with --select-tf-ops runs TensorFlow ops, or rewrite those ops in the model")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - ValidationError, or shape inference's InferenceError
        raise InvalidONNXError(f"onnx.checker rejects the graph: {_first_line(exc)}") from exc
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
        raise InvalidONNXError(f"onnxruntime cannot load the graph: {_first_line(exc)}") from exc
