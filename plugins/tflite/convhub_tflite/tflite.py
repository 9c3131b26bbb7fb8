"""Writing .tflite files from SavedModels and running them with the LiteRT interpreter
(TensorFlow's own interpreter, which has the Flex delegate, for a .tflite with Select TF ops)."""

from __future__ import annotations

import contextlib
import functools
import re
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

from convhub.errors import ConversionError, InputError, RuntimeMissing, UsageError
from convhub.types import Artifact, TensorSpec, input_facts
from convhub_tensorflow import frameworks
from convhub_tflite import int8, int16x8, ranges

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
    facts = {
        **input_facts(session.inputs),
        "signature": session.signature,
        "signatures": list(session.signatures),
        "precision": precision_of(flatbuffer),
    }
    if session.flex_ops:
        facts["select_tf_ops"] = session.flex_ops
    return Artifact("tflite", path=thing, facts=facts)


def precision_of(flatbuffer: bytes) -> str:
    """What a .tflite file computes in, read from its quantized tensors (int8/uint8 with a scale):
    quantized activations mean full integer quantization, quantized weights with float activations
    dynamic-range, float16 weights float16; int16 activations with a scale int16x8. An int8/uint8
    tensor without a scale is plain integer data (a uint8 image input cast to float), which says
    nothing about the precision."""
    from ai_edge_litert import schema_py_generated as schema  # no TensorFlow import needed

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    buffers = model.buffers or []
    types = schema.TensorType
    constant, computed = set(), set()
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            data = buffers[tensor.buffer].data if tensor.buffer < len(buffers) else None
            is_constant = data is not None and len(data) > 0
            if tensor.type in (types.INT8, types.UINT8, types.INT16) and not _has_scale(tensor):
                continue
            (constant if is_constant else computed).add(tensor.type)
    if types.INT16 in computed:
        return "int16x8"
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


QUANTIZE_MODES = ("float16", "dynamic", "int8", "int16x8")
PRECISION = {None: "float32", "float16": "float16", "dynamic": "dynamic-range", "int8": "int8", "int16x8": "int16x8"}
CALIBRATED = ("int8", "int16x8")  # the modes that quantize activations, from calibration samples
# Generated calibration: TFLite's guide asks for ~100-500 samples ("a few hundred", tf.lite.RepresentativeDataset);
# 128, as many rows as a quantized check runs (parity.QUANTIZED_BATCH). 64 was below that guidance.
REPRESENTATIVE_SAMPLES = 128
# Generated calibration samples are seeded apart from the check's inputs (seed 0 by default,
# --seed N), which would otherwise start with the first sample: a check on its own calibration.
CALIBRATION_SEED = 1 << 32


def check_options(options: Mapping[str, Any]) -> None:
    mode = options.get("quantize")
    if mode not in (None, *QUANTIZE_MODES):
        raise UsageError(f"unknown TFLite quantization {mode!r} (choose from {', '.join(QUANTIZE_MODES)})")
    if options.get("int8_io") and mode != "int8":
        raise UsageError("int8 inputs and outputs need full integer quantization (--quantize int8)")
    if options.get("representative_data") and mode not in CALIBRATED:
        raise UsageError("a representative dataset is only used by full integer quantization"
                         " (--quantize int8 or int16x8)")
    if options.get(ranges.OPTION) is not None and mode != "int8":
        raise UsageError(f"{ranges.OPTION} chooses int8 activation ranges: it needs --quantize int8")


