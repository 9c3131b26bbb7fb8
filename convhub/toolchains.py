"""Toolchains: each converter in the environment it needs.

A plugin declares, per Conversion or Runner, a `Toolchain`: the packages the hop needs (loose
requirements), a lock of exact pins shipped with the plugin, and the Pythons it runs on. A hop
runs in the caller's own environment when that satisfies the requirements and the Python;
otherwise in a virtual environment created here with uv on first use, from the lock, cached per
user under `<cache>/toolchains/<name>-py<X.Y>-<lock hash>`, and reused afterwards (as pre-commit
and nox do). Interpreters are found on the machine (PATH, pyenv); none is downloaded.

Its worker imports convhub and the plugins from this installation through a "bridge" folder of
links put on its PYTHONPATH, so a toolchain needs no copy of convhub, only the lock's packages.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from convhub.errors import ConversionError, ConvhubError
from convhub.types import Toolchain

MARKER = "convhub-toolchain.json"  # written last: a folder without it is a half-done install
INSTALL_TIMEOUT = 3600.0
Note = Callable[[str], None]


class ToolchainError(ConversionError):
    """A toolchain could not be found, created or started (one line, saying what to do)."""


def cache_root() -> Path:
    """convhub's one cache folder (toolchains, the TF.js runtime, batch results): CONVHUB_CACHE,
    else the platform's (~/.cache/convhub or $XDG_CACHE_HOME/convhub on Linux, ~/Library/Caches/convhub on macOS)."""
    if os.environ.get("CONVHUB_CACHE"):
        return Path(os.environ["CONVHUB_CACHE"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("convhub", appauthor=False))


def make_folder(path: Path, error: type[ConvhubError] = ToolchainError, variable: str = "CONVHUB_TOOLCHAINS") -> Path:
    """A folder of convhub's cache, made if missing; `error` in one line when it cannot be (the
    variable names a file, a read-only place, a full disk): a toolchain's hop fails with
    ToolchainError, the batch cache with CacheError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(f"cannot use {path} for convhub's cache: {exc.strerror or exc}",
                    hint=f"point CONVHUB_CACHE (or {variable}) at a writable folder") from None
    return path


def install_once(target: Path, done: Callable[[Path], bool], make: Callable[[], None]) -> None:
    """Make `target`, a per-user install in convhub's cache, unless `done(target)`: under an
    exclusive file lock beside it, so two processes never install at once, and checked again
    after the wait, since another process may have finished it meanwhile. `make` must leave a
    half-made install that `done` refuses (a marker written last, or a rename at the end)."""
    if done(target):
        return
    make_folder(target.parent)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done(target):
            make()


def root() -> Path:
    """Where toolchains live: CONVHUB_TOOLCHAINS, else <cache>/toolchains."""
    return Path(os.environ.get("CONVHUB_TOOLCHAINS") or cache_root() / "toolchains")


# --- Does the caller's environment serve it? ----------------------------------------------------

def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def python_fits(spec: str, version: tuple[int, ...]) -> bool:
    from packaging.specifiers import SpecifierSet

    return not spec or SpecifierSet(spec).contains(".".join(map(str, version)), prereleases=True)


def unmet(toolchain: Toolchain) -> str | None:
    """Why this process's environment cannot serve the toolchain's hops, or None when it can."""
    return _unmet(toolchain.requirements, toolchain.python)


@functools.lru_cache(maxsize=None)
def _unmet(requirements: tuple[str, ...], python: str) -> str | None:
    from packaging.requirements import Requirement

    if not python_fits(python, sys.version_info[:3]):
        return f"needs Python {python}, this is {platform.python_version()}"
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            return f"needs {text}, not installed"
        if not requirement.specifier.contains(installed, prereleases=True):
            return f"needs {text}, has {installed}"
    return None


# --- Interpreters and uv --------------------------------------------------------------------------

def _pyenv_root() -> Path:
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


@functools.lru_cache(maxsize=1)
def interpreters() -> tuple[tuple[tuple[int, ...], str], ...]:
    """The Pythons on this machine, newest first: this one, `python3.N` on PATH, pyenv's.
    Judged by their names (no process is started): listing routes must stay fast."""
    found: dict[str, tuple[int, ...]] = {}
    seen: set[str] = set()

    def add(path: Path, version: tuple[int, ...]) -> None:
        real = os.path.realpath(path)
        if os.access(real, os.X_OK) and real not in seen and "shims" not in str(path):
            seen.add(real)
            found.setdefault(str(path), version)

    add(Path(sys.executable), tuple(sys.version_info[:3]))
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        for path in sorted(Path(folder).glob("python3.[0-9]*")) if folder else ():
            if re.fullmatch(r"python3\.\d+", path.name):
                add(path, _version(path.name[len("python"):]))
    for path in sorted((_pyenv_root() / "versions").glob("3.*/bin/python3")):
        if re.fullmatch(r"3\.\d+\.\d+", path.parent.parent.name):
            add(path, _version(path.parent.parent.name))
    return tuple(sorted(((v, p) for p, v in found.items()), key=lambda item: item[0], reverse=True))


def interpreter_for(toolchain: Toolchain) -> tuple[tuple[int, ...], str] | None:
    """The Python a new environment of this toolchain gets: the caller's when it fits (the user's
    choice), else the newest installed that does."""
    own = tuple(sys.version_info[:3])
    if python_fits(toolchain.python, own):
        return own, sys.executable
    return next(((v, p) for v, p in interpreters() if python_fits(toolchain.python, v)), None)


@functools.lru_cache(maxsize=1)
def uv() -> str | None:
    """uv's executable: on PATH, or the one the `uv` package ships."""
    found = shutil.which("uv")
    if found:
        return found
    with contextlib.suppress(Exception):
        import uv as uv_package  # type: ignore[import-not-found,unused-ignore]

        return str(uv_package.find_uv_bin())
    return None


