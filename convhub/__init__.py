"""convhub: convert trained models between frameworks and prove they still compute the same thing.

    import convhub
    result = convhub.convert(keras_model, to="tflite", output="model.tflite")
    print(result.route.formats, [p.max_abs_diff for p in result.parity])

Importing convhub is cheap: the frameworks load only when a conversion or a check runs.
"""

from importlib.metadata import PackageNotFoundError, version

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
    "convert",
    "hookimpl",
    "registry",
    "route",
    "pool",
    "shutdown",
]


def convert(model, to, output=None, **kwargs):
    """Convert a model (a path or an in-memory model) to format `to`; see convhub.pipeline.convert."""
    from convhub.pipeline import convert as _convert

    return _convert(model, to, output, **kwargs)


def registry():
    """Every installed plugin's formats, conversions and runners."""
    from convhub.plugins import default_registry

    return default_registry()


def route(source: str, target: str):
    """The cheapest route between two formats, ignoring model-specific refusals."""
    return registry().graph.best(source, target)


def shutdown() -> None:
    """End the worker processes this process started; the next conversion starts new ones."""
    from convhub.workers import shutdown as _shutdown

    _shutdown()


def pool(jobs: int | None = None):
    """`with convhub.pool(jobs=2): ...` keeps the workers warm inside the block, then ends them."""
    from convhub.workers import pool as _pool

    return _pool(jobs)