def representative_samples(options: Mapping[str, Any], specs: list[TensorSpec],
                           ranges: Mapping[str, Any] | None = None) -> tuple[list[dict], str]:
    """Calibration samples for int8: the user's .npz (first axis = samples), or generated from the
    input spec (parity.make_inputs' realistic rows, in the ranges the source gave; the report says so).

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
    # In the ranges the source gave (an Embedding's vocabulary, the pixel range a Rescaling layer
    # implies), as parity inputs are; realistic: smooth pictures, N(0, 1) for unknown floats.
    specs, sized = _sized_like(specs, options.get("check_inputs"))
    samples = [parity.make_inputs(specs, CALIBRATION_SEED + i, batch=1, ranges=ranges, realistic=True)
               for i in range(REPRESENTATIVE_SAMPLES)]
    spans = parity.realistic_kinds(specs, ranges)
    return samples, (
        f"generated: {REPRESENTATIVE_SAMPLES} random samples from the input spec ({spans or 'integer ids'};"
        f" seeds {CALIBRATION_SEED}+{sized}), not your data; pass real data with --representative-data for a calibration that fits your inputs"
    )


def _sized_like(specs: list[TensorSpec], check_inputs: str | None) -> tuple[list[TensorSpec], str]:
    """The specs with each dynamic dim but the batch given the size it has in the check's inputs
    (--inputs), and a note saying which. int8 ranges of a sum or an average over a sequence grow
    with its length: rows of the default 8 tokens calibrated a GPT-2 checked on 32-token rows to a
    quarter of its pooled sums (docs/parity.md). Only the shapes are read, never the values."""
    from convhub import parity

    dynamic = [s for s in specs if any(d is None or d < 0 for d in s.shape[1:])]
    if not check_inputs or not dynamic:
        return specs, ""
    try:
        arrays = parity.load_inputs(check_inputs, specs)
    except InputError:  # inputs keyed by names this format does not use: the default sizes stand
        return specs, ""
    sized = {s.name: (s.shape[0], *arrays[s.name].shape[1:]) for s in dynamic}
    note = ", ".join(f"{name} {'x'.join(map(str, shape[1:]))}" for name, shape in sized.items())
    return [TensorSpec(s.name, sized[s.name], s.dtype) if s.name in sized else s for s in specs], (
        f"; dynamic sizes as in --inputs: {note}")


def _samples_spec(spec: TensorSpec) -> TensorSpec:
    """The spec of an .npz array of samples: any count along the first axis."""
    return TensorSpec(spec.name, (None, *spec.shape[1:]), spec.dtype) if spec.shape else spec


def flex_ops(flatbuffer: bytes) -> list[str]:
    """The TF ops a .tflite runs through the Flex delegate (select TF ops). Reads the operator
    codes only, not the weights, so it is cheap on a large model too."""
    from ai_edge_litert import schema_py_generated as schema  # no TensorFlow import needed

    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    codes = (model.OperatorCodes(i).CustomCode() for i in range(model.OperatorCodesLength()))
    names = {c.decode() for c in codes if c}
    return sorted(n[len("Flex"):] for n in names if n.startswith("Flex"))


def float_ops(flatbuffer: bytes) -> list[str]:
    """The builtin ops a quantized .tflite runs on float activations (int16x8 keeps the ops with
    no 16x8 kernel float, between a DEQUANTIZE and a QUANTIZE): those with a computed float32
    input, other than the QUANTIZE that takes the model's float input."""
    return ops_reading(flatbuffer, "FLOAT32")


def ops_reading(flatbuffer: bytes, tensor_type: str) -> list[str]:
    """The builtin ops of a .tflite with a computed (not constant) input of `tensor_type`
    ("FLOAT32", "INT16"...), QUANTIZE and DEQUANTIZE left out."""
    from ai_edge_litert import schema_py_generated as schema

    wanted = getattr(schema.TensorType, tensor_type)
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    kinds, builtin = operator_kinds(model), set(builtin_names().values())
    found: set[str] = set()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            name = kinds[op.OpcodeIndex()]
            if name in ("QUANTIZE", "DEQUANTIZE", "CUSTOM") or name not in builtin:  # custom ops: Flex
                continue
            for i in op.InputsAsNumpy() if op.InputsLength() else []:
                tensor = graph.Tensors(i) if i >= 0 else None
                constant = tensor is not None and model.Buffers(tensor.Buffer()).DataLength() > 0
                if tensor is not None and tensor.Type() == wanted and not constant:
                    found.add(name)
                    break
    return sorted(found)


