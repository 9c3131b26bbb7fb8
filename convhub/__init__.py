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
from typing import TYPE_CHECKING, Any, Callable

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
    import os

    from convhub.batchrun import BatchResult
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
         "Results": "convhub.results", "CheckResult": "convhub.results", "BatchResult": "convhub.batchrun"}


def __getattr__(name: str) -> Any:
    """convert, check and the result types, imported on first use (they import NumPy)."""
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


def batch(
    job: str | os.PathLike[str],
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
    progress: Callable[[str], None] | None = None,
    registry: Registry | None = None,
) -> BatchResult:
    """Run a job file: every cell (model × target × option set) converted and checked, or taken
    from the cache when nothing it depends on changed; `convhub batch` as a function.

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
    from convhub.batchrun import run

    return run(job, output, executor=executor, address=address, jobs=jobs, timeout=timeout, dry_run=dry_run,
               use_cache=use_cache, retry_failed=retry_failed, force=force, cache_dir=cache_dir, progress=progress,
               registry=registry)
