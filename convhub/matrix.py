"""`convhub matrix`: every model × every target × every mode, converted and checked, as one table.

A mode is a named set of options a target format declares (`Format.modes`: TFLite float16,
int8, ...). Each model is read once per round; a round converts to every target in one of its
modes, so the hops the targets share (keras → savedmodel) run once per round, in the warm
workers. Nothing is written but the report: artifacts live in the run's work folder.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from convhub import validate
from convhub.errors import InputError, NoRouteError, UsageError
from convhub.table import human_bytes
from convhub.types import CALIBRATION

if TYPE_CHECKING:
    from convhub.plugins import Registry

CALIBRATION_SUFFIX = ".calibration.npz"  # beside a model: its calibration data
INPUTS_SUFFIX = ".inputs.npz"  # beside a model: the parity inputs (else generated from its input spec)
PY_NAME = "model"  # the name a model module in a directory exposes: file.py:model


@dataclass(frozen=True)
class MatrixModel:
    name: str
    source: str  # a path or a file.py:NAME reference
    calibration: Path | None = None
    inputs: Path | None = None


@dataclass
class Cell:
    model: str
    target: str
    mode: str
    status: str  # "pass", "fail" (a hop or the check failed), "skipped" (the mode needs what the model lacks)
    max_abs_diff: float | None = None
    criterion: str = ""  # what the verdict was judged by, in numbers
    short_criterion: str = ""  # the same in a few characters, for the table
    bytes: int | None = None
    convert_seconds: float | None = None  # the converters' own time on this cell's route
    hop_seconds: float | None = None  # the same hops' wall time in convhub (worker, reading the source)
    read_seconds: float | None = None  # of which: reading the source into the first hop's worker
    check_seconds: float | None = None  # running the final artifact in its runtime
    route: str = ""
    cause: str = ""
    alternative: str = ""
    weak_evidence: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def models_in(paths: Sequence[str | os.PathLike[str]], registry: Registry) -> list[MatrixModel]:
    """The models named, a directory standing for the models inside it: files and directories
    a plugin recognizes (without loading any framework), and `X.py` modules as `X.py:model`."""
    from convhub.pipeline import detect_format

    found: list[MatrixModel] = []
    for given in paths:
        text = str(given)
        path = Path(text)
        if ":" in path.name or path.suffix == ".py":
            ref = text if ":" in path.name else f"{text}:{PY_NAME}"
            file = Path(ref.rpartition(":")[0])
            found.append(MatrixModel(file.stem, ref, *_data_of(file)))
            continue
        validate.model_path(path)  # no FIFO, device or empty file: exit 2 before any model loads
        if path.is_dir() and not _is_model(path, registry, detect_format):
            entries = sorted(p for p in path.iterdir() if not p.name.startswith(".") and (p.is_file() or p.is_dir())
                             and not p.name.endswith((CALIBRATION_SUFFIX, INPUTS_SUFFIX)))
            inner = [p for p in entries if p.suffix == ".py" or _is_model(p, registry, detect_format)
                     or (p.is_dir() and _holds_model(p, registry, detect_format))]
            if not inner:
                raise InputError(f"{path} holds no model convhub recognizes")
            found.extend(models_in(inner, registry))
            continue
        found.append(MatrixModel(path.name.split(".")[0], text, *_data_of(path)))
    names = [m.name for m in found]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise InputError(f"two models are named {clash[0]!r}; rename one (a matrix row is named after its file)")
    return found


def _is_model(path: Path, registry: Registry, detect_format: Callable[[Registry, Any], Any]) -> bool:
    try:
        detect_format(registry, path)
        return True
    except Exception:  # noqa: BLE001 - not recognized (or ambiguous): not a model here
        return False


def _holds_model(folder: Path, registry: Registry, detect_format: Callable[[Registry, Any], Any],
                 depth: int = 3) -> bool:
    """A folder of model folders (one per model, with its data beside it) counts as models."""
    if depth == 0:
        return False
    for p in folder.iterdir():
        if p.name.startswith(".") or p.name.endswith((CALIBRATION_SUFFIX, INPUTS_SUFFIX)):
            continue
        if p.suffix == ".py" or _is_model(p, registry, detect_format):
            return True
        if p.is_dir() and _holds_model(p, registry, detect_format, depth - 1):
            return True
    return False


def _data_of(model: Path) -> tuple[Path | None, Path | None]:
    """The calibration data and parity inputs stored beside a model, if any."""
    stem = model.parent / model.name.split(".")[0]
    found = (Path(f"{stem}{CALIBRATION_SUFFIX}"), Path(f"{stem}{INPUTS_SUFFIX}"))
    calibration, inputs = (p if p.is_file() else None for p in found)
    return calibration, inputs


def modes_of(registry: Registry, targets: Sequence[str], wanted: Sequence[str] | None = None
             ) -> dict[str, dict[str, dict[str, Any]]]:
    """Each target's modes: all of them, or those `wanted` (`int8` for every target that has
    one, `tflite.int8` for one target)."""
    table = {t: {n: dict(o) for n, o in (registry.format(t).modes or {"default": {}}).items()} for t in targets}
    if not wanted:
        return table
    names = {n for t, m in table.items() for n in (*m, *(f"{t}.{k}" for k in m))}
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise UsageError(f"no target of this run has a mode {unknown[0]!r}"
                         f" (modes: {', '.join(sorted(n for n in names if '.' in n))})")
    chosen = {t: {n: o for n, o in m.items() if n in wanted or f"{t}.{n}" in wanted} for t, m in table.items()}
    return {t: m for t, m in chosen.items() if m}


def rounds(modes: Mapping[str, Mapping[str, dict[str, Any]]]) -> list[dict[str, tuple[str, dict[str, Any]]]]:
    """Round i converts every target in its i-th mode: one run per round."""
    longest = max((len(m) for m in modes.values()), default=0)
    return [
        {t: list(m.items())[i] for t, m in modes.items() if i < len(m)}
        for i in range(longest)
    ]


def run_matrix(
    models: Sequence[MatrixModel],
    targets: Sequence[str],
    *,
    modes: Sequence[str] | None = None,
    registry: Registry | None = None,
    jobs: int | None = None,
    timeout: float | None = None,
    progress: Callable[[str], None] = lambda message: None,
    on_cell: Callable[[Cell], None] = lambda cell: None,
) -> list[Cell]:
    from convhub.pipeline import run_many
    from convhub.plugins import default_registry

    registry = registry or default_registry()
    table = modes_of(registry, targets, modes)
    if not table:
        raise UsageError("no mode left to run")
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="convhub-matrix-") as scratch:
        for i, model in enumerate(models):
            progress_of = lambda names, i=i, model=model: progress(f"[{i + 1}/{len(models)}] {model.name}: {names}")  # noqa: E731
            for cell in _model_cells(model, table, registry, jobs, timeout, progress_of, run_many, Path(scratch)):
                cells.append(cell)
                on_cell(cell)
    return cells


def _model_cells(model: MatrixModel, table: Mapping[str, Mapping[str, dict[str, Any]]], registry: Registry,
                 jobs: int | None, timeout: float | None, progress: Callable[[str], None],
                 run_many: Callable[..., Any], scratch: Path) -> Iterable[Cell]:
    """One model's cells, round by round."""
    for group in rounds(table):
        skipped = {t: m for t, (m, opts) in group.items() if CALIBRATION in opts.values() and model.calibration is None}
        for target, mode in skipped.items():
            yield Cell(model.name, target, mode, "skipped", cause=f"no calibration data ({model.name}{CALIBRATION_SUFFIX})")
        group = {t: v for t, v in group.items() if t not in skipped}
        if not group:
            continue
        options = {f"{t}.{k}": (str(model.calibration) if v == CALIBRATION else v)
                   for t, (_, opts) in group.items() for k, v in opts.items()}
        progress(", ".join(f"{t} {m}" for t, (m, _) in group.items()))
        # A round that quantizes is judged on every parity row (agreement needs them); a float32
        # one on the first FLOAT_ROWS, which prove as much there in a quarter of the time.
        quantizing = any(opts for _, opts in group.values())
        inputs = model.inputs if quantizing or model.inputs is None else _first_rows(model.inputs, scratch)
        yield from _round(model, group, options, inputs, registry, jobs, timeout, run_many)


