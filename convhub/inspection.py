"""`convhub inspect ARTIFACT...`: one screen per artifact, from the format's own inspector.

Each format's plugin describes its artifacts (Format.inspect): inputs and outputs, parameters,
the precision of the weights, an operator histogram and the embedded provenance, importing
only what that format needs (an .onnx needs onnx, never TensorFlow). This module adds what is
the same for every format: the size on disk, the sidecar NAME.convhub.json and whether it
belongs to these bytes; and a folder that is no model itself (a run's output folder) is
inspected artifact by artifact.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from convhub import provenance, validate
from convhub.errors import InputError
from convhub.jsonout import jsonable

if TYPE_CHECKING:
    from rich.console import Group

    from convhub.plugins import Registry
    from convhub.types import Format

TOP_OPERATORS = 12  # shown in the terminal; --json has them all


def shares(counts: Mapping[str, float]) -> dict[str, float]:
    """{dtype: parameters} as {dtype: share of all}, largest first (for inspectors)."""
    total = sum(counts.values())
    if not total:
        return {}
    return {k: round(v / total, 4) for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v}


def histogram(ops: Iterable[str]) -> dict[str, int]:
    """{op: count}, most frequent first (for inspectors)."""
    return dict(Counter(ops).most_common())


def inspect_paths(paths: Sequence[str | Path], registry: Registry) -> list[dict[str, Any]]:
    """One entry per artifact; a folder of outputs gives one per artifact inside it."""
    for path in paths:
        validate.model_path(Path(path), "an artifact")
    entries: list[dict[str, Any]] = []
    for path in map(Path, paths):
        fmt = _format_of(path, registry)
        if fmt is not None:
            entries.append(inspect_one(path, fmt))
            continue
        if not path.is_dir():
            raise InputError(f"cannot tell which format {path} is; convhub inspects "
                             f"{', '.join(sorted(f.name for f in registry.formats.values() if f.inspect))}")
        inside = list(_artifacts_in(path, registry))
        if not inside:
            raise InputError(f"{path} is no model, and holds none convhub can read")
        entries += [inspect_one(p, f) for p, f in inside]
    return entries


def _artifacts_in(folder: Path, registry: Registry, depth: int = 3) -> Iterable[tuple[Path, Format]]:
    """The artifacts in a folder of outputs, and in its folders that are no artifact themselves
    (a TF Serving output holds its model's base path), `depth` levels down at most."""
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name.endswith(provenance.SIDECAR_SUFFIX) or path.is_symlink():
            continue
        fmt = _format_of(path, registry)
        if fmt is not None:
            yield path, fmt
        elif path.is_dir() and depth > 1:
            yield from _artifacts_in(path, registry, depth - 1)


def _format_of(path: Path, registry: Registry) -> Format | None:
    found = registry.detect(path)
    return found[0] if len(found) == 1 else None


def inspect_one(path: Path, fmt: Format) -> dict[str, Any]:
    from convhub.execute import size_of

    from convhub import capture

    entry: dict[str, Any] = {"path": str(path), "format": fmt.name, "bytes": size_of(path)}
    if fmt.inspect is None:
        entry["error"] = f"plugin {fmt.plugin!r} gives no inspector for {fmt.name} artifacts"
    else:
        try:
            with capture.native_output():  # a framework's start-up chatter (TensorFlow's) is not for the screen
                entry.update(jsonable(dict(fmt.inspect(path))))
        except Exception as exc:  # noqa: BLE001 - a file that is broken, or a plugin's bug: one line
            from convhub.tasks import first_line

            entry["error"] = f"{fmt.name} inspector failed: {first_line(exc)}"
    entry.setdefault("provenance", None)
    # An inspector that describes a part of the artifact (TF Serving's latest version) names it.
    entry["sidecar"] = provenance.read_sidecar(Path(entry.get("described") or path))
    return entry


def renderable(entries: Sequence[Mapping[str, Any]]) -> Group:
    from rich.console import Group
    from rich.text import Text

    from convhub.table import Column, human_bytes, table

    parts: list[Any] = []
    for i, e in enumerate(entries):
        if i:
            parts.append(Text(""))
        params = e.get("parameters")
        head = f"{e['path']}  {e['format']}  {human_bytes(e['bytes'])}"
        head += f"  {params:,} parameters" if isinstance(params, int) else ""
        parts.append(Text(head, style="bold"))
        if e.get("error"):
            parts.append(Text(e["error"], style="red"))
        rows = [[kind, s["name"], s["dtype"], "[" + ", ".join("?" if d is None else str(d) for d in s["shape"]) + "]"]
                for kind in ("inputs", "outputs") for s in e.get(kind) or []]
        if rows:
            parts.append(table([Column("", wrap=False), Column("name"), Column("dtype"), Column("shape (? = dynamic)")],
                               rows))
        for label, line in _lines(e):
            parts.append(Text(f"{label}: ", style="dim") + Text(line))
    return Group(*parts)


def _lines(e: Mapping[str, Any]) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    if e.get("precision"):
        lines.append(("weights", ", ".join(f"{k} {v:.0%}" if v >= 0.005 else f"{k} <1%"
                                           for k, v in e["precision"].items())))
    ops = e.get("operators") or {}
    if ops:
        shown = ", ".join(f"{k} ×{v}" for k, v in list(ops.items())[:TOP_OPERATORS])
        more = len(ops) - TOP_OPERATORS
        lines.append(("operators", shown + (f", … {more} more kinds" if more > 0 else "")))
    for key, value in (e.get("details") or {}).items():
        lines.append((key, value if isinstance(value, str) else jsonable_text(value)))
    record = e.get("provenance")
    lines.append(("provenance", describe_record(record) if record else "none embedded"))
    side = e.get("sidecar")
    if side:
        if side.get("error"):
            lines.append(("sidecar", f"{side['path']}: {side['error']}"))
        else:
            verdict = (side.get("record") or {}).get("parity") or {}
            belongs = {True: "matches this file", False: "does NOT match this file (it changed since)",
                       None: "has no hash of the file"}[side.get("matches")]
            lines.append(("sidecar", f"{side['path']} {belongs}; parity {_verdict(verdict)}"))
    return lines


def jsonable_text(value: Any) -> str:
    import json

    return json.dumps(jsonable(value))


def describe_record(record: Mapping[str, Any]) -> str:
    source = record.get("source") or {}
    digest = (source.get("sha256") or "")[:12]
    return (f"convhub {record.get('convhub')} at {record.get('created')}, from {source.get('format')}"
            f" {source.get('path') or '(in memory)'}" + (f" (sha256 {digest}…)" if digest else "")
            + f" by {' → '.join(record.get('route') or [])}")


def _verdict(verdict: Mapping[str, Any]) -> str:
    status = str(verdict.get("status", "?"))
    worst = verdict.get("max_abs_diff")
    return status + (f" (max abs diff {worst:.2g}, {verdict.get('runner')})" if isinstance(worst, float) else "")
