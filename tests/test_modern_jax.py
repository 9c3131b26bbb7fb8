"""Today's JAX sources (an NNX module, a bound linen module, a jax.jit-ed function) with example
inputs, exported with jax.export in this process and converted outside it: StableHLO →
litert-converter in its own toolchain → .tflite, checked against the JAX function run here.
In the development environment (JAX 0.5, Flax 0.10) as in a light one with today's JAX."""

import numpy as np
import pytest

import convhub
from convhub import toolchains

jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
linen = pytest.importorskip("flax.linen")
import jax.numpy as jnp  # noqa: E402

from convhub_jax import LITERT_CONVERTER  # noqa: E402

pytestmark = pytest.mark.skipif(toolchains.unavailable(LITERT_CONVERTER) is not None,
                                reason="no Python or uv for the litert-converter toolchain")


class CNN(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 8, kernel_size=(3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.fc = nnx.Linear(8, 4, rngs=rngs)

    def __call__(self, image):
        return self.fc(nnx.relu(self.bn(self.conv(image))).mean(axis=(1, 2)))


class MLP(linen.Module):
    @linen.compact
    def __call__(self, features):
        return linen.Dense(3)(linen.tanh(linen.Dense(16)(features)))


def nnx_cnn():
    model = CNN(nnx.Rngs(0))
    model.bn.mean.value = jnp.linspace(-0.2, 0.2, 8)  # live running statistics, so BatchNorm matters
    model.bn.var.value = jnp.linspace(0.5, 1.5, 8)
    model.fc.bias.value = jnp.linspace(-1, 1, 4)
    return model


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


def test_a_bound_linen_module_and_a_jitted_function(tmp_path):
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    module = MLP()
    variables = module.init(jax.random.key(0), x)
    variables = jax.tree_util.tree_map(lambda v: v + 0.1, variables)  # biases are zero at init
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


def test_the_toolchain_is_listed_and_a_second_run_pays_nothing_for_it(tmp_path):
    import time

    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    convhub.convert(nnx_cnn(), to="tflite", output=tmp_path / "one.tflite", example_inputs=(x,))
    started = time.perf_counter()
    toolchains.ensure(LITERT_CONVERTER)  # what a second conversion pays for its toolchain
    assert time.perf_counter() - started < 1.0
    status = toolchains.status(LITERT_CONVERTER)
    assert status.state in ("installed", "here") and status.python
