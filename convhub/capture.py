"""Keep the frameworks' own chatter off the terminal and out of `--json` output.

TensorFlow, its converters and Keras write to the process's file descriptors 1 and 2 from C++
and from Python (Keras even prints "Saved artifact at ..." to stdout). While a framework call
runs, both descriptors point to a log file; the log is shown only when the call fails.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


class Captured:
    text: str = ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def native_output() -> Iterator[Captured]:
    if os.environ.get("CONVHUB_VERBOSE"):  # let everything through when debugging a plugin
        yield Captured()
        return
    captured = Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            log.seek(0)
            captured.text = log.read().decode("utf-8", "replace")
