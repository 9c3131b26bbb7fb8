"""`--benchmark`: how fast each artifact runs in its own runtime, and how big it is.

Measured in the worker that ran the artifact's parity check, on the same loaded session, so the
runtime is the one the artifact ships with (LiteRT, onnxruntime, TF.js in Node.js...) and
nothing is loaded twice. One request of batch 1 (the first row of the parity inputs; a model
with a fixed batch gets its own size), WARMUP runs first, then timed runs until RUNS or BUDGET
seconds, whichever comes first; each runtime keeps its default threads, and the record says how
many cores it had. The source is measured the same way in its own runtime, for comparison.
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping, Sequence

WARMUP = 3
RUNS = 50
MIN_RUNS = 5
BUDGET = 3.0  # seconds of timed runs at most, per artifact


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def one_request(session: Any, feeds: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The feeds cut to one row where the batch dim is dynamic, and the batch that leaves."""
    specs = {s.name: s for s in getattr(session, "inputs", [])}
    cut: dict[str, Any] = {}
    for name, value in feeds.items():
        spec = specs.get(name)
        dynamic = spec is None or not spec.shape or spec.shape[0] is None
        cut[name] = value[:1] if dynamic and getattr(value, "ndim", 0) >= 1 else value
    batch = min((int(v.shape[0]) for v in cut.values() if getattr(v, "ndim", 0) >= 1), default=1)
    return cut, batch


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation, as numpy.percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure(session: Any, feeds: Mapping[str, Any], runtime: str, *, runs: int = RUNS, warmup: int = WARMUP,
            budget: float = BUDGET) -> dict[str, Any]:
    """Latency percentiles of session.run on one request, in milliseconds."""
    request, batch = one_request(session, feeds)
    for _ in range(warmup):
        session.run(request)
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < runs and (len(times) < MIN_RUNS or time.perf_counter() < deadline):
        started = time.perf_counter()
        session.run(request)
        times.append((time.perf_counter() - started) * 1000)
    return {
        "runtime": runtime, "batch": batch, "threads": f"runtime default ({_cores()} cores)",
        "warmup": warmup, "runs": len(times),
        "p50_ms": percentile(times, 50), "p90_ms": percentile(times, 90), "p99_ms": percentile(times, 99),
        "mean_ms": sum(times) / len(times), "min_ms": min(times),
    }


def describe(latency: Mapping[str, Any] | None) -> str:
    """'p50 0.12 ms · p90 0.15 · p99 0.2 (batch 1, 50 runs)'."""
    if not latency:
        return ""
    return (f"p50 {duration(latency['p50_ms'])} · p90 {duration(latency['p90_ms'])} · p99 {duration(latency['p99_ms'])}"
            f" (batch {latency['batch']}, {latency['runs']} runs)")


def duration(value: float) -> str:
    return f"{value * 1000:.3g} µs" if value < 1 else f"{value:.3g} ms"


def ratio(value: float | None, source: float | None) -> str:
    """'0.25×' — a figure relative to the source's."""
    if value is None or not source:
        return ""
    return f"{value / source:.2g}×"


COLUMNS = ("latency", "p50", "p90", "p99", "vs source", "size", "vs source")


def rows(results: Sequence[Any]) -> list[list[str]]:
    """A row for the source and one per artifact measured (a shared hop once), for the terminal
    and the report: latency in its runtime and size, each beside the source's."""
    if not results:
        return []
    first = results[0]
    source_latency, source_bytes = first.source_latency, getattr(first, "source_bytes", None)
    if source_latency is None and not any(p.latency for r in results for p in r.parity):
        return []
    out = [_row(f"{getattr(first, 'source', None) or first.reference.format} (source)", source_latency,
                source_bytes, None, None)]
    seen: set[int] = set()
    for result in results:
        for entry, size in zip(result.parity, _sizes(result)):
            if id(entry) in seen or not entry.latency:
                continue
            seen.add(id(entry))
            out.append(_row(entry.format, entry.latency, size, source_latency, source_bytes))
    return out


def _sizes(result: Any) -> list[int | None]:
    """Each parity entry's artifact size: a conversion's records, or `check`'s candidate files."""
    from convhub.execute import size_of

    if hasattr(result, "candidates"):
        return [size_of(c.path) if c.path is not None and c.path.exists() else None for c in result.candidates]
    by_format = {a.format: a.bytes for a in result.artifacts}
    return [by_format.get(p.format) for p in result.parity]


def _row(label: str, latency: Mapping[str, Any] | None, size: int | None, source: Mapping[str, Any] | None,
         source_bytes: int | None) -> list[str]:
    from convhub.table import human_bytes

    figures = [duration(latency[k]) for k in ("p50_ms", "p90_ms", "p99_ms")] if latency else ["", "", ""]
    return [label, *figures,
            ratio(latency["p50_ms"] if latency else None, source["p50_ms"] if source else None),
            human_bytes(size), ratio(size, source_bytes)]


def renderables(results: Sequence[Any]) -> list[Any]:
    """The latency table and the line that says how it was measured, or nothing without --benchmark."""
    from rich.text import Text

    from convhub.table import Column, table

    found = rows(results)
    if not found:
        return []
    columns = [Column(COLUMNS[0], wrap=False), *(Column(c, figure=True) for c in COLUMNS[1:])]
    return [table(columns, found), Text(how_measured(results), style="dim")]


def how_measured(results: Sequence[Any]) -> str:
    every = [results[0].source_latency] + [p.latency for r in results for p in r.parity]
    measured = [lat for lat in every if lat]
    if not measured:
        return ""
    latency = measured[0]
    runtimes = ", ".join(dict.fromkeys(str(lat["runtime"]).split(" (")[0] for lat in measured))
    return (f"latency: each in its own runtime ({runtimes}), one request of batch {latency['batch']},"
            f" {latency['warmup']} warmup runs, then up to {RUNS} timed runs or {BUDGET:g} s; threads:"
            f" {latency['threads']}")
