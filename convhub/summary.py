"""A run, for people: one table for every target of a conversion, the notes that matter, and a
verdict line ("3/3 targets ok in 14.2 s"). The CLI prints it, `result.summary()` returns it as
text, `_repr_html_()` shows it in a notebook; all read the result records (convhub.results).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Sequence

from convhub import benchmark
from convhub.table import Column, human_bytes, number

if TYPE_CHECKING:
    from rich.console import Group

    from convhub.results import CheckResult, ConversionResult

# Every artifact of the run once (the routes above the table say which target each leads to);
# at 80 columns only the output names and the margin wrap.
COLUMNS = [Column("artifact", wrap=False), Column("size", figure=True), Column("time", figure=True),
           Column("output"), Column("vs source", figure=True), Column("vs prev hop", figure=True),
           Column("margin"), Column("parity", status=True, wrap=False)]


def rows(results: Sequence[ConversionResult]) -> list[list[str]]:
    """A row per output of every artifact; a hop shared by several targets (the SavedModel on the
    way to TFLite, ONNX and TF.js) once, under the first target that has it."""
    out: list[list[str]] = []
    seen: set[int] = set()
    for result in results:
        checks = {p.format: p for p in result.parity}
        for art in result.artifacts:
            if id(art) in seen:
                continue
            seen.add(id(art))
            precision = art.facts.get("precision", "")
            label = art.format + (f" {precision}" if precision and precision != "float32" else "")
            head = [label, human_bytes(art.bytes), f"{art.seconds:.1f}s"]
            p = checks.get(art.format)
            if p is None or not p.checked:
                out.append(head + ["", "", "", "", "" if p is None else "not checked"])
                continue
            for i, o in enumerate(p.outputs or [None]):
                prev = next((d for d in p.vs_previous if o is not None and d.name == o.name), None)
                out.append((head if i == 0 else [""] * 3) + [
                    o.name if o else "", number(o.max_abs_diff) if o else "", number(prev.max_abs_diff) if prev else "",
                    p.short_criterion if i == 0 else "",
                    ("ok" if o.passed else "FAILED") if o else ("ok" if p.passed else "FAILED"),
                ])
        if not result.ok and result.failed_hop:
            failed = result.route.formats[min(len(result.artifacts) + 1, len(result.route.formats) - 1)]
            out.append([failed, "", "", "", "", "", "", "FAILED"])
    return out


def verdict(results: Sequence[ConversionResult], seconds: float) -> str:
    ok = [r for r in results if r.ok]
    noun = "target" if len(results) == 1 else "targets"
    if len(ok) == len(results):
        return f"{len(ok)}/{len(results)} {noun} ok in {seconds:.1f} s"
    failed = ", ".join(r.target for r in results if not r.ok)
    return f"FAILED: {len(ok)}/{len(results)} {noun} ok in {seconds:.1f} s ({failed} failed)"


def notes(results: Sequence[ConversionResult]) -> list[tuple[str, str]]:
    """(style, line) for what the table cannot say: the criteria met, weak evidence, fallbacks,
    errors; then where each output went."""
    lines: list[tuple[str, str]] = []
    for r in results:
        final = r.parity[-1] if r.parity else None
        if final is not None and final.checked and final.passed and final.criterion:
            lines.append(("dim", f"{final.format} met: {final.criterion}"))
        lines += [("yellow", f"weak evidence: {w}") for w in r.weak_evidence]
        lines += [("yellow", f"{a.format}: {a.facts['fallback']}") for a in r.artifacts if a.facts.get("fallback")]
        if not r.ok:
            lines.append(("red", f"{r.target} FAILED: {r.error}"))
    for r in results:
        if r.ok:
            lines.append(("", f"wrote {r.output}" if r.output else f"{r.target}: checked, not written"))
        else:
            lines.append(("", f"kept {r.output} (--keep-failed)" if r.output else f"{r.target}: not written"))
    return lines


def routes(results: Sequence[ConversionResult]) -> list[str]:
    return [f"route: {r.route}" for r in results]


def parity_inputs(results: Sequence[ConversionResult]) -> str:
    first = results[0]
    return f"parity inputs: seed {first.seed}" if first.seed is not None else f"parity inputs: {first.inputs}"


def renderable(results: Sequence[ConversionResult]) -> Group:
    from rich.console import Group
    from rich.text import Text

    from convhub.table import table

    seconds = max((r.seconds for r in results), default=0.0)
    ok = all(r.ok for r in results)
    parts: list[Any] = [Text(line, style="bold") for line in routes(results)]
    parts.append(table(COLUMNS, rows(results)))
    parts += benchmark.renderables(results)  # with --benchmark
    parts += [Text(line, style=style) for style, line in notes(results)]
    parts.append(Text(parity_inputs(results), style="dim"))
    parts.append(Text(verdict(results, seconds), style="bold green" if ok else "bold red"))
    return Group(*parts)


def text(results: Sequence[ConversionResult], width: int | None = None) -> str:
    from convhub.console import plain_text

    return plain_text(renderable(results), width)


def to_html(results: Sequence[ConversionResult]) -> str:
    """A notebook's view: the same table and verdict as HTML."""
    seconds = max((r.seconds for r in results), default=0.0)
    head = "".join(f"<th>{html.escape(c.header)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(
        f"<td style='{_css(c, v)}'>{html.escape(v)}</td>" for c, v in zip(COLUMNS, row)) + "</tr>" for row in rows(results))
    extra = "".join(f"<div>{html.escape(line)}</div>" for _, line in notes(results))
    ok = all(r.ok for r in results)
    return (f"<div>{''.join(f'<div><b>{html.escape(line)}</b></div>' for line in routes(results))}"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{extra}"
            f"<div style='font-weight:bold;color:{'green' if ok else 'red'}'>{html.escape(verdict(results, seconds))}</div></div>")


