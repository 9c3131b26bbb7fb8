"""Parity: run the source and a converted artifact on the same inputs and compare their outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from convhub.types import TensorSpec

DEFAULT_BATCH = 3  # > 1, so a batch dim that was frozen to 1 by a converter is caught
DEFAULT_DYNAMIC_SIZE = 8


@dataclass(frozen=True)
class Tolerance:
    """|candidate - reference| <= atol + rtol * |reference|, element-wise."""

    atol: float
    rtol: float

    def to_json(self) -> dict:
        return {"atol": self.atol, "rtol": self.rtol}


# By the precision an artifact keeps; conversions report theirs as the fact "precision".
TOLERANCES = {
    "float32": Tolerance(atol=1e-4, rtol=1e-4),
    "float16": Tolerance(atol=1e-2, rtol=1e-2),
    "dynamic-range": Tolerance(atol=5e-2, rtol=5e-2),
    "int8": Tolerance(atol=1e-1, rtol=1e-1),
}


def make_inputs(
    specs: Sequence[TensorSpec], seed: int = 0, batch: int = DEFAULT_BATCH
) -> dict[str, np.ndarray]:
    """Seeded inputs for a model's input specs; the leading dynamic dim becomes `batch`."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = tuple(
            (batch if i == 0 else DEFAULT_DYNAMIC_SIZE) if d is None or d < 0 else d
            for i, d in enumerate(spec.shape)
        )
        dtype = np.dtype(spec.dtype)
        if dtype == np.bool_:
            value = rng.random(shape) < 0.5
        elif np.issubdtype(dtype, np.integer):
            value = rng.integers(0, 10, size=shape).astype(dtype)
        else:
            value = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        feeds[spec.name] = value
    return feeds


def match_feeds(
    feeds: Mapping[str, np.ndarray], source_specs: Sequence[TensorSpec], target_specs: Sequence[TensorSpec]
) -> dict[str, np.ndarray]:
    """Re-key the source's inputs by the target's input names: by name when names survive, else by order."""
    if {s.name for s in target_specs} == set(feeds):
        return {s.name: feeds[s.name] for s in target_specs}
    if len(target_specs) != len(source_specs):
        raise ValueError(
            f"the artifact takes {len(target_specs)} inputs, the source {len(source_specs)}"
        )
    return {t.name: feeds[s.name] for s, t in zip(source_specs, target_specs)}


@dataclass
class OutputDiff:
    name: str
    max_abs_diff: float
    passed: bool
    reason: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "max_abs_diff": self.max_abs_diff, "passed": self.passed, "reason": self.reason}


@dataclass
class ParityEntry:
    """How one artifact on a route compares with the source."""

    format: str
    checked: bool
    passed: bool
    max_abs_diff: float | None = None
    tolerance: Tolerance | None = None
    outputs: list[OutputDiff] = field(default_factory=list)
    reason: str = ""

    def to_json(self) -> dict:
        return {
            "format": self.format,
            "checked": self.checked,
            "passed": self.passed,
            "max_abs_diff": self.max_abs_diff,
            "tolerance": self.tolerance.to_json() if self.tolerance else None,
            "outputs": [o.to_json() for o in self.outputs],
            "reason": self.reason,
        }


def compare(
    fmt: str, reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], tol: Tolerance
) -> ParityEntry:
    """Compare outputs by name when the names survived conversion, else by signature order."""
    ref_names, cand_names = list(reference), list(candidate)
    if len(ref_names) != len(cand_names):
        return ParityEntry(
            fmt, True, False, tolerance=tol,
            reason=f"{len(cand_names)} outputs where the source has {len(ref_names)}",
        )
    pairs = (
        [(n, n) for n in ref_names] if set(ref_names) == set(cand_names) else list(zip(ref_names, cand_names))
    )
    diffs: list[OutputDiff] = []
    for ref_name, cand_name in pairs:
        ref = np.asarray(reference[ref_name])
        cand = np.asarray(candidate[cand_name])
        if ref.shape != cand.shape:
            diffs.append(OutputDiff(ref_name, float("inf"), False, f"shape {cand.shape}, source has {ref.shape}"))
            continue
        ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
        err = np.abs(cand64 - ref64)
        finite = np.isfinite(err).all()
        max_abs = float(err.max()) if err.size else 0.0
        ok = bool(finite and np.all(err <= tol.atol + tol.rtol * np.abs(ref64)))
        reason = "" if ok else ("non-finite values" if not finite else f"exceeds atol={tol.atol:g}, rtol={tol.rtol:g}")
        diffs.append(OutputDiff(ref_name, max_abs, ok, reason))
    worst = max((d.max_abs_diff for d in diffs), default=0.0)
    failed = [d for d in diffs if not d.passed]
    reason = "; ".join(f"output {d.name!r}: {d.reason}" for d in failed)
    return ParityEntry(fmt, True, not failed, worst, tol, diffs, reason)
