"""Research models on today's JAX, built in code with live weights: an NNX CNN with BatchNorm
(running statistics set, so BatchNorm matters) and a Flax linen MLP bound to its variables, with
their example inputs. Imported by tests/test_modern_jax.py and, as `models.py:NAME` references,
by the light environment's command line (tests/test_light_install.py)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen, nnx

IMAGE = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
FEATURES = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)


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
    model.bn.mean.value = jnp.linspace(-0.2, 0.2, 8)
    model.bn.var.value = jnp.linspace(0.5, 1.5, 8)
    model.fc.bias.value = jnp.linspace(-1, 1, 4)
    return model


def linen_variables():
    # Biases are zero at init: shifted, so every parameter is live.
    return jax.tree_util.tree_map(lambda v: v + 0.1, MLP().init(jax.random.key(0), FEATURES))


def linen_mlp():
    return MLP().bind(linen_variables())


image_inputs = (IMAGE,)
feature_inputs = (FEATURES,)
