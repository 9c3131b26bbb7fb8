"""Quantizing the weights of a float32 TF.js graph model, with tensorflowjs' own reader, quantizer
and writer (what its converter does at the end of a conversion), choosing the tensors by their values.

The converter's quantization map names weights (wildcards included) but cannot say "all but these",
so the hop converts once without quantization and quantizes here, the weights it reads:
- tensors under SMALLEST values stay float32, as TFLite's weight quantizer leaves them (its
  kWeightsMinNumElementsDefault): biases and scalars hold a fraction of a percent of the bytes,
  and rounded they shift or scale every activation of their layer. Measured on the zoo: a
  hard-swish's 1/6 in float16 is 2.4e-4 too small in every activation of MobileNetV3Large (TF.js
  float16 1.24 % -> 0.27 %; TFLite's HARD_SWISH op holds no constant: 0.29 %); uint8 biases:
  EfficientNetB0 12.4 % -> 3.8 %, MobileNetV3Large 13.3 % -> 5.8 %, for files 2 % larger;
- tensors holding ±inf or NaN (an attention mask's -inf) stay float32: quantized, their min or
  scale would not be a number, which model.json (JSON) cannot hold.
"""

from __future__ import annotations

import json
from pathlib import Path

from convhub_tfjs import graph_model

SMALLEST = 1024


def quantize(folder: Path, dtype: str, shard_bytes: int) -> tuple[list[str], int]:
    """Store each float32 weight tensor of the graph model in `folder` as `dtype` (float16, uint8,
    uint16), except those under SMALLEST values or holding ±inf or NaN; rewrites its shards and
    model.json. Returns (the names of the weights kept for not being finite, how many were kept
    for their size)."""
    import numpy as np  # here, not at import: listing plugins loads no framework or numpy
    from tensorflowjs import read_weights, write_weights

    model_json = graph_model.load(folder)
    groups = read_weights.read_weights(model_json["weightsManifest"], str(folder))
    floats = [e for group in groups for e in group if e["data"].dtype == np.float32]
    large = [e for e in floats if e["data"].size >= SMALLEST]
    nonfinite = sorted(e["name"] for e in large if not np.isfinite(e["data"]).all())
    names = [e["name"] for e in large if e["name"] not in nonfinite]
    for shard in graph_model.shard_files(folder):
        shard.unlink()
    model_json["weightsManifest"] = write_weights.write_weights(
        groups, str(folder), shard_size_bytes=shard_bytes, write_manifest=False,
        quantization_dtype_map={dtype: names} if names else None)
    (folder / graph_model.MODEL_JSON).write_text(json.dumps(model_json), encoding="utf-8")
    return nonfinite, len(floats) - len(large)
