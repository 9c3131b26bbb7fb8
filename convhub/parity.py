"""Parity: run the source and converted artifacts on the same inputs and compare their outputs."""

from __future__ import annotations

import math
import operator
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from convhub.errors import InputError, UsageError
from convhub.types import TensorSpec

Array = npt.NDArray[Any]

DEFAULT_BATCH = 3  # > 1, so a batch dim that a converter froze to 1 is caught
DEFAULT_DYNAMIC_SIZE = 8
HISTOGRAM_BINS = 24


@dataclass(frozen=True)
class Tolerance:
    """What an artifact's output must satisfy to match the source's.

    Element-wise, |candidate - reference| <= atol·m + rtol·|reference| + span·m, where m is the
    output's magnitude, max(1, max |reference|), when `scaled` (float round-off grows with the
    values a network computes, so an output reaching 300 may err 300 times more than one within
    ±1), else 1 (an explicit --atol is absolute).

    span:     for quantized models, a share of the output's magnitude: a cap on any one value's
              error (quantized models err in steps of their output scale).
    max_rel_rms: the root-mean-square error relative to the output's RMS; unlike a cap, it is not
              widened by one large value, so a drift spread over the output fails.
    min_top1: for outputs that look like class scores (batch, classes), the share of rows whose
              arg-max must agree with the source (judged over at least MIN_AGREEMENT_ROWS rows).
    min_top5: the share of rows whose source arg-max is among the candidate's 5 highest scores
              (outputs of more than 5 classes).
    """

    atol: float
    rtol: float
    span: float = 0.0
    min_top1: float | None = None
    scaled: bool = False
    max_rel_rms: float | None = None
    min_top5: float | None = None

    def __post_init__(self) -> None:
        # A NaN bound makes every comparison false, so nothing would ever be "beyond" it.
        for name in ("atol", "rtol", "span"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise UsageError(f"{name} must be a finite number ≥ 0, not {value!r}")

    def to_json(self) -> dict[str, Any]:
        return {"atol": self.atol, "rtol": self.rtol, "span": self.span, "scaled": self.scaled,
                "max_rel_rms": self.max_rel_rms, "min_top1": self.min_top1, "min_top5": self.min_top5}

    def absolute(self, m: float) -> float:
        """The part of every element's allowance that does not depend on its own value, for an
        output of magnitude m."""
        return self.atol * (m if self.scaled else 1.0) + self.span * m

    def bound(self, ref: Array) -> Array:
        """The largest error each element may have."""
        bound: Array = self.absolute(magnitude(ref)) + self.rtol * np.abs(ref)
        return bound

    def __str__(self) -> str:
        text = f"atol={self.atol:g}{'×magnitude' if self.scaled else ''}, rtol={self.rtol:g}"
        if self.span:
            text += f", {self.span:.0%} of the magnitude"
        if self.max_rel_rms is not None:
            text += f", relative RMS ≤ {self.max_rel_rms:.0%}"
        if self.min_top1 is not None:
            text += f", top-1 ≥ {self.min_top1:.0%}"
        if self.min_top5 is not None:
            text += f", top-5 ≥ {self.min_top5:.0%}"
        return text


def magnitude(ref: Array) -> float:
    """The scale an output's errors are judged against: its largest |value|, at least 1."""
    return max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0


MIN_AGREEMENT_ROWS = 16  # top-1 on fewer rows is reported, not judged: one flipped row of 3 is 33%
QUANTIZED_BATCH = 128  # generated parity rows when a route quantizes: top-1 over 128 rows is ±6 points, over 32 ±12

# By the precision an artifact keeps (the fact "precision" a conversion reports). float32 is
# judged element by element, scaled to the output's magnitude. A quantized precision is judged
# by what separates quantization noise from a conversion error: the relative RMS error (a wrong
# layout, op or scale gives 50 % and more), a cap on any one value's error as a share of the
# magnitude, and the agreement of decisions. docs/parity.md gives the measurements behind them.
TOLERANCES = {
    "float32": Tolerance(atol=1e-4, rtol=1e-4, scaled=True),
    "float16": Tolerance(atol=1e-3, rtol=0.0, span=0.05, max_rel_rms=0.01, min_top1=0.95, min_top5=0.99),
    # TF.js weight quantization (weights stored as 16/8-bit integers, dequantized on load).
    "uint16-weights": Tolerance(atol=1e-3, rtol=0.0, span=0.05, max_rel_rms=0.01, min_top1=0.95, min_top5=0.99),
    "uint8-weights": Tolerance(atol=1e-3, rtol=0.0, span=0.5, max_rel_rms=0.1, min_top1=0.9, min_top5=0.95),
    "dynamic-range": Tolerance(atol=1e-3, rtol=0.0, span=0.5, max_rel_rms=0.1, min_top1=0.9, min_top5=0.95),
    "int8": Tolerance(atol=1e-3, rtol=0.0, span=0.5, max_rel_rms=0.15, min_top1=0.85, min_top5=0.95),
    # int16 activations, int8 weights (TFLite's 16x8): the weights' rounding, as dynamic-range.
    "int16x8": Tolerance(atol=1e-3, rtol=0.0, span=0.5, max_rel_rms=0.1, min_top1=0.9, min_top5=0.95),
}


def tolerance_for(precision: str | None, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    """The default tolerance for a precision; an explicit atol/rtol replaces it: element-wise
    and absolute, without span, relative RMS or agreement."""
    base = TOLERANCES.get(precision or "float32", TOLERANCES["float32"])
    if atol is None and rtol is None:
        return base
    return Tolerance(base.atol if atol is None else atol, base.rtol if rtol is None else rtol)


def make_inputs(specs: Sequence[TensorSpec], seed: int = 0, batch: int = DEFAULT_BATCH,
                ranges: Mapping[str, Sequence[int]] | None = None, realistic: bool = False) -> dict[str, Array]:
    """Seeded inputs for a model's input specs: the leading dynamic dim becomes `batch`,
    other dynamic dims DEFAULT_DYNAMIC_SIZE; booleans at random. Values are drawn from the
    input's valid range when the source knows it (`ranges`: name → [low, high), e.g. an
    Embedding's vocabulary, or pixels in [0, 255] for a model that rescales them); else floats
    are uniform in [-1, 1), a (batch, length) mask is a padding mask (ones, then zeros), other
    integers are from {0, 1} for segment ids, else from [0, 10).

    `realistic` (int8 calibration, and the checks of quantized routes, whose error depends on
    the data): pictures (rank 4 or more) are smooth_pictures in their range, and other floats of
    unknown range are N(0, 1), like standardised features: int8 clips whatever lies outside the
    calibrated range, and z-scores leave [-1, 1) a third of the time, while N(0, 1) only makes
    the steps of a [-1, 1) input about 3x coarser."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"the seed must be a whole number ≥ 0, not {seed!r}")
    rng = np.random.default_rng(seed)
    feeds: dict[str, Array] = {}
    for spec in specs:
        shape = tuple(
            (batch if i == 0 else DEFAULT_DYNAMIC_SIZE) if d is None or d < 0 else d
            for i, d in enumerate(spec.shape)
        )
        if 0 in shape:  # an input of no values: whatever the model computes is never compared
            raise InputError(f"input {spec.name!r} has shape {spec.shape}: no values to check on")
        dtype = np.dtype(spec.dtype)
        if _is_padding_mask(spec, dtype, (ranges or {}).get(spec.name)):
            # What tokenizers write: each row's first n positions (at least one) valid, then padding.
            # Random 0/1 would leave holes, and a row of all zeros, which attention turns into NaN.
            lengths = rng.integers(1, shape[-1] + 1, size=shape[:-1] + (1,))
            value = (np.arange(shape[-1]) < lengths).astype(dtype)
        elif dtype == np.bool_:
            value = rng.random(shape) < 0.5
        elif realistic and (span := picture_range(shape, dtype, (ranges or {}).get(spec.name))) is not None:
            value = smooth_pictures(rng, shape, *span)
            value = (np.round(value) if np.issubdtype(dtype, np.integer) else value).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            low, high = integer_range(spec.name, (ranges or {}).get(spec.name))
            value = rng.integers(low, high, size=shape).astype(dtype)
        elif realistic and not known_range((ranges or {}).get(spec.name)):
            value = rng.standard_normal(size=shape).astype(dtype)
        else:
            bottom, top = float_range((ranges or {}).get(spec.name))
            value = rng.uniform(bottom, top, size=shape).astype(dtype)
        feeds[spec.name] = value
    return feeds


def _named_mask(name: str) -> bool:
    """Whether an input's name says it is a mask (attention_mask, padding_mask...): 0/1 flags."""
    return "mask" in name.lower()


def _is_padding_mask(spec: TensorSpec, dtype: np.dtype[Any], known: Sequence[int] | None) -> bool:
    """An input named as a mask, one 0/1 flag per position of a (batch, length) sequence."""
    binary = dtype == np.bool_ or (np.issubdtype(dtype, np.integer) and (known is None or tuple(known) == (0, 2)))
    return binary and len(spec.shape) == 2 and _named_mask(spec.name)


def picture(shape: Sequence[int | None]) -> bool:
    """Whether an input is a batch of grids, (N, H, W, C) or more: pictures, mostly."""
    return len(shape) >= 4


def picture_range(shape: Sequence[int | None], dtype: np.dtype[Any], known: Sequence[float] | None
                  ) -> tuple[float, float] | None:
    """[low, high] of the smooth_pictures a realistic input is drawn as, or None when it is not
    one: a float grid in its range ([-1, 1] when unknown), an integer grid in the range the source
    gave, a uint8 grid of unknown range as pixels in [0, 255]."""
    if not picture(shape) or dtype == np.bool_:
        return None
    if np.issubdtype(dtype, np.integer):
        if known is not None:
            return float(known[0]), float(known[1]) - 1  # whole numbers below high
        return (0.0, 255.0) if dtype == np.uint8 else None
    return float_range(known)


def realistic_kind(spec: TensorSpec, known: Sequence[float] | None) -> str:
    """How make_inputs(realistic=True) draws an input, in a few words ("" for integers, drawn
    as in any check): for the report and the calibration line."""
    dtype = np.dtype(spec.dtype)
    span = picture_range(spec.shape, dtype, known)
    if span is not None:
        return f"{spec.name}: smooth random pictures in [{span[0]:g}, {span[1]:g}]"
    if dtype.kind != "f":
        return ""
    if not known_range(known):
        return f"{spec.name} from N(0, 1)"
    low, high = float_range(known)
    return f"{spec.name} uniform in [{low:g}, {high:g})"


def realistic_kinds(specs: Sequence[TensorSpec], ranges: Mapping[str, Sequence[float]] | None) -> str:
    """realistic_kind of every input that has one, joined ("" when all are integers)."""
    return ", ".join(filter(None, (realistic_kind(s, (ranges or {}).get(s.name)) for s in specs)))


def smooth_pictures(rng: np.random.Generator, shape: Sequence[int], low: float, high: float) -> Array:
    """Random pictures in [low, high] with natural images' statistics: a 1/f amplitude spectrum,
    one luminance field shared by the channels plus each channel's own field at half its
    amplitude, and a brightness and contrast of their own. Calibrating int8 on independent
    noise per pixel sets every early layer's range for edges no photograph has (the zoo's
    MobileNet drifted 28 % instead of 12 %, ConvNeXtTiny 28 % instead of 6 %; docs/parity.md).
    Channels last, unless only the second axis looks like channels (1, 3 or 4)."""
    first = shape[-1] not in (1, 3, 4) and shape[1] in (1, 3, 4)
    grid = (shape[0], *shape[2:], shape[1]) if first else tuple(shape)
    h, w, c = grid[-3], grid[-2], grid[-1]
    count = int(np.prod(grid[:-3]))
    f = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :])
    f[0, 0] = np.inf  # no constant part: brightness comes below

    def fields(k: int) -> Array:
        field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((k, h, w))) / f, s=(h, w))
        spread: Array = np.maximum(field.std(axis=(-2, -1), keepdims=True), 1e-12)
        return field / spread

    luminance = fields(count)[..., None]
    colour = fields(count * c).reshape(count, c, h, w).transpose(0, 2, 3, 1)
    unit = (luminance + 0.5 * colour) / np.sqrt(1.25)
    brightness = rng.uniform(0.3, 0.7, (count, 1, 1, 1))
    contrast = rng.uniform(0.1, 0.25, (count, 1, 1, 1))
    pictures = low + (high - low) * np.clip(brightness + contrast * unit, 0.0, 1.0).reshape(grid)
    return np.moveaxis(pictures, -1, 1) if first else pictures


