"""Where a quantized .tflite's drift comes from, layer by layer.

When the check finds that a quantized .tflite drifted from its source, `explain` converts the same
SavedModel again without quantization, runs both files on a few of the check's rows with every
intermediate tensor kept, and compares them tensor by tensor: the converter names each tensor
after the TF ops it comes from, the same in both files. It tells which of these it sees:
- **a calibrated range clips**: some tensor's float values fall outside what the quantized file
  can represent there, because calibration saw a narrower spread than these inputs give;
- **one layer adds most of the error** (an op the quantized kernels represent badly);
- **the error builds up over depth**, a little at each layer, which no single layer explains:
  the network amplifies rounding, as random-weight CNNs do (docs/parity.md), where wider
  activations (int16x8) or float ones help.
TensorFlow's QuantizationDebugger compares layers too, but on TF 2.19 it gave NaN or 1e39 per-layer
figures on the zoo's EfficientNetB0; this comparison needs only the two files and LiteRT.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from convhub.types import Artifact
from convhub_tensorflow import frameworks

from convhub_tflite import tflite

ROWS = 8  # enough to see where the error grows; each row runs both files with every tensor kept
CLIPPED = 0.02  # a range clips when clipping alone causes this relative RMS error (a sigmoid's fixed
#                int8 range [0, 255/256] cuts values near 1 by less than a step: not worth a word)
DOMINANT = 0.5  # one op "adds most" when it adds at least this share of its output's error, and
#                 that error is at least this share of the model output's


@dataclass
class _Stats:
    """One tensor's float values and the quantized file's error on it, summed over the rows."""

    count: int = 0
    total: float = 0.0
    squares: float = 0.0
    errors: float = 0.0  # sum of squared differences
    outside: int = 0  # float values the quantized range cannot hold
    clipping: float = 0.0  # sum of their squared distances to it: the error clipping alone causes
    low: float = math.inf
    high: float = -math.inf
    limits: tuple[float, float] | None = None  # what the quantized tensor can represent

    def add(self, reference: Any, quantized: Any, params: tuple[float, int, int, int] | None) -> None:
        import numpy as np

        ref = reference.astype(np.float64).ravel()
        self.count += ref.size
        self.total += float(ref.sum())
        self.squares += float(np.square(ref).sum())
        self.errors += float(np.square(quantized.astype(np.float64).ravel() - ref).sum())
        self.low, self.high = min(self.low, float(ref.min())), max(self.high, float(ref.max()))
        if params is not None:
            scale, zero, lowest, highest = params
            # Half a step beyond the last code still rounds to it.
            self.limits = ((lowest - zero - 0.5) * scale, (highest - zero + 0.5) * scale)
            beyond = ref - np.clip(ref, *self.limits)
            self.outside += int(np.count_nonzero(beyond))
            self.clipping += float(np.square(beyond).sum())

    @property
    def size(self) -> float:
        """The RMS of the float values: a gate that stays near 6 has a tiny spread, and a small
        error against its spread would look enormous though it hardly moves what comes after."""
        return math.sqrt(self.squares / self.count) if self.count else 0.0

    @property
    def error(self) -> float | None:
        """Relative RMS error: against the float values' RMS."""
        return math.sqrt(self.errors / self.count) / self.size if self.size > 0 else None

    @property
    def clipped(self) -> float:
        """The error clipping alone causes, relative like `error`."""
        return math.sqrt(self.clipping / self.count) / self.size if self.size > 0 else 0.0


def operators(flatbuffer: bytes, signature: str) -> tuple[int, list[tuple[str, list[str], list[str]]], list[str]]:
    """The graph that runs a signature of a .tflite: its index, its ops in execution order as (op
    type, input tensor names, output tensor names), and its output tensor names."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    defs = (model.SignatureDefs(i) for i in range(model.SignatureDefsLength()))
    subgraph = next((d.SubgraphIndex() for d in defs if (d.SignatureKey() or b"").decode() == signature), 0)
    graph = model.Subgraphs(subgraph)

    def tensor_names(indices: Any) -> list[str]:
        return [graph.Tensors(int(i)).Name().decode() for i in indices if i >= 0]

    ops = []
    for o in range(graph.OperatorsLength()):
        op = graph.Operators(o)
        code = codes[op.OpcodeIndex()]
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ops.append((kind, tensor_names(op.InputsAsNumpy() if op.InputsLength() else []),
                    tensor_names(op.OutputsAsNumpy() if op.OutputsLength() else [])))
    return subgraph, ops, tensor_names(graph.OutputsAsNumpy() if graph.OutputsLength() else [])


def layer_of(tensor: str) -> str:
    """The layer a tensor belongs to, from its name: the converter joins the names of the TF ops
    it fused with ';' (the op whose output it is first), each a name scope path such as
    'efficientnetb0_1/block6b_se_excite_1/Mul'; the model's own scope is left out."""
    first = tensor.split(";")[0]
    parts = first.split("/")
    if len(parts) >= 3:
        return parts[1]
    return first if len(first) <= 60 else first[:59] + "…"


def _rows(feeds: Mapping[str, Any], batch: int) -> list[dict[str, Any]]:
    count = min(len(v) for v in feeds.values()) if feeds else 0
    count = min(count - count % batch, ROWS * batch) if count >= batch else 0
    return [{k: v[i : i + batch] for k, v in feeds.items()} for i in range(0, count, batch)]


