"""A self-contained HTML report of a parity check: the route, per-output figures, and a histogram
of errors per output drawn as inline SVG (no scripts, no network needed to view it)."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Sequence

from convhub.parity import OutputDiff, ParityEntry, realistic_kinds

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0 1em} td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
th{background:#f6f6f6} td:first-child,th:first-child{text-align:left}
.ok{color:#17803d;font-weight:600} .weak{color:#9a6700;font-weight:600} .bad{color:#b3261e;font-weight:600} .muted{color:#777}
.route{font-size:1.1em;font-family:monospace} .plots{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0} figcaption{font-size:12px;color:#555}
table.summary{font-size:1.05em} table.summary td{padding:5px 12px} ul.notes li{margin:.2em 0}
td.l,th.l{text-align:left}
"""


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return "0" if x == 0 else f"{x:.3g}"
    return html.escape(str(x))


def histogram_svg(diff: OutputDiff, title: str, width: int = 320, height: int = 150) -> str:
    """Bars of log10 |error| counts; exact matches are counted in the caption."""
    hist = diff.histogram
    if not hist:
        return f'<figure><svg width="{width}" height="40" role="img"><text x="4" y="24">all values identical</text></svg><figcaption>{html.escape(title)}</figcaption></figure>'
    counts, edges = hist["counts"], hist["log10_edges"]
    top = max(counts) or 1
    pad, plot_h = 28, height - 40
    bar_w = (width - 2 * pad) / len(counts)
    bars = []
    for i, c in enumerate(counts):
        h = plot_h * c / top
        x = pad + i * bar_w
        bars.append(
            f'<rect x="{x:.1f}" y="{10 + plot_h - h:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" fill="#3b6fb6">'
            f"<title>10^{edges[i]:.2f}…10^{edges[i + 1]:.2f}: {c}</title></rect>"
        )
    axis_y = 10 + plot_h
    labels = (
        f'<text x="{pad}" y="{axis_y + 14}" font-size="10">1e{edges[0]:.1f}</text>'
        f'<text x="{width - pad}" y="{axis_y + 14}" font-size="10" text-anchor="end">1e{edges[-1]:.1f}</text>'
        f'<text x="{width / 2}" y="{axis_y + 26}" font-size="10" text-anchor="middle">|error| (log scale)</text>'
    )
    caption = f"{html.escape(title)} — {sum(counts)} differing values, {hist['exact']} exact"
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">'
        f'<line x1="{pad}" y1="{axis_y}" x2="{width - pad}" y2="{axis_y}" stroke="#888"/>'
        + "".join(bars) + labels + f"</svg><figcaption>{caption}</figcaption></figure>"
    )


def _entry_section(entry: ParityEntry) -> str:
    status = "ok" if entry.passed else ("bad" if entry.checked else "muted")
    word = "passed" if entry.passed else ("FAILED" if entry.checked else "not checked")
    parts = [f'<h3>{html.escape(entry.format)} <span class="{status}">{word}</span>'
             f' <span class="muted">({html.escape(entry.runner or "no runner")}; tolerance {html.escape(str(entry.tolerance or ""))})</span></h3>']
    if entry.reason:
        parts.append(f"<p class=\"{status}\">{html.escape(entry.reason)}</p>")
    if entry.cause:  # where the drift comes from, as the hop that added it tells
        parts.append(f"<p>Where it comes from: {html.escape(entry.cause)}</p>")
    for line in entry.weak_evidence:  # a pass that proves little must not look like a plain pass
        parts.append(f'<p class="weak">weak evidence: {html.escape(line)}</p>')
    if entry.outputs:
        prev = {d.name: d for d in entry.vs_previous}
        rows = "".join(
            f"<tr><td>{html.escape(d.name)}</td><td>{_fmt(d.max_abs_diff)}</td><td>{_fmt(d.max_rel_diff)}</td>"
            f"<td>{_fmt(d.mean_abs_diff)}</td><td>{d.beyond_fraction:.2%}</td><td>{_fmt(d.cosine)}</td>"
            f"<td>{_fmt(d.top1_agreement)}</td><td>{_fmt(d.needed_atol)}</td>"
            f"<td>{_fmt(prev[d.name].max_abs_diff) if d.name in prev else '–'}</td>"
            f"<td class=\"{'ok' if d.passed else 'bad'}\">{'ok' if d.passed else 'FAILED'}</td></tr>"
            for d in entry.outputs
        )
        parts.append(
            "<table><tr><th>output</th><th>max abs</th><th>max rel</th><th>mean abs</th><th>beyond tol.</th>"
            "<th>cosine</th><th>top-1</th><th>atol that passes</th>"
            f"<th>max abs vs {html.escape(entry.previous or 'source')}</th><th>result</th></tr>{rows}</table>"
        )
        parts.append('<div class="plots">' + "".join(
            histogram_svg(d, f"{entry.format} · {d.name} vs source") for d in entry.outputs
        ) + "</div>")
    return "\n".join(parts)


