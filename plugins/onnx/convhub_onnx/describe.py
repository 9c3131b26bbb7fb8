""".onnx files for `convhub inspect`, and convhub's provenance record in an .onnx: the
ModelProto's metadata_props (key convhub.provenance, the record's JSON), which runtimes carry
along and never compute with. Only onnx is imported (and onnxruntime by nothing here)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from convhub.inspection import histogram, shares
from convhub.provenance import KEY
from convhub.types import TensorSpec

from convhub_onnx import validate


def embed(path: Path, record: Mapping[str, Any]) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    kept = [p for p in model.metadata_props if p.key != KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=KEY, value=json.dumps(record))
    onnx.save(model, str(path))


def embedded(model: Any) -> dict[str, Any] | None:
    value = next((p.value for p in model.metadata_props if p.key == KEY), None)
    record = json.loads(value) if value else None
    return record if isinstance(record, dict) else None


def _numpy_dtype(elem_type: int) -> str:
    from onnx import helper

    try:
        return str(helper.tensor_dtype_to_np_dtype(elem_type).name)
    except (KeyError, ValueError):
        return str(elem_type)


def _spec(value: Any) -> TensorSpec:
    tensor = value.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
    return TensorSpec(value.name, dims, _numpy_dtype(tensor.elem_type))


def inspect(path: Path) -> dict[str, Any]:
    import onnx

    from convhub_onnx import onnx_model

    model = onnx.load(str(path), load_external_data=False)
    graphs = list(validate._graphs(model.graph))
    initializers = {i.name for i in model.graph.initializer}
    counts: dict[str, int] = {}
    for init in (i for graph in graphs for i in graph.initializer):
        dtype = _numpy_dtype(init.data_type)
        counts[dtype] = counts.get(dtype, 0) + math.prod(init.dims)
    ops = [(f"{n.domain}:" if n.domain not in ("", "ai.onnx") else "") + n.op_type for g in graphs for n in g.node]
    return {
        "inputs": [_spec(v) for v in model.graph.input if v.name not in initializers],
        "outputs": [_spec(v) for v in model.graph.output],
        "parameters": sum(counts.values()),
        "precision": shares(counts),
        "operators": histogram(ops),
        "provenance": embedded(model),
        "details": {
            "computes in": onnx_model.precision_of(model),
            "opset": str(onnx_model.default_opset(model)),
            "producer": f"{model.producer_name} {model.producer_version}".strip() or "unknown",
        },
    }
