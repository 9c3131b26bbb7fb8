"""A tiny Keras image classifier: convolution, non-linearity, pooling and a dense head.

    convhub convert keras→tflite examples/keras_cnn.py:model -o cnn.tflite
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def model():
    """A functional Keras model with a dynamic batch dim, seeded so every build is the same."""
    import keras

    keras.utils.set_random_seed(7)
    image = keras.Input(shape=(16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu")(image)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, padding="same")(x)
    x = keras.layers.Activation("tanh")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(image, keras.layers.Softmax(name="probs")(logits), name="keras_cnn")


def keras_file(directory):
    """The model saved as a .keras file in `directory`; returns its path."""
    path = os.path.join(directory, "keras_cnn.keras")
    model().save(path)
    return path


def saved_model(directory):
    """The model exported as a SavedModel directory in `directory`; returns its path."""
    path = os.path.join(directory, "keras_cnn_savedmodel")
    model().export(path, format="tf_saved_model", verbose=False)
    return path
