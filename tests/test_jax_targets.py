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
        # Native export (StableHLO in XlaCallModule): TFLite takes it, ONNX goes through TFLite...
        "tflite": ["jax->savedmodel", "savedmodel->tflite"],
        "onnx": ["jax->savedmodel", "savedmodel->tflite", "tflite->onnx"],
        # ...and tensorflowjs, which can't, gets the plain-TF-ops export.
        "tfjs": ["jax->savedmodel-tf-ops", "savedmodel->tfjs"],
    }
    for result in results:
        assert result.ok and all(p.checked and p.passed and p.max_abs_diff < 1e-4 for p in result.parity)
    # The shared native SavedModel was converted once, for both tflite and onnx.
    assert results[0].artifacts[0] is results[1].artifacts[0]
    # TF's optimizer fused tanh into MatMul, which TF.js's CPU backend cannot run; it is split out.
    model_json = graph_model.load(results[2].output)
    assert "Tanh" in graph_model.ops_of(model_json)
    fused = [
        base64.b64decode(op).decode()
        for nodes in graph_model._graphs(model_json) for node in nodes
        for op in node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
    ]
    assert "Tanh" not in fused


def test_an_orbax_export_has_no_tfjs_route_and_the_router_says_why(capsys):
    with pytest.raises(convhub.NoRouteError) as info:
        convhub.convert(orbax_serving.serving(), to="tfjs")
    reasons = info.value.reasons
    assert any("savedmodel → tfjs (tfjs) refuses this model: the SavedModel holds XlaCallModule" in r for r in reasons)
    assert any("only a convhub_jax.JaxFunction can be re-exported as plain TF ops; an OrbaxExport" in r for r in reasons)


def test_route_explain_shows_the_facts_that_decide(capsys):
    from convhub import cli

    code = cli.main(["route", "jax→onnx", str(ROOT / "examples" / "jax_function.py") + ":mlp", "--explain", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    assert payload["facts"]["jax_source"] == "JaxFunction"
    assert payload["routes"][0]["route"] == ["jax", "savedmodel", "tflite", "onnx"]
    # The native export's direct route is listed as unusable, blocked by tf2onnx's refusal.
    (blocked,) = [r for r in payload["unusable"] if r["hops"] == ["jax->savedmodel", "savedmodel->onnx"]]
    assert blocked["reason"].startswith("savedmodel → onnx (onnx) refuses this model: it holds XlaCallModule ops")


@pytest.mark.parametrize("reference", ["flax_module.py:classifier", "orbax_serving.py:serving"])
def test_flax_and_orbax_references_through_the_cli(reference, tmp_path, capsys):
    from convhub import cli

    out = tmp_path / "m.tflite"
    code = cli.main(["convert", "jax→tflite", str(ROOT / "examples" / reference), "-o", str(out), "--json", "-q"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] and report["route"] == ["jax", "savedmodel", "tflite"]
    assert all(p["passed"] and p["max_abs_diff"] < 1e-4 for p in report["parity"]) and out.is_file()