def unavailable(toolchain: Toolchain) -> str | None:
    """Why no environment of this toolchain can be made here, or None (checked without a process)."""
    if (place := installed(toolchain)) is not None and (place / MARKER).is_file():
        return None
    if interpreter_for(toolchain) is None:
        return f"toolchain {toolchain.name} needs Python {toolchain.python}, and none is installed"
    if uv() is None:
        return f"toolchain {toolchain.name} needs uv to create its environment (pip install uv)"
    return None


# --- Where each one lives -------------------------------------------------------------------------

def lock_hash(toolchain: Toolchain) -> str:
    return hashlib.sha256(toolchain.lock.read_bytes()).hexdigest()[:12]


def folder(toolchain: Toolchain, version: tuple[int, ...]) -> Path:
    return root() / f"{toolchain.name}-py{version[0]}.{version[1]}-{lock_hash(toolchain)}"


def installed(toolchain: Toolchain) -> Path | None:
    """The folder of this toolchain's environment for the Python it would get (installed or not)."""
    chosen = interpreter_for(toolchain)
    return folder(toolchain, chosen[0]) if chosen is not None else None


def python_of(place: Path) -> Path:
    return place / "bin" / "python"


def ensure(toolchain: Toolchain, note: Note | None = None) -> Path:
    """The Python of this toolchain's environment, created from its lock on first use.

    A file lock keeps two processes from creating it at once; the marker file is written last,
    so a half-made environment (Ctrl-C, a full disk) is found and made again, never used."""
    chosen = interpreter_for(toolchain)
    if chosen is None:
        raise ToolchainError(unavailable(toolchain) or f"no Python for toolchain {toolchain.name}")
    version, base = chosen
    place = folder(toolchain, version)
    install_once(place, lambda p: (p / MARKER).is_file(), lambda: _create(toolchain, place, version, base, note))
    return python_of(place)


