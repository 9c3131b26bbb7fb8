"""A small Flax linen CNN with batch normalization, exported with all its variables.

    convhub convert jax→tflite examples/flax_module.py:classifier -o flax_cnn.tflite

`JaxFunction.from_flax` keeps every variable collection (params and batch_stats) and runs the
module in inference mode (`train=False`: batch norm uses its running statistics).
"""


def _module_class():
    import flax.linen as nn

    class SmallCNN(nn.Module):
        classes: int = 5

        @nn.compact
        def __call__(self, image, train: bool = False):
            x = nn.Conv(8, (3, 3))(image)
            x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.relu(x)
            # A strided convolution rather than nn.avg_pool: pooling lowers to StableHLO
            # reduce_window, which tf2onnx cannot take from a .tflite (see docs/plugins/jax.md).
            x = nn.Conv(8, (3, 3), strides=(2, 2))(x)
            x = x.reshape((x.shape[0], -1))
            x = nn.gelu(nn.Dense(16)(x))
            return {"logits": nn.Dense(self.classes)(x)}

    return SmallCNN


def classifier():
    """The CNN as a convhub JAX source: input "image" (batch, 8, 8, 1), output "logits" (batch, 5)."""
    import jax
    import jax.numpy as jnp

    from convhub_jax import JaxFunction

    module = _module_class()()
    variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
    # Non-trivial running statistics, so the test would notice if batch norm were dropped.
    stats = jax.tree_util.tree_map(lambda v: v + 0.3, variables["batch_stats"])
    variables = {**variables, "batch_stats": stats}
    return JaxFunction.from_flax(module, variables, inputs={"image": ((None, 8, 8, 1), "float32")}, train=False)
