"""The public API: convert and check, composed of planning, execution in workers, checking,
results and publishing (one module each).

Everything the user gave is validated before any framework loads; every hop and runner runs
in a supervised worker (an in-memory model's in this process); the outputs are published in
one transaction once every result is decided; the work folder never outlives the call.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, Union, overload

from convhub import deploy, parity, plan, validate, workers  # noqa: F401 - parity is part of the API
from convhub.errors import UsageError
from convhub.execute import Runtime, execute, size_of
from convhub.execute import read_source as _read_in_worker
from convhub.graph import Route
from convhub.plugins import Registry, default_registry
from convhub.publish import Transaction, work_folder
from convhub.results import (  # noqa: F401 - part of the API
    ArtifactRecord,
    CheckResult,
    CheckStatus,
    ConversionResult,
    HopOutcome,
    HopKey,
    HopStatus,
    Results,
    result_for,
)
from convhub.types import Artifact, Format

if TYPE_CHECKING:
    import numpy.typing as npt

Progress = Callable[[str], None]
# A plugin option's value, as its Option declares it: checked and converted by Option.parse.
OptionValue = Union[str, int, float, bool, "os.PathLike[str]", None]
# Parity inputs: an .npz path, or arrays keyed by input name.
Inputs = Union[str, "os.PathLike[str]", Mapping[str, "npt.ArrayLike"]]


def _quiet(_: str) -> None:
    pass


def detect_format(registry: Registry, model: Any) -> Format:
    """The format of a path or object, from the formats' cheap `detect` checks."""
    if hasattr(registry, "detect_format"):
        return registry.detect_format(model)
    from convhub.tasks import detect

    return detect(list(registry.formats.values()), model)


def _as_source(model: Any) -> Any:
    """A path becomes a Path (checked to be a file or folder); a `file.py:NAME` string stays a
    reference, imported in a worker; anything else is an in-memory model."""
    from convhub import pyref

    if isinstance(model, str) and pyref.looks_like_reference(model):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        validate.model_path(path)
        return path
    return model


def _paths_in(models: Sequence[Any]) -> list[Path]:
    """The models given as paths (not references, not objects): outputs must keep off them."""
    from convhub import pyref

    return [Path(m) for m in models if isinstance(m, (str, os.PathLike)) and not (
        isinstance(m, str) and pyref.looks_like_reference(m))]


def _source_format(registry: Registry, model: Any, source: str | None) -> Format | None:
    if source is not None:
        return registry.format(source)
    if isinstance(model, Path):
        return detect_format(registry, model)
    return None  # detected where the model is (a reference's object lives in the worker)


def read_source(registry: Registry, model: Any, fmt: Format | None = None,
                options: Mapping[str, Any] | None = None, *, runtime: Runtime | None = None) -> Artifact:
    """Turn what the user has into a source Artifact with facts, or fail with InputError."""
    model = _as_source(model)
    fmt = fmt or _source_format(registry, model, None)
    return _read_in_worker(registry, runtime or Runtime(workers.shared_pool()), model, fmt, options or {})


def outputs_in(directory: str | os.PathLike[str], stem: str, formats: Sequence[Format]) -> dict[str, Path]:
    """Where several targets go in one folder: <stem><suffix>, or <stem>_<format> for directories."""
    return {f.name: Path(directory) / f"{stem}{f.suffix or '_' + f.name}" for f in formats}


