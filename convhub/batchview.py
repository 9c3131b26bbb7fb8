"""What `convhub batch` shows: a live progress bar while it runs, then one matrix, models ×
targets (a row per model and option set), as a terminal table and as an HTML page whose cells
link to each cell's report. The JSON lines are the cells' own `to_json()`.

rich is imported only here, and only when something is shown to a person.
"""

from __future__ import annotations

import html
import os
from typing import TYPE_CHECKING, Any, Sequence

from convhub.console import Feedback
from convhub.table import human_bytes

if TYPE_CHECKING:
    from rich.console import RenderableType

    from convhub.batchrun import BatchResult, CellResult, Work


def cell_line(cell: CellResult) -> str:
    """One line for a decided cell: 'keras_cnn → tflite float16: ok 3.0e-08, 6.2 kB (cached)'."""
    if cell.ok:
        verdict = "ok" + (f" {cell.max_abs_diff:.1e}" if cell.max_abs_diff is not None else "")
        verdict += f", {human_bytes(cell.bytes)}" if cell.bytes is not None else ""
    else:
        verdict = cell.status.upper() + (f": {_first_line(cell.error)}" if cell.error else "")
    return f"{cell.model} → {cell.target} {cell.options}: {verdict}{' (cached)' if cell.cached else ''}"


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


class LiveProgress(Feedback):
    """On a terminal (stderr): a bar of the cells decided, the counts done / failed / cached, the
    ETA, and what runs now; elsewhere a line per decided cell (console.Feedback's plain lines);
    nothing when quiet."""

    def __init__(self, quiet: bool = False):
        super().__init__(quiet)
        self.counts = {"done": 0, "failed": 0, "cached": 0}
        self.running: list[str] = []
        self.total = 0
        if self.live is not None:  # the bar in place of Feedback's spinner
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            from convhub.console import console

            self.live = Progress(BarColumn(bar_width=24), MofNCompleteColumn(), TextColumn("{task.description}"),
                                 TextColumn("ETA"), TimeRemainingColumn(), console=console(self.stream),
                                 transient=True)

    def __call__(self, message: str) -> None:
        """A step of the batch itself ("planning ...", "lost a Ray actor ..."): a line to keep."""
        if self.live is not None and self.task is not None:
            self.note(message)
        elif self.live is None:
            super().__call__(message)

    def start(self, total: int, cached: int) -> None:
        self.total = total
        if self.live is not None:
            self.live.start()
            self.task = self.live.add_task(self._text(), total=total)
        elif not self.quiet:
            self._line(f"{total} cells, {cached} cached")

    def starting(self, work: Work) -> None:
        with self.lock:
            self.running.append(work.label)
            self._update()
        if self.live is None and not self.quiet:
            self._line(f"converting {work.label}")

    def finished(self, work: Work) -> None:
        with self.lock:
            if work.label in self.running:
                self.running.remove(work.label)
            self._update()

    def cell(self, cell: CellResult) -> None:
        with self.lock:
            key = "cached" if cell.cached else "done" if cell.ok else "failed"
            self.counts[key] += 1
            if self.live is not None:
                self.live.update(self.task, advance=1, description=self._text())
                if not cell.ok and not cell.cached:
                    self.live.console.print(cell_line(cell), style="red")
        if self.live is None and not self.quiet:
            decided = sum(self.counts.values())
            self._line(f"[{decided}/{self.total}] {cell_line(cell)}")

    def _text(self) -> str:
        c = self.counts
        now = f" · {self.running[-1]}" if self.running else ""
        return f"{c['done']} done · {c['failed']} failed · {c['cached']} cached{now}"

    def _update(self) -> None:
        if self.live is not None and self.task is not None:
            self.live.update(self.task, description=self._text())



def _grid(batch: Sequence[CellResult]) -> tuple[list[tuple[str, str]], list[str], dict[tuple[str, str, str], CellResult]]:
    rows: list[tuple[str, str]] = []
    targets: list[str] = []
    for c in batch:
        if (c.model, c.options) not in rows:
            rows.append((c.model, c.options))
        if c.target not in targets:
            targets.append(c.target)
    return rows, targets, {(c.model, c.options, c.target): c for c in batch}


def _figures(cell: CellResult) -> str:
    parts = [human_bytes(cell.bytes)] if cell.bytes is not None else []
    parts += [f"{cell.seconds:.1f} s"] if cell.seconds is not None else []
    return " · ".join(parts)