FLOAT_ROWS = 8


def _first_rows(path: Path, scratch: Path) -> Path:
    from convhub import parity

    arrays = parity.read_npz(path)
    if all(len(a.shape) == 0 or a.shape[0] <= FLOAT_ROWS for a in arrays.values()):
        return path
    sliced = scratch / f"{len(list(scratch.iterdir()))}-{path.name}"
    import numpy as np

    np.savez(sliced, **{k: a[:FLOAT_ROWS] if a.shape else a for k, a in arrays.items()})
    return sliced


def _round(model: MatrixModel, group: Mapping[str, tuple[str, dict[str, Any]]], options: dict[str, Any],
           inputs: Path | None, registry: Registry, jobs: int | None, timeout: float | None,
           run_many: Callable[..., Any]) -> Iterable[Cell]:
    try:
        results = run_many(model.source, list(group), {t: None for t in group}, options=options,
                           inputs=inputs, registry=registry, jobs=jobs, timeout=timeout)
    except NoRouteError as exc:
        if len(group) > 1:  # one target has no route for this model: the others still run
            for target, value in group.items():
                scoped = {k: v for k, v in options.items() if k.startswith(f"{target}.")}
                yield from _round(model, {target: value}, scoped, inputs, registry, jobs, timeout, run_many)
            return
        for target, (mode, _) in group.items():
            yield Cell(model.name, target, mode, "fail", cause=str(exc))
        return
    except (InputError, UsageError) as exc:  # the model cannot be read, or a mode does not apply to it
        for target, (mode, _) in group.items():
            yield Cell(model.name, target, mode, "fail", cause=str(exc))
        return
    for result in results:
        mode = group[result.target][0]
        final = result.parity[-1] if result.parity else None
        cell = Cell(
            model.name, result.target, mode, "pass" if result.ok else "fail",
            max_abs_diff=final.max_abs_diff if final is not None else None,
            criterion=(final.criterion or str(final.tolerance or "")) if final is not None else "",
            short_criterion=final.short_criterion if final is not None else "",
            bytes=result.artifacts[-1].bytes if result.artifacts and len(result.artifacts) == len(result.route.hops) else None,
            convert_seconds=_total(a.converter_seconds for a in result.artifacts),
            hop_seconds=_total(a.seconds for a in result.artifacts),
            read_seconds=_total(a.read_seconds for a in result.artifacts),
            check_seconds=round(final.seconds, 2) if final is not None and final.seconds is not None else None,
            route=str(result.route), cause=result.error, weak_evidence=list(result.weak_evidence),
        )
        yield cell


