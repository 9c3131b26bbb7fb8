"""convhub's TF.js plugin: SavedModel → TF.js graph model with tensorflowjs, run in Node.js.

The runner uses the pure-JavaScript @tensorflow/tfjs package in a `node` process, not TensorFlow,
so the parity check exercises the runtime a TF.js model actually ships with. Frameworks are
imported inside functions only; the npm packages are installed on first use (see node.py).
"""

from convhub import hookimpl
from convhub.types import Conversion, Format, Runner

from convhub_tfjs import converter, graph_model


@hookimpl
def convhub_formats():
    return [
        Format(
            "tfjs",
            "TensorFlow.js graph model: a directory with model.json and weight shards",
            read=graph_model.read,
            detect=graph_model.detect,
            directory=True,
        )
    ]


@hookimpl
def convhub_conversions():
    return [
        Conversion(
            "savedmodel",
            "tfjs",
            convert=converter.from_saved_model,
            requires=("tensorflowjs", "tensorflow"),
            cost=3.0,
            refuse=converter.refuse,
            options=("tfjs_quantize", "tfjs_shard_bytes"),
            description="tensorflowjs.converters.convert_tf_saved_model (options: tfjs_quantize, tfjs_shard_bytes)",
        )
    ]


def load_session(artifact):
    # Imported here, so `python -m convhub_tfjs.node install` runs node.py only once.
    from convhub_tfjs import node

    return node.Session(artifact)


@hookimpl
def convhub_runners():
    # Node.js is not a Python module, so `requires` cannot say so: loading raises NodeMissing (a
    # RuntimeMissing) when `node` or `npm` is missing, and the check reports the model not checked.
    return [Runner("tfjs", load=load_session, name="tfjs-node")]
