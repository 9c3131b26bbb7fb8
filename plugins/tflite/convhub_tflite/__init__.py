"""convhub's TFLite plugin: SavedModel → .tflite with TFLiteConverter, run by the LiteRT interpreter.

The runner uses `ai-edge-litert`, not TensorFlow, so the parity check exercises the runtime a
.tflite file actually ships with; only a .tflite with Select TF ops (Flex ops), which LiteRT's
interpreter cannot run by itself, is run by TensorFlow's tf.lite.Interpreter, which has the Flex
delegate. Frameworks are imported inside functions only.

The runner runs in this environment when it has ai-edge-litert, else in the `litert` toolchain
(a virtual environment of the lock shipped here, made on first use): a light install beside
today's JAX checks its .tflite files there.
"""

from pathlib import Path

from convhub import hookimpl
from convhub.types import CALIBRATION, Conversion, Format, Option, Runner, Toolchain
from convhub_tensorflow.frameworks import TF_ENV

from convhub_tflite import describe, drift, tflite

LITERT = Toolchain.from_files("litert", Path(__file__).parent / "toolchains" / "litert.in", python=">=3.10",
                              description="the LiteRT interpreter (ai-edge-litert), which runs .tflite files")


@hookimpl
def convhub_formats():
    return [
        Format(
            "tflite",
            "TensorFlow Lite / LiteRT flatbuffer (.tflite)",
            aliases=("litert",),
            read=tflite.read,
            detect=tflite.detect,
            options=("signature",),
            suffix=".tflite",
            requires=("ai_edge_litert",),
            embed=describe.embed,  # an entry of the flatbuffer's metadata list
            inspect=describe.inspect,
            modes={
                "float32": {},
                "float16": {"quantize": "float16"},
                "dynamic": {"quantize": "dynamic"},
                "int8": {"quantize": "int8"},  # calibrated on generated inputs
                "int8-calibrated": {"quantize": "int8", "representative_data": CALIBRATION},
                "int16x8": {"quantize": "int16x8"},  # int16 activations, int8 weights; generated calibration
                "int16x8-calibrated": {"quantize": "int16x8", "representative_data": CALIBRATION},
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
            options=("quantize", "int8_io", "representative_data", "int8_ranges", "select_tf_ops",
                     "select_tf_ops_fallback"),
            lossy_options=("quantize",),
            data_options=("representative_data",),
            check_options=tflite.check_options,
            explain_drift=drift.explain,
            description="tf.lite.TFLiteConverter.from_saved_model",
            notes=notes,
        )
    ]


def notes(facts) -> list[str]:
    """What savedmodel → tflite does differently for this model: recurrent layers (the
    "recurrent_layers" fact a Keras source gives) with a dynamic batch need Select TF ops, which
    the hop falls back to. Not judged from the source's batch: keras.Model.export leaves the
    batch dynamic even for keras.Input(batch_size=1) (measured: that LSTM falls back too).
    And, said before anything converts, what --quantize int16x8 will meet for such a model."""
    from convhub.cache import facts_from_json  # the input specs as TensorSpecs, also when they came as JSON

    layers = facts.get("recurrent_layers")
    said = []
    if layers:
        names = ", ".join(dict.fromkeys(map(str, layers))) if isinstance(layers, (list, tuple, set)) else str(layers)
        said.append(f"recurrent layers ({names}): builtin ops first; if TensorListReserve needs a static shape (a"
                    " dynamic batch), falls back to Select TF ops (Flex delegate, which the app must then link) unless"
                    " --no-select-tf-ops-fallback; builtin ops only: a fixed batch size, or unroll=True on the layer")
    integer = [s.name for s in facts_from_json(facts).get("inputs") or [] if str(s.dtype).startswith("int")]
    if layers or integer:
        why = " and ".join(filter(None, [f"integer inputs ({', '.join(integer)})" if integer else "",
                                         "recurrent layers" if layers else ""]))
        said.append(f"--quantize int16x8: TFLiteConverter's int16x8 calibration records no range for {why}"
                    " (tensorflow/tensorflow#60799), so that conversion is refused with that reason; int8, dynamic"
                    " and float16 do not meet it")
    return said



@hookimpl
def convhub_runners():
    return [Runner("tflite", load=tflite.Session, requires=("ai_edge_litert",), name="litert", toolchain=LITERT)]


@hookimpl
def convhub_options():
    return [
        Option("quantize", "TFLite quantization (int16x8: int16 activations, int8 weights)",
               choices=("float16", "dynamic", "int8", "int16x8")),
        Option("representative_data", "calibration inputs (.npz) for --quantize int8 or int16x8 (default:"
               " generated from the input spec)", type="path"),
        Option("int8_io", "with --quantize int8: int8 inputs and outputs too", type="bool"),
        Option("int8_ranges", "with --quantize int8: activation ranges of least squared error on the calibration"
               " samples (mse, the default) or the converter's own min/max", choices=("mse", "minmax")),
        Option("select_tf_ops", "TFLite: always allow TensorFlow ops (Flex delegate); by default they are used"
               " only when builtin ops fail", type="bool"),  # False (--option select_tf_ops=false): never
        Option("select_tf_ops_fallback", "TFLite: when builtin ops fail, fail rather than convert again with"
               " Select TF ops", type="bool", flag="--no-select-tf-ops-fallback", flag_value=False),
    ]
