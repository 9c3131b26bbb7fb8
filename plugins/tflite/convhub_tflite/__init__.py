"""convhub's TFLite plugin: SavedModel → .tflite with TFLiteConverter, run by the LiteRT interpreter.

The runner uses `ai-edge-litert`, not TensorFlow, so the parity check exercises the runtime a
.tflite file actually ships with. Frameworks are imported inside functions only.
"""

from convhub import hookimpl
from convhub.types import CALIBRATION, Conversion, Format, Option, Runner
from convhub_tensorflow.frameworks import TF_ENV

from convhub_tflite import tflite


@hookimpl
def convhub_formats():
    return [
        Format(
            "tflite",
            "TensorFlow Lite / LiteRT flatbuffer (.tflite)",
            read=tflite.read,
            detect=tflite.detect,
            options=("signature",),
            suffix=".tflite",
            requires=("ai_edge_litert",),
            modes={
                "float32": {},
                "float16": {"quantize": "float16"},
                "dynamic": {"quantize": "dynamic"},
                "int8": {"quantize": "int8"},  # calibrated on generated inputs
                "int8-calibrated": {"quantize": "int8", "representative_data": CALIBRATION},
            },
        )
    ]


@hookimpl
def convhub_conversions():
    return [
        Conversion(
            "savedmodel",
            "tflite",
            convert=tflite.from_saved_model,
            requires=("tensorflow",),
            cost=2.0,
            env=TF_ENV,
            options=("quantize", "int8_io", "representative_data", "select_tf_ops"),
            description="tf.lite.TFLiteConverter.from_saved_model",
        )
    ]


@hookimpl
def convhub_runners():
    return [Runner("tflite", load=tflite.Session, requires=("ai_edge_litert",), name="litert")]


@hookimpl
def convhub_options():
    return [
        Option("quantize", "TFLite quantization", choices=("float16", "dynamic", "int8")),
        Option("representative_data", "calibration inputs (.npz) for --quantize int8 (default: generated from"
               " the input spec)", type="path"),
        Option("int8_io", "with --quantize int8: int8 inputs and outputs too", type="bool"),
        Option("select_tf_ops", "TFLite: allow TensorFlow ops (Flex delegate)", type="bool"),
    ]
