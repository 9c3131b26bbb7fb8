"""Parity: run the source and converted artifacts on the same inputs and compare their outputs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from convhub.errors import InputError, UsageError
from convhub.types import TensorSpec

DEFAULT_BATCH = 3  # > 1, so a batch dim that a converter froze to 1 is caught
DEFAULT_DYNAMIC_SIZE = 8
HISTOGRAM_BINS = 24


@dataclass(frozen=True)
class Tolerance:
    """Element-wise |candidate - reference| <= atol + rtol * |reference| + span * (max - min of the
    reference output).

    span:     a share of the output's range; quantized models err in steps of their output scale,
              which follows the range, not each value.
    min_top1: for outputs that look like class scores (batch, classes), the share of rows whose
              arg-max must agree with the source: quantized scores move, decisions should not.
    """

    atol: float
    rtol: float
    span: float = 0.0
    min_top1: float | None = None

    def __post_init__(self) -> None:
        # A NaN bound makes every comparison false, so nothing would ever be "beyond" it.
        for name in ("atol", "rtol", "span"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise UsageError(f"{name} must be a finite number ≥ 0, not {value!r}")

    def to_json(self) -> dict:
        return {"atol": self.atol, "rtol": self.rtol, "span": self.span, "min_top1": self.min_top1}

    def __str__(self) -> str:
        text = f"atol={self.atol:g}, rtol={self.rtol:g}"
        return text + (f", {self.span:.0%} of the output range" if self.span else "")


# By the precision an artifact keeps (the fact "precision" a conversion reports). Chosen from
# measurements with margin; docs/parity.md gives the figures behind them.
TOLERANCES = {
    "float32": Tolerance(atol=1e-4, rtol=1e-4),
    "float16": Tolerance(atol=2e-3, rtol=2e-3),
    "dynamic-range": Tolerance(atol=1e-3, rtol=0.0, span=0.03),
    "int8": Tolerance(atol=1e-3, rtol=0.0, span=0.06, min_top1=0.9),
    # TF.js weight quantization (weights stored as 16/8-bit integers, dequantized on load).
    "uint16-weights": Tolerance(atol=1e-3, rtol=1e-3),
    "uint8-weights": Tolerance(atol=2.5e-2, rtol=2.5e-2),
}


def tolerance_for(precision: str | None, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    """The default tolerance for a precision; an explicit atol/rtol replaces it (span and top-1 included)."""
    base = TOLERANCES.get(precision or "float32", TOLERANCES["float32"])
    if atol is None and rtol is None:
        return base
    return Tolerance(base.atol if atol is None else atol, base.rtol if rtol is None else rtol)


def make_inputs(specs: Sequence[TensorSpec], seed: int = 0, batch: int = DEFAULT_BATCH) -> dict[str, np.ndarray]:
    """Seeded inputs for a model's input specs: the leading dynamic dim becomes `batch`,
    other dynamic dims DEFAULT_DYNAMIC_SIZE; floats uniform in [-1, 1), integers in [0, 10), booleans."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"the seed must be a whole number ≥ 0, not {seed!r}")
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = tuple(
            (batch if i == 0 else DEFAULT_DYNAMIC_SIZE) if d is None or d < 0 else d
            for i, d in enumerate(spec.shape)
        )
        if 0 in shape:  # an input of no values: whatever the model computes is never compared
            raise InputError(f"input {spec.name!r} has shape {spec.shape}: no values to check on")
        dtype = np.dtype(spec.dtype)
        if dtype == np.bool_:
            value = rng.random(shape) < 0.5
        elif np.issubdtype(dtype, np.integer):
            value = rng.integers(0, 10, size=shape).astype(dtype)
        else:
            value = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        feeds[spec.name] = value
    return feeds


MAX_INPUTS_FILE = 2 << 30


