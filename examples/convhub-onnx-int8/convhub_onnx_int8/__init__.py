"""convhub-onnx-int8: ONNX → int8 ONNX (dynamic quantization) with onnxruntime.quantization.

Weights become int8; activations are quantized on the fly at run time. The result is its own
format, `onnx-int8`, so routes can ask for it, and it brings its own runner; the cross-checker
judges it with the dynamic-range tolerance because the conversion reports that precision.
"""

from __future__ import annotations

from pathlib import Path

from convhub import hookimpl
from convhub.types import Artifact, Conversion, Format, Runner


def quantize(artifact: Artifact, destination: Path, options) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    per_channel = str(options.get("onnx_int8_per_channel", "false")).lower() in ("1", "true", "yes")
    quantize_dynamic(str(artifact.path), str(destination), weight_type=QuantType.QInt8, per_channel=per_channel)
    return {"precision": "dynamic-range", "per_channel": per_channel}


class Session:
    """onnxruntime on the CPU; quantized ops (DynamicQuantizeLinear, MatMulInteger...) are standard ONNX."""

    def __init__(self, artifact: Artifact):
        from convhub_onnx.onnx_model import Session as OnnxSession

        self._session = OnnxSession(Artifact("onnx", artifact.path, facts=artifact.facts))
        self.inputs, self.outputs = self._session.inputs, self._session.outputs

    def run(self, feeds):
        return self._session.run(feeds)


@hookimpl
def convhub_formats():
    return [Format("onnx-int8", "ONNX with int8 weights (dynamic quantization)", suffix=".int8.onnx")]


@hookimpl
def convhub_conversions():
    return [Conversion("onnx", "onnx-int8", convert=quantize, requires=("onnxruntime",), cost=0.5, lossy=True,
                       options=("onnx_int8_per_channel",),
                       description="onnxruntime.quantization.quantize_dynamic (int8 weights)")]


@hookimpl
def convhub_runners():
    return [Runner("onnx-int8", load=Session, requires=("onnxruntime",), name="onnxruntime-int8")]
