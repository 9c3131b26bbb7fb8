"""`convhub batch --executor ray`: the same works, run by Ray actors across a cluster.

- **Warm per-node workers.** Each actor is a slot of the cluster sized by the job's resource
  hints (`[resources] cpus, memory`, per cell): a convhub process on its node holding its own
  warm worker pool (`cpus` workers), so one TensorFlow import there serves every work the actor
  runs. As many actors as the cluster's CPUs hold, spread over the nodes.
- **Same versions, same results.** An actor first reports its environment (convhub, every
  plugin and its requirements, `cache.environment`); a node that differs from this machine is
  refused, as its results would not be the ones the cache keys promise. The works run the very
  function the local executor runs (`batchrun.run_work`), on the same seeded inputs.
- **Files travel with the work.** The files a work reads (the model, the local modules of a
  `file.py:NAME` reference, the parity inputs, calibration data) go to the actor as one tar in
  Ray's object store, once per model and actor; paths in the results are mapped back. The
  artifact and the report come back the same way, and are stored and published here.
- **Failures.** A crashing or hanging converter is the workers' business, as locally. A lost
  actor (its node gone) has its work tried again on another actor, once; a work that loses
  twice, or finds no actor left, is "not run" and not cached: the next run resumes from the
  cache. Ctrl-C kills the actors (and the local Ray this run started).

Ray is an optional extra: `pip install "convhub[ray]"`.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from convhub.errors import UsageError

if TYPE_CHECKING:
    from convhub.batchrun import OnDone, Outcome, Work
    from convhub.plugins import Registry

INSTALL = 'pip install "convhub[ray]"'
HELLO_TIMEOUT = 180.0  # seconds for the actors to start (a busy cluster may queue them)
ATTEMPTS = 2  # a work whose actor died is tried this many times in all


def require() -> None:
    """Ray is installed, or UsageError saying how to install it (nothing has loaded yet)."""
    if importlib.util.find_spec("ray") is None:
        raise UsageError("--executor ray needs Ray, which is not installed",
                         hint=f"{INSTALL}   (uv: uv add \"convhub[ray]\"; or use --executor local)")


def _ray() -> Any:
    # Ray's `uv run` integration would upload the current folder (a model zoo can be gigabytes)
    # and start every worker through `uv run`; convhub ships the files a work needs itself.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    import ray

    return ray


class CellActor:
    """A Ray actor: a convhub process on one node, its warm workers, the files it was sent."""

    def __init__(self, jobs: int, timeout: float | None):
        from convhub.publish import _remove_stale

        self.jobs, self.timeout = jobs, timeout
        _remove_stale(Path(tempfile.gettempdir()), "convhub-ray-")  # those of actors that were killed
        self.root = Path(tempfile.mkdtemp(prefix=f"convhub-ray-{os.getpid()}-"))
        self.staged: dict[str, Path] = {}

    def hello(self) -> dict[str, Any]:
        from convhub import cache, workers
        from convhub.plugins import default_registry

        workers.shared_pool(self.jobs)
        return {"host": socket.gethostname(), "pid": os.getpid(), "environment": cache.environment(default_registry())}

    def run(self, work: Work, bundle_id: str, bundle: list[Any], root: str) -> list[dict[str, Any]]:
        from convhub.batchrun import run_work

        folder = self._stage(bundle_id, bundle)
        out = Path(tempfile.mkdtemp(dir=self.root))
        try:
            outcomes = run_work(work.moved(root, str(folder)), out, jobs=self.jobs, timeout=self.timeout)
            return [_pack(o, str(folder), root) for o in outcomes]
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def _stage(self, bundle_id: str, bundle: list[Any]) -> Path:
        """The work's files, unpacked once per actor (its workers keep the model loaded)."""
        if bundle_id not in self.staged:
            ray = _ray()
            folder = self.root / bundle_id
            with tarfile.open(fileobj=io.BytesIO(ray.get(bundle[0])), mode="r") as tar:
                tar.extractall(folder, filter="data")
            self.staged[bundle_id] = folder
        return self.staged[bundle_id]

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "root", ""), ignore_errors=True)


