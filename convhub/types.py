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

    def to_json(self) -> dict[str, Any]:
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
    `reference` is the Python reference (file.py:NAME) an in-memory model was loaded from, so
    a worker process can load it again; `model` never leaves the process that holds it.
    """

    format: str
    path: Path | None = None
    model: Any = None
    facts: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None

    @property
    def in_memory(self) -> bool:
        """Only this process has it: an object the caller handed over, with no file or reference."""
        return self.model is not None and self.path is None and self.reference is None


class Session(Protocol):
    """A loaded model that runs on NumPy inputs; what a runner returns."""

    inputs: Sequence[TensorSpec]
    outputs: Sequence[str]

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        """Run on inputs keyed by the names in `inputs`; return outputs in signature order."""


@dataclass(frozen=True)
class Toolchain:
    """The environment a conversion or a runner needs, when it is not the caller's own.

    requirements: what the hop needs, as PEP 508 requirements ("tensorflow==2.21.*"); the
              caller's environment serves the hop when it satisfies them all and `python`.
    lock:     a requirements file of exact pins (`uv pip compile --universal` output) shipped
              with the plugin; otherwise convhub creates a virtual environment from it with uv
              on first use, cached per user and keyed by the lock's hash. It must pin `pluggy`
              and `numpy`, which convhub's worker imports.
    python:   the Pythons it runs on, a version specifier (">=3.12"); "" for any.
    """

    name: str
    requirements: tuple[str, ...]
    lock: Path
    python: str = ""
    description: str = ""

    @classmethod
    def from_files(cls, name: str, requirements: Path, python: str = "", description: str = "") -> Toolchain:
        """A toolchain whose requirements are the lines of `requirements` (a requirements.in) and
        whose lock is the file beside it with the suffix .txt (what `uv pip compile` wrote)."""
        lines = [line.split("#")[0].strip() for line in Path(requirements).read_text().splitlines()]
        return cls(name, tuple(line for line in lines if line), Path(requirements).with_suffix(".txt"), python,
                   description)

    def __post_init__(self) -> None:
        _check_name("toolchain", self.name)
        object.__setattr__(self, "requirements", tuple(self.requirements))
        object.__setattr__(self, "lock", Path(self.lock))
        if not self.lock.is_file():
            raise ValueError(f"toolchain {self.name!r}: its lock {self.lock} is not a file")


CALIBRATION = "<calibration data>"  # in a Format's modes: the model's own calibration .npz


@dataclass(frozen=True)
class Format:
    """A node of the routing graph: a kind of model artifact.

    read:   turns what a user has (a path, or an in-memory object) into an Artifact with facts;
            None when the format cannot be a source. Raises InputError for things that are not
            a model of this format.
    detect: a cheap guess, importing no framework, whether a path or object is of this format.
    suffix: the file suffix of an artifact ('' for directories).
    requires: import names `read` needs; checked without importing them.
    options:  the option keys `read` takes (e.g. "signature"); given for a source of another
              format, such an option is refused rather than silently ignored.
    env:      environment variables the worker that reads this format needs (as for Conversion).
    modes:    named ways to write this format as a target, each a set of options (e.g. "int8":
              {"quantize": "int8"}); `convhub matrix` converts to each. The value CALIBRATION
              stands for the model's own calibration data, and a mode using it is skipped for a
              model that has none.
    aliases:  other names users write for it ("tf.js", "saved_model"); names are matched
              case-insensitively, so only spellings, not capitalisations, need an alias.
    embed:    embed(path, record) writes convhub's provenance record (a JSON-able dict) into an
              artifact of this format in place, where the format has room for it (ONNX
              metadata_props, TFLite metadata...); run in the hop's worker right after it wrote
              the artifact, so the parity check runs on the final bytes.
    examples: examples(path, inputs, expected) writes the parity inputs (and the source's outputs
              on them, None when the check is off) into the artifact (TF Serving's warmup
              requests); run in a worker once the inputs are known, before the artifact's check.
    inspect:  inspect(path) describes an artifact for `convhub inspect`: a dict with "inputs" and
              "outputs" (TensorSpec lists), "parameters", "precision" ({dtype: share of the
              weights}), "operators" ({op: count}), "provenance" (the embedded record or None)
              and anything else worth a line; it imports only what this format needs.
    versions: for a format published as numbered versions (a TF Serving model base path):
              versions(output, options) gives the folder that holds the versions and the version
              asked for (None: the next after the highest there). Each run's artifact becomes a
              new version folder in it; a version that exists is never replaced or touched.
    """

    name: str
    description: str
    read: Callable[[Any, Mapping[str, Any]], Artifact] | None = None
    detect: Callable[[Any], bool] | None = None
    suffix: str = ""
    directory: bool = False
    requires: tuple[str, ...] = ()
    plugin: str = ""
    options: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    modes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    embed: Callable[[Path, Mapping[str, Any]], None] | None = None
    examples: Callable[[Path, Mapping[str, Any], Mapping[str, Any] | None], None] | None = None
    inspect: Callable[[Path], Mapping[str, Any]] | None = None
    versions: Callable[[Path, Mapping[str, Any]], tuple[Path, int | None]] | None = None

    def __post_init__(self) -> None:
        _check_name("format", self.name)
        object.__setattr__(self, "requires", tuple(self.requires))
        object.__setattr__(self, "options", tuple(self.options))
        object.__setattr__(self, "aliases", tuple(a.lower() for a in self.aliases))


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
    env:      environment variables the worker process that runs this edge needs (e.g.
              TF_ENABLE_ONEDNN_OPTS=0): such an edge runs in a worker of its own settings.
    lossy_options: the option keys that make this edge lossy when set (e.g. "quantize"): a run
              with any of them checks on a larger parity batch (parity.QUANTIZED_BATCH), so
              top-1 agreement is judged over enough rows to mean something.
    data_options: the option keys that hand this edge the user's own data (e.g. a calibration
              set): with one set, the checks of a lossy route use uniform rows in the ranges
              that data set, instead of the realistic rows generated calibration is drawn from.
              Such an edge also gets the run's --inputs path as options["check_inputs"] when
              there is one, so data it generates can take their shapes (a sequence length).
    check_options: check_options(options) raises UsageError for option values that cannot go
              together (e.g. int8 I/O without int8), before anything loads; `options` holds the
              run's options for this edge's target. Single values are checked by `Option`.
    notes:    notes(facts) returns what this edge will do differently for a model with these
              facts (a rewrite, a fallback), one line each; `convhub route --explain` shows them,
              so nothing an edge does to a model is hidden.
    explain_drift: explain_drift(before, artifact, options, feeds) says in one line where the
              artifact this edge wrote from `before` (with `options`) drifts, e.g. layer by layer;
              called when its check failed on compared values and this hop added the error, with
              the check's inputs keyed by the artifact's input names. None: nothing to say.
    toolchain: the environment this edge needs when the caller's may not have it (a Toolchain):
              the hop then runs in a worker of that environment, and everything it gets and
              returns crosses as plain records and files (convhub.wire), never pickles.
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
    env: Mapping[str, str] = field(default_factory=dict)
    notes: Callable[[Mapping[str, Any]], Sequence[str]] | None = None
    lossy_options: tuple[str, ...] = ()
    data_options: tuple[str, ...] = ()
    check_options: Callable[[Mapping[str, Any]], None] | None = None
    explain_drift: Callable[[Artifact, Artifact, Mapping[str, Any], Mapping[str, Any]], str | None] | None = None
    toolchain: Toolchain | None = None

    def __post_init__(self) -> None:
        _check_name("format", self.source)
        object.__setattr__(self, "lossy_options", tuple(self.lossy_options))
        object.__setattr__(self, "data_options", tuple(self.data_options))
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

    load(artifact) returns a Session. `requires`, `env` and `toolchain` as for Conversion.
    versions() returns the versions of what it runs with that is no Python distribution (a
    Node.js package, the node binary), {name: version}, for the provenance record; Python
    distributions are found from `requires`.
    """

    format: str
    load: Callable[[Artifact], Session]
    requires: tuple[str, ...] = ()
    name: str = ""
    plugin: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    versions: Callable[[], Mapping[str, str]] | None = None
    toolchain: Toolchain | None = None

    def __post_init__(self) -> None:
        _check_name("format", self.format)
        object.__setattr__(self, "requires", tuple(self.requires))
        if not self.name:
            object.__setattr__(self, "name", self.format)


