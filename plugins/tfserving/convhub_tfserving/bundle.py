"""TensorFlow Serving model base paths: OUT/NAME/VERSION/ folders, each a SavedModel with an
assets.extra/ that TF Serving reads at load (tf_serving_warmup_requests) and convhub's files
for the people who deploy it (a models.config entry, a REST request and its expected response).

TF Serving loads every version folder it finds (a whole number), and before it serves one it
replays the warmup file: a TFRecord of PredictionLog messages, each a PredictRequest that it
runs through the signature the request names. The runner here does the same, so a warmup file
that does not parse, names a signature the model lacks, or feeds inputs that do not fit fails
the check, as it would fail the server's load.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

from convhub.errors import InputError, UsageError
from convhub.types import Artifact, TensorSpec
from convhub_tensorflow import describe, frameworks, saved_model

WARMUP = "tf_serving_warmup_requests"
MODELS_CONFIG = "models.config"
REQUEST = "predict_request.json"
RESPONSE = "predict_response.json"
DEFAULT_NAME = "model"  # what the tensorflow/serving image serves when MODEL_NAME is not set
MAX_WARMUP_RECORDS = 1000  # TF Serving reads no more than this many at load
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def model_name(options: Mapping[str, Any]) -> str:
    name = options.get("model_name") or DEFAULT_NAME
    if not isinstance(name, str) or not _NAME.match(name):
        raise UsageError(f"--model-name {name!r}: use letters, digits, '_', '-' and '.' (it is a folder and a URL part)")
    return name


def versions(output: Path, options: Mapping[str, Any]) -> tuple[Path, int | None]:
    """OUT → OUT/NAME, the model's base path; the version asked for, if any."""
    version = options.get("version")
    return Path(output) / model_name(options), int(version) if version is not None else None


def version_folders(base: Path) -> list[Path]:
    """The version folders of a base path that hold a SavedModel, lowest number first."""
    found = [p for p in base.iterdir() if p.name.isascii() and p.name.isdigit() and saved_model.detect(p)]
    return sorted(found, key=lambda p: int(p.name))


def detect(thing: Any) -> bool:
    """A model base path: a folder of version folders that hold SavedModels (not a SavedModel itself)."""
    return isinstance(thing, Path) and thing.is_dir() and not saved_model.detect(thing) and bool(version_folders(thing))


def read(thing: Any, options: Mapping[str, Any]) -> Artifact:
    """A base path read as its latest version (what TF Serving serves by default)."""
    if not detect(thing):
        raise InputError(f"{thing} is not a TF Serving model base path (no version folder with a SavedModel)")
    latest = version_folders(thing)[-1]
    artifact = saved_model.read(latest, options)
    return Artifact("tfserving", path=latest, facts={**artifact.facts, "model_name": thing.name,
                                                     "version": int(latest.name)})


def from_saved_model(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    """A version folder: the SavedModel as it is, and a models.config entry for it. The warmup
    requests come once the parity inputs are known (write_examples)."""
    name = model_name(options)
    assert artifact.path is not None
    shutil.copytree(artifact.path, destination)
    extra = destination / describe.ASSETS_EXTRA
    extra.mkdir(exist_ok=True)
    for stale in (WARMUP, REQUEST, RESPONSE, describe.RECORD):  # a SavedModel that was served before
        (extra / stale).unlink(missing_ok=True)
    (extra / MODELS_CONFIG).write_text(models_config(name), encoding="utf-8")
    return {"model_name": name, "signature": artifact.facts.get("signature", saved_model.DEFAULT_SIGNATURE),
            "signatures": _signature_names(destination)}


def models_config(name: str) -> str:
    return (
        "# A model_config_list entry for TF Serving (--model_config_file=...), written by convhub.\n"
        f"# base_path: where the folder {name}/ is mounted in the server (the tensorflow/serving image: /models).\n"
        "model_config_list {\n"
        "  config {\n"
        f'    name: "{name}"\n'
        f'    base_path: "/models/{name}"\n'
        '    model_platform: "tensorflow"\n'
        "  }\n"
        "}\n"
    )


def _signatures(path: Path) -> dict[str, Any]:
    proto = describe._saved_model_proto(path)
    return {k: v for k, v in proto.meta_graphs[0].signature_def.items() if not k.startswith("__")}


def _signature_names(path: Path) -> list[str]:
    return sorted(_signatures(path))


def write_examples(path: Path, feeds: Mapping[str, Any], expected: Mapping[str, Any] | None) -> None:
    """assets.extra/: one PredictionLog per signature (the parity inputs for the one they fit,
    seeded inputs of the same batch for the others), and the REST request and response of the
    default signature on the parity inputs."""
    import numpy as np
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    from convhub import parity

    if not feeds:
        raise ValueError("no inputs to build warmup requests from (the source gave no input specs)")
    tf = frameworks.tensorflow()
    extra = Path(path) / describe.ASSETS_EXTRA
    config = (extra / MODELS_CONFIG).read_text(encoding="utf-8") if (extra / MODELS_CONFIG).exists() else ""
    found = re.search(r'name: "([^"]+)"', config)
    name = found.group(1) if found else DEFAULT_NAME
    batch = min((int(v.shape[0]) for v in feeds.values() if np.ndim(v)), default=1)
    signatures = _signatures(path)
    default = saved_model.DEFAULT_SIGNATURE if saved_model.DEFAULT_SIGNATURE in signatures else next(iter(signatures))
    fitting = next((s for s in [default, *signatures] if set(signatures[s].inputs) == set(feeds)), None)
    with tf.io.TFRecordWriter(str(extra / WARMUP)) as writer:
        for signature, definition in sorted(signatures.items(), key=lambda kv: kv[0] != fitting):
            inputs = dict(feeds) if signature == fitting else parity.make_inputs(
                describe._specs(definition.inputs), 0, batch)
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, signature_name=signature))
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    if fitting is None:
        return
    rows = [{k: np.asarray(v)[i].tolist() for k, v in feeds.items()} for i in range(batch)]
    (extra / REQUEST).write_text(json.dumps({"signature_name": fitting, "instances": rows}) + "\n", encoding="utf-8")
    if expected:
        (extra / RESPONSE).write_text(json.dumps({"predictions": predictions(expected)}) + "\n", encoding="utf-8")