def _create(toolchain: Toolchain, place: Path, version: tuple[int, ...], base: str, note: Note | None) -> None:
    """The environment at `place` made with uv from the lock (in place: a venv cannot be moved),
    its marker written last."""
    executable = uv()
    if executable is None:
        raise ToolchainError(f"toolchain {toolchain.name} needs uv to create its environment (pip install uv)")
    shutil.rmtree(place, ignore_errors=True)  # a half-made one
    short = ".".join(map(str, version[:2]))
    text = f"installing toolchain {toolchain.name} (Python {short}, first use; reused afterwards)"
    if note is not None:
        note(text + "…")
    started = time.monotonic()
    try:
        _run([executable, "venv", "--quiet", "--python", base, str(place)], toolchain)
        _run([executable, "pip", "install", "--quiet", "--python", str(python_of(place)),
              "-r", str(toolchain.lock)], toolchain)
    except BaseException:
        shutil.rmtree(place, ignore_errors=True)
        raise
    record = {"name": toolchain.name, "python": short, "lock_hash": lock_hash(toolchain),
              "lock": str(toolchain.lock), "requirements": list(toolchain.requirements),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.monotonic() - started, 1)}
    (place / MARKER).write_text(json.dumps(record, indent=1) + "\n")
    if note is not None:
        note("")


def _run(command: list[str], toolchain: Toolchain) -> None:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                              env={**os.environ, "VIRTUAL_ENV": "", "UV_PYTHON_DOWNLOADS": "never"})
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"creating toolchain {toolchain.name} took over {INSTALL_TIMEOUT:g} s") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
        raise ToolchainError(f"creating toolchain {toolchain.name} failed: {lines[-1] if lines else proc.returncode}")


# --- The bridge: this installation's convhub and plugins, importable from another Python ---------

_bridge: Path | None = None
_bridge_lock = threading.Lock()


def bridge(*modules: str) -> Path:
    """A folder (one per process) of links to the top-level packages or modules named, which a
    toolchain's worker has on its PYTHONPATH: convhub and every installed plugin (they import
    each other), and the module of each function it is sent (linked as it is first needed)."""
    global _bridge
    with _bridge_lock:
        if _bridge is None:
            _bridge = Path(tempfile.mkdtemp(prefix="convhub-bridge-"))
            atexit.register(shutil.rmtree, _bridge, True)
            plugins = [ep.module for ep in importlib.metadata.entry_points(group="convhub")]
            modules = (*plugins, *modules)
        for name in ("convhub", *modules):
            top = name.partition(".")[0]
            if any((_bridge / entry).exists() for entry in (top, f"{top}.py")):
                continue
            spec = importlib.util.find_spec(top)
            if spec is None or spec.origin in (None, "built-in", "frozen"):
                continue
            source = Path(spec.origin)
            if spec.submodule_search_locations:  # a package: link its folder
                source = Path(list(spec.submodule_search_locations)[0])
                (_bridge / top).symlink_to(source, target_is_directory=True)
            elif source.suffix == ".py":
                (_bridge / f"{top}.py").symlink_to(source)
        return _bridge


def versions(toolchain: Toolchain) -> dict[str, str]:
    """What a hop run in this toolchain ran with, for the provenance record: the toolchain (its
    lock's hash and Python) and its requirements' exact versions, read from the lock (the
    environment is made from it), the markers judged for the Python it gets."""
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    chosen = interpreter_for(toolchain)
    python = ".".join(map(str, chosen[0])) if chosen else platform.python_version()
    scope = {"python_full_version": python, "python_version": ".".join(python.split(".")[:2])}
    wanted = {canonicalize_name(Requirement(r).name) for r in toolchain.requirements}
    found = {f"toolchain {toolchain.name}": f"lock {lock_hash(toolchain)}, Python {scope['python_version']}"}
    for line in toolchain.lock.read_text().splitlines():
        pin, _, marker = line.split("#")[0].partition(";")
        name, sep, version = pin.strip().partition("==")
        if sep and canonicalize_name(name) in wanted and (not marker.strip() or Marker(marker).evaluate(scope)):
            found[name] = version.strip()
    return found


