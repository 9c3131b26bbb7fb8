"""Keras RNNs → TFLite: builtin ops first, then an explained Select TF ops (Flex) fallback whose
runner really has the Flex delegate; the opt-out keeps the converter's hint.

Every conversion runs in the one module fixture `runs`, the CLI's last (it ends the workers):
convhub's workers serve calls whose environment matches theirs, and pytest sets
PYTEST_CURRENT_TEST anew for each test's setup, call and teardown, so conversions spread over
several tests would each start new workers (and import TensorFlow again, ~12 s each).
"""

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest

import convhub
from convhub import cli, pipeline
from convhub.plugins import default_registry
from convhub.types import Artifact, TensorSpec
from convhub_tflite import notes, tflite

TENSOR_LIST_OPS = ["TensorListReserve", "TensorListSetItem", "TensorListStack"]
STATIC_SHAPE = "'tf.TensorListReserve' op requires element_shape to be static"


def build(folder):
    """The models as .keras files (random weights), valid token ids for the Embedding one, and a
    SavedModel with an op that has no TFLite builtin."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    layers = keras.layers

    def model(inputs, body):
        return keras.Model(inputs, layers.Dense(3)(body(inputs)))

    ids = keras.Input((12,), dtype="int32", name="ids")
    x = keras.Input((10, 4), name="x")
    varying = keras.Input((None, 4), name="x")  # dynamic batch and length
    built = {
        "lstm": model(ids, lambda t: layers.LSTM(16)(layers.Embedding(100, 16)(t))),
        "gru": model(x, layers.GRU(8)),
        "bilstm": model(x, layers.Bidirectional(layers.LSTM(8))),
        "dynamic": model(varying, layers.LSTM(8)),
        "unrolled": model(x, layers.LSTM(8, unroll=True)),
    }
    paths = {name: folder / f"{name}.keras" for name in built}
    for name, m in built.items():
        m.save(paths[name])
    paths["ids"] = folder / "ids.npz"  # ids in [1, 100): Embedding(100, ...) takes them all
    np.savez(paths["ids"], ids=np.random.default_rng(3).integers(1, 100, size=(3, 12)).astype("int32"))

    class Cumulative(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.math.cumprod(x, axis=1)}

    module = Cumulative()
    paths["cumprod"] = folder / "cumprod"
    tf.saved_model.save(module, str(paths["cumprod"]), signatures={"serving_default": module.serve})
    return paths


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rnn")
    paths = build(folder)
    out = folder / "out"
    out.mkdir()
    done = {"paths": paths}
    for name in ("gru", "bilstm", "dynamic"):
        done[name] = convhub.convert(paths[name], to="tflite", output=out / f"{name}.tflite")
    done["lstm"] = convhub.convert(paths["lstm"], to="tflite", output=out / "lstm.tflite", inputs=paths["ids"])
    done["unrolled"] = convhub.convert(paths["unrolled"], to="tflite", output=out / "unrolled.tflite", check=False)
    done["cumprod"] = convhub.convert(paths["cumprod"], to="tflite", output=out / "cumprod.tflite")
    done["cumprod refused"] = pipeline.run(paths["cumprod"], "tflite", out / "refused.tflite",
                                           options={"select_tf_ops": False}, check=False)
    registry = default_registry()
    done["read back"] = pipeline.read_source(registry, out / "gru.tflite").facts
    done["bilstm facts"] = pipeline.read_source(registry, paths["bilstm"]).facts  # what `route --explain` reads
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(["convert", "keras→tflite", str(paths["gru"]), "-o", str(out / "opt-out.tflite"),
                         "--no-select-tf-ops-fallback", "--no-check", "--json", "-q"])
    done["cli opt-out"] = (code, stdout.getvalue(), stderr.getvalue(), out / "opt-out.tflite")
    return done


def assert_fell_back(facts, layer):
    assert facts["select_tf_ops"] == TENSOR_LIST_OPS
    line = facts["fallback"]
    assert line.startswith(f"builtin ops failed: {STATIC_SHAPE}") and f"/{layer}" in line
    assert "converted with Select TF ops instead (Flex ops: TensorListReserve" in line
    assert "must link the Flex delegate (tensorflow-lite-select-tf-ops" in line and "\n" not in line
    assert "unroll=True" in line


@pytest.mark.parametrize("name, layer", [("gru", "gru"), ("bilstm", "backward_lstm"), ("dynamic", "lstm")])
def test_recurrent_layers_fall_back_to_select_tf_ops_and_match(runs, name, layer):
    result = runs[name]
    converted = result.artifacts[-1]
    assert converted.format == "tflite" and converted.path.is_file()
    assert_fell_back(converted.facts, layer)
    final = result.parity[-1]
    assert final.checked and final.passed and final.max_abs_diff < 1e-5


def test_an_embedding_lstm_on_valid_ids_reports_the_fallback_in_json(runs):
    report = json.loads(json.dumps(runs["lstm"].to_json()))  # what `convhub convert --json` prints
    assert report["ok"] and report["inputs"] == str(runs["paths"]["ids"])
    assert_fell_back(report["artifacts"][-1]["facts"], "lstm")
    (check,) = [p for p in report["parity"] if p["format"] == "tflite"]
    assert check["passed"] and max(o["max_abs_diff"] for o in check["outputs"]) < 1e-5


def test_the_cli_opt_out_fails_with_the_converters_hint_and_the_alternatives(runs):
    code, stdout, stderr, output = runs["cli opt-out"]
    assert code == 1 and not output.exists(), stderr
    error = json.loads(stdout)["error"]
    assert "\n" not in error and "savedmodel → tflite (tflite) failed: builtin ops failed:" in error
    assert f"{STATIC_SHAPE} during TF Lite transformation pass (in functional" in error and "/gru" in error
    assert "Please consider using Select TF ops and disabling `_experimental_lower_tensor_list_ops`" in error
    assert "the Select TF ops fallback is off (--no-select-tf-ops-fallback)" in error
    assert "alternatives: --select-tf-ops (the Flex delegate), a fixed batch size" in error
    assert "unroll=True on the Keras layer" in error


def test_an_unrolled_lstm_keeps_to_builtin_ops_and_litert(runs):
    converted = runs["unrolled"].artifacts[-1]
    assert "fallback" not in converted.facts and "select_tf_ops" not in converted.facts
    assert tflite.flex_ops(converted.path.read_bytes()) == []
    assert tflite.Session(converted).runtime == tflite.LITERT


def test_litert_alone_cannot_run_flex_ops_and_the_session_runs_them_with_tf_lite(runs):
    path = runs["gru"].artifacts[-1].path
    code = f"""
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
runner = Interpreter(model_path={str(path)!r}).get_signature_runner()
try:
    runner(x=np.zeros((1, 10, 4), np.float32))
    print("RAN")
