"""Keras models: reading .keras / .h5 files and in-memory models, exporting SavedModels, running them."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Mapping

from convhub.errors import InputError
from convhub.types import Artifact, TensorSpec

from convhub_tensorflow import _tf

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


def read(thing: Any, options: Mapping[str, Any]) -> Artifact:
    if isinstance(thing, Path):
        _check_file(thing)
        keras = _tf.keras()
        model = keras.saving.load_model(thing, safe_mode=options.get("safe_mode", True), compile=False)
        path = thing
    elif _is_keras_object(thing):
        model, path = thing, None
    else:
        raise InputError(f"a {type(thing).__name__} is not a Keras model")
    return Artifact("keras", path=path, model=model, facts=facts_of(model))


def input_specs(model) -> list[TensorSpec]:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise InputError(
            f"the Keras model {model.name!r} has no known inputs; build it with keras.Input"
            " or call it once on data of the right shape"
        )
    return [
        TensorSpec(t.name, tuple(t.shape), str(getattr(t.dtype, "name", t.dtype))) for t in inputs
    ]


def facts_of(model) -> dict[str, Any]:
    specs = input_specs(model)
    return {
        "inputs": specs,
        "dynamic_dims": [f"{s.name}[{i}]" for s in specs for i, d in enumerate(s.shape) if d is None],
        "dtypes": sorted({s.dtype for s in specs}),
    }


def export_saved_model(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict:
    model = artifact.model if artifact.model is not None else read(artifact.path, options).model
    model.export(str(destination), format="tf_saved_model", verbose=False)
    return {"signature": "serving_default"}


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
        outputs = self.model(args[0] if len(args) == 1 else args, training=False)
        if not isinstance(outputs, (Mapping, list, tuple)):
            outputs = [outputs]
        self.outputs = _output_names(outputs)
        values = outputs.values() if isinstance(outputs, Mapping) else outputs
        return {name: _numpy(v) for name, v in zip(self.outputs, values)}


def _numpy(value):
    return value.numpy() if hasattr(value, "numpy") else value
