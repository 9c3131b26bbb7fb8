"""convhub's TFLite plugin: SavedModel → .tflite with TFLiteConverter, run by the LiteRT interpreter.

The runner uses `ai-edge-litert`, not TensorFlow, so the parity check exercises the runtime a
.tflite file actually ships with. Frameworks are imported inside functions only.
"""

from convhub import hookimpl
from convhub.types import Conversion, Format, Runner

from convhub_tflite import tflite


@hookimpl
def convhub_formats():
    return [
        Format(
            "tflite",
            "TensorFlow Lite / LiteRT flatbuffer (.tflite)",
            read=tflite.read,
            detect=tflite.detect,
            suffix=".tflite",
            requires=("ai_edge_litert",),
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
            options=("quantize", "int8_io", "representative_data", "select_tf_ops"),
            description="tf.lite.TFLiteConverter.from_saved_model",
        )
    ]


@hookimpl
def convhub_runners():
    return [Runner("tflite", load=tflite.Session, requires=("ai_edge_litert",), name="litert")]
