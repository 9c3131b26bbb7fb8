"""Running a route: read the source, convert hop by hop, check parity, then publish the output.

The output appears at its destination only when every hop converted and the check passed
(or the caller asked to keep a failed result), and it appears atomically: a rename of a
complete copy, so an interrupted run leaves nothing half-written behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from convhub import capture, parity
from convhub.errors import ConversionError, ConvhubError, InputError, ParityError, UsageError
from convhub.graph import Route, missing_modules
from convhub.plugins import Registry, default_registry
from convhub.types import Artifact, Format

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@dataclass
class ArtifactRecord:
    format: str
    path: Path | None  # None for an intermediate that was not kept
    bytes: int
    plugin: str
    seconds: float

    def to_json(self) -> dict:
        return {
            "format": self.format,
            "path": str(self.path) if self.path else None,
            "bytes": self.bytes,
            "plugin": self.plugin,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ConversionResult:
    """What `convert` did: the route, each artifact, each parity check, and whether all is well."""

    source: str
    route: Route
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    parity: list[parity.ParityEntry] = field(default_factory=list)
    output: Path | None = None
    seed: int = 0
    facts: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "source": self.source,
            "route": self.route.formats,
            "hops": self.route.to_json()["hops"],
            "artifacts": [a.to_json() for a in self.artifacts],
            "parity": [p.to_json() for p in self.parity],
            "output": str(self.output) if self.output else None,
            "seed": self.seed,
            "facts": jsonable(self.facts),
            "error": self.error or None,
            "seconds": round(self.seconds, 3),
        }


def jsonable(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def detect_format(registry: Registry, model: Any) -> Format:
    """The format of a path or object, from the formats' cheap `detect` checks."""
    found = [f for f in registry.formats.values() if f.detect is not None and f.detect(model)]
    if len(found) == 1:
        return found[0]
    what = str(model) if isinstance(model, (str, os.PathLike)) else f"a {type(model).__name__} object"
    if not found:
        raise InputError(f"cannot tell which format {what} is; name it, e.g. keras→tflite")
    names = ", ".join(f.name for f in found)
    raise InputError(f"{what} could be any of {names}; name the source format")


def read_source(
    registry: Registry, model: Any, fmt: Format | None = None, options: Mapping[str, Any] | None = None
) -> Artifact:
    """Turn what the user has into a source Artifact with facts, or fail with InputError."""
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        model = path
    fmt = fmt or detect_format(registry, model)
    if fmt.read is None:
        raise UsageError(f"format {fmt.name!r} cannot be read as a source")
    missing = missing_modules(fmt.requires)
    if missing:
        raise UsageError(f"reading {fmt.name} models needs {', '.join(missing)}, not installed")
    with capture.native_output():
        try:
            artifact = fmt.read(model, dict(options or {}))
        except ConvhubError:
            raise
        except Exception as exc:  # noqa: BLE001 - the framework's loader said no
            what = model if isinstance(model, Path) else f"the {type(model).__name__} object"
            raise InputError(f"{what} is not a readable {fmt.name} model: {_first_line(exc)}") from exc
    return artifact


