"""Publishing a run's outputs as one transaction: all of them appear, or none changes.

Each output is first copied into a staging folder beside its destination (same filesystem, so
the final step is a rename); a copy that fails (a full disk, a read-only folder) removes every
staged copy and leaves every destination as it was. Then each destination is renamed into
place, keeping what --force replaces until all are in; a failure or a signal then puts back
what was there. Ctrl-C and SIGTERM wait for the renames (milliseconds), then roll them back.

Two kinds of outputs go with the others: a sidecar (NAME.convhub.json), named after the output
it sits beside once that one's name is final; and a version (a TF Serving model base path):
a new numbered folder inside a folder of versions, never replacing one. Its number is chosen
while holding a lock on that folder (flock), so two runs adding versions to one base path at
once get one number each; and it appears whole, by one rename, so a server that polls the base
path never sees a half-written version.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from convhub.provenance import sidecar_path

STAGING = ".convhub-staging-"


class PublishError(ConvhubError):
    """The outputs could not be written (no space, no permission): none was changed."""

    exit_code = 1


@dataclass
class _Output:
    built: Path
    destination: Path  # of a version: a placeholder inside its folder until the number is chosen
    replace: bool  # --force: an existing destination may be replaced
    staging: Path | None = None
    backup: Path | None = None
    committed: bool = False
    versions: tuple[Path, int | None] | None = None  # a version: (the folder of versions, the number asked)
    beside: _Output | None = None  # a sidecar: named after this output once it is in place

    @property
    def staged(self) -> Path:
        assert self.staging is not None, "staged before _stage()"
        return self.staging / "new"


class Transaction:
    def __init__(self) -> None:
        self.outputs: list[_Output] = []
        self.locks: list[int] = []

    def add(self, built: Path, destination: Path, replace: bool, sidecar: Path | None = None) -> _Output:
        """`built` at `destination`; `sidecar`, a file, beside it (replacing an older one)."""
        out = _Output(Path(built), Path(destination), replace)
        self._add(out, sidecar)
        return out

    def add_version(self, built: Path, folder: Path, version: int | None, sidecar: Path | None = None) -> _Output:
        """`built` as a new version inside `folder`: number `version`, which must not exist yet,
        or (None) the next after the highest there. Its `.destination` is final after commit()."""
        out = _Output(Path(built), Path(folder) / ".convhub-new-version", False, versions=(Path(folder), version))
        self._add(out, sidecar)
        return out

    def _add(self, out: _Output, sidecar: Path | None) -> None:
        self.outputs.append(out)
        if sidecar is not None:
            self.outputs.append(_Output(Path(sidecar), sidecar_path(out.destination), True, beside=out))

    def commit(self) -> None:
        """Stage every output, then move them all into place; on any failure, none changes."""
        if not self.outputs:
            return
        self._each(self._stage, undo=self._discard)
        try:
            with deferred_signals() as pending:
                self._each(self._move_into_place, undo=self._roll_back)
                if pending:
                    self._roll_back()  # the signal is raised when the block ends
                    return
        finally:
            self._unlock()
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
        with deferred_signals():  # a signal between mkdtemp and this assignment would leak the folder
            out.staging = Path(tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-", dir=parent))
        if out.built.is_dir():
            shutil.copytree(out.built, out.staged, symlinks=True)
        else:
            shutil.copy2(out.built, out.staged)

    def _move_into_place(self, out: _Output) -> None:
        if out.versions is not None:
            out.destination = self._claim_version(*out.versions)
        elif out.beside is not None:
            out.destination = sidecar_path(out.beside.destination)
        dest = out.destination
        if os.path.lexists(dest):
            if not out.replace:  # re-checked: something may have appeared meanwhile
                raise UsageError(f"{dest} exists; use --force to overwrite it")
            out.backup = out.staged.parent / "previous"
            os.rename(dest, out.backup)
        os.rename(out.staged, dest)
        out.committed = True

    def _claim_version(self, folder: Path, asked: int | None) -> Path:
        """The path of the new version, chosen under the folder's lock (held until the commit ends)."""
        fd = os.open(folder, os.O_RDONLY)
        self.locks.append(fd)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if asked is None:
            return folder / str(next_version(folder))
        if os.path.lexists(folder / str(asked)):
            raise UsageError(f"version {asked} exists in {folder}; a version is never replaced",
                             hint=f"leave out --version to add version {next_version(folder)}")
        return folder / str(asked)

    def _unlock(self) -> None:
        for fd in self.locks:
            os.close(fd)  # closing releases the flock
        self.locks = []

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


def versions_in(folder: Path) -> list[int]:
    """The version numbers in a folder of versions: its entries named by a whole number."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(n) for n in names if n.isascii() and n.isdigit())


def next_version(folder: Path) -> int:
    return max(versions_in(folder), default=0) + 1


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
