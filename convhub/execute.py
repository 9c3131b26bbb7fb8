"""Executing a plan: every hop and every check as a task in a supervised worker.

Tasks whose inputs are ready run side by side, as many as the pool has workers: the checks of
finished artifacts overlap the hops still converting, and independent hops (TFLite, ONNX and
TF.js from one SavedModel) overlap each other when `--jobs` allows. A task whose model lives
only in the caller's memory (a Keras model object, a JAX callable) runs in the caller's
process, which already has the framework. Each task's failure, crash or timeout becomes the
outcome of that hop or check alone; the comparisons are NumPy in this process.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from convhub import capture, parity, tasks
from convhub.errors import ConversionError, ConvhubError, RuntimeMissing
from convhub.graph import missing_modules
from convhub.plan import GENERAL_OPTIONS, Target, hops_of, is_set
from convhub.plugins import Registry
from convhub.provenance import Provenance
from convhub.results import ArtifactRecord, HopKey, HopOutcome, HopStatus
from convhub.types import Artifact, Conversion, Format, Toolchain
from convhub.workers import DEFAULT_TIMEOUT, Pool, WorkerFailed

Progress = Callable[[str], None]


class Runtime:
    """Where tasks run: the worker pool, or this process for in-memory models."""

    def __init__(self, pool: Pool, timeout: float | None = None):
        self.pool = pool
        self.timeout = timeout or DEFAULT_TIMEOUT

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], *, local: bool = False,
             env: Mapping[str, str] | None = None, warm_spare: bool = False,
             on_note: Callable[[str], None] | None = None, toolchain: Toolchain | None = None) -> Any:
        if not local:
            return self.pool.call(fn, args, env=env, timeout=self.timeout, warm_spare=warm_spare, on_note=on_note,
                                  toolchain=toolchain)
        if toolchain is not None:
            from convhub import toolchains

            why = toolchains.unmet(toolchain)
            if why is not None:  # an in-memory model cannot go to another environment
                raise ConversionError(f"it runs beside the in-memory model, and toolchain {toolchain.name} {why}")
        with capture.native_output() as log:
            try:
                return fn(*args)
            except ConvhubError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported like a worker's failure
                raise WorkerFailed(tasks.first_line(exc), log.text) from exc

    def interrupt(self) -> None:
        self.pool.kill_busy()


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def failure(what: str, exc: BaseException, who: str) -> str:
    """One line: what failed and how ('tflite failed: the converter crashed (SIGSEGV)')."""
    if isinstance(exc, WorkerFailed) and exc.died:
        return f"{what} failed: {who} {exc}"
    return f"{what} failed: {tasks.first_line(exc) if not isinstance(exc, ConvhubError) else exc}"


def details_of(progress: Progress | None) -> Callable[[str], None]:
    """Where a worker's "busy with" lines (convhub.status) go: the display's detail line
    (console.Feedback), or a line of their own for a plain progress callable."""
    detail = getattr(progress, "detail", None)
    if callable(detail):
        return detail  # type: ignore[no-any-return]
    return lambda text: progress(text) if progress is not None and text else None


def read_source(registry: Registry, runtime: Runtime, thing: Any, fmt: Format | None,
                options: Mapping[str, Any], *, warm_spare: bool = False, progress: Progress | None = None) -> Artifact:
    """Read the source in a worker (a path, or a `file.py:NAME` reference whose code then runs
    there), or here for an in-memory model. `warm_spare`: a model file is read in a second new
    worker at the same time, for a run whose next tasks can run side by side (a user's module is
    not: its code runs once)."""
    from convhub.errors import InputError, UsageError

    if fmt is not None:
        missing = missing_modules(fmt.requires)
        if missing:
            raise UsageError(f"reading {fmt.name} models needs {', '.join(missing)}, not installed")
    local = not isinstance(thing, (str, Path))
    formats = list(registry.formats.values())
    what = str(thing) if not local else f"the {type(thing).__name__} object"
    try:
        artifact = runtime.call(tasks.read if local else tasks.read_portable, (fmt, formats, thing, dict(options)),
                                local=local, env=fmt.env if fmt is not None else _common_env(formats),
                                warm_spare=warm_spare and isinstance(thing, Path), on_note=details_of(progress))
    except WorkerFailed as exc:
        raise InputError(f"reading {what} failed: {'its code ' if isinstance(thing, str) else ''}{exc}") from None
    assert isinstance(artifact, Artifact)  # tasks.read checked it
    return artifact


def _common_env(formats: Sequence[Format]) -> Mapping[str, str]:
    """For a source whose format is not known yet (a `file.py:NAME` reference): the settings
    every source format agrees on, so the worker that reads it can serve the hops after it."""
    envs = [dict(f.env) for f in formats if f.read is not None and f.env]
    return envs[0] if envs and all(e == envs[0] for e in envs) else {}


def execute(
    registry: Registry,
    runtime: Runtime,
    source: Artifact,
    targets: Sequence[Target],
    workdir: Path,
    *,
    check: bool,
    seed: int,
    inputs: str | None,
    atol: float | None,
    rtol: float | None,
    progress: Progress,
    read_options: Mapping[str, Any] | None = None,
    provenance: Provenance | None = None,
    benchmark: bool = False,
    extras: dict[str, Any] | None = None,
) -> dict[HopKey, HopOutcome]:
    """Convert every hop once and check every artifact; returns one outcome per hop.
    `read_options`: what the source was read with, so another worker can read it again.
    `provenance`: embed its record into every artifact whose format can hold one. `benchmark`:
    measure each artifact's latency (and the source's) where it is checked. `extras`, when
    given, receives the run's "feeds", the source's outputs on them ("expected"), the
    source's latency ("source_latency") and whether generated feeds were realistic rows."""
    run = _Execution(registry, runtime, source, targets, workdir, check, seed, inputs, progress, read_options,
                     provenance, benchmark)
    try:
        run.start()
        if check:
            run.judge(atol, rtol)
            run.explain_drifts()
    finally:
        run.close()
    if extras is not None:
        extras.update(feeds=run.reference.get("feeds"), expected=run.outputs.get(()),
                      source_latency=run.reference.get("latency"), realistic=run.realistic and inputs is None)
    return run.outcomes


