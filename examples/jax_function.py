"""A small JAX MLP: a plain function, its params, and an input spec with a dynamic batch dim.

    convhub convert jax→tflite examples/jax_function.py:mlp -o mlp.tflite

The batch dim is None, so the export is shape-polymorphic: the .tflite takes any batch size.
"""


def init_params(seed: int = 0, sizes=(4, 16, 3)):
    """Dense layers as a list of {"w", "b"}, seeded so every build is the same."""
    import jax

    keys = jax.random.split(jax.random.PRNGKey(seed), len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (m, n)) / m**0.5, "b": jax.random.uniform(k, (n,), minval=-0.1, maxval=0.1)}
        for k, m, n in zip(keys, sizes[:-1], sizes[1:])
    ]


def forward(params, x):
    """tanh hidden layers, softmax output."""
    import jax
    import jax.numpy as jnp

    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return jax.nn.softmax(x @ params[-1]["w"] + params[-1]["b"], axis=-1)


def mlp():
    """The MLP as a convhub JAX source: inputs "x" of shape (batch, 4), output "output_0" of (batch, 3)."""
    from convhub_jax import JaxFunction

    return JaxFunction(forward, init_params(), inputs={"x": ((None, 4), "float32")})
