"""Today's JAX as a source: a function, a jax.jit-ed function, a Flax linen module bound to its
variables, a Flax NNX module, each with example inputs (`example_inputs=(x,)`, as `jax.export`
and `torch.export` take them), and a JaxFunction where Orbax is not installed.

The model is exported in the caller's process with the caller's JAX (`jax.export`, lowered for
CPU); what leaves that process is files: the StableHLO module (a portable artifact, readable by
newer converters) with a signature.json, or an ONNX file written by jax2onnx. The parity
reference is the JAX function itself, jit-compiled here.
"""

from __future__ import annotations

import inspect
import os
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from convhub.errors import InputError, UsageError
from convhub.types import Artifact, TensorSpec, input_facts

from convhub_jax import ranges
from convhub_jax.sources import JaxFunction, class_from, is_flax_linen_module

BATCH = "batch"
MODULE_FILE, SIGNATURE_FILE = "module.mlirbc", "signature.json"
MIN_OPSET, DEFAULT_OPSET = 18, 21  # jax2onnx's BatchNorm graph at opset 17 is invalid (ReduceMean)


def is_nnx_module(thing: Any) -> bool:
    return class_from(thing, "flax.nnx", "Module")


def is_jax_function(thing: Any) -> bool:
    """A jax.jit-ed function, or a plain Python function or partial (judged by names only)."""
    import functools
    import types

    return class_from(thing, "jaxlib", "PjitFunction") or isinstance(thing, (types.FunctionType, functools.partial))


def claims(thing: Any) -> bool:
    return is_nnx_module(thing) or is_flax_linen_module(thing) or is_jax_function(thing)


@dataclass
class Exported:
    """A read modern source: the pure function of its inputs and what jax.export made of it."""

    fn: Callable[..., Any]
    inputs: list[TensorSpec]
    outputs: list[str]
    exported: Any  # jax.export.Exported
    kind: str


def _function(thing: Any) -> tuple[Callable[..., Any], Callable[..., Any], str]:
    """(the function of the inputs alone, what names its parameters, the kind of source)."""
    if isinstance(thing, JaxFunction):
        return (lambda *xs: thing.fn(thing.params, *xs)), thing.fn, "JaxFunction"
    if is_nnx_module(thing):
        from flax import nnx

        graphdef, state = nnx.split(thing)

        def call(*xs: Any) -> Any:
            module = nnx.merge(graphdef, state)
            module.eval()  # inference: BatchNorm's running averages, no dropout
            return module(*xs)

        return call, type(thing).__call__, "nnx"
    if is_flax_linen_module(thing):
        if getattr(thing, "scope", None) is None:
            raise InputError("a Flax module needs its variables (pass module.bind(variables) with example_inputs=..., "
                             "or convhub_jax.JaxFunction.from_flax(module, variables, inputs={...}))")
        module, variables = thing.unbind()
        return (lambda *xs: module.apply(variables, *xs)), type(thing).__call__, "linen"
    if is_jax_function(thing):
        return thing, getattr(thing, "__wrapped__", thing), "jit" if class_from(thing, "jaxlib", "PjitFunction") else "function"
    raise InputError(f"a {type(thing).__name__} is not a JAX function or Flax module")