def publish(built: Path, destination: Path, force: bool) -> None:
    """Copy `built` next to `destination`, then rename it into place (atomic on one filesystem)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        staged = staging / destination.name
        if built.is_dir():
            shutil.copytree(built, staged)
        else:
            shutil.copy2(built, staged)
        if destination.exists() and not force:  # re-checked: something may have appeared meanwhile
            raise UsageError(f"{destination} exists; use --force to overwrite it")
        if destination.is_dir() and not destination.is_symlink():
            old = staging / "previous"
            os.rename(destination, old)
            os.rename(staged, destination)
        else:
            if staged.is_dir() and destination.exists():
                destination.unlink()
            os.replace(staged, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_destination(destination: Path, force: bool) -> None:
    if destination.exists() and not force:
        raise UsageError(f"{destination} exists; use --force to overwrite it")


def run(
    model: Any,
    to: str,
    output: str | os.PathLike | None = None,
    *,
    source: str | None = None,
    force: bool = False,
    check: bool = True,
    seed: int = 0,
    atol: float | None = None,
    rtol: float | None = None,
    keep_failed: bool = False,
    options: Mapping[str, Any] | None = None,
    progress: Progress = _quiet,
    registry: Registry | None = None,
) -> ConversionResult:
    """Convert and check; returns the result even when a hop or the check failed.

    Raises UsageError / InputError / NoRouteError before any conversion starts.
    """
    started = time.perf_counter()
    registry = registry or default_registry()
    target = registry.format(to)
    src_format = registry.format(source) if source else None
    destination = Path(output) if output is not None else None
    if destination is not None:
        check_destination(destination, force)
    options = dict(options or {})

    # Plan before the expensive read, so a pair with no route at all fails in milliseconds.
    if src_format is not None:
        registry.graph.best(src_format.name, target.name)
    progress(f"reading {describe(model)}")
    artifact = read_source(registry, model, src_format, options)
    route = registry.graph.best(artifact.format, target.name, artifact.facts)
    progress(f"route: {route}")
    result = ConversionResult(source=artifact.format, route=route, seed=seed, facts=dict(artifact.facts))

    workdir = Path(tempfile.mkdtemp(prefix="convhub-"))
    try:
        artifacts = [artifact]
        for i, edge in enumerate(route.hops):
            fmt = registry.formats[edge.target]
            dest = workdir / f"{i + 1}-{edge.target}{fmt.suffix}"
            progress(f"converting {edge.source} → {edge.target} ({edge.plugin})")
            t0 = time.perf_counter()
            with capture.native_output() as log:
                try:
                    new_facts = edge.convert(artifacts[-1], dest, options) or {}
                    if not dest.exists():
                        raise ConversionError(f"the converter wrote nothing at {dest.name}")
                except Exception as exc:  # noqa: BLE001 - whatever the converter raised
                    result.error = f"{edge.source} → {edge.target} ({edge.plugin}) failed: {_first_line(exc)}"
            if result.error:
                if log.text.strip():
                    progress("converter output:\n" + log.tail())
                break
            artifacts.append(Artifact(edge.target, dest, facts={**artifacts[-1].facts, **new_facts}))
            result.artifacts.append(
                ArtifactRecord(edge.target, None, size_of(dest), edge.plugin, time.perf_counter() - t0)
            )
        if not result.error and check:
            result.parity = check_parity(registry, artifacts, seed, atol, rtol, progress)
            # An intermediate no runtime could check is tolerated; an unchecked final artifact is not.
            failed = [p for p in result.parity if p.checked and not p.passed]
            if not result.parity[-1].checked:
                failed.append(result.parity[-1])
            if failed:
                result.error = "; ".join(f"{p.format}: {p.reason}" for p in failed)
        if destination is not None and len(artifacts) == len(route.hops) + 1:
            if result.ok or keep_failed:
                publish(artifacts[-1].path, destination, force)
                result.output = destination
                result.artifacts[-1].path = destination
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        result.seconds = time.perf_counter() - started
    return result


def check_parity(
    registry: Registry,
    artifacts: list[Artifact],
    seed: int,
    atol: float | None,
    rtol: float | None,
    progress: Progress = _quiet,
) -> list[parity.ParityEntry]:
    """Run the source and every converted artifact on the same seeded inputs and compare."""
    source, converted = artifacts[0], artifacts[1:]
    reference_runner = registry.runner(source.format)
    if reference_runner is None:
        why = f"no runner for the source format {source.format!r} is installed"
        return [parity.ParityEntry(a.format, False, False, reason=why) for a in converted]
    progress(f"running the source ({source.format}, {reference_runner.name})")
    with capture.native_output():
        try:
            ref_session = reference_runner.load(source)
            feeds = parity.make_inputs(ref_session.inputs, seed)
            reference = ref_session.run(feeds)
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"the source model could not be run: {_first_line(exc)}") from exc
    entries = []
    for art in converted:
        precision = art.facts.get("precision", "float32")
        default = parity.TOLERANCES.get(precision, parity.TOLERANCES["float32"])
        tol = parity.Tolerance(atol if atol is not None else default.atol, rtol if rtol is not None else default.rtol)
        runner = registry.runner(art.format)
        if runner is None:
            needs = sorted({m for r in registry.runners.get(art.format, []) for m in missing_modules(r.requires)})
            why = f"not checked: no runner for {art.format!r}" + (f" (needs {', '.join(needs)})" if needs else "")
            entries.append(parity.ParityEntry(art.format, False, False, tolerance=tol, reason=why))
            continue
        progress(f"checking {art.format} with {runner.name}")
        with capture.native_output():
            try:
                session = runner.load(art)
                outputs = session.run(parity.match_feeds(feeds, ref_session.inputs, session.inputs))
            except Exception as exc:  # noqa: BLE001 - a produced artifact its runtime rejects is a failure
                entries.append(parity.ParityEntry(
                    art.format, True, False, tolerance=tol,
                    reason=f"{runner.name} could not run it: {_first_line(exc)}",
                ))
                continue
        entries.append(parity.compare(art.format, reference, outputs, tol))
    return entries


def describe(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        return str(model)
    return f"in-memory {type(model).__name__}"


def convert(model: Any, to: str, output: str | os.PathLike | None = None, **kwargs: Any) -> ConversionResult:
    """Convert `model` (a path or an in-memory model) to the format `to`, and prove parity.

    Without `output`, the result is written to a new temporary directory (see `result.output`).
    Raises ConversionError or ParityError (with `.result`) when a hop or the check fails.
    """
    if output is None:
        registry = kwargs.get("registry") or default_registry()
        fmt = registry.format(to)
        output = Path(tempfile.mkdtemp(prefix="convhub-out-")) / f"model{fmt.suffix}"
    result = run(model, to, output, **kwargs)
    if not result.ok:
        if result.parity:
            raise ParityError(result.error, result)
        error = ConversionError(result.error)
        error.result = result
        raise error
    return result