@functools.cache
def builtin_names() -> dict[int, str]:
    """{builtin operator code: its name (CONV_2D...)}, from the flatbuffer schema."""
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def operator_kinds(model: Any) -> list[str]:
    """The op of each operator code of a flatbuffer `schema.Model`: its builtin name, or a custom
    op's own code (FlexWhile: a TF op through the Flex delegate)."""
    names, kinds = builtin_names(), []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        custom = code.CustomCode()
        kinds.append(custom.decode() if custom else
                     names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM"))
    return kinds


# Select TF ops. `select_tf_ops` True: always; False: never; not given: builtin ops first, and
# when the converter says only TF ops would do (ERROR_NEEDS_FLEX_OPS, or tensor lists it cannot
# lower: Keras LSTM/GRU with a dynamic batch), again with Select TF ops, unless
# `select_tf_ops_fallback` is False (--no-select-tf-ops-fallback).
FLEX_RUNTIME = ("the app must link the Flex delegate (tensorflow-lite-select-tf-ops on Android),"
                " a runtime several MB larger")
RNN_ALTERNATIVES = ("a fixed batch size (the Keras model exported with a batch-1 input signature),"
                    " or unroll=True on the Keras layer")
FLEX_HINTS = ("ERROR_NEEDS_FLEX_OPS", "TF Select", "Select TF ops", "SELECT_TF_OPS", "nor a flex op")


def flex_kind(text: str) -> str | None:
    """What a ConverterError says Select TF ops would fix: "tensorlist" (tensor lists with a
    dynamic element shape: a Keras RNN with a dynamic batch), "flex" (ops with no builtin), None."""
    if "TensorList" in text and ("element_shape" in text or "tensor list" in text.lower()):
        return "tensorlist"
    return "flex" if any(h in text for h in FLEX_HINTS) else None


_DIAGNOSTIC = re.compile(r"(?:<unknown>|[^\s:]+):\d+(?::\d+)?: (error|note): ")
_NODE = re.compile(r'fused\["\w+:", "([^"@]+)@')


def converter_message(exc: BaseException) -> str:
    """A ConverterError in one line: its error diagnostics without the MLIR locations, the layer
    (the name scope of the first failing node, e.g. functional_1/lstm_1), and the converter's own
    suggestion (which Select TF ops to enable, or the ops that need them)."""
    text = str(exc)
    parts = _DIAGNOSTIC.split(text)
    if len(parts) < 3:  # not MLIR diagnostics: the first line that says something
        return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    messages: list[str] = []
    layer = None
    for kind, body in zip(parts[1::2], parts[2::2]):
        if kind != "error":
            continue
        node = _NODE.search(body)
        if node and layer is None and "/" in node.group(1):
            layer = node.group(1).rpartition("/")[0]
        body = re.sub(r"^loc\(.*\)\):\s*", "", body.replace("\\n", ";"))
        for i, raw in enumerate(body.splitlines()):
            line = " ".join(raw.split()).rstrip(":")
            if (not line or line == "Details" or (i and raw[:1].isspace()) or line.startswith(("failed while", "^"))
                    or (line.startswith("failed to legalize operation") and messages)):
                continue  # indented lines are source code or the op's signature; "failed to legalize" repeats
            if line not in messages:
                messages.append(line)
    if not messages:
        return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    if layer:
        messages[0] += f" (in {layer})"
    return "; ".join(messages)


def _converter(tf, artifact: Artifact, keys: list[str], options: Mapping[str, Any], facts: dict, select: bool):
    mode = options.get("quantize")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(artifact.path), signature_keys=keys)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode in CALIBRATED:
        specs = list(artifact.facts.get("inputs") or [])
        if not specs:
            raise UsageError(f"{mode} quantization needs the model's input spec, which the source did not give")
        samples, facts["representative_dataset"] = representative_samples(options, specs, artifact.facts.get("input_ranges"))
        # int16x8 is no way out where its converter refuses the model: integer inputs such as
        # token ids (measured: uint8 pixels convert), recurrent layers.
        refused_16x8 = bool(artifact.facts.get("recurrent_layers")) or any(
            str(s.dtype).startswith("int") for s in specs)
        facts["if_drifted"] = _if_drifted(mode, not options.get("representative_data"), not refused_16x8)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(samples)
        # int16x8: ops with no 16x8 kernel (HARD_SWISH, as of TF 2.19) stay float between a
        # quantize and a dequantize rather than failing the conversion, as TFLite's guide does it.
        converter.target_spec.supported_ops = (
            [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] if mode == "int8"
            else [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                  tf.lite.OpsSet.TFLITE_BUILTINS])
        if options.get("int8_io"):
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
            facts["int8_io"] = True
    if select:
        # Tensor-list lowering stays on (the converter's hint suggests turning it off): measured
        # on Keras LSTM/GRU/Bidirectional, the same ops go to Flex either way, and where lowering
        # works it keeps ops builtin.
        converter.target_spec.supported_ops = [
            *converter.target_spec.supported_ops, tf.lite.OpsSet.SELECT_TF_OPS,
        ]
    return converter


