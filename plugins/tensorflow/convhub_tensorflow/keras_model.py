"""Keras models: reading .keras / .h5 files and in-memory models, exporting SavedModels, running them."""

from __future__ import annotations

import re
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping

from convhub.errors import InputError
from convhub.types import Artifact, TensorSpec, input_facts

from convhub_tensorflow import frameworks, saved_model

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _is_keras_object(obj: Any) -> bool:
    # Judged from the class hierarchy's module names, so detection never imports Keras.
    return any(
        c.__name__ in ("Model", "Functional", "Sequential") and c.__module__.split(".")[0] == "keras"
        for c in type(obj).__mro__
    )


def detect(thing: Any) -> bool:
    if isinstance(thing, Path):
        return thing.is_file() and thing.suffix.lower() in (".keras", ".h5", ".hdf5")
    return _is_keras_object(thing)


def _check_file(path: Path) -> None:
    """Fail fast, before TensorFlow's 10-second import, on files that cannot be Keras models."""
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a .keras or .h5 file")
    with path.open("rb") as f:
        head = f.read(8)
    if head == HDF5_MAGIC:
        return
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path} is not a Keras model file (neither a .keras archive nor HDF5)")
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            raise InputError(f"{path} is a zip file but not a .keras model (no config.json inside)")


def _load(path: Path, safe_mode: bool):
    keras = frameworks.keras()
    try:
        return keras.saving.load_model(path, safe_mode=safe_mode, compile=False)
    except ValueError as exc:
        if "safe_mode" in str(exc):
            raise InputError(
                f"{path} holds Python code (a Lambda layer) that Keras's safe mode will not load;"
                " if you trust the file, pass --unsafe (safe_mode=False)"
            ) from None
        raise


def read(thing: Any, options: Mapping[str, Any]) -> Artifact:
    if isinstance(thing, Path):
        _check_file(thing)
        model = _load(thing, options.get("safe_mode", True))
        path = thing
    elif _is_keras_object(thing):
        model, path = thing, None
    else:
        raise InputError(f"a {type(thing).__name__} is not a Keras model")
    return Artifact("keras", path=path, model=model, facts=facts_of(model))


def input_specs(model) -> list[TensorSpec]:
    """The model's inputs, named as keras.Model.export names them in the serving signature."""
    inputs = getattr(model, "inputs", None)
    if inputs:
        return [TensorSpec(t.name, tuple(t.shape), str(getattr(t.dtype, "name", t.dtype))) for t in inputs]
    # A subclassed model has no symbolic inputs; once built or called, Keras's own export
    # reads its input shape from the build shapes, and so do we (batch kept dynamic).
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    if len(shapes) == 1:
        (shape,) = shapes.values()
        if isinstance(shape, (tuple, list)) and all(d is None or isinstance(d, int) for d in shape):
            dtype = getattr(model, "input_dtype", None) or "float32"
            return [TensorSpec("args_0", (None, *shape[1:]), str(dtype))]
    raise InputError(
        f"the Keras model {model.name!r} has no known input shape; build it with keras.Input,"
        " or call it once on a batch of example data before converting"
    )


def facts_of(model) -> dict[str, Any]:
    grouped = grouped_convolutions(model)
    facts = {
        **input_facts(input_specs(model)),
        # Conv layers with groups > 1: Keras's TensorFlow backend runs them through XLA (see
        # _grouped_convolutions_rewritten), and the export rewrites those it can.
        "grouped_convolutions": [layer.name for layer, _ in grouped],
        # RNN layers (LSTM, GRU, SimpleRNN, Bidirectional...), nested ones included: they become
        # TensorList while loops, which some converters take only with Select TF ops.
        "recurrent_layers": sorted({type(layer).__name__ for layer in _all_layers(model) if _is_recurrent(layer)}),
    }
    if grouped:
        facts["grouped_convolution_plan"] = {
            kind: [layer.name for layer, k in grouped if k == kind] for kind in ("depthwise", "per_group", "kept")
        }
    ranges = input_ranges(model)
    if ranges:
        facts["input_ranges"] = ranges
    return facts


def input_ranges(model) -> dict[str, list[float]]:
    """[low, high) of the inputs whose valid values the model itself says, so generated parity
    inputs and int8 calibration (parity.make_inputs) are values the model is built for:
    - an integer input that feeds an Embedding directly: its vocabulary;
    - a float input that feeds a preprocessing layer directly: what that layer maps onto the
      range a network takes. Rescaling(scale, offset) to [0, 1], or to [-1, 1] when its offset is
      negative (1/255 and 1/127.5 - 1 both give pixels in [0, 255]); Normalization(mean,
      variance) from mean - 2σ to mean + 2σ over its channels.
    An input handed on whole to a nested model (a keras-hub task model's backbone) is followed
    into it."""
    names = {id(t): t.name for t in getattr(model, "inputs", None) or []}
    return _ranges_read_in(frameworks.keras(), model, names)


