"""What runs inside a worker (or, for an in-memory model, in the caller's process).

Each task takes and returns small records: Artifacts without their in-memory model, NumPy
feeds and outputs, facts. A worker keeps the sources it read, so the hops and the runner that
need the loaded model (a Keras model, a JAX function) do not load it again.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from convhub.errors import ConversionError, ConvhubError, InputError, UsageError
from convhub.types import Artifact, Conversion, Format, Runner, TensorSpec

_sources: dict[tuple[Any, ...], Artifact] = {}  # this process's sources, with their models


def _reference_key(reference: str) -> tuple[Any, ...]:
    """A reference's module may change between two calls of a library session: its file's
    modification time is part of the key."""
    file = reference.rpartition(":")[0]
    try:
        return ("reference", reference, os.stat(file).st_mtime_ns)
    except OSError:
        return ("reference", reference)


def _origin(artifact: Artifact) -> tuple[Any, ...] | None:
    if artifact.reference is not None:
        return _reference_key(artifact.reference)
    if artifact.path is not None:
        try:
            st = os.stat(artifact.path)
        except OSError:
            return None
        return ("path", artifact.format, str(artifact.path), st.st_mtime_ns, st.st_size)
    return None


def portable(artifact: Artifact) -> Artifact:
    """The artifact as it travels between processes: everything but the in-memory model."""
    return dataclasses.replace(artifact, model=None) if artifact.model is not None else artifact


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def read(fmt: Format | None, formats: Sequence[Format], thing: Any, options: Mapping[str, Any]) -> Artifact:
    """Read a source: a path, an object, or a `file.py:NAME` reference (imported here, so its
    code runs in the worker). `fmt` None: detected among `formats`."""
    reference = None
    if isinstance(thing, str):
        from convhub import pyref

        cached = _sources.get(_reference_key(thing))
        if cached is not None:
            return cached
        reference, thing = thing, pyref.load(thing)
    if fmt is None:
        fmt = detect(formats, thing)
    if fmt.read is None:
        raise UsageError(f"format {fmt.name!r} cannot be read as a source")
    try:
        artifact = fmt.read(thing, dict(options))
    except ConvhubError:
        raise
    except Exception as exc:  # noqa: BLE001 - the framework's loader said no
        what = thing if isinstance(thing, Path) else (reference or f"the {type(thing).__name__} object")
        raise InputError(f"{what} is not a readable {fmt.name} model: {first_line(exc)}") from exc
    if not isinstance(artifact, Artifact):
        raise ConversionError(f"format {fmt.name!r} (plugin {fmt.plugin}) read() returned a {type(artifact).__name__}")
    if reference is not None:
        artifact = dataclasses.replace(artifact, reference=reference)
    key = _origin(artifact)
    if key is not None and artifact.model is not None:
        _sources.clear()  # one source per worker is enough; models are large
        _sources[key] = artifact
    return artifact


def read_portable(fmt: Format | None, formats: Sequence[Format], thing: Any, options: Mapping[str, Any]) -> Artifact:
    """read() in a worker: the model stays there (kept for the next tasks), the facts travel."""
    return portable(read(fmt, formats, thing, options))


def detect(formats: Sequence[Format], thing: Any) -> Format:
    found = []
    for f in formats:
        try:
            if f.detect is not None and f.detect(thing):
                found.append(f)
        except Exception:  # noqa: BLE001 - a broken detect() only means "not mine"
            continue
    if len(found) == 1:
        return found[0]
    what = f"a {type(thing).__name__} object"
    if not found:
        raise InputError(f"cannot tell which format {what} is; name it with --from (or source=...)")
    raise InputError(f"{what} could be any of {', '.join(f.name for f in found)}; name the source format with --from")


def materialize(artifact: Artifact, fmt: Format | None, read_options: Mapping[str, Any]) -> Artifact:
    """The artifact with its in-memory model when this process has it or can load it again: a
    hop may run in another worker than the one that read the source (that one was busy)."""
    if artifact.model is not None:
        return artifact
    key = _origin(artifact)
    if key in _sources:
        return dataclasses.replace(artifact, model=_sources[key].model)
    if fmt is not None and fmt.read is not None and artifact.format == fmt.name:
        thing = artifact.reference if artifact.reference is not None else artifact.path
        if thing is not None:
            again = read(fmt, [], thing, read_options)
            return dataclasses.replace(artifact, model=again.model)
    return artifact


def convert(edge: Conversion, artifact: Artifact, source: tuple[Format, Mapping[str, Any]] | None,
            destination: Path, options: Mapping[str, Any],
            embed: tuple[Callable[[Path, Mapping[str, Any]], None], Mapping[str, Any]] | None = None,
            ) -> tuple[dict[str, Any], dict[str, float]]:
    """Run one hop; returns the facts it reported and its seconds: the converter's own
    (its `convert` call alone) and reading the source into this worker (0 for later hops). A hop that wrote nothing
    has failed. `source`: the source's format and reading options when this hop starts from it.
    `embed`: the target format's embed() and the provenance record it writes into the artifact."""
    import time

    started = time.perf_counter()
    if source is not None:
        artifact = materialize(artifact, *source)
    read = time.perf_counter() - started
    started = time.perf_counter()
    returned = edge.convert(artifact, destination, options)
    seconds = time.perf_counter() - started
    if returned is not None and not isinstance(returned, Mapping):
        raise ConversionError(f"it returned a {type(returned).__name__}, not a dict of facts or None")
    if not destination.exists():
        raise ConversionError(f"the converter wrote nothing at {destination.name}")
    if embed is not None:
        write, record = embed
        try:
            write(destination, record)
        except Exception as exc:  # noqa: BLE001 - the plugin's embed(), told in one line
            raise ConversionError(f"embedding the provenance record failed: {first_line(exc)}") from exc
    return dict(returned or {}), {"converter": seconds, "read": read}