def read_npz(path: str | Path, flag: str = "--inputs") -> dict[str, np.ndarray]:
    """The arrays of a user's .npz, refused (InputError, one line) unless each is numeric (or
    bool), holds at least one value, and is finite: a check on NaN or on nothing proves nothing.
    Looked at with stat() before it is opened, so a FIFO or a device cannot block or flood."""
    import os
    import stat

    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path} is not a regular file, so not an .npz for {flag}")
    if st.st_size > MAX_INPUTS_FILE:
        raise InputError(f"{path} is {st.st_size / 2**30:.1f} GiB; {flag} takes up to {MAX_INPUTS_FILE / 2**30:.0f} GiB")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - numpy's many ways of saying "not an npz"
        raise InputError(f"{path} is not a NumPy .npz file: {exc}") from None
    if not isinstance(arrays, dict) or not arrays:
        raise InputError(f"{path} holds no arrays")
    for name, value in arrays.items():
        if not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
            raise InputError(f"{path}: array {name!r} is {value.dtype}, not numeric")
        if value.size == 0:
            raise InputError(f"{path}: array {name!r} has shape {value.shape}: no values to check on")
        if np.issubdtype(value.dtype, np.inexact) and not np.isfinite(value).all():
            bad = int((~np.isfinite(value)).sum())
            raise InputError(f"{path}: array {name!r} holds {bad} NaN or infinite values; inputs must be finite")
    return arrays


