"""The batch cache: content-addressed results of cells (one model × target × option set).

A cell's entry is found by its **key**, a SHA-256 over everything that decides its result and is
known before any framework loads: the source's content (a file; every file of a directory; a
`file.py:NAME` reference's module and the local modules it imports, found without running it,
and the versions of the installed packages it imports), the target, the options (a path
option by its file's content), the seed and the parity inputs' content, the tolerances, and
convhub's version. An entry also records what was only known once the model was read: the
source's facts, the route they chose and the runner of each format, and the versions of every
distribution on that route (each plugin and its requirements, the modules each hop and runner
needs). It is used only while the plugins installed now choose the same route for those facts
and every one of those versions is unchanged, so an upgrade of tf2onnx invalidates exactly
the cells whose route runs tf2onnx. Checking that imports no framework.

Entries live under the platform's cache folder (`platformdirs.user_cache_dir("convhub")`/batch,
or CONVHUB_CACHE_DIR): entries/KEY[:2]/KEY/ holds entry.json, report.html and the final
artifact. An entry is built in a temporary folder beside them and renamed into place, so a
reader sees a whole entry or none, whatever stops the writer.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import stat
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from convhub.errors import CacheError, InputError
from convhub.publish import _remove_stale
from convhub.toolchains import cache_root, make_folder

if TYPE_CHECKING:
    from convhub.plugins import Registry

FORMAT = 1  # of the entries; raised when their layout or the key's meaning changes
ENTRY = "entry.json"
REPORT = "report.html"
ARTIFACT = "artifact"
TEMP = ".tmp-"


def default_root() -> Path:
    """CONVHUB_CACHE_DIR, else `batch/` in convhub's cache folder (CONVHUB_CACHE, else the
    platform's: ~/.cache/convhub on Linux, ~/Library/Caches/convhub on macOS)."""
    given = os.environ.get("CONVHUB_CACHE_DIR")
    if given:
        return Path(given)
    return cache_root() / "batch"


# --- content digests ---------------------------------------------------------------------------

_CHUNK = 1 << 20


