"""What people see in the terminal: colour, output that fits, feedback while they wait, errors.

Built on rich, imported on first use (listings that print JSON never import it). Colour follows
FORCE_COLOR and whether the stream is a terminal (rich's rules, TERM=dumb included); NO_COLOR
turns off every style, bold too, so its output holds no escape codes.
On a terminal, output fits its width; anywhere else (a pipe, a file) lines are as long as they
need to be, so nothing a script reads is wrapped (COLUMNS is ignored there: ncurses exports it
into child processes whatever the stream).

Progress goes to stderr and never to stdout, so `--json` output stays one object: on a terminal,
one spinner line saying what runs now and for how long, erased when the command is done;
anywhere else, plain lines ("[  1.2s] converting savedmodel → tflite (tflite)") that logs and
tests read; nothing at all with -q.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.progress import Progress

UNLIMITED = 10_000  # the width off a terminal: rich tables still take only the width they need


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, OSError, ValueError):
        return False


def console(stream: IO[str] | None = None, *, stderr: bool = False) -> Console:
    """A rich console for stdout (or stderr, or `stream`) as it is now: made for each use, so a
    redirected sys.stdout (pytest, a library caller's contextlib.redirect_stdout) is followed."""
    from rich.console import Console

    target = stream or (sys.stderr if stderr else sys.stdout)
    width = None if is_terminal(target) else UNLIMITED
    # NO_COLOR: no styling at all, bold included (rich alone would keep bold and dim).
    colors: Any = None if os.environ.get("NO_COLOR") else "auto"
    return Console(file=target, width=width, markup=False, highlight=False, emoji=False, soft_wrap=False,
                   color_system=colors)


def show(*renderables: RenderableType | str, stderr: bool = False, style: str | None = None) -> None:
    """Print to stdout (or stderr), without the spaces rich pads a table's last column with."""
    out = console(stderr=stderr)
    for item in renderables:
        with out.capture() as captured:
            out.print(item, style=style)
        text = _TRAILING.sub(r"\1", captured.get())
        out.file.write(text)
    out.file.flush()


_TRAILING = re.compile(r" +((?:\x1b\[[0-9;]*m)*)$", re.MULTILINE)


def plain_text(renderable: RenderableType | str, width: int | None = None) -> str:
    """What `renderable` prints as, without colour: for .summary(), reports and tests."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width or UNLIMITED, color_system=None, markup=False, highlight=False,
            emoji=False, soft_wrap=False).print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def error(message: str, *, hint: str = "", kind: str = "error") -> None:
    """`convhub: error: MESSAGE` in red, one line; the hint, when there is one, on the next."""
    from rich.text import Text

    out = console(stderr=True)
    out.print(Text(f"convhub: {kind}: ", style="bold red") + Text(message, style="red"))
    if hint:
        out.print(Text("convhub: hint: ", style="bold yellow") + Text(hint))


class Feedback:
    """The `progress` callable of a command (see the module's doc); use it as a context manager
    around the work, so the spinner is gone before the results are printed.

    `feedback(message)` says what the command does now; `feedback.detail(text)` what the step
    under way is busy with (a worker loading TensorFlow, npm installing), "" when that is over;
    `feedback.note(message)` a line to keep (a matrix cell's verdict).
    """

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.started = time.perf_counter()
        self.step = ""
        self.details: list[str] = []
        self.printed: set[str] = set()
        self.lock = threading.Lock()
        self.stream = sys.stderr if quiet else _own_stderr()
        self.live: Progress | None = None
        self.task: Any = None
        if not quiet and is_terminal(self.stream) and os.environ.get("TERM") != "dumb":
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            # The time first: a long path in the text is cut at the right edge, never the clock.
            self.live = Progress(SpinnerColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
                                 console=console(self.stream), transient=True)

    def __enter__(self) -> Feedback:
        if self.live is not None:
            self.live.start()
            self.task = self.live.add_task("starting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.stream is not sys.stderr:
            self.stream.close()
            self.stream = sys.stderr

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        if "\n" in message:  # a converter's log: kept, in full
            self.note(message)
            return
        with self.lock:
            self.step, self.details = message, []
            self._show(message)

    def detail(self, text: str) -> None:
        if self.quiet:
            return
        with self.lock:
            if text:
                self.details.append(text)
            elif self.details:
                self.details.pop()
            self._show(text)

    def note(self, message: str) -> None:
        if self.quiet:
            return
        with self.lock:
            if self.live is not None:
                self.live.console.print(message, style="dim" if "\n" in message else None)
            else:
                self._line(message)

    def _show(self, latest: str) -> None:
        if self.live is not None:
            text = self.step + "".join(f" · {d}" for d in self.details[-1:])
            if self.task is not None:
                self.live.update(self.task, description=text)
        elif latest and latest not in self.printed:  # a step a worker's detail came back to is said once
            self.printed.add(latest)
            self._line(latest)

    def _line(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:5.1f}s] {message}", file=self.stream, flush=True)


def _own_stderr() -> IO[str]:
    """A copy of stderr as it is now: while an in-memory model's framework call runs in this
    process, fd 2 points to a log file, and progress must still reach the terminal."""
    try:
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    except (AttributeError, OSError, ValueError):
        return sys.stderr
