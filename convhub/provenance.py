"""Where an artifact came from: one record, embedded in the artifact and kept beside it.

The record says which convhub made it, from which source (its format and content hash), by
which route, with which options and converter / runtime versions, checked on which inputs.
Each format's plugin embeds it where the format has room (Format.embed: ONNX metadata_props,
TFLite metadata, TF.js userDefinedMetadata, SavedModel assets.extra/) in the hop's worker, right
after the hop wrote the artifact, so the parity check runs on the bytes that are published.

The parity verdict is only known after that check, and writing it into the artifact afterwards
would change bytes the check did not run on. So the embedded record says where the verdict is,
and the sidecar NAME.convhub.json written beside every output (in the same transaction) holds
the same record with the verdict and the SHA-256 of the artifact's final bytes: `convhub
inspect` shows both and says whether the sidecar belongs to the file beside it.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from convhub.parity import ParityEntry
    from convhub.plugins import Registry
    from convhub.types import Conversion

RECORD_VERSION = 1
SIDECAR_SUFFIX = ".convhub.json"
KEY = "convhub.provenance"  # the name the record is embedded under, where a format has names
VERDICT_ELSEWHERE = f"in the sidecar NAME{SIDECAR_SUFFIX} (decided after this record was embedded)"


def sidecar_path(output: Path) -> Path:
    """model.tflite → model.tflite.convhub.json; a folder's beside it (serving/model/2 → 2.convhub.json)."""
    return output.with_name(output.name + SIDECAR_SUFFIX)


def content_hash(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (their relative paths and contents, in sorted
    order), so a copy of a SavedModel folder hashes the same as the folder."""
    digest = hashlib.sha256()
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    for file in files:
        if file != path:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def arrays_hash(arrays: Mapping[str, Any]) -> str:
    """SHA-256 of named arrays: each name, dtype, shape and bytes, in name order."""
    import numpy as np

    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{value.dtype.str}\0{value.shape}\0".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def versions_of(modules: Sequence[str]) -> dict[str, str]:
    """The installed distributions that provide these import names, with their versions
    (found from the installed metadata, nothing imported)."""
    found: dict[str, str] = {}
    for module in modules:
        for dist in _distributions().get(module.partition(".")[0], []):
            try:
                found[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


def describe_source(model: Any, fmt: str) -> dict[str, Any]:
    """The source as the record names it: its format, where it was, and its content hash (a
    `file.py:NAME` reference's file; none for an object only the caller's memory holds)."""
    from convhub import pyref

    if isinstance(model, str) and pyref.looks_like_reference(model):
        file = Path(model.rpartition(":")[0])
        digest = content_hash(file) if file.is_file() else None
        return {"format": fmt, "path": model, "sha256": digest, "hashed": "the reference's Python file"}
    if isinstance(model, (str, os.PathLike)):
        return {"format": fmt, "path": str(model), "sha256": content_hash(Path(model))}
    return {"format": fmt, "path": None, "sha256": None, "hashed": f"nothing: an in-memory {type(model).__name__}"}


class Provenance:
    """The parts of every record of one run, and the record of each artifact it writes."""

    def __init__(self, registry: Registry, source: Mapping[str, Any], inputs: Mapping[str, Any]):
        from convhub import __version__

        self.registry = registry
        self.base = {
            "provenance_version": RECORD_VERSION,
            "convhub": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            "run": uuid.uuid4().hex,
            "python": platform.python_version(),
            "source": dict(source),
            "inputs": dict(inputs),
        }

    def record(self, edges: Sequence[Conversion], options: Mapping[str, Any]) -> dict[str, Any]:
        """The record of the artifact the last of `edges` writes."""
        from convhub.jsonout import jsonable

        target = edges[-1].target
        runner = self.registry.runner(target)
        modules = [m for e in edges for m in e.requires] + list(runner.requires if runner else ())
        plugins = dict.fromkeys([*(e.plugin for e in edges), *([runner.plugin] if runner else [])])
        read = {k for e in edges for k in e.options}
        runtime: dict[str, str] = {}
        if runner is not None and runner.versions is not None:
            try:
                runtime = {str(k): str(v) for k, v in runner.versions().items()}
            except Exception as exc:  # noqa: BLE001 - a plugin's bug costs this line only
                runtime = {runner.name: f"unknown ({type(exc).__name__}: {exc})"}
        from convhub import toolchains

        # A hop or runner in a toolchain ran with the toolchain's packages, not this environment's.
        elsewhere = [t for t in (*(e.toolchain for e in edges), runner.toolchain if runner else None)
                     if t is not None and toolchains.unmet(t) is not None]
        runtime.update({k: v for t in elsewhere for k, v in toolchains.versions(t).items()})
        return {
            **self.base,
            "format": target,
            "route": [edges[0].source, *(e.target for e in edges)],
            "hops": [{"conversion": e.name, "plugin": e.plugin} for e in edges],
            "options": jsonable({k: v for k, v in sorted(options.items()) if k in read or k == "seed"}),
            "runner": runner.name if runner else None,
            "versions": {
                **{f"plugin {p}": (self.registry.plugins[p].version if p in self.registry.plugins else None) or "?"
                   for p in plugins},
                **versions_of(modules),
                **runtime,
            },
            "parity": VERDICT_ELSEWHERE,
        }


def verdict(entry: ParityEntry | None, ok: bool, error: str) -> dict[str, Any]:
    """The parity summary a sidecar adds to the record."""
    from convhub.results import CheckStatus

    summary: dict[str, Any] = {"ok": ok, "status": CheckStatus.of(entry).value, "error": error or None}
    if entry is not None:
        summary.update({
            "runner": entry.runner, "max_abs_diff": entry.max_abs_diff,
            "tolerance": str(entry.tolerance) if entry.tolerance else None, "criterion": entry.criterion,
            "evidence": ("weak" if entry.weak_evidence else "strong") if entry.checked and entry.passed else None,
            "weak_evidence": entry.weak_evidence, "reason": entry.reason or None,
        })
    return summary


def sidecar(record: Mapping[str, Any], built: Path, entry: ParityEntry | None, ok: bool, error: str,
            feeds: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full record of a published artifact: the embedded one, the verdict, and the hash of
    the artifact's final bytes (and of the inputs it was checked on)."""
    inputs = dict(record.get("inputs") or {})
    if feeds:
        inputs["sha256"] = arrays_hash(feeds)
    return {**record, "inputs": inputs, "parity": verdict(entry, ok, error),
            "artifact": {"format": record.get("format"), "sha256": content_hash(built)}}


def dumps(record: Mapping[str, Any]) -> str:
    from convhub.jsonout import jsonable

    return json.dumps(jsonable(record), indent=2, allow_nan=False, sort_keys=False) + "\n"


def read_sidecar(artifact: Path) -> dict[str, Any] | None:
    """The sidecar beside an artifact, with "matches": whether it describes these very bytes."""
    path = sidecar_path(artifact)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"path": str(path), "error": f"unreadable: {exc}"}
    if not isinstance(record, dict):
        return {"path": str(path), "error": "not a JSON object"}
    expected = (record.get("artifact") or {}).get("sha256")
    return {"path": str(path), "matches": expected == content_hash(artifact) if expected else None, "record": record}
