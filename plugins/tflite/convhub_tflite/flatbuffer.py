"""Small edits of a TFLite flatbuffer through the schema's object API (ai_edge_litert's
schema_py_generated), shared by the mends of what TFLiteConverter writes (int16x8.py, int8.py)."""

from __future__ import annotations


def add_code(schema, model, kinds: list, name: str, number: int) -> int:
    """The index of a builtin op's operator code, added if the file has none."""
    if name in kinds:
        return kinds.index(name)
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = number, min(number, 127), 1
    model.operatorCodes.append(code)
    kinds.append(name)
    return len(kinds) - 1


def float_twin(schema, graph, index: int) -> int:
    """A float32 tensor of the same shape as tensor `index`, appended to the graph."""
    like, twin = graph.tensors[index], schema.TensorT()
    name = like.name.decode() if isinstance(like.name, bytes) else like.name
    twin.name, twin.shape, twin.shapeSignature = f"{name}/float32", like.shape, like.shapeSignature
    twin.type, twin.buffer = schema.TensorType.FLOAT32, 0  # buffer 0: the empty one, a computed tensor
    graph.tensors.append(twin)
    return len(graph.tensors) - 1


def operator(schema, code: int, inputs: list[int], outputs: list[int]):
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code, list(inputs), list(outputs)
    return op


def pack(schema, model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
