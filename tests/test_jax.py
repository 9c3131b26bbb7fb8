"""JAX sources for real: Orbax exports a SavedModel, TFLiteConverter converts it, LiteRT runs it.

The .tflite files are also checked against JAX outside convhub, at batch sizes the parity check
does not use, so a frozen batch dim or a dropped pre-processor cannot hide.
"""

import importlib.util
import json

import numpy as np
import pytest

import convhub
from convhub import pipeline, pyref
from convhub.errors import InputError
from convhub.plugins import default_registry
from convhub.types import TensorSpec
from conftest import ROOT, run_cli

EXAMPLES = ROOT / "examples"


def example(name):
    """An examples/ module, imported the way a Python reference is."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def litert(path):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path))


def assert_parity(result, formats=("savedmodel", "tflite")):
    assert [p.format for p in result.parity] == list(formats)
    for p in result.parity:
        assert p.checked and p.passed and p.max_abs_diff < 1e-4, p


def test_jax_function_to_tflite_keeps_a_dynamic_batch(tmp_path):
    mlp = example("jax_function")
    source = pyref.load(f"{EXAMPLES}/jax_function.py:mlp")
    out = tmp_path / "mlp.tflite"
    result = convhub.convert(source, to="tflite", output=out)
    assert result.route.formats == ["jax", "savedmodel", "tflite"]
    assert_parity(result)
    assert result.facts["inputs"] == [TensorSpec("x", (None, 4), "float32")]
    assert result.facts["dynamic_dims"] == ["x[0]"]
    assert result.facts["signature"] == "serving_default" and result.facts["signatures"] == ["serving_default"]

    runner = litert(out).get_signature_runner("serving_default")
    params = mlp.init_params()
    for batch in (1, 7):
        x = np.random.default_rng(batch).normal(size=(batch, 4)).astype("float32")
        (name, got), = runner(x=x).items()
        assert name == "output_0" and got.shape == (batch, 3)
        np.testing.assert_allclose(got, np.asarray(mlp.forward(params, x)), atol=1e-5)


def test_flax_module_with_batch_stats_to_tflite(tmp_path):
    source = pyref.load(f"{EXAMPLES}/flax_module.py:classifier")
    out = tmp_path / "flax.tflite"
    result = convhub.convert(source, to="tflite", output=out)
    assert_parity(result)
    assert result.facts["inputs"] == [TensorSpec("image", (None, 8, 8, 1), "float32")]

    x = np.random.default_rng(3).normal(size=(2, 8, 8, 1)).astype("float32")
    got = litert(out).get_signature_runner()(image=x)
    expected = np.asarray(source.fn(source.params, x)["logits"])  # the Flax module itself
    assert list(got) == ["logits"]
    np.testing.assert_allclose(got["logits"], expected, atol=1e-5)
    # The running statistics are in there: without them the outputs differ.
    no_stats = {**source.params, "batch_stats": {
        k: {"mean": 0 * v["mean"], "var": 0 * v["var"] + 1} for k, v in source.params["batch_stats"].items()
    }}
    assert np.abs(np.asarray(source.fn(no_stats, x)["logits"]) - expected).max() > 1e-3


def test_orbax_serving_configs_become_signatures_with_their_preprocessor(tmp_path):
    served = example("orbax_serving")
    source = served.serving()
    out = tmp_path / "served.tflite"
    result = convhub.convert(source, to="tflite", output=out)
    assert_parity(result)
    assert result.facts["signature"] == "serving_default"
    assert result.facts["signatures"] == ["serving_default", "unprocessed"]
    assert result.facts["inputs"] == [TensorSpec("pixels", (None, 6), "uint8")]
    assert [o.name for o in result.parity[-1].outputs] == ["probabilities", "label"]
    # The export reports its outputs in signature order, for the converters after it (tf2onnx).
    assert result.artifacts[0].facts["outputs"] == ["probabilities", "label"]

    interpreter = litert(out)
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["pixels"], "outputs": ["label", "probabilities"]},
        "unprocessed": {"inputs": ["features"], "outputs": ["output_0"]},
    }
    # The uint8 → float scaling runs inside the .tflite: compare with JAX on scaled pixels.
    params = served._params()
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 6), dtype=np.uint8)
    logits = np.asarray(served._apply(params, pixels.astype("float32") / 255.0))
    got = interpreter.get_signature_runner("serving_default")(pixels=pixels)
    np.testing.assert_allclose(got["probabilities"], np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), atol=1e-5)
    np.testing.assert_array_equal(got["label"], logits.argmax(-1))
    features = np.random.default_rng(1).normal(size=(2, 6)).astype("float32")
    got = interpreter.get_signature_runner("unprocessed")(features=features)
    np.testing.assert_allclose(got["output_0"], np.asarray(served._apply(params, features)), atol=1e-5)


def test_an_export_manager_and_the_signature_option(tmp_path):
    from orbax.export import ExportManager

    source = example("orbax_serving").serving()
    manager = ExportManager(source.module, list(source.configs))
    result = convhub.convert(manager, to="savedmodel", output=tmp_path / "sm", options={"signature": "unprocessed"})
    assert_parity(result, ["savedmodel"])
    assert result.facts["signature"] == "unprocessed"
    assert result.facts["inputs"] == [TensorSpec("features", (None, 6), "float32")]
    assert result.artifacts[0].facts["outputs"] == ["output_0"]
    assert b"XlaCallModule" in (tmp_path / "sm" / "saved_model.pb").read_bytes()
    with pytest.raises(InputError, match="has no signature 'nope' \\(available: serving_default, unprocessed\\)"):
        convhub.convert(manager, to="savedmodel", options={"signature": "nope"})


def test_cli_converts_a_jax_reference(tmp_path):
    out = tmp_path / "out.tflite"
    proc = run_cli("convert", "jax→tflite", "examples/jax_function.py:mlp", "-o", out, "--json", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    (report,) = json.loads(proc.stdout)["results"]
    assert report["ok"] is True and report["error"] is None
    assert report["route"] == ["jax", "savedmodel", "tflite"]
    assert report["hops"][0]["plugin"] == "jax"
    assert report["facts"]["inputs"] == [{"name": "x", "shape": [None, 4], "dtype": "float32"}]
    assert all(p["checked"] and p["passed"] and p["max_abs_diff"] < 1e-4 for p in report["parity"])
    assert out.is_file() and report["output"] == str(out)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("convhub: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_bad_references_are_one_line_errors(tmp_path):
    models = tmp_path / "models.py"
    models.write_text(
        "answer = 42\n"
        "def broken():\n"
        "    raise RuntimeError('weights not found')\n"
    )
    out = tmp_path / "out.tflite"
    cases = {
        f"{tmp_path}/missing.py:mlp": "no such file",
        f"{models}:nosuch": "has no attribute 'nosuch'",
        f"{models}:answer": "an int is not a JAX source",
        f"{models}:broken": "raised RuntimeError: weights not found",
    }
    for reference, needle in cases.items():
        assert_one_line_error(run_cli("convert", "jax→tflite", reference, "-o", out), needle)
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:jax2tf.convert with native_serialization=False:DeprecationWarning")
def test_objects_that_are_not_complete_jax_sources(tmp_path):
    served = example("orbax_serving").serving()
    flax = example("flax_module")
    cases = [
        (served.module, "a JaxModule needs at least one ServingConfig"),
        (flax._module_class()(), "a Flax module needs its variables .*JaxFunction.from_flax"),
        (example("jax_function").forward, "a bare function \\(forward\\) needs its params"),
    ]
    for obj, message in cases:
        with pytest.raises(InputError, match=message):
            convhub.convert(obj, to="tflite", output=tmp_path / "x.tflite", source="jax")
    from convhub_jax import JaxFunction, OrbaxExport

    with pytest.raises(InputError, match="a JaxModule needs at least one ServingConfig"):
        OrbaxExport(served.module, [])
    from orbax.export import JaxModule

    graph_mode = JaxModule({"w": np.ones((6, 4), "float32")}, lambda p, x: x @ p["w"],
                           jax2tf_kwargs={"native_serialization": False})
    with pytest.raises(InputError, match="disables jax2tf native serialization"):
        convhub.convert(OrbaxExport(graph_mode, served.configs), to="tflite", output=tmp_path / "x.tflite")
    with pytest.raises(InputError, match="give \\(shape, dtype\\)"):
        JaxFunction(lambda p, x: x, {}, inputs={"x": (None, 4)})
    with pytest.raises(InputError, match="dim -1 must be"):
        JaxFunction(lambda p, x: x, {}, inputs={"x": ((-1, 4), "float32")})
    # A function whose shapes do not fit its params fails at read, before anything is written.
    bad = JaxFunction(lambda p, x: x @ p, np.ones((5, 2), "float32"), inputs={"x": ((None, 4), "float32")})
    with pytest.raises(InputError, match="not a readable jax model: TypeError: dot_general"):
        convhub.convert(bad, to="tflite", output=tmp_path / "bad.tflite")
    assert not (tmp_path / "bad.tflite").exists()


def test_the_router_takes_jax_to_onnx_through_plain_tf_ops_before_tflite():
    registry = default_registry()
    facts = pipeline.read_source(registry, example("jax_function").mlp()).facts
    assert registry.graph.routes("jax", "tflite", facts)[0].formats == ["jax", "savedmodel", "tflite"]
    routes = registry.graph.routes("jax", "onnx", facts)
    # tf2onnx's SavedModel front end over its TFLite one (a Flax Transformer's Reshape broke there).
    assert [h.name for h in routes[0].hops] == ["jax->savedmodel-tf-ops", "savedmodel->onnx"]
    assert routes[1].formats == ["jax", "savedmodel", "tflite", "onnx"]
    # tf2onnx refuses SavedModels holding XlaCallModule, which the native jax → savedmodel export has.
    assert all(not (r.hops[0].name == "jax->savedmodel" and r.formats[2] == "onnx") for r in routes)


def test_pixels_a_jax_function_scales_itself_are_generated_in_their_range(tmp_path):
    """A JAX function that starts with x / 127.5 - 1 takes pixels in [0, 255], as a Keras model
    that starts with Rescaling(1/127.5, offset=-1) does: its parity inputs are pixels, not
    [-1, 1), a sliver of them. Read through jit and dtype casts; a function that does anything
    else with an input first gets no range for it."""
    import jax
    import jax.numpy as jnp

    from convhub_jax import JaxFunction, ranges

    kernel = np.linspace(-1, 1, 12, dtype="float32").reshape(3, 4)
    net = JaxFunction(lambda p, x: jnp.tanh(jnp.mean(x / 127.5 - 1.0, axis=(1, 2)) @ p), kernel,
                      inputs={"image": ((None, 4, 4, 3), "float32")})
    result = convhub.convert(net, to="tflite", output=tmp_path / "m.tflite", save_io=tmp_path / "io.npz")
    assert result.ok and result.facts["input_ranges"] == {"image": [0.0, 255.0]}
    with np.load(tmp_path / "io.npz") as data:
        assert data["image"].min() >= 0 and data["image"].max() > 200

    image = TensorSpec("image", (None, 8, 8, 3), "float32")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    found = {
        "jit and cast": ranges.input_ranges(jax.jit(lambda x: x.astype("float32") * (1 / 255.0)),
                                            [TensorSpec("image", (None, 8, 8, 3), "uint8")]),
        "torch-style": ranges.input_ranges(lambda x: (x / 255.0 - mean) / std, [image]),
        "flipped": ranges.input_ranges(lambda x: 1.0 - x / 255.0, [image]),
        "used twice": ranges.input_ranges(lambda x: x / 255.0 + x, [image]),
        "not scaled": ranges.input_ranges(jnp.tanh, [image]),
    }
    assert found == {"jit and cast": {"image": [0.0, 255.0]}, "torch-style": {"image": [0.0, 255.0]},
                     "flipped": {}, "used twice": {}, "not scaled": {}}
