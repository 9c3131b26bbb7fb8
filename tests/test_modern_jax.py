"""Today's JAX sources (an NNX module, a bound linen module, a jax.jit-ed function) with example
inputs, exported with jax.export in this process and converted outside it: StableHLO →
litert-converter in its own toolchain → .tflite, checked against the JAX function run here.
In the development environment (JAX 0.5, Flax 0.10) as in a light one with today's JAX."""

import numpy as np
import pytest

import convhub
from convhub import toolchains

jax = pytest.importorskip("jax")
pytest.importorskip("flax.nnx")

from convhub_jax import LITERT_CONVERTER  # noqa: E402
from light_env.models import MLP, linen_variables, nnx_cnn  # noqa: E402

pytestmark = pytest.mark.skipif(toolchains.unavailable(LITERT_CONVERTER) is not None,
                                reason="no Python or uv for the litert-converter toolchain")


def test_an_nnx_cnn_with_batchnorm_to_tflite_with_a_dynamic_batch(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    result = convhub.convert(nnx_cnn(), to="tflite", output=tmp_path / "cnn.tflite", example_inputs=(x,),
                             dynamic_batch=True)
    assert result.ok and str(result.route) == "jax → stablehlo → tflite"
    assert result.facts["inputs"][0].name == "image" and result.facts["inputs"][0].shape == (None, 8, 8, 3)
    from ai_edge_litert.interpreter import Interpreter  # the file works on its own, at another batch size

    runner = Interpreter(model_path=str(tmp_path / "cnn.tflite")).get_signature_runner("serving_default")
    x5 = np.random.default_rng(5).standard_normal((5, 8, 8, 3)).astype(np.float32)
    model = nnx_cnn()
    model.eval()
    np.testing.assert_allclose(runner(image=x5)["output_0"], model(x5), atol=1e-5)
    # The provenance names what the toolchain hop ran with, not this environment's packages.
    import json

    ran = json.dumps(json.loads((tmp_path / "cnn.tflite.convhub.json").read_text()))
    assert "toolchain litert-converter" in ran and "litert-converter" in ran, ran[:400]


def test_a_bound_linen_module_and_a_jitted_function(tmp_path):
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    module, variables = MLP(), linen_variables()
    bound = convhub.convert(module.bind(variables), to="tflite", output=tmp_path / "mlp.tflite", example_inputs=(x,))
    assert bound.ok and bound.facts["jax_source"] == "linen"
    jitted = convhub.convert(jax.jit(lambda features: module.apply(variables, features) * 2), to="tflite",
                             output=tmp_path / "jit.tflite", example_inputs=(x,))
    assert jitted.ok and jitted.facts["jax_source"] == "jit" and jitted.facts["inputs"][0].name == "features"


def test_what_is_missing_is_said_in_one_line(tmp_path):
    with pytest.raises(convhub.InputError, match="nnx source needs example inputs"):
        convhub.convert(nnx_cnn(), to="tflite", output=tmp_path / "a.tflite")
    with pytest.raises(convhub.InputError, match=r"needs its variables \(pass module.bind\(variables\)"):
        convhub.convert(MLP(), to="tflite", output=tmp_path / "b.tflite", example_inputs=(np.zeros((1, 5)),))


def test_the_command_line_takes_example_inputs_as_an_npz_or_a_reference(tmp_path):
    """`--example-inputs`: an .npz of the positional inputs in order, or a file.py:NAME reference
    (imported by the worker that reads the model); a missing file is refused before anything loads."""
    import json
    import time

    from conftest import ROOT, run_cli
    from light_env.models import IMAGE

    models = ROOT / "tests" / "light_env" / "models.py"
    np.savez(tmp_path / "image.npz", IMAGE)
    proc = run_cli("convert", f"{models}:nnx_cnn", "--example-inputs", tmp_path / "image.npz", "--to", "tflite",
                   "-o", tmp_path / "cnn.tflite", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["results"][0]
    assert report["ok"] and report["route"] == ["jax", "stablehlo", "tflite"] and report["parity"][-1]["passed"]
    started = time.perf_counter()
    toolchains.ensure(LITERT_CONVERTER)  # what the next conversion pays to find its toolchain
    assert time.perf_counter() - started < 1.0
    proc = run_cli("route", "jax→tflite", f"{models}:nnx_cnn", "--example-inputs", f"{models}:image_inputs",
                   "--explain", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["facts"]["inputs"][0]["shape"] == [2, 8, 8, 3]
    proc = run_cli("convert", f"{models}:nnx_cnn", "--example-inputs", tmp_path / "none.npz", "--to", "tflite",
                   "-o", tmp_path / "b.tflite")
    assert proc.returncode == 2 and "none.npz" in proc.stderr and "loading" not in proc.stderr