def _if_drifted(mode: str, generated: bool, int16x8: bool = True) -> str:
    """What to try when a model with quantized activations drifts: data like the user's, if the
    calibration was generated; for int8, int16 activations (unless its converter would refuse
    the model), which keep most of what int8 loses on networks whose activations int8 cannot
    hold (measured: EfficientNetB0, docs/parity.md); then the float modes."""
    why = (f"{mode} was calibrated on generated inputs, not on data like yours" if generated
           else f"{mode} activations may be too coarse for this model")
    tries = ["pass samples of your inputs with --representative-data"] if generated else []
    if mode == "int8" and int16x8:
        tries.append("use --quantize int16x8 (int16 activations)")
    tries.append("use --quantize dynamic or float16")
    return f"{why}: {', or '.join(tries)}"


# TFLiteConverter's 16x8 calibration records no range for integer inputs (token ids), for tensors
# inside while loops (Keras RNNs) and for some computed ones (LayerNorm's Sub), then refuses the
# model: upstream bugs, measured on the zoo with TF 2.19.
UNCALIBRATED_16X8 = "Max and min for dynamic tensors should be recorded during calibration"
UPSTREAM_16X8 = "tensorflow/tensorflow#60799, tensorflow/model-optimization#1090"


def _uncalibrated_16x8(text: str) -> str:
    tensor = re.search(r"Failed for tensor (\S+)", text)
    return (f"TFLiteConverter's int16x8 calibration recorded no range for tensor"
            f" {tensor.group(1) if tensor else '?'} (a converter bug with integer inputs, recurrent layers"
            f" and some computed tensors: {UPSTREAM_16X8}); use --quantize int8, dynamic or float16")


def _is_converter_error(exc: BaseException) -> bool:
    return type(exc).__name__ == "ConverterError"


def _fallback(tf, artifact: Artifact, keys: list[str], options: Mapping[str, Any], facts: dict,
              exc: BaseException) -> bytes:
    """After the builtin-ops conversion failed: Select TF ops when the converter says they would
    do and the user did not say no; else ConversionError with the converter's hint and the
    alternatives, in one line."""
    asked = options.get("select_tf_ops")
    kind, why = flex_kind(str(exc)), converter_message(exc)
    if asked or kind is None:
        raise ConversionError(f"TFLiteConverter{' with Select TF ops' if asked else ''}: {why}") from None
    rnn = kind == "tensorlist"
    alternatives = "--select-tf-ops (the Flex delegate)" + (f", {RNN_ALTERNATIVES}" if rnn else "")
    if asked is False or options.get("select_tf_ops_fallback") is False:
        off = "select_tf_ops=False" if asked is False else "--no-select-tf-ops-fallback"
        raise ConversionError(f"builtin ops failed: {why}; the Select TF ops fallback is off ({off});"
                              f" alternatives: {alternatives}") from None
    try:
        flatbuffer = _converter(tf, artifact, keys, options, facts, select=True).convert()
    except Exception as again:  # noqa: BLE001
        if not _is_converter_error(again):
            raise
        raise ConversionError(f"builtin ops failed: {why}; the Select TF ops fallback failed too:"
                              f" {converter_message(again)}" + (f"; alternatives: {RNN_ALTERNATIVES}" if rnn else "")
                              ) from None
    ops = flex_ops(flatbuffer)
    facts["select_tf_ops"] = ops
    facts["fallback"] = (
        f"builtin ops failed: {why.split('; ')[0]}; converted with Select TF ops instead (Flex ops:"
        f" {', '.join(ops) or 'none'}): {FLEX_RUNTIME}"
        + (f"; a recurrent layer with a dynamic batch keeps to builtin ops with {RNN_ALTERNATIVES}" if rnn else "")
    )
    return flatbuffer


def convert(tf, artifact: Artifact, keys: list[str], options: Mapping[str, Any], facts: dict) -> bytes:
    """Builtin ops first (or Select TF ops when asked for), then the Select TF ops fallback."""
    asked = options.get("select_tf_ops")  # True, False, or None: builtins first, then the fallback
    try:
        flatbuffer = _converter(tf, artifact, keys, options, facts, select=bool(asked)).convert()
    except Exception as exc:  # noqa: BLE001 - TensorFlow's ConverterError, told in one line
        if not _is_converter_error(exc):
            raise
        return _fallback(tf, artifact, keys, options, facts, exc)
    if asked:
        facts["select_tf_ops"] = flex_ops(flatbuffer)  # reported when asked for: [] = none needed
    return flatbuffer