def load_inputs(path: str | Path, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """The user's own inputs from an .npz: keyed by input name, or positional (arr_0...) in input order."""
    arrays = read_npz(path)
    path = Path(path)
    names = [s.name for s in specs]
    if set(names) <= set(arrays):
        chosen = {n: arrays[n] for n in names}
    elif len(arrays) == len(names) and all(k == f"arr_{i}" for i, k in enumerate(arrays)):
        chosen = dict(zip(names, arrays.values()))
    else:
        raise InputError(f"{path} holds {sorted(arrays)}; the model's inputs are {names}")
    for spec in specs:
        value = chosen[spec.name]
        if len(value.shape) != len(spec.shape) or any(
            d is not None and d != v for d, v in zip(spec.shape, value.shape)
        ):
            raise InputError(f"{path}: input {spec.name!r} has shape {value.shape}, the model takes {spec.shape}")
        chosen[spec.name] = value.astype(np.dtype(spec.dtype), copy=False)
    return chosen


def match_feeds(
    feeds: Mapping[str, np.ndarray], source_specs: Sequence[TensorSpec], target_specs: Sequence[TensorSpec]
) -> dict[str, np.ndarray]:
    """Re-key the source's inputs by the target's input names: by name when names survive, else by order."""
    if {s.name for s in target_specs} == set(feeds):
        return {s.name: feeds[s.name] for s in target_specs}
    if len(target_specs) != len(source_specs):
        raise ValueError(f"the artifact takes {len(target_specs)} inputs, the source {len(source_specs)}")
    return {t.name: feeds[s.name] for s, t in zip(source_specs, target_specs)}


@dataclass
class OutputDiff:
    """How one output of a candidate differs from the same output of a reference."""

    name: str
    passed: bool
    max_abs_diff: float = float("inf")
    max_rel_diff: float = float("inf")
    mean_abs_diff: float = float("inf")
    beyond_fraction: float = 1.0
    cosine: float | None = None
    needed_atol: float | None = None  # the atol that would have passed, at the same rtol
    top1_agreement: float | None = None
    reason: str = ""
    candidate_name: str = ""
    histogram: dict | None = None  # log10 |error| bins, for the HTML report
    weak: str = ""  # why a pass on this output proves little (the source barely depends on its inputs)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def _looks_like_class_scores(ref: np.ndarray) -> bool:
    return ref.ndim == 2 and ref.shape[1] > 1 and np.issubdtype(ref.dtype, np.floating)


def compare_output(name: str, ref: np.ndarray, cand: np.ndarray, tol: Tolerance, candidate_name: str = "") -> OutputDiff:
    ref, cand = np.asarray(ref), np.asarray(cand)
    if ref.shape != cand.shape:
        return OutputDiff(name, False, reason=f"shape {cand.shape}, the reference has {ref.shape}",
                          candidate_name=candidate_name)
    ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
    finite_ref, finite_cand = np.isfinite(ref64), np.isfinite(cand64)
    # NaN matches NaN and an infinity the same infinity; anything else non-finite is a mismatch.
    same_nonfinite = (np.isnan(ref64) & np.isnan(cand64)) | (~finite_ref & (ref64 == cand64))
    mismatched = (finite_ref != finite_cand) | (~finite_ref & ~finite_cand & ~same_nonfinite)
    if mismatched.any():
        return OutputDiff(name, False, reason=f"{int(mismatched.sum())} non-finite values (NaN/inf) differ from the reference",
                          candidate_name=candidate_name)
    both = finite_ref & finite_cand
    if ref.size == 0:
        return OutputDiff(name, False, reason="the source's output is empty: nothing to compare",
                          candidate_name=candidate_name)
    if not both.any():
        return OutputDiff(name, False, reason="no finite value to compare (every value is NaN or infinite)",
                          candidate_name=candidate_name)
    ref64, cand64 = np.where(both, ref64, 0.0), np.where(both, cand64, 0.0)
    err = np.abs(cand64 - ref64)
    bound = tol.atol + tol.rtol * np.abs(ref64) + tol.span * float(np.ptp(ref64))
    beyond = err > bound
    norms = np.linalg.norm(ref64) * np.linalg.norm(cand64)
    cosine = float(np.dot(ref64.ravel(), cand64.ravel()) / norms) if norms > 0 else None
    top1 = None
    if _looks_like_class_scores(ref):
        top1 = float(np.mean(ref.argmax(axis=1) == cand.argmax(axis=1)))
    nonzero = err[err > 0]
    histogram = None
    if nonzero.size:
        counts, edges = np.histogram(np.log10(nonzero), bins=HISTOGRAM_BINS)
        histogram = {"log10_edges": edges.round(3).tolist(), "counts": counts.tolist(), "exact": int(err.size - nonzero.size)}
    reasons = []
    if beyond.any():
        reasons.append(
            f"{beyond.mean():.1%} of values beyond {tol} (max abs diff {err.max():.3g})"
        )
    if tol.min_top1 is not None and top1 is not None and top1 < tol.min_top1:
        reasons.append(f"top-1 agreement {top1:.1%} < {tol.min_top1:.0%}")
    return OutputDiff(
        name,
        passed=not reasons,
        max_abs_diff=float(err.max()),
        max_rel_diff=float((err / np.maximum(np.abs(ref64), 1e-12)).max()),
        mean_abs_diff=float(err.mean()),
        beyond_fraction=float(beyond.mean()),
        cosine=cosine,
        needed_atol=float(max(0.0, (err - tol.rtol * np.abs(ref64)).max())),  # with span 0
        top1_agreement=top1,
        reason="; ".join(reasons),
        candidate_name=candidate_name,
        histogram=histogram,
        weak=weak_evidence(ref64, both, tol),
    )


def weak_evidence(ref: np.ndarray, finite: np.ndarray, tol: Tolerance) -> str:
    """Why matching this reference output proves little, or "".

    A pass means "within tolerance of the source". When the source's outputs for different
    inputs are themselves within that tolerance of each other (random-init networks often give
    logits of ~1e-11, or the same row for every input), a model that ignores its inputs, or
    outputs zeros, passes too. Measured on the source's output only, so it never depends on the
    candidate: all |values| within atol of zero; rows (the batch) that differ by less than the
    tolerance; a constant output.
    """
    values = ref[finite] if ref.shape == finite.shape else ref.ravel()
    if values.size == 0:
        return ""
    typical = tol.atol + tol.rtol * float(np.median(np.abs(values))) + tol.span * float(np.ptp(values))
    if float(np.max(np.abs(values))) <= tol.atol:
        return f"every value is within atol={tol.atol:g} of 0 (largest {float(np.max(np.abs(values))):.2g}): an all-zero output would pass"
    if ref.ndim >= 1 and ref.shape[0] >= 2 and ref.shape == finite.shape:
        spread = float(np.max(np.ptp(np.where(finite, ref, np.nan), axis=0), initial=0.0, where=finite.all(axis=0)))
        if spread <= typical:
            return (f"the outputs for the {ref.shape[0]} inputs differ by at most {spread:.2g}, within the"
                    f" tolerance (~{typical:.2g}): a model that ignores its inputs would pass")
    if float(np.ptp(values)) <= typical:
        return f"the output is constant within the tolerance (range {float(np.ptp(values)):.2g})"
    return ""


def pair_outputs(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> list[tuple[str, str]] | str:
    """Pairs (reference name, candidate name): by name when the names survived, else by signature order.
    A string says why no pairing is possible."""
    ref_names, cand_names = list(reference), list(candidate)
    if len(ref_names) != len(cand_names):
        return f"{len(cand_names)} outputs ({', '.join(cand_names)}) where the source has {len(ref_names)} ({', '.join(ref_names)})"
    if set(ref_names) == set(cand_names):
        return [(n, n) for n in ref_names]
    return list(zip(ref_names, cand_names))


def compare(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], tol: Tolerance
) -> tuple[list[OutputDiff], str]:
    """Per-output differences, and a reason when the outputs cannot even be paired."""
    pairs = pair_outputs(reference, candidate)
    if isinstance(pairs, str):
        return [], pairs
    return [compare_output(r, reference[r], candidate[c], tol, c) for r, c in pairs], ""


@dataclass
class ParityEntry:
    """How one artifact on a route compares with the source, and with the hop before it."""

    format: str
    checked: bool
    passed: bool
    runner: str = ""
    tolerance: Tolerance | None = None
    outputs: list[OutputDiff] = field(default_factory=list)  # against the source
    previous: str = ""  # the format of the hop before, when that was not the source
    vs_previous: list[OutputDiff] = field(default_factory=list)
    reason: str = ""

    @property
    def max_abs_diff(self) -> float | None:
        return max((o.max_abs_diff for o in self.outputs), default=None) if self.checked else None

    @property
    def weak_evidence(self) -> list[str]:
        """One line per output whose pass proves little (see parity.weak_evidence)."""
        return [f"{self.format} output {o.name!r}: {o.weak}" for o in self.outputs if o.weak] if self.checked else []

    def to_json(self) -> dict:
        return {
            "format": self.format,
            "checked": self.checked,
            "passed": self.passed,
            "max_abs_diff": self.max_abs_diff,
            "runner": self.runner,
            "tolerance": self.tolerance.to_json() if self.tolerance else None,
            "outputs": [o.to_json() for o in self.outputs],
            "previous": self.previous or None,
            "vs_previous": [o.to_json() for o in self.vs_previous],
            "reason": self.reason,
            "evidence": ("weak" if self.weak_evidence else "strong") if self.checked and self.passed else None,
            "weak_evidence": self.weak_evidence,
        }


def judge(
    fmt: str,
    runner: str,
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    tol: Tolerance,
    previous: tuple[str, Mapping[str, np.ndarray]] | None = None,
) -> ParityEntry:
    """Compare a candidate's outputs with the source's, and with the previous hop's when there is one."""
    diffs, why = compare(reference, candidate, tol)
    entry = ParityEntry(fmt, True, False, runner, tol, diffs)
    if why:
        entry.reason = why
        return entry
    failed = [d for d in diffs if not d.passed]
    entry.passed = not failed
    entry.reason = "; ".join(f"output {d.name!r}: {d.reason}" for d in failed)
    if previous is not None:
        entry.previous = previous[0]
        entry.vs_previous, _ = compare(previous[1], candidate, tol)
    return entry