def sha256_of(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def canonical(value: Any) -> str:
    """JSON that is equal for equal values: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class Hasher:
    """File digests, remembered by (size, mtime, inode) so an unchanged zoo is not read again.
    A file changed within a second of being hashed is hashed again next time (its mtime cannot
    tell a later write in the same tick apart)."""

    def __init__(self, memo: Path | None = None):
        self.memo_path = memo
        self.memo: dict[str, list[Any]] = {}
        self.changed = False
        if memo is not None:
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(memo.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self.memo = loaded

    def file(self, path: Path) -> str:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path} is not a regular file (a FIFO or a device cannot be part of a model)")
        name = os.path.abspath(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        known = self.memo.get(name)
        if known is not None and known[:3] == stamp:
            return str(known[4])
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        hashed_at = time.time_ns()
        if hashed_at - st.st_mtime_ns > 1_000_000_000:
            self.memo[name] = [*stamp, hashed_at, digest.hexdigest()]
            self.changed = True
        return digest.hexdigest()

    def tree(self, folder: Path) -> str:
        """Every file below `folder` (symlinks followed, once), by relative path and content."""
        lines = []
        for rel, path in walk(folder):
            lines.append(f"{rel}\0{self.file(path)}")
        return sha256_of("\n".join(lines))

    def path(self, path: Path) -> str:
        return self.tree(path) if path.is_dir() else self.file(path)

    def save(self) -> None:
        if self.memo_path is None or not self.changed:
            return
        from convhub.publish import write_text

        with contextlib.suppress(OSError):
            write_text(self.memo_path, json.dumps(self.memo))


def walk(folder: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, path) of every file below `folder`, sorted; a symlinked folder is followed
    once (a link back up is not a loop)."""
    seen: set[tuple[int, int]] = set()
    found: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in files:
            path = Path(root) / name
            found.append((path.relative_to(folder).as_posix(), path))
    return iter(sorted(found))


@dataclass
class Source:
    """What a model's result depends on that is on disk: files (by content) and installed
    packages (by version). `files` are what an executor on another machine needs of it."""

    digest: str
    files: list[Path] = field(default_factory=list)
    packages: dict[str, str] = field(default_factory=dict)


def source_of(model: str, hasher: Hasher, depends: Iterable[Path] = ()) -> Source:
    """The content behind a model: a path (file or folder), or a `file.py:NAME` /
    `package.module:NAME` reference, whose module and the local modules it imports are read
    (statically, without running them). `depends`: more files its code reads (weights, data)."""
    from convhub import pyref

    files: list[Path] = []
    packages: dict[str, str] = {}
    if pyref.looks_like_reference(model):
        module_part, _, name = model.rpartition(":")
        origin = _module_origin(module_part)
        modules = local_modules(origin, packages)
        parts = [f"reference\0{name}"]
        for path in modules:
            parts.append(f"{path}\0{hasher.file(path)}")
        files += modules
    else:
        path = Path(model)
        parts = [f"{'folder' if path.is_dir() else 'file'}\0{hasher.path(path)}"]
        files.append(path)
    for extra in sorted(set(depends)):
        parts.append(f"depends {extra.name}\0{hasher.path(extra)}")
        files.append(extra)
    parts += [f"package {name}\0{version}" for name, version in sorted(packages.items())]
    return Source(sha256_of("\n".join(parts)), files, packages)


def _module_origin(module_part: str) -> Path:
    if module_part.endswith(".py") or "/" in module_part or os.sep in module_part:
        path = Path(module_part)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        return path
    try:
        spec = importlib.util.find_spec(module_part)
    except (ImportError, ValueError) as exc:
        raise InputError(f"no module named {module_part!r}: {exc}") from None
    if spec is None or spec.origin is None or not Path(spec.origin).is_file():
        raise InputError(f"no module named {module_part!r} (or it has no source file)")
    return Path(spec.origin)


@functools.lru_cache(maxsize=None)
def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= {p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))}
    return tuple(os.path.realpath(r) + os.sep for r in roots)


def _is_installed(path: Path) -> bool:
    return os.path.realpath(path).startswith(_installed_roots())


def local_modules(module: Path, packages: dict[str, str]) -> list[Path]:
    """`module` and the Python files it imports that no installed distribution provides (the
    project's own code beside it or on sys.path, or an editable install's), transitively; a
    local package counts with all its .py files. The installed distributions it imports go
    into `packages` with their versions; the standard library, convhub and its plugins (whose
    versions every entry checks) are left out."""
    found: dict[Path, None] = {}
    todo = [_absolute(module)]
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found[path] = None
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError) as exc:
            raise InputError(f"{path} cannot be read as Python: {type(exc).__name__}: {exc}") from None
        for name in sorted(_imported(tree)):
            if name in sys.stdlib_module_names or name in sys.builtin_module_names:
                continue
            dist = _version_of_module(name)
            if dist is not None and dist[0] in _covered():
                continue
            if dist is not None and not _editable(dist[0]):
                packages[dist[0]] = dist[1]
                continue
            spec = _find(name, path.parent)
            if spec is None or spec.origin in (None, "built-in", "frozen") or not Path(spec.origin).is_file():
                continue
            origin = Path(spec.origin)
            if dist is None and _is_installed(origin):
                continue
            if spec.submodule_search_locations:  # a local package: all of it
                todo += [_absolute(p) for p in sorted(origin.parent.rglob("*.py"))]
            else:
                todo.append(_absolute(origin))
    return list(found)


@functools.lru_cache(maxsize=None)
def _covered() -> frozenset[str]:
    """convhub and the plugin distributions: every entry holds their versions already."""
    return frozenset({"convhub", *_plugin_distributions().values()})


