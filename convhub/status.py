"""Saying what a long step is busy with, from wherever it runs: a worker importing TensorFlow, a
plugin installing the TF.js runtime from npm.

    from convhub import status
    with status.busy("installing the TF.js runtime for Node (first use, ~300 MB)"):
        subprocess.run(["npm", "ci", ...])

In a worker the text travels to the supervisor (convhub.worker), whose progress display shows
it beside the task under way ("converting keras → savedmodel · loading TensorFlow…"); in any
other process it goes to the listener set with `listen`, or nowhere. Light: no rich, no NumPy.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
import threading
from types import ModuleType
from typing import Callable, Iterator, Sequence

_listener: Callable[[str], None] | None = None
_stack: list[str] = []
_lock = threading.Lock()

# Modules slow enough to import that a person waiting should be told (about 1-10 s each here),
# with the names people know them by.
SLOW_IMPORTS = {"tensorflow": "TensorFlow", "keras": "Keras", "jax": "JAX", "flax": "Flax",
                "orbax": "Orbax", "tf2onnx": "tf2onnx", "onnxruntime": "ONNX Runtime",
                "tensorflowjs": "the TF.js converter", "ai_edge_litert": "LiteRT"}


def listen(listener: Callable[[str], None] | None) -> Callable[[str], None] | None:
    """Send what `busy` says to `listener` ("" when the innermost step is over); returns the previous one."""
    global _listener
    previous, _listener = _listener, listener
    return previous


@contextlib.contextmanager
def busy(what: str) -> Iterator[None]:
    """Tell the listener `what…` for as long as the block runs (nested steps: the innermost)."""
    with _lock:
        _stack.append(f"{what}…")
        _tell(_stack[-1])
    try:
        yield
    finally:
        with _lock:
            _stack.remove(f"{what}…")
            _tell(_stack[-1] if _stack else "")


def _tell(text: str) -> None:
    if _listener is not None:
        try:
            _listener(text)
        except Exception:  # noqa: BLE001 - a display that fails must not fail the work
            pass


class _SlowImports(importlib.abc.MetaPathFinder):
    """Wraps the loading of the SLOW_IMPORTS modules in `busy("loading TensorFlow")`."""

    def __init__(self, names: dict[str, str]):
        self.names = names

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        label = self.names.get(name)
        if label is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            with busy(f"loading {label}"):
                original(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def announce_slow_imports(names: dict[str, str] | None = None) -> None:
    """From now on, importing one of `names` (default SLOW_IMPORTS) is said (in a worker)."""
    if not any(isinstance(f, _SlowImports) for f in sys.meta_path):
        sys.meta_path.insert(0, _SlowImports(names or SLOW_IMPORTS))
