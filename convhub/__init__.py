"""convhub: convert trained models between frameworks and prove they still compute the same thing.

    import convhub
    result = convhub.convert(keras_model, to="tflite", output="model.tflite")
    print(result.summary())        # the table `convhub convert` prints
    result.to_json()               # what `convhub convert --json` prints for it

Importing convhub is cheap: the frameworks load only when a conversion or a check runs.
"""

from __future__ import annotations

import contextlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from convhub.errors import (
    ConversionError,
    ConvhubError,
    InputError,
    NoRouteError,
    ParityError,
    RuntimeMissing,
    UsageError,
)
from convhub.plugins import hookimpl

if TYPE_CHECKING:  # imported when first used (below): `import convhub` stays cheap
    from convhub.batchrun import BatchResult, batch
    from convhub.graph import Route
    from convhub.pipeline import check, convert
    from convhub.plugins import Registry
    from convhub.results import CheckResult, ConversionResult, Results
    from convhub.workers import Pool

try:
    __version__ = version("convhub")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "ConversionError",
    "ConvhubError",
    "InputError",
    "NoRouteError",
    "ParityError",
    "RuntimeMissing",
    "UsageError",
    "BatchResult",
    "CheckResult",
    "ConversionResult",
    "Results",
    "batch",
    "check",
    "convert",
    "hookimpl",
    "registry",
    "route",
    "pool",
    "shutdown",
]


_LAZY = {"convert": "convhub.pipeline", "check": "convhub.pipeline", "ConversionResult": "convhub.results",
         "Results": "convhub.results", "CheckResult": "convhub.results", "BatchResult": "convhub.batchrun",
         "batch": "convhub.batchrun"}


def __getattr__(name: str) -> Any:
    """convert, check, batch and the result types, imported on first use (they import NumPy)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'convhub' has no attribute {name!r}")


def registry() -> Registry:
    """Every installed plugin's formats, conversions and runners."""
    from convhub.plugins import default_registry

    return default_registry()


def route(source: str, target: str, via: str | None = None) -> Route:
    """The cheapest route between two formats (through `via`), ignoring model-specific refusals."""
    formats = registry()
    return formats.graph.best(formats.format(source).name, formats.format(target).name, None,
                              formats.format(via).name if via else None)


def shutdown() -> None:
    """End the worker processes this process started; the next conversion starts new ones."""
    from convhub.workers import shutdown as _shutdown

    _shutdown()


def pool(jobs: int | None = None) -> contextlib.AbstractContextManager[Pool]:
    """`with convhub.pool(jobs=2): ...` keeps the workers warm inside the block, then ends them."""
    from convhub.workers import pool as _pool

    return _pool(jobs)

