"""convhub's TF Serving plugin: SavedModel → a TensorFlow Serving model base path.

`convhub convert model.keras --to tfserving -o serving/` writes serving/model/1/ (the next
version on every run, never touching one that exists): the SavedModel, and in assets.extra/ the
warmup requests TF Serving replays at load (built from the parity inputs), a models.config entry,
a REST request and its expected response, and convhub's provenance record. The runner replays
the warmup as the server does and checks the outputs against the source. Like every convhub
plugin this module imports no framework.
"""

from convhub import hookimpl
from convhub.types import Conversion, Format, Option, Runner
from convhub_tensorflow import describe
from convhub_tensorflow.frameworks import TF_ENV

from convhub_tfserving import bundle

NEEDS = ("tensorflow", "tensorflow_serving")


@hookimpl
def convhub_formats():
    return [
        Format(
            "tfserving",
            "TensorFlow Serving model base path: NAME/VERSION/ SavedModels with warmup requests",
            aliases=("tf-serving", "tensorflow-serving", "serving"),
            read=bundle.read,
            detect=bundle.detect,
            directory=True,
            requires=NEEDS,
            env=TF_ENV,
            embed=describe.embed,  # assets.extra/convhub.json, as for any SavedModel
            examples=bundle.write_examples,
            inspect=bundle.inspect,
            versions=bundle.versions,
        )
    ]


@hookimpl
def convhub_conversions():
    return [
        Conversion(
            "savedmodel",
            "tfserving",
            convert=bundle.from_saved_model,
            requires=NEEDS,
            cost=0.5,
            env=TF_ENV,
            options=("model_name", "version"),
            description="a new version folder with warmup requests (tensorflow-serving-api PredictionLog),"
                        " models.config and a REST request/response",
        )
    ]


@hookimpl
def convhub_runners():
    return [Runner("tfserving", load=bundle.Session, requires=NEEDS, name="tensorflow (warmup replay)", env=TF_ENV)]


@hookimpl
def convhub_options():
    return [
        Option("model_name", f"TF Serving: the model's name and folder in the output (default {bundle.DEFAULT_NAME},"
               " what the tensorflow/serving image serves)"),
        Option("version", "TF Serving: the version to write, which must not exist (default: the next one)",
               type="int", minimum=1),
    ]
