"""`convhub batch`: a job file's cells (model × target × option set), converted and checked once
each, cached by content, published into an output layout, on this machine or a Ray cluster.

    plan     the job file checked (convhub.jobfile); each cell's cache key from the content of
             its model (convhub.cache); the cells whose entries still hold are done already
    work     the other cells, grouped into works: one model, one option set, and the same
             parity batch (float cells apart from quantizing ones), so one run converts a
             model's shared hops (keras → savedmodel) once for all of its targets
    execute  each work is `pipeline.run_many` in the warm workers: here (LocalExecutor, works
             side by side) or in Ray actors (convhub.raycluster); the same function either way
    store    each decided cell goes into the cache as it arrives (a Ctrl-C loses only the works
             under way), then is published: its artifact and its report in one transaction
    overview a matrix (convhub.batchview) in the terminal, as JSON lines and as an HTML page

A cell fails alone: a converter that crashes, hangs or raises fails its own hop (the workers
see to that), a work that goes wrong fails its own cells.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol, Sequence

from convhub import cache as cache_module
from convhub.errors import ConvhubError, NoRouteError, UsageError
from convhub.jobfile import Cell, Job, JobModel
from convhub.jsonout import jsonable

if TYPE_CHECKING:
    from convhub.plugins import Registry

EXECUTORS = ("local", "ray")
MARKER = ".convhub-batch"  # in an output folder batch writes: later runs may replace what is in it
INDEX, JSONL, REPORTS = "index.html", "cells.jsonl", "reports"
# Failures that say more about the machine than about the cell: not cached, tried again next run.
TRANSIENT = ("timeout (--timeout) and was stopped", "was killed (SIGKILL", "the worker pool was shut down")

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# --- what runs ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkCell:
    key: str
    target: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class Work:
    """Cells of one model and option set that convert in one run (their shared hops once)."""

    model: str
    source: str  # a path or a file.py:NAME reference
    format: str | None
    inputs: str | None
    cells: tuple[WorkCell, ...]
    seed: int = 0
    atol: float | None = None
    rtol: float | None = None
    check: bool = True
    files: tuple[str, ...] = ()  # what the work reads, for an executor on another machine

    @property
    def label(self) -> str:
        return f"{self.model}: {', '.join(c.target for c in self.cells)}"

    def moved(self, old: str, new: str) -> Work:
        """The same work with the files under folder `old` read from folder `new` instead."""
        def move(value: Any) -> Any:
            if isinstance(value, str) and (value == old or value.startswith(old.rstrip(os.sep) + os.sep)):
                return new + value[len(old.rstrip(os.sep)):]
            return value

        cells = tuple(replace(c, options={k: move(v) for k, v in c.options.items()}) for c in self.cells)
        return replace(self, source=move(self.source), inputs=move(self.inputs), cells=cells,
                       files=tuple(move(f) for f in self.files))


@dataclass
class Outcome:
    """What running one cell gave: the conversion result as JSON, its report, its artifact."""

    key: str
    target: str
    ok: bool
    error: str
    report: str
    result: dict[str, Any] | None = None
    artifact: Path | None = None
    source_format: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    route: list[str] | None = None
    seconds: float = 0.0
    decided: bool = True  # False: stopped by the machine (timeout, out of memory, a lost node)

    def record(self) -> dict[str, Any]:
        """The part of a cache entry that describes the result."""
        return {"target": self.target, "ok": self.ok, "error": self.error, "result": self.result,
                "source_format": self.source_format, "facts": self.facts, "route": self.route,
                "seconds": round(self.seconds, 3)}


def run_work(work: Work, folder: Path, *, registry: Registry | None = None, jobs: int | None = None,
             timeout: float | None = None) -> list[Outcome]:
    """Convert and check a work's cells in the warm workers; every cell comes back decided, its
    artifact (when it passed) in `folder`. The same code runs locally and in a Ray actor."""
    from convhub.pipeline import run_many
    from convhub.plugins import default_registry

    registry = registry or default_registry()
    formats = {c.target: registry.format(c.target) for c in work.cells}
    outputs: dict[str, str | os.PathLike[str] | None] = {
        c.target: folder / c.target / f"{work.model}{formats[c.target].suffix or '_' + c.target}" for c in work.cells}
    options = {f"{c.target}.{k}": v for c in work.cells for k, v in c.options.items()}
    try:
        results = run_many(work.source, [c.target for c in work.cells], outputs, source=work.format, seed=work.seed,
                           inputs=work.inputs, atol=work.atol, rtol=work.rtol, check=work.check, options=options,
                           jobs=jobs, timeout=timeout, registry=registry)
    except NoRouteError as exc:
        if len(work.cells) > 1:  # one target has no route for this model: the others still run
            return [o for c in work.cells for o in run_work(replace(work, cells=(c,)), folder, registry=registry,
                                                             jobs=jobs, timeout=timeout)]
        return [failed_outcome(work, c, exc.message) for c in work.cells]
    except ConvhubError as exc:  # the model cannot be read, or an option does not fit its route
        return [failed_outcome(work, c, exc.message) for c in work.cells]
    except Exception as exc:  # noqa: BLE001 - a bug must cost this work's cells, not the batch
        return [failed_outcome(work, c, f"internal error: {type(exc).__name__}: {exc}", decided=False) for c in work.cells]
    from convhub import report

    outcomes = []
    for cell, result in zip(work.cells, results):
        payload = result.to_json()
        output = Path(payload["output"]) if payload.get("output") else None
        payload["output"] = None  # set where the cell is published
        for artifact in payload["artifacts"]:
            artifact["path"] = None
        outcomes.append(Outcome(
            cell.key, cell.target, result.ok, result.error,
            report.render([result], [f"{work.model} ({_option_label(cell.options)})"]), payload,
            output if result.ok and output is not None and output.exists() else None,
            result.source, jsonable(result.facts), [h.name for h in result.route.hops],
            seconds=sum(a.seconds for a in result.artifacts) + (result.parity[-1].seconds or 0.0 if result.parity else 0.0),
            decided=not any(t in result.error for t in TRANSIENT)))
    return outcomes


def _option_label(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "no options"


def failed_outcome(work: Work, cell: WorkCell, error: str, decided: bool = True) -> Outcome:
    from html import escape

    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>convhub: {escape(work.model)}</title></head>"
            f"<body><h1>{escape(work.model)} → {escape(cell.target)} ({escape(_option_label(cell.options))})</h1>"
            f"<p style=\"color:#b3261e\">FAILED: {escape(error)}</p></body></html>")
    return Outcome(cell.key, cell.target, False, error, page, decided=decided and not any(t in error for t in TRANSIENT))


# --- executors ------------------------------------------------------------------------------------

OnDone = Callable[[Work, list[Outcome]], None]


class Executor(Protocol):
    name: str

    def run(self, works: Sequence[Work], on_done: OnDone, on_start: Callable[[Work], None]) -> None:
        """Run every work; call on_done (in this thread) with each work's outcomes as it ends."""


