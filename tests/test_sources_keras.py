"""Keras and SavedModel sources, in the forms people have them, each converted to TFLite with parity."""

import json

import numpy as np
import pytest

import convhub
from convhub import cli
from convhub.errors import InputError
from conftest import build_cnn


def two_in_two_out():
    """Named inputs (in a list, not in alphabetical order on purpose) and named outputs (a dict)."""
    import keras

    keras.utils.set_random_seed(2)
    beta = keras.Input((3,), name="beta")
    alpha = keras.Input((4,), name="alpha")
    h = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([beta, alpha]))
    outputs = {"score": keras.layers.Dense(1, name="score")(h), "embedding": keras.layers.Dense(2, name="embedding")(h)}
    return keras.Model([beta, alpha], outputs)


def sequential():
    import keras

    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((6,), name="features"), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(2)])


def subclassed():
    import keras

    class Scaled(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3, activation="sigmoid")

        def call(self, x):
            return self.dense(x) * 2.0

    keras.utils.set_random_seed(4)
    model = Scaled()
    model(np.zeros((1, 5), "float32"))  # a subclassed model's input shape is known once it has run
    return model


def assert_parity(result, limit=1e-4):
    assert result.ok, result.error
    assert result.parity and all(p.checked and p.passed and p.max_abs_diff < limit for p in result.parity)


@pytest.mark.parametrize("build", [sequential, subclassed, two_in_two_out, build_cnn])
def test_in_memory_models_convert_with_parity(tmp_path, build):
    result = convhub.convert(build(), to="tflite", output=tmp_path / "m.tflite")
    assert result.route.formats == ["keras", "savedmodel", "tflite"]
    assert_parity(result)


def test_two_inputs_two_outputs_keep_names_and_each_output_is_compared(tmp_path):
    model = two_in_two_out()
    result = convhub.convert(model, to="tflite", output=tmp_path / "m.tflite")
    assert [s.name for s in result.facts["inputs"]] == ["beta", "alpha"]
    for entry in result.parity:
        assert sorted(o.name for o in entry.outputs) == ["embedding", "score"]
        assert all(o.candidate_name == o.name for o in entry.outputs)  # matched by name, not by luck of order
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(tmp_path / "m.tflite")).get_signature_runner()
    assert set(runner.get_input_details()) == {"alpha", "beta"}
    assert set(runner.get_output_details()) == {"embedding", "score"}
    rng = np.random.default_rng(0)
    feeds = {"beta": rng.normal(size=(4, 3)).astype("float32"), "alpha": rng.normal(size=(4, 4)).astype("float32")}
    got, want = runner(**feeds), model([feeds["beta"], feeds["alpha"]])
    for name in ("score", "embedding"):
        np.testing.assert_allclose(got[name], want[name].numpy(), atol=1e-5)


def test_keras_and_h5_files_through_the_cli(tmp_path, capsys):
    model = two_in_two_out()
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"model{suffix}"
        model.save(path)
        out = tmp_path / f"model{suffix}.tflite"
        assert cli.main(["convert", "keras→tflite", str(path), "-o", str(out), "--json", "-q"]) == 0
        (report,) = json.loads(capsys.readouterr().out)["results"]
        assert report["ok"] and report["route"] == ["keras", "savedmodel", "tflite"]
        assert {o["name"] for o in report["parity"][-1]["outputs"]} == {"score", "embedding"}
        assert max(p["max_abs_diff"] for p in report["parity"]) < 1e-4


def test_lambda_layers_need_unsafe(tmp_path, capsys):
    import keras

    model = keras.Sequential([keras.Input((3,), name="x"), keras.layers.Lambda(lambda t: t * 3.0), keras.layers.Dense(2)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    out = tmp_path / "lambda.tflite"
    assert cli.main(["convert", "keras→tflite", str(path), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Lambda layer" in err and "--unsafe" in err
    assert not out.exists()
    assert cli.main(["convert", "keras→tflite", str(path), "-o", str(out), "-q", "--unsafe"]) == 0
    assert out.exists()


def test_a_subclassed_model_that_never_ran_is_refused_clearly():
    import keras

    class Unbuilt(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(InputError, match="has no known input shape"):
        convhub.convert(Unbuilt(), to="tflite")


def multi_signature_saved_model(path):
    """A SavedModel with two signatures, written with plain TensorFlow."""
    import tensorflow as tf

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(np.random.default_rng(0).normal(size=(4, 3)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def scores(self, x):
            return {"scores": tf.nn.relu(x @ self.w)}

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def doubled(self, x):
            return {"doubled": 2.0 * (x @ self.w)}

    model = Model()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.scores, "double": model.doubled})
    return path


def test_saved_model_signatures(tmp_path, capsys):
    saved = multi_signature_saved_model(tmp_path / "sm")
    result = convhub.convert(saved, to="tflite", output=tmp_path / "default.tflite")
    assert_parity(result)
    assert result.facts["signatures"] == ["double", "serving_default"]
    assert result.facts["inputs"][0].name == "x" and result.facts["inputs"][0].shape == (None, 4)
    assert result.facts["xla_call_module"] is False
    assert [o.name for o in result.parity[-1].outputs] == ["scores"]

    out = tmp_path / "double.tflite"
    assert cli.main(["convert", "savedmodel→tflite", str(saved), "-o", str(out), "--signature", "double", "-q", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)["results"]
    assert [o["name"] for o in report["parity"][-1]["outputs"]] == ["doubled"] and report["ok"]

    assert cli.main(["convert", "savedmodel→tflite", str(saved), "-o", str(tmp_path / "x.tflite"), "--signature", "nope", "-q"]) == 2
    err = capsys.readouterr().err
    assert "has no signature 'nope' (available: double, serving_default)" in err and err.count("\n") == 1
