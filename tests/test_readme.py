"""The README's quick start, run as written; and every example in examples/ is run by the suite."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import CONVHUB, ROOT


def _block(language: str, after: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(after):]
    return re.search(rf"```{language}\n(.*?)```", section, re.DOTALL).group(1)


def test_the_quick_start_runs_as_written(tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "PATH": f"{CONVHUB.parent}:{os.environ['PATH']}"}
    commands = [line.split("#")[0].strip() for line in _block("sh", "## Quick start").splitlines()]
    assert len(commands) == 4
    for command in commands:
        assert command.startswith("uv run convhub ")
        proc = subprocess.run(command.removeprefix("uv run ").split(), cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, (command, proc.stderr[-2000:])
    assert (tmp_path / "out" / "model.tflite").is_file() and (tmp_path / "out" / "model.onnx").is_file()
    assert "2/2 artifacts match" in proc.stdout  # the check's verdict
    library = subprocess.run([sys.executable, "-c", _block("python", "## Quick start")], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
    assert library.returncode == 0, library.stderr[-2000:]
    first = library.stdout.splitlines()[0]
    assert re.fullmatch(r"<ConversionResult keras → savedmodel → tflite → cnn.tflite: ok, max abs diff [\d.e+-]+>",
                        first), first
    assert "probs" in library.stdout and "1/1 target ok in" in library.stdout  # the output keeps its Keras name


def test_every_example_is_run_by_the_suite():
    """A model module in examples/ is built and converted by `convhub demo` (tests/test_demo.py);
    an example plugin folder is installed and tested by tests/test_example_plugins.py."""
    from convhub.demo import SOURCES

    demo = {s.reference.partition(":")[0] for s in SOURCES}
    modules = {p.name for p in (ROOT / "examples").glob("*.py")}
    assert modules <= demo, f"examples nobody runs: {sorted(modules - demo)}"
    folders = [p for p in (ROOT / "examples").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]
    plugins = {p.name for p in folders if (p / "pyproject.toml").exists()}
    tested = (ROOT / "tests" / "test_example_plugins.py").read_text()
    assert all(name in tested for name in plugins), plugins
    jobs = {f"examples/{p.name}/convhub.toml" for p in folders if (p / "convhub.toml").exists()}  # batch jobs
    assert all(job in (ROOT / "tests" / "test_batch.py").read_text() for job in jobs), jobs
    assert {p.name for p in folders} == plugins | {j.split("/")[1] for j in jobs}, "an example folder nobody runs"