def predictions(outputs: Mapping[str, Any]) -> list[Any]:
    """The REST API's row format: a list of values per row for one output, a dict per row for several."""
    import numpy as np

    arrays = {k: np.asarray(v) for k, v in outputs.items()}
    rows = min(len(a) for a in arrays.values())
    if len(arrays) == 1:
        (only,) = arrays.values()
        return [only[i].tolist() for i in range(rows)]
    return [{k: a[i].tolist() for k, a in arrays.items()} for i in range(rows)]


def read_warmup(path: Path) -> list[Any]:
    """The PredictionLog records of a version's warmup file ([] when it has none)."""
    from tensorflow_serving.apis import prediction_log_pb2

    tf = frameworks.tensorflow()
    file = Path(path) / describe.ASSETS_EXTRA / WARMUP
    if not file.exists():
        return []
    logs = []
    for i, raw in enumerate(tf.data.TFRecordDataset(str(file)).as_numpy_iterator()):
        if i >= MAX_WARMUP_RECORDS:
            break
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(raw)
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError
            raise ValueError(f"warmup record {i} is not a PredictionLog: {exc}") from None
        logs.append(log)
    return logs


class Session:
    """Loads a version's SavedModel and, as TF Serving does before it serves it, replays every
    warmup record through the signature it names. `run` on the inputs a record holds answers
    with that replay; on other inputs it runs the signature."""

    def __init__(self, artifact: Artifact):
        self._session = saved_model.Session(artifact)
        self._loaded = self._session._loaded
        self.inputs: list[TensorSpec] = self._session.inputs
        self.outputs: list[str] = self._session.outputs
        self.signature = artifact.facts.get("signature", saved_model.DEFAULT_SIGNATURE)
        self.replays = [self._replay(i, log) for i, log in enumerate(read_warmup(Path(artifact.path)))]
        self.replayed = False  # whether run() answered from a warmup record's replay

    @property
    def runtime(self) -> str:
        """What ran it, as reports show: the checked outputs come from the warmup replay or not."""
        return f"tensorflow ({'outputs from ' if self.replayed else ''}replaying {len(self.replays)} warmup requests)"

    def _replay(self, i: int, log: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        tf = frameworks.tensorflow()
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"warmup record {i} is a {log.WhichOneof('log_type')}; convhub replays predict requests")
        request = log.predict_log.request
        name = request.model_spec.signature_name or saved_model.DEFAULT_SIGNATURE
        if name not in self._loaded.signatures:
            raise ValueError(f"warmup record {i} asks for signature {name!r}; the model has"
                             f" {', '.join(sorted(self._loaded.signatures))}")
        fn = self._loaded.signatures[name]
        wanted = fn.structured_input_signature[1]
        feeds = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        if set(feeds) != set(wanted):
            raise ValueError(f"warmup record {i} feeds {sorted(feeds)}; signature {name!r} takes {sorted(wanted)}")
        for key, spec in wanted.items():
            if not spec.is_compatible_with(tf.TensorSpec(feeds[key].shape, tf.as_dtype(feeds[key].dtype))):
                raise ValueError(f"warmup record {i}: input {key!r} is {feeds[key].dtype}{list(feeds[key].shape)};"
                                 f" signature {name!r} takes {spec.dtype.name}{spec.shape}")
        result = fn(**{k: tf.constant(v) for k, v in feeds.items()})
        keep = set(request.output_filter) or set(result)
        return name, feeds, {k: v.numpy() for k, v in result.items() if k in keep}

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        for name, given, outputs in self.replays:
            if name == self.signature and set(given) == set(feeds) and all(
                    given[k].dtype == np.asarray(feeds[k]).dtype and np.array_equal(given[k], feeds[k]) for k in feeds):
                self.replayed = True
                return {k: outputs[k] for k in self.outputs if k in outputs}
        return self._session.run(feeds)


def inspect(path: Path) -> dict[str, Any]:
    """A base path: its versions, and the latest one described as a SavedModel with its warmup."""
    folders = version_folders(Path(path))
    latest = folders[-1]
    described = describe.inspect_saved_model(latest)
    from convhub.provenance import read_sidecar

    logs = read_warmup(latest)
    signatures = sorted({log.predict_log.request.model_spec.signature_name for log in logs})
    described["details"] = {
        "versions": ", ".join(p.name for p in folders) + f" (described: {latest.name}, the one TF Serving serves)",
        "warmup": f"{len(logs)} requests ({', '.join(signatures)})" if logs else "none",
        **described.get("details", {}),
    }
    described["versions"] = [{"version": int(p.name), "path": str(p), "sidecar": read_sidecar(p)} for p in folders]
    described["described"] = str(latest)
    return described
