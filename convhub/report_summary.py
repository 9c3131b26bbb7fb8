"""The first screen of the HTML report (convhub.report): what a person reads before the
per-output figures. One summary table (target, route, status, error against tolerance, size,
latency), the latency chart, the notes that change how to read the figures (int8 calibrated on
generated data, a Select TF ops fallback...), the tolerance each artifact was held to and why,
and the provenance and versions of what was written. Plain HTML and inline SVG, no scripts."""

from __future__ import annotations

import html
import math
from typing import Any, Iterator, Sequence

from convhub import benchmark
from convhub.parity import TOLERANCES, ParityEntry
from convhub.table import human_bytes

LATENCY_COLOUR = "#e07b39"  # the p50 bars; distinct from the error histograms' blue
LEFT = ' class="l"'  # a text column


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _final(result: Any) -> Iterator[tuple[str, str, ParityEntry | None, int | None, str]]:
    """(target, route, its final parity entry, its size, its status) for each row of the table."""
    if hasattr(result, "route"):
        entry = next((p for p in reversed(result.parity) if p.format == result.target), None)
        size = result.artifacts[-1].bytes if result.artifacts and result.artifacts[-1].format == result.target else None
        yield result.target, " → ".join(result.route.formats), entry, size, "ok" if result.ok else "FAILED"
        return
    sizes = benchmark._sizes(result)
    for candidate, entry, size in zip(result.candidates, result.parity, sizes):
        status = "ok" if entry.checked and entry.passed else ("FAILED" if entry.checked else "not checked")
        yield (f"{candidate.format}: {candidate.path}", f"checked against {result.reference.format}", entry, size, status)


def summary_table(results: Sequence[Any], labels: Sequence[str] | None = None) -> str:
    has_latency = any(p.latency for r in results for p in r.parity) or any(r.source_latency for r in results)
    head = ["target", "route", "status", "max error", "vs tolerance", "size", "vs source"]
    head += ["latency p50", "vs source"] if has_latency else []
    rows = []
    for i, r in enumerate(results):
        source_bytes, source_latency = getattr(r, "source_bytes", None), r.source_latency
        for target, route, entry, size, status in _final(r):
            worst = entry.max_abs_diff if entry is not None else None
            cells = [
                (f"{labels[i]}: " if labels else "") + target, route,
                f'<span class="{"ok" if status == "ok" else "bad"}">{_e(status)}</span>',
                "–" if worst is None else f"{worst:.2g}",
                _e(entry.short_criterion if entry is not None and entry.checked else (entry.reason if entry else "")),
                human_bytes(size), benchmark.ratio(size, source_bytes),
            ]
            if has_latency:
                latency = entry.latency if entry is not None else None
                cells += [benchmark.duration(latency["p50_ms"]) if latency else "–",
                          benchmark.ratio(latency["p50_ms"] if latency else None,
                                          source_latency["p50_ms"] if source_latency else None)]
            rows.append("<tr>" + "".join(f"<td{LEFT if j < 2 else ''}>{c if c.startswith('<span') else _e(c)}</td>"
                                         for j, c in enumerate(cells)) + "</tr>")
    header = "".join(f"<th{LEFT if j < 2 else ''}>{h}</th>" for j, h in enumerate(head))
    return f'<h2>Summary</h2><table class="summary"><tr>{header}</tr>{"".join(rows)}</table>'