def from_saved_model(artifact: Artifact, destination: Path, options: Mapping[str, Any]) -> dict:
    # check_options ran when the route was planned (Conversion.check_options), before TF loaded.
    tf = frameworks.tensorflow()

    mode = options.get("quantize")
    signature = artifact.facts.get("signature", "serving_default")
    # Every signature the SavedModel serves survives into the .tflite, the checked one first;
    # calibration (int8, int16x8) feeds one signature, so those convert that one only.
    keys = [signature]
    if mode not in CALIBRATED:
        keys += [s for s in artifact.facts.get("signatures", []) if s != signature]
    facts: dict[str, Any] = {"precision": PRECISION[mode], "signature": signature, "signatures": keys}
    try:
        with _int8_ranges(artifact, options, facts) as chosen:
            flatbuffer = convert(tf, artifact, keys, options, facts)
    except RuntimeError as exc:  # also from the Select TF ops fallback (a Keras RNN)
        if mode == "int16x8" and UNCALIBRATED_16X8 in str(exc):
            raise ConversionError(_uncalibrated_16x8(str(exc))) from None
        raise
    if mode == "int8" and int8.narrowing(flatbuffer):
        # Ranges the converter narrowed to a REDUCE_MAX's (a JAX softmax's attention scores) get
        # back what its own calibration measured (int8.py): the calibrated model the quantizer
        # read (ranges.py), or with the converter's own ranges, a calibrate-only run's.
        try:
            if chosen.get("calibrated") is None:
                calibrating = _converter(tf, artifact, keys, options, {}, select="select_tf_ops" in facts)
                calibrating._experimental_calibrate_only = True
                chosen["calibrated"] = calibrating.convert()
            flatbuffer, mended = int8.mend(flatbuffer, chosen["calibrated"])
        except Exception as exc:  # noqa: BLE001 - the converter's file stands, unmended, and says why
            mended = [f"int8 ranges a REDUCE_MAX narrowed were left as the converter wrote them (reading its"
                      f" calibrated ranges failed: {converter_message(exc)})"]
        if mended:
            facts["fallback"] = "; ".join(filter(None, [facts.get("fallback"), *mended]))
    if mode == "int16x8":
        # What the converter writes and LiteRT cannot run (int16 SQUARED_DIFFERENCE) goes float,
        # as the converter does for ops with no 16x8 kernel; an int16 SUM gets a range it fits.
        flatbuffer, mended = int16x8.mend(flatbuffer)
        if kept := float_ops(flatbuffer):
            facts["float_ops"] = kept
            mended.insert(0, f"ops with no int16x8 kernel run in float32 between (de)quantize ops: {', '.join(kept)}")
        if mended:
            facts["fallback"] = "; ".join(filter(None, [facts.get("fallback"), *mended]))
    destination.write_bytes(flatbuffer)
    return facts


@contextlib.contextmanager
def _int8_ranges(artifact: Artifact, options: Mapping[str, Any], facts: dict) -> Iterator[dict[str, Any]]:
    """For int8 (unless --int8-ranges minmax): activation ranges of least squared error on
    the calibration samples, chosen while the converter quantizes (ranges.py); says which in facts.
    Yields ranges.chosen_for's record ({} when the converter's own ranges are kept)."""
    if options.get("quantize") != "int8" or options.get(ranges.OPTION) == "minmax":
        yield {}
        return
    samples, _ = representative_samples(options, list(artifact.facts.get("inputs") or []),
                                        artifact.facts.get("input_ranges"))  # the converter's, as _converter makes them
    with ranges.chosen_for(samples) as record:
        yield record
    if "kept" in record:
        facts["int8_ranges"] = f"min/max, as calibrated (LiteRT could not run the calibrated model: {record['kept']})"
    elif "narrowed" in record:
        facts["int8_ranges"] = (f"least squared error on the calibration samples: {record['narrowed']} activation"
                                f" ranges narrowed from their min/max ({ranges.OPTION}=minmax keeps the converter's)")
        if record["narrowed"] and facts.get("if_drifted"):  # narrower ranges help on average, not always
            facts["if_drifted"] += ", or keep the converter's own activation ranges with --int8-ranges minmax"


