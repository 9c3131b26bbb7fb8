""".tflite files for `convhub inspect`, and convhub's provenance record in a .tflite.

The record is an entry of the model's `metadata` list (the flatbuffer schema's name → buffer
pairs, where the converter keeps its own "min_runtime_version" and "CONVERSION_METADATA"),
named convhub.provenance, its buffer the record's JSON. It is written with LiteRT's own
flatbuffer tools (ai_edge_litert.tools.flatbuffer_utils) and read with the schema's reader;
interpreters never read metadata, so the model computes the same. No TensorFlow is imported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from convhub.inspection import histogram, shares
from convhub.provenance import KEY
from convhub.types import Artifact, TensorSpec


def embed(path: Path, record: Mapping[str, Any]) -> None:
    import numpy as np
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model(str(path))
    data = np.frombuffer(json.dumps(record).encode(), dtype=np.uint8)
    entry = next((m for m in model.metadata or [] if _name(m.name) == KEY), None)
    if entry is None:
        entry = fb.schema_fb.MetadataT()
        entry.name = KEY
        model.metadata = [*(model.metadata or []), entry]
    buffer = fb.BufferT()
    buffer.data = data
    model.buffers = [*(model.buffers or []), buffer]
    entry.buffer = len(model.buffers) - 1
    fb.write_model(model, str(path))


def _name(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def embedded(flatbuffer: bytes) -> dict[str, Any] | None:
    """The record in a .tflite's metadata, read with the schema's reader (no object tree)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if _name(entry.Name()) == KEY:
            record = json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
            return record if isinstance(record, dict) else None
    return None


def _type_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


def inspect(path: Path) -> dict[str, Any]:
    from ai_edge_litert import schema_py_generated as schema

    from convhub_tflite import tflite

    flatbuffer = Path(path).read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    types, ops = _type_names(), tflite.builtin_names()
    buffers = model.buffers or []
    counts: dict[str, int] = {}
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            data = buffers[tensor.buffer].data if tensor.buffer < len(buffers) else None
            if data is not None and len(data) and tensor.shape is not None:
                name = types.get(tensor.type, str(tensor.type))
                counts[name] = counts.get(name, 0) + math.prod(int(d) for d in tensor.shape)
    codes = model.operatorCodes or []

    def op_name(code: Any) -> str:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        return _name(code.customCode) if code.customCode else ops.get(builtin, str(builtin))

    used = [op_name(codes[op.opcodeIndex]) for subgraph in model.subgraphs or [] for op in subgraph.operators or []]
    session = tflite.Session(Artifact("tflite", path=Path(path)))

    def specs(details: Mapping[str, Any]) -> list[TensorSpec]:
        """As the file stores them (int8 for an int8-io model; the runner feeds and reads it in float)."""
        return [TensorSpec(name, tuple(None if d < 0 else int(d) for d in detail["shape_signature"]),
                           getattr(detail["dtype"], "__name__", str(detail["dtype"])))
                for name, detail in details.items()]

    return {
        "inputs": specs(session._in),
        "outputs": specs(session._out),
        "parameters": sum(counts.values()),
        "precision": shares(counts),
        "operators": histogram(used),
        "provenance": embedded(flatbuffer),
        "details": {
            "computes in": tflite.precision_of(flatbuffer),
            "signatures": ", ".join(session.signatures) + f" (inputs and outputs of {session.signature})",
            "runtime": session.runtime + (f", Flex ops: {', '.join(session.flex_ops)}" if session.flex_ops else ""),
            "metadata": ", ".join(_name(m.name) for m in model.metadata or []) or "none",
        },
    }
