"""Keras models: reading .keras / .h5 files and in-memory models, exporting SavedModels, running them."""

from __future__ import annotations

import zipfile
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
    return input_facts(input_specs(model))


def export_saved_model(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict:
    model = artifact.model if artifact.model is not None else read(artifact.path, options).model
    model.export(str(destination), format="tf_saved_model", verbose=False)
    # The output order is needed downstream (tf2onnx sorts outputs as strings: output_10 before output_2).
    outputs = saved_model.signature_outputs(destination, saved_model.DEFAULT_SIGNATURE)
    return {"signature": saved_model.DEFAULT_SIGNATURE, "signatures": [saved_model.DEFAULT_SIGNATURE], "outputs": outputs}


def _output_names(outputs) -> list[str]:
    # The names keras.Model.export gives the serving signature's outputs, so they match across hops.
    if isinstance(outputs, Mapping):
        return list(outputs)
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
        self.outputs = _output_names(outputs)
        values = outputs.values() if isinstance(outputs, Mapping) else outputs
        return {name: _numpy(v) for name, v in zip(self.outputs, values)}


def _numpy(value):
    return value.numpy() if hasattr(value, "numpy") else value