class LocalExecutor:
    """Works side by side in this process's warm worker pool: one TensorFlow import serves them
    all; `jobs` workers at most, and as many works under way (each needs one)."""

    name = "local"

    def __init__(self, jobs: int | None = None, timeout: float | None = None, registry: Registry | None = None):
        from convhub import workers

        self.pool = workers.shared_pool(jobs)
        self.jobs, self.timeout, self.registry = jobs, timeout, registry

    def run(self, works: Sequence[Work], on_done: OnDone, on_start: Callable[[Work], None]) -> None:
        from convhub.publish import work_folder

        folder = work_folder()
        threads = cf.ThreadPoolExecutor(max_workers=max(1, self.pool.jobs), thread_name_prefix="convhub-batch")

        def one(work: Work, index: int) -> list[Outcome]:
            on_start(work)
            return run_work(work, folder / str(index), registry=self.registry, jobs=self.jobs, timeout=self.timeout)

        pending = {threads.submit(one, work, i): work for i, work in enumerate(works)}
        try:
            while pending:
                # With a timeout, so Ctrl-C and SIGTERM are seen at once.
                done, _ = cf.wait(list(pending), timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    on_done(pending.pop(future), future.result())
        except BaseException:
            self.pool.kill_busy()  # the hops under way stop now; their works are not stored
            threads.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        threads.shutdown(wait=True)


# --- the plan -------------------------------------------------------------------------------------

@dataclass
class CellResult:
    """One cell of the batch, as the matrix, the JSON lines and the library show it."""

    model: str
    target: str
    options: str  # the option set's name
    status: str  # "passed", "failed", "not run" (stopped before it was decided), or with --dry-run "cached"/"to run"
    cached: bool = False
    error: str = ""
    max_abs_diff: float | None = None
    bytes: int | None = None
    seconds: float | None = None  # its hops and its check when it ran (shared hops count in each cell)
    route: str = ""
    output: Path | None = None
    report: Path | None = None
    key: str = ""
    result: dict[str, Any] | None = None  # the conversion result, as `convhub convert --json` gives it

    @property
    def ok(self) -> bool:
        return self.status == "passed"

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "target": self.target, "options": self.options, "status": self.status,
                "cached": self.cached, "error": self.error or None, "max_abs_diff": self.max_abs_diff,
                "bytes": self.bytes, "seconds": None if self.seconds is None else round(self.seconds, 3),
                "route": self.route, "output": str(self.output) if self.output else None,
                "report": str(self.report) if self.report else None, "key": self.key,
                "result": jsonable(self.result)}