def _total(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known), 2) if known else None


OVERHEAD_NOTE = 0.10  # a cell whose hops took this much longer in convhub than in the converters is explained


def overhead(cell: Cell) -> tuple[float, str] | None:
    """convhub's time around the converters on this cell's hops, as a share of theirs, and why;
    None when under OVERHEAD_NOTE or unknown."""
    if not cell.convert_seconds or cell.hop_seconds is None:
        return None
    extra = cell.hop_seconds - cell.convert_seconds
    share = extra / cell.convert_seconds
    if share <= OVERHEAD_NOTE:
        return None
    read = cell.read_seconds or 0.0
    parts = []
    if read > 0.05:
        parts.append(f"{read:.1f} s reading the model into the hop's worker (a converter run by hand loads it too)")
    waited = extra - read
    if waited > 0.05:
        parts.append(f"{waited:.1f} s waiting for a worker busy with another target's hop or check, or starting one")
    return share, "; ".join(parts) or "timer resolution"


def add_alternatives(cells: Sequence[Cell]) -> None:
    """A failing cell names what works instead: the other modes of its target that passed for
    this model, else the other targets that did."""
    for cell in cells:
        if cell.passed or cell.alternative:
            continue
        same = [c.mode for c in cells if c.model == cell.model and c.target == cell.target and c.passed]
        other = sorted({c.target for c in cells if c.model == cell.model and c.target != cell.target and c.passed})
        if same:
            cell.alternative = f"{cell.target} {', '.join(same)} passes"
        elif other:
            cell.alternative = f"no {cell.target} mode passes; {', '.join(other)} does"