@functools.lru_cache(maxsize=None)
def _editable(dist: str) -> bool:
    """An editable install (`pip install -e`): its code is the user's working copy."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError, ValueError, TypeError):
        text = importlib.metadata.distribution(dist).read_text("direct_url.json")
        return bool(text and json.loads(text).get("dir_info", {}).get("editable"))
    return False


def _absolute(path: Path) -> Path:
    """Absolute and normalized, symlinks kept: the path a worker is handed."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _imported(tree: ast.AST) -> set[str]:
    """The top-level names of the modules a file imports (relative imports: none; a module loaded
    from a file path has no package to be relative to)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.partition(".")[0])
    return names


def _find(name: str, beside: Path) -> importlib.machinery.ModuleSpec | None:
    """Where `import name` would come from, looking beside the importing file first; nothing is
    imported to find it."""
    if name in sys.builtin_module_names:
        return None
    with contextlib.suppress(ImportError, ValueError):
        return importlib.machinery.PathFinder.find_spec(name, [str(beside), *sys.path])
    return None


@functools.lru_cache(maxsize=None)
def _distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


@functools.lru_cache(maxsize=None)
def _version_of_module(module: str) -> tuple[str, str] | None:
    """(distribution, version) of an installed top-level module: by its own name first (cheap),
    else by the map of every distribution's modules."""
    for dist in (module, module.replace("_", "-")):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return dist, importlib.metadata.version(dist)
    for dist in _distributions().get(module, []):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return dist, importlib.metadata.version(dist)
    return None


# --- versions of what a route runs --------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _plugin_distributions() -> Mapping[str, str]:
    """The distribution behind each entry-point plugin."""
    found = {}
    for ep in importlib.metadata.entry_points(group="convhub"):
        if ep.dist is not None:
            found[ep.name] = ep.dist.name
    return found


@functools.lru_cache(maxsize=None)
def _with_requirements(dist: str) -> tuple[tuple[str, str], ...]:
    """A distribution's version and those of its direct requirements (extras left out)."""
    try:
        versions = {dist: importlib.metadata.version(dist)}
        requirements = importlib.metadata.requires(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return ()
    for requirement in requirements:
        if "extra ==" in requirement.replace('"', " ").replace("'", " ") or "extra==" in requirement:
            continue
        found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        if found:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[found.group(1)] = importlib.metadata.version(found.group(1))
    return tuple(sorted(versions.items()))


def versions_of(registry: Registry, plugins: Iterable[str], modules: Iterable[str]) -> dict[str, str]:
    """The versions a result depends on: each plugin's distribution and its requirements (a
    plugin registered in code: its name, unversioned), and the distributions of `modules`."""
    versions: dict[str, str] = {}
    for plugin in sorted(set(plugins)):
        dist = _plugin_distributions().get(plugin)
        if dist is None:
            versions[f"plugin {plugin}"] = str(registry.plugins[plugin].version) if plugin in registry.plugins else "?"
            continue
        versions.update(_with_requirements(dist))
    for module in sorted(set(modules)):
        found = _version_of_module(module.partition(".")[0])
        if found is not None:
            versions[found[0]] = found[1]
    return versions


def environment(registry: Registry) -> dict[str, str]:
    """Every installed plugin's versions with convhub's: what must match between the machines
    of one batch (an executor's node and the caller), or their results would not be the ones
    the keys promise."""
    from convhub import __version__

    modules = [m for c in registry.conversions for m in c.requires]
    modules += [m for rs in registry.runners.values() for r in rs for m in r.requires]
    modules += [m for f in registry.formats.values() for m in f.requires]
    return {"convhub": __version__, "python": ".".join(map(str, sys.version_info[:2])),
            **versions_of(registry, registry.plugins, modules)}


# --- entries ------------------------------------------------------------------------------------

@dataclass
class Entry:
    """One cached cell: its record (entry.json) and, when it converted, its artifact."""

    key: str
    folder: Path
    record: dict[str, Any]

    @property
    def artifact(self) -> Path | None:
        name = self.record.get("artifact")
        return self.folder / ARTIFACT / name if name else None

    @property
    def report(self) -> Path:
        return self.folder / REPORT


def facts_from_json(facts: Mapping[str, Any]) -> dict[str, Any]:
    """A source's facts as the router sees them again: the input specs as TensorSpecs."""
    from convhub.types import TensorSpec

    rebuilt = dict(facts)
    specs = rebuilt.get("inputs")
    if isinstance(specs, list) and all(isinstance(s, dict) and {"name", "shape", "dtype"} <= set(s) for s in specs):
        rebuilt["inputs"] = [TensorSpec(s["name"], tuple(s["shape"]), s["dtype"]) for s in specs]
    return rebuilt


def route_of(registry: Registry, source_format: str, target: str, facts: Mapping[str, Any]) -> list[str] | None:
    """The conversions the installed plugins choose now for a source with these facts (None:
    no route). No plugin is marked broken here: a refuse() that raises only means a miss."""
    from convhub.graph import RouteGraph

    found = RouteGraph(registry.conversions).routes(source_format, target, facts_from_json(facts))
    return [hop.name for hop in found[0].hops] if found else None


def dependencies(registry: Registry, source_format: str | None, route: Iterable[str]) -> tuple[dict[str, str], dict[str, str | None]]:
    """The versions and the runners (by format) a result of this route depends on."""
    versions, runners = _dependencies(registry, source_format, tuple(route))
    return dict(versions), dict(runners)


@functools.lru_cache(maxsize=1024)
def _dependencies(registry: Registry, source_format: str | None, route: tuple[str, ...]
                  ) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str | None], ...]]:
    """dependencies(), computed once per route of a registry (a zoo's cells share a few)."""
    versions, runners = _dependencies_of(registry, source_format, route)
    return tuple(versions.items()), tuple(runners.items())