class BatchResult(list[CellResult]):
    """The cells of a batch, in the job's order; sums itself up like a conversion's Results."""

    def __init__(self, cells: Iterable[CellResult], *, job: Path, output: Path | None, executor: str,
                 seconds: float = 0.0, complete: bool = True, dry_run: bool = False):
        super().__init__(cells)
        self.job, self.output, self.executor = job, output, executor
        self.seconds, self.complete, self.dry_run = seconds, complete, dry_run

    @property
    def ok(self) -> bool:
        return self.complete and all(c.ok or (self.dry_run and c.status in ("cached", "to run")) for c in self)

    def counts(self) -> dict[str, int]:
        return {"cells": len(self), "passed": sum(c.status == "passed" for c in self),
                "failed": sum(c.status == "failed" for c in self), "not_run": sum(c.status == "not run" for c in self),
                "cached": sum(c.cached for c in self), "ran": sum(c.status in ("passed", "failed") and not c.cached
                                                                 for c in self)}

    def __repr__(self) -> str:
        counts = self.counts()
        return (f"<BatchResult {counts['passed']}/{counts['cells']} passed, {counts['failed']} failed,"
                f" {counts['cached']} cached>")

    def summary(self, width: int | None = None) -> str:
        from convhub import batchview
        from convhub.console import plain_text

        return plain_text(batchview.renderable(self), width)

    def _repr_html_(self) -> str:
        from convhub import batchview

        return batchview.matrix_html(self, links=False)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "job": str(self.job), "output": str(self.output) if self.output else None,
                "executor": self.executor, "dry_run": self.dry_run, "complete": self.complete,
                "summary": self.counts(), "seconds": round(self.seconds, 3),
                "error": _error_text(self), "cells": [c.to_json() for c in self]}


def _error_text(cells: BatchResult) -> str | None:
    failed = [c for c in cells if c.status == "failed"]
    if not cells.complete:
        return "interrupted: " + (f"{len(failed)} cells failed before it stopped" if failed else "the batch stopped")
    if not failed:
        return None
    return f"{len(failed)} of {len(cells)} cells failed: " + "; ".join(
        f"{c.model} → {c.target} {c.options}: {c.error.splitlines()[0] if c.error else 'failed'}" for c in failed[:3]) + (
        "; …" if len(failed) > 3 else "")


@dataclass
class _Planned:
    cell: Cell
    key: str
    entry: cache_module.Entry | None = None
    outcome: Outcome | None = None


def plan(job: Job, registry: Registry, store: cache_module.Cache, *, use_cache: bool = True,
         retry_failed: bool = False, timeout: float | None = None) -> tuple[list[_Planned], list[Work]]:
    """Each cell's key and cache entry (when it still holds), and the works for the others."""
    from convhub import __version__
    from convhub.plan import is_set

    hasher = store.hasher()
    sources = {m.name: cache_module.source_of(m.source, hasher, m.depends) for m in job.models}
    digests: dict[str, str] = {}

    def digest(path: str | Path | None) -> str | None:
        if path is None:
            return None
        if str(path) not in digests:
            digests[str(path)] = hasher.path(Path(path))
        return digests[str(path)]

    paths = {k for k, o in getattr(registry, "options", {}).items() if o.type == "path"}
    planned = []
    for cell in job.cells:
        model = cell.model
        options = {k: ({"file": digest(v)} if k in paths and isinstance(v, str) else v) for k, v in cell.options.items()}
        key = cache_module.sha256_of(cache_module.canonical({
            "cache": cache_module.FORMAT, "convhub": __version__, "source": sources[model.name].digest,
            "format": model.format, "target": cell.target, "options": options, "seed": job.seed,
            "inputs": digest(model.inputs), "atol": _first(model.atol, job.atol), "rtol": _first(model.rtol, job.rtol),
            "check": job.check}))
        entry = store.get(key, registry) if use_cache else None
        if entry is not None and retry_failed and not entry.record.get("ok"):
            entry = None
        planned.append(_Planned(cell, key, entry))
    hasher.save()
    lossy_keys = {k for c in registry.conversions for k in c.lossy_options}
    groups: dict[tuple[str, str, bool], list[WorkCell]] = {}
    seen: set[str] = set()
    for p in planned:
        if p.entry is not None or p.key in seen:
            continue
        seen.add(p.key)  # two cells with one key (the same options) run once
        lossy = any(is_set(v) for k, v in p.cell.options.items() if k in lossy_keys)
        groups.setdefault((p.cell.model.name, p.cell.option_set, lossy), []).append(
            WorkCell(p.key, p.cell.target, dict(p.cell.options)))
    models = {m.name: m for m in job.models}
    works = []
    for (name, _, _), cells in groups.items():
        model = models[name]
        files = [str(f) for f in sources[name].files] + ([str(model.inputs)] if model.inputs else [])
        files += [v for c in cells for k, v in c.options.items() if k in paths and isinstance(v, str)]
        works.append(Work(name, model.source, model.format, str(model.inputs) if model.inputs else None, tuple(cells),
                          job.seed, _first(model.atol, job.atol), _first(model.rtol, job.rtol), job.check,
                          tuple(dict.fromkeys(files))))
    return planned, works


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