def rescaling(x: Any, op: str, operands: Sequence[Any], y: Any, shift: str, shift_operands: Sequence[Any],
              constant: Callable[[Any], Any], same: Callable[[Any, Any], bool] = operator.eq) -> tuple[Any, Any] | None:
    """(scale, offset) when the op that first uses input `x` is `op` ("mul" or "div") of
    `operands` (x and a constant), giving `y`, which the next op, `shift` ("add", "sub", or ""
    for none), takes with a constant among `shift_operands`; else None. `constant(operand)` is an
    operand's value or None; `same` tells two operands apart (names in a GraphDef, identity in a
    jaxpr). Graph walkers find the ops; this is the one rule for what they mean: c / x and
    c - x * s are no rescaling, a shift by no constant is none."""
    if op not in ("mul", "div") or len(operands) != 2 or (op == "div" and not same(operands[0], x)):
        return None
    factor = constant(operands[1] if same(operands[0], x) else operands[0])
    if factor is None:
        return None
    scale = factor if op == "mul" else 1.0 / factor
    if shift not in ("add", "sub") or len(shift_operands) != 2:
        return scale, 0.0
    offset = constant(shift_operands[1] if same(shift_operands[0], y) else shift_operands[0])
    if offset is None:
        return scale, 0.0
    if shift == "sub":
        if not same(shift_operands[0], y):
            return None
        offset = -offset
    return scale, offset


