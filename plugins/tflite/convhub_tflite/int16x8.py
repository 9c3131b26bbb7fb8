"""Mending what TFLiteConverter's 16x8 mode writes and LiteRT cannot run or computes wrong.

Measured with TF 2.19 and LiteRT 2.3.0 (docs/parity.md, "int16x8"):
- the converter writes LayerNorm's SQUARED_DIFFERENCE with int16 tensors, for which LiteRT has no
  kernel ("SquaredDifference only supports FLOAT32 and INT32"): the file converts and cannot run.
  It is mended as the converter itself treats an op with no 16x8 kernel (HARD_SWISH): the op runs
  in float32 between a DEQUANTIZE of its inputs and a QUANTIZE of its output, whose calibrated
  range is kept.
- the converter gives an int16 SUM's output the range of its input, so a sum over many values
  clips (64 values in [0.5, 3.8]: range ±1.5 for sums reaching 74). JAX writes jnp.mean as a sum
  times 1/n. The output's scale becomes n times the input's: a sum of n values cannot leave that
  range, and int16 keeps 15 - log2(n) bits of it (9 bits for a 8x8 pool).

The converter's own 16x8 quantizer has no deny-list, and the MLIR quantizer, which has one,
writes int16 zero points LiteRT refuses; so the file is edited, through the flatbuffer schema's
object API.
"""

from __future__ import annotations

NO_INT16_KERNEL = ("SQUARED_DIFFERENCE",)  # LiteRT 2.3.0 refuses these with int16 inputs
SUM_NOTE = ("int16 SUM outputs get n times their input's range, since TFLiteConverter's 16x8 gives a SUM its"
            " input's range and a sum of n values clips there")


def mend(flatbuffer: bytes) -> tuple[bytes, list[str]]:
    """The file with its int16 ops LiteRT cannot run moved to float32 and its int16 SUMs given
    a range their sums fit; and a line for each kind of change (none: the bytes unchanged)."""
    from ai_edge_litert import schema_py_generated as schema

    from convhub_tflite.flatbuffer import add_code, operator, pack, twin
    from convhub_tflite.tflite import operator_kinds

    if len(flatbuffer) >= 2**31:  # beyond what a flatbuffer can address: weights kept outside it
        return flatbuffer, []
    kinds = operator_kinds(schema.Model.GetRootAsModel(flatbuffer, 0))
    if not any(kind in (*NO_INT16_KERNEL, "SUM") for kind in kinds):
        return flatbuffer, []
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    int16 = schema.TensorType.INT16
    floated, widened = False, False
    for graph in model.subgraphs:
        operators = []
        for op in graph.operators:
            kind = kinds[op.opcodeIndex]
            if kind not in (*NO_INT16_KERNEL, "SUM"):
                operators.append(op)
                continue
            inputs = [graph.tensors[i] for i in op.inputs]  # these ops have no optional (-1) inputs
            if kind in NO_INT16_KERNEL and any(t.type == int16 for t in inputs):
                dequantize, quantize = (add_code(schema, model, kinds, name) for name in ("DEQUANTIZE", "QUANTIZE"))
                floats = []
                for i in op.inputs:
                    if graph.tensors[i].type == int16:
                        floats.append(twin(schema, graph, i, schema.TensorType.FLOAT32, "float32"))
                        operators.append(operator(schema, dequantize, [i], [floats[-1]]))
                    else:
                        floats.append(i)
                (output,) = op.outputs
                op.inputs, op.outputs = floats, [twin(schema, graph, output, schema.TensorType.FLOAT32, "float32")]
                operators += [op, operator(schema, quantize, op.outputs, [output])]
                floated = True
                continue
            if kind == "SUM" and inputs[0].type == int16:
                widened |= _widen_sum(schema, model, graph, op)
            operators.append(op)
        graph.operators = operators
    notes = [SUM_NOTE] if widened else []
    if not (floated or widened):
        return flatbuffer, notes
    return pack(schema, model), notes


def _widen_sum(schema, model, graph, op) -> bool:
    """Give a SUM's int16 output n times its input's scale, where the converter copied the input's."""
    import numpy as np  # here, not at import: listing plugins loads no framework or numpy

    values, axes_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]]
    axes_data = model.buffers[axes_tensor.buffer].data
    dtype = {schema.TensorType.INT32: np.int32, schema.TensorType.INT64: np.int64}.get(axes_tensor.type)
    if axes_data is None or dtype is None or values.shape is None:
        return False  # axes computed at run time: n is unknown
    rank = len(values.shape)
    n = int(np.prod([values.shape[int(a) % rank] for a in np.frombuffer(bytes(axes_data), dtype)]))
    given, kept = values.quantization, output.quantization
    if n <= 1 or given is None or kept is None or not np.allclose(kept.scale, given.scale):
        return False
    kept.scale = [float(s) * n for s in given.scale]
    return True