except RuntimeError as exc:
    print("REFUSED", exc)
print("TENSORFLOW LOADED" if "tensorflow" in sys.modules else "NO TENSORFLOW")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "REFUSED Select TensorFlow op(s), included in the given model, is(are) not supported" in proc.stdout, proc
    assert "(FlexTensorListReserve) failed to prepare" in proc.stdout and "NO TENSORFLOW" in proc.stdout

    import keras

    session = tflite.Session(Artifact("tflite", path))
    assert session.runtime == tflite.FLEX_RUNNER and session.flex_ops == TENSOR_LIST_OPS
    x = np.random.default_rng(5).uniform(-1, 1, size=(2, 10, 4)).astype("float32")
    (out,) = session.run({session.inputs[0].name: x}).values()
    expected = keras.saving.load_model(runs["paths"]["gru"]).predict(x, verbose=0)
    assert np.abs(out - expected).max() < 1e-5
    # Read back as a source, the file says which TF ops it needs.
    assert runs["read back"]["select_tf_ops"] == TENSOR_LIST_OPS


def test_ops_with_no_builtin_fall_back_too_and_the_opt_out_names_them(runs):
    result = runs["cumprod"]
    facts = result.artifacts[-1].facts
    assert facts["select_tf_ops"] == ["Cumprod"] and result.parity[-1].passed
    assert facts["fallback"].startswith("builtin ops failed: 'tf.Cumprod' op is neither a custom op nor a flex op;")
    assert "unroll" not in facts["fallback"]
    refused = runs["cumprod refused"]
    assert not refused.ok and "you can enable TF kernels fallback using TF Select" in refused.error
    assert "TF Select ops: Cumprod; the Select TF ops fallback is off (select_tf_ops=False);" in refused.error
    assert refused.error.endswith("alternatives: --select-tf-ops (the Flex delegate)")


def test_the_route_notes_recurrent_layers_and_tolerates_their_absence(runs):
    (edge,) = [c for c in default_registry().graph.conversions if c.name == "savedmodel->tflite"]
    facts = {"recurrent_layers": ["Bidirectional", "LSTM", "LSTM"], "dynamic_dims": ["x[0]"]}
    note, int16x8 = cli.route_notes(edge, facts)
    assert note.startswith("recurrent layers (Bidirectional, LSTM): builtin ops first; if TensorListReserve")
    assert "falls back to Select TF ops (Flex" in note and "--no-select-tf-ops-fallback" in note
    # What --quantize int16x8 will meet is said before anything converts.
    assert int16x8.startswith("--quantize int16x8: TFLiteConverter's int16x8 calibration records no range for"
                              " recurrent layers (tensorflow/tensorflow#60799), so that conversion is refused")
    assert cli.route_notes(edge, {"xla_call_module": False}) == [] == notes({"recurrent_layers": []})
    # Integer inputs (token ids) meet it too; uint8 pixels convert, so they are not named. Specs
    # arrive as TensorSpecs, or as their JSON from another Python.
    ids = [TensorSpec("token_ids", (None, 8), "int32"), TensorSpec("pixels", (None, 4, 4, 3), "uint8")]
    (said,) = cli.route_notes(edge, {"inputs": ids})
    assert "no range for integer inputs (token_ids) (tensorflow" in said
    assert cli.route_notes(edge, {"inputs": [s.to_json() for s in ids]}) == [said]
    assert cli.route_notes(edge, {"inputs": ids[1:]}) == []
    # With the facts a Keras source gives (when its reader reports recurrent layers).
    source = runs["bilstm facts"]
    if "recurrent_layers" not in source:
        pytest.skip("this Keras source reader does not report recurrent_layers")
    note, int16x8 = cli.route_notes(edge, source)
    assert note.startswith("recurrent layers (Bidirectional, LSTM): builtin ops first")
    assert int16x8.startswith("--quantize int16x8:") and "recurrent layers" in int16x8