def _css(column: Column, value: str) -> str:
    style = "text-align:right;" if column.figure else "text-align:left;"
    if column.status and value:
        style += {"ok": "color:green;", "FAILED": "color:red;font-weight:bold;", "not checked": "color:#b58900;"}.get(value, "")
    return style


def check_renderable(result: CheckResult) -> Group:
    from rich.console import Group
    from rich.text import Text

    from convhub.table import table

    out: list[list[str]] = []
    for cand, p in zip(result.candidates, result.parity):
        for i, o in enumerate(p.outputs or [None]):
            out.append([
                str(cand.path) if i == 0 else "", cand.format if i == 0 else "", p.runner if i == 0 else "",
                o.name if o else "", number(o.max_abs_diff) if o else "", p.short_criterion if i == 0 else "",
                ("ok" if o.passed else "FAILED") if o else ("ok" if p.passed else ("FAILED" if p.checked else "not checked")),
            ])
    columns = [Column("artifact"), Column("format"), Column("runner"), Column("output"),
               Column("max abs diff", figure=True), Column("margin"), Column("parity", status=True)]
    parts: list[Any] = [Text(f"reference: {result.reference.path or 'in-memory model'} ({result.reference.format})", style="bold"),
                   table(columns, out)]
    parts += [Text(f"{c.path} met: {p.criterion}", style="dim") for c, p in zip(result.candidates, result.parity)
              if p.checked and p.passed and p.criterion]
    parts += [Text(f"weak evidence: {w}", style="yellow") for p in result.parity for w in p.weak_evidence]
    parts += benchmark.renderables([result])  # with --benchmark
    n, good = len(result.parity), sum(p.checked and p.passed for p in result.parity)
    parts.append(Text(f"{good}/{n} artifacts match in {result.seconds:.1f} s" if result.ok
                      else f"FAILED: {good}/{n} artifacts match: {result.error}", style="bold green" if result.ok else "bold red"))
    return Group(*parts)