def latency_chart(results: Sequence[Any], width: int = 720) -> str:
    """Horizontal bars of p50 latency on a log scale, p90–p99 drawn as a whisker, source first."""
    rows = []
    first = results[0] if results else None
    if first is not None and first.source_latency:
        label = getattr(first, "source", None) or first.reference.format
        rows.append((f"{label} (source)", first.source_latency))
    seen: set[int] = set()
    for r in results:
        for entry in r.parity:
            if entry.latency and id(entry) not in seen:
                seen.add(id(entry))
                rows.append((entry.format, entry.latency))
    if not rows:
        return ""
    values = [v for _, lat in rows for v in (lat["p50_ms"], lat["p99_ms"]) if v > 0]
    low, high = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    high = max(high, low + 1)
    left, right, bar_h, gap = 170, 20, 16, 10
    plot = width - left - right
    height = 30 + len(rows) * (bar_h + gap)

    def x(ms: float) -> float:
        return left + plot * (math.log10(max(ms, 10.0 ** low)) - low) / (high - low)

    parts = [f'<line x1="{left}" y1="{height - 22}" x2="{width - right}" y2="{height - 22}" stroke="#888"/>']
    for decade in range(low, high + 1):
        parts.append(f'<line x1="{x(10.0 ** decade):.1f}" y1="4" x2="{x(10.0 ** decade):.1f}" y2="{height - 22}"'
                     f' stroke="#eee"/><text x="{x(10.0 ** decade):.1f}" y="{height - 8}" font-size="10"'
                     f' text-anchor="middle">{10.0 ** decade:g} ms</text>')
    for i, (label, lat) in enumerate(rows):
        y = 6 + i * (bar_h + gap)
        parts.append(
            f'<text x="{left - 8}" y="{y + bar_h - 4}" font-size="12" text-anchor="end">{_e(label)}</text>'
            f'<rect x="{left}" y="{y}" width="{max(x(lat["p50_ms"]) - left, 2):.1f}" height="{bar_h}"'
            f' fill="{LATENCY_COLOUR}"><title>{_e(label)}: {_e(benchmark.describe(lat))}</title></rect>'
            f'<line x1="{x(lat["p90_ms"]):.1f}" y1="{y + bar_h / 2}" x2="{x(lat["p99_ms"]):.1f}" y2="{y + bar_h / 2}"'
            f' stroke="#333" stroke-width="2"/>'
            f'<text x="{min(x(lat["p99_ms"]) + 6, width - 60):.1f}" y="{y + bar_h - 4}" font-size="11">'
            f'{benchmark.duration(lat["p50_ms"])}</text>'
        )
    return (f'<h2>Latency</h2><figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
            f' role="img" aria-label="latency per artifact">{"".join(parts)}</svg>'
            f"<figcaption>p50 bars, p90–p99 whiskers, log scale. {_e(benchmark.how_measured(results))}"
            f"</figcaption></figure>")


def notes(results: Sequence[Any]) -> str:
    """What each hop did that changes how to read its figures, said once per artifact."""
    lines: list[tuple[str, str]] = []
    seen: set[int] = set()
    for r in results:
        for art in getattr(r, "artifacts", []):
            if id(art) in seen:
                continue
            seen.add(id(art))
            facts = art.facts
            data = facts.get("representative_dataset")
            if data:
                own = not str(data).startswith("generated")
                lines.append(("" if own else "weak", f"{art.format}: {facts.get('precision') or 'int8'} calibrated on "
                              + (f"your data: {data}" if own else f"generated data, not yours: {data}")))
            if facts.get("fallback"):
                lines.append(("weak", f"{art.format}: {facts['fallback']}"))
            if facts.get("tfjs_float32_weights"):
                lines.append(("", f"{art.format}: weights kept float32 (not finite, so not quantizable):"
                                  f" {', '.join(facts['tfjs_float32_weights'])}"))
            if facts.get("tfjs_float32_small_weights"):
                lines.append(("", f"{art.format}: {facts['tfjs_float32_small_weights']} weight tensors too small to"
                                  " quantize (biases, scalars) kept float32"))
            for kind, layers in (facts.get("rewritten_layers") or {}).items():
                lines.append(("", f"{art.format}: grouped convolutions exported as {kind}: {', '.join(layers)}"))
        for w in r.weak_evidence if hasattr(r, "weak_evidence") else [w for p in r.parity for w in p.weak_evidence]:
            lines.append(("weak", f"weak evidence: {w}"))
        if not r.ok and r.error:
            lines.append(("bad", r.error))
    if not lines:
        return ""
    items = "".join(f'<li class="{cls}">{_e(text)}</li>' for cls, text in dict.fromkeys(lines))
    return f'<h2>Notes</h2><ul class="notes">{items}</ul>'


