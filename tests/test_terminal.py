"""convhub in a real terminal, 80 columns wide, driven by tmux: the spinner while it works, a
table that fits, the verdict line; no escape codes under NO_COLOR; a pipe closed by `head -1`.

The screen is read with `tmux capture-pane` every 0.1 s while the command runs. Skipped when
tmux is not installed (`apt-get install tmux`; .ci/run installs it).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import CONVHUB

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
SPINNER = set("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")  # rich's "dots" spinner
WIDTH = 80


class Terminal:
    """A tmux server of its own (its own socket) with one 80-column window."""

    def __init__(self, env: dict[str, str]):
        self.socket = f"convhub-test-{uuid.uuid4().hex[:8]}"
        self.env = env

    def tmux(self, *args: str) -> str:
        return subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True, text=True, check=True,
                              env=self.env, timeout=30).stdout

    def run(self, command: str, timeout: float = 300) -> tuple[list[str], str, str, int]:
        """Run `command` in the window; returns the screens seen while it ran, the last screen
        (wrapped lines joined, so a line wider than the window shows as one), the same with its
        escape codes, and the exit code."""
        script = f"{command}; echo \"[exit $?]\"; sleep 600"
        self.tmux("new-session", "-d", "-x", str(WIDTH), "-y", "50", "bash", "--norc", "--noprofile", "-c", script)
        frames: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                screen = self.tmux("capture-pane", "-p", "-J")
                frames.append(screen)
                done = re.search(r"\[exit (\d+)\]", screen)
                if done:
                    return frames, screen, self.tmux("capture-pane", "-p", "-J", "-e"), int(done.group(1))
                time.sleep(0.1)
            raise AssertionError("the command did not finish:\n" + frames[-1])
        finally:
            subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True, env=self.env)


@pytest.fixture
def terminal() -> Terminal:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "TMUX")}
    env["PATH"] = f"{CONVHUB.parent}:{env['PATH']}"
    return Terminal(env)


def test_a_conversion_shows_a_spinner_then_a_fitted_table_and_the_verdict(terminal, cnn_file, tmp_path):
    frames, screen, coloured, code = terminal.run(
        f"cd {shlex.quote(str(tmp_path))} && convhub convert {shlex.quote(str(cnn_file))} --to tflite,onnx -o out")
    assert code == 0, screen
    working = [f for f in frames if SPINNER & set(f)]
    # The worker's imports, the longest wait, are said as they happen.
    assert any(re.search(r"loading (TensorFlow|Keras|JAX)…", f) for f in working), "\n---\n".join(working)
    assert any("converting savedmodel → tflite" in f or "checking" in f for f in working)
    lines = screen.splitlines()
    assert all(len(line) <= WIDTH for line in lines), [line for line in lines if len(line) > WIDTH]
    header = next(line for line in lines if line.startswith("artifact"))
    assert header.split() == ["artifact", "size", "time", "output", "vs", "source", "vs", "prev", "hop", "margin",
                              "parity"]
    assert [line.split()[0] for line in lines[lines.index(header) + 2:][:3]] == ["savedmodel", "tflite", "onnx"]
    assert re.search(r"^2/2 targets ok in [\d.]+ s$", screen, re.MULTILINE)
    assert not SPINNER & set(screen)  # the spinner is gone once the results are shown
    assert "\x1b[" in coloured  # colour on a terminal


def test_no_color_means_no_escape_codes(terminal, cnn_file, tmp_path):
    frames, screen, coloured, code = terminal.run(
        f"cd {shlex.quote(str(tmp_path))} && NO_COLOR=1 convhub convert keras→tflite {shlex.quote(str(cnn_file))}"
        " -o m.tflite")
    assert code == 0, screen
    assert "1/1 target ok in" in screen
    assert "\x1b" not in coloured, coloured


def test_a_pipe_closed_by_head_ends_quietly(terminal):
    _, screen, _, code = terminal.run("convhub formats | head -1; test ${PIPESTATUS[0]} -eq 0 -o ${PIPESTATUS[0]} -eq 141")
    assert code == 0 and "Traceback" not in screen and "BrokenPipe" not in screen
    assert screen.splitlines()[0].split()[:2] == ["format", "aliases"]
