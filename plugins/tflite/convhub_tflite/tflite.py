"""Writing .tflite files from SavedModels and running them with the LiteRT interpreter."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from convhub.errors import InputError, UsageError
from convhub.types import Artifact, TensorSpec, input_facts
from convhub_tensorflow import frameworks

FLATBUFFER_ID = b"TFL3"  # bytes 4..8 of every TFLite flatbuffer


def _is_flatbuffer(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(8)[4:8] == FLATBUFFER_ID


def detect(thing: Any) -> bool:
    return isinstance(thing, Path) and thing.is_file() and (thing.suffix.lower() == ".tflite" or _is_flatbuffer(thing))


def read(thing: Any, options: Mapping[str, Any]) -> Artifact:
    if not (isinstance(thing, Path) and thing.is_file() and _is_flatbuffer(thing)):
        raise InputError(f"{thing} is not a TFLite flatbuffer")
    session = Session(Artifact("tflite", path=thing), requested=options.get("signature"))
    flatbuffer = thing.read_bytes()
    return Artifact(
        "tflite",
        path=thing,
        facts={
            **input_facts(session.inputs),
            "signature": session.signature,
            "signatures": list(session.signatures),
            "precision": precision_of(flatbuffer),
        },
    )


def precision_of(flatbuffer: bytes) -> str:
    """What a .tflite file computes in, read from its quantized tensors (int8/uint8 with a scale):
    quantized activations mean full integer quantization, quantized weights with float activations
    dynamic-range, float16 weights float16. An int8/uint8 tensor without a scale is plain integer
    data (a uint8 image input cast to float), which says nothing about the precision."""
    from ai_edge_litert import schema_py_generated as schema  # no TensorFlow import needed

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    buffers = model.buffers or []
    types = schema.TensorType
    constant, computed = set(), set()
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            data = buffers[tensor.buffer].data if tensor.buffer < len(buffers) else None
            is_constant = data is not None and len(data) > 0
            if tensor.type in (types.INT8, types.UINT8) and not _has_scale(tensor):
                continue
            (constant if is_constant else computed).add(tensor.type)
    if types.INT8 in computed or types.UINT8 in computed:
        return "int8"
    if types.INT8 in constant or types.UINT8 in constant:
        return "dynamic-range"
    if types.FLOAT16 in constant:
        return "float16"
    return "float32"


def _has_scale(tensor) -> bool:
    scales = tensor.quantization.scale if tensor.quantization is not None else None
    return scales is not None and any(s != 0 for s in scales)


QUANTIZE_MODES = ("float16", "dynamic", "int8")
PRECISION = {None: "float32", "float16": "float16", "dynamic": "dynamic-range", "int8": "int8"}
REPRESENTATIVE_SAMPLES = 64


def check_options(options: Mapping[str, Any]) -> None:
    mode = options.get("quantize")
    if mode not in (None, *QUANTIZE_MODES):
        raise UsageError(f"unknown TFLite quantization {mode!r} (choose from {', '.join(QUANTIZE_MODES)})")
    if options.get("int8_io") and mode != "int8":
        raise UsageError("int8 inputs and outputs need full integer quantization (--quantize int8)")
    if options.get("representative_data") and mode != "int8":
        raise UsageError("a representative dataset is only used by full integer quantization (--quantize int8)")


def representative_samples(options: Mapping[str, Any], specs: list[TensorSpec]) -> tuple[list[dict], str]:
    """Calibration samples for int8: the user's .npz (first axis = samples), or generated from the
    input spec (uniform in [-1, 1), which only suits inputs of that range; the report says so).

    Each sample is fed with the batch the model takes (its fixed leading dim, else 1), so only
    the other dims are checked: an .npz of (N, 12, 12, 2) calibrates a model taking (1, 12, 12, 2).
    """
    from convhub import parity

    path = options.get("representative_data")
    if path:
        data = parity.load_inputs(path, [_samples_spec(s) for s in specs])
        batches = {s.name: (s.shape[0] or 1) if s.shape else 1 for s in specs}
        count = min(len(data[name]) // batch for name, batch in batches.items())
        if count == 0:
            raise InputError(f"{path} holds no calibration sample (the first axis counts them)")
        samples = [
            {name: data[name][i * batch : (i + 1) * batch] for name, batch in batches.items()} for i in range(count)
        ]
        return samples, f"{count} samples from {path}"
    seed = int(options.get("seed", 0))
    samples = [parity.make_inputs(specs, seed + i, batch=1) for i in range(REPRESENTATIVE_SAMPLES)]
    return samples, (
        f"generated: {REPRESENTATIVE_SAMPLES} samples from the input spec (uniform in [-1, 1), seed {seed});"
        " pass real data with --representative-data for a calibration that fits your inputs"
    )


def _samples_spec(spec: TensorSpec) -> TensorSpec:
    """The spec of an .npz array of samples: any count along the first axis."""
    return TensorSpec(spec.name, (None, *spec.shape[1:]), spec.dtype) if spec.shape else spec


def flex_ops(flatbuffer: bytes) -> list[str]:
    """The TF ops a .tflite runs through the Flex delegate (select TF ops)."""
    from ai_edge_litert import schema_py_generated as schema  # no TensorFlow import needed

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    codes = (c.customCode.decode() for c in model.operatorCodes or [] if c.customCode)
    return sorted({c[len("Flex"):] for c in codes if c.startswith("Flex")})


def from_saved_model(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict:
    check_options(options)
    tf = frameworks.tensorflow()

    mode = options.get("quantize")
    signature = artifact.facts.get("signature", "serving_default")
    # Every signature the SavedModel serves survives into the .tflite, the checked one first;
    # calibration (int8) feeds one signature, so int8 converts that one only.
    keys = [signature]
    if mode != "int8":
        keys += [s for s in artifact.facts.get("signatures", []) if s != signature]
    converter = tf.lite.TFLiteConverter.from_saved_model(str(artifact.path), signature_keys=keys)
    facts: dict[str, Any] = {"precision": PRECISION[mode], "signature": signature, "signatures": keys}
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        specs = list(artifact.facts.get("inputs") or [])
        if not specs:
            raise UsageError("int8 quantization needs the model's input spec, which the source did not give")
        samples, facts["representative_dataset"] = representative_samples(options, specs)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if options.get("int8_io"):
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
            facts["int8_io"] = True
    if options.get("select_tf_ops"):
        converter.target_spec.supported_ops = [
            *converter.target_spec.supported_ops, tf.lite.OpsSet.SELECT_TF_OPS,
        ]
    flatbuffer = converter.convert()
    if options.get("select_tf_ops"):
        facts["select_tf_ops"] = flex_ops(flatbuffer)  # reported only when asked for: [] = none needed
    destination.write_bytes(flatbuffer)
    return facts


def _dtype_name(dtype) -> str:
    return dtype.__name__ if isinstance(dtype, type) else str(dtype)


class Session:
    """Runs a .tflite signature with ai_edge_litert's Interpreter, resizing dynamic dims as needed.

    A model with int8 inputs/outputs is fed and read in float: inputs are quantized and outputs
    dequantized with the model's own scales, so it compares with the float source like any other.
    """

    def __init__(self, artifact: Artifact, requested: str | None = None):
        """requested: a signature the user named, which must exist. Otherwise the artifact's
        "signature" fact is run when the file has it, else the first: a fact inherited from an
        earlier hop (a SavedModel's "serving_default") need not name a signature of this file."""
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(artifact.path))
        signatures = self.signatures = self._interpreter.get_signature_list()
        if requested and requested not in signatures:
            available = ", ".join(sorted(signatures)) or "none"
            raise InputError(f"{artifact.path} has no signature {requested!r} (available: {available})")
        wanted = requested or artifact.facts.get("signature")
        self.signature = wanted if wanted in signatures else next(iter(signatures), None)
        if self.signature is None:
            raise InputError(f"{artifact.path} has no signature to run")
        self._runner = self._interpreter.get_signature_runner(self.signature)
        self._in = self._runner.get_input_details()
        self._out = self._runner.get_output_details()
        self.inputs = [
            TensorSpec(
                name,
                tuple(None if d < 0 else int(d) for d in detail["shape_signature"]),
                "float32" if _quantized(detail) else _dtype_name(detail["dtype"]),
            )
            for name, detail in self._in.items()
        ]
        self.outputs = list(self._out)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        args = {}
        for name, value in feeds.items():
            detail = self._in[name]
            if _quantized(detail):
                scale, zero = detail["quantization"]
                info = np.iinfo(detail["dtype"])
                value = np.clip(np.round(value / scale + zero), info.min, info.max).astype(detail["dtype"])
            args[name] = value
        result = self._runner(**args)
        out = {}
        for name in self.outputs:
            value, detail = result[name], self._out[name]
            if _quantized(detail):
                scale, zero = detail["quantization"]
                value = (value.astype(np.float32) - zero) * scale
            out[name] = value
        return out


def _quantized(detail) -> bool:
    import numpy as np

    return np.issubdtype(detail["dtype"], np.integer) and detail["quantization"][0] != 0
