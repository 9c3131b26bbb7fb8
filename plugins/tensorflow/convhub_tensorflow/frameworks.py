"""Importing TensorFlow and Keras quietly, for every plugin that needs them.

TensorFlow's C++ start-up logging is noise to convhub's users. The plugins that convert through
TensorFlow (tflite, onnx, tfjs, jax) depend on this one and import TensorFlow through here, inside
the functions that need it: never at module import time.
"""

import os

# The environment of every worker that runs TensorFlow for convhub. With oneDNN's graph
# rewrites on, Grappler fuses Conv+BiasAdd+HardSwish into a _FusedConv2D with a
# `_fusedhardswish` activation that the SavedModel then keeps and TF.js cannot run (measured on
# MobileNetV3Small); without them, the export holds the standard ops every converter takes.
# The same setting everywhere, so one warm worker serves every TensorFlow hop and runner.
TF_ENV = {"TF_ENABLE_ONEDNN_OPTS": "0"}


def tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    return tensorflow


def keras():
    tensorflow()  # Keras picks its backend from the environment; make sure it is TensorFlow
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return keras


def numpy_dtype(tf_dtype) -> str:
    """A tf.DType's NumPy name ('float32'); anything else as a string."""
    return tf_dtype.as_numpy_dtype().dtype.name if hasattr(tf_dtype, "as_numpy_dtype") else str(tf_dtype)
