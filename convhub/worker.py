"""The child side of a supervised worker: `python -m convhub.worker [--wire] FD`.

A worker runs one call at a time for the supervisor (`convhub.workers`): a function and its
arguments arrive pickled over the socket FD, the return value (or what it raised) goes back.
With --wire the worker runs another Python than the supervisor's (a toolchain's), and calls
and replies travel as plain JSON records instead (convhub.wire): nothing is unpickled there.
Frameworks loaded by one call stay loaded for the next, so one TensorFlow import serves every
TensorFlow hop and runner of a run. stdout and stderr are a log file the supervisor reads when
a call fails, so the frameworks' chatter never reaches the user's terminal or `--json` output.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any, Callable


def _die_with_parent() -> None:
    """A supervisor killed with SIGKILL cannot stop its workers: they notice and go.
    (Not prctl's PR_SET_PDEATHSIG: it fires when the parent *thread* ends, and workers are
    started from short-lived threads.)"""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.killpg(0, signal.SIGKILL) if os.getpgid(0) == os.getpid() else os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def describe(exc: BaseException) -> str:
    """One line for what a call raised."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    if isinstance(exc, KeyboardInterrupt):
        return "raised KeyboardInterrupt"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def serve(conn: Connection, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]) -> None:
    from convhub import errors, status

    sending = threading.Lock()

    def note(text: str) -> None:  # what a long step is busy with, for the supervisor's display
        with sending:
            conn.send_bytes(dumps(("note", text)))

    status.listen(note)
    status.announce_slow_imports()
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:  # the supervisor closed the connection: time to go
            return
        try:
            fn, args = loads(message)
        except Exception as exc:  # noqa: BLE001 - e.g. a module of the call that does not import here
            fn, args = _raise, (exc,)
        try:
            reply: tuple[Any, ...] = ("ok", fn(*args))
        except BaseException as exc:  # noqa: BLE001 - anything, SystemExit included, is the call's failure
            if os.environ.get("CONVHUB_DEBUG"):
                traceback.print_exc()  # into the log, shown when the call fails
            # convhub's own errors travel as their class (a plugin's subclass as its nearest
            # convhub base: NodeMissing as RuntimeMissing), so "not checked" stays "not checked".
            kind = next((c.__name__ for c in type(exc).__mro__ if c.__module__ == "convhub.errors"
                         and issubclass(c, errors.ConvhubError)), None)
            reply = ("error", kind, str(exc) if kind else describe(exc), not isinstance(exc, Exception))
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            payload = dumps(reply)
        except Exception as exc:  # noqa: BLE001 - a return value that cannot travel
            payload = dumps(("error", None, f"its result cannot be sent back: {describe(exc)}", False))
        with sending:
            conn.send_bytes(payload)
        if reply[0] == "error" and reply[3]:
            return  # after SystemExit or KeyboardInterrupt the process state is not to be trusted


def _raise(exc: BaseException) -> None:
    raise exc


def main() -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    wire = sys.argv[1] == "--wire"
    conn = Connection(int(sys.argv[-1]))
    if wire:  # another Python: its own import path, plus the bridge on PYTHONPATH
        from convhub import wire as codec

        cwd = codec.loads(conn.recv_bytes())
        os.chdir(cwd)
        serve(conn, codec.dumps, _wire_loads)
        return
    import cloudpickle

    path, cwd = cloudpickle.loads(conn.recv_bytes())
    sys.path[:] = path  # the caller's import path: plugins registered in code import here too
    os.chdir(cwd)
    serve(conn, cloudpickle.dumps, cloudpickle.loads)


def _wire_loads(message: bytes) -> Any:
    import importlib

    from convhub import wire as codec

    importlib.invalidate_caches()  # the bridge may have a new link since the last call
    return codec.loads(message)


if __name__ == "__main__":
    main()
