"""convhub's JAX plugin: JAX functions, Flax modules and Orbax exports as sources.

    from convhub_jax import JaxFunction, OrbaxExport
    convhub.convert(JaxFunction(fn, params, inputs={"x": ((None, 4), "float32")}), to="tflite")

jax → savedmodel goes through Orbax (`ExportManager.save`, jax2tf native serialization), so the
SavedModel holds XlaCallModule ops; the router plans around converters that refuse them. The
parity reference is the JAX function itself. Like every convhub plugin this module imports no
framework: JAX, Orbax and TensorFlow load only when a source is read, converted or run.
"""

from convhub import hookimpl
from convhub.types import Conversion, Format, Runner
from convhub_tensorflow.frameworks import TF_ENV

from convhub_jax import export
from convhub_jax.sources import JaxFunction, OrbaxExport

__all__ = ["JaxFunction", "OrbaxExport"]

# Top-level names only: finding "orbax.export" would import the orbax package to look inside it.
NEEDS = ("jax", "orbax", "tensorflow")


@hookimpl
def convhub_formats():
    return [
        Format(
            "jax",
            "in-memory JAX: convhub_jax.JaxFunction (also from Flax), OrbaxExport, or an Orbax ExportManager",
            aliases=("flax", "orbax"),
            read=export.read,
            detect=export.detect,
            env=TF_ENV,
            options=("signature",),
            requires=NEEDS,
        )
    ]


@hookimpl
def convhub_conversions():
    return [
        Conversion(
            "jax",
            "savedmodel",
            convert=export.to_saved_model,
            requires=NEEDS,
            env=TF_ENV,
            cost=2.0,
            produces={"xla_call_module": True},
            description="orbax.export.ExportManager.save (jax2tf native serialization: StableHLO in XlaCallModule)",
        ),
        # The way to converters that cannot take XlaCallModule (tensorflowjs). Dearer, so the
        # native export stays the route wherever it works (TFLite, and ONNX through TFLite).
        Conversion(
            "jax",
            "savedmodel",
            convert=export.to_tf_ops_saved_model,
            requires=NEEDS,
            env=TF_ENV,
            cost=4.0,
            refuse=export.refuse_tf_ops,
            produces={"xla_call_module": False},
            name="jax->savedmodel-tf-ops",
            description="Orbax export with jax2tf native_serialization=False, enable_xla=False (plain TF ops)",
        ),
    ]


@hookimpl
def convhub_runners():
    return [Runner("jax", load=export.Session, requires=NEEDS, name="jax", env=TF_ENV)]
