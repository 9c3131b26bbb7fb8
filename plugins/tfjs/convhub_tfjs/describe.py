"""TF.js graph models for `convhub inspect`, and convhub's provenance record in model.json:
its `userDefinedMetadata` object (what the converter's --metadata writes, and what
tf.loadGraphModel hands back as model.metadata), under the key convhub.provenance. JSON only."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from convhub.inspection import histogram, shares
from convhub.provenance import KEY

from convhub_tfjs import graph_model

METADATA = "userDefinedMetadata"


def embed(path: Path, record: Mapping[str, Any]) -> None:
    model_json = graph_model.load(Path(path))
    model_json[METADATA] = {**(model_json.get(METADATA) or {}), KEY: dict(record)}
    (Path(path) / graph_model.MODEL_JSON).write_text(json.dumps(model_json), encoding="utf-8")


def embedded(model_json: Mapping[str, Any]) -> dict[str, Any] | None:
    record = (model_json.get(METADATA) or {}).get(KEY)
    return record if isinstance(record, dict) else None


def inspect(path: Path) -> dict[str, Any]:
    model_json = graph_model.load(Path(path))
    inputs, _ = graph_model.signature_of(model_json, Path(path))
    outputs = [graph_model._spec(name, info) for name, info in (model_json.get("signature") or {}).get("outputs", {}).items()]
    counts: dict[str, int] = {}
    for group in model_json.get("weightsManifest", []):
        for weight in group.get("weights", []):
            stored = (weight.get("quantization") or {}).get("dtype") or weight.get("dtype", "float32")
            counts[stored] = counts.get(stored, 0) + math.prod(weight.get("shape", []))
    return {
        "inputs": inputs,
        "outputs": outputs,
        "parameters": sum(counts.values()),
        "precision": shares(counts),
        "operators": histogram(node["op"] for nodes in graph_model._graphs(model_json) for node in nodes),
        "provenance": embedded(model_json),
        "details": {
            "shards": f"{len(graph_model.shard_files(Path(path)))} shard files, stored as"
                       f" {graph_model.precision_of(model_json)} (TF.js computes in float32)",
            "converted by": str(model_json.get("convertedBy") or "unknown"),
        },
    }
