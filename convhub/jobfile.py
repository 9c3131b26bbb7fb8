"""The job file of `convhub batch`: models × targets × named option sets, in TOML.

A `convhub.toml` holds the job at its top level; a `pyproject.toml` in its `[tool.convhub]`
table (read with the standard library's tomllib). Everything is checked before any framework
loads, and a mistake is one line naming the file and the line it is on:

    models = ["models/*.keras", "nets/resnet.py:model"]   # paths, globs, file.py:NAME
    targets = ["tflite", "onnx"]
    seed = 0                                               # atol, rtol, timeout, check too

    [options]                                              # named option sets
    float32 = {}
    int8 = {target = "tflite", quantize = "int8"}

    [model.resnet]                                         # overrides, by model name
    targets = ["tflite"]
    inputs = "data/resnet.npz"

Paths are relative to the job file. See docs/batch.md for every key.
"""

from __future__ import annotations

import glob
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from convhub.errors import ConvhubError, UsageError, did_you_mean

if TYPE_CHECKING:
    from convhub.plugins import Registry

DEFAULT_LAYOUT = "{model}/{options}/{model}{suffix}"
DEFAULT_OPTION_SET = "default"
PLACEHOLDERS = ("model", "target", "options", "suffix")
RESERVED = ("index.html", "cells.jsonl", "reports", ".convhub-batch")  # what batch writes beside the cells
TOP_KEYS = ("models", "targets", "options", "model", "output", "layout", "seed", "atol", "rtol", "timeout",
            "check", "resources")
MODEL_KEYS = ("targets", "options", "source", "inputs", "atol", "rtol", "depends")
_SET_TARGETS = ("target", "targets")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


@dataclass(frozen=True)
class OptionSet:
    name: str
    options: Mapping[str, Any]  # plugin options, as declared (typed); TARGET.KEY for one target
    targets: tuple[str, ...] | None = None  # None: every target

    def for_target(self, target: str) -> dict[str, Any]:
        """The options a cell of `target` gets: the unscoped ones and its own, unscoped."""
        found = {}
        for key, value in self.options.items():
            scope, dot, name = key.rpartition(".")
            if not dot:
                found[key] = value
            elif scope == target:
                found[name] = value
        return found


@dataclass(frozen=True)
class JobModel:
    name: str
    source: str  # an absolute path, or a reference whose file part is absolute
    targets: tuple[str, ...]
    option_sets: tuple[str, ...]
    format: str | None = None  # the source format, when named
    inputs: Path | None = None
    atol: float | None = None
    rtol: float | None = None
    depends: tuple[Path, ...] = ()

    @property
    def paths(self) -> list[Path]:
        """The model's files as the user named them (outputs must keep off them)."""
        from convhub import pyref

        if pyref.looks_like_reference(self.source):
            module = self.source.rpartition(":")[0]
            return [Path(module)] if module.endswith(".py") else []
        return [Path(self.source)]


@dataclass(frozen=True)
class Cell:
    """One model × target × option set."""

    model: JobModel
    target: str
    option_set: str
    options: Mapping[str, Any]
    destination: str  # relative to the output folder, from the layout


@dataclass
class Job:
    path: Path
    models: list[JobModel]
    targets: tuple[str, ...]
    option_sets: dict[str, OptionSet]
    layout: str = DEFAULT_LAYOUT
    output: Path | None = None
    seed: int = 0
    atol: float | None = None
    rtol: float | None = None
    timeout: float | None = None
    check: bool = True
    cpus: float = 1.0
    memory: int = 2 << 30
    cells: list[Cell] = field(default_factory=list)


