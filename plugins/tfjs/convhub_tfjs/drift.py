"""Where a TF.js model with quantized weights drifts from: its weights' rounding, weight by weight.

tensorflowjs' uint8/uint16 quantization stores each weight tensor as integers on one affine range
(min, scale) and TF.js dequantizes them on load; activations stay float32. So a drift can only
come from that rounding. The hop converts the same SavedModel again without quantization (the
same converter names each weight the same) and compares each tensor's values with the quantized
file's: the RMS of the difference against the tensor's typical value, 1.4826 x its median |value|
(its RMS, for normal values). Not against its RMS: a few large values stretch a tensor's range
and round the rest away, and an RMS that those few dominate would hide it. Where no tensor loses
much, the network amplifies many small roundings (as deep CNNs do in int8).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping

from convhub.types import Artifact
from convhub_tfjs import converter, graph_model

COARSE = 0.05  # a tensor rounded by 5 % of its typical value or more is named
NAMED = 2  # at most this many
SCOPES = ("ConstantFolding", "StatefulPartitionedCall", "PartitionedCall")  # freezing's, not the model's


def weights(folder: Path) -> dict[str, tuple[Any, str, float]]:
    """Each numeric weight of a TF.js graph model: {name: (its values as float32, flat, how they are
    stored: float32, uint8..., the quantization step or 0)}, the quantized ones dequantized as TF.js
    does on load, by tensorflowjs' own reader (which quantize.py re-writes weights with)."""
    import numpy as np  # here, not at import: listing plugins loads no framework or numpy
    from tensorflowjs import read_weights

    manifest = graph_model.load(folder).get("weightsManifest", [])
    found = {}
    for group, entries in zip(manifest, read_weights.read_weights(manifest, str(folder))):
        for weight, entry in zip(group["weights"], entries):
            if weight.get("dtype") == "string":
                continue
            params = weight.get("quantization") or {}
            found[weight["name"]] = (np.asarray(entry["data"], np.float32).ravel(), params.get("dtype") or weight["dtype"],
                                     float(params.get("scale") or 0.0))
    return found


def rounding(quantized: Path, float32: Path) -> list[dict[str, Any]]:
    """Each integer-quantized weight tensor (more than one value) of the TF.js model in `quantized`
    against the same weight in `float32`: its name, its float range, step, typical value and the
    rounding's RMS relative to that value; coarsest first."""
    import numpy as np

    exact = weights(float32)
    found = []
    for name, (values, stored, step) in weights(quantized).items():
        original = exact.get(name, (None, ""))[0]
        if stored not in ("uint8", "uint16") or original is None or original.shape != values.shape or values.size < 2:
            continue
        # Mostly zeros (pruned, padded): the median says nothing, the RMS does.
        original, values = original.astype(np.float64), values.astype(np.float64)
        typical = float(1.4826 * np.median(np.abs(original))) or float(np.sqrt(np.mean(original**2)))
        error = float(np.sqrt(np.mean((values - original) ** 2)))
        found.append({"name": name, "dtype": stored, "low": float(original.min()), "high": float(original.max()),
                      "step": step, "typical": typical,
                      "error": error / typical if typical > 0 else 0.0})
    return sorted(found, key=lambda w: -w["error"])


def short_name(name: str) -> str:
    """A weight's name without freezing's scopes and the model's own: the layer and what it holds."""
    parts = [p for p in name.split("/") if p not in SCOPES]
    return "/".join(parts[1:] if len(parts) > 2 else parts)


def explain(before: Artifact, artifact: Artifact, options: Mapping[str, Any], feeds: Mapping[str, Any]) -> str | None:
    """One line on which weights a quantized TF.js model's rounding hurts (Conversion.explain_drift);
    None for a model whose weights are not stored as integers (float16 rounds each value alone)."""
    if options.get("tfjs_quantize") not in ("uint8", "uint16"):
        return None
    unquantized = {k: v for k, v in options.items() if k != "tfjs_quantize"}
    with tempfile.TemporaryDirectory(prefix="convhub-drift-") as scratch:
        converter.from_saved_model(before, Path(scratch) / "float32", unquantized)
        tensors = rounding(Path(artifact.path), Path(scratch) / "float32")
    return summary(tensors)


def summary(tensors: list[dict[str, Any]]) -> str | None:
    import numpy as np

    if not tensors:
        return None
    dtype, median = tensors[0]["dtype"], float(np.median([t["error"] for t in tensors]))
    overall = f"the median of its {len(tensors)} quantized weight tensors is rounded by {_percent(median)}"
    coarse = [t for t in tensors if t["error"] >= COARSE][:NAMED]
    if not coarse:
        return (f"{dtype} weights, one range per tensor: no tensor is rounded by more than"
                f" {_percent(tensors[0]['error'])} of its typical value ({short_name(tensors[0]['name'])}),"
                f" and {overall}: the network amplifies many small roundings")
    named = "; ".join(
        f"{short_name(t['name'])} by {_percent(t['error'])} (its range [{t['low']:.3g}, {t['high']:.3g}] has steps of"
        f" {t['step']:.3g}, for typical values of {t['typical']:.3g})" for t in coarse)
    return (f"{dtype} weights, one range per tensor, are rounded coarsest against their typical values in {named};"
            f" {overall}")


def _percent(share: float) -> str:
    return f"{100 * share:.2g}%"
