"""Running routes: read the source, convert hop by hop, check parity, then publish the outputs.

Several targets are converted in one process and share their common hops: the SavedModel on the
way to TFLite, ONNX and TF.js is written once. An output appears at its destination only when
every hop on its route converted and the check passed (or the caller asked to keep a failed
result), and it appears atomically: a rename of a complete copy, so an interrupted run leaves
nothing half-written behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from convhub import capture, parity
from convhub.errors import ConversionError, ConvhubError, InputError, ParityError, RuntimeMissing, UsageError
from convhub.graph import Route, missing_modules
from convhub.jsonout import jsonable
from convhub.plugins import Registry, default_registry
from convhub.types import Artifact, Conversion, Format

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
    conversion: str
    seconds: float
    facts: dict[str, Any] = field(default_factory=dict)  # what the hop reported about what it wrote

    def to_json(self) -> dict:
        return {
            "format": self.format,
            "path": str(self.path) if self.path else None,
            "bytes": self.bytes,
            "plugin": self.plugin,
            "conversion": self.conversion,
            "seconds": round(self.seconds, 3),
            "facts": jsonable(self.facts),
        }


@dataclass
class ConversionResult:
    """What converting to one target did: the route, each artifact, each parity check."""

    source: str
    route: Route
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    parity: list[parity.ParityEntry] = field(default_factory=list)
    output: Path | None = None
    seed: int | None = 0
    inputs: str = "random"  # or the user's .npz
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
            "target": self.route.formats[-1],
            "route": self.route.formats,
            "hops": self.route.to_json()["hops"],
            "artifacts": [a.to_json() for a in self.artifacts],
            "parity": [p.to_json() for p in self.parity],
            "output": str(self.output) if self.output else None,
            "seed": self.seed,
            "inputs": self.inputs,
            "facts": jsonable(self.facts),
            "error": self.error or None,
            "seconds": round(self.seconds, 3),
        }


def detect_format(registry: Registry, model: Any) -> Format:
    """The format of a path or object, from the formats' cheap `detect` checks."""
    found = [f for f in registry.formats.values() if f.detect is not None and f.detect(model)]
    if len(found) == 1:
        return found[0]
    what = str(model) if isinstance(model, (str, os.PathLike)) else f"a {type(model).__name__} object"
    if not found:
        raise InputError(f"cannot tell which format {what} is; name it, e.g. keras→tflite or --from keras")
    names = ", ".join(f.name for f in found)
    raise InputError(f"{what} could be any of {names}; name the source format with --from")


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
            os.rename(destination, staging / "previous")  # removed with the staging folder
            os.rename(staged, destination)
        else:
            if staged.is_dir() and destination.exists():
                destination.unlink()
            os.replace(staged, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_destination(destination: Path, force: bool, directory: bool) -> None:
    """Fail before any work when the output can't be written: it exists (without --force), it
    is a folder where a file goes or the reverse (never replaced, even with --force), or its
    parent is a file."""
    parent = next((p for p in destination.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"{parent} is a file, so {destination} cannot be written")
    if not destination.exists():
        return
    if destination.is_dir() != directory:
        have, want = ("a folder", "a file") if destination.is_dir() else ("a file", "a folder")
        raise UsageError(f"{destination} is {have}, but this output is {want}; choose another path")
    if not force:
        raise UsageError(f"{destination} exists; use --force to overwrite it")


# Options every source or the check reads; the rest must be read by an edge on the route.
GENERAL_OPTIONS = {"seed", "safe_mode", "signature"}


def check_options(options: Mapping[str, Any], routes: Mapping[str, Route]) -> None:
    """An option no conversion on any route reads is a mistake (--quantize with --to onnx)."""
    used = {key for route in routes.values() for hop in route.hops for key in hop.options}
    for key, value in options.items():
        if key in GENERAL_OPTIONS or key in used or value is None or value is False:
            continue
        routes_text = " and ".join(str(r) for r in routes.values())
        raise UsageError(f"option {key!r} is not used by any conversion on the route {routes_text}")


def outputs_in(directory: str | os.PathLike, stem: str, formats: Sequence[Format]) -> dict[str, Path]:
    """Where several targets go in one folder: <stem><suffix>, or <stem>_<format> for directories."""
    return {f.name: Path(directory) / f"{stem}{f.suffix or '_' + f.name}" for f in formats}


def default_output_name(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        return Path(model).name.split(".")[0] or "model"
    return getattr(model, "name", None) or "model"


def run(model: Any, to: str, output: str | os.PathLike | None = None, **kwargs: Any) -> ConversionResult:
    """Convert to one format and check; returns the result even when a hop or the check failed."""
    return run_many(model, [to], {to: output}, **kwargs)[0]


def run_many(
    model: Any,
    targets: Sequence[str],
    outputs: Mapping[str, str | os.PathLike | None],
    *,
    source: str | None = None,
    force: bool = False,
    check: bool = True,
    seed: int = 0,
    inputs: str | os.PathLike | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    keep_failed: bool = False,
    keep_intermediates: str | os.PathLike | None = None,
    options: Mapping[str, Any] | None = None,
    progress: Progress = _quiet,
    registry: Registry | None = None,
    routes: Mapping[str, Route] | None = None,
) -> list[ConversionResult]:
    """Convert `model` to every target in one process, sharing common hops, and check each artifact.

    `routes` forces the route to some targets instead of the router's choice (the testing kit
    uses it to put one edge under test). Raises UsageError / InputError / NoRouteError before
    any conversion starts; conversion and parity failures are reported in the results.
    """
    started = time.perf_counter()
    registry = registry or default_registry()
    if not targets:
        raise UsageError("name at least one target format")
    for name in targets:
        registry.format(name)
    src_format = registry.format(source) if source else None
    destinations = {t: Path(outputs[t]) if outputs.get(t) is not None else None for t in targets}
    for target, dest in destinations.items():
        if dest is not None:
            check_destination(dest, force, registry.format(target).directory)
    if keep_intermediates is not None:
        Path(keep_intermediates).mkdir(parents=True, exist_ok=True)
    options = {"seed": seed, **(options or {})}  # e.g. generated calibration data follows the run's seed

    # Plan before the expensive read, so a pair with no route, or an option no hop reads, fails in
    # milliseconds (planned again below with the model's facts).
    if src_format is not None:
        check_options(options, {t: registry.graph.best(src_format.name, t) for t in targets})
    progress(f"reading {describe(model)}")
    source_artifact = read_source(registry, model, src_format, options)
    forced = dict(routes or {})
    routes = {t: forced.get(t) or registry.graph.best(source_artifact.format, t, source_artifact.facts) for t in targets}
    check_options(options, routes)
    for route in routes.values():
        progress(f"route: {route}")

    workdir = Path(tempfile.mkdtemp(prefix="convhub-"))
    try:
        built, records, errors = _convert_all(routes, source_artifact, workdir, options, registry, progress)
        entries: dict[tuple[str, ...], parity.ParityEntry] = {}
        feeds_from = "random"
        if check and built.keys() - {()}:
            entries = _check_all(registry, built, seed, inputs, atol, rtol, progress)
            feeds_from = str(inputs) if inputs is not None else "random"
        results = []
        for route in routes.values():
            prefixes = [_prefix(route.hops[: i + 1]) for i in range(len(route.hops))]
            result = ConversionResult(
                source=source_artifact.format,
                route=route,
                artifacts=[records[p] for p in prefixes if p in records],
                parity=[entries[p] for p in prefixes if p in entries],
                seed=seed if inputs is None else None,
                inputs=feeds_from,
                facts=dict(source_artifact.facts),
            )
            failed_hop = next((errors[p] for p in prefixes if p in errors), None)
            if failed_hop:
                result.error = failed_hop
            elif check:
                # An intermediate no runtime could check is tolerated; an unchecked final artifact is not.
                blame = [
                    _blame(entry, result.parity[i - 1] if i else None)
                    for i, entry in enumerate(result.parity)
                    if (entry.checked and not entry.passed) or (not entry.checked and i == len(result.parity) - 1)
                ]
                result.error = "; ".join(blame)
            results.append(result)
        # Published only once every result is decided, so a failure never leaves some outputs behind.
        for result in results:
            final = built.get(_prefix(result.route.hops))
            dest = destinations[result.route.formats[-1]]
            if final is not None and dest is not None and (result.ok or keep_failed):
                publish(final.path, dest, force)
                result.output = dest
                result.artifacts[-1].path = dest
        if keep_intermediates is not None:
            _keep(built, records, routes, Path(keep_intermediates))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    for result in results:
        result.seconds = elapsed
    return results


def _prefix(hops: Sequence[Conversion]) -> tuple[str, ...]:
    return tuple(h.name for h in hops)


def _blame(entry: parity.ParityEntry, before: parity.ParityEntry | None) -> str:
    """Say which output failed and, when the hop before it still matched the source, which hop
    added the error."""
    if not entry.checked:
        return f"{entry.format}: {entry.reason}"
    where = f"{entry.format}"
    added_here = before is None or (before.checked and before.passed)
    if entry.previous and added_here and entry.vs_previous and not all(d.passed for d in entry.vs_previous):
        where += f" (the error appears in the {entry.previous} → {entry.format} hop)"
    return f"{where}: {entry.reason}"


def _convert_all(routes, source_artifact, workdir, options, registry, progress):
    """Run every hop of every route once; a hop shared by several routes is converted once."""
    built: dict[tuple[str, ...], Artifact] = {(): source_artifact}
    records: dict[tuple[str, ...], ArtifactRecord] = {}
    errors: dict[tuple[str, ...], str] = {}
    hop_number = 0  # each hop writes to a path of its own, even after another hop failed
    for route in routes.values():
        for i, edge in enumerate(route.hops):
            prefix = _prefix(route.hops[: i + 1])
            if prefix in built:
                continue
            if prefix in errors:
                break
            fmt = registry.formats[edge.target]
            hop_number += 1
            dest = workdir / f"{hop_number}-{edge.target}{fmt.suffix}"
            progress(f"converting {edge.source} → {edge.target} ({edge.plugin})")
            t0 = time.perf_counter()
            previous = built[prefix[:-1]]
            with capture.native_output() as log:
                try:
                    returned = edge.convert(previous, dest, options)
                    if returned is not None and not isinstance(returned, Mapping):
                        raise ConversionError(f"it returned a {type(returned).__name__}, not a dict of facts or None")
                    new_facts = dict(returned or {})
                    if not dest.exists():
                        raise ConversionError(f"the converter wrote nothing at {dest.name}")
                except (UsageError, InputError):
                    raise  # the caller's mistake (a bad option value...): exit 2, not a failed converter
                except Exception as exc:  # noqa: BLE001 - whatever the converter raised
                    errors[prefix] = f"{edge.source} → {edge.target} ({edge.plugin}) failed: {_first_line(exc)}"
            if prefix in errors:
                if log.text.strip():
                    progress("converter output:\n" + log.tail())
                break
            built[prefix] = Artifact(edge.target, dest, facts={**previous.facts, **edge.produces, **new_facts})
            records[prefix] = ArtifactRecord(
                edge.target, None, size_of(dest), edge.plugin, edge.name, time.perf_counter() - t0, new_facts
            )
    return built, records, errors


def _check_all(registry, built, seed, inputs, atol, rtol, progress):
    """Run the source and every built artifact on the same inputs; compare each with the source
    and with the artifact one hop before it."""
    source = built[()]
    entries: dict[tuple[str, ...], parity.ParityEntry] = {}
    reference_runner = registry.runner(source.format)
    if reference_runner is None:
        return _unchecked(built, f"no runner for the source format {source.format!r} is installed")
    progress(f"running the source ({source.format}, {reference_runner.name})")
    with capture.native_output():
        try:
            ref_session = reference_runner.load(source)
        except RuntimeMissing as exc:
            return _unchecked(built, f"the source's runner {reference_runner.name!r} cannot run here: {exc}")
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"the source model could not be run: {_first_line(exc)}") from exc
    feeds = (
        parity.load_inputs(inputs, ref_session.inputs) if inputs is not None
        else parity.make_inputs(ref_session.inputs, seed)
    )
    with capture.native_output():
        try:
            outputs = {(): ref_session.run(feeds)}
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"the source model could not be run: {_first_line(exc)}") from exc
    for prefix, artifact in built.items():
        if not prefix:
            continue
        tol = parity.tolerance_for(artifact.facts.get("precision"), atol, rtol)
        runner = registry.runner(artifact.format)
        if runner is None:
            needs = sorted({m for r in registry.runners.get(artifact.format, []) for m in missing_modules(r.requires)})
            why = f"not checked: no runner for {artifact.format!r} is installed" + (
                f" (needs {', '.join(needs)})" if needs else ""
            )
            entries[prefix] = parity.ParityEntry(artifact.format, False, False, tolerance=tol, reason=why)
            continue
        progress(f"checking {artifact.format} with {runner.name}")
        with capture.native_output():
            try:
                session = runner.load(artifact)
                outputs[prefix] = session.run(parity.match_feeds(feeds, ref_session.inputs, session.inputs))
            except RuntimeMissing as exc:
                entries[prefix] = parity.ParityEntry(
                    artifact.format, False, False, runner.name, tol, reason=f"not checked: {exc}"
                )
                continue
            except Exception as exc:  # noqa: BLE001 - a produced artifact its runtime rejects is a failure
                entries[prefix] = parity.ParityEntry(
                    artifact.format, True, False, runner.name, tol,
                    reason=f"{runner.name} could not run it: {_first_line(exc)}",
                )
                continue
        parent = prefix[:-1]
        previous = (built[parent].format, outputs[parent]) if parent and parent in outputs else None
        entries[prefix] = parity.judge(artifact.format, runner.name, outputs[()], outputs[prefix], tol, previous)
    return entries


def _unchecked(built, why: str) -> dict[tuple[str, ...], parity.ParityEntry]:
    """Every built artifact reported as not checked, for a reason that holds for all of them."""
    return {p: parity.ParityEntry(a.format, False, False, reason=f"not checked: {why}") for p, a in built.items() if p}


def _keep(built, records, routes, directory: Path) -> None:
    """Copy every intermediate (not the final artifacts) into `directory` for inspection."""
    finals = {_prefix(r.hops) for r in routes.values()}
    for i, (prefix, artifact) in enumerate(p for p in built.items() if p[0] and p[0] not in finals):
        dest = directory / f"{i + 1}-{'-'.join(a.split('->')[-1] for a in prefix)}{Path(artifact.path).suffix}"
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        shutil.copytree(artifact.path, dest) if artifact.path.is_dir() else shutil.copy2(artifact.path, dest)
        records[prefix].path = dest


def describe(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        return str(model)
    return f"in-memory {type(model).__name__}"


def _raise_for(result: ConversionResult) -> None:
    if result.ok:
        return
    if result.parity:  # a drifted artifact, or a final artifact no runtime here could check
        raise ParityError(result.error, result)
    error = ConversionError(result.error)
    error.result = result
    raise error


def convert(
    model: Any, to: str | Sequence[str], output: str | os.PathLike | None = None, **kwargs: Any
) -> ConversionResult | list[ConversionResult]:
    """Convert `model` (a path or an in-memory model) to format `to` and prove parity.

    `to` may be a list of formats: then `output` is a directory, each target is written there as
    <name><suffix>, shared hops run once, and a list of results is returned.
    Without `output`, results go to a new temporary directory (see `result.output`).
    Raises ConversionError (a converter failed) or ParityError (an artifact drifted, or the final
    one could not be checked), each with `.result`.
    """
    registry = kwargs.get("registry") or default_registry()
    many = not isinstance(to, str)
    targets = list(to) if many else [to]
    if many or output is None:
        directory = Path(output) if output is not None else Path(tempfile.mkdtemp(prefix="convhub-out-"))
        outputs = outputs_in(directory, default_output_name(model), [registry.format(t) for t in targets])
    else:
        outputs = {to: output}
    results = run_many(model, targets, outputs, **kwargs)
    for result in results:
        _raise_for(result)
    return results if many else results[0]


@dataclass
class CheckResult:
    """`convhub check`: artifacts compared with a reference, nothing converted."""

    reference: Artifact
    parity: list[parity.ParityEntry]
    candidates: list[Artifact]
    seed: int | None = 0
    inputs: str = "random"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.parity) and all(p.checked and p.passed for p in self.parity)

    @property
    def error(self) -> str:
        return "; ".join(f"{p.format} ({c.path}): {p.reason}" for p, c in zip(self.parity, self.candidates) if not p.passed)

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "reference": {"format": self.reference.format, "path": str(self.reference.path) if self.reference.path else None},
            "candidates": [{"format": c.format, "path": str(c.path) if c.path else None} for c in self.candidates],
            "parity": [p.to_json() for p in self.parity],
            "seed": self.seed,
            "inputs": self.inputs,
            "facts": jsonable(self.reference.facts),
            "error": self.error or None,
            "seconds": round(self.seconds, 3),
        }


def check(
    reference: Any,
    candidates: Sequence[Any],
    *,
    source: str | None = None,
    seed: int = 0,
    inputs: str | os.PathLike | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    options: Mapping[str, Any] | None = None,
    progress: Progress = _quiet,
    registry: Registry | None = None,
) -> CheckResult:
    """Run a reference and candidate artifacts (paths or models) on the same inputs and compare."""
    started = time.perf_counter()
    registry = registry or default_registry()
    if not candidates:
        raise UsageError("name at least one artifact to check against the reference")
    progress(f"reading {describe(reference)}")
    ref = read_source(registry, reference, registry.format(source) if source else None, options)
    read = []
    for candidate in candidates:
        progress(f"reading {describe(candidate)}")
        read.append(read_source(registry, candidate, None, options))
    built = {(): ref, **{(f"{i}",): a for i, a in enumerate(read)}}
    entries = _check_all(registry, built, seed, inputs, atol, rtol, progress)
    return CheckResult(
        ref, [entries[(f"{i}",)] for i in range(len(read))], read,
        seed=seed if inputs is None else None, inputs=str(inputs) if inputs is not None else "random",
        seconds=time.perf_counter() - started,
    )
