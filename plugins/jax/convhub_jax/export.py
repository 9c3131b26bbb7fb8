"""Reading JAX sources, exporting them to SavedModels with Orbax, and running them with JAX.

Every source becomes an Orbax ExportManager (a JaxModule plus ServingConfigs). Its serving
signatures are traced when the source is read, so the facts hold the exact input and output
names the SavedModel will have; the export is jax2tf native serialization (StableHLO inside
XlaCallModule ops), Orbax's default.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from convhub.errors import InputError
from convhub.types import Artifact, TensorSpec, input_facts
from convhub_tensorflow import frameworks

from convhub_jax import modern, ranges
from convhub_jax.sources import JaxFunction, OrbaxExport, class_from

DEFAULT_SIGNATURE = "serving_default"
BATCH_SYMBOL = "batch"

EXPECTED = "convhub_jax.JaxFunction, convhub_jax.OrbaxExport or an orbax.export.ExportManager"


def detect(thing: Any) -> bool:
    # A bare JaxModule or unbound Flax module is claimed too, so `read` can say what it is missing.
    return (
        isinstance(thing, (JaxFunction, OrbaxExport))
        or class_from(thing, "orbax.export", "ExportManager", "JaxModule")
        or modern.claims(thing)
    )


def orbax_installed() -> bool:
    """Whether the Orbax route (jax2tf inside this process) can run here: it needs Orbax and
    TensorFlow beside JAX, which a light install (today's JAX, no TensorFlow) does not have."""
    from convhub.graph import missing_modules

    return not missing_modules(("orbax", "tensorflow"))


@dataclass
class Signature:
    """One serving signature: its config, and its inputs and outputs as the SavedModel names them."""

    config: Any  # orbax.export.ServingConfig
    args: Any  # the nested structure of tf.TensorSpecs its inference function takes, positionally
    inputs: list[TensorSpec]
    outputs: list[str]


@dataclass
class Exportable:
    """What a read JAX source holds: the ExportManager and its signatures, in export order."""

    manager: Any
    module: Any  # orbax.export.JaxModule
    signatures: dict[str, Signature]
    signature: str  # the one the parity check runs
    function: JaxFunction | None = None  # set when the source was a JaxFunction: it can be re-exported


def read(thing: Any, options: Mapping[str, Any]) -> Artifact:
    """Modern sources (and a JaxFunction without Orbax) are exported with jax.export; the rest
    through Orbax, as before."""
    if modern.claims(thing) or (isinstance(thing, JaxFunction) and not orbax_installed()):
        return modern.read(thing, options)
    if isinstance(thing, JaxFunction):
        module, configs = _module_of_function(thing)
        manager = _export_manager(module, configs)
    elif isinstance(thing, OrbaxExport):
        module, configs = thing.module, thing.configs
        manager = _export_manager(module, configs)
    elif class_from(thing, "orbax.export", "ExportManager"):
        manager = thing
        module, configs = _unpack_manager(thing)
    elif class_from(thing, "orbax.export", "JaxModule"):
        raise InputError(
            "a JaxModule needs at least one ServingConfig: pass convhub_jax.OrbaxExport(module, serving_configs)"
        )
    elif callable(thing):
        raise InputError(
            f"a bare function ({getattr(thing, '__name__', type(thing).__name__)}) needs its params and input specs: "
            "pass convhub_jax.JaxFunction(fn, params, inputs={...})"
        )
    else:
        name = type(thing).__name__
        article = "an" if name[:1].lower() in "aeiou" else "a"
        raise InputError(f"{article} {name} is not a JAX source (expected {EXPECTED})")

    exportable = _describe(manager, module, configs, options.get("signature"))
    exportable.function = thing if isinstance(thing, JaxFunction) else None
    inputs = exportable.signatures[exportable.signature].inputs
    facts = {
        **input_facts(inputs),
        "signature": exportable.signature,
        "signatures": list(exportable.signatures),
        "jax_source": type(thing).__name__,
    }
    if isinstance(thing, JaxFunction):  # an Orbax config's tf_preprocessor is TensorFlow, not read here
        found = ranges.input_ranges(functools.partial(thing.fn, thing.params), thing.specs)
        if found:
            facts["input_ranges"] = found
    return Artifact("jax", model=exportable, facts=facts)


def _polymorphic_shape(spec, used: set[str]) -> str:
    """jax2tf's polymorphic shape for one input: the leading None is the shared batch symbol."""
    dims = []
    for i, d in enumerate(spec.shape):
        if d is None:
            d = BATCH_SYMBOL if i == 0 else f"{spec.name}_{i}"
        dims.append(str(d))
        used.add(str(d))
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _module_of_function(source: JaxFunction, native: bool = True):
    """A JaxModule and one ServingConfig taking the inputs as one tuple, Orbax's single argument.

    native=False lowers to plain TF ops instead of StableHLO (jax2tf's graph mode), which
    converters without XlaCallModule support (tensorflowjs) can take.
    """
    tf = frameworks.tensorflow()
    import jax
    from orbax.export import JaxModule, ServingConfig

    fn, params = source.fn, source.params
    if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(params)):
        # Orbax names variables by their path in the params; a lone array would get the empty
        # name, which TFLiteConverter cannot look up ("Tensor :0 ... not found in the Graph").
        params, unwrap = {"params": params}, (lambda p: p["params"])
    else:
        unwrap = lambda p: p  # noqa: E731

    def apply(params, xs):
        return fn(unwrap(params), *xs)

    name = getattr(fn, "__name__", "")
    apply.__name__ = name if name.isidentifier() else "apply"  # TF names graph functions after it
    used: set[str] = set()
    shapes = tuple(_polymorphic_shape(s, used) for s in source.specs)
    dynamic = any(not d.isdigit() for d in used)
    if native:
        # Lowered for CPU wherever convhub runs: that is what TFLite and the other targets execute.
        lowering = {"jax2tf_kwargs": {"native_serialization_platforms": ("cpu",)}}
    else:
        # jit_compile=False keeps TF from wrapping the graph in ops tensorflowjs does not know.
        lowering = {"jax2tf_kwargs": {"native_serialization": False, "enable_xla": False}, "jit_compile": False}
    module = JaxModule(params, apply, input_polymorphic_shape=shapes if dynamic else None, **lowering)
    signature = tuple(
        tf.TensorSpec([d if isinstance(d, int) else None for d in s.shape], s.dtype, name=s.name)
        for s in source.specs
    )
    return module, [ServingConfig(DEFAULT_SIGNATURE, input_signature=[signature])]


