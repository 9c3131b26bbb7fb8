"""JAX to every target: the router picks the export that each converter can take, from facts."""

import base64
import json

import pytest

import convhub
from convhub_tfjs import graph_model
from conftest import ROOT

import sys

sys.path.insert(0, str(ROOT / "examples"))
import jax_function  # noqa: E402
import orbax_serving  # noqa: E402


def test_a_jax_function_reaches_tflite_onnx_and_tfjs_in_one_run(tmp_path):
    results = convhub.convert(jax_function.mlp(), to=["tflite", "onnx", "tfjs"], output=tmp_path)
    routes = {r.route.formats[-1]: [h.name for h in r.route.hops] for r in results}
    assert routes == {
        # Native export (StableHLO in XlaCallModule): TFLite takes it...
        "tflite": ["jax->savedmodel", "savedmodel->tflite"],
        # ...tf2onnx and tensorflowjs, which can't, get the plain-TF-ops export.
        "onnx": ["jax->savedmodel-tf-ops", "savedmodel->onnx"],
        "tfjs": ["jax->savedmodel-tf-ops", "savedmodel->tfjs"],
    }
    for result in results:
        assert result.ok and all(p.checked and p.passed and p.max_abs_diff < 1e-4 for p in result.parity)
    # The shared plain-TF-ops SavedModel was converted once, for both onnx and tfjs.
    assert results[1].artifacts[0] is results[2].artifacts[0]
    # TF's optimizer fused tanh into MatMul, which TF.js's CPU backend cannot run; it is split out.
    model_json = graph_model.load(results[2].output)
    assert "Tanh" in graph_model.ops_of(model_json)
    fused = [
        base64.b64decode(op).decode()
        for nodes in graph_model._graphs(model_json) for node in nodes
        for op in node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
    ]
    assert "Tanh" not in fused


def test_an_orbax_export_reaches_tfjs_lowered_again_to_plain_tf_ops(tmp_path):
    """tensorflowjs refuses XlaCallModule: the user's JaxModule is rebuilt with jax2tf's non-native
    lowering, its ServingConfig (with the TF pre- and post-processors) unchanged."""
    result = convhub.convert(orbax_serving.serving(), to="tfjs", output=tmp_path / "orbax_tfjs")
    assert [h.name for h in result.route.hops] == ["jax->savedmodel-tf-ops", "savedmodel->tfjs"]
    assert result.ok and result.artifacts[0].facts["xla_call_module"] is False
    final = result.parity[-1]
    assert final.checked and final.passed and final.max_abs_diff < 1e-4
    assert {o.name for o in final.outputs} == {"probabilities", "label"}


def test_route_explain_shows_the_facts_that_decide(capsys):
    from convhub import cli

    code = cli.main(["route", "jax→onnx", str(ROOT / "examples" / "jax_function.py") + ":mlp", "--explain", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    assert payload["facts"]["jax_source"] == "JaxFunction"
    assert [h["conversion"] for h in payload["routes"][0]["hops"]] == ["jax->savedmodel-tf-ops", "savedmodel->onnx"]
    assert payload["routes"][1]["route"] == ["jax", "savedmodel", "tflite", "onnx"]
    # The native export's direct route is listed as unusable, blocked by tf2onnx's refusal.
    (blocked,) = [r for r in payload["unusable"] if r["hops"] == ["jax->savedmodel", "savedmodel->onnx"]]
    assert blocked["reason"].startswith("savedmodel → onnx (onnx) refuses this model: it holds XlaCallModule ops")


@pytest.mark.parametrize("reference", ["flax_module.py:classifier", "orbax_serving.py:serving"])
def test_flax_and_orbax_references_through_the_cli(reference, tmp_path, capsys):
    from convhub import cli

    out = tmp_path / "m.tflite"
    code = cli.main(["convert", "jax→tflite", str(ROOT / "examples" / reference), "-o", str(out), "--json", "-q"])
    (report,) = json.loads(capsys.readouterr().out)["results"]
    assert code == 0 and report["ok"] and report["route"] == ["jax", "savedmodel", "tflite"]
    assert all(p["passed"] and p["max_abs_diff"] < 1e-4 for p in report["parity"]) and out.is_file()
