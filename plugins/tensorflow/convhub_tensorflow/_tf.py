"""Importing TensorFlow quietly: its C++ start-up logging is noise to convhub's users."""

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
    return tf_dtype.as_numpy_dtype().dtype.name if hasattr(tf_dtype, "as_numpy_dtype") else str(tf_dtype)