def _dtype_name(dtype) -> str:
    return dtype.__name__ if isinstance(dtype, type) else str(dtype)


LITERT = "litert"
FLEX_RUNNER = "tf.lite.Interpreter (Flex delegate)"


def interpreter_for(path: Path, preserve: bool = False) -> tuple[Any, list[str], str]:
    """(an interpreter, the file's Flex ops, which runtime it is). LiteRT's Interpreter has no
    Flex delegate of its own: a .tflite with Select TF ops fails to prepare there ("Select
    TensorFlow op(s) ... not supported by this interpreter") unless TensorFlow happens to be
    loaded in the same process, whose Flex delegate it then picks up. Such a file is run with
    TensorFlow's tf.lite.Interpreter, which links the Flex delegate, every time; TensorFlow is
    imported for it only. `preserve`: keep every intermediate tensor readable after a run, which
    needs the builtin kernels without the default (XNNPACK) delegate that would hide them."""
    flex = flex_ops(path.read_bytes())
    if not flex:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        if not preserve:
            return Interpreter(model_path=str(path)), flex, LITERT
        with warnings.catch_warnings():  # "intended for debugging purposes only": it is for that here
            warnings.simplefilter("ignore")
            return Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                               experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES), flex, LITERT
    try:
        tf = frameworks.tensorflow()
    except ImportError:
        raise RuntimeMissing(f"{path.name} runs TF ops ({', '.join(flex)}) through the Flex delegate, which"
                             " needs TensorFlow's tf.lite.Interpreter; tensorflow is not installed") from None
    with warnings.catch_warnings():  # "tf.lite.Interpreter is deprecated": LiteRT has no Flex delegate
        warnings.simplefilter("ignore")
        extra = dict(experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                     ) if preserve else {}
        return tf.lite.Interpreter(model_path=str(path), **extra), flex, FLEX_RUNNER


class Session:
    """Runs a .tflite signature with ai_edge_litert's Interpreter, resizing dynamic dims as needed;
    a .tflite with Flex ops (Select TF ops) with tf.lite.Interpreter, which has the Flex delegate.
    `runtime` says which ran it, `flex_ops` which TF ops it runs.

    A model with int8 inputs/outputs is fed and read in float: inputs are quantized and outputs
    dequantized with the model's own scales, so it compares with the float source like any other.
    """

    def __init__(self, artifact: Artifact, requested: str | None = None, preserve: bool = False):
        """requested: a signature the user named, which must exist. Otherwise the artifact's
        "signature" fact is run when the file has it, else the first: a fact inherited from an
        earlier hop (a SavedModel's "serving_default") need not name a signature of this file.
        preserve: every intermediate tensor stays readable after a run (`tensors`), slower."""
        self._interpreter, self.flex_ops, self.runtime = interpreter_for(Path(artifact.path), preserve)
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

    def tensors(self, subgraph: int) -> dict[str, tuple[Any, tuple[float, int, int, int] | None]]:
        """After a run of a `preserve` session: the float tensors of one graph (the signature's) by name,
        quantized ones dequantized, with (scale, zero point, lowest, highest code) for those.
        Integer tensors (shapes, ids), per-channel ones (weights) and empty ones are left out."""
        import numpy as np

        found: dict[str, tuple[Any, tuple[float, int, int, int] | None]] = {}
        for detail in self._interpreter.get_tensor_details(subgraph):
            quantization = detail["quantization_parameters"]
            try:
                value = self._interpreter.get_tensor(detail["index"], subgraph)
            except ValueError:  # no data: a tensor of another subgraph, or freed
                continue
            if value is None or value.size == 0 or detail["name"] in found:
                continue
            scales, zeros = quantization["scales"], quantization["zero_points"]
            params = None
            if np.issubdtype(value.dtype, np.integer) and len(scales) == 1 and scales[0] != 0:
                info = np.iinfo(value.dtype)
                params = (float(scales[0]), int(zeros[0]), int(info.min), int(info.max))
                value = (value.astype(np.float32) - params[1]) * params[0]
            elif not np.issubdtype(value.dtype, np.floating):
                continue  # shapes, indices, token ids: nothing to compare in float
            found[detail["name"]] = (value.astype(np.float32, copy=False), params)
        return found


def _quantized(detail) -> bool:
    import numpy as np

    return np.issubdtype(detail["dtype"], np.integer) and detail["quantization"][0] != 0
