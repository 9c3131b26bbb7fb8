"""Tables for the terminal: rich tables that fit the width they are given, by wrapping the text
columns and never the figures; and the short forms of sizes and errors they show.

rich is imported when a table is built, not when this module is: `--json` output needs none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

# A status word and its colour; anything else is shown plain.
STATUS_STYLES = {"ok": "green", "FAILED": "bold red", "ERROR": "bold red", "not checked": "yellow",
                 "no route": "yellow", "broken": "bold red"}


@dataclass(frozen=True)
class Column:
    """A table column. `figure`: a number or a short token, right-aligned and never wrapped;
    otherwise text, wrapped at words when the table must shrink (a path longer than the column
    is broken across lines, never cut)."""

    header: str
    figure: bool = False
    status: bool = False  # colour the cell by STATUS_STYLES
    wrap: bool = True  # False: a name or word never broken (the other columns give way)


def table(columns: Sequence[Column | str], rows: Sequence[Sequence[object]]) -> Table:
    from rich import box
    from rich.table import Table

    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold", collapse_padding=True)
    for col in cols:
        grid.add_column(col.header, justify="right" if col.figure else "left", no_wrap=col.figure or not col.wrap,
                        overflow="fold")
    for row in rows:
        grid.add_row(*(_cell(col, value) for col, value in zip(cols, row)))
    return grid


def _cell(col: Column, value: object) -> Text | str:
    text = "" if value is None else str(value)
    if col.status and text:
        from rich.text import Text

        return Text(text, style=STATUS_STYLES.get(text.split(":")[0], ""))
    return text


def render(columns: Sequence[Column | str], rows: Sequence[Sequence[object]], width: int | None = None) -> str:
    """The table as plain text (no colour), `width` columns wide at most (default: as wide as it needs)."""
    from convhub.console import plain_text

    return plain_text(table(columns, rows), width)


def human_bytes(n: float | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def number(x: float | None) -> str:
    return "" if x is None else f"{x:.2e}" if x else "0"
