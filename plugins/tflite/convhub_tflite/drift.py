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
import re
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
#                 that error is at least this share of what the output layer gets
QUIET = 0.02  # below this error in every tensor before the output layer, no layer is to blame
OUTPUT_JUMP = 4.0  # the output layer adds the error when its output is this many times further off
#                    than its inputs (a softmax turns a logit error into about twice that)


@dataclass
class _Stats:
    """One tensor's float values and the quantized file's error on it, summed over the rows."""

    count: int = 0
    squares: float = 0.0
    errors: float = 0.0  # sum of squared differences
    channel_squares: Any = None  # the same two per channel (the last axis)
    channel_errors: Any = None
    outside: int = 0  # float values the quantized range cannot hold
    clipping: float = 0.0  # sum of their squared distances to it: the error clipping alone causes
    low: float = math.inf
    high: float = -math.inf
    limits: tuple[float, float] | None = None  # what the quantized tensor can represent
    step: float = 0.0  # and its scale: the step between two codes
    codes: str = ""  # "int8" or "int16"

    def add(self, reference: Any, quantized: Any, params: tuple[float, int, int, int] | None) -> None:
        import numpy as np

        channels = reference.shape[-1] if reference.ndim >= 2 else 1
        ref = reference.astype(np.float64).reshape(-1, channels)
        diff = quantized.astype(np.float64).reshape(-1, channels) - ref
        squares, errors = np.square(ref).sum(axis=0), np.square(diff).sum(axis=0)
        if self.channel_squares is None:
            self.channel_squares, self.channel_errors = squares, errors
        else:
            self.channel_squares, self.channel_errors = self.channel_squares + squares, self.channel_errors + errors
        ref = ref.ravel()
        self.count += ref.size
        self.squares += float(squares.sum())
        self.errors += float(errors.sum())
        self.low, self.high = min(self.low, float(ref.min())), max(self.high, float(ref.max()))
        if params is not None:
            scale, zero, lowest, highest = params
            self.step, self.codes = scale, {127: "int8", 32767: "int16"}.get(highest, "quantized")
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
        """Relative RMS error, channel by channel (against each channel's RMS), the median of the
        channels: one channel a hundred times larger than the rest sets an int8 range whose steps
        round all the others to nothing, which an error against the whole tensor's RMS, dominated
        by that channel, would not show."""
        import numpy as np

        live = self.channel_squares > 0 if self.channel_squares is not None else None
        if live is None or not live.any():
            return None
        return float(np.median(np.sqrt(self.channel_errors[live] / self.channel_squares[live])))

    @property
    def whole(self) -> float:
        """Relative RMS error against the whole tensor's RMS, as the check judges an output: for
        a softmax, the large probabilities count, not each rare class's own scale."""
        return math.sqrt(self.errors / self.count) / self.size if self.size > 0 else 0.0

    @property
    def typical(self) -> float:
        """The median channel's RMS: what most of the tensor's values are like."""
        import numpy as np

        if self.channel_squares is None or not self.count:
            return 0.0
        return float(np.median(np.sqrt(self.channel_squares / (self.count / len(self.channel_squares)))))

    @property
    def clipped(self) -> float:
        """The error clipping alone causes, relative like `error`."""
        return math.sqrt(self.clipping / self.count) / self.size if self.size > 0 else 0.0


