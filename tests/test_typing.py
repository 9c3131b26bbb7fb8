"""The core is typed: `mypy --strict` passes on convhub/ (configured in pyproject.toml), and the
package says so to type checkers with py.typed."""

import subprocess
import sys

from conftest import ROOT


def test_mypy_strict_passes_on_the_core():
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert (ROOT / "convhub" / "py.typed").is_file()