def _dependencies_of(registry: Registry, source_format: str | None, route: Iterable[str]
                     ) -> tuple[dict[str, str], dict[str, str | None]]:
    conversions = {c.name: c for c in registry.conversions}
    hops = [conversions[name] for name in route if name in conversions]
    formats = ([source_format] if source_format else []) + [h.target for h in hops]
    runners = {f: (r.name if (r := registry.runner(f)) is not None else None) for f in formats}
    plugins = [h.plugin for h in hops] + [registry.formats[f].plugin for f in formats if f in registry.formats]
    plugins += [r.plugin for f in formats if (r := registry.runner(f)) is not None]
    modules = [m for h in hops for m in h.requires]
    modules += [m for f in formats if (r := registry.runner(f)) is not None for m in r.requires]
    if source_format in registry.formats:
        modules += list(registry.formats[source_format].requires)
    if source_format is None:  # failed before the model's format was known: anything could matter
        return environment(registry), runners
    return versions_of(registry, plugins, modules), runners


class Cache:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.entries = self.root / "entries"

    def ready(self) -> None:
        """Make the entries folder, or raise CacheError (exit 2) naming the variable to change."""
        make_folder(self.entries, CacheError, "CONVHUB_CACHE_DIR")

    def folder(self, key: str) -> Path:
        return self.entries / key[:2] / key

    def hasher(self) -> Hasher:
        return Hasher(self.root / "file-digests.json")

    def get(self, key: str, registry: Registry) -> Entry | None:
        """The entry of `key` if it is whole and still holds: the same route for the recorded
        facts, the same runners, the same versions of everything on the route."""
        folder = self.folder(key)
        try:
            record = json.loads((folder / ENTRY).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("key") != key:
            return None
        entry = Entry(key, folder, record)
        if not self._holds(entry, registry):
            return None
        with contextlib.suppress(OSError):
            os.utime(folder / ENTRY)  # last used: `convhub cache clear --unused-for` goes by it
        return entry

    def _holds(self, entry: Entry, registry: Registry) -> bool:
        record = entry.record
        source_format, route = record.get("source_format"), record.get("route")
        if source_format is not None:  # the model was read: its facts chose (or found no) route
            if source_format not in registry.formats:
                return False
            if route_of(registry, source_format, record["target"], record.get("facts") or {}) != route:
                return False
        versions, runners = dependencies(registry, source_format, route or [])
        if versions != record.get("versions") or runners != record.get("runners"):
            return False
        artifact = entry.artifact
        if artifact is not None and (not artifact.exists() or _size(artifact) != record.get("artifact_bytes")):
            return False  # someone removed or changed it: converted again
        return entry.report.is_file()

    def put(self, key: str, record: dict[str, Any], report: str, artifact: Path | None) -> Entry:
        """Store a cell (its artifact is moved in when it lies on the same filesystem, else
        copied); an entry that appeared meanwhile (another run of the same cell) is kept."""
        self.ready()
        _remove_stale(self.entries, TEMP)
        temp = Path(tempfile.mkdtemp(prefix=f"{TEMP}{os.getpid()}-", dir=self.entries))
        try:
            record = {**record, "format": FORMAT, "key": key, "artifact": None, "artifact_bytes": None,
                      "stored": time.time()}
            if artifact is not None:
                (temp / ARTIFACT).mkdir()
                kept = temp / ARTIFACT / artifact.name
                _move_or_copy(artifact, kept)
                record["artifact"], record["artifact_bytes"] = artifact.name, _size(kept)
            (temp / REPORT).write_text(report, encoding="utf-8")
            (temp / ENTRY).write_text(json.dumps(record, indent=1), encoding="utf-8")
            final = self.folder(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():  # a stale or concurrent entry of the same key: replaced whole
                retired = Path(tempfile.mkdtemp(prefix=f"{TEMP}{os.getpid()}-", dir=self.entries))
                with contextlib.suppress(OSError):
                    os.rename(final, retired / "old")
                shutil.rmtree(retired, ignore_errors=True)
            try:
                os.rename(temp, final)
            except OSError:
                if not (final / ENTRY).is_file():
                    raise
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        return Entry(key, final, record)

    def info(self) -> dict[str, Any]:
        entries = list(self._entries())
        sizes = [_size(folder) for folder, _ in entries]
        used = [mtime for _, mtime in entries]
        return {"path": str(self.root), "entries": len(entries), "bytes": sum(sizes),
                "oldest_use": min(used) if used else None, "newest_use": max(used) if used else None}

    def clear(self, unused_for: float | None = None) -> tuple[int, int]:
        """Remove every entry (or those unused for `unused_for` seconds): (entries, bytes) freed."""
        count = freed = 0
        now = time.time()
        for folder, mtime in list(self._entries()):
            if unused_for is not None and now - mtime < unused_for:
                continue
            size = _size(folder)
            retired = folder.with_name(f"{TEMP}{os.getpid()}-{folder.name}")
            try:
                os.rename(folder, retired)  # gone at once for readers; then deleted
            except OSError:
                continue
            shutil.rmtree(retired, ignore_errors=True)
            count, freed = count + 1, freed + size
        if unused_for is None:
            for leftover in self.entries.glob(f"*/{TEMP}*") if self.entries.is_dir() else []:
                shutil.rmtree(leftover, ignore_errors=True)
            (self.root / "file-digests.json").unlink(missing_ok=True)
        return count, freed

    def _entries(self) -> Iterator[tuple[Path, float]]:
        if not self.entries.is_dir():
            return
        for shard in self.entries.iterdir():
            if not shard.is_dir() or shard.name.startswith(TEMP):
                continue
            for folder in shard.iterdir():
                with contextlib.suppress(OSError):
                    yield folder, (folder / ENTRY).stat().st_mtime


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for _, p in walk(path))
    return path.stat().st_size


def _move_or_copy(source: Path, destination: Path) -> None:
    try:
        os.rename(source, destination)
    except OSError:
        if source.is_dir():
            shutil.copytree(source, destination, symlinks=False)
        else:
            shutil.copy2(source, destination)