def explain(before: Artifact, artifact: Artifact, options: Mapping[str, Any], feeds: Mapping[str, Any]) -> str | None:
    """One line on where `artifact` (a quantized .tflite converted from the SavedModel `before`
    with `options`) drifts from the float conversion of the same SavedModel, on the first rows
    of `feeds` (keyed by its input names); None when the two files share no tensor to compare."""
    tf = frameworks.tensorflow()
    signature = str(artifact.facts.get("signature") or "serving_default")
    unquantized = {k: v for k, v in options.items() if k in ("select_tf_ops", "select_tf_ops_fallback")}
    quantized = tflite.Session(artifact, preserve=True)
    with tempfile.TemporaryDirectory(prefix="convhub-drift-") as scratch:
        path = Path(scratch) / "float32.tflite"
        path.write_bytes(tflite.convert(tf, before, [signature], unquantized, {}))
        reference = tflite.Session(Artifact("tflite", path, facts={"signature": signature}), preserve=True)
        graph, ops, outputs = operators(path.read_bytes(), reference.signature)
        stats: dict[str, _Stats] = {}
        batch = next((s.shape[0] for s in quantized.inputs if s.shape and s.shape[0]), 1)
        rows = _rows(feeds, batch)
        # A float output of the quantized file is a DEQUANTIZE of the int8 tensor the op wrote:
        # that one's range is what clips.
        quantized_graph, quantized_ops, _ = operators(Path(artifact.path).read_bytes(), quantized.signature)
        dequantized = {outs[0]: ins[0] for kind, ins, outs in quantized_ops if kind == "DEQUANTIZE" and ins and outs}
        for feed in rows:
            reference.run(feed)
            quantized.run(feed)
            got = quantized.tensors(quantized_graph)
            for name, (value, _) in reference.tensors(graph).items():
                if name in got and got[name][0].shape == value.shape:
                    params = got[name][1] or got.get(dequantized.get(name, ""), (None, None))[1]
                    stats.setdefault(name, _Stats()).add(value, got[name][0], params)
    return summary(ops, outputs, stats, len(rows) * batch)


def summary(ops: list[tuple[str, list[str], list[str]]], outputs: list[str], stats: Mapping[str, _Stats],
            rows: int) -> str | None:
    """The comparison in one line: clipped ranges first (the most actionable), then whether one
    op adds most of the error or it builds up over depth (the error at each quarter of the ops)."""
    error = {name: e for name, s in stats.items() if (e := s.error) is not None}
    final = max((error[o] for o in outputs if o in error), default=None)
    steps = []  # (op type, output tensor, its error, what the op added to its inputs' error)
    for kind, inputs, results in ops:
        for out in results:
            if out in error:
                before = max((error[i] for i in inputs if i in error), default=0.0)
                steps.append((kind, out, error[out], error[out] - before))
    steps = steps[next((i for i, step in enumerate(steps) if step[2] > 0), 0):]  # from the first rounding on
    if final is None or not steps:
        return None

    def where(name: str, kind: str) -> str:
        return f"the output layer ({kind})" if name in outputs else f"{layer_of(name)} ({kind})"

    kinds = {out: kind for kind, _, results in ops for out in results}
    kind, name, value, added = max(steps, key=lambda step: step[3])
    dominant = added >= DOMINANT * value and value >= DOMINANT * final
    parts = []
    # In the order they run: the first range that clips is where it starts, the later ones may
    # only pass on what it did.
    # A reshape (or max pool) keeps its input's range: its clipping is its input's, told once.
    inherited = {out for _, inputs, results in ops for out in results
                 if out in stats and any(i in stats and stats[i].limits == stats[out].limits for i in inputs)}
    order = {out: i for i, (_, out, _, _) in enumerate(steps) if out not in inherited}
    clipped = sorted(((order[n], stats[n].clipped, n) for n in order if stats[n].clipped >= CLIPPED))[:2]
    for _, share, clip in clipped:
        s = stats[clip]
        lo, hi = s.limits or (0.0, 0.0)
        parts.append(f"{where(clip, kinds[clip])} clips {s.outside / s.count:.1%} of its values to the calibrated range"
                     f" [{lo:.3g}, {hi:.3g}] (they span [{s.low:.3g}, {s.high:.3g}]; clipping alone is a {share:.1%}"
                     " error" + ("), which is most of the error" if dominant and clip == name else ")"))
    if dominant and name not in [n for _, _, n in clipped]:
        parts.append(f"most of the error comes from {where(name, kind)}: the tensors before it are within"
                     f" {value - added:.1%}" if name in outputs else
                     f"most of the error comes from one op: {where(name, kind)} takes it from {value - added:.1%}"
                     f" to {value:.1%}")
    elif not dominant:
        marks = sorted({max(0, round(len(steps) * q) - 1) for q in (0.0, 0.25, 0.5, 0.75, 1.0)})
        profile = ", ".join(f"{steps[i][2]:.1%} at op {i + 1} ({layer_of(steps[i][1])})" for i in marks)
        parts.append(f"the error builds up over depth: {profile}; the largest step is +{added:.1%} at"
                     f" {where(name, kind)}")
    return (f"layer by layer against a float32 conversion on {rows} rows (RMS error relative to each tensor's RMS,"
            f" over {len(steps)} ops): " + "; ".join(parts))
