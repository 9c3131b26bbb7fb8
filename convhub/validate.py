"""Checks of what the user gave, before any framework loads: each fails in one line with exit 2.

Paths are looked at with stat() only, never opened, so a FIFO or a device cannot block or
flood the run; every output path is proven writable by creating (and removing) a file beside
it, which also catches read-only filesystems that permission bits do not show.
"""

from __future__ import annotations

import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from convhub.errors import InputError, UsageError

MAX_MODEL_FILE = 64 << 30  # larger than any model a converter here can take

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket"}


def model_path(path: Path, what: str = "the model") -> None:
    """A model is a regular file or a directory, of a sane size."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or directory") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise InputError(f"{path}: permission denied")
        return
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise InputError(f"{path} is {kind}, not {what} (give a regular file or a directory)")
    if st.st_size == 0:
        raise InputError(f"{path} is empty")
    if st.st_size > MAX_MODEL_FILE:
        raise InputError(f"{path} is {st.st_size / 2**30:.0f} GiB, more than any model convhub can convert")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")


def data_file(path: Path, flag: str) -> None:
    """An .npz the user names (--inputs, --representative-data): a regular, readable file."""
    model_path(path, f"an .npz file for {flag}")
    if Path(path).is_dir():
        raise InputError(f"{path} is a directory, not an .npz file for {flag}")


def writable(destination: Path, what: str = "output") -> None:
    """The nearest existing folder of `destination` takes a new file (proven by making one)."""
    parent = next((p for p in Path(destination).absolute().parents if p.exists()), None)
    if parent is None:
        return
    if not parent.is_dir():
        raise UsageError(f"{parent} is a file, so {destination} cannot be written")
    try:
        fd, probe = tempfile.mkstemp(prefix=".convhub-probe-", dir=parent)
    except OSError as exc:
        raise UsageError(f"cannot write the {what} {destination}: {parent}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(probe)


def destination(dest: Path, *, force: bool, directory: bool, sources: list[Path]) -> None:
    """An output path: writable, of the right kind, not existing without --force, and never the
    source itself, inside it, or holding it (--force would destroy the model)."""
    for source in sources:
        src, out = Path(os.path.realpath(source)), Path(os.path.realpath(dest))
        if out == src or src in out.parents or out in src.parents:
            relation = "is" if out == src else ("lies inside" if src in out.parents else "contains")
            raise UsageError(f"the output {dest} {relation} the input {source}; choose another path")
    writable(dest)
    if not os.path.lexists(dest):
        return
    if Path(dest).is_dir() != directory:
        have, want = ("a folder", "a file") if Path(dest).is_dir() else ("a file", "a folder")
        raise UsageError(f"{dest} is {have}, but this output is {want}; choose another path")
    if not force:
        raise UsageError(f"{dest} exists; use --force to overwrite it")


def report_path(path: Path, sources: list[Path]) -> None:
    if Path(path).is_dir():
        raise UsageError(f"--report {path} is a directory; name an .html file")
    destination(path, force=True, directory=False, sources=sources)


def seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"the seed must be a whole number ≥ 0, not {value!r}")
    return value


def tolerance(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, not {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise UsageError(f"{name} must be a finite number ≥ 0, not {value!r}")
    return number


def positive(name: str, value: Any, whole: bool = False) -> Any:
    if value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float) if not whole else int)
    if not ok or not math.isfinite(value) or value <= 0:
        kind = "a whole number" if whole else "a number"
        raise UsageError(f"{name} must be {kind} > 0, not {value!r}")
    return value


def suffix(dest: Path, target: Any, formats: Any) -> None:
    """An output whose suffix names another format (`--to onnx -o model.tflite`) is refused:
    the file would lie about what it holds. A suffix no format claims is the user's choice."""
    name, want = Path(dest).name.lower(), (target.suffix or "").lower()
    if want and (name.endswith(want) or want.endswith(Path(name).suffix)):
        return  # its own suffix, or a part of it (".onnx" for a ".int8.onnx" format)
    others = [f for f in formats.values() if f.suffix and f.name != target.name and name.endswith(f.suffix.lower())]
    claimed = max(others, key=lambda f: len(f.suffix), default=None)
    if claimed is None:
        return
    right = Path(dest).with_suffix(target.suffix) if target.suffix else Path(dest).with_suffix("")
    kind = f"a {target.name} file" if target.suffix else f"a {target.name} folder"
    raise UsageError(f"the output {dest} has the suffix of a {claimed.name} model, but the target is {target.name}",
                     hint=f"the output is {kind}: name it {right}, or choose --to {claimed.name}")