def _ranges_read_in(keras, model, names: dict[int, str]) -> dict[str, list[float]]:
    """input_ranges for the tensors in `names` (id → the outer model's input name) inside `model`."""
    ranges: dict[str, list[float]] = {}
    for layer in getattr(model, "layers", []):
        found = _range_read_by(keras, layer)
        for node in getattr(layer, "_inbound_nodes", []):
            fed = [names.get(id(t)) for t in getattr(node, "input_tensors", [])]
            if found is not None:
                ranges.update({name: found for name in fed if name})
            elif any(fed) and isinstance(layer, keras.Model) and len(fed) == len(layer.inputs or []):
                # keras flattens a node's inputs and a model's inputs alike (dicts by sorted key)
                inner = {id(t): name for t, name in zip(layer.inputs, fed) if name}
                ranges.update(_ranges_read_in(keras, layer, inner))
    return ranges


def _range_read_by(keras, layer) -> list[float] | None:
    import numpy as np

    L = keras.layers
    if isinstance(layer, L.Embedding):
        return [0, int(layer.input_dim)]
    try:
        if isinstance(layer, L.Rescaling):
            from convhub import parity

            return parity.rescaled_range(layer.scale, layer.offset)
        if isinstance(layer, L.Normalization) and not getattr(layer, "invert", False):
            mean = np.asarray(layer.mean, np.float64).ravel()
            std = np.sqrt(np.asarray(layer.variance, np.float64).ravel())
            ends = np.concatenate([mean - 2 * std, mean + 2 * std])
        else:
            return None
    except (AttributeError, TypeError, ValueError):  # a layer not built or adapted yet
        return None
    if not np.all(np.isfinite(ends)) or ends.min() == ends.max():
        return None
    return [round(float(ends.min()), 6), round(float(ends.max()), 6)]


# --- grouped convolutions --------------------------------------------------------------------------
#
# Keras 3's TensorFlow backend runs a convolution whose input channels differ from its kernel's
# (Conv1D/Conv2D with groups > 1: ConvNeXt's 7x7 depthwise convolutions are
# Conv2D(groups=channels)) inside a tf.function(jit_compile=True)
# (keras/src/backend/tensorflow/nn.py, `conv`), because grouped convolutions are broken on CPU
# without XLA. That call survives freezing as a StatefulPartitionedCall that tf2onnx and
# tensorflowjs cannot take. For the time of the export, each such layer instance computes the
# same thing with ops the converters know:
#
# - groups == channels (depthwise): the kernel (kh, kw, 1, channels * m) reshaped to
#   (kh, kw, channels, m) is a depthwise kernel. Grouped output channel o belongs to group
#   o // m, i.e. reads input channel c = o // m with kernel[..., 0, o]; a depthwise convolution's
#   output channel c * m + j reads input channel c with depthwise[..., c, j]. Row-major reshaping
#   puts kernel[..., 0, c * m + j] at depthwise[..., c, j]: the same channel, the same place.
# - 1 < groups < channels: the input split into `groups` slices along the channels, each
#   convolved (an ordinary convolution, no XLA) with its slice of the kernel's filters, the
#   results concatenated in group order.
#
# (The same for Conv1D, its kernel (k, 1, channels * m).) Conv3D with groups, and subclasses
# with their own convolution_op or call, are kept as they are, and the facts say so.


def _all_layers(model) -> list:
    """Every layer inside the model, nested models' layers included."""
    if hasattr(model, "_flatten_layers"):
        return list(model._flatten_layers(include_self=False, recursive=True))
    found = []
    for layer in getattr(model, "layers", []):
        found += [layer, *_all_layers(layer)]
    return found


def _is_recurrent(layer) -> bool:
    keras = frameworks.keras()
    return isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))


def _grouped_kind(layer) -> str:
    """How the export computes a grouped convolution: 'depthwise', 'per_group' or 'kept'."""
    keras = frameworks.keras()
    base = next((c for c in (keras.layers.Conv1D, keras.layers.Conv2D) if isinstance(layer, c)), None)
    if base is None or not layer.built or {"convolution_op", "call"} & set(vars(layer)):
        return "kept"
    if getattr(layer, "quantization_mode", None):
        return "kept"  # a quantized layer computes with other weights than `kernel`
    cls = type(layer)
    if cls.convolution_op is not base.convolution_op or cls.call is not base.call:
        return "kept"  # a subclass computing its own way
    per_group = tuple(layer.kernel.shape)[-2]
    return "depthwise" if per_group == 1 else "per_group"


