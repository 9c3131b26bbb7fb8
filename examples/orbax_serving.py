"""An Orbax JaxModule served with two ServingConfigs: two signatures in one model.

    convhub convert jax→tflite examples/orbax_serving.py:serving -o served.tflite

- "serving_default" takes uint8 pixels (0..255); its tf_preprocessor scales them to floats in
  [0, 1] and its tf_postprocessor turns the logits into named outputs. Both run inside the
  converted model, and inside the parity reference.
- "unprocessed" takes the float features directly and returns the raw logits.
"""


def _params(seed: int = 1):
    import jax

    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return {
        "hidden": {"w": jax.random.normal(k1, (6, 12)) / 6**0.5, "b": jax.numpy.full((12,), 0.05)},
        "out": {"w": jax.random.normal(k2, (12, 4)) / 12**0.5, "b": jax.numpy.zeros((4,))},
    }


def _apply(params, x):
    import jax.numpy as jnp

    h = jnp.maximum(x @ params["hidden"]["w"] + params["hidden"]["b"], 0.0)
    return h @ params["out"]["w"] + params["out"]["b"]


def serving():
    """The JaxModule (dynamic batch) with its two serving configs, as a convhub JAX source."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from orbax.export import JaxModule, ServingConfig

    from convhub_jax import OrbaxExport

    module = JaxModule(_params(), _apply, input_polymorphic_shape="(b, 6)")

    def scale_pixels(pixels):
        return tf.cast(pixels, tf.float32) / 255.0

    def name_outputs(logits):
        return {"probabilities": tf.nn.softmax(logits), "label": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    pixels = ServingConfig(
        "serving_default",
        input_signature=[tf.TensorSpec((None, 6), tf.uint8, name="pixels")],
        tf_preprocessor=scale_pixels,
        tf_postprocessor=name_outputs,
    )
    # TFLiteConverter orders signatures by name and tf2onnx reads only the first one, so this
    # name sorts after "serving_default" to keep the checked signature convertible to ONNX.
    unprocessed = ServingConfig(
        "unprocessed", input_signature=[tf.TensorSpec((None, 6), tf.float32, name="features")]
    )
    return OrbaxExport(module, [pixels, unprocessed])