class _Lines:
    """Where each key of a TOML text is, to point an error at its line (tomllib gives none)."""

    def __init__(self, text: str, prefix: tuple[str, ...] = ()):
        self.lines = text.splitlines()
        self.keys: list[tuple[int, tuple[str, ...]]] = []
        table: tuple[str, ...] = ()
        for number, raw in enumerate(self.lines, 1):
            line = raw.strip()
            header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", line)
            if header:
                table = _split_key(header.group(1))
                self.keys.append((number, table))
                continue
            key = re.match(r"""^((?:"[^"]*"|'[^']*'|[A-Za-z0-9_.\-\s])+?)\s*=""", line)
            if key:
                self.keys.append((number, table + _split_key(key.group(1))))
        self.prefix = prefix

    def line(self, path: Sequence[str | int], value: str | None = None) -> int | None:
        wanted = self.prefix + tuple(str(p) for p in path if not isinstance(p, int))
        best, best_length = None, -1
        for number, key in self.keys:
            if key == wanted:
                best = number
                break
            if wanted[: len(key)] == key and len(key) > best_length:
                best, best_length = number, len(key)
        if best is not None and value is not None:
            for offset, text in enumerate(self.lines[best - 1:]):
                if f'"{value}"' in text or f"'{value}'" in text:
                    return best + offset
        return best


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^.\s]+)', text)
    return tuple(next(p for p in groups if p) if any(groups) else "" for groups in parts)


class _Checker:
    def __init__(self, path: Path, text: str, prefix: tuple[str, ...]):
        self.path, self.where = path, _Lines(text, prefix)

    def error(self, at: Sequence[str | int], message: str, *, value: str | None = None, hint: str = "") -> UsageError:
        line = self.where.line(at, value)
        return UsageError(f"{self.path}{f':{line}' if line else ''}: {message}", hint=hint)

    def known_keys(self, table: Mapping[str, Any], allowed: Sequence[str], at: tuple[str, ...], what: str) -> None:
        for key in table:
            if key not in allowed:
                near = did_you_mean(key, allowed)
                raise self.error((*at, key), f"unknown key {key!r} in {what}",
                                 hint=f"{near + ' ' if near else ''}keys: {', '.join(allowed)}")

    def typed(self, value: Any, kind: type | tuple[type, ...], at: tuple[str, ...], what: str) -> Any:
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.error(at, f"{what}, not {value!r}")
        return value

    def strings(self, value: Any, at: tuple[str, ...], what: str) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise self.error(at, f"{what} must be a list of strings, not {value!r}")
        return list(value)

    def checked(self, at: tuple[str, ...], fn: Any, *args: Any, value: str | None = None) -> Any:
        """fn(*args), its UsageError or InputError pointed at the line of `at`."""
        try:
            return fn(*args)
        except ConvhubError as exc:
            raise self.error(at, exc.message, value=value, hint=exc.hint) from None


def read_text(path: Path) -> tuple[dict[str, Any], str, tuple[str, ...]]:
    """The job table of a convhub.toml or pyproject.toml, its text, and where the table is."""
    import tomllib

    from convhub import validate

    validate.data_file(path, "convhub batch")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot be read ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = found.group(1) if found else str(len(text.splitlines())) if "end of document" in str(exc) else ""
        reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        raise UsageError(f"{path}{':' + line if line else ''}: not valid TOML: {reason}") from None
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("convhub")
        if not isinstance(table, dict):
            raise UsageError(f"{path} has no [tool.convhub] table", hint="put the job there, or in a convhub.toml")
        return table, text, ("tool", "convhub")
    return data, text, ()


def load(path: str | os.PathLike[str], registry: Registry | None = None) -> Job:
    """Read and check a job file; UsageError (exit 2) pointing at the line of any mistake."""
    from convhub.plugins import default_registry

    path = Path(path)
    data, text, prefix = read_text(path)
    return parse(data, path, registry or default_registry(), text, prefix)


