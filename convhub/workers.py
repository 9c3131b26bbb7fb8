"""Supervised worker processes: every hop and every runner executes in a child process.

A crash (a signal, an abort, the out-of-memory killer), an exit or a hang in a converter then
costs only the routes that need it: the supervisor sees the dead process or the expired
timeout, turns it into a one-line `WorkerFailed`, and the other targets go on.

Workers are kept warm in one pool per process and reused, by the library's second
`convhub.convert` too; a worker serves the calls that need the same environment settings
(e.g. TF_ENABLE_ONEDNN_OPTS=0 for one hop). `shutdown()`, or leaving `with workers.pool():`,
ends them; so does the interpreter's exit, and the kernel when the supervisor is killed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import cloudpickle

from convhub import errors

if TYPE_CHECKING:
    from convhub.types import Toolchain

DEFAULT_TIMEOUT = 1800.0  # seconds a single hop or check may take
MEMORY_PER_WORKER = 2 << 30  # a worker with TensorFlow loaded and a model converting
SPAWN_AFTER = 3.0  # seconds a call waits for a busy warm worker before starting another


EnvKey = frozenset[tuple[str, str]]  # the environment a worker has, or a call needs


class WorkerFailed(errors.ConversionError):
    """The worker died, exited, hung past its timeout, or the call raised something that is not
    an error convhub knows (the message is one line; `log` holds the worker's output)."""

    def __init__(self, message: str, log: str = "", died: bool = False):
        super().__init__(message)
        self.log = log
        self.died = died  # the process crashed, exited or was stopped, rather than the call raising


def default_jobs() -> int:
    """As many workers as there are cores, but no more than free memory holds."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    available = _available_memory()
    by_memory = available // MEMORY_PER_WORKER if available else cores
    return max(1, min(cores, by_memory))


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        sig = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else f"signal {-returncode}"
        if sig == "SIGKILL":
            return "was killed (SIGKILL; out of memory?)"
        if sig == "SIGABRT":
            return "aborted (SIGABRT)"
        return f"crashed ({sig})"
    return f"exited with code {returncode}"


class Worker:
    """One child process, `python -m convhub.worker`, and the socket to it.

    `python`: another interpreter (a toolchain's) than this process's; the worker then imports
    convhub and the plugins through the bridge, and calls travel as JSON records (convhub.wire)."""

    def __init__(self, env: Mapping[str, str], python: str | None = None):
        self.env = dict(env)
        self.python = python
        self.key = env_key(env, python)  # taken with the caller's environment as it is now
        self.log = tempfile.TemporaryFile()  # unlinked at once: nothing left on disk, whatever happens
        ours, theirs = socket.socketpair()
        verbose = bool(os.environ.get("CONVHUB_VERBOSE"))
        command = [sys.executable, "-m", "convhub.worker", str(theirs.fileno())]
        environ = {**os.environ, **self.env}
        if python is not None:
            from convhub import toolchains

            command = [python, "-m", "convhub.worker", "--wire", str(theirs.fileno())]
            # Only the bridge: the caller's PYTHONPATH holds packages built for another Python.
            environ.update(PYTHONPATH=str(toolchains.bridge()), PYTHONNOUSERSITE="1")
            environ.pop("VIRTUAL_ENV", None)
        self.process = subprocess.Popen(
            command,
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=None if verbose else self.log,
            stderr=None if verbose else self.log,
            env=environ,
            start_new_session=True,  # Ctrl-C in the terminal reaches the supervisor only
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        self.conn.send_bytes(self._dumps(os.getcwd()) if python else cloudpickle.dumps((list(sys.path), os.getcwd())))

    def _dumps(self, value: Any) -> bytes:
        if self.python is None:
            return cloudpickle.dumps(value)  # type: ignore[no-any-return]
        from convhub import toolchains, wire

        encoded = wire.encode(value)
        toolchains.bridge(*(ref.partition(":")[0] for ref in wire.references(encoded)))
        return wire.json_bytes(encoded)

    def _loads(self, data: bytes) -> Any:
        if self.python is None:
            return cloudpickle.loads(data)
        from convhub import wire

        return wire.loads(data)

    def serves(self, key: EnvKey) -> bool:
        """Whether a call needing the environment `key` stands for can run here."""
        return key <= self.key

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_since(self, offset: int, lines: int = 15) -> str:
        size = os.fstat(self.log.fileno()).st_size
        text = os.pread(self.log.fileno(), min(size - offset, 1 << 20), offset).decode("utf-8", "replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float,
             on_note: Callable[[str], None] | None = None) -> Any:
        """fn(*args) in the worker; raises what it raised (convhub's own errors keep their class)
        or WorkerFailed. `on_note` hears what the call says it is busy with (convhub.status)."""
        offset = os.fstat(self.log.fileno()).st_size
        try:
            message = self._dumps((fn, args))
        except Exception as exc:  # noqa: BLE001 - e.g. a plugin callable that cannot be pickled
            raise WorkerFailed(f"its call cannot be sent to a worker: {type(exc).__name__}: {exc}") from None
        try:
            self.conn.send_bytes(message)
        except OSError:
            pass  # the worker is gone; the receive below says how
        deadline = time.monotonic() + timeout
        while True:
            try:
                ready = self.conn.poll(max(0.0, deadline - time.monotonic()))
            except (OSError, EOFError):
                ready = True
            if not ready:
                log = self.log_since(offset)
                self.kill()
                raise WorkerFailed(f"ran past the {timeout:g} s timeout (--timeout) and was stopped", log, died=True)
            try:
                status, *reply = self._loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                returncode = self.process.wait()
                raise WorkerFailed(describe_exit(returncode), self.log_since(offset), died=True) from None
            if status != "note":
                break
            if on_note is not None:
                on_note(reply[0])
        if status == "ok":
            return reply[0]
        kind, message, fatal = reply
        if fatal:
            self.process.wait(timeout=10)
        cls = getattr(errors, kind, None) if kind else None
        if isinstance(cls, type) and issubclass(cls, errors.ConvhubError):
            try:
                error = cls(message)
            except TypeError:
                error = errors.ConversionError(message)
            error.log = self.log_since(offset)
            raise error
        raise WorkerFailed(message, self.log_since(offset), died=fatal)  # SystemExit ends the worker too

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # the worker and whatever it started (Node...)
        self.process.wait()

    def stop(self) -> None:
        """End an idle worker. At once: it holds nothing worth a polite exit, and a Python with
        TensorFlow loaded takes seconds to tear itself down, which the user would wait for."""
        self.kill()
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        with contextlib.suppress(OSError):
            self.log.close()


def env_key(env: Mapping[str, str], python: str | None = None) -> EnvKey:
    """What a call needs of a worker's environment: the caller's environment as it is now (a
    warm worker started before a change of PATH would not see it) with the settings the hop
    asks for on top, and the Python it runs (a toolchain's, or this one). A worker whose
    environment holds all of that serves the call: a runner that asks for nothing runs in the
    worker that has TensorFlow's settings too.
    The caller's import path and working directory are part of it: a worker gets them when it
    starts, and one started before a plugin's folder joined sys.path cannot import that plugin."""
    variables = {(k, v) for k, v in {**os.environ, **env, PYTHON: python or sys.executable}.items()
                 if k not in VOLATILE}
    return frozenset(variables | {("\0sys.path", "\0".join(sys.path)), ("\0cwd", os.getcwd())})


PYTHON = "\0python"  # in an EnvKey: the interpreter (no environment variable can have this name)


# Variables that change under a caller without changing what a worker needs: pytest's name of the
# running test (new at every phase), and those TensorFlow sets in a process that imports it
# (a worker importing TensorFlow sets them itself). Keyed on, they would retire every warm worker.
VOLATILE = frozenset({"PYTEST_CURRENT_TEST", "TF2_BEHAVIOR", "TPU_ML_PLATFORM", "TPU_ML_PLATFORM_VERSION",
                      "ENABLE_RUNTIME_UPTIME_TELEMETRY"})


class Pool:
    """Warm workers, at most `jobs` alive at once, each serving one call at a time."""

    def __init__(self, jobs: int | None = None):
        self.jobs = jobs or default_jobs()
        self.idle: list[Worker] = []
        self.busy: set[Worker] = set()
        self.starting_keys: list[EnvKey] = []
        self.lock = threading.Condition()
        self.closed = False

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...] = (), *, env: Mapping[str, str] | None = None,
             timeout: float = DEFAULT_TIMEOUT, warm_spare: bool = False,
             on_note: Callable[[str], None] | None = None, toolchain: Toolchain | None = None) -> Any:
        """fn(*args) in a worker. `warm_spare`: also run it, in the background, in one more new
        worker if there is room, so that the calls that follow find two warm workers (reading
        the source there imports the framework and loads the model while this call does).
        `toolchain`: the call needs that environment; a worker of this Python serves it when
        this environment satisfies it, else one of the toolchain's own (made on first use)."""
        python = None
        if toolchain is not None:
            from convhub import toolchains

            if toolchains.unmet(toolchain) is not None:
                python = str(toolchains.ensure(toolchain, on_note))
        worker = self._acquire(env or {}, python)
        if warm_spare and python is None:
            self._start_spare(fn, args, env or {}, timeout)
        try:
            return worker.call(fn, args, timeout, on_note)
        finally:
            self._release(worker)

    def _start_spare(self, fn: Callable[..., Any], args: tuple[Any, ...], env: Mapping[str, str], timeout: float) -> None:
        key = env_key(env)
        with self.lock:
            if self.closed or self._total() >= self.jobs:
                return
            self.starting_keys.append(key)

        def warm() -> None:
            try:
                worker = self._start(env, key)
            except WorkerFailed:  # the pool was shut down while it started
                return
            try:
                with contextlib.suppress(Exception):  # the caller's own call reports any failure
                    worker.call(fn, args, timeout)
            finally:
                self._release(worker)

        threading.Thread(target=warm, name="convhub-spare", daemon=True).start()

    def _acquire(self, env: Mapping[str, str], python: str | None = None) -> Worker:
        """A warm worker of these settings; a new one when there is none, or when the warm ones
        stay busy past SPAWN_AFTER (a new worker pays the framework import again, ~10 s for
        TensorFlow, which a short wait for a warm one usually beats)."""
        key = env_key(env, python)
        deadline = time.monotonic() + SPAWN_AFTER
        with self.lock:
            while True:
                if self.closed:
                    raise WorkerFailed("the worker pool was shut down")
                warm = next((w for w in self.idle if w.serves(key)), None)
                if warm is not None:
                    self.idle.remove(warm)
                    self.busy.add(warm)
                    return warm
                kin = any(w.serves(key) for w in self.busy) or any(key <= k for k in self.starting_keys)
                patient = kin and time.monotonic() < deadline
                total = self._total()
                if not patient and (total < self.jobs or self.idle):
                    if total >= self.jobs:
                        self.idle.pop(0).stop()  # make room: a worker for other settings is idle
                    self.starting_keys.append(key)
                    break
                self.lock.wait(timeout=max(0.05, deadline - time.monotonic()) if patient else None)
        return self._start(env, key, python)

    def _total(self) -> int:
        """Workers alive or starting (call with the lock held)."""
        return len(self.idle) + len(self.busy) + len(self.starting_keys)

    def _start(self, env: Mapping[str, str], key: EnvKey, python: str | None = None) -> Worker:
        """A new busy worker, in place of the `starting_keys` entry the caller added."""
        try:
            worker = Worker(env, python)
        finally:
            with self.lock:
                self.starting_keys.remove(key)
        with self.lock:
            if not self.closed:
                self.busy.add(worker)
                return worker
        # Shut down while it started (Ctrl-C as a worker comes up): kill_busy and shutdown did not
        # see it, and its call would run on, keeping convhub from exiting until it ended.
        worker.stop()
        raise WorkerFailed("the worker pool was shut down")

    def _release(self, worker: Worker) -> None:
        with self.lock:
            self.busy.discard(worker)
            if worker.alive and not self.closed:
                self.idle.append(worker)
            else:
                worker.close()
            self.lock.notify_all()

    def kill_busy(self) -> None:
        """Stop every running call at once (Ctrl-C, SIGTERM): their callers see WorkerFailed."""
        with self.lock:
            busy = list(self.busy)
        for worker in busy:
            with contextlib.suppress(OSError):
                os.killpg(worker.process.pid, signal.SIGKILL)

    def shutdown(self) -> None:
        with self.lock:
            self.closed = True
            idle, self.idle = self.idle, []
            busy = list(self.busy)
            self.lock.notify_all()
        for worker in idle:
            worker.stop()
        for worker in busy:
            worker.kill()
            worker.close()

    @property
    def size(self) -> int:
        with self.lock:
            return len(self.idle) + len(self.busy)


_pool: Pool | None = None
_pool_lock = threading.Lock()


def shared_pool(jobs: int | None = None) -> Pool:
    """This process's pool, started on first use and kept warm until shutdown()."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.closed:
            _pool = Pool(jobs)
        elif jobs:
            _pool.jobs = jobs
        return _pool


def shutdown() -> None:
    """End every worker of this process (convhub starts new ones when next needed)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown()


@contextlib.contextmanager
def pool(jobs: int | None = None) -> Iterator[Pool]:
    """`with convhub.pool(): ...` keeps workers warm inside the block and ends them after it."""
    try:
        yield shared_pool(jobs)
    finally:
        shutdown()


atexit.register(shutdown)