# --- running a batch ------------------------------------------------------------------------------

def batch(
    job: str | os.PathLike[str] | Job,
    output: str | os.PathLike[str] | None = None,
    *,
    executor: str = "local",
    address: str | None = None,
    jobs: int | None = None,
    timeout: float | None = None,
    dry_run: bool = False,
    use_cache: bool = True,
    retry_failed: bool = False,
    force: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    registry: Registry | None = None,
) -> BatchResult:
    """Run a job file: every cell (model × target × option set) converted and checked, or taken
    from the cache when nothing it depends on changed; `convhub batch` as a function
    (`convhub.batch`).

    Args:
        job: a convhub.toml, or a pyproject.toml with a [tool.convhub] table (docs/batch.md).
        output: the output folder (default: the job's `output`); each cell's artifact goes where
            the job's `layout` says, its report to reports/, the matrix to index.html and
            cells.jsonl.
        executor: "local" (this machine's warm workers) or "ray" (`pip install "convhub[ray]"`).
        address: the Ray cluster (default: RAY_ADDRESS, else a local Ray instance).
        jobs: worker processes at most (each Ray actor: the job's `[resources] cpus`).
        timeout: seconds a hop or a check may take (default: the job's, else 1800).
        dry_run: plan only: each cell's route and whether it is cached.
        use_cache: False runs every cell again (the new results are still stored).
        retry_failed: run the cells whose cached result is a failure again.
        force: write into an output folder that batch did not make.
        cache_dir: the cache (default: CONVHUB_CACHE_DIR, else the platform's cache folder).
        progress: called with a line per step and per decided cell.
        registry: the plugins to use (default: every installed one).

    Returns:
        A BatchResult: a list of CellResult (model, target, options, status, cached, error,
        max_abs_diff, bytes, seconds, output, report, result), with `.ok`, `.summary()`,
        `.to_json()`.

    Raises:
        UsageError: a mistake in the job file (the message names its line) or an argument, or
            Ray missing for executor="ray"; before anything runs.
        InputError: a model cannot be read to compute its cache key.
    """
    from convhub import jobfile, validate
    from convhub.plugins import default_registry

    started = time.perf_counter()
    registry = registry or default_registry()
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}", hint=f"executors: {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise UsageError("--address is the Ray cluster's: give it with --executor ray")
    validate.positive("jobs", jobs, whole=True)
    validate.positive("timeout", timeout)
    if executor == "ray":
        from convhub import raycluster

        raycluster.require()  # before anything loads: how to install it
    if not isinstance(job, Job):
        job = jobfile.load(job, registry)
    out = Path(output) if output is not None else job.output
    if out is None and not dry_run:
        raise UsageError("name the output folder: -o OUT, or output = \"...\" in the job file")
    if out is not None:
        _check_output(out, job, force)
    store = cache_module.Cache(Path(cache_dir) if cache_dir is not None else None)
    if not dry_run:
        store.ready()  # a cache folder that cannot be made: one line and exit 2 now, not after a cell
    say: Progress = progress if progress is not None else _quiet
    say(f"planning {len(job.cells)} cells of {job.path}")
    planned, works = plan(job, registry, store, use_cache=use_cache, retry_failed=retry_failed)
    if dry_run:
        cells = [_dry_cell(p, registry) for p in planned]
        return BatchResult(cells, job=job.path, output=out, executor=executor, dry_run=True,
                           seconds=time.perf_counter() - started)
    assert out is not None
    publisher = _Publisher(out, job)
    publisher.mark()
    view = _view(progress)
    view.start(len(planned), sum(p.entry is not None for p in planned))
    by_key: dict[str, list[_Planned]] = {}
    for p in planned:
        by_key.setdefault(p.key, []).append(p)
    results: dict[int, CellResult] = {}
    for i, p in enumerate(planned):
        if p.entry is not None:
            results[i] = publisher.publish(p, p.entry, cached=True)
            view.cell(results[i])
    index = {id(p): i for i, p in enumerate(planned)}

    def on_done(work: Work, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            entry = None
            if outcome.decided:
                versions, runners = cache_module.dependencies(registry, outcome.source_format, outcome.route or [])
                entry = store.put(outcome.key, {**outcome.record(), "model": work.model, "versions": versions,
                                                "runners": runners}, outcome.report, outcome.artifact)
            for p in by_key[outcome.key]:
                p.outcome = outcome
                results[index[id(p)]] = publisher.publish(p, entry, cached=False, outcome=outcome)
                view.cell(results[index[id(p)]])
        view.finished(work)

    def finish(complete: bool) -> BatchResult:
        cells = [results.get(i) or _not_run(p, publisher) for i, p in enumerate(planned)]
        result = BatchResult(cells, job=job.path, output=out, executor=executor, complete=complete,
                             seconds=time.perf_counter() - started)
        publisher.overview(result)
        return result

    try:
        if works:
            runner = _executor(executor, address, jobs, timeout or job.timeout, registry, job, say)
            try:
                runner.run(works, on_done, view.starting)
            finally:
                close = getattr(runner, "close", None)
                if close is not None:
                    close()
    except BaseException:
        view.close()
        finish(complete=False)  # the cells decided so far are published and in the overview
        raise
    view.close()
    return finish(complete=True)


def _executor(name: str, address: str | None, jobs: int | None, timeout: float | None, registry: Registry,
              job: Job, say: Progress) -> Executor:
    if name == "ray":
        from convhub import raycluster

        return raycluster.RayExecutor(address, jobs=jobs, timeout=timeout, registry=registry, cpus=job.cpus,
                                      memory=job.memory, progress=say)
    return LocalExecutor(jobs, timeout, registry)


def _check_output(out: Path, job: Job, force: bool) -> None:
    """The output folder: not a model or inside one, writable, and either new, empty, written by
    batch before, or --force."""
    from convhub import validate

    sources = [p for m in job.models for p in [*m.paths, *m.depends]] + [Path(job.path)]
    for source in sources:  # whatever --force says: a failed cell removes what its layout path holds
        src, dest = Path(os.path.realpath(source)), Path(os.path.realpath(out))
        if dest == src or src in dest.parents or dest in src.parents:
            relation = "is" if dest == src else "lies inside" if src in dest.parents else "holds"
            what = "the job file" if source == Path(job.path) else "the model file" if source in [
                p for m in job.models for p in m.paths] else "the file"
            raise UsageError(f"the output folder {out} {relation} {what} {source}; choose another folder")
    validate.writable(out / "probe", "output folder")
    if out.exists() and not out.is_dir():
        raise UsageError(f"the output {out} is a file; name a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists() and not force:
        raise UsageError(f"{out} holds files convhub batch did not write",
                         hint="choose a new or empty folder, or --force to write into it")


class _Publisher:
    """Each cell's artifact and report into the output layout, the cell all or nothing."""

    def __init__(self, out: Path, job: Job):
        self.out, self.job = out, job

    def mark(self) -> None:
        from convhub.publish import write_text

        self.out.mkdir(parents=True, exist_ok=True)
        write_text(self.out / MARKER, json.dumps({"job": str(self.job.path)}) + "\n")

    def report_path(self, cell: Cell) -> Path:
        return self.out / REPORTS / cell.model.name / f"{cell.target}-{cell.option_set}.html"

    def publish(self, p: _Planned, entry: cache_module.Entry | None, *, cached: bool,
                outcome: Outcome | None = None) -> CellResult:
        from convhub.publish import Transaction, write_text

        record = entry.record if entry is not None else (outcome.record() if outcome is not None else {})
        destination = self.out / p.cell.destination
        report = self.report_path(p.cell)
        transaction = Transaction()
        artifact = entry.artifact if entry is not None else (outcome.artifact if outcome is not None else None)
        if record.get("ok") and artifact is not None:
            transaction.add(artifact, destination, True)
        else:
            _retire(destination)  # an artifact of an earlier run that passed then, not now
        if entry is not None:
            transaction.add(entry.report, report, True)
        transaction.commit()
        if entry is None and outcome is not None:  # not stored (stopped by the machine): the report still
            write_text(report, outcome.report)
        return _cell_result(p, record, cached, destination if record.get("ok") and artifact is not None else None,
                            report)

    def overview(self, batch: BatchResult) -> None:
        from convhub import batchview
        from convhub.publish import write_text

        write_text(self.out / JSONL, "".join(json.dumps(jsonable(c.to_json()), allow_nan=False) + "\n" for c in batch))
        write_text(self.out / INDEX, batchview.matrix_html(batch, links=True))


def _retire(path: Path) -> None:
    if not os.path.lexists(path):
        return
    from convhub.publish import STAGING

    aside = Path(tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-", dir=path.parent))
    with contextlib.suppress(OSError):
        os.rename(path, aside / "old")
    shutil.rmtree(aside, ignore_errors=True)


def _cell_result(p: _Planned, record: Mapping[str, Any], cached: bool, output: Path | None,
                 report: Path | None) -> CellResult:
    result = record.get("result")
    final = (result or {}).get("parity") or [{}]
    diffs = [o.get("max_abs_diff") for o in final[-1].get("outputs") or [] if final[-1].get("checked")]
    artifacts = (result or {}).get("artifacts") or []
    hops = (result or {}).get("hops") or []
    if result is not None:
        result = {**result, "output": str(output) if output else None}
    return CellResult(
        p.cell.model.name, p.cell.target, p.cell.option_set, "passed" if record.get("ok") else "failed", cached,
        record.get("error") or "", max((d for d in diffs if d is not None), default=None),
        artifacts[-1]["bytes"] if artifacts and len(artifacts) == len(hops) else None, record.get("seconds"),
        " → ".join(result["route"]) if result else "", output, report, p.key, result)


def _not_run(p: _Planned, publisher: _Publisher) -> CellResult:
    return CellResult(p.cell.model.name, p.cell.target, p.cell.option_set, "not run", key=p.key,
                      error="the batch stopped before this cell was decided")


def _dry_cell(p: _Planned, registry: Registry) -> CellResult:
    """A cell as --dry-run shows it: cached (with the route it took), or to run (with the route
    planned from its format, when that is known without reading the model)."""
    cell = p.cell
    if p.entry is not None:
        conversions = {c.name: c for c in registry.conversions}
        route = p.entry.record.get("route") or []
        formats = [p.entry.record.get("source_format") or "?"] + [conversions[n].target for n in route if n in conversions]
        return CellResult(cell.model.name, cell.target, cell.option_set, "cached", True,
                          route=" → ".join(formats), key=p.key)
    text = "decided when the model is read (name its format with source = ... to plan it now)"
    if cell.model.format is not None:
        try:
            text = " → ".join(registry.graph.best(cell.model.format, cell.target).formats)
        except NoRouteError as exc:
            text = f"no route: {exc.message}"
    return CellResult(cell.model.name, cell.target, cell.option_set, "to run", route=text, key=p.key)


# --- progress ------------------------------------------------------------------------------------

class _View(Protocol):
    def start(self, total: int, cached: int) -> None: ...
    def starting(self, work: Work) -> None: ...
    def finished(self, work: Work) -> None: ...
    def cell(self, cell: CellResult) -> None: ...
    def close(self) -> None: ...


class _Lines:
    """Progress for a plain `progress` callable: a line per decided cell."""

    def __init__(self, say: Progress):
        self.say = say
        self.total = self.decided = 0

    def start(self, total: int, cached: int) -> None:
        self.total = total
        self.say(f"{total} cells, {cached} cached")

    def starting(self, work: Work) -> None:
        self.say(f"converting {work.label}")

    def finished(self, work: Work) -> None:
        pass

    def cell(self, cell: CellResult) -> None:
        self.decided += 1
        from convhub.batchview import cell_line

        self.say(f"[{self.decided}/{self.total}] {cell_line(cell)}")

    def close(self) -> None:
        pass


def _view(progress: Any) -> _View:
    from convhub.batchview import LiveProgress

    if isinstance(progress, LiveProgress):
        return progress
    return _Lines(progress if progress is not None else _quiet)
