"""Mending the int8 ranges TFLiteConverter narrows: a tensor read by REDUCE_MAX or REDUCE_MIN.

int8 REDUCE_MAX and REDUCE_MIN give their output their input's scale, and TFLiteConverter (TF 2.19)
settles that by giving the input its output's calibrated range: the values a row's maximum never
takes are clipped. `jax.nn.softmax` lowers to REDUCE_MAX, MAXIMUM with -inf and SUB, so the
attention scores of a Flax transformer got the range of their row maxima, [0, 4.85] for scores in
[-4.81, 4.85]: every negative score became 0 and the int8 model drifted 22 % (docs/parity.md). A
Keras attention layer lowers to TFLite's own SOFTMAX, which has no such constraint.

The mend gives the tensor back the range the converter's own calibration measured for it (read,
by tensor name, from the calibrated model the quantizer read, which ranges.py keeps, or from a
calibrate-only conversion, `_experimental_calibrate_only`), with the ops
that only move its values (RESHAPE, TRANSPOSE, ...) above it, and feeds the REDUCE_MAX (and any
other reader that does not rescale) a requantized copy in the old range.
"""

from __future__ import annotations

from convhub_tflite.flatbuffer import name

NARROWING = ("REDUCE_MAX", "REDUCE_MIN")  # int8 kernels whose output keeps their input's scale
MOVING = ("RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS")  # copy int8 values as they are
# Readers that rescale from their input's own scale (their kernels compute it at prepare time).
RESCALING = ("ADD", "SUB", "MUL", "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL",
             "QUANTIZE", "DEQUANTIZE", "SOFTMAX", "LOGISTIC", "TANH", "EXP", "MEAN")
NOTE = ("int8 tensors read by a REDUCE_MAX/REDUCE_MIN get back their calibrated range (TFLiteConverter gave"
        " them their maxima's, clipping the rest): {names}")


def narrowing(flatbuffer: bytes) -> bool:
    """Whether the file has an op whose input range the converter may have narrowed."""
    from ai_edge_litert import schema_py_generated as schema

    from convhub_tflite.tflite import operator_kinds

    return any(kind in NARROWING for kind in operator_kinds(schema.Model.GetRootAsModel(flatbuffer, 0)))


def calibrated_ranges(calibrated: bytes) -> list[dict[str, tuple[float, float]]]:
    """{tensor name: (min, max)} per subgraph, from a calibrated model's file."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(calibrated), 0)
    found = []
    for graph in model.subgraphs or []:
        ranges = {}
        for tensor in graph.tensors or []:
            q = tensor.quantization
            if q is not None and q.min is not None and q.max is not None and len(q.min) == 1 == len(q.max):
                ranges[name(tensor)] = (float(q.min[0]), float(q.max[0]))
        found.append(ranges)
    return found


def mend(flatbuffer: bytes, calibrated: bytes) -> tuple[bytes, list[str]]:
    """The int8 file with each narrowed input of a REDUCE_MAX/REDUCE_MIN given its calibrated range
    back, and a line saying which (none: the bytes unchanged)."""
    from ai_edge_litert import schema_py_generated as schema

    from convhub_tflite.flatbuffer import add_code, pack
    from convhub_tflite.tflite import operator_kinds

    if len(flatbuffer) >= 2**31:  # beyond what a flatbuffer can address: weights kept outside it
        return flatbuffer, []
    kinds = operator_kinds(schema.Model.GetRootAsModel(flatbuffer, 0))
    if not any(kind in NARROWING for kind in kinds):
        return flatbuffer, []
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    ranges = calibrated_ranges(calibrated)
    requantize = None
    mended: list[str] = []
    for g, graph in enumerate(model.subgraphs or []):
        known = ranges[g] if g < len(ranges) else {}
        for op in [op for op in graph.operators if kinds[op.opcodeIndex] in NARROWING]:
            chain = _narrowed_chain(schema, graph, kinds, op, known)
            if not chain:
                continue
            old = _params(graph.tensors[chain[0]])
            if requantize is None:
                requantize = add_code(schema, model, kinds, "QUANTIZE")
            _requantize_readers(schema, graph, kinds, chain, old, requantize)
            low, high = known[name(graph.tensors[chain[0]])]
            scale, zero = _int8_params(low, high, old)
            for index in chain:
                graph.tensors[index].quantization.scale = [scale]
                graph.tensors[index].quantization.zeroPoint = [zero]
            mended.append(name(graph.tensors[chain[0]]))
    if not mended:
        return flatbuffer, []
    return pack(schema, model), [NOTE.format(names=", ".join(mended))]


def _narrowed_chain(schema, graph, kinds, op, known: dict) -> list[int]:
    """The input of a REDUCE_MAX (or _MIN) and the tensors above it that MOVING ops copy into it,
    when its calibrated range reaches more than a step beyond the int8 range it was given, and that
    range ends where the calibrated maxima (minima) do: the converter copied it from the output.
    Else [] (also when a name of the calibrated file does not match: the check fails then)."""
    index, output = op.inputs[0], graph.tensors[op.outputs[0]]
    tensor = graph.tensors[index]
    params = _params(tensor)
    if tensor.type != schema.TensorType.INT8 or params is None or not {name(tensor), name(output)} <= set(known):
        return []
    scale, zero = params
    (low, high), (out_low, out_high) = known[name(tensor)], known[name(output)]
    given_low, given_high = (-128 - zero) * scale, (127 - zero) * scale
    if low >= given_low - scale and high <= given_high + scale:
        return []
    copied = abs(out_high - given_high) if kinds[op.opcodeIndex] == "REDUCE_MAX" else abs(out_low - given_low)
    if copied > 2 * scale:
        return []
    chain, producers = [index], {o: op for op in graph.operators for o in op.outputs}
    while (producer := producers.get(chain[-1])) is not None and kinds[producer.opcodeIndex] in MOVING:
        above = producer.inputs[0]
        if _params(graph.tensors[above]) != params:
            break
        chain.append(above)
    return chain


def _requantize_readers(schema, graph, kinds, chain: list[int], old, code: int) -> None:
    """Readers of the chain's tensors that take their values as they are (the REDUCE_MAX, a
    CONCATENATION...) read a copy requantized to the old range, made just before them."""
    from convhub_tflite.flatbuffer import operator, twin

    links = {id(op) for op in graph.operators if kinds[op.opcodeIndex] in MOVING and op.outputs[0] in chain}
    operators = []
    for op in graph.operators:
        for position, index in enumerate(op.inputs):
            if index in chain and id(op) not in links and kinds[op.opcodeIndex] not in RESCALING:
                copy = twin(schema, graph, index, schema.TensorType.INT8, "requantized")
                graph.tensors[copy].quantization = schema.QuantizationParametersT()
                graph.tensors[copy].quantization.scale, graph.tensors[copy].quantization.zeroPoint = [old[0]], [old[1]]
                operators.append(operator(schema, code, [index], [copy]))
                op.inputs[position] = copy
        operators.append(op)
    graph.operators = operators


def _params(tensor) -> tuple[float, int] | None:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) != 1 or q.zeroPoint is None:
        return None
    return float(q.scale[0]), int(q.zeroPoint[0])


def _int8_params(low: float, high: float, old: tuple[float, int]) -> tuple[float, int]:
    """int8 scale and zero point for [low, high] widened to hold 0 and the old range."""
    scale, zero = old
    low, high = min(low, 0.0, (-128 - zero) * scale), max(high, 0.0, (127 - zero) * scale)
    new_scale = (high - low) / 255.0
    return new_scale, int(max(-128, min(127, round(-128 - low / new_scale))))