def parse(data: Mapping[str, Any], path: Path, registry: Registry, text: str = "",
          prefix: tuple[str, ...] = ()) -> Job:
    from convhub import validate

    c = _Checker(path, text, prefix)
    base = Path(os.path.abspath(path)).parent
    c.known_keys(data, TOP_KEYS, (), "the job")
    if "models" not in data:
        raise c.error((), "the job names no models", hint='models = ["model.keras", "net.py:model", "zoo/*.keras"]')
    if "targets" not in data:
        raise c.error((), "the job names no targets", hint='targets = ["tflite", "onnx"]')
    targets = tuple(_formats(c, registry, c.strings(data["targets"], ("targets",), "targets"), ("targets",)))
    option_sets = _option_sets(c, registry, data.get("options"), targets, base)
    overrides = data.get("model", {})
    c.typed(overrides, dict, ("model",), "[model.NAME] tables override one model's settings")
    found = _models(c, registry, data["models"], base)
    known = {m.name for m in found}
    for name in overrides:
        if name not in known:
            near = did_you_mean(name, known)
            raise c.error(("model", name), f"[model.{name}] names no model of this job",
                          hint=f"{near + ' ' if near else ''}models: {', '.join(sorted(known))}")
    models = [_model(c, registry, m.name, m.source, overrides.get(m.name, {}), targets, option_sets, base,
                     m.inputs) for m in found]
    job = Job(path, models, targets, option_sets)
    for key, value in data.items():
        at = (key,)
        if key == "seed":
            job.seed = c.checked(at, validate.seed, value)
        elif key in ("atol", "rtol"):
            setattr(job, key, c.checked(at, validate.tolerance, key, value))
        elif key == "timeout":
            job.timeout = c.checked(at, validate.positive, "timeout", value)
        elif key == "check":
            job.check = c.typed(value, bool, at, "check is true or false")
        elif key == "output":
            job.output = _at(base, c.typed(value, str, at, "output is a folder's path"))
        elif key == "layout":
            job.layout = c.typed(value, str, at, "layout is a path template like " + repr(DEFAULT_LAYOUT))
        elif key == "resources":
            job.cpus, job.memory = _resources(c, value)
    job.cells = _cells(c, registry, job)
    return job


def _at(base: Path, path: str | Path) -> Path:
    """A path of the job file, absolute and normalized (relative to the file's folder)."""
    return Path(os.path.normpath(base / path))


def _formats(c: _Checker, registry: Registry, names: Sequence[str], at: tuple[str, ...]) -> list[str]:
    found = []
    for name in names:
        fmt = c.checked(at, registry.format, name, value=name)
        if fmt.name in found:
            raise c.error(at, f"{fmt.name!r} is named twice", value=name)
        found.append(fmt.name)
    return found


def _option_sets(c: _Checker, registry: Registry, table: Any, targets: Sequence[str], base: Path
                 ) -> dict[str, OptionSet]:
    if table is None:
        return {DEFAULT_OPTION_SET: OptionSet(DEFAULT_OPTION_SET, {})}
    c.typed(table, dict, ("options",), "[options] holds named option sets, e.g. int8 = {quantize = \"int8\"}")
    if not table:
        raise c.error(("options",), "[options] defines no option set", hint="float32 = {} is a set with no options")
    sets = {}
    for name, given in table.items():
        at = ("options", name)
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", name):
            raise c.error(at, f"option set name {name!r}: letters, digits, '_', '-', '.', '+' only (it names folders)")
        c.typed(given, dict, at, f"option set {name!r} is a table of options, e.g. {{quantize = \"int8\"}}")
        scope = None
        if "target" in given and "targets" in given:
            raise c.error(at, f"option set {name!r}: give target or targets, not both")
        for key in _SET_TARGETS:
            if key in given:
                scope = tuple(_formats(c, registry, c.strings(given[key], (*at, key), key), (*at, key)))
                stray = [t for t in scope if t not in targets]
                if stray:
                    raise c.error((*at, key), f"option set {name!r} is for {stray[0]}, which is not a target of this job"
                                  f" (targets: {', '.join(targets)})")
        options = {k: _option(c, registry, k, v, (*at, k), targets, base) for k, v in given.items()
                   if k not in _SET_TARGETS}
        if scope is None and options and all("." in k for k in options):  # {"tflite.quantize" = ...}: tflite's
            scope = tuple(t for t in targets if any(k.rpartition(".")[0] == t for k in options))
        sets[name] = OptionSet(name, options, scope)
    return sets


def _option(c: _Checker, registry: Registry, key: str, value: Any, at: tuple[str, ...], targets: Sequence[str],
            base: Path) -> Any:
    from convhub import validate

    scope, dot, name = key.rpartition(".")
    declared = getattr(registry, "options", {})
    if dot and scope not in targets:
        near = did_you_mean(scope, targets)
        raise c.error(at, f"option {key!r} is for {scope!r}, which is not a target of this job",
                      hint=f"{near + ' ' if near else ''}targets: {', '.join(targets)}")
    option = declared.get(name)
    if option is None:
        near = did_you_mean(name, declared)
        raise c.error(at, f"no installed plugin declares an option {name!r}",
                      hint=f"{near + ' ' if near else ''}options: {', '.join(sorted(declared)) or 'none'}")
    parsed = c.checked(at, option.parse, value)
    if option.type == "path" and parsed is not None:
        parsed = str(_at(base, str(parsed)))
        c.checked(at, validate.data_file, Path(parsed), option.flag)
    return parsed