def operators(flatbuffer: bytes, signature: str) -> tuple[int, list[tuple[str, list[str], list[str]]], list[str], list[str]]:
    """The graph that runs a signature of a .tflite: its index, its ops in execution order as (op
    type, input tensor names, output tensor names), its input and its output tensor names."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    kinds = tflite.operator_kinds(model)
    defs = (model.SignatureDefs(i) for i in range(model.SignatureDefsLength()))
    subgraph = next((d.SubgraphIndex() for d in defs if (d.SignatureKey() or b"").decode() == signature), 0)
    graph = model.Subgraphs(subgraph)

    def tensor_names(indices: Any) -> list[str]:
        return [graph.Tensors(int(i)).Name().decode() for i in indices if i >= 0]

    ops = []
    for o in range(graph.OperatorsLength()):
        op = graph.Operators(o)
        ops.append((kinds[op.OpcodeIndex()], tensor_names(op.InputsAsNumpy() if op.InputsLength() else []),
                    tensor_names(op.OutputsAsNumpy() if op.OutputsLength() else [])))
    return (subgraph, ops, tensor_names(graph.InputsAsNumpy() if graph.InputsLength() else []),
            tensor_names(graph.OutputsAsNumpy() if graph.OutputsLength() else []))


def layer_of(tensor: str) -> str:
    """The layer a tensor belongs to, from its name: the converter joins the names of the TF ops
    it fused with ';' (the op whose output it is first), each a name scope path. Keras's is model,
    layer, op scopes ('efficientnetb0_1/stem_bn_1/batchnorm/add_1': stem_bn_1); JAX's is jit
    scopes, then the module path ('jit(FlaxCNN_apply)/jit(main)/FlaxCNN/ConvBN_0/BatchNorm_0/mul1':
    ConvBN_0/BatchNorm_0, or FlaxCNN for an op of the top module)."""
    first = tensor.split(";")[0]
    parts = first.split("/")
    modules = [p for p in parts if not re.fullmatch(r"p?jit\(.*\)", p)]
    if len(modules) < len(parts):  # JAX
        return "/".join(modules[1:-1][-2:]) if len(modules) >= 3 else modules[0] if modules else first
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
        flatbuffer = tflite.convert(tf, before, [signature], unquantized, {})
        path.write_bytes(flatbuffer)
        reference = tflite.Session(Artifact("tflite", path, facts={"signature": signature}), preserve=True)
        graph, ops, inputs, outputs = operators(flatbuffer, reference.signature)
        stats: dict[str, _Stats] = {}
        batch = next((s.shape[0] for s in quantized.inputs if s.shape and s.shape[0]), 1)
        rows = _rows(feeds, batch)
        # A float tensor of the quantized file that a QUANTIZE op turns into codes (the model's
        # input) is compared as those codes; a float output is a DEQUANTIZE of the codes the op
        # wrote, whose range is what clips.
        quantized_graph, quantized_ops, _, _ = operators(Path(artifact.path).read_bytes(), quantized.signature)
        coded = {ins[0]: outs[0] for kind, ins, outs in quantized_ops if kind == "QUANTIZE" and ins and outs}
        dequantized = {outs[0]: ins[0] for kind, ins, outs in quantized_ops if kind == "DEQUANTIZE" and ins and outs}
        for feed in rows:
            reference.run(feed)
            quantized.run(feed)
            got = quantized.tensors(quantized_graph)
            for name, (value, _) in reference.tensors(graph).items():
                mine = got.get(coded.get(name, ""), got.get(name))
                if mine is not None and mine[0].shape == value.shape:
                    params = mine[1] or got.get(dequantized.get(name, ""), (None, None))[1]
                    stats.setdefault(name, _Stats()).add(value, mine[0], params)
    return summary(ops, inputs, outputs, stats, len(rows) * batch)


def _percent(share: float) -> str:
    return f"{100 * share:.3g}%"


def summary(ops: list[tuple[str, list[str], list[str]]], inputs: list[str], outputs: list[str],
            stats: Mapping[str, _Stats], rows: int) -> str | None:
    """The comparison in one line: clipped ranges first (the most actionable), then whether one
    op adds most of the error or it builds up over depth (the error at each quarter of the ops).

    Steps are judged on the tensors before the model's outputs: an output op's relative error
    also holds what its function does to the error it gets (a softmax turns a logit error into a
    larger probability error), which would make the last op look guilty of everything."""
    error = {name: e for name, s in stats.items() if (e := s.error) is not None}
    steps = []  # (op type, output tensor, its error, what the op added to its inputs' error)
    for kind, operands, results in ops:
        for out in results:
            if out in error:
                before = max((error[i] for i in operands if i in error), default=0.0)
                steps.append((kind, out, error[out], error[out] - before))
    steps = steps[next((i for i, step in enumerate(steps) if step[2] >= 1e-4), 0):]  # from the first rounding on
    kinds = {out: kind for kind, _, results in ops for out in results}

    def where(name: str) -> str:
        if name in inputs:  # serving_default_image:0
            return f"the model input {re.sub(r'^serving_default_|:[0-9]+$', '', name)!r}"
        return f"the output layer ({kinds[name]})" if name in outputs else f"{layer_of(name)} ({kinds[name]})"

    parts = []
    # Clipped ranges in the order they run: the first is where it starts, the later ones may only
    # pass on what it did. A reshape (or max pool) keeps its input's range and values: its clipping
    # is its input's, told once. (A SUM that kept its input's range has larger values: told.)
    inherited = {out for _, operands, results in ops for out in results if out in stats and stats[out].limits
                 and any(i in stats and stats[i].limits == stats[out].limits and stats[i].low <= stats[out].low
                         and stats[out].high <= stats[i].high for i in operands)}
    order = {name: i for i, name in enumerate([*inputs, *(out for _, out, _, _ in steps)])
             if name in stats and name not in inherited}
    clipped = sorted((order[n], n) for n in order if stats[n].clipped >= CLIPPED)[:2]
    for _, name in clipped:
        s = stats[name]
        lo, hi = s.limits or (0.0, 0.0)
        parts.append(f"{where(name)} clips {_percent(s.outside / s.count)} of its values to the calibrated range"
                     f" [{lo:.3g}, {hi:.3g}] (they span [{s.low:.3g}, {s.high:.3g}]; clipping alone is a"
                     f" {_percent(s.clipped)} error)")
    hidden = [step for step in steps if step[1] not in outputs]
    last = max((error[i] for _, operands, results in ops if set(results) & set(outputs) for i in operands if i in error),
               default=None)  # what the output ops get
    if not hidden or not last:
        return _line(parts, rows, len(steps))
    out = max((o for o in outputs if o in stats), key=lambda o: stats[o].whole, default=None)
    if out is not None and stats[out].whole >= OUTPUT_JUMP * last and out not in [n for _, n in clipped]:
        # No function amplifies that much: the output op's own quantization.
        parts.append(f"most of the error comes in at {where(out)}: the tensors before it are within {_percent(last)},"
                     f" its output is {_percent(stats[out].whole)} off (against its RMS){_grid(stats[out])}")
        return _line(parts, rows, len(steps))
    worst = max(step[2] for step in hidden)
    if worst < QUIET:
        parts.append(f"no layer drifts: every tensor before the output layer is within {_percent(worst)}")
        return _line(parts, rows, len(steps))
    kind, name, value, added = max(hidden, key=lambda step: step[3])
    dominant = added >= DOMINANT * value and value >= DOMINANT * last
    named = [n for _, n in clipped]
    if dominant and name in named:  # the clipping told already: say it is most of the error
        index = named.index(name)
        parts[index] = parts[index][:-1] + f", which takes the error from {_percent(value - added)} to {_percent(value)})"
    elif dominant:
        parts.append(f"most of the error comes from one op: {where(name)} takes it from {_percent(value - added)} to"
                     f" {_percent(value)}{_grid(stats[name])}")
    elif hidden[0][2] >= DOMINANT * last:  # not built up: it is there from the start
        parts.append(f"the error is there from the first op on: {_percent(hidden[0][2])} at op"
                     f" {steps.index(hidden[0]) + 1} ({where(hidden[0][1])}), {_percent(last)} into the output layer")
    else:
        marks = sorted({max(0, round(len(hidden) * q) - 1) for q in (0.0, 0.25, 0.5, 0.75, 1.0)})
        profile = ", ".join(f"{_percent(hidden[i][2])} at op {steps.index(hidden[i]) + 1} ({layer_of(hidden[i][1])})"
                            for i in marks)
        parts.append(f"the error builds up over depth: {profile}, {_percent(last)} into the output layer; the"
                     f" largest step is +{_percent(added)} at {where(name)}")
    return _line(parts, rows, len(steps))


def _grid(s: _Stats) -> str:
    """What the op's quantized output can say: its range and step against its values, and when
    the steps are far too fine to lose what was lost, that the kernel itself loses it."""
    if not s.limits:
        return ""
    kernel = ("; its steps are too fine for rounding to explain that: the op's quantized kernel loses it"
              if s.step < 0.01 * s.typical and s.clipped < CLIPPED else "")
    return (f" (its {s.codes} range [{s.limits[0]:.3g}, {s.limits[1]:.3g}] has steps of {s.step:.3g}, for values"
            f" whose median channel has an RMS of {s.typical:.3g}){kernel}")


def _line(parts: list[str], rows: int, ops: int) -> str | None:
    if not parts:
        return None
    return (f"layer by layer against a float32 conversion on {rows} rows (RMS error relative to the float values'"
            f" RMS, median of the channels, over {ops} ops): " + "; ".join(parts))
