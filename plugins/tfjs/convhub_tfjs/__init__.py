"""convhub's TF.js plugin: SavedModel → TF.js graph model with tensorflowjs, run in Node.js.

The runner uses the pure-JavaScript @tensorflow/tfjs package in a `node` process, not TensorFlow,
so the parity check exercises the runtime a TF.js model actually ships with. Frameworks are
imported inside functions only; the npm packages are installed on first use (see node.py).

The converter runs in this environment when it has the tensorflowjs set (TensorFlow 2.19,
tensorflow-decision-forests...), else in the `tensorflowjs` toolchain made from the lock shipped
here: that set needs numpy < 2.2, which cannot live beside today's JAX.
"""

import functools
from pathlib import Path

from convhub import hookimpl
from convhub.types import Conversion, Format, Option, Runner, Toolchain
from convhub_tensorflow.frameworks import TF_ENV

from convhub_tfjs import converter, describe, drift, graph_model

TENSORFLOWJS = Toolchain.from_files("tensorflowjs", Path(__file__).parent / "toolchains" / "tensorflowjs.in",
                                    python=">=3.10,<3.13",
                                    description="SavedModel → TF.js with tensorflowjs 4.22 on TensorFlow 2.19")


@hookimpl
def convhub_formats():
    return [
        Format(
            "tfjs",
            "TensorFlow.js graph model: a directory with model.json and weight shards",
            aliases=("tf.js", "tensorflowjs", "tensorflow.js"),
            read=graph_model.read,
            detect=graph_model.detect,
            directory=True,
            embed=describe.embed,  # model.json's userDefinedMetadata
            inspect=describe.inspect,
            modes={"float32": {}, "float16": {"tfjs_quantize": "float16"}, "uint8": {"tfjs_quantize": "uint8"}},
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
            toolchain=TENSORFLOWJS,
            cost=3.0,
            env=TF_ENV,
            refuse=converter.refuse,
            options=("tfjs_quantize", "tfjs_shard_bytes"),
            lossy_options=("tfjs_quantize",),
            notes=converter.notes,
            explain_drift=drift.explain,  # reads the weights' rounding from the files
            description="tensorflowjs.converters.convert_tf_saved_model (options: tfjs_quantize, tfjs_shard_bytes)",
        )
    ]


@functools.lru_cache(maxsize=1)
def runtime_versions() -> dict:
    """The npm package the runner runs (from the package.json it installs from) and Node.js's version."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    package = json.loads((Path(__file__).parent / "js" / "package.json").read_text(encoding="utf-8"))
    found = dict(package.get("dependencies", {}))
    node = shutil.which("node")
    if node:
        try:
            found["node"] = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return found


def load_session(artifact):
    # Imported here, so `python -m convhub_tfjs.node install` runs node.py only once.
    from convhub_tfjs import node

    return node.Session(artifact)


@hookimpl
def convhub_runners():
    # Node.js is not a Python module, so `requires` cannot say so: loading raises NodeMissing (a
    # RuntimeMissing) when `node` or `npm` is missing, and the check reports the model not checked.
    return [Runner("tfjs", load=load_session, name="tfjs-node", versions=runtime_versions)]


@hookimpl
def convhub_options():
    return [
        Option("tfjs_quantize", "TF.js weight quantization", choices=("float16", "uint8", "uint16")),
        Option("tfjs_shard_bytes", "TF.js weight shard size in bytes (default 4 MiB)", type="int", minimum=1,
               flag="--shard-size"),
    ]