def _models(c: _Checker, registry: Registry, given: Any, base: Path) -> list[Any]:
    """The models listed (paths, globs, references; a folder stands for the models in it), named
    as `convhub matrix` names them, with the parity inputs found beside each."""
    from convhub import pyref, validate
    from convhub.matrix import models_in

    entries = c.strings(given, ("models",), "models")
    found: list[Any] = []
    for entry in entries:
        at = ("models",)
        module, sep, name = entry.rpartition(":")
        if sep and name.isidentifier() and (module.endswith(".py") or "/" in module or pyref.looks_like_reference(entry)):
            resolved = [f"{_at(base, module)}:{name}" if module.endswith(".py") or "/" in module else entry]
            if module.endswith(".py") and not (base / module).is_file():
                raise c.error(at, f"{module}: no such file", value=entry)
        elif glob.has_magic(entry):
            resolved = sorted(str(_at(base, p)) for p in glob.glob(str(base / entry), recursive=True))
            if not resolved:
                raise c.error(at, f"{entry!r} matches no file", value=entry)
        else:
            resolved = [str(_at(base, entry))]
            c.checked(at, validate.model_path, base / entry, value=entry)
        try:
            models = models_in(resolved, registry)
        except ConvhubError as exc:
            raise c.error(at, exc.message, value=entry, hint=exc.hint) from None
        found += [(m, entry) for m in models]
    names = [m.name for m, _ in found]
    for (model, entry), name in zip(found, names):
        if names.count(name) > 1:
            raise c.error(("models",), f"two models are named {name!r} (a model is named after its file); rename one",
                          value=entry)
    return [m for m, _ in found]


def _model(c: _Checker, registry: Registry, name: str, source: str, override: Any, targets: Sequence[str],
           option_sets: Mapping[str, OptionSet], base: Path, inputs: Path | None) -> JobModel:
    from convhub import pyref, validate

    at = ("model", name)
    c.typed(override, dict, at, f"[model.{name}] is a table")
    c.known_keys(override, MODEL_KEYS, at, f"[model.{name}]")
    own_targets = tuple(_formats(c, registry, c.strings(override["targets"], (*at, "targets"), "targets"),
                                 (*at, "targets"))) if "targets" in override else tuple(targets)
    sets = tuple(c.strings(override["options"], (*at, "options"), "options")) if "options" in override \
        else tuple(option_sets)
    for set_name in sets:
        if set_name not in option_sets:
            near = did_you_mean(set_name, option_sets)
            raise c.error((*at, "options"), f"no option set is named {set_name!r}", value=set_name,
                          hint=f"{near + ' ' if near else ''}option sets: {', '.join(option_sets)}")
    fmt = None
    if "source" in override:
        fmt = c.checked((*at, "source"), registry.format, override["source"]).name
    elif not pyref.looks_like_reference(source):
        fmt = c.checked(("models",), registry.detect_format, Path(source), value=None).name
    if "inputs" in override:
        inputs = _at(base, c.typed(override["inputs"], str, (*at, "inputs"), "inputs is an .npz file's path"))
        c.checked((*at, "inputs"), validate.data_file, inputs, "inputs")
    tolerances = {k: c.checked((*at, k), validate.tolerance, k, override[k]) for k in ("atol", "rtol") if k in override}
    depends: list[Path] = []
    for pattern in c.strings(override["depends"], (*at, "depends"), "depends") if "depends" in override else []:
        matched = sorted(glob.glob(str(base / pattern), recursive=True))
        if not matched:
            raise c.error((*at, "depends"), f"{pattern!r} matches no file", value=pattern)
        depends += [_at(base, p) for p in matched]
    return JobModel(name, source, own_targets, sets, fmt, inputs, tolerances.get("atol"), tolerances.get("rtol"),
                    tuple(depends))