def rescaled_range(scale: Any, offset: Any) -> list[float] | None:
    """[low, high] of an input the model first maps by x * scale + offset (scalars or one per
    channel): what lands on [0, 1], or on [-1, 1] when every offset is negative (1/255 and
    1/127.5 - 1 both say pixels in [0, 255]). None when no finite range follows."""
    scale, offset = np.asarray(scale, np.float64).ravel(), np.asarray(offset, np.float64).ravel()
    if not scale.size or not np.all(scale != 0):
        return None
    low, high = (-1.0, 1.0) if offset.size and np.all(offset < 0) else (0.0, 1.0)
    ends = np.concatenate([(low - offset) / scale, (high - offset) / scale])
    if not np.all(np.isfinite(ends)) or ends.min() == ends.max():
        return None
    ends = np.where(np.abs(ends - np.round(ends)) < 1e-4, np.round(ends), ends)  # float32's 1/255
    return [round(float(ends.min()), 6), round(float(ends.max()), 6)]


def known_range(known: Sequence[float] | None) -> bool:
    """Whether the source gave a usable [low, high) for an input."""
    return known is not None and len(known) == 2 and float(known[0]) < float(known[1])


def float_range(known: Sequence[float] | None) -> tuple[float, float]:
    """[low, high) for a generated float input: what the source said, else [-1, 1)."""
    if known is not None and known_range(known):
        return float(known[0]), float(known[1])
    return -1.0, 1.0