def _export_manager(module, configs):
    from orbax.export import ExportManager

    _check_module(module)
    return ExportManager(module, list(configs))


def _check_module(module) -> None:
    from orbax.export import constants

    if module.export_version != constants.ExportModelType.TF_SAVEDMODEL:
        raise InputError(
            f"this JaxModule exports as {module.export_version.name}; convhub needs TF_SAVEDMODEL (the default)"
        )
    for key, kwargs in module.jax2tf_kwargs_map.items():
        kwargs = kwargs or {}
        if kwargs.get("native_serialization") is False or kwargs.get("enable_xla") is False:
            raise InputError(
                f"JaxModule method {key!r} disables jax2tf native serialization; convhub exports"
                " with native serialization (the default): drop native_serialization/enable_xla"
            )


def _unpack_manager(manager):
    """The JaxModule and ServingConfigs behind an ExportManager, which keeps no public handle on them."""
    from orbax.export import ServingConfig

    module = getattr(manager, "_jax_module", None)
    if module is None:
        raise InputError(
            "cannot find the JaxModule inside this ExportManager; pass convhub_jax.OrbaxExport(module, serving_configs)"
        )
    _check_module(module)
    configs = []
    for key, fn in manager.serving_signatures.items():
        config = _closure_instance(fn, ServingConfig)
        if config is None:
            raise InputError(
                f"cannot find the ServingConfig of signature {key!r} inside this ExportManager; "
                "pass convhub_jax.OrbaxExport(module, serving_configs)"
            )
        if not any(c is config for c in configs):
            configs.append(config)
    return module, configs


