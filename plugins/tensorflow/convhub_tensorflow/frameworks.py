"""Importing TensorFlow and Keras quietly, for every plugin that needs them.

TensorFlow's C++ start-up logging is noise to convhub's users. The plugins that convert through
TensorFlow (tflite, onnx, tfjs, jax) depend on this one and import TensorFlow through here, inside
the functions that need it: never at module import time.
"""

import os


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