def render(results: Sequence[Any], labels: Sequence[str] | None = None) -> str:
    """The page, for people first: one summary table, the latency chart (--benchmark), the notes
    that change how to read the figures, the tolerance each artifact was held to and why, the
    provenance and versions; then each artifact's figures and error histograms, an artifact
    that several routes share (the SavedModel on the way to TFLite, ONNX and TF.js) once.
    `labels` (one per result) prefix the titles, e.g. the demo's example names."""
    from convhub import report_summary

    sections = [report_summary.summary_table(results, labels), report_summary.latency_chart(results),
                report_summary.notes(results), report_summary.tolerances(results), report_summary.provenance(results)]
    seen: set[int] = set()
    for i, r in enumerate(results):
        status = '<span class="ok">ok</span>' if r.ok else '<span class="bad">FAILED</span>'
        if r.seed is None:
            inputs = f"inputs from {html.escape(r.inputs)}"
        elif r.inputs == "realistic":  # a quantized route's (docs/parity.md)
            inputs = f"seeded realistic inputs (seed {r.seed}: {html.escape(_realistic_kinds(r))})"
        else:
            inputs = f"seeded random inputs (seed {r.seed})"
        if hasattr(r, "route"):  # a conversion
            title = f"{r.source} → {r.route.formats[-1]}"
            route = " → ".join(r.route.formats)
        else:  # convhub check
            title = f"check against {r.reference.path or 'an in-memory model'} ({r.reference.format})"
            route = "reference: " + str(r.reference.path) + " · " + ", ".join(str(c.path) for c in r.candidates)
        if labels:
            title = f"{labels[i]}: {title}"
        entries = [e for e in r.parity if id(e) not in seen]
        shared = [e.format for e in r.parity if id(e) in seen]
        seen.update(id(e) for e in r.parity)
        sections.append(
            f"<h2>{html.escape(title)} {status}</h2><p class=\"route\">{html.escape(route)}</p>"
            f"<p>Checked on {inputs}. {html.escape(r.error)}</p>"
            + (f'<p class="muted">{html.escape(", ".join(shared))}: shown above (shared with another route)</p>'
               if shared else "")
            + "".join(_entry_section(e) for e in entries)
        )
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>convhub report</title>"
        f"<style>{CSS}</style></head><body><h1>convhub report</h1>" + "".join(sections) + "</body></html>"
    )


def write(results: Sequence[Any], path: str | os.PathLike[str], labels: Sequence[str] | None = None) -> Path:
    from convhub.publish import write_text

    return write_text(Path(path), render(results, labels))


def _realistic_kinds(result: Any) -> str:
    """Which generator each input of a quantized route's check was drawn from."""
    facts = getattr(result, "facts", None) or {}
    return realistic_kinds(facts.get("inputs") or [], facts.get("input_ranges")) or "integers in their ranges"
