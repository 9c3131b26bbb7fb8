"""The tfserving target: a TF Serving model base path whose warmup requests (tensorflow-serving-api
PredictionLog protos, built from the parity inputs) replay through the loaded model as the
server replays them at load; versions are numbered, and an existing one is never touched."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from convhub import cli, provenance
from convhub.publish import Transaction
from conftest import ROOT, assert_schema

JAX_MLP = f"{ROOT / 'examples' / 'jax_function.py'}:mlp"


def convert(capsys, *args: object) -> tuple[int, dict]:
    code = cli.main(["convert", *map(str, args), "--json", "-q"])
    return code, assert_schema(json.loads(capsys.readouterr().out))


def warmup_logs(version: Path) -> list:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for raw in tf.data.TFRecordDataset(str(version / "assets.extra" / "tf_serving_warmup_requests")).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(raw)
        logs.append(log)
    return logs


def tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def keras_serving(cnn_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    code = cli.main(["convert", "keras→tfserving", str(cnn_file), "-o", str(root), "--model-name", "cnn", "-q"])
    assert code == 0
    return root


def test_keras_model_becomes_a_base_path_with_a_warmup_that_replays(keras_serving, cnn_file):
    import tensorflow as tf

    base = keras_serving / "cnn"
    version = base / "1"
    assert sorted(p.name for p in base.iterdir()) == ["1", "1.convhub.json"]
    assert (version / "saved_model.pb").is_file() and (version / "variables" / "variables.index").is_file()
    extra = sorted(p.name for p in (version / "assets.extra").iterdir())
    assert extra == ["convhub.json", "models.config", "predict_request.json", "predict_response.json",
                     "tf_serving_warmup_requests"]
    assert 'name: "cnn"' in (version / "assets.extra" / "models.config").read_text()

    logs = warmup_logs(version)  # the server's own protos parse every record
    loaded = tf.saved_model.load(str(version))
    assert {log.predict_log.request.model_spec.signature_name for log in logs} == set(loaded.signatures)
    assert all(log.predict_log.request.model_spec.name == "cnn" for log in logs)
    default = next(log for log in logs if log.predict_log.request.model_spec.signature_name == "serving_default")
    image = tf.make_ndarray(default.predict_log.request.inputs["image"])
    assert image.shape == (3, 12, 12, 2) and image.dtype == np.float32
    # Replayed as TF Serving does at load: through the signature the request names.
    served = loaded.signatures["serving_default"](image=tf.constant(image))["scores"].numpy()
    import keras

    source = keras.saving.load_model(cnn_file)(image).numpy()
    np.testing.assert_allclose(served, source, atol=1e-5)
    # The REST request holds the same inputs in row format, and the response what the source computed.
    request = json.loads((version / "assets.extra" / "predict_request.json").read_text())
    assert request["signature_name"] == "serving_default"
    np.testing.assert_array_equal(np.array([row["image"] for row in request["instances"]], "float32"), image)
    response = json.loads((version / "assets.extra" / "predict_response.json").read_text())
    np.testing.assert_allclose(np.array(response["predictions"]), source, atol=1e-5)


def test_a_second_run_adds_version_2_and_leaves_1_as_it_was(keras_serving, cnn_file, capsys):
    base = keras_serving / "cnn"
    before = tree(base / "1")
    code, payload = convert(capsys, "keras→tfserving", cnn_file, "-o", keras_serving, "--model-name", "cnn",
                            "--benchmark")
    assert code == 0, payload["error"]
    (result,) = payload["results"]
    assert result["output"] == str(base / "2")
    assert tree(base / "1") == before  # bytes and modification times
    assert sorted(p.name for p in base.iterdir()) == ["1", "1.convhub.json", "2", "2.convhub.json"]
    final = result["parity"][-1]
    assert final["passed"] and "outputs from replaying 2 warmup requests" in final["runner"]
    assert final["latency"]["p50_ms"] > 0 and final["latency"]["batch"] == 1
    side = json.loads((base / "2.convhub.json").read_text())
    assert side["artifact"]["sha256"] == provenance.content_hash(base / "2") and side["parity"]["status"] == "passed"


def test_an_existing_version_is_refused_before_anything_loads(keras_serving, cnn_file, capsys):
    code = cli.main(["convert", "keras→tfserving", str(cnn_file), "-o", str(keras_serving), "--model-name", "cnn",
                     "--version", "1", "-q"])
    assert code == 2
    err = capsys.readouterr().err
    assert "version 1 exists" in err and "never replaced" in err


@pytest.mark.parametrize("args, why", [
    (["--model-name", "../escape"], "--model-name '../escape': use letters"),
    (["--version", "0"], "--version (version): must be ≥ 1"),
    (["--quantize", "int8"], "option 'quantize' is not used by any conversion on the route"),
], ids=["name", "version", "option"])
def test_bad_serving_options_exit_2_before_anything_loads(cnn_file, tmp_path, capsys, args, why):
    assert cli.main(["convert", "keras→tfserving", str(cnn_file), "-o", str(tmp_path), *args, "-q"]) == 2
    assert why in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_a_warmup_that_does_not_fit_the_signature_fails_the_check(keras_serving, cnn_file, tmp_path, capsys):
    """`convhub check` on a base path replays its latest version's warmup: a record feeding an
    input the signature does not take fails the check, as it would fail the server's load."""
    import shutil

    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    base = tmp_path / "cnn"
    shutil.copytree(keras_serving / "cnn" / "1", base / "1")
    log = warmup_logs(base / "1")[0]
    request = log.predict_log.request
    request.inputs["pixels"].CopyFrom(request.inputs.pop("image"))
    with tf.io.TFRecordWriter(str(base / "1" / "assets.extra" / "tf_serving_warmup_requests")) as writer:
        writer.write(log.SerializeToString())
    code = cli.main(["check", str(cnn_file), str(base), "--json", "-q"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and not report["ok"]
    assert "warmup record 0 feeds ['pixels']" in report["parity"][0]["reason"]
    (base / "1" / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"\x00" * 40)
    code = cli.main(["check", str(cnn_file), str(base), "--json", "-q"])
    assert code == 1 and json.loads(capsys.readouterr().out)["parity"][0]["checked"]


def test_a_jax_function_becomes_a_served_version(tmp_path, capsys):
    code, payload = convert(capsys, "jax→tfserving", JAX_MLP, "-o", tmp_path)
    assert code == 0, payload["error"]
    version = tmp_path / "model" / "1"  # the name the tensorflow/serving image serves by default
    assert payload["results"][0]["route"] == ["jax", "savedmodel", "tfserving"]
    logs = warmup_logs(version)
    default = next(log for log in logs if log.predict_log.request.model_spec.signature_name == "serving_default")
    import tensorflow as tf

    x = tf.make_ndarray(default.predict_log.request.inputs["x"])
    served = tf.saved_model.load(str(version)).signatures["serving_default"](x=tf.constant(x))
    import importlib.util

    spec = importlib.util.spec_from_file_location("jax_function", ROOT / "examples" / "jax_function.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = np.asarray(module.forward(module.init_params(), x))
    (name,) = served
    np.testing.assert_allclose(served[name].numpy(), expected, atol=1e-5)
    assert json.loads((version / "assets.extra" / "convhub.json").read_text())["source"]["format"] == "jax"


def test_two_runs_publishing_at_once_get_a_version_each(tmp_path):
    """The version is chosen under a lock on the base path: racing runs never share a number."""
    built = []
    for i in range(6):
        folder = tmp_path / f"built-{i}"
        folder.mkdir()
        (folder / "saved_model.pb").write_text(str(i))
        built.append(folder)
    base = tmp_path / "serving" / "model"
    barrier = threading.Barrier(len(built))

    def publish(folder: Path) -> None:
        transaction = Transaction()
        transaction.add_version(folder, base, None)
        barrier.wait()
        transaction.commit()

    threads = [threading.Thread(target=publish, args=(b,)) for b in built]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(int(p.name) for p in base.iterdir()) == [1, 2, 3, 4, 5, 6]
    assert sorted((base / str(v) / "saved_model.pb").read_text() for v in range(1, 7)) == [str(i) for i in range(6)]