def _closure_instance(fn, cls):
    """An instance of cls captured by fn or the functions it closes over (the ServingConfig bound to a signature)."""
    stack, seen = [getattr(fn, "python_function", fn)], set()
    while stack:
        f = stack.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        for cell in getattr(f, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if isinstance(value, cls):
                return value
            if callable(value):
                stack.append(getattr(value, "python_function", value))
    return None


def _output_names(structure, key: str) -> list[str]:
    """The names TF gives a signature's outputs (tensorflow's signature_serialization._normalize_outputs)."""
    if isinstance(structure, Mapping):
        names = list(structure)
        values = list(structure.values())
    elif hasattr(structure, "_asdict"):
        names, values = list(structure._asdict()), list(structure)
    else:
        values = list(structure) if isinstance(structure, (list, tuple)) else [structure]
        names = [f"output_{i}" for i in range(len(values))]
    if any(not hasattr(v, "dtype") or isinstance(v, (Mapping, list, tuple)) for v in values):
        raise InputError(
            f"signature {key!r} returns a nested structure; a SavedModel signature returns an array,"
            " a list or tuple of arrays, or a dict of arrays"
        )
    return [str(n) for n in names]


def _describe(manager, module, configs, wanted: str | None) -> Exportable:
    """Trace every serving signature once, for its exact input and output names (save reuses the trace)."""
    import numpy as np

    tf = frameworks.tensorflow()
    config_of = {key: sc for sc in configs for key in sc.get_signature_keys()}
    signatures: dict[str, Signature] = {}
    for key, fn in manager.serving_signatures.items():
        concrete = fn.get_concrete_function()
        args, kwargs = concrete.structured_input_signature
        if kwargs:
            raise InputError(f"signature {key!r} takes keyword arguments; give ServingConfig a positional input_signature")
        inputs = []
        for spec in tf.nest.flatten(args):
            if spec.shape.rank is None:
                raise InputError(f"signature {key!r}: input {spec.name!r} has an unknown rank")
            inputs.append(TensorSpec(spec.name, tuple(spec.shape.as_list()), np.dtype(spec.dtype.as_numpy_dtype).name))
        signatures[key] = Signature(config_of[key], args, inputs, _output_names(concrete.structured_outputs, key))
    if not signatures:
        raise InputError("a JaxModule needs at least one ServingConfig")
    if wanted:
        if wanted not in signatures:
            raise InputError(f"the JAX source has no signature {wanted!r} (available: {', '.join(signatures)})")
        chosen = wanted
    else:
        chosen = DEFAULT_SIGNATURE if DEFAULT_SIGNATURE in signatures else next(iter(signatures))
    return Exportable(manager, module, signatures, chosen)


def to_saved_model(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict:
    exportable: Exportable = artifact.model
    if exportable is None:
        raise ValueError("the JAX artifact holds no model to export")
    exportable.manager.save(str(destination))
    # Checked rather than assumed: the routes after this hop are planned on it.
    holds_xla = b"XlaCallModule" in (destination / "saved_model.pb").read_bytes()
    return {"xla_call_module": holds_xla, **_signature_facts(exportable)}


def _signature_facts(exportable: Exportable) -> dict:
    """The checked signature, every signature, and the checked one's outputs in signature order
    (the converters after this hop keep that order: tf2onnx alone would sort the names as strings)."""
    return {
        "signature": exportable.signature,
        "signatures": list(exportable.signatures),
        "outputs": list(exportable.signatures[exportable.signature].outputs),
    }


def refuse_modern(facts: Mapping[str, Any]) -> str | None:
    if facts.get("jax_export"):
        return "a source exported with jax.export goes through StableHLO or jax2onnx, not Orbax"
    return None


def refuse_tf_ops(facts: Mapping[str, Any]) -> str | None:
    # Every Orbax source can be lowered again: a JaxFunction, or a JaxModule's own functions.
    return refuse_modern(facts)


PLAIN_TF_OPS = {"native_serialization": False, "enable_xla": False}


def _plain_tf_ops_module(exportable: Exportable):
    """The source as a JaxModule lowered to plain TF ops, with the same ServingConfigs.

    A JaxFunction is wrapped again; a user's JaxModule is rebuilt from its public parts (params,
    apply functions, polymorphic shapes, jax2tf options) with jax2tf's non-native lowering, so its
    TF pre- and post-processors stay as they are."""
    if exportable.function is not None:
        return _module_of_function(exportable.function, native=False)
    from orbax.export import JaxModule, constants

    module = exportable.module
    configs = list({id(s.config): s.config for s in exportable.signatures.values()}.values())
    functions = dict(module.apply_fn_map)
    shapes = dict(module.input_polymorphic_shape_map)
    kwargs = {k: {**{o: v for o, v in (module.jax2tf_kwargs_map.get(k) or {}).items()
                     if not o.startswith("native_serialization")}, **PLAIN_TF_OPS} for k in functions}
    if list(functions) == [constants.DEFAULT_METHOD_KEY]:  # one function: build it as one again
        (key,) = functions
        rebuilt = JaxModule(module.model_params, functions[key], input_polymorphic_shape=shapes.get(key),
                            jax2tf_kwargs=kwargs[key], jit_compile=False)
    else:
        rebuilt = JaxModule(module.model_params, functions, input_polymorphic_shape=shapes,
                            jax2tf_kwargs=kwargs, jit_compile={k: False for k in functions})
    return rebuilt, configs


def to_tf_ops_saved_model(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict:
    """Export the source with jax2tf's non-native lowering: a SavedModel of plain TF ops."""
    exportable: Exportable = artifact.model
    if exportable is None:
        raise ValueError("the JAX artifact holds no model to export")
    module, configs = _plain_tf_ops_module(exportable)
    from orbax.export import ExportManager

    ExportManager(module, configs).save(str(destination))
    holds_xla = b"XlaCallModule" in (destination / "saved_model.pb").read_bytes()
    if holds_xla:
        raise RuntimeError("the non-native export still holds XlaCallModule ops")
    return {"xla_call_module": False, **_signature_facts(exportable)}


class Session:
    """Runs the JAX function itself, with the signature's TF pre- and post-processors around it.

    This is what the exported signature computes, without the export: the JAX function is
    jit-compiled by JAX, not run from the SavedModel's StableHLO by TensorFlow.
    """

    def __new__(cls, artifact: Artifact) -> Any:
        if isinstance(artifact.model, modern.Exported):
            return modern.Session(artifact.model)
        return super().__new__(cls)

    def __init__(self, artifact: Artifact):
        import jax

        exportable: Exportable = artifact.model
        if exportable is None:
            raise ValueError("the JAX artifact holds no model to run")
        name = artifact.facts.get("signature", exportable.signature)
        self._signature = exportable.signatures[name]
        module = exportable.module
        params = module.model_params
        methods = {
            key: functools.partial(jax.jit(apply_fn), params) for key, apply_fn in module.apply_fn_map.items()
        }
        # bind() is how Orbax itself chains preprocessor -> JAX -> postprocessor outside TF.
        self._infer = self._signature.config.bind(methods, require_numpy=True)[name]
        self.inputs = list(self._signature.inputs)
        self.outputs = list(self._signature.outputs)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        tf = frameworks.tensorflow()
        leaves = [np.asarray(feeds[spec.name]) for spec in self.inputs]
        args = tf.nest.pack_sequence_as(self._signature.args, leaves)
        result = self._infer(*args)
        if isinstance(result, Mapping):
            values = [result[name] for name in self.outputs]
        elif hasattr(result, "_asdict"):
            values = [result._asdict()[name] for name in self.outputs]
        else:
            values = list(result) if isinstance(result, (list, tuple)) else [result]
        return {name: np.asarray(value) for name, value in zip(self.outputs, values)}
