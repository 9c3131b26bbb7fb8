"""int8 activation ranges that lose least: each chosen from the calibration samples' own values to
minimise the squared error of rounding plus clipping, instead of TFLiteConverter's [min, max].

TFLiteConverter gives every activation tensor the range its calibration saw, end to end, so the
few largest values set the step of all the others: (max - min) / 255. For a heavy-tailed tensor a
narrower range clips those few values a little and rounds every other one more finely. Per
tensor, convhub tries [c·min, c·max] for c from 1 down to 0.2 on the calibration samples' values
and keeps the c of least mean squared error (c = 1, the converter's range, when nothing is
better), as the MSE calibrators of PyTorch (HistogramObserver) and TensorRT do. The model's
outputs keep their [min, max]: a clipped logit can tie the top class. Measured on the zoo's two
int8 columns (docs/parity.md): relative RMS error lower in 16 and higher in 11 of 34 models on
generated calibration (MobileNetV2 15.0 % -> 13.8 %, NASNetMobile 14.3 % -> 19.8 %), lower in 22
and higher in 6 on their own data; 4-6 % lower on average (geometric mean) in both.

How: during the conversion, TFLiteConverter's own call of its quantizer (`lite._mlir_quantize`,
which takes the calibrated float model: a min and a max on each tensor) is wrapped, and the
calibrated model is run by LiteRT on the same samples, every tensor kept, to choose the ranges
before the quantizer reads them. The converter's flow is otherwise its own (int8 I/O included).
The calibrated model with the chosen ranges is kept for int8.mend, which matches tensor names
against it. A calibrated model LiteRT cannot run (Flex ops) keeps [min, max], and says so.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

OPTION = "int8_ranges"  # "mse" (the default) or "minmax" (the converter's own)
LOWEST = 0.2  # the narrowest range tried, as a share of [min, max]
STEPS = 41  # ranges tried between LOWEST and 1
KEPT = 512  # values kept per tensor and sample (at random, with the sample's min and max)


@contextlib.contextmanager
def chosen_for(samples: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """While open, TFLiteConverter quantizes with ranges chosen on `samples` (the converter's own
    representative dataset). Yields a record that then holds "calibrated" (the calibrated model
    as quantized, for int8.mend), "narrowed" (how many tensors got a narrower range) and, if the
    ranges stayed the converter's, "kept" (why)."""
    from tensorflow.lite.python import lite

    quantize = lite._mlir_quantize
    record: dict[str, Any] = {}

    def with_chosen_ranges(calibrated: bytes, *args: Any, **kwargs: Any) -> Any:
        try:
            record["calibrated"], record["narrowed"] = narrow(calibrated, samples)
        except Exception as exc:  # noqa: BLE001 - the converter's own ranges stand, and it is said
            record["calibrated"], record["narrowed"] = calibrated, 0
            record["kept"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
        return quantize(record["calibrated"], *args, **kwargs)

    lite._mlir_quantize = with_chosen_ranges
    try:
        yield record
    finally:
        lite._mlir_quantize = quantize


def narrow(calibrated: bytes, samples: list[dict[str, Any]]) -> tuple[bytes, int]:
    """The calibrated model with each activation's [min, max] narrowed to the range of least
    squared error on `samples`, and how many were narrowed."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    from convhub_tflite.flatbuffer import pack

    model = schema.ModelT.InitFromPackedBuf(bytearray(calibrated), 0)
    graph = model.subgraphs[0]
    outputs = set(graph.outputs.tolist() if graph.outputs is not None else [])
    chosen = [i for i, t in enumerate(graph.tensors) if i not in outputs and _has_range(model, t)]
    interpreter = Interpreter(model_content=bytes(calibrated), experimental_preserve_all_tensors=True)
    run = interpreter.get_signature_runner()
    rng = np.random.default_rng(0)
    values: dict[int, list[Any]] = {i: [] for i in chosen}
    for sample in samples:
        run(**sample)
        for i in chosen:
            v = interpreter.get_tensor(i).ravel().astype(np.float32)
            if v.size > KEPT:
                v = np.concatenate([rng.choice(v, KEPT, replace=False), [v.min(), v.max()]])
            values[i].append(v)
    narrowed = 0
    for i in chosen:
        q = graph.tensors[i].quantization
        low, high = min(float(q.min[0]), 0.0), max(float(q.max[0]), 0.0)
        share = least_error_share(np.concatenate(values[i]), low, high) if values[i] else 1.0
        if share < 1.0:
            q.min[0], q.max[0] = low * share, high * share
            narrowed += 1
    return (pack(schema, model) if narrowed else calibrated), narrowed


def least_error_share(values: Any, low: float, high: float) -> float:
    """The c in [LOWEST, 1] for which int8 on [c·low, c·high] (asymmetric, zero exact) rounds and
    clips `values` with the least mean squared error; 1 when none beats the whole range."""
    import numpy as np

    if not high > low:
        return 1.0
    x = values.astype(np.float64)
    best, best_error = 1.0, None
    for share in np.linspace(1.0, LOWEST, STEPS):
        scale = (high - low) * share / 255.0
        zero = np.round(-low * share / scale) - 128.0
        error = float(np.mean((x - (np.clip(np.round(x / scale) + zero, -128, 127) - zero) * scale) ** 2))
        if best_error is None or error < best_error:
            best, best_error = float(share), error
    return best


def _has_range(model: Any, tensor: Any) -> bool:
    """A tensor the calibration gave one [min, max] (an activation, not a constant)."""
    q = tensor.quantization
    if q is None or q.min is None or q.max is None or len(q.min) != 1 or len(q.max) != 1:
        return False
    data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
    return data is None or len(data) == 0