def default_output_name(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        text = str(model)
        if ":" in text and not os.path.exists(text):  # file.py:NAME
            return text.rpartition(":")[2]
        return Path(text).name.split(".")[0] or "model"
    return getattr(model, "name", None) or "model"


def describe(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        return str(model)
    return f"in-memory {type(model).__name__}"


def run(model: Any, to: str, output: str | os.PathLike[str] | None = None, **kwargs: Any) -> ConversionResult:
    """Convert to one format and check; returns the result even when a hop or the check failed."""
    return run_many(model, [to], {to: output}, **kwargs)[0]


def run_many(
    model: Any,
    targets: Sequence[str],
    outputs: Mapping[str, str | os.PathLike[str] | None],
    *,
    source: str | None = None,
    force: bool = False,
    check: bool = True,
    seed: int = 0,
    inputs: Inputs | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    keep_failed: bool = False,
    keep_intermediates: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
    jobs: int | None = None,
    timeout: float | None = None,
    progress: Progress = _quiet,
    registry: Registry | None = None,
    routes: Mapping[str, Route] | None = None,
    via: str | None = None,
    benchmark: bool = False,
    save_io: str | os.PathLike[str] | None = None,
) -> list[ConversionResult]:
    """Convert `model` to every target, sharing common hops, and check each artifact.

    `routes` forces the route to some targets instead of the router's choice (the testing kit
    uses it to put one edge under test); `via` makes every target's route pass through that
    format. `inputs`: an .npz path or a dict of arrays keyed by input name. `benchmark`: measure
    each artifact's latency and the source's; `save_io`: an .npz to write the check's inputs and
    the source's outputs on them to (replayable with `inputs`). Raises UsageError /
    InputError / NoRouteError before any conversion starts; conversion and parity failures are
    reported in the results.
    """
    if not isinstance(inputs, Mapping):
        return _run_many(model, targets, outputs, source=source, force=force, check=check, seed=seed,
                         inputs=inputs, atol=atol, rtol=rtol, keep_failed=keep_failed,
                         keep_intermediates=keep_intermediates, options=options, jobs=jobs, timeout=timeout,
                         progress=progress, registry=registry, routes=routes, via=via, benchmark=benchmark,
                         save_io=save_io)
    with _arrays_file(inputs) as path:
        results = _run_many(model, targets, outputs, source=source, force=force, check=check, seed=seed,
                            inputs=path, atol=atol, rtol=rtol, keep_failed=keep_failed,
                            keep_intermediates=keep_intermediates, options=options, jobs=jobs, timeout=timeout,
                            progress=progress, registry=registry, routes=routes, via=via, benchmark=benchmark,
                            save_io=save_io)
    for result in results:
        result.inputs = GIVEN_ARRAYS
    return results


GIVEN_ARRAYS = "arrays given in the call"


@contextlib.contextmanager
def _arrays_file(arrays: Mapping[str, Any]) -> Iterator[Path]:
    """A dict of input arrays as the .npz the workers read (checked like a user's .npz), removed after."""
    import numpy as np

    if not arrays:
        raise UsageError("inputs: the dict holds no arrays")
    values = {}
    for name, value in arrays.items():
        if not isinstance(name, str):
            raise UsageError(f"inputs: keys are input names (str), not {name!r}")
        try:
            values[name] = np.asarray(value)
        except Exception as exc:  # noqa: BLE001 - whatever the object's __array__ raised
            raise UsageError(f"inputs[{name!r}] is not an array: {type(exc).__name__}: {exc}") from None
        if values[name].dtype == object:
            raise UsageError(f"inputs[{name!r}] is not a numeric array (it holds Python objects)")
    fd, name = tempfile.mkstemp(prefix="convhub-inputs-", suffix=".npz")
    os.close(fd)
    try:
        np.savez(name, **values)
        yield Path(name)
    finally:
        os.unlink(name)


def _run_many(
    model: Any,
    targets: Sequence[str],
    outputs: Mapping[str, str | os.PathLike[str] | None],
    *,
    source: str | None,
    force: bool,
    check: bool,
    seed: int,
    inputs: str | os.PathLike[str] | None,
    atol: float | None,
    rtol: float | None,
    keep_failed: bool,
    keep_intermediates: str | os.PathLike[str] | None,
    options: Mapping[str, Any] | None,
    jobs: int | None,
    timeout: float | None,
    progress: Progress,
    registry: Registry | None,
    routes: Mapping[str, Route] | None,
    via: str | None,
    benchmark: bool = False,
    save_io: str | os.PathLike[str] | None = None,
) -> list[ConversionResult]:
    started = time.perf_counter()
    registry = registry or default_registry()
    if not targets:
        raise UsageError("name at least one target format")
    if isinstance(targets, str) or not all(isinstance(t, str) for t in targets):
        raise UsageError(f"targets are format names, not {targets!r}")
    # Users' names (aliases, any case) become the formats' own.
    outputs = {registry.format(t).name: dest for t, dest in outputs.items()}
    targets = [registry.format(t).name for t in targets]
    via = registry.format(via).name if via is not None else None
    target_formats = {t: registry.format(t) for t in targets}
    validate.seed(seed)
    atol, rtol = validate.tolerance("atol", atol), validate.tolerance("rtol", rtol)
    validate.positive("jobs", jobs, whole=True)
    validate.positive("timeout", timeout)
    options = {"seed": seed, **_typed_options(registry, options or {})}  # calibration data follows the seed
    forced = dict(routes or {})
    # Planned before anything is read, so a pair with no route, or an option no hop reads,
    # fails in milliseconds; planned again with the model's facts once it is read.
    if source is not None:
        source = registry.format(source).name
        _plan_early(registry, registry.format(source), targets, forced, options, via)
    sources = _paths_in([model])
    destinations = {t: Path(dest) if (dest := outputs.get(t)) is not None else None for t in targets}
    for name, path in destinations.items():
        if path is not None and target_formats[name].versions is None:
            validate.suffix(path, target_formats[name], registry.formats)
            validate.destination(path, force=force, directory=target_formats[name].directory, sources=sources)
    versions = deploy.version_folders(target_formats, destinations, options, sources)
    deploy.check_outputs(destinations, versions, save_io, [*sources, *([Path(inputs)] if inputs is not None else [])],
                         check=check, benchmark=benchmark)
    if keep_intermediates is not None:
        validate.destination(Path(keep_intermediates) / "probe", force=True, directory=False, sources=sources)
        Path(keep_intermediates).mkdir(parents=True, exist_ok=True)
    model = _as_source(model)
    if inputs is not None:
        validate.data_file(Path(inputs), "--inputs")
        parity.read_npz(inputs)
    src_format = _source_format(registry, model, source)
    if src_format is not None and source is None:
        _plan_early(registry, src_format, targets, forced, options, via)
    runtime = Runtime(workers.shared_pool(jobs), timeout)
    progress(f"reading {describe(model)}")
    # Several targets' hops and checks go side by side in two warm workers. (One target's hop
    # and source run are too short to repay a second framework import: measured with -j 1 vs 2.)
    source_artifact = _read_in_worker(registry, runtime, model, src_format, options,
                                      warm_spare=len(targets) > 1, progress=progress)
    chosen = {t: forced.get(t) or registry.graph.best(source_artifact.format, t, source_artifact.facts, _via(via, t))
              for t in targets}
    if inputs is not None and source_artifact.facts.get("inputs"):
        parity.load_inputs(inputs, source_artifact.facts["inputs"])  # they fit the model, before any hop
    read_as = registry.formats[source_artifact.format]
    plan.check_source_options(options, read_as, registry.formats)
    per_target = plan.options_per_target(options, chosen, read_as.options)
    planned = [plan.Target(t, chosen[t], destinations[t], per_target[t]) for t in targets]
    for target in planned:
        progress(f"route: {target.route}")

    workdir = work_folder()
    extras: dict[str, Any] = {}
    try:
        # Provenance for what is published; a run that writes nothing (the matrix) skips hashing and embedding.
        writes = keep_intermediates is not None or any(t.destination is not None for t in planned)
        prov = deploy.provenance_of(registry, model, source_artifact, seed, inputs) if writes else None
        outcomes = execute(registry, runtime, source_artifact, planned, workdir, check=check, seed=seed,
                           inputs=str(inputs) if inputs is not None else None, atol=atol, rtol=rtol,
                           progress=progress, read_options=options, benchmark=benchmark, extras=extras,
                           provenance=prov)
        results = [
            result_for(t.route, [outcomes[k] for k in t.keys if k in outcomes], source_artifact, check,
                       seed if inputs is None else None,
                       str(inputs) if inputs is not None else "realistic" if extras.get("realistic") else "random")
            for t in planned
        ]
        # Published only once every result is decided, all in one transaction.
        transaction = Transaction()
        published = {}
        for target, result in zip(planned, results):
            final = outcomes.get(target.keys[-1]) if target.keys else None
            deploy.add_figures(result, source_artifact, extras)
            if final is not None and final.artifact is not None and final.artifact.path is not None and (
                target.destination is not None) and (
                result.ok or keep_failed
            ):
                assert prov is not None  # a run with a destination writes
                published[id(result)] = deploy.publish(transaction, final, target, force,
                                                       versions.get(target.format), result, workdir, extras, prov)
        if keep_intermediates is not None:
            _keep(outcomes, planned, Path(keep_intermediates), transaction)
        deploy.save_io(transaction, save_io, extras, workdir)
        transaction.commit()
        for result in results:
            if id(result) in published:
                result.output = published[id(result)].destination
        for result in results:
            if result.output is not None and result.artifacts:
                result.artifacts[-1].path = result.output
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    for result in results:
        result.seconds = elapsed
    return results


def _typed_options(registry: Registry, options: Mapping[str, Any]) -> dict[str, Any]:
    """Each option as its plugin declared it (type, range, choices): UsageError before any work."""
    declared = getattr(registry, "options", {})
    typed = {}
    for key, value in options.items():
        option = declared.get(key.rpartition(".")[2])
        typed[key] = option.parse(value) if option is not None else value
        if option is not None and option.type == "path" and typed[key] is not None:
            validate.data_file(Path(typed[key]), option.flag)  # no FIFO or device, before anything loads
    return typed


def _plan_early(registry: Registry, src_format: Format, targets: Sequence[str], forced: Mapping[str, Route],
                options: Mapping[str, Any], via: str | None = None) -> None:
    plan.check_source_options(options, src_format, registry.formats)
    routes = {t: forced.get(t) or registry.graph.best(src_format.name, t, None, _via(via, t)) for t in targets}
    plan.options_per_target(options, routes, src_format.options)


def _via(via: str | None, target: str) -> str | None:
    """`via` for one target: a run to tflite and savedmodel via savedmodel ends one route there."""
    return via if via != target else None


def _keep(outcomes: Mapping[HopKey, HopOutcome], planned: Sequence[plan.Target], directory: Path,
          transaction: Transaction) -> None:
    """Publish every intermediate (not the final artifacts) into `directory` for inspection."""
    finals = {t.keys[-1] for t in planned if t.keys}
    kept = [(o, o.artifact.path) for k, o in outcomes.items()
            if k not in finals and o.artifact is not None and o.artifact.path is not None]
    for i, (outcome, path) in enumerate(kept):
        dest = directory / f"{i + 1}-{'-'.join(name.split('->')[-1] for name, _ in outcome.key)}{path.suffix}"
        transaction.add(path, dest, True)
        if outcome.record is not None:
            outcome.record.path = dest


@overload
def convert(model: Any, to: str, output: str | os.PathLike[str] | None = None, *, source: str | None = None,
            via: str | None = None, options: Mapping[str, OptionValue] | None = None, inputs: Inputs | None = None,
            seed: int = 0, atol: float | None = None, rtol: float | None = None, check: bool = True,
            force: bool = False, keep_failed: bool = False, keep_intermediates: str | os.PathLike[str] | None = None,
            jobs: int | None = None, timeout: float | None = None, progress: Progress | None = None,
            registry: Registry | None = None, benchmark: bool = False, save_io: str | os.PathLike[str] | None = None,
            example_inputs: Sequence[Any] | str | os.PathLike[str] | None = None,
            **plugin_options: OptionValue) -> ConversionResult: ...


@overload
def convert(model: Any, to: Sequence[str], output: str | os.PathLike[str] | None = None, *,
            source: str | None = None, via: str | None = None, options: Mapping[str, OptionValue] | None = None,
            inputs: Inputs | None = None, seed: int = 0, atol: float | None = None, rtol: float | None = None,
            check: bool = True, force: bool = False, keep_failed: bool = False,
            keep_intermediates: str | os.PathLike[str] | None = None, jobs: int | None = None,
            timeout: float | None = None, progress: Progress | None = None, registry: Registry | None = None,
            benchmark: bool = False, save_io: str | os.PathLike[str] | None = None,
            example_inputs: Sequence[Any] | str | os.PathLike[str] | None = None, **plugin_options: OptionValue) -> Results: ...


def convert(
    model: Any,
    to: str | Sequence[str],
    output: str | os.PathLike[str] | None = None,
    *,
    source: str | None = None,
    via: str | None = None,
    options: Mapping[str, OptionValue] | None = None,
    inputs: Inputs | None = None,
    seed: int = 0,
    atol: float | None = None,
    rtol: float | None = None,
    check: bool = True,
    force: bool = False,
    keep_failed: bool = False,
    keep_intermediates: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    timeout: float | None = None,
    progress: Progress | None = None,
    registry: Registry | None = None,
    benchmark: bool = False,
    save_io: str | os.PathLike[str] | None = None,
    example_inputs: Sequence[Any] | str | os.PathLike[str] | None = None,
    **plugin_options: OptionValue,
) -> ConversionResult | Results:
    """Convert `model` to format `to`, run the result and the source on the same inputs, and
    return what happened; raise if a converter failed or the result computes something else.

    Args:
        model: a path (a .keras file, a SavedModel folder...), a `file.py:NAME` reference, or an
            in-memory model (a keras.Model, a convhub_jax.JaxFunction...).
        to: the target format ("tflite", "onnx", "tfjs"...; aliases such as "tf.js" and any
            case work), or a list of them: then `output` is a folder, shared hops run once, and
            a list of results comes back.
        output: where to write it; without it, a new temporary folder (see `result.output`).
        source: the source format, when it cannot be told from the model.
        via: a format every route must pass through (e.g. "savedmodel").
        options: the plugins' options by key, e.g. {"quantize": "int8"}, or for one target of
            several {"tflite.quantize": "int8"}; each checked against the declaring plugin's
            `Option` (type, range, choices). Declared options may also be given as keyword
            arguments: `convert(m, to="tflite", quantize="int8")`.
        inputs: the parity inputs, an .npz path or a dict of arrays keyed by input name;
            default: random inputs from `seed`.
        seed: the seed of the random parity inputs.
        atol, rtol: tolerances overriding those chosen by each artifact's precision.
        check: False skips the parity check.
        force: overwrite outputs that exist.
        keep_failed: write the output even when the check fails.
        keep_intermediates: a folder to keep the intermediate artifacts in.
        jobs: worker processes at most; timeout: seconds a hop or a check may take.
        progress: called with a line for each step.
        registry: the plugins to use (default: every installed one).
        benchmark: also measure each artifact's latency in its runtime, and the source's.
        save_io: an .npz to write the check's inputs and the source's outputs on them to.
        example_inputs: for a source traced from its inputs (a JAX function, a Flax module), a
            tuple of arrays, one per positional input, as `jax.export` and `torch.export` take;
            or, as on the command line, an .npz of them in order or a `file.py:NAME` reference.

    Returns:
        A ConversionResult (`.summary()`, `.to_json()`, `.raise_for_status()`), or Results, a
        list of them, when `to` is a list.

    Raises:
        UsageError: a bad argument or option, before anything runs; the message names the valid ones.
        InputError: the model or the inputs cannot be read.
        NoRouteError: no chain of conversions can take this model (`.reasons` says why).
        ConversionError: a converter failed (`.result` holds what ran).
        ParityError: an artifact drifted, or the final one could not be checked (`.result`).
    """
    registry = registry or default_registry()
    many = not isinstance(to, str)
    if many and (not isinstance(to, Sequence) or not all(isinstance(t, str) for t in to)):
        raise UsageError(f"to: a format name or a list of them, not {to!r}")
    targets = [registry.format(t).name for t in ([to] if isinstance(to, str) else to)]
    given: dict[str, Any] = {**(options or {}), **_keyword_options(registry, plugin_options)}
    if example_inputs is not None:  # read by the source's format (a JAX function, a Flax module)
        given["example_inputs"] = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (
            os.fspath(example_inputs) if isinstance(example_inputs, os.PathLike) else example_inputs)
    made = None
    if many or output is None:
        if output is None:
            made = Path(tempfile.mkdtemp(prefix="convhub-out-"))
        directory = Path(output) if output is not None else made
        assert directory is not None
        outputs: dict[str, str | os.PathLike[str] | None] = dict(
            outputs_in(directory, default_output_name(model), [registry.format(t) for t in targets]))
    else:
        outputs = {targets[0]: output}
    try:
        results = Results(run_many(
            model, targets, outputs, source=source, force=force, check=check, seed=seed, inputs=inputs, atol=atol,
            rtol=rtol, keep_failed=keep_failed, keep_intermediates=keep_intermediates, options=given, jobs=jobs,
            timeout=timeout, progress=progress or _quiet, registry=registry, via=via, benchmark=benchmark,
            save_io=save_io))
    except BaseException:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise
    if made is not None and not any(r.output for r in results):
        shutil.rmtree(made, ignore_errors=True)  # nothing was kept: leave no empty folder behind
    results.raise_for_status()
    return results if many else results[0]


# convert()'s own parameters: a keyword argument that is none of them must be a plugin option.
_PARAMETERS = ("source", "via", "options", "inputs", "seed", "atol", "rtol", "check", "force", "keep_failed",
               "keep_intermediates", "jobs", "timeout", "progress", "registry", "benchmark", "save_io",
               "example_inputs")


def _keyword_options(registry: Registry, given: Mapping[str, OptionValue]) -> dict[str, OptionValue]:
    """Plugin options given as keyword arguments: each must be declared by a plugin, or the
    message names what would have been valid."""
    from convhub.errors import did_you_mean

    declared = getattr(registry, "options", {})
    for key in given:
        if key not in declared:
            near = did_you_mean(key, [*declared, *_PARAMETERS])
            raise UsageError(
                f"convert() has no parameter or plugin option {key!r}",
                hint=f"{near + ' ' if near else ''}plugin options: {', '.join(sorted(declared)) or 'none'}"
                     f"; parameters: {', '.join(_PARAMETERS)}")
    return dict(given)


def check(
    reference: Any,
    candidates: Sequence[Any],
    *,
    source: str | None = None,
    seed: int = 0,
    inputs: str | os.PathLike[str] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    options: Mapping[str, Any] | None = None,
    jobs: int | None = None,
    timeout: float | None = None,
    progress: Progress = _quiet,
    registry: Registry | None = None,
    benchmark: bool = False,
    save_io: str | os.PathLike[str] | None = None,
) -> CheckResult:
    """Run a reference and candidate artifacts (paths or models) on the same inputs and compare.
    `benchmark`: measure the latency of each in its runtime; `save_io`: write the inputs and the
    reference's outputs on them to this .npz."""
    started = time.perf_counter()
    registry = registry or default_registry()
    if not candidates:
        raise UsageError("name at least one artifact to check against the reference")
    validate.seed(seed)
    atol, rtol = validate.tolerance("atol", atol), validate.tolerance("rtol", rtol)
    if inputs is not None:
        validate.data_file(Path(inputs), "--inputs")
        parity.read_npz(inputs)
    reference = _as_source(reference)
    candidates = [_as_source(c) for c in candidates]
    deploy.check_outputs({}, {}, save_io, _paths_in([reference, *candidates]))
    runtime = Runtime(workers.shared_pool(jobs), timeout)
    progress(f"reading {describe(reference)}")
    ref = _read_in_worker(registry, runtime, reference, _source_format(registry, reference, source), options or {},
                          progress=progress)
    read = []
    for candidate in candidates:
        progress(f"reading {describe(candidate)}")
        read.append(_read_in_worker(registry, runtime, candidate, _source_format(registry, candidate, None), options or {},
                                    progress=progress))
    extras: dict[str, Any] = {}
    entries = _check_artifacts(registry, runtime, ref, read, seed, inputs, atol, rtol, progress, options or {},
                               benchmark, extras)
    if save_io is not None:
        workdir = work_folder()
        try:
            transaction = Transaction()
            if deploy.save_io(transaction, save_io, extras, workdir):
                transaction.commit()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return CheckResult(
        ref, entries, read,
        seed=seed if inputs is None else None, inputs=str(inputs) if inputs is not None else "random",
        seconds=time.perf_counter() - started, source_latency=extras.get("source_latency"),
        source_bytes=size_of(ref.path) if ref.path is not None and ref.path.exists() else None,
    )


def _check_artifacts(registry: Registry, runtime: Runtime, ref: Artifact, read: list[Artifact], seed: int,
                     inputs: str | os.PathLike[str] | None, atol: float | None, rtol: float | None,
                     progress: Progress, read_options: Mapping[str, Any], benchmark: bool = False,
                     extras: dict[str, Any] | None = None) -> list[parity.ParityEntry]:
    """The checks of `convhub check`: each candidate is checked as if a hop had written it."""
    from convhub.execute import _Execution

    run = _Execution(registry, runtime, ref, [], Path(tempfile.gettempdir()), True, seed,
                     str(inputs) if inputs is not None else None, progress, read_options, benchmark=benchmark)
    keys = [run.add_built(f"candidate-{i}", artifact) for i, artifact in enumerate(read)]
    try:
        run.start()
        run.judge(atol, rtol)
    finally:
        run.close()
    if extras is not None:
        extras.update(feeds=run.reference.get("feeds"), expected=run.outputs.get(()),
                      source_latency=run.reference.get("latency"))
    checks = [run.outcomes[key].check for key in keys]
    return [c for c in checks if c is not None]  # judge() decided every one
