"""Publishing a run's outputs as one transaction: all of them appear, or none changes.

Each output is first copied into a staging folder beside its destination (same filesystem, so
the final step is a rename); a copy that fails (a full disk, a read-only folder) removes every
staged copy and leaves every destination as it was. Then each destination is renamed into
place, keeping what --force replaces until all are in; a failure or a signal then puts back
what was there. Ctrl-C and SIGTERM wait for the renames (milliseconds), then roll them back.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from convhub.errors import ConvhubError, UsageError

STAGING = ".convhub-staging-"


class PublishError(ConvhubError):
    """The outputs could not be written (no space, no permission): none was changed."""

    exit_code = 1


@dataclass
class _Output:
    built: Path
    destination: Path
    replace: bool  # --force: an existing destination may be replaced
    staging: Path | None = None
    backup: Path | None = None
    committed: bool = False

    @property
    def staged(self) -> Path:
        assert self.staging is not None, "staged before _stage()"
        return self.staging / "new"


class Transaction:
    def __init__(self) -> None:
        self.outputs: list[_Output] = []

    def add(self, built: Path, destination: Path, replace: bool) -> None:
        self.outputs.append(_Output(Path(built), Path(destination), replace))

    def commit(self) -> None:
        """Stage every output, then move them all into place; on any failure, none changes."""
        if not self.outputs:
            return
        self._each(self._stage, undo=self._discard)
        with deferred_signals() as pending:
            self._each(self._move_into_place, undo=self._roll_back)
            if pending:
                self._roll_back()  # the signal is raised when the block ends
                return
        self._discard()  # what --force replaced, and the staging folders

    def _each(self, step: Callable[[_Output], None], undo: Callable[[], None]) -> None:
        """`step` for every output; on any failure `undo` all of it, and say so in one line."""
        out: _Output | None = None
        try:
            for out in self.outputs:
                step(out)
        except BaseException as exc:
            undo()
            if isinstance(exc, OSError) and out is not None:
                raise PublishError(f"could not write {out.destination}: {_why(exc)}; no output was changed") from None
            raise

    def _stage(self, out: _Output) -> None:
        parent = out.destination.parent
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(parent)
        out.staging = Path(tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-", dir=parent))
        if out.built.is_dir():
            shutil.copytree(out.built, out.staged, symlinks=True)
        else:
            shutil.copy2(out.built, out.staged)

    def _move_into_place(self, out: _Output) -> None:
        dest = out.destination
        if os.path.lexists(dest):
            if not out.replace:  # re-checked: something may have appeared meanwhile
                raise UsageError(f"{dest} exists; use --force to overwrite it")
            out.backup = out.staged.parent / "previous"
            os.rename(dest, out.backup)
        os.rename(out.staged, dest)
        out.committed = True

    def _roll_back(self) -> None:
        for out in reversed(self.outputs):
            if out.committed:
                _remove(out.destination)
                out.committed = False
            if out.backup is not None and os.path.lexists(out.backup):
                os.rename(out.backup, out.destination)
                out.backup = None
        self._discard()

    def _discard(self) -> None:
        for out in self.outputs:
            if out.staging is not None:
                shutil.rmtree(out.staging, ignore_errors=True)


def _why(exc: OSError) -> str:
    """'No space left on device', also from copytree, which gathers its errors in a list."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        found = re.search(r"\[Errno \d+\] ([^:']+)", str(exc.args[0][0][-1]))
        return found.group(1).strip() if found else str(exc.args[0][0][-1])
    return exc.strerror or str(exc)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _remove_stale(folder: Path, prefix: str = STAGING) -> None:
    """Folders named PREFIX<pid>-... that a killed run (SIGKILL) left behind: their process is gone."""
    for entry in folder.glob(f"{prefix}*"):
        pid = entry.name[len(prefix):].partition("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def work_folder() -> Path:
    """A fresh work folder for a run, after removing those of runs that were killed."""
    prefix = "convhub-work-"
    root = Path(tempfile.gettempdir())
    _remove_stale(root, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them to the old handlers.
    Only the main thread can install handlers; elsewhere signals are not deferred."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield pending
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in pending[:1]:
            signal.raise_signal(signum)


def write_text(path: Path, text: str) -> Path:
    """A text file (a report) written whole or not at all: into a hidden file beside it, then
    renamed over it; a failure (a full disk) leaves the old file and no partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