def integer_range(name: str, known: Sequence[int] | None) -> tuple[int, int]:
    """[low, high) for a generated integer input: what the source said, {0, 1} for a mask (and
    segment / token-type ids, which index 2-row tables), else [0, 10)."""
    if known is not None:
        return int(known[0]), int(known[1])
    lowered = name.lower()
    if _named_mask(name) or "segment" in lowered or "type_ids" in lowered:
        return 0, 2
    return 0, 10


MAX_INPUTS_FILE = 2 << 30


def read_npz(path: str | os.PathLike[str], flag: str = "--inputs") -> dict[str, Array]:
    """The arrays of a user's .npz, refused (InputError, one line) unless each is numeric (or
    bool), holds at least one value, and is finite: a check on NaN or on nothing proves nothing.
    Looked at with stat() before it is opened, so a FIFO or a device cannot block or flood."""
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
        # (--save-io keeps the source's outputs beside the inputs, under expected/: those may be NaN)
        if np.issubdtype(value.dtype, np.inexact) and not name.startswith("expected/") and not np.isfinite(value).all():
            bad = int((~np.isfinite(value)).sum())
            raise InputError(f"{path}: array {name!r} holds {bad} NaN or infinite values; inputs must be finite")
    return arrays


def load_inputs(path: str | os.PathLike[str], specs: Sequence[TensorSpec]) -> dict[str, Array]:
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
    feeds: Mapping[str, Array], source_specs: Sequence[TensorSpec], target_specs: Sequence[TensorSpec]
) -> dict[str, Array]:
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
    top5_agreement: float | None = None
    rel_rms: float | None = None  # RMS error / RMS of the source's output
    rows: int = 0  # the rows (batch) compared: what agreement figures are out of
    allowance_used: float | None = None  # the largest error as a share of its element's allowance
    reason: str = ""
    criterion: str = ""  # what this output met, in numbers ("max abs diff 2e-7 ≤ 4.8e-3 ...")
    candidate_name: str = ""
    histogram: dict[str, Any] | None = None  # log10 |error| bins, for the HTML report
    weak: str = ""  # why a pass on this output proves little (the source barely depends on its inputs)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _looks_like_class_scores(ref: Array) -> bool:
    return ref.ndim == 2 and ref.shape[1] > 1 and np.issubdtype(ref.dtype, np.floating)