def _padding(layer) -> str:
    # Conv1D's causal padding pads the inputs first (see _conv1d_call), then convolves "valid".
    return "valid" if layer.padding == "causal" else layer.padding


def grouped_convolutions(model) -> list[tuple[Any, str]]:
    """The model's convolution layers with groups > 1 (each once, nested ones included) and how
    the export computes each."""
    seen, found = set(), []
    for layer in _all_layers(model):
        if id(layer) in seen or getattr(layer, "groups", 1) in (None, 1) or not hasattr(layer, "kernel_size"):
            continue
        seen.add(id(layer))
        found.append((layer, _grouped_kind(layer)))
    return found


def _depthwise_op(layer):
    ops = frameworks.keras().ops
    kernel_size, channels = tuple(layer.kernel_size), layer.groups
    multiplier = layer.filters // channels

    def convolution_op(inputs, kernel):
        depthwise = ops.reshape(kernel, (*kernel_size, channels, multiplier))
        return ops.depthwise_conv(
            inputs, depthwise, strides=tuple(layer.strides), padding=_padding(layer),
            data_format=layer.data_format, dilation_rate=tuple(layer.dilation_rate),
        )

    return convolution_op


def _per_group_op(layer):
    ops = frameworks.keras().ops
    groups = layer.groups
    axis = -1 if layer.data_format == "channels_last" else 1

    def convolution_op(inputs, kernel):
        parts = zip(ops.split(inputs, groups, axis=axis), ops.split(kernel, groups, axis=-1))
        return ops.concatenate([
            ops.conv(x, k, strides=list(layer.strides), padding=_padding(layer),
                     dilation_rate=layer.dilation_rate, data_format=layer.data_format)
            for x, k in parts
        ], axis=axis)

    return convolution_op


def _conv1d_call(layer):
    """Conv1D.call convolves with ops.conv itself, not through convolution_op: this call pads
    causal inputs as Conv1D.call does, then runs the common convolution call (BaseConv.call:
    convolution_op, bias, activation)."""
    ops = frameworks.keras().ops
    base_call = super(frameworks.keras().layers.Conv1D, layer).call

    def call(inputs):
        if layer.padding == "causal":
            inputs = ops.pad(inputs, layer._compute_causal_padding())
        return base_call(inputs)

    return call


@contextmanager
def _grouped_convolutions_rewritten(model):
    """While inside, the model's rewritable grouped convolutions compute without XLA; yields
    {"depthwise": [names], "per_group": [names]} of those rewritten. Each layer instance gets a
    convolution_op of its own (a Conv1D a call too), removed on the way out, so the model is left
    as it was."""
    keras = frameworks.keras()
    rewritten: dict[str, list[str]] = {}
    patched: list[tuple[Any, str]] = []
    try:
        for layer, kind in grouped_convolutions(model):
            if kind == "kept":
                continue
            methods = {"convolution_op": _depthwise_op(layer) if kind == "depthwise" else _per_group_op(layer)}
            if isinstance(layer, keras.layers.Conv1D):
                methods["call"] = _conv1d_call(layer)
            for name, method in methods.items():
                object.__setattr__(layer, name, method)  # past Keras's and TF's attribute tracking
                patched.append((layer, name))
            rewritten.setdefault(kind, []).append(layer.name)
        yield rewritten
    finally:
        for layer, name in patched:
            object.__delattr__(layer, name)


def export_notes(facts: Mapping[str, Any]) -> list[str]:
    """What keras → savedmodel does differently for a model with these facts."""
    plan = facts.get("grouped_convolution_plan") or {}
    notes = []
    why = "Keras runs grouped ones through XLA, which tf2onnx and tensorflowjs cannot take"
    if plan.get("depthwise"):
        n = len(plan["depthwise"])
        notes.append(f"{_count(n, 'grouped convolution')} (groups = channels) exported as depthwise"
                     f" convolutions: {why}")
    if plan.get("per_group"):
        n = len(plan["per_group"])
        notes.append(f"{_count(n, 'grouped convolution')} (1 < groups < channels) exported as one convolution"
                     f" per group, concatenated: {why}")
    if plan.get("kept"):
        names = ", ".join(plan["kept"])
        notes.append(f"{_count(len(plan['kept']), 'grouped convolution')} kept as Keras runs it, through XLA"
                     f" ({names}): tf2onnx and tensorflowjs will not take the SavedModel; TFLite can")
    return notes


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


# --- output names ----------------------------------------------------------------------------------

_VALID_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")


def _snake_case(name: str) -> str:
    # As keras.src.utils.naming.to_snake_case, which makes a layer's default name from its class.
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _default_name(operation) -> bool:
    """Whether the name is one Keras made up (dense, dense_3, add_1), not one the author gave."""
    return re.fullmatch(re.escape(_snake_case(type(operation).__name__)) + r"(_\d+)?", operation.name) is not None


