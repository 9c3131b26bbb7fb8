"""What plugins contribute and what the core passes around.

Everything here is plain data and stays import-light: a plugin module that builds these
objects must not import its framework at module level, only inside the callables it hands over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

if TYPE_CHECKING:  # numpy is only needed by the callables, not to describe them
    import numpy as np

_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"{kind} name {name!r} must be lower-case letters, digits, '_', '-' or '.'")


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: its name, shape (None for a dynamic dim) and NumPy dtype name."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def input_facts(specs: list[TensorSpec]) -> dict[str, Any]:
    """The facts every source records about its inputs: the specs, which dims are dynamic, the dtypes."""
    return {
        "inputs": list(specs),
        "dynamic_dims": [f"{s.name}[{i}]" for s in specs for i, d in enumerate(s.shape) if d is None],
        "dtypes": sorted({s.dtype for s in specs}),
    }


@dataclass
class Artifact:
    """A model in one format: a file or directory, an in-memory object, or both.

    `facts` are what is known about the model and can decide routes (its input specs,
    dynamic dims, ops a converter cannot take...). They travel down the route.
    """

    format: str
    path: Path | None = None
    model: Any = None
    facts: dict[str, Any] = field(default_factory=dict)


class Session(Protocol):
    """A loaded model that runs on NumPy inputs; what a runner returns."""

    inputs: Sequence[TensorSpec]
    outputs: Sequence[str]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on inputs keyed by the names in `inputs`; return outputs in signature order."""


@dataclass(frozen=True)
class Format:
    """A node of the routing graph: a kind of model artifact.

    read:   turns what a user has (a path, or an in-memory object) into an Artifact with facts;
            None when the format cannot be a source. Raises InputError for things that are not
            a model of this format.
    detect: a cheap guess, importing no framework, whether a path or object is of this format.
    suffix: the file suffix of an artifact ('' for directories).
    requires: import names `read` needs; checked without importing them.
    """

    name: str
    description: str
    read: Callable[[Any, Mapping[str, Any]], Artifact] | None = None
    detect: Callable[[Any], bool] | None = None
    suffix: str = ""
    directory: bool = False
    requires: tuple[str, ...] = ()
    plugin: str = ""

    def __post_init__(self) -> None:
        _check_name("format", self.name)
        object.__setattr__(self, "requires", tuple(self.requires))


@dataclass(frozen=True)
class Conversion:
    """An edge of the routing graph: turns an artifact of `source` into one of `target`.

    convert:  convert(artifact, destination, options) writes the target at `destination` (a path
              that does not exist yet) and may return facts about what it wrote.
    requires: import names that must be installed; checked without importing them.
    cost:     relative price, for choosing among routes (roughly: seconds on a small model).
    lossy:    whether the target may lose precision (quantization...).
    refuse:   refuse(facts) returns why this edge cannot take a model, or None if it can.
    produces: facts known to hold for every artifact this edge writes (e.g. the SavedModel from
              a native JAX export holds XlaCallModule ops); the router passes them to the edges
              after this one, so a route is planned whole before anything runs.
    options:  the option keys this edge reads (e.g. "quantize"); an option the user gives that no
              edge on the route reads is an error, not silently ignored.
    """

    source: str
    target: str
    convert: Callable[[Artifact, Path, Mapping[str, Any]], Mapping[str, Any] | None]
    requires: tuple[str, ...] = ()
    cost: float = 1.0
    lossy: bool = False
    refuse: Callable[[Mapping[str, Any]], str | None] | None = None
    produces: Mapping[str, Any] = field(default_factory=dict)
    options: tuple[str, ...] = ()
    description: str = ""
    name: str = ""
    plugin: str = ""

    def __post_init__(self) -> None:
        _check_name("format", self.source)
        _check_name("format", self.target)
        object.__setattr__(self, "options", tuple(self.options))
        if self.source == self.target:
            raise ValueError(f"conversion {self.source}->{self.target} goes nowhere")
        if self.cost <= 0:
            raise ValueError(f"conversion {self.source}->{self.target}: cost must be positive")
        object.__setattr__(self, "requires", tuple(self.requires))
        if not self.name:
            object.__setattr__(self, "name", f"{self.source}->{self.target}")


@dataclass(frozen=True)
class Runner:
    """Runs artifacts of one format, for the parity check.

    load(artifact) returns a Session. `requires` as for Conversion.
    """

    format: str
    load: Callable[[Artifact], Session]
    requires: tuple[str, ...] = ()
    name: str = ""
    plugin: str = ""

    def __post_init__(self) -> None:
        _check_name("format", self.format)
        object.__setattr__(self, "requires", tuple(self.requires))
        if not self.name:
            object.__setattr__(self, "name", self.format)