def _tar(paths: Sequence[Path], root: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in paths:
            tar.add(path, arcname=path.relative_to(root).as_posix() if path != root else ".", recursive=True)
    return buffer.getvalue()


def _pack(outcome: Outcome, staged: str, root: str) -> dict[str, Any]:
    """An outcome as it travels back: JSON, the staged folder's name mapped back to the caller's,
    the artifact as a tar."""
    from dataclasses import asdict

    data = asdict(outcome)
    artifact = data.pop("artifact")
    text = json.dumps(data).replace(json.dumps(staged)[1:-1], json.dumps(root.rstrip(os.sep) or os.sep)[1:-1])
    packed: dict[str, Any] = {"outcome": text, "artifact": None, "name": None}
    if artifact is not None:
        path = Path(artifact)
        packed["name"], packed["artifact"] = path.name, _tar([path], path.parent)
    return packed


def _unpack(packed: dict[str, Any], folder: Path) -> Outcome:
    from convhub.batchrun import Outcome

    outcome = Outcome(**json.loads(packed["outcome"]))
    if packed["artifact"] is not None:
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(packed["artifact"]), mode="r") as tar:
            tar.extractall(folder, filter="data")
        outcome.artifact = folder / packed["name"]
    return outcome


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None, *, jobs: int | None, timeout: float | None, registry: Registry,
                 cpus: float, memory: int, progress: Callable[[str], None]):
        ray = _ray()
        self.ray, self.progress = ray, progress
        self.cpus, self.memory, self.timeout, self.registry = cpus, memory, timeout, registry
        target = address or os.environ.get("RAY_ADDRESS") or "local"
        progress(f"starting a local Ray instance" if target == "local" else f"connecting to Ray at {target}")
        options: dict[str, Any] = {}
        if target == "local":  # this machine only: as many CPUs as --jobs, a modest object store
            from convhub import workers

            options = {"num_cpus": jobs or workers.default_jobs(), "object_store_memory": 512 << 20}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            try:
                ray.init(address=target, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING, **options)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UsageError(f"cannot connect to Ray at {target}: {exc}",
                                 hint="start it with `ray start --head`, or give --address HOST:PORT") from None
        self.actors: list[Any] = []
        from convhub.publish import work_folder

        self.folder = work_folder()  # what comes back, until it is stored (a killed run's: removed later)
        self.bundles: dict[str, tuple[str, Any, str]] = {}

    def _start_actors(self, wanted: int) -> None:
        ray = self.ray
        from convhub import cache

        cluster_cpus = ray.cluster_resources().get("CPU", 0)
        slots = int(cluster_cpus // self.cpus)
        if slots < 1:
            raise UsageError(f"each cell asks for {self.cpus:g} CPUs ([resources] cpus); the Ray cluster has"
                             f" {cluster_cpus:g}")
        count = max(1, min(wanted, slots))
        actor = ray.remote(CellActor).options(num_cpus=self.cpus, memory=self.memory, scheduling_strategy="SPREAD",
                                              max_restarts=0)
        actors = [actor.remote(max(1, int(self.cpus)), self.timeout) for _ in range(count)]
        hellos = {a.hello.remote(): a for a in actors}
        ready, waiting = ray.wait(list(hellos), num_returns=len(hellos), timeout=HELLO_TIMEOUT)
        for ref in waiting:  # no node has room for it (memory) or the cluster is busy: go without
            ray.kill(hellos[ref])
        mine = cache.environment(self.registry)
        hosts = set()
        for ref in ready:
            hello = ray.get(ref)
            theirs = hello["environment"]
            if theirs != mine:
                for a in actors:
                    ray.kill(a)
                diff = sorted(k for k in {*mine, *theirs} if mine.get(k) != theirs.get(k))
                raise UsageError(
                    f"the Ray node {hello['host']} has other versions than this machine: "
                    + ", ".join(f"{k} {theirs.get(k, 'missing')} there, {mine.get(k, 'missing')} here" for k in diff[:4]),
                    hint="install the same convhub, plugins and converters on every node (results would differ)")
            hosts.add(hello["host"])
            self.actors.append(hellos[ref])
        if not self.actors:
            raise UsageError(f"no Ray node could start a convhub actor of {self.cpus:g} CPUs and"
                             f" {self.memory / 2**30:.1f} GiB in {HELLO_TIMEOUT:g} s",
                             hint="lower [resources] in the job file, or add nodes")
        self.progress(f"{len(self.actors)} convhub actors on {len(hosts)} host(s), {self.cpus:g} CPUs and"
                      f" {self.memory / 2**30:.1f} GiB each")

    def _bundle(self, work: Work) -> tuple[str, Any, str]:
        """The work's files in the object store, once per model."""
        if work.model not in self.bundles:
            paths = [Path(f) for f in work.files]
            root = Path(os.path.commonpath([str(p if p.is_dir() else p.parent) for p in paths])) if paths else Path("/")
            data = _tar(paths, root)
            self.bundles[work.model] = (hashlib.sha256(data).hexdigest()[:16], self.ray.put(data), str(root))
        return self.bundles[work.model]

    def run(self, works: Sequence[Work], on_done: OnDone, on_start: Callable[[Work], None]) -> None:
        from convhub.batchrun import failed_outcome

        ray = self.ray
        self._start_actors(len(works))
        queue = collections.deque(works)
        tries: collections.Counter[str] = collections.Counter()
        idle = list(self.actors)
        running: dict[Any, tuple[Any, Work]] = {}
        done = 0
        while queue or running:
            while idle and queue:
                work = queue.popleft()
                actor = idle.pop()
                on_start(work)
                bundle_id, ref, root = self._bundle(work)
                tries[work.label] += 1
                running[actor.run.remote(work, bundle_id, [ref], root)] = (actor, work)
            if not running:  # works left, no actor: every node is gone
                for work in queue:
                    on_done(work, [failed_outcome(work, c, "not run: every Ray actor was lost", decided=False)
                                   for c in work.cells])
                return
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            for ref in ready:
                actor, work = running.pop(ref)
                try:
                    packed = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError,
                        ray.exceptions.NodeDiedError) as exc:
                    self.actors.remove(actor)
                    self.progress(f"lost a Ray actor ({type(exc).__name__}) while it ran {work.label}")
                    if tries[work.label] < ATTEMPTS:
                        queue.appendleft(work)
                    else:
                        on_done(work, [failed_outcome(work, c, f"not run: its Ray actor was lost {ATTEMPTS} times",
                                               decided=False) for c in work.cells])
                    continue
                except ray.exceptions.RayTaskError as exc:
                    idle.append(actor)
                    on_done(work, [failed_outcome(work, c, f"internal error in the Ray actor: {exc}", decided=False)
                                   for c in work.cells])
                    continue
                idle.append(actor)
                done += 1
                on_done(work, [_unpack(p, self.folder / str(done) / str(i)) for i, p in enumerate(packed)])

    def close(self) -> None:
        """Stop the actors (and their workers), disconnect; a local Ray this run started stops too."""
        for actor in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        self.actors = []
        with contextlib.suppress(Exception):
            self.ray.shutdown()
        shutil.rmtree(self.folder, ignore_errors=True)