def summary(cells: Sequence[Cell]) -> dict[str, Any]:
    ran = [c for c in cells if c.status != "skipped"]
    return {
        "cells": len(cells),
        "ran": len(ran),
        "passed": sum(c.passed for c in ran),
        "failed": sum(not c.passed for c in ran),
        "skipped": len(cells) - len(ran),
        "pass_rate": round(sum(c.passed for c in ran) / len(ran), 4) if ran else None,
    }


def environment() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("convhub", "tensorflow", "keras", "keras-hub", "tf2onnx", "onnxruntime", "tensorflowjs",
                 "ai-edge-litert", "jax", "flax", "orbax-export"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def versions_since(earlier: Mapping[str, str], now: Mapping[str, str]) -> dict[str, str]:
    """The versions of a matrix updated by this run: "3.11.7 then 3.12.1" where the cells kept
    from the earlier runs were made with another version than this run's new ones."""
    merged = dict(now)
    for name, before in earlier.items():
        if name not in now or before == now[name] or before.endswith(f" then {now[name]}"):
            merged[name] = before
        else:
            merged[name] = f"{before} then {now[name]}"
    return merged


def to_json(cells: Sequence[Cell], seconds: float, interrupted: bool = False,
            commands: Sequence[str] = (), versions: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"summary": summary(cells), "complete": not interrupted, "seconds": round(seconds, 1),
            "commands": list(commands), "versions": dict(versions or environment()),
            "cells": [asdict(c) for c in cells]}


def load(path: Path) -> tuple[list[Cell], float, list[str], dict[str, str]]:
    """An earlier run's cells, its seconds, the commands that made it and their versions (for --update)."""
    import json

    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(Cell)}
        cells = [Cell(**{k: v for k, v in c.items() if k in fields}) for c in payload["cells"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a matrix convhub wrote ({type(exc).__name__}: {exc}); drop --update") from None
    if not payload.get("complete", True):
        raise InputError(f"{path} is an interrupted run's; run it whole before updating it")
    versions = {str(k): str(v) for k, v in (payload.get("versions") or {}).items()}
    return cells, float(payload.get("seconds") or 0.0), list(payload.get("commands") or []), versions


def merge(previous: Sequence[Cell], new: Sequence[Cell]) -> list[Cell]:
    """The previous cells with each one that ran again (same model, target and mode) replaced
    in its place, so `--update --modes int8` keeps a model's other cells; cells new to the
    matrix go after their model's; models in the order they first came."""
    fresh = {(c.model, c.target, c.mode): c for c in new}
    every = [fresh.pop((c.model, c.target, c.mode), c) for c in previous]
    every += fresh.values()
    order = list(dict.fromkeys(c.model for c in every))
    return sorted(every, key=lambda c: order.index(c.model))


def to_markdown(cells: Sequence[Cell], seconds: float, commands: Sequence[str], interrupted: bool = False,
                versions: Mapping[str, str] | None = None) -> str:
    """The matrix as a page: one row per model, one column per target and mode; a failing cell
    points at its note, which gives the cause and what works instead."""
    columns: list[tuple[str, str]] = []
    for c in cells:
        if (c.target, c.mode) not in columns:
            columns.append((c.target, c.mode))
    models: list[str] = []
    for c in cells:
        if c.model not in models:
            models.append(c.model)
    by_key = {(c.model, c.target, c.mode): c for c in cells}
    s = summary(cells)
    lines = [
        "# Compatibility matrix",
        "",
        f"Generated by `{'`, then `'.join(commands)}`"
        + (f" in {seconds / 60:.0f} min" if len(commands) == 1 else f"; those {len(commands)} runs took {seconds / 60:.0f} min in all")
        + f" on {os.cpu_count()} cores; do not edit by hand.",
        "",
        *(["**Incomplete: the run was interrupted; these are the cells decided before it stopped.**", ""]
          if interrupted else []),
        f"**{s['passed']} of {s['ran']} cells pass ({(s['pass_rate'] or 0):.1%})**"
        + (f", {s['skipped']} skipped (no calibration data)" if s["skipped"] else "") + ".",
        "",
        "A cell is ✓ when convhub converted the model and the artifact, run in its own runtime (LiteRT,",
        "onnxruntime, TF.js in Node.js), matched the source on the parity inputs by the criterion of",
        "its mode (`docs/parity.md`). It shows the largest absolute error against the source, the",
        "artifact's size, and the converters' own time on the route / convhub's time for those hops.",
        "✗ cells point at a note with the cause and what works instead.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in (versions or environment()).items()) + ".",
        "",
        "| model | " + " | ".join(f"{t} {m}" for t, m in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    notes: list[str] = []
    for model in models:
        row = []
        for target, mode in columns:
            cell = by_key.get((model, target, mode))
            if cell is None:
                row.append("")
            elif cell.passed:
                err = f"{cell.max_abs_diff:.1e}" if cell.max_abs_diff is not None else "?"
                weak = " (weak)" if cell.weak_evidence else ""
                judged = f" ({cell.short_criterion})" if cell.short_criterion else ""
                row.append(f"✓ {err}{judged}{weak}<br>{human_bytes(cell.bytes)} · {_seconds(cell)}")
            elif cell.status == "skipped":
                row.append("–")
            else:
                notes.append(f"{len(notes) + 1}. **{model} → {target} {mode}**: {_one_line(cell.cause)}"
                             + (f" *Instead:* {cell.alternative}." if cell.alternative else ""))
                row.append(f"✗ [{len(notes)}](#notes)")
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    if notes:
        lines += ["", "## Notes", "", *notes]
    slow = [(c, o) for c in cells if c.status != "skipped" and (o := overhead(c)) is not None]
    lines += ["", "## Time", "",
              "Each ✓ cell gives the converters' own time on its route, then convhub's wall time for the same",
              "hops; the check (running the artifact in its runtime) comes on top and is in the JSON",
              "(`check_seconds`). Hops shared by the targets of a round (keras → savedmodel) count in each cell.",
              f"convhub's overhead over the converters is over {OVERHEAD_NOTE:.0%} in {len(slow)} of"
              f" {sum(c.status != 'skipped' for c in cells)} cells" + (":" if slow else "."), ""]
    lines += [f"- {c.model} → {c.target} {c.mode}: +{share:.0%} ({c.convert_seconds:.1f} s → {c.hop_seconds:.1f} s): {why}"
              for c, (share, why) in slow]
    weak_cells = [(c, w) for c in cells if c.passed for w in c.weak_evidence]
    if weak_cells:
        lines += ["", "## Weak evidence", "",
                  "These cells passed, but the source's outputs barely depend on the inputs, so the pass proves little:", ""]
        lines += [f"- {c.model} → {c.target} {c.mode}: {w}" for c, w in weak_cells]
    return "\n".join(lines) + "\n"


def _seconds(cell: Cell) -> str:
    if cell.convert_seconds is None:
        return "?"
    return f"{cell.convert_seconds:.1f} s" + (f" / {cell.hop_seconds:.1f} s" if cell.hop_seconds is not None else "")


def _one_line(text: str, limit: int = 1000) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"