def _is_class(model, name: str) -> bool:
    return any(c.__name__ == name and c.__module__.split(".")[0] == "keras" for c in type(model).__mro__)


def named_outputs(model) -> list[str] | None:
    """The names of a functional or Sequential model's outputs, in the model's order, when each
    is its output layer's own name (not a default one such as dense_3) and all differ; else None
    (a subclassed model, a model that returns a dict): those keep keras.Model.export's names."""
    functional = _is_class(model, "Functional")
    if not (functional or _is_class(model, "Sequential")):
        return None
    try:
        outputs = model.outputs
        structure = model.output if functional else outputs  # a Sequential model's is a list
    except (AttributeError, ValueError):
        return None
    if not outputs or isinstance(structure, Mapping):
        return None
    names = []
    for tensor in outputs:
        history = getattr(tensor, "_keras_history", None)
        operation = getattr(history, "operation", None)
        name = getattr(operation, "name", None)
        if not isinstance(name, str) or not _VALID_NAME.match(name) or _default_name(operation):
            return None
        names.append(name)
    return names if len(set(names)) == len(names) else None


def _input_signature(model) -> list:
    """As keras.Model.export builds it (keras/src/export/export_utils.py, get_input_signature):
    one argument holding the functional model's input structure (a tensor, a list or a dict),
    or the Sequential model's list of inputs; each a keras.InputSpec with the input's name,
    dtype and shape, its batch dim dynamic."""
    keras = frameworks.keras()

    def spec(tensor):
        return keras.InputSpec(shape=(None, *tuple(tensor.shape)[1:]), dtype=tensor.dtype, name=tensor.name)

    if _is_class(model, "Functional"):
        return [keras.tree.map_structure(spec, model.input)]
    return keras.tree.map_structure(spec, list(model.inputs))


def _export_named(model, destination: Path, names: list[str]) -> None:
    """keras.Model.export's SavedModel, its serving signature's outputs named `names`."""
    keras = frameworks.keras()
    signature = _input_signature(model)
    if len(signature) != 1:
        raise ValueError(f"expected one serving argument, the input signature has {len(signature)}")

    def serve(inputs):
        outputs = keras.tree.flatten(model(inputs, training=False))
        if len(outputs) != len(names):
            raise ValueError(f"the model returned {len(outputs)} outputs, it declares {len(names)}")
        return dict(zip(names, outputs))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve, signature)  # also served as serving_default, as by model.export
    archive.write_out(str(destination), verbose=False)


def export_saved_model(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict:
    model = artifact.model if artifact.model is not None else read(artifact.path, options).model
    names = named_outputs(model)
    with _grouped_convolutions_rewritten(model) as rewritten:
        if names:
            _export_named(model, destination, names)
        else:
            model.export(str(destination), format="tf_saved_model", verbose=False)
    # The output order is needed downstream (tf2onnx sorts outputs as strings: output_10 before
    # output_2), and the signature keeps outputs in a map: the model's own order when it names
    # them, else natural_order (output_2 before output_10).
    outputs = names or saved_model.signature_outputs(destination, saved_model.DEFAULT_SIGNATURE)
    return {
        "signature": saved_model.DEFAULT_SIGNATURE,
        "signatures": [saved_model.DEFAULT_SIGNATURE],
        "outputs": outputs,
        "rewritten_layers": rewritten,
    }


def output_names(model, outputs) -> list[str]:
    """The names the exported serving signature gives the outputs of a run, so they match across hops."""
    if isinstance(outputs, Mapping):
        return list(outputs)
    names = named_outputs(model)
    if names and len(names) == len(outputs):
        return names
    return [f"output_{i}" for i in range(len(outputs))]


class Session:
    """Runs a Keras model in inference mode."""

    def __init__(self, artifact: Artifact):
        self.model = artifact.model if artifact.model is not None else read(artifact.path, {}).model
        self.inputs = input_specs(self.model)
        self.outputs: list[str] = []

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        args = [feeds[s.name] for s in self.inputs]
        if len(args) == 1:
            outputs = self.model(args[0], training=False)
        elif isinstance(getattr(self.model, "input", None), Mapping):  # built from a dict of inputs
            outputs = self.model(dict(zip((s.name for s in self.inputs), args)), training=False)
        else:
            outputs = self.model(args, training=False)
        if not isinstance(outputs, (Mapping, list, tuple)):
            outputs = [outputs]
        self.outputs = output_names(self.model, outputs)
        values = outputs.values() if isinstance(outputs, Mapping) else outputs
        return {name: _numpy(v) for name, v in zip(self.outputs, values)}


def _numpy(value):
    return value.numpy() if hasattr(value, "numpy") else value
