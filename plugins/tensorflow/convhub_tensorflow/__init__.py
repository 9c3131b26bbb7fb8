"""convhub's TensorFlow plugin: Keras models and SavedModels as formats, Keras → SavedModel, runners.

Like every convhub plugin this module imports no framework: TensorFlow and Keras are imported
inside the functions that need them, when a conversion or a check actually runs.
"""

from convhub import hookimpl
from convhub.types import Conversion, Format, Option, Runner

from convhub_tensorflow import describe, keras_model, saved_model
from convhub_tensorflow.frameworks import TF_ENV


@hookimpl
def convhub_formats():
    return [
        Format(
            "keras",
            "Keras 3 model: a .keras or legacy .h5 file, or an in-memory keras.Model",
            aliases=("h5",),
            read=keras_model.read,
            detect=keras_model.detect,
            env=TF_ENV,
            options=("safe_mode",),
            suffix=".keras",
            requires=("keras", "tensorflow"),
            inspect=describe.inspect_keras,
        ),
        Format(
            "savedmodel",
            "TensorFlow SavedModel directory",
            aliases=("saved_model", "saved-model"),
            read=saved_model.read,
            detect=saved_model.detect,
            env=TF_ENV,
            options=("signature",),
            directory=True,
            requires=("tensorflow",),
            embed=describe.embed,  # assets.extra/convhub.json
            inspect=describe.inspect_saved_model,
        ),
    ]


@hookimpl
def convhub_conversions():
    return [
        Conversion(
            "keras",
            "savedmodel",
            convert=keras_model.export_saved_model,
            requires=("keras", "tensorflow"),
            cost=2.0,
            env=TF_ENV,
            description="keras.Model.export(format='tf_saved_model'), outputs named after their layers",
            # Grouped convolutions exported as depthwise / per-group ones (no XLA call left).
            notes=keras_model.export_notes,
        ),
    ]


@hookimpl
def convhub_runners():
    return [
        Runner("keras", load=keras_model.Session, requires=("keras", "tensorflow"), name="keras", env=TF_ENV),
        Runner("savedmodel", load=saved_model.Session, requires=("tensorflow",), name="tensorflow", env=TF_ENV),
    ]


@hookimpl
def convhub_options():
    return [
        Option("signature", "the signature to convert or run (default serving_default)"),
        Option("safe_mode", "allow Keras files with Python code (Lambda layers); only for files you trust",
               type="bool", flag="--unsafe", flag_value=False),
    ]