def _why(entry: ParityEntry, precision: str) -> str:
    tol = entry.tolerance
    if tol is None:
        return "not checked"
    if tol == TOLERANCES.get(precision):
        if tol.max_rel_rms is None:
            return (f"the default for {precision} artifacts: every value within atol × the output's magnitude"
                    " + rtol × |reference| (round-off grows with the values a network computes)")
        return (f"the default for {precision} artifacts: quantization noise, judged by the relative RMS error, a cap"
                " on any one value's error as a share of the magnitude, and top-1/top-5 agreement (docs/parity.md)")
    return "given with --atol / --rtol: absolute and element-wise, without the precision's other criteria"


def tolerances(results: Sequence[Any]) -> str:
    rows, seen = [], set()
    for r in results:
        precisions = {a.format: a.facts.get("precision") for a in getattr(r, "artifacts", [])}
        candidates = {id(p): c.facts.get("precision") for c, p in zip(getattr(r, "candidates", []), r.parity)}
        for entry in r.parity:
            if id(entry) in seen or not entry.checked:
                continue
            seen.add(id(entry))
            precision = precisions.get(entry.format) or candidates.get(id(entry)) or "float32"
            rows.append(f"<tr><td>{_e(entry.format)}</td><td>{_e(precision)}</td><td>{_e(entry.tolerance)}</td>"
                        f'<td class="l">{_e(_why(entry, precision))}</td></tr>')
    if not rows:
        return ""
    return ("<h2>Tolerance applied</h2><table><tr><th>artifact</th><th>precision</th><th>tolerance</th><th class=\"l\">why</th></tr>"
            + "".join(rows) + "</table>")


def provenance(results: Sequence[Any]) -> str:
    """Where the outputs came from: the source and its hash, convhub, options, inputs, and the
    versions of every converter and runtime on the routes (from the records in the sidecars)."""
    records = [(r.target, r.output, r.provenance) for r in results if getattr(r, "provenance", None)]
    if not records:
        return ""
    first = records[0][2]
    source = first.get("source") or {}
    inputs = first.get("inputs") or {}
    versions: dict[str, str] = {}
    for _, _, record in records:
        versions.update(record.get("versions") or {})
    head = (f"<p>convhub {_e(first.get('convhub'))} (Python {_e(first.get('python'))}), {_e(first.get('created'))},"
            f" run {_e(first.get('run'))}. Source: {_e(source.get('format'))} {_e(source.get('path') or 'in memory')}"
            + (f", sha256 <code>{_e(source.get('sha256'))}</code>" if source.get("sha256") else
               f" ({_e(source.get('hashed'))})")
            + f". Inputs: {_e(', '.join(f'{k} {v}' for k, v in inputs.items()))}.</p>")
    outputs = "".join(f"<tr><td>{_e(t)}</td><td>{_e(o)}</td><td>{_e(', '.join(f'{k}={v}' for k, v in (rec.get('options') or {}).items()))}</td>"
                      f"<td><code>{_e(((rec.get('artifact') or {}).get('sha256') or '')[:16])}…</code></td></tr>"
                      for t, o, rec in records)
    table = ("<table><tr><th>target</th><th>written to</th><th>options</th><th>sha256</th></tr>" + outputs + "</table>")
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in sorted(versions.items()))
    return (f"<h2>Provenance and versions</h2>{head}{table}<table><tr><th>component</th><th>version</th></tr>{rows}"
            "</table><p class=\"muted\">Each output carries this record (embedded where its format has room, and in"
            " NAME.convhub.json beside it, with the parity verdict); <code>convhub inspect</code> shows it.</p>")
