"""convhub's ONNX plugin: SavedModel → ONNX and TFLite → ONNX with tf2onnx, run by onnxruntime.

Every .onnx it writes is validated first (no op tf2onnx left unconverted, onnx.checker, an
onnxruntime session loads it), because tf2onnx can finish without error and still write a
graph no runtime accepts. Frameworks are imported inside functions only.
"""

from convhub import hookimpl
from convhub.types import Conversion, Format, Option, Runner
from convhub_tensorflow.frameworks import TF_ENV

from convhub_onnx import describe, onnx_model, tf2onnx_convert

TF2ONNX = ("tensorflow", "tf2onnx", "onnx", "onnxruntime")


@hookimpl
def convhub_formats():
    return [
        Format(
            "onnx",
            "ONNX model (.onnx protobuf)",
            read=onnx_model.read,
            detect=onnx_model.detect,
            suffix=".onnx",
            requires=("onnx", "onnxruntime"),
            modes={"float32": {}},
            embed=describe.embed,  # metadata_props
            inspect=describe.inspect,
        )
    ]


@hookimpl
def convhub_conversions():
    return [
        Conversion(
            "savedmodel",
            "onnx",
            convert=tf2onnx_convert.from_saved_model,
            requires=TF2ONNX,
            options=("opset",),
            env=TF_ENV,
            cost=3.0,
            refuse=tf2onnx_convert.refuse_saved_model,
            description="tf2onnx (SavedModel signature → ONNX), validated by onnx.checker and onnxruntime",
        ),
        # The last resort: dearer than savedmodel → onnx even with the savedmodel → tflite hop
        # added, and than a JAX model's plain-TF-ops export + savedmodel → onnx (7 < 7.5), because
        # tf2onnx's TFLite front end is the weaker one (on a Flax Transformer block it wrote a
        # Reshape that onnxruntime refuses, where the SavedModel route passes). Planned only when
        # nothing else can take the model (an Orbax export, a SavedModel holding XlaCallModule).
        Conversion(
            "tflite",
            "onnx",
            convert=tf2onnx_convert.from_tflite,
            requires=TF2ONNX,
            options=("opset",),
            env=TF_ENV,
            cost=3.5,
            description="tf2onnx --tflite, validated by onnx.checker and onnxruntime",
        ),
    ]


@hookimpl
def convhub_runners():
    return [Runner("onnx", load=onnx_model.Session, requires=("onnxruntime",), name="onnxruntime")]


@hookimpl
def convhub_options():
    opsets = tf2onnx_convert.OPSETS
    return [Option("opset", f"ONNX opset (default {tf2onnx_convert.DEFAULT_OPSET})", type="int",
                   minimum=opsets[0], maximum=opsets[-1])]