# --- Listing, checking, pruning -------------------------------------------------------------------

@dataclass
class Status:
    """One toolchain as `convhub toolchains` shows it."""

    name: str
    python: str | None  # the X.Y its environment has or would get
    lock_hash: str
    state: str  # "here" (the caller's environment serves it), "installed", "not installed", "unavailable", "broken"
    size: int | None  # bytes on disk, when installed
    path: str | None
    used_by: list[str]
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "python": self.python, "lock_hash": self.lock_hash, "state": self.state,
                "size": self.size, "path": self.path, "used_by": self.used_by, "reason": self.reason}


def status(toolchain: Toolchain, used_by: Iterable[str] = ()) -> Status:
    chosen = interpreter_for(toolchain)
    python = ".".join(map(str, chosen[0][:2])) if chosen else None
    place = folder(toolchain, chosen[0]) if chosen else None
    why = unmet(toolchain)
    if why is None:  # used whether or not an environment of it is installed too
        state, reason = "here", "this environment has what it needs"
    elif place is not None and (place / MARKER).is_file():
        state, reason = "installed", why
    elif place is None or uv() is None:
        state, reason = "unavailable", unavailable(toolchain) or ""
    elif place.exists():
        state, reason = "broken", "a half-made environment (it is made again on next use)"
    else:
        state, reason = "not installed", why
    exists = place is not None and place.exists()
    return Status(toolchain.name, python, lock_hash(toolchain), state, _size(place) if exists and place else None,
                  str(place) if exists else None, sorted(set(used_by)), reason)


def _size(place: Path) -> int:
    total = 0
    for base, _, files in os.walk(place):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(base, name)).st_size
    return total


def check(toolchain: Toolchain) -> str | None:
    """Start the installed environment's Python and ask uv whether it holds exactly its lock's
    packages; why not, or None when it does."""
    place = installed(toolchain)
    if place is None or not (place / MARKER).is_file():
        return "not installed"
    try:
        subprocess.run([str(python_of(place)), "-c", "import numpy, pluggy"], check=True, capture_output=True,
                       timeout=120)
    except (OSError, subprocess.SubprocessError):
        return "its Python does not start, or cannot import numpy and pluggy"
    executable = uv()
    if executable is None:
        return None
    proc = subprocess.run([executable, "pip", "install", "--dry-run", "--python", str(python_of(place)),
                           "-r", str(toolchain.lock)], capture_output=True, text=True, timeout=300)
    text = proc.stderr + proc.stdout
    if proc.returncode != 0 or "Would install" in text or "Would uninstall" in text:
        return "its packages differ from its lock"
    return None


def remove(place: Path) -> int:
    size = _size(place)
    shutil.rmtree(place, ignore_errors=True)
    with contextlib.suppress(OSError):
        (place.parent / f"{place.name}.lock").unlink()
    return size


def prune(keep: Iterable[Toolchain]) -> list[tuple[Path, int]]:
    """Remove every environment under root() that no declared toolchain uses any more (an old
    lock, an uninstalled plugin) or that is half made; returns what went and its size. An
    environment of a declared lock for another Python stays: another installation (a 3.13
    environment beside this 3.12 one) may use it."""
    wanted = {(t.name, lock_hash(t)) for t in keep}
    removed: list[tuple[Path, int]] = []
    if not root().is_dir():
        return removed
    for place in sorted(root().iterdir()):
        if not place.is_dir():
            continue
        named = re.fullmatch(r"(.+)-py\d+\.\d+-([0-9a-f]{12})", place.name)
        if named is not None and named.groups() in wanted and (place / MARKER).is_file():
            continue
        with open(root() / f"{place.name}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # being made right now by another process
            removed.append((place, remove(place)))
    return removed