class _Execution:
    """The state of one run's tasks: which are running, what each produced."""

    def __init__(self, registry: Registry, runtime: Runtime, source: Artifact, targets: Sequence[Target],
                 workdir: Path, check: bool, seed: int, inputs: str | None, progress: Progress,
                 read_options: Mapping[str, Any] | None = None, provenance: Provenance | None = None,
                 benchmark: bool = False):
        self.registry, self.runtime, self.source, self.workdir = registry, runtime, source, workdir
        self.check, self.seed, self.inputs, self.progress = check, seed, inputs, progress
        self.hops = hops_of(targets)
        self.children: dict[HopKey, list[HopKey]] = {}
        for key, hop in self.hops.items():
            self.children.setdefault(hop.parent, []).append(key)
        self.outcomes: dict[HopKey, HopOutcome] = {}
        self.outputs: dict[HopKey, dict[str, Any]] = {}  # each run model's outputs on the parity inputs
        self.runners: dict[HopKey, str] = {}
        self.reference: dict[str, Any] = {}  # the source's input specs and feeds, or why it could not run
        self.pending: dict[cf.Future[Any], tuple[str, HopKey]] = {}
        self.started: dict[HopKey, float] = {}
        self.check_seconds: dict[HopKey, float] = {}  # each artifact's run in its runtime, wall time
        self.destinations: dict[HopKey, Path] = {}
        self.read_options = dict(read_options or {})
        self.provenance, self.benchmark = provenance, benchmark
        self.latency: dict[HopKey, dict[str, Any]] = {}
        self.unfinished: set[HopKey] = set()  # artifacts whose examples are not written yet (no check before)
        # Quantized artifacts are judged by agreement too, which needs more rows than a float check,
        # and on realistic rows (parity.make_inputs), those int8 is calibrated on when given no data;
        # calibration data of the user's own sets the ranges instead, and [-1, 1) rows keep to them.
        def given(keys: str) -> bool:
            return any(is_set(t.options.get(k)) for t in targets for hop in t.route.hops for k in getattr(hop, keys))

        quantizing = given("lossy_options")
        self.batch = parity.QUANTIZED_BATCH if quantizing else parity.DEFAULT_BATCH
        self.realistic = quantizing and not given("data_options")
        self.threads = cf.ThreadPoolExecutor(max_workers=max(2, runtime.pool.jobs + 1), thread_name_prefix="convhub")

    def start(self) -> None:
        if self.check:
            self.submit_reference()
        for key in self.children.get((), []):
            self.submit_hop(key)
        self.drain()

    def drain(self) -> None:
        """Wait for every task submitted, and for those their results submit."""
        try:
            while self.pending:
                # With a timeout, so Ctrl-C and SIGTERM are seen at once.
                done, _ = cf.wait(list(self.pending), timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    kind, key = self.pending.pop(future)
                    getattr(self, f"{kind}_done")(key, future)
        except BaseException:
            self.runtime.interrupt()  # Ctrl-C, SIGTERM or bad --inputs: stop what still runs
            self.threads.shutdown(wait=False, cancel_futures=True)
            raise

    def close(self) -> None:
        self.threads.shutdown(wait=True)

    def add_built(self, name: str, artifact: Artifact) -> HopKey:
        """An artifact to check that no hop of this run wrote (`convhub check`'s candidates)."""
        key = ((name, ()),)
        self.outcomes[key] = HopOutcome(key, None, HopStatus.CONVERTED, artifact)
        return key

    def submit(self, kind: str, key: HopKey, fn: Callable[..., Any], args: tuple[Any, ...], *, local: bool,
               env: Mapping[str, str] | None, toolchain: Toolchain | None = None) -> None:
        if local:
            # In this thread, one at a time: capturing redirects the process's stdout and stderr,
            # which overlapping captures in other threads would leave pointing at a log file,
            # and a converter may call convhub again. Ctrl-C raises here, at once.
            future: cf.Future[Any] = cf.Future()
            try:
                future.set_result(self.runtime.call(fn, args, local=True, toolchain=toolchain))
            except Exception as exc:  # noqa: BLE001 - handled with the other outcomes
                future.set_exception(exc)
        else:
            future = self.threads.submit(self.runtime.call, fn, args, local=False, env=env,
                                         on_note=details_of(self.progress), toolchain=toolchain)
        self.pending[future] = (kind, key)

    def source_to_read(self) -> tuple[Format | None, dict[str, Any]]:
        return self.registry.formats.get(self.source.format), self.read_options

    def artifact_of(self, key: HopKey) -> Artifact:
        artifact = self.source if key == () else self.outcomes[key].artifact
        assert artifact is not None, "only a converted hop's artifact is asked for"
        return artifact

    # The source's run, on the parity inputs.
    def submit_reference(self) -> None:
        runner = self.registry.runner(self.source.format)
        if runner is None:
            self.reference["why"] = f"not checked: no runner for the source format {self.source.format!r} is installed"
            return
        self.runners[()] = runner.name
        self.progress(f"running the source ({self.source.format}, {runner.name})")
        source = self.source
        args = (runner, source if source.in_memory else tasks.portable(source),
                self.source_to_read(), self.seed, self.inputs, self.batch, self.benchmark, self.realistic)
        self.submit("reference", (), tasks.run_reference, args, local=source.in_memory, env=runner.env,
                    toolchain=runner.toolchain)

    def reference_done(self, key: HopKey, future: cf.Future[Any]) -> None:
        name = self.runners[()]
        try:
            (self.reference["specs"], self.reference["feeds"], self.outputs[()],
             self.reference["latency"]) = future.result()
        except RuntimeMissing as exc:
            self.reference["why"] = f"not checked: the source's runner {name!r} cannot run here: {exc}"
        except ConvhubError as exc:
            if exc.exit_code == 2:
                raise  # the user's --inputs do not fit the model: their mistake, exit 2
            self.reference["why"] = f"not checked: the source model could not be run: {exc}"
        for done, outcome in list(self.outcomes.items()):
            if outcome.status is HopStatus.CONVERTED and done in self.unfinished:
                self.submit_examples(done)
            elif outcome.status is HopStatus.CONVERTED and "feeds" in self.reference:
                self.submit_check(done)

    # Hops.
    def submit_hop(self, key: HopKey) -> None:
        hop = self.hops[key]
        before = self.artifact_of(hop.parent)
        suffix = self.registry.formats[hop.edge.target].suffix
        self.destinations[key] = self.workdir / f"{len(self.destinations) + 1}-{hop.edge.target}{suffix}"
        self.started[key] = time.perf_counter()
        self.progress(f"converting {hop.edge.source} → {hop.edge.target} ({hop.edge.plugin})")
        fmt = self.registry.formats[hop.edge.target]
        embed = (fmt.embed, self.provenance.record(self.edges_to(key), hop.options)) if (
            self.provenance is not None and fmt.embed is not None) else None
        args = (hop.edge, before if before.in_memory else tasks.portable(before),
                self.source_to_read() if hop.parent == () else None, self.destinations[key], self.hop_options(key),
                embed)
        self.submit("hop", key, tasks.convert, args, local=before.in_memory, env=hop.edge.env,
                    toolchain=hop.edge.toolchain)

    def hop_options(self, key: HopKey) -> dict[str, Any]:
        hop = self.hops[key]
        options = dict(hop.options)
        if hop.edge.toolchain is not None:  # what crosses to another Python: the options it reads, no more
            options = {k: v for k, v in options.items() if k in hop.edge.options or k in GENERAL_OPTIONS}
        if self.inputs is not None and hop.edge.data_options:
            options["check_inputs"] = self.inputs  # calibration it generates takes their shapes (types.Conversion)
        return options

    def hop_done(self, key: HopKey, future: cf.Future[Any]) -> None:
        hop = self.hops[key]
        edge, before = hop.edge, self.artifact_of(hop.parent)
        try:
            new_facts, timing = future.result()
        except ConvhubError as exc:
            if exc.exit_code == 2:
                raise  # a bad option value the hop found: the caller's mistake, not a failed converter
            self.hop_failed(key, exc)
            return
        except Exception as exc:  # noqa: BLE001 - whatever the converter raised
            self.hop_failed(key, exc)
            return
        dest = self.destinations[key]
        artifact = Artifact(edge.target, dest, facts={**before.facts, **edge.produces, **new_facts})
        record = ArtifactRecord(edge.target, None, size_of(dest), edge.plugin, edge.name,
                                time.perf_counter() - self.started[key], new_facts, timing["converter"], timing["read"])
        self.outcomes[key] = HopOutcome(key, edge, HopStatus.CONVERTED, artifact, record)
        for child in self.children.get(key, []):
            self.submit_hop(child)
        if self.registry.formats[edge.target].examples is not None:
            self.unfinished.add(key)
            if not self.check or "feeds" in self.reference or "why" in self.reference:
                self.submit_examples(key)
        elif self.check and "feeds" in self.reference:
            self.submit_check(key)

    def edges_to(self, key: HopKey) -> list[Conversion]:
        """The conversions from the source to this hop's artifact."""
        return [self.hops[key[:i]].edge for i in range(1, len(key) + 1)]

    # Examples: the parity inputs written into an artifact that carries them (TF Serving's warmup
    # requests), before its check, so the check runs on what is published.
    def submit_examples(self, key: HopKey) -> None:
        artifact = self.artifact_of(key)
        write = self.registry.formats[artifact.format].examples
        assert write is not None
        feeds, specs = self.reference.get("feeds"), self.reference.get("specs")
        if feeds is None:  # the check is off: the inputs it would have used
            specs = list(self.source.facts.get("inputs") or [])
            feeds = parity.load_inputs(self.inputs, specs) if self.inputs else parity.make_inputs(
                specs, self.seed, self.batch, ranges=self.source.facts.get("input_ranges"), realistic=self.realistic)
        self.progress(f"writing example requests into the {artifact.format} artifact")
        runner = self.registry.runner(artifact.format)
        args = (write, artifact, feeds, specs, self.outputs.get(()))
        self.submit("examples", key, tasks.write_examples, args, local=False,
                    env=runner.env if runner is not None else self.hops[key].edge.env)

    def examples_done(self, key: HopKey, future: cf.Future[Any]) -> None:
        self.unfinished.discard(key)
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - the artifact is incomplete without them
            self.outcomes[key].status = HopStatus.FAILED
            self.outcomes[key].error = failure(f"writing examples into the {self.artifact_of(key).format} artifact",
                                               exc, "its plugin")
            self.skip_below(key, self.outcomes[key].error)
            return
        record = self.outcomes[key].record
        if record is not None:
            record.bytes = size_of(self.destinations[key])  # with what the examples added
        if self.check and "feeds" in self.reference:
            self.submit_check(key)

    def hop_failed(self, key: HopKey, exc: Exception) -> None:
        edge = self.hops[key].edge
        error = failure(f"{edge.source} → {edge.target} ({edge.plugin})", exc, "the converter")
        self.outcomes[key] = HopOutcome(key, edge, HopStatus.FAILED, error=error)
        log = getattr(exc, "log", "") or ""
        if log.strip():
            self.progress("converter output:\n" + log)
        if isinstance(exc, WorkerFailed) and exc.died and hasattr(self.registry, "mark_broken"):
            self.registry.mark_broken(edge.plugin, f"its converter {exc}")
        self.skip_below(key, error)

    def skip_below(self, key: HopKey, error: str) -> None:
        for child in self.children.get(key, []):
            self.outcomes[child] = HopOutcome(child, self.hops[child].edge, HopStatus.SKIPPED, error=error)
            self.skip_below(child, error)

    # Checks of what the hops wrote.
    def submit_check(self, key: HopKey) -> None:
        artifact = self.artifact_of(key)
        runner = self.registry.runner(artifact.format)
        if runner is None:
            needs = sorted({m for r in self.registry.runners.get(artifact.format, []) for m in missing_modules(r.requires)})
            why = f"not checked: no runner for {artifact.format!r} is installed" + (
                f" (needs {', '.join(needs)})" if needs else "")
            self.outcomes[key].check = parity.ParityEntry(artifact.format, False, False, reason=why)
            return
        self.runners[key] = runner.name
        self.progress(f"checking {artifact.format} with {runner.name}")
        args = (runner, artifact, self.reference["feeds"], self.reference["specs"], self.benchmark)
        self.check_seconds[key] = time.perf_counter()
        self.submit("check", key, tasks.run_candidate, args, local=False, env=runner.env, toolchain=runner.toolchain)

    def check_done(self, key: HopKey, future: cf.Future[Any]) -> None:
        artifact, name = self.artifact_of(key), self.runners[key]
        self.check_seconds[key] = time.perf_counter() - self.check_seconds[key]
        try:
            self.outputs[key], self.runners[key], latency = future.result()
            if latency is not None:
                self.latency[key] = latency
        except RuntimeMissing as exc:
            self.outcomes[key].check = parity.ParityEntry(artifact.format, False, False, name, reason=f"not checked: {exc}")
        except Exception as exc:  # noqa: BLE001 - a produced artifact its runtime rejects is a failure
            self.outcomes[key].check = parity.ParityEntry(
                artifact.format, True, False, name, reason=failure(name, exc, "its runtime"))

    def judge(self, atol: float | None, rtol: float | None) -> None:
        """Compare every artifact's outputs with the source's, and with the hop's before it."""
        why = self.reference.get("why")
        for key, outcome in self.outcomes.items():
            if outcome.status is not HopStatus.CONVERTED:
                continue
            artifact = self.artifact_of(key)
            tol = parity.tolerance_for(artifact.facts.get("precision"), atol, rtol)
            if outcome.check is not None:
                outcome.check.tolerance = outcome.check.tolerance or tol
                continue
            if why or key not in self.outputs:
                outcome.check = parity.ParityEntry(artifact.format, False, False, tolerance=tol,
                                                   reason=why or "not checked")
                continue
            parent = self.hops[key].parent if key in self.hops else ()
            previous = (self.artifact_of(parent).format, self.outputs[parent]) if parent in self.outputs and parent else None
            outcome.check = parity.judge(artifact.format, self.runners[key], self.outputs[()], self.outputs[key],
                                         tol, previous)
            outcome.check.seconds = self.check_seconds.get(key)
            outcome.check.latency = self.latency.get(key)

    # Drifts: the hop that added one says where it comes from, when its edge can.
    def explain_drifts(self) -> None:
        for key, outcome in self.outcomes.items():
            hop, entry = self.hops.get(key), outcome.check
            if hop is None or entry is None or not entry.drifted or hop.edge.explain_drift is None:
                continue
            parent = self.outcomes.get(hop.parent)
            if not entry.added_after(parent.check if parent is not None else None):
                continue  # the drift came in earlier (or unchecked): the error line names no cause here
            before = self.artifact_of(hop.parent)
            self.progress(f"explaining {self.artifact_of(key).format}'s drift ({hop.edge.plugin})")
            args = (hop.edge, before if before.in_memory else tasks.portable(before), self.artifact_of(key),
                    self.hop_options(key), self.reference["feeds"], self.reference["specs"])
            self.submit("explanation", key, tasks.explain_drift, args, local=before.in_memory, env=hop.edge.env,
                        toolchain=hop.edge.toolchain)
        self.drain()

    def explanation_done(self, key: HopKey, future: cf.Future[Any]) -> None:
        entry = self.outcomes[key].check
        try:
            said = future.result()
        except Exception as exc:  # noqa: BLE001 - a diagnosis that fails leaves the verdict as it was
            self.progress(f"the drift could not be explained: {exc if isinstance(exc, ConvhubError) else tasks.first_line(exc)}")
            return
        if entry is not None and said:
            entry.cause = said