def run_reference(runner: Runner, artifact: Artifact, source: tuple[Format, Mapping[str, Any]], seed: int,
                  inputs: str | None, batch: int | None = None, benchmark: bool = False, realistic: bool = False,
                  ) -> tuple[list[TensorSpec], dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """Run the source on seeded inputs (`batch` rows, integers in the ranges the source's facts
    give; `realistic` ones for a quantized route, see parity.make_inputs) or on the user's .npz:
    (its input specs, the feeds, the outputs, its latency when `benchmark`)."""
    from convhub import parity

    session = runner.load(materialize(artifact, *source))
    specs = list(session.inputs)
    feeds = parity.load_inputs(inputs, specs) if inputs is not None else parity.make_inputs(
        specs, seed, batch or parity.DEFAULT_BATCH, ranges=artifact.facts.get("input_ranges"), realistic=realistic)
    outputs = dict(session.run(feeds))
    return specs, feeds, outputs, _latency(session, feeds, runner.name) if benchmark else None


def run_candidate(runner: Runner, artifact: Artifact, feeds: Mapping[str, Any], source_specs: Sequence[TensorSpec],
                  benchmark: bool = False) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """Run an artifact on the source's inputs, re-keyed by its own input names: its outputs, the
    runtime that ran it (a session's `runtime` when the runner chose one, e.g. TensorFlow's
    interpreter for a .tflite with Flex ops; else the runner's name), and its latency when
    `benchmark`."""
    from convhub import parity

    session = runner.load(artifact)
    own = parity.match_feeds(feeds, source_specs, session.inputs)
    outputs = dict(session.run(own))
    runtime = str(getattr(session, "runtime", None) or runner.name)
    return outputs, runtime, _latency(session, own, runtime) if benchmark else None


def explain_drift(edge: Conversion, before: Artifact, artifact: Artifact, options: Mapping[str, Any],
                  feeds: Mapping[str, Any], source_specs: Sequence[TensorSpec]) -> str | None:
    """A hop's word on where its artifact drifts (Conversion.explain_drift), on the check's
    inputs keyed by the artifact's own input names."""
    assert edge.explain_drift is not None, "only asked of an edge that explains drifts"
    said = edge.explain_drift(before, artifact, options, _own_names(feeds, source_specs, artifact))
    return " ".join(str(said).split()) if said else None


def _latency(session: Any, feeds: Mapping[str, Any], runtime: str) -> dict[str, Any]:
    from convhub import benchmark

    return benchmark.measure(session, feeds, runtime)


def write_examples(write: Callable[[Path, Mapping[str, Any], Mapping[str, Any] | None], None], artifact: Artifact,
                   feeds: Mapping[str, Any], source_specs: Sequence[TensorSpec], expected: Mapping[str, Any] | None,
                   ) -> None:
    """A format's examples(): the parity inputs, keyed by the artifact's own input names when
    its facts give them, written into the artifact before its check."""
    assert artifact.path is not None, "examples are written into a file or folder"
    write(artifact.path, _own_names(feeds, source_specs, artifact), expected)


def _own_names(feeds: Mapping[str, Any], source_specs: Sequence[TensorSpec], artifact: Artifact) -> Mapping[str, Any]:
    """The source's inputs keyed by the artifact's own input names when its facts give them; else
    as the source named them (the check says what does not fit)."""
    from convhub import parity

    try:
        return parity.match_feeds(feeds, source_specs, artifact.facts.get("inputs") or source_specs)
    except ValueError:
        return feeds