def compare_output(name: str, ref: Array, cand: Array, tol: Tolerance, candidate_name: str = "") -> OutputDiff:
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
    bound = tol.bound(ref64)
    beyond = err > bound
    norms = np.linalg.norm(ref64) * np.linalg.norm(cand64)
    cosine = float(np.dot(ref64.ravel(), cand64.ravel()) / norms) if norms > 0 else None
    ref_rms = float(np.sqrt(np.mean(ref64 ** 2)))
    rel_rms = float(np.sqrt(np.mean(err ** 2)) / ref_rms) if ref_rms > 0 else None
    top1 = top5 = None
    rows = ref.shape[0] if ref.ndim else 0
    if _looks_like_class_scores(ref):
        top1 = float(np.mean(ref.argmax(axis=1) == cand.argmax(axis=1)))
        if ref.shape[1] > 5:
            best5 = np.argsort(-cand64, axis=1, kind="stable")[:, :5]  # ties by index, as argmax breaks them
            top5 = float(np.mean((best5 == ref.argmax(axis=1)[:, None]).any(axis=1)))
    nonzero = err[err > 0]
    histogram = None
    if nonzero.size:
        counts, edges = np.histogram(np.log10(nonzero), bins=HISTOGRAM_BINS)
        histogram = {"log10_edges": edges.round(3).tolist(), "counts": counts.tolist(), "exact": int(err.size - nonzero.size)}
    reasons: list[str] = []
    met: list[str] = []
    worst: float | None = float((err / np.maximum(bound, 1e-300)).max())  # the error as a share of what it may be
    if (np.issubdtype(ref.dtype, np.integer) or ref.dtype == np.bool_) and tol.min_top1 is not None:
        # A quantized model's integer or boolean output (a class label, an id, a mask) is a
        # decision: label 2 for 6 is not an error of 4, and a label has no magnitude or RMS. It is
        # judged as decisions are, by the share of values that agree, against the top-1 floor.
        top1, rows, worst, rel_rms = float(np.mean(ref == cand)), ref.size, None, None
        judge_agreement(reasons, met, "equal values", top1, rows, tol.min_top1, unit="values", failed="equal values")
    else:
        if beyond.any():
            reasons.append(f"{beyond.mean():.1%} of values beyond {_bound_text(tol, ref64)} (max abs diff {err.max():.3g})")
        else:
            met.append(f"max abs diff {err.max():.2g} ≤ {_bound_text(tol, ref64)} ({worst:.0%} of the allowance)")
        if tol.max_rel_rms is not None and rel_rms is not None:
            text = f"relative RMS error {rel_rms:.2%}"
            (reasons if rel_rms > tol.max_rel_rms else met).append(
                f"{text} {'>' if rel_rms > tol.max_rel_rms else '≤'} {tol.max_rel_rms:.0%}")
        for label, value, least in (("top-1", top1, tol.min_top1), ("top-5", top5, tol.min_top5)):
            if value is not None and least is not None:
                judge_agreement(reasons, met, label, value, rows, least)
    return OutputDiff(
        name,
        passed=not reasons,
        max_abs_diff=float(err.max()),
        max_rel_diff=float((err / np.maximum(np.abs(ref64), 1e-12)).max()),
        mean_abs_diff=float(err.mean()),
        beyond_fraction=float(beyond.mean()),
        cosine=cosine,
        needed_atol=float(max(0.0, (err - tol.rtol * np.abs(ref64)).max())),  # absolute, with span 0
        top1_agreement=top1,
        top5_agreement=top5,
        rel_rms=rel_rms,
        rows=rows,
        allowance_used=worst,
        reason="; ".join(reasons),
        criterion="; ".join(met),
        candidate_name=candidate_name,
        histogram=histogram,
        weak=weak_evidence(ref64, both, tol),
    )


