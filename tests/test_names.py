"""Names survive: the results name inputs and outputs as the source does, and each artifact keeps
them where its format can. ONNX and TF.js keep them as the graph's own names; a .tflite keeps
them in its SignatureDef only (its tensors are named by the converter, e.g.
'StatefulPartitionedCall_1:0'), which is what convhub's LiteRT runner and every signature-aware
TFLite API read."""

from __future__ import annotations

import json

import numpy as np

from conftest import run_cli


def two_outputs(path):
    """A Keras model whose outputs are a dict: 'probs' (softmax) and 'score' (a regression head)."""
    import keras

    keras.utils.set_random_seed(3)
    features = keras.Input(shape=(12,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(features)
    outputs = {"probs": keras.layers.Dense(4, activation="softmax", name="probs")(hidden),
               "score": keras.layers.Dense(1, name="score")(hidden)}
    keras.Model(features, outputs).save(path)
    return path


def test_input_and_output_names_survive_every_target(tmp_path):
    model = two_outputs(tmp_path / "two.keras")
    proc = run_cli("convert", model, "--to", "tflite,onnx,tfjs", "-o", tmp_path / "out", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    for result in results:
        assert [i["name"] for i in result["facts"]["inputs"]] == ["features"]
        for entry in result["parity"]:
            assert sorted(o["name"] for o in entry["outputs"]) == ["probs", "score"], (result["target"], entry)
    out = tmp_path / "out"

    import onnxruntime

    session = onnxruntime.InferenceSession(str(out / "two.onnx"))
    assert [i.name for i in session.get_inputs()] == ["features"]
    assert sorted(o.name for o in session.get_outputs()) == ["probs", "score"]

    signature = json.loads((out / "two_tfjs" / "model.json").read_text())["signature"]
    assert list(signature["inputs"]) == ["features"] and sorted(signature["outputs"]) == ["probs", "score"]

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(out / "two.tflite"))
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["features"], "outputs": ["probs", "score"]}}
    runner = interpreter.get_signature_runner("serving_default")
    got = runner(features=np.ones((1, 12), "float32"))
    assert sorted(got) == ["probs", "score"] and got["probs"].shape == (1, 4) and got["score"].shape == (1, 1)