OPTION_TYPES = ("str", "int", "float", "bool", "path")


@dataclass(frozen=True)
class Option:
    """An option that a plugin's formats (when reading a source) or conversions read, declared so
    that the CLI builds its flag and both the CLI and the library check values before any work.

    key:        what `read` and `convert` find in their options mapping (e.g. "quantize").
    help:       one line for `--help`.
    type:       one of "str", "int", "float", "bool", "path"; values are converted to it.
    choices:    the allowed values, if only some are.
    minimum, maximum: the allowed range of an int or float.
    flag:       the command-line flag (default: "--" + key with "_" as "-").
    flag_value: for a bool, what giving the flag sets (True; False for a flag such as --unsafe).
    """

    key: str
    help: str
    type: str = "str"
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    flag: str = ""
    flag_value: Any = True
    plugin: str = ""

    def __post_init__(self) -> None:
        if not re.match(r"^[a-z][a-z0-9_]*$", self.key):
            raise ValueError(f"option key {self.key!r} must be lower-case letters, digits and '_'")
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.key!r}: type must be one of {', '.join(OPTION_TYPES)}")
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.flag:
            object.__setattr__(self, "flag", "--" + self.key.replace("_", "-"))

    def parse(self, value: Any) -> Any:
        """The value as its type, or UsageError (one line) when it is not allowed."""
        from convhub.errors import UsageError

        def bad(why: str) -> UsageError:
            return UsageError(f"{self.flag} ({self.key}): {why}, not {value!r}")

        if value is None:
            return None
        if self.type == "bool":
            if isinstance(value, str) and value.lower() in ("1", "0", "true", "false", "yes", "no"):
                return value.lower() in ("1", "true", "yes")
            if not isinstance(value, bool):
                raise bad("write true or false")
            return value
        if self.type in ("int", "float"):
            kind = int if self.type == "int" else float
            try:
                if isinstance(value, bool) or (kind is int and isinstance(value, float)):
                    raise ValueError
                number = kind(value)
            except (TypeError, ValueError):
                raise bad("a whole number is needed" if kind is int else "a number is needed") from None
            if number != number or number in (float("inf"), float("-inf")):
                raise bad("a finite number is needed")
            if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
                low = "" if self.minimum is None else f"{self.minimum:g}"
                high = "" if self.maximum is None else f"{self.maximum:g}"
                raise bad(f"must be {'from ' + low + ' to ' + high if low and high else ('≥ ' + low if low else '≤ ' + high)}")
            value = number
        elif self.type == "path":
            value = str(value)
        elif not isinstance(value, str):
            raise bad("text is needed")
        if self.choices and str(value) not in self.choices:
            raise bad(f"choose one of {', '.join(self.choices)}")
        return value