def renderable(batch: BatchResult) -> RenderableType:
    """The matrix for the terminal: a row per model and option set, a column per target; each
    cell its verdict and largest error, its size and time; failures numbered, the causes below."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from convhub.table import table

    if batch.dry_run:
        return _plan(batch)
    rows, targets, cells = _grid(batch)
    notes: list[str] = []
    grid: Table = table(["model", "options", *targets], [])
    for model, options in rows:
        row: list[Any] = [model, options]
        for target in targets:
            cell = cells.get((model, options, target))
            if cell is None:
                row.append("")
            elif cell.ok:
                err = f"{cell.max_abs_diff:.1e}" if cell.max_abs_diff is not None else ""
                text = Text(f"✓ {err}".rstrip(), style="green")
                text.append(f"\n{_figures(cell)}" + (" cached" if cell.cached else ""), style="dim")
                row.append(text)
            else:
                notes.append(f"{model} → {target} {options}: {_first_line(cell.error, 300) or cell.status}")
                row.append(Text(f"✗ {cell.status} [{len(notes)}]", style="bold red"))
        grid.add_row(*row)
    parts: list[RenderableType] = [grid]
    parts += [Text(f"[{i}] {note}", style="red") for i, note in enumerate(notes, 1)]
    counts = batch.counts()
    verdict = Text(f"{counts['passed']}/{counts['cells']} cells passed, {counts['failed']} failed,"
                   f" {counts['cached']} from the cache, in {batch.seconds:.1f} s"
                   + ("" if batch.complete else " (interrupted)"), style="bold green" if batch.ok else "bold red")
    if batch.output is not None:
        verdict.append(f"\nmatrix: {batch.output / 'index.html'} · cells: {batch.output / 'cells.jsonl'}", style="")
    return Group(*parts, verdict)


def _plan(batch: BatchResult) -> RenderableType:
    """--dry-run: a row per cell, its route, cached or to run."""
    from rich.console import Group
    from rich.text import Text

    from convhub.table import Column, table

    grid = table([Column("model", wrap=False), Column("target", wrap=False), Column("options", wrap=False),
                  Column("route"), Column("state", wrap=False)],
                 [[c.model, c.target, c.options, c.route, c.status] for c in batch])
    cached = sum(c.status == "cached" for c in batch)
    return Group(grid, Text(f"{len(batch)} cells: {cached} cached, {len(batch) - cached} to run", style="bold"))


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse} td,th{padding:6px 12px;border:1px solid #e3e3e3;vertical-align:top}
th{background:#f6f6f6;text-align:left} .ok{color:#17803d;font-weight:600} .bad{color:#b3261e;font-weight:600}
.muted{color:#777;font-size:12px} a{color:inherit} .why{font-size:12px;color:#b3261e;max-width:24em}
"""


def matrix_html(batch: BatchResult, links: bool = True) -> str:
    """The matrix as one self-contained page; with `links`, each cell links to its report and
    artifact (paths relative to the output folder, where the page is written)."""
    rows, targets, cells = _grid(batch)
    out = batch.output

    def href(path: Any) -> str:
        if not links or path is None or out is None:
            return ""
        return html.escape(os.path.relpath(path, out))

    head = "".join(f"<th>{html.escape(t)}</th>" for t in targets)
    body = []
    for model, options in rows:
        tds = []
        for target in targets:
            cell = cells.get((model, options, target))
            if cell is None:
                tds.append("<td></td>")
                continue
            if cell.ok:
                err = f"{cell.max_abs_diff:.1e}" if cell.max_abs_diff is not None else ""
                verdict = f'<span class="ok">✓ {err}</span>'
            else:
                verdict = f'<span class="bad">✗ {html.escape(cell.status)}</span>'
            report = href(cell.report)
            if report:
                verdict = f'<a href="{report}">{verdict}</a>'
            extra = f'<div class="muted">{html.escape(_figures(cell))}{" · cached" if cell.cached else ""}</div>'
            artifact = href(cell.output)
            if artifact:
                extra += f'<div class="muted"><a href="{artifact}">{html.escape(os.path.basename(str(cell.output)))}</a></div>'
            if not cell.ok and cell.error:
                extra += f'<div class="why">{html.escape(_first_line(cell.error, 300))}</div>'
            tds.append(f"<td>{verdict}{extra}</td>")
        body.append(f"<tr><th>{html.escape(model)}</th><td>{html.escape(options)}</td>{''.join(tds)}</tr>")
    counts = batch.counts()
    summary = (f"{counts['passed']} of {counts['cells']} cells passed, {counts['failed']} failed,"
               f" {counts['cached']} from the cache, in {batch.seconds:.1f} s"
               + ("" if batch.complete else " — <b>interrupted</b>: the cells decided before it stopped"))
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>convhub batch</title>"
            f"<style>{CSS}</style></head><body><h1>convhub batch: {html.escape(str(batch.job))}</h1>"
            f"<p>{summary}. Each cell: the verdict and the largest absolute error against the source"
            " (click for the full report), the artifact's size and the time of its hops and check.</p>"
            f"<table><tr><th>model</th><th>options</th>{head}</tr>{''.join(body)}</table></body></html>")