def judge_agreement(reasons: list[str], met: list[str], label: str, share: float, rows: int, least: float,
                    unit: str = "rows", failed: str = "") -> None:
    """An agreement (top-1, top-5, equal labels) against its floor, added to what failed or what was
    met; over fewer than MIN_AGREEMENT_ROWS it is reported, not judged."""
    if rows < MIN_AGREEMENT_ROWS:
        met.append(f"{label} {share:.0%} over {rows} {unit}, not judged (fewer than {MIN_AGREEMENT_ROWS})")
    elif share < least:
        reasons.append(f"{failed or label + ' agreement'} {share:.1%} < {least:.0%} over {rows} {unit}"
                       + _sampling_note(share, rows, least))
    else:
        met.append(f"{label} {share:.1%} ≥ {least:.0%} over {rows} {unit}")


def agreement_interval(share: float, rows: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % (Wilson) interval of an agreement measured as `share` of `rows` rows."""
    centre = (share + z * z / (2 * rows)) / (1 + z * z / rows)
    half = z * np.sqrt(share * (1 - share) / rows + z * z / (4 * rows * rows)) / (1 + z * z / rows)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _sampling_note(share: float, rows: int, least: float) -> str:
    """For a failed agreement that the rows cannot tell from a pass: the verdict stays a failure
    (a check does not pass on evidence that proves nothing), but the user learns what would decide."""
    low, high = agreement_interval(share, rows)
    if high < least:
        return ""
    return f" (95% interval {low:.0%}–{high:.0%}: within sampling error; more rows, e.g. --inputs, would decide)"


def _bound_text(tol: Tolerance, ref: Array) -> str:
    """The element-wise allowance in numbers, for this output."""
    m = magnitude(ref)
    parts = [f"{tol.absolute(m):.2g}"]
    if tol.rtol:
        parts.append(f"{tol.rtol:g}·|ref|")
    scaled = (tol.scaled or tol.span) and m > 1
    return " + ".join(parts) + (f" (magnitude {m:.3g})" if scaled else "")


def weak_evidence(ref: Array, finite: Array, tol: Tolerance) -> str:
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
    typical = tol.absolute(magnitude(values)) + tol.rtol * float(np.median(np.abs(values)))
    if float(np.max(np.abs(values))) <= tol.atol:
        return f"every value is within atol={tol.atol:g} of 0 (largest {float(np.max(np.abs(values))):.2g}): an all-zero output would pass"
    rows_vary = ref.ndim >= 1 and ref.shape[0] >= 2 and ref.shape == finite.shape
    if tol.max_rel_rms is not None:
        # Judged by relative RMS error: an output that ignores its inputs (the mean row) would
        # pass when the rows deviate from their mean by less than that.
        if not rows_vary or not finite.all():
            return ""
        rms = float(np.sqrt(np.mean(ref ** 2)))
        spread = float(np.sqrt(np.mean((ref - ref.mean(axis=0)) ** 2))) / rms if rms > 0 else 0.0
        if spread <= tol.max_rel_rms:
            return (f"the outputs for the {ref.shape[0]} inputs deviate from their mean by {spread:.1%} RMS, within"
                    f" the allowed relative RMS error ({tol.max_rel_rms:.0%}): a model that ignores its inputs would pass")
        return ""
    if rows_vary:
        spread = float(np.max(np.ptp(np.where(finite, ref, np.nan), axis=0), initial=0.0, where=finite.all(axis=0)))
        if spread <= typical:
            return (f"the outputs for the {ref.shape[0]} inputs differ by at most {spread:.2g}, within the"
                    f" tolerance (~{typical:.2g}): a model that ignores its inputs would pass")
    if float(np.ptp(values)) <= typical:
        return f"the output is constant within the tolerance (range {float(np.ptp(values)):.2g})"
    return ""


def pair_outputs(reference: Mapping[str, Array], candidate: Mapping[str, Array]) -> list[tuple[str, str]] | str:
    """Pairs (reference name, candidate name): by name when the names survived, else by signature order.
    A string says why no pairing is possible."""
    ref_names, cand_names = list(reference), list(candidate)
    if len(ref_names) != len(cand_names):
        return f"{len(cand_names)} outputs ({', '.join(cand_names)}) where the source has {len(ref_names)} ({', '.join(ref_names)})"
    if set(ref_names) == set(cand_names):
        return [(n, n) for n in ref_names]
    return list(zip(ref_names, cand_names))


def compare(
    reference: Mapping[str, Array], candidate: Mapping[str, Array], tol: Tolerance
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
    seconds: float | None = None  # the artifact's run in its runtime (wall time, loading included)
    latency: dict[str, Any] | None = None  # --benchmark: its latency in that runtime (convhub.benchmark)
    cause: str = ""  # for a drift: where it comes from, in the words of the hop that wrote the artifact

    def added_after(self, before: ParityEntry | None) -> bool:
        """Whether this artifact's error came in at its own hop: the one before it (None: the
        source) still matched the source."""
        return before is None or (before.checked and before.passed)

    @property
    def drifted(self) -> bool:
        """Failed on compared values: not a runtime that could not run it, nor an output missing."""
        return self.checked and not self.passed and any(not o.passed for o in self.outputs)

    @property
    def max_abs_diff(self) -> float | None:
        return max((o.max_abs_diff for o in self.outputs), default=None) if self.checked else None

    @property
    def criterion(self) -> str:
        """What the outputs met, in numbers, one clause per output (for the verdict's side)."""
        if not self.checked:
            return ""
        several = len(self.outputs) > 1
        return "; ".join(f"{o.name}: {o.criterion}" if several else o.criterion for o in self.outputs if o.criterion)

    @property
    def short_criterion(self) -> str:
        """The verdict's evidence in a few characters, over the worst output: the share of the
        element-wise allowance used, and for quantized checks the relative RMS error and top-1."""
        if not self.checked or not self.outputs:
            return ""
        used = max((o.allowance_used for o in self.outputs if o.allowance_used is not None), default=None)
        parts = [f"{used:.0%} of tol"] if used is not None else []
        if self.tolerance is not None and self.tolerance.max_rel_rms is not None:
            rms = max((o.rel_rms for o in self.outputs if o.rel_rms is not None), default=None)
            parts += [f"RMS {rms:.1%}"] if rms is not None else []
            top1 = [o.top1_agreement for o in self.outputs if o.top1_agreement is not None and o.rows >= MIN_AGREEMENT_ROWS]
            parts += [f"top-1 {min(top1):.0%}"] if top1 else []
        return " · ".join(parts)

    @property
    def weak_evidence(self) -> list[str]:
        """One line per output whose pass proves little (see parity.weak_evidence)."""
        return [f"{self.format} output {o.name!r}: {o.weak}" for o in self.outputs if o.weak] if self.checked else []

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "checked": self.checked,
            "passed": self.passed,
            "max_abs_diff": self.max_abs_diff,
            "runner": self.runner,
            "tolerance": self.tolerance.to_json() if self.tolerance else None,
            "criterion": self.criterion,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "latency": self.latency,
            "outputs": [o.to_json() for o in self.outputs],
            "previous": self.previous or None,
            "vs_previous": [o.to_json() for o in self.vs_previous],
            "reason": self.reason,
            "cause": self.cause or None,
            "evidence": ("weak" if self.weak_evidence else "strong") if self.checked and self.passed else None,
            "weak_evidence": self.weak_evidence,
        }


def judge(
    fmt: str,
    runner: str,
    reference: Mapping[str, Array],
    candidate: Mapping[str, Array],
    tol: Tolerance,
    previous: tuple[str, Mapping[str, Array]] | None = None,
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