def _names(named_by: Callable[..., Any], count: int, skip_self: bool) -> list[str]:
    """The inputs' names: the function's own parameter names where it has them."""
    try:
        params = [p.name for p in inspect.signature(named_by).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    params = params[1:] if skip_self and params[:1] == ["self"] else params
    names = params[:count] if len(params) >= count else []
    return names if len(set(names)) == count and all(n.isidentifier() for n in names) else [
        f"input_{i}" for i in range(count)]


def read(thing: Any, options: Mapping[str, Any]) -> Artifact:
    import jax
    import numpy as np
    from jax import export

    fn, named_by, kind = _function(thing)
    dynamic = bool(options.get("dynamic_batch"))
    scope = export.SymbolicScope()
    if isinstance(thing, JaxFunction):
        specs = list(thing.specs)
        names = [s.name for s in specs]
        dims = [[BATCH if d is None and i == 0 else (f"{s.name}_{i}" if d is None else d) for i, d in enumerate(s.shape)]
                for s in specs]
        dtypes = [s.dtype for s in specs]
    else:
        examples = options.get("example_inputs")
        if examples is None:
            what = f"a bare function ({getattr(thing, '__name__', kind)}) needs its params or" if kind in (
                "function", "jit") else f"a {kind} source needs"
            raise InputError(f"{what} example inputs: convert(model, ..., example_inputs=(x,)) (on the command line"
                             " --example-inputs x.npz or file.py:NAME), or convhub_jax.JaxFunction(fn, params, inputs={...})")
        examples = given_examples(examples)
        arrays = [np.asarray(x) for x in examples]
        names = _names(named_by, len(arrays), kind in ("nnx", "linen"))
        dims = [[BATCH if dynamic and i == 0 else d for i, d in enumerate(a.shape)] for a in arrays]
        dtypes = [a.dtype.name for a in arrays]
    structs = [jax.ShapeDtypeStruct(export.symbolic_shape(", ".join(map(str, d)), scope=scope) if any(
        isinstance(x, str) for x in d) else tuple(d), dt) for d, dt in zip(dims, dtypes)]
    try:
        exported = export.export(jax.jit(fn), platforms=("cpu",))(*structs)
    except Exception as exc:  # noqa: BLE001 - the user's function did not trace
        raise InputError(f"jax.export could not trace the {kind}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                         ) from exc
    inputs = [TensorSpec(n, tuple(None if isinstance(x, str) else int(x) for x in d), dt)
              for n, d, dt in zip(names, dims, dtypes)]
    outputs = _output_names(jax.eval_shape(fn, *structs))
    model = Exported(fn, inputs, outputs, exported, kind)
    facts = {**input_facts(inputs), "outputs": outputs, "jax_export": True, "jax_source": kind,
             "jax_version": jax.__version__}
    found = ranges.input_ranges(fn, inputs)
    if found:
        facts["input_ranges"] = found
    return Artifact("jax", model=model, facts=facts)


def given_examples(examples: Any) -> Sequence[Any]:
    """The example inputs as a sequence of arrays: as given, or from what the command line names,
    an .npz (its arrays in the order they were saved: np.savez(f, x, y)) or a `file.py:NAME`
    reference to a tuple of arrays (imported here, in the worker that reads the model)."""
    import numpy as np

    if isinstance(examples, (str, os.PathLike)):
        from convhub import pyref

        text = os.fspath(examples)
        if pyref.looks_like_reference(text):
            examples = pyref.load(text)
        else:
            try:
                with np.load(text, allow_pickle=False) as npz:
                    examples = [npz[name] for name in npz.files]
            except (OSError, ValueError) as exc:
                raise InputError(f"--example-inputs {text}: not an .npz of arrays or a file.py:NAME reference"
                                 f" ({type(exc).__name__}: {exc})") from None
    if hasattr(examples, "shape") and hasattr(examples, "dtype"):
        examples = (examples,)  # one array: the one input
    if not isinstance(examples, (tuple, list)) or not examples:
        raise UsageError("example_inputs: a tuple of arrays, one per positional input")
    return examples


def _output_names(structure: Any) -> list[str]:
    if isinstance(structure, Mapping):
        return [str(k) for k in structure]
    if isinstance(structure, (list, tuple)):
        return [f"output_{i}" for i in range(len(structure))]
    return ["output_0"]


def flat_outputs(value: Any, names: Sequence[str]) -> dict[str, Any]:
    import numpy as np

    if isinstance(value, Mapping):
        return {n: np.asarray(value[n]) for n in names}
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return {n: np.asarray(v) for n, v in zip(names, values)}


class Session:
    """The JAX function itself, jit-compiled in the caller's process: the parity reference."""

    def __init__(self, model: Exported):
        import jax

        self.inputs, self.outputs = list(model.inputs), list(model.outputs)
        self._fn = jax.jit(model.fn)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        return flat_outputs(self._fn(*(feeds[s.name] for s in self.inputs)), self.outputs)


def refuse_legacy(facts: Mapping[str, Any]) -> str | None:
    """A source read through Orbax goes on through a SavedModel. Planned without a model (no
    facts), a JAX source goes this way where Orbax is not installed (a light install)."""
    from convhub_jax.export import orbax_installed

    if facts.get("jax_export") or ("jax_source" not in facts and not orbax_installed()):
        return None
    return "this source was read through Orbax (jax2tf): its routes go through a SavedModel"


def to_stablehlo(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    """The export as files: the StableHLO portable artifact and the signature of its main function."""
    model: Exported = artifact.model
    destination.mkdir()
    (destination / MODULE_FILE).write_bytes(model.exported.mlir_module_serialized)
    signature = {"inputs": [s.to_json() for s in model.inputs], "outputs": model.outputs,
                 "jax_version": artifact.facts.get("jax_version"),
                 "calling_convention_version": model.exported.calling_convention_version}
    (destination / SIGNATURE_FILE).write_text(json.dumps(signature, indent=1) + "\n")
    return {"outputs": model.outputs}


def to_onnx(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    """jax2onnx, here beside the model: it traces the function, not the StableHLO."""
    import jax
    from jax2onnx import to_onnx as convert

    model: Exported = artifact.model
    opset = int(options.get("opset") or DEFAULT_OPSET)
    if opset < MIN_OPSET:
        raise UsageError(f"--opset {opset}: jax2onnx needs opset {MIN_OPSET} or newer here"
                         " (at 17 its BatchNorm graph is invalid)")
    shapes = [jax.ShapeDtypeStruct(tuple(BATCH if d is None else d for d in s.shape), s.dtype) for s in model.inputs]
    proto = convert(model.fn, [tuple(BATCH if d is None else d for d in s.shape) for s in model.inputs]
                    if all(s.dtype == "float32" for s in model.inputs) else shapes,
                    opset=opset, model_name=model.kind, input_names=[s.name for s in model.inputs],
                    output_names=list(model.outputs))
    destination.write_bytes(proto.SerializeToString())
    return {"opset": opset, "onnx_from": "jax2onnx", "outputs": list(model.outputs)}


def read_stablehlo(thing: Any, options: Mapping[str, Any]) -> Artifact:
    path = Path(thing)
    try:
        signature = json.loads((path / SIGNATURE_FILE).read_text())
        inputs = [TensorSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in signature["inputs"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a convhub StableHLO export: {SIGNATURE_FILE}: {exc}") from None
    return Artifact("stablehlo", path, facts={**input_facts(inputs), "outputs": list(signature["outputs"])})


def detect_stablehlo(thing: Any) -> bool:
    return isinstance(thing, Path) and (thing / MODULE_FILE).is_file() and (thing / SIGNATURE_FILE).is_file()