def _resources(c: _Checker, table: Any) -> tuple[float, int]:
    at = ("resources",)
    c.typed(table, dict, at, "[resources] holds cpus and memory, each cell's needs on a Ray cluster")
    c.known_keys(table, ("cpus", "memory"), at, "[resources]")
    cpus = float(c.typed(table.get("cpus", 1), (int, float), (*at, "cpus"), "cpus is a number > 0"))
    if cpus <= 0:
        raise c.error((*at, "cpus"), f"cpus must be > 0, not {cpus:g}")
    memory: Any = table.get("memory", 2 << 30)
    if isinstance(memory, str):
        found = _MEMORY.match(memory)
        if not found:
            raise c.error((*at, "memory"), f"memory {memory!r}: write bytes, or e.g. \"4 GiB\", \"512 MB\"")
        memory = float(found.group(1)) * _UNITS[(found.group(2) or "b").lower()]
    if isinstance(memory, bool) or not isinstance(memory, (int, float)) or memory <= 0:
        raise c.error((*at, "memory"), f"memory must be a size > 0, not {memory!r}")
    return cpus, int(memory)


def _cells(c: _Checker, registry: Registry, job: Job) -> list[Cell]:
    fields = [f for _, f, _, _ in string.Formatter().parse(job.layout) if f is not None]
    for name in fields:
        if name not in PLACEHOLDERS:
            raise c.error(("layout",), f"layout: unknown placeholder {{{name}}}",
                          hint=f"placeholders: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    cells: list[Cell] = []
    seen: dict[str, Cell] = {}
    for model in job.models:
        mine = []
        for target in model.targets:
            fmt = registry.format(target)
            for set_name in model.option_sets:
                option_set = job.option_sets[set_name]
                if option_set.targets is not None and target not in option_set.targets:
                    continue
                suffix = fmt.suffix or f"_{fmt.name}"
                destination = job.layout.format(model=model.name, target=target, options=set_name, suffix=suffix)
                _check_destination(c, destination)
                if destination in seen:
                    other = seen[destination]
                    raise c.error(("layout",), f"layout puts two cells at {destination}"
                                  f" ({other.model.name} → {other.target} {other.option_set} and"
                                  f" {model.name} → {target} {set_name})",
                                  hint="use {model}, {target} or {suffix} and {options} in it")
                cell = Cell(model, target, set_name, option_set.for_target(target), destination)
                _check_route(c, registry, cell)
                seen[destination] = cell
                mine.append(cell)
        if not mine:
            raise c.error(("model", model.name), f"model {model.name!r} has no cell: none of its option sets"
                          f" ({', '.join(model.option_sets)}) applies to its targets ({', '.join(model.targets)})")
        cells += mine
    return cells


def _check_route(c: _Checker, registry: Registry, cell: Cell) -> None:
    """A route leads from the model's format to the target and reads every option of the cell.
    A reference's format is known once its code runs: any format that can be read stands in."""
    from convhub.errors import NoRouteError
    from convhub.plan import GENERAL_OPTIONS

    model = cell.model
    sources = [model.format] if model.format else [f.name for f in registry.formats.values()
                                                   if f.read is not None and f.name != cell.target]
    reads: set[str] = set(GENERAL_OPTIONS)
    routes = []
    problem: NoRouteError | None = None
    for source in sources:
        try:
            route = registry.graph.best(source, cell.target)
        except NoRouteError as exc:
            problem = problem or exc
            continue
        routes.append(route)
        reads |= {k for hop in route.hops for k in hop.options} | set(registry.formats[source].options)
    if not routes:
        assert problem is not None
        raise c.error(("model", model.name) if model.format is None else ("models",),
                      f"{model.name} → {cell.target}: {problem.message}", hint=problem.hint)
    for key in cell.options:
        if key not in reads:
            raise c.error(("options", cell.option_set, key),
                          f"option {key!r} of option set {cell.option_set!r} is not read by any conversion on"
                          f" the route {' or '.join(map(str, routes))} ({model.name} → {cell.target})",
                          hint=f"scope it to the targets it is for: {{target = \"...\"}} or TARGET.{key}")


def _check_destination(c: _Checker, destination: str) -> None:
    parts = Path(destination).parts
    if not parts or Path(destination).is_absolute() or ".." in parts or parts[0] in RESERVED:
        raise c.error(("layout",), f"layout: {destination!r} must be a relative path inside the output folder,"
                      f" not {', '.join(RESERVED)}")
