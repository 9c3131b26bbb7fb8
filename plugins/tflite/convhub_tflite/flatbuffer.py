"""Small edits of a TFLite flatbuffer through the schema's object API (ai_edge_litert's
schema_py_generated), shared by the mends of what TFLiteConverter writes (int16x8.py, int8.py)."""

from __future__ import annotations


def add_code(schema, model, kinds: list, name: str) -> int:
    """The index of a builtin op's operator code, added if the file has none."""
    from convhub_tflite.tflite import builtin_names

    if name in kinds:
        return kinds.index(name)
    number = next(n for n, known in builtin_names().items() if known == name)
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = number, min(number, 127), 1
    model.operatorCodes.append(code)
    kinds.append(name)
    return len(kinds) - 1


def name(tensor) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)


def twin(schema, graph, index: int, tensor_type: int, suffix: str) -> int:
    """A computed tensor of `tensor_type` with the shape of tensor `index`, appended to the graph."""
    like, made = graph.tensors[index], schema.TensorT()
    made.name, made.shape, made.shapeSignature = f"{name(like)}/{suffix}", like.shape, like.shapeSignature
    made.type, made.buffer = tensor_type, 0  # buffer 0: the empty one, a computed tensor
    graph.tensors.append(made)
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
