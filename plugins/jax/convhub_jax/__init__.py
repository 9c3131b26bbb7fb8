"""convhub's JAX plugin: JAX functions, Flax modules and Orbax exports as sources.

    convhub.convert(nnx_model, to=["tflite", "onnx", "tfjs"], output="out", example_inputs=(x,))
    convhub.convert(JaxFunction(fn, params, inputs={"x": ((None, 4), "float32")}), to="tflite")

Two ways out of JAX, chosen by what is installed and what the source is:
- today's JAX (a function, a jax.jit-ed one, a bound linen module, an NNX module; a JaxFunction
  where Orbax is not installed) is exported with `jax.export` in the caller's process, and the
  export leaves it as files: StableHLO → litert-converter → .tflite (in its own toolchain, no
  TensorFlow), and jax2onnx → .onnx → onnx2tf → SavedModel → TF.js (onnx2tf in its toolchain);
- with Orbax and TensorFlow installed (the development pins: JAX 0.5, TF 2.19), JaxFunction and
  Orbax sources go through Orbax (`ExportManager.save`, jax2tf native serialization), so the
  SavedModel holds XlaCallModule ops; the router plans around converters that refuse them.
The parity reference is the JAX function itself. Like every convhub plugin this module imports no
framework: JAX, Orbax and TensorFlow load only when a source is read, converted or run.
"""

from pathlib import Path

from convhub import hookimpl
from convhub.types import Conversion, Format, Option, Runner, Toolchain
from convhub_tensorflow.frameworks import TF_ENV

from convhub_jax import export, litert, modern, onnx2tf
from convhub_jax.sources import JaxFunction, OrbaxExport

__all__ = ["JaxFunction", "OrbaxExport"]

# Top-level names only: finding "orbax.export" would import the orbax package to look inside it.
NEEDS = ("jax", "orbax", "tensorflow")
LOCKS = Path(__file__).parent / "toolchains"
LITERT_CONVERTER = Toolchain.from_files("litert-converter", LOCKS / "litert-converter.in", python=">=3.10",
                                        description="StableHLO → TFLite, no TensorFlow or JAX")
ONNX2TF = Toolchain.from_files("onnx2tf", LOCKS / "onnx2tf.in", python=">=3.12,<3.13",
                               description="ONNX → SavedModel with onnx2tf on TensorFlow 2.21")


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
            options=("signature", "example_inputs", "dynamic_batch"),
            requires=("jax",),
        ),
        Format(
            "stablehlo",
            "a jax.export StableHLO module: a directory with module.mlirbc and signature.json",
            read=modern.read_stablehlo,
            detect=modern.detect_stablehlo,
            directory=True,
        ),
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
            refuse=export.refuse_modern,
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
        Conversion(
            "jax",
            "stablehlo",
            convert=modern.to_stablehlo,
            requires=("jax",),
            cost=0.5,
            refuse=modern.refuse_legacy,
            description="jax.export in the caller's process: the StableHLO portable artifact and its signature",
        ),
        Conversion(
            "stablehlo",
            "tflite",
            convert=litert.from_stablehlo,
            requires=("litert_converter",),
            toolchain=LITERT_CONVERTER,
            cost=1.0,
            description="litert-converter (its StableHLO → TFLite passes; no TensorFlow)",
        ),
        Conversion(
            "jax",
            "onnx",
            convert=modern.to_onnx,
            requires=("jax2onnx",),
            cost=2.0,
            refuse=modern.refuse_legacy,
            options=("opset",),
            produces={"onnx_from": "jax2onnx"},
            description=f"jax2onnx in the caller's process (opset {modern.DEFAULT_OPSET}, at least {modern.MIN_OPSET})",
        ),
        Conversion(
            "onnx",
            "savedmodel",
            convert=onnx2tf.to_saved_model,
            requires=("onnx2tf",),
            toolchain=ONNX2TF,
            cost=8.0,
            refuse=onnx2tf.refuse,
            notes=onnx2tf.notes,
            description="onnx2tf on TensorFlow 2.21 (its own toolchain), channels-last inputs kept as they are",
        ),
    ]


@hookimpl
def convhub_runners():
    return [Runner("jax", load=export.Session, requires=("jax",), name="jax", env=TF_ENV)]


@hookimpl
def convhub_options():
    return [Option("dynamic_batch", "export a JAX source with a dynamic leading (batch) dim", type="bool")]
