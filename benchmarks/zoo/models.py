"""A zoo of public architectures, built in code with random weights, for convhub's compatibility matrix.

Every entry of `MODELS` is a `ZooModel`: `build(folder)` writes the model into an empty folder
and returns the source to hand convhub (a `.keras` file, a SavedModel directory, or a
`file.py:NAME` reference for JAX); `calibration(n)` returns n realistic input rows per input
name, for int8 calibration and parity checks. Nothing is downloaded: every model is built with
`weights=None` and fixed seeds (`keras.utils.set_random_seed(0)`, `jax.random.PRNGKey(0)`,
`numpy.random.default_rng`), so two builds give the same weights.

    uv run python benchmarks/zoo/models.py                 # build and check every model
    uv run python benchmarks/zoo/models.py resnet50 flax_cnn

Live weights, and why
---------------------
A freshly initialised network is a poor parity test: depending on depth and normalisation its
outputs are 1e-11 or 1e3, or the same for every input, so "max abs diff < 1e-4" is either
trivially true or meaningless. `live_weights(model, sample)` gives a Keras model activations of
the scale a trained model has:

1. Batch normalisation: every `BatchNormalization` layer's momentum is set to 0 and the model
   runs one forward pass with `training=True` on a realistic batch (64 rows of `calibration`,
   with a seed the checks do not use), so each layer's moving mean and variance become the
   statistics of that batch; then momenta are restored. Dropout-like layers are switched off
   for that pass, so they do not skew the statistics. In inference mode every BatchNorm then
   sees roughly zero-mean, unit-variance activations, instead of relying on the init's
   mean 0 / variance 1, which deep CNNs miss by orders of magnitude. (64 rows rather than 16:
   in swish/SE networks the statistics of a small batch generalise badly, see below.)
2. The head: every Dense (or 1x1 convolution) that produces a model output, possibly through
   activation, flatten, reshape or dropout layers, has its kernel scaled so that the median
   |pre-activation| (|logit|) on the sample is 1.35, that of Gaussian logits with an RMS of 2.
   Softmax outputs are then neither uniform (1/classes) nor one-hot, raw logits are of order
   1, and the outputs clearly depend on the input. The median, not the RMS, so that a few
   outlying rows do not shrink everyone else's logits.

The JAX modules that `build` writes do the same at import time (Flax BatchNorm with momentum
0 run once with `train=True, mutable=["batch_stats"]`, then the head kernel scaled); so does the
tf.Module SavedModel (head scaled).

3. Trained briefly (the keras.applications CNNs): a random-init CNN with batch normalisation
   is chaotic, unlike a trained one. BatchNorm's centring removes the part of the activations
   that similar inputs share, so each layer magnifies small differences, and over 50-100 layers
   any perturbation of the weights grows: rounding every weight to float16 (what a float16
   conversion does) moved MobileNetV2's logits by 3.0 % RMS, InceptionV3's by 8.2 %, ResNet50's
   by 3.0 %, measured in Keras itself with no converter involved. Trained ImageNet models move by
   about 0.1-0.3 %, and that is what a conversion check of a real model sees. So `train_briefly`
   runs Adam steps (batch 32, lr 1e-3) on a learnable synthetic task (`task_labels`: which of 10
   fixed mixtures of an image's mean colours is largest) with rows of the model's own input
   distribution, 50 steps at a time, until float16 rounding moves the outputs less than 0.5 %
   RMS (`float16_drift`, on 32 rows the checks do not use) or 400 steps; then step 1 and 2 run
   again. Measured when docs/compatibility.md was made (drift before -> after, steps):
   MobileNet 4.53 % -> 0.58 % (400, the cap), MobileNetV2 3.10 % -> 0.47 % (150), ResNet50
   4.20 % -> 0.06 % (50), ResNet50V2 1.25 % -> 0.12 % (50), InceptionV3 7.76 % -> 0.08 % (50),
   NASNetMobile 1.48 % -> 0.23 % (50), EfficientNetB0 3.07 % -> 0.43 % (100), EfficientNetV2B0
   4.30 % -> 0.16 % (50), MobileNetV3Large 0.94 % -> 0.14 % (50); MobileNetV3Small (0.36 %),
   DenseNet121 (0.38 %), Xception (0.23 %) and ConvNeXtTiny (0.04 %) were under 0.5 % untrained.
   The build prints these lines (`benchmarks.zoo.run` shows them). The
   stopping rule is about realism (a trained network's sensitivity), measured in Keras, never
   against convhub's verdicts; `uv run python benchmarks/zoo/models.py` prints each model's
   f16drift on the check rows.

4. Trained, the text models (Embedding over token ids: lstm_classifier, lstm_unrolled,
   gru_classifier, bilstm_classifier, conv1d_text): Keras' Embedding init, uniform in +-0.05,
   feeds an LSTM inputs so small that its gates sit at 0.5 and its outputs have an RMS of 0.008,
   about 1 % of a trained one's (h = o * tanh(c) is of order 0.1-1 once a model has learned
   anything); live_weights then scaled their head 120-200x to reach logits of order 1, which
   magnifies any error in those tiny features by as much, in a way no trained model does. They
   are not chaotic (float16 drift 0.03 %), so the CNNs' stopping rule would not train them;
   instead they run all TRAIN_MAX_STEPS (400, seconds each) on `token_labels` (a bag-of-words
   label: which of the classes' fixed random word scores sums highest), from the init, with the
   head unscaled while training. Measured: the head scale live_weights then applies fell from
   136x to 2.1x (LSTM), 136x to 1.1x (GRU), 195x to 1.1x (BiLSTM), 24x to 1.1x (Conv1D), and the
   LSTM's task accuracy rose from 0.1 to 0.36 (10 classes). Found because their int8 cells
   failed (convhub's layer-by-layer report named an LSTM output RMS of 0.007); the rule is that
   measure in Keras, set before their cells were re-run, and every cell of theirs was re-run.

What remains: networks with swish / hard-swish and squeeze-excite (EfficientNet, EfficientNetV2,
MobileNetV3) are heavy-tailed at random init: their gain differs between low- and high-contrast
images and compounds over depth, so a few images give logits 10-80x the median. Those models
keep their softmax head (saturated probabilities are harmless); the models exported with raw
logits (`classifier_activation=None`: ResNet50, MobileNetV2, Xception, ConvNeXtTiny) are ones
whose per-image logit scale stays within about 4x of the median.

Input conventions
-----------------
- Images are NHWC float32. `calibration` returns smooth synthetic pictures (bilinear blobs,
  texture noise, random brightness/contrast) as whole numbers in [0, 255], mapped into the
  range the model expects; each `description` says which:
  - [0, 255]: models with their own preprocessing (MobileNetV3, EfficientNet(V2), ConvNeXt,
    and the zoo's own models, which start with a `Rescaling` layer);
  - [-1, 1] ("tf" mode, x / 127.5 - 1): MobileNet, MobileNetV2, ResNet50V2, Xception,
    InceptionV3, NASNetMobile;
  - "caffe" mode (RGB->BGR, ImageNet mean subtracted, about [-124, 152]): ResNet50;
  - "torch" mode (x / 255, ImageNet mean/std normalised, about [-2.1, 2.6]): DenseNet121.
  - uint8 pixels in [0, 255]: the Orbax model (its tf_preprocessor casts and normalises).
- Token ids are int32 in [1, vocab) (Zipf-distributed, like word frequencies; 0 is never used).
- Time series and tabular features are float32 of roughly unit scale.
- Input names are the Keras `Input` names (or SavedModel / JAX input names), which is what
  convhub names the inputs after conversion; `calibration` uses the same names.
- `calibration(n, seed=0)` is deterministic; the optional seed gives other rows (the checks
  compare `calibration(8)` with `calibration(16)[8:]`, which are different rows).

Dynamic dimensions: every model has a dynamic batch dim; `lstm_dynamic` also has a dynamic time
dim (input (None, None, 8)), and keras-hub's text backbones (`hub_bert_classifier`,
`hub_gpt2_pooled`) a dynamic sequence length, as keras-hub builds them (their rows are 32 long,
0-padded after a length of 8-32, with a matching 0/1 padding_mask). Everything else is static.

keras-hub models (`hub_*`) are keras-hub's own classes (BertBackbone, GPT2Backbone, ViTBackbone
and its task models) built from small configs with random weights, never `from_preset`, so
nothing is downloaded. keras-hub is pinned below 0.32, whose tensorflow-text needs TensorFlow 2.20
(docs/dependencies.md). Like the other attention models they have no BatchNorm and are not
trained: live_weights scales their Dense head (float16 drift 0.04-0.09 % untrained).

Output names: convhub's keras -> savedmodel step names a Keras model's outputs after their output
layers when the author named them (`predictions_named` keeps 'predictions'), else output_0,
output_1... as keras.Model.export does; `two_inputs_two_outputs` returns {"class_probs", "score"},
so those names survive conversion. The check table prints the Keras
output layers' names (e.g. "predictions"), the SavedModel signature keys ("embed:..." for the
second signature of `tf_module_two_signatures`) and the JAX output names.

Seen while smoke-testing with convhub (keras -> tflite): Keras LSTM/GRU layers with a dynamic
batch compile to while loops over TensorLists, which TFLiteConverter refuses without Select TF
ops ("'tf.TensorListReserve' op requires element_shape to be static"); `lstm_unrolled`
(`LSTM(unroll=True)`) is the same classifier without the loop.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import importlib.util
import inspect
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

CLASSES = 10
LIVE_SEED = 1  # the rows live_weights sees; the checks use seed 0
LIVE_ROWS = 64  # how many: BatchNorm statistics of fewer rows generalise worse (see the docstring)
LOGIT_MEDIAN = 1.35  # target median |logit|: that of Gaussian logits with an RMS of 2


@dataclass(frozen=True)
class ZooModel:
    name: str  # short id, e.g. "mobilenet_v3_small"
    family: str  # "cnn", "sequence", "attention", "multi-io", "savedmodel", "jax"
    build: Callable[[Path], str]  # writes the model into an empty folder, returns the convhub source
    calibration: Callable[[int], dict[str, np.ndarray]]  # n realistic input rows per input name
    description: str  # one line: what it is


# --------------------------------------------------------------------------------------------
# Synthetic inputs (numpy only: the JAX module templates embed these functions' source)
# --------------------------------------------------------------------------------------------


def synthetic_images(n, size, seed=0):
    """n smooth RGB pictures, (n, size, size, 3) float32 whole numbers in [0, 255]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    grid = 6
    low = rng.uniform(0.0, 255.0, (n, grid, grid, 3))
    contrast = rng.uniform(0.5, 1.3, (n, 1, 1, 1))
    brightness = rng.uniform(-40.0, 40.0, (n, 1, 1, 1))
    noise = rng.normal(0.0, 10.0, (n, size, size, 3))
    # Bilinear upsampling grid -> size as an interpolation matrix applied on both axes.
    pos = np.linspace(0.0, grid - 1.0, size)
    lo = np.minimum(np.floor(pos).astype(int), grid - 2)
    frac = pos - lo
    up = np.zeros((size, grid))
    up[np.arange(size), lo] = 1.0 - frac
    up[np.arange(size), lo + 1] = frac
    images = np.einsum("hi,nijc,wj->nhwc", up, low, up)
    images = (images - 128.0) * contrast + 128.0 + brightness + noise
    return np.clip(np.round(images), 0.0, 255.0).astype(np.float32)


def synthetic_tokens(n, length, vocab, seed=0):
    """n rows of `length` token ids in [1, vocab), Zipf-distributed like word frequencies; int32."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.zipf(1.3, (n, length))
    # A fixed permutation, so frequent ids are spread over the vocabulary rather than all small.
    perm = np.random.default_rng(1234).permutation(vocab - 1) + 1
    return perm[np.minimum(ids, vocab - 1) - 1].astype(np.int32)


def synthetic_series(n, length, features, seed=0):
    """n multivariate time series (n, length, features): sines, trend and noise, about unit scale."""
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)[None, :, None]
    period = rng.uniform(4.0, 40.0, (n, 1, features))
    phase = rng.uniform(0.0, 2 * np.pi, (n, 1, features))
    amplitude = rng.uniform(0.3, 1.5, (n, 1, features))
    trend = rng.normal(0.0, 0.02, (n, 1, features))
    noise = rng.normal(0.0, 0.2, (n, length, features))
    series = amplitude * np.sin(2 * np.pi * t / period + phase) + trend * (t - length / 2) + noise
    return series.astype(np.float32)


def synthetic_features(n, features, seed=0):
    """n tabular rows of `features` correlated, roughly standardised float32 features."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(4321).normal(0.0, 1.0, (features, features)) / np.sqrt(features)
    return (rng.normal(0.0, 1.0, (n, features)) @ mixing).astype(np.float32)


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)


def preprocess(images, mode):
    """keras.applications' preprocess_input for float NHWC images in [0, 255] ("raw": unchanged)."""
    if mode == "raw":
        return images
    if mode == "tf":
        return images / 127.5 - 1.0
    if mode == "torch":
        return (images / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    if mode == "caffe":
        return images[..., ::-1] - CAFFE_MEAN_BGR
    raise ValueError(mode)


def image_calibration(size, mode="raw", name="image", dtype="float32"):
    def calibration(n, seed=0):
        return {name: preprocess(synthetic_images(n, size, seed), mode).astype(dtype)}

    return calibration


def token_calibration(length, vocab, name="token_ids"):
    def calibration(n, seed=0):
        return {name: synthetic_tokens(n, length, vocab, seed)}

    return calibration


def series_calibration(length, features, name="series"):
    def calibration(n, seed=0):
        return {name: synthetic_series(n, length, features, seed)}

    return calibration


def feature_calibration(features, name="features"):
    def calibration(n, seed=0):
        return {name: synthetic_features(n, features, seed)}

    return calibration


# --------------------------------------------------------------------------------------------
# Live weights for Keras models
# --------------------------------------------------------------------------------------------


def _keras():
    import keras

    return keras


def _fresh_keras():
    """Keras with a clean name scope and seed 0, so every build makes the same model."""
    keras = _keras()
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    return keras


def _all_layers(model):
    if hasattr(model, "_flatten_layers"):
        return [layer for layer in model._flatten_layers(include_self=False, recursive=True)]
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(_all_layers(layer))
    return found


def _model_input(model, sample):
    """The sample (an array, a list, or a dict by input name) as the model takes it."""
    structure = _inputs_struct(model)
    if not isinstance(sample, dict):
        return [sample] if isinstance(structure, list) and len(structure) == 1 else sample
    names = [t.name for t in model.inputs]
    if isinstance(structure, dict):
        return {key: sample[t.name] for key, t in structure.items()}
    if len(names) == 1:
        value = sample[names[0]] if names[0] in sample else next(iter(sample.values()))
        return [value] if isinstance(structure, (list, tuple)) else value
    return [sample[name] for name in names]


def _inputs_struct(model):
    """The nested structure of symbolic inputs a functional model (or a Sequential's graph) takes."""
    graph = getattr(model, "_functional", None)
    structure = getattr(model if graph is None else graph, "_inputs_struct", None)
    return model.inputs if structure is None else structure


def _head_layers(model):
    """(layer, input KerasTensor) of every Dense / 1x1 conv that makes a model output.

    Walks back from each output through layers that do not mix features (activations,
    flatten, reshape, dropout).
    """
    keras = _keras()
    L = keras.layers
    passthrough = (L.Activation, L.Softmax, L.Flatten, L.Reshape, L.Dropout, L.ReLU, L.Identity)
    heads = []
    for tensor in model.outputs:
        for _ in range(8):
            history = getattr(tensor, "_keras_history", None)
            if history is None:
                break
            layer = history.operation
            node = layer._inbound_nodes[history.node_index]
            if isinstance(layer, L.Dense) or (
                isinstance(layer, (L.Conv1D, L.Conv2D)) and all(k == 1 for k in layer.kernel_size)
            ):
                if not any(layer is h for h, _ in heads):
                    heads.append((layer, node.input_tensors[0]))
                break
            if isinstance(layer, passthrough) and len(node.input_tensors) == 1:
                tensor = node.input_tensors[0]
                continue
            break
    return heads


def live_weights(model, sample, logit_median=LOGIT_MEDIAN):
    """Make a random-init Keras model's activations realistic (see the module docstring).

    `sample`: a batch of realistic inputs (an array, a list, or a dict by input name), e.g.
    `calibration(64, seed=1)`. BatchNorm moving statistics become those of `sample` (one
    training-mode pass with momentum 0, dropout off), then every output head's kernel is scaled
    so the median |logit| on `sample` is `logit_median`. Works in place; returns
    {"batchnorm": number of BatchNorm layers, "heads": {head layer name: kernel scale}}.
    """
    keras = _keras()
    L = keras.layers
    x = _model_input(model, sample)
    layers = _all_layers(model)
    norms = [layer for layer in layers if isinstance(layer, L.BatchNormalization)]
    if norms:
        drops = [layer for layer in layers if isinstance(layer, (L.Dropout, L.GaussianDropout, L.AlphaDropout))]
        noises = [layer for layer in layers if isinstance(layer, L.GaussianNoise)]
        momenta = [layer.momentum for layer in norms]
        rates = [layer.rate for layer in drops]
        stddevs = [layer.stddev for layer in noises]
        try:
            for layer in norms:
                layer.momentum = 0.0
            for layer in drops:
                layer.rate = 0.0
            for layer in noises:
                layer.stddev = 0.0
            model(x, training=True)
        finally:
            for layer, m in zip(norms, momenta):
                layer.momentum = m
            for layer, r in zip(drops, rates):
                layer.rate = r
            for layer, s in zip(noises, stddevs):
                layer.stddev = s
    scales = head_scales(model, sample, logit_median)
    for layer, _ in _head_layers(model):
        if layer.name in scales:
            layer.kernel.assign(np.asarray(layer.kernel) * scales[layer.name])
    return {"batchnorm": len(norms), "heads": scales}


def head_scales(model, sample, logit_median=LOGIT_MEDIAN) -> dict[str, float]:
    """{head layer name: the factor its kernel needs for a median |logit| of `logit_median` on `sample`}."""
    keras = _keras()
    heads = _head_layers(model)
    if not heads:
        return {}
    features = keras.Model(_inputs_struct(model), [t for _, t in heads])(_model_input(model, sample), training=False)
    if not isinstance(features, (list, tuple)):
        features = [features]
    scales = {}
    for (layer, _), f in zip(heads, features):
        k2 = np.asarray(layer.kernel).reshape(-1, layer.kernel.shape[-1])
        typical = float(np.median(np.abs((np.asarray(f).reshape(-1, k2.shape[0]) @ k2).astype(np.float64))))
        if typical > 0:
            scales[layer.name] = logit_median / typical
    return scales


TRAIN_CHUNK = 50  # image CNNs are trained briefly (see "Trained briefly" in the docstring): in chunks
TRAIN_MAX_STEPS = 400  # of this many Adam steps, up to this many in all,
TRAIN_DRIFT = 0.005  # until float16 weights move the outputs less than this (relative RMS), as trained nets'
TRAIN_BATCH = 32
TRAIN_SEED = 1000  # training rows use seeds TRAIN_SEED.. ; live_weights uses LIVE_SEED, the checks 0


def task_labels(images, classes=CLASSES) -> np.ndarray:
    """A learnable, input-dependent task for a CNN: which of `classes` fixed random mixtures of
    the mean colour of an image's top and bottom halves is largest."""
    x = np.asarray(images, np.float64)
    half = x.shape[1] // 2
    features = np.concatenate([x[:, :half].mean((1, 2)), x[:, half:].mean((1, 2))], axis=-1)
    features = (features - features.mean(0)) / (features.std(0) + 1e-6)
    mixing = np.random.default_rng(77).normal(0.0, 1.0, (features.shape[-1], classes))
    return np.argmax(features @ mixing, axis=-1)


def float16_drift(model, feeds) -> float:
    """How chaotic a Keras model is: the relative RMS change of its outputs when every float32
    weight is rounded to float16 (what a float16 conversion does to it), measured in Keras."""
    keras = _keras()
    x = _model_input(model, feeds)
    flat = lambda out: np.concatenate([np.asarray(o, np.float64).ravel() for o in keras.tree.flatten(out)])  # noqa: E731
    before = flat(model(x, training=False))
    kept = [(w, np.asarray(w)) for w in model.weights if w.dtype == "float32"]
    try:
        for weight, value in kept:
            weight.assign(value.astype(np.float16).astype(np.float32))
        after = flat(model(x, training=False))
    finally:
        for weight, value in kept:
            weight.assign(value)
    return float(np.sqrt(np.mean((after - before) ** 2)) / max(np.sqrt(np.mean(before ** 2)), 1e-30))


def token_labels(ids, classes) -> np.ndarray:
    """A learnable, input-dependent task for a text model: which of `classes` fixed random word
    scores sums highest over a row's tokens, each class's sum standardised over the batch (else
    the few most frequent words decide the label of almost every row), like a bag-of-words
    sentiment label."""
    ids = np.asarray(ids)
    scores = np.random.default_rng(78).normal(0.0, 1.0, (VOCAB, classes))
    sums = scores[ids].sum(axis=1)
    return np.argmax((sums - sums.mean(0)) / (sums.std(0) + 1e-6), axis=-1)


def train_briefly(model, calibration, task=task_labels, until="float16") -> dict:
    """Adam steps on `task` (labels for a batch of the model's single input, and its class count),
    on rows of the model's own input distribution, TRAIN_CHUNK at a time, up to TRAIN_MAX_STEPS,
    until (`until`) "float16": float16 rounding moves the outputs less than TRAIN_DRIFT, with
    live_weights applied before each measure; or "steps": all TRAIN_MAX_STEPS, measuring how much
    live_weights would scale the head (unscaled while training, or the head would do the body's
    work). Leaves the model with live_weights applied. Returns {"steps", "loss", "before",
    "after"}: the measure before and after, "float16 drift 0.36%" or "head scale 135x"."""
    keras = _keras()
    logits = getattr(model.layers[-1], "activation", None) in (None, keras.activations.linear)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=logits))
    classes = model.outputs[0].shape[-1]
    sample, probe = calibration(LIVE_ROWS, seed=LIVE_SEED), calibration(32, seed=TRAIN_SEED - 1)

    def measure() -> tuple[bool, str]:
        if until == "steps":
            return False, f"head scale {max(head_scales(model, sample).values(), default=1.0):.3g}x"
        live_weights(model, sample)
        drift = float16_drift(model, probe)
        return drift < TRAIN_DRIFT, f"float16 drift {drift:.2%}"

    report = {"steps": 0, "loss": float("nan")}
    done, report["before"] = measure()
    report["after"] = report["before"]
    while not done and report["steps"] < TRAIN_MAX_STEPS:
        for _ in range(TRAIN_CHUNK):
            rows = calibration(TRAIN_BATCH, seed=TRAIN_SEED + report["steps"])
            (x,) = rows.values()
            report["loss"] = float(model.train_on_batch(_model_input(model, rows), task(x, classes)))
            report["steps"] += 1
        done, report["after"] = measure()
    if until == "steps":
        live_weights(model, sample)
    return report


def _save_keras(model, folder: Path, name: str, calibration, train=None) -> str:
    """`train`: None, or train_briefly's keyword arguments (task, until) to train with first."""
    if train is not None:
        report = train_briefly(model, calibration, **train)
        trained, model = model, _keras().models.clone_model(model)  # the copy has no optimizer to save
        model.set_weights(trained.get_weights())
        print(f"{name}: trained {report['steps']} steps (loss {report['loss']:.2f}),"
              f" {report['before']} -> {report['after']}", file=sys.stderr)
    else:
        live_weights(model, calibration(LIVE_ROWS, seed=LIVE_SEED))
    path = Path(folder) / f"{name}.keras"
    model.save(path)
    return str(path)


# --------------------------------------------------------------------------------------------
# keras.applications CNNs
# --------------------------------------------------------------------------------------------

MODE_RANGE = {
    "raw": "float32 pixels in [0, 255] (preprocessing inside the model)",
    "tf": "float32 in [-1, 1] (x/127.5-1)",
    "caffe": "float32 caffe-style: BGR, ImageNet mean subtracted, about [-124, 152]",
    "torch": "float32 torch-style: x/255 then ImageNet mean/std, about [-2.1, 2.6]",
}


def _application(name, constructor, size, mode, what, **kwargs) -> ZooModel:
    calibration = image_calibration(size, mode)

    def build(folder: Path) -> str:
        keras = _fresh_keras()
        image = keras.Input((size, size, 3), name="image")
        model = getattr(keras.applications, constructor)(
            input_tensor=image, input_shape=(size, size, 3), weights=None, classes=CLASSES, **kwargs
        )
        return _save_keras(model, folder, name, calibration, train={})

    head = "logits" if kwargs.get("classifier_activation", "softmax") is None else "softmax"
    description = (
        f"keras.applications.{constructor}: {what}; image {size}x{size}x3 {MODE_RANGE[mode]}; "
        f"{CLASSES}-class {head}"
    )
    return ZooModel(name, "cnn", build, calibration, description)


CNNS = [
    _application("mobilenet", "MobileNet", 96, "tf", "MobileNet v1, depthwise separable convs, BN, ReLU6"),
    _application(
        "mobilenet_v2", "MobileNetV2", 96, "tf", "inverted residuals, BN, ReLU6", classifier_activation=None
    ),
    _application(
        "mobilenet_v3_small", "MobileNetV3Small", 96, "raw", "SE blocks, hard-swish, 1x1-conv head"
    ),
    _application(
        "mobilenet_v3_large", "MobileNetV3Large", 96, "raw", "SE blocks, hard-swish, 1x1-conv head"
    ),
    _application("efficientnet_b0", "EfficientNetB0", 64, "raw", "MBConv + SE, swish, Normalization layer"),
    _application(
        "efficientnet_v2_b0", "EfficientNetV2B0", 64, "raw", "fused-MBConv + MBConv, swish"
    ),
    _application("resnet50", "ResNet50", 64, "caffe", "bottleneck residual blocks, BN", classifier_activation=None),
    _application("resnet50_v2", "ResNet50V2", 64, "tf", "pre-activation residual blocks, BN"),
    _application("densenet121", "DenseNet121", 64, "torch", "dense blocks, concatenations, BN"),
    _application(
        "convnext_tiny", "ConvNeXtTiny", 64, "raw", "7x7 depthwise convs, LayerNorm, GELU, layer scale",
        classifier_activation=None,
    ),
    _application(
        "xception", "Xception", 96, "tf", "separable convs, residual, BN (min input 71)", classifier_activation=None
    ),
    _application("inception_v3", "InceptionV3", 96, "tf", "inception modules, BN (min input 75)"),
    _application("nasnet_mobile", "NASNetMobile", 96, "tf", "NAS cells, separable convs, BN"),
]


# --------------------------------------------------------------------------------------------
# Hand-built Keras models
# --------------------------------------------------------------------------------------------


def _keras_model(name, family, make, calibration, description, train=None) -> ZooModel:
    def build(folder: Path) -> str:
        keras = _fresh_keras()
        return _save_keras(make(keras), folder, name, calibration, train)

    return ZooModel(name, family, build, calibration, description)


VOCAB, TOKENS = 1000, 32


def _lstm_classifier(keras):
    L = keras.layers
    ids = keras.Input((TOKENS,), dtype="int32", name="token_ids")
    x = L.Embedding(VOCAB, 64)(ids)
    x = L.LSTM(64)(x)
    return keras.Model(ids, L.Dense(CLASSES, name="logits")(x), name="lstm_classifier")


def _lstm_unrolled(keras):
    L = keras.layers
    ids = keras.Input((TOKENS,), dtype="int32", name="token_ids")
    x = L.Embedding(VOCAB, 64)(ids)
    x = L.LSTM(64, unroll=True)(x)  # unrolled: 32 cell steps in the graph, no while loop / TensorList
    return keras.Model(ids, L.Dense(CLASSES, name="logits")(x), name="lstm_unrolled")


def _gru_classifier(keras):
    L = keras.layers
    ids = keras.Input((TOKENS,), dtype="int32", name="token_ids")
    x = L.Embedding(VOCAB, 64)(ids)
    x = L.GRU(64)(x)
    return keras.Model(ids, L.Dense(5, activation="softmax", name="probs")(x), name="gru_classifier")


def _bilstm_classifier(keras):
    L = keras.layers
    ids = keras.Input((TOKENS,), dtype="int32", name="token_ids")
    x = L.Embedding(VOCAB, 64)(ids)
    x = L.Bidirectional(L.LSTM(32))(x)
    x = L.Dense(32, activation="relu")(x)
    return keras.Model(ids, L.Dense(3, name="logits")(x), name="bilstm_classifier")


def _conv1d_text(keras):
    L = keras.layers
    ids = keras.Input((TOKENS,), dtype="int32", name="token_ids")
    x = L.Embedding(VOCAB, 64)(ids)
    x = L.Conv1D(64, 5, padding="same", activation="relu")(x)
    x = L.MaxPooling1D(2)(x)
    x = L.Conv1D(64, 3, padding="same", activation="relu")(x)
    x = L.GlobalMaxPooling1D()(x)
    x = L.Dropout(0.2)(x)
    return keras.Model(ids, L.Dense(4, activation="softmax", name="probs")(x), name="conv1d_text")


SERIES_LEN, SERIES_FEATURES = 128, 3


def _conv1d_timeseries(keras):
    L = keras.layers
    series = keras.Input((SERIES_LEN, SERIES_FEATURES), name="series")
    x = series
    for dilation in (1, 2, 4, 8):
        x = L.Conv1D(32, 3, padding="causal", dilation_rate=dilation, use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(series, L.Dense(1, name="forecast")(x), name="conv1d_timeseries")


STEPS, STEP_FEATURES = 24, 8


def _lstm_dynamic(keras):
    L = keras.layers
    series = keras.Input((None, STEP_FEATURES), name="series")
    x = L.LSTM(32)(series)
    return keras.Model(series, L.Dense(4, name="logits")(x), name="lstm_dynamic")


def _stacked_lstm(keras):
    L = keras.layers
    series = keras.Input((STEPS, STEP_FEATURES), name="series")
    x = L.LSTM(32, return_sequences=True)(series)
    x = L.LSTM(32, return_sequences=True)(x)
    return keras.Model(series, L.Dense(3, name="tags")(x), name="stacked_lstm")


def _position_ids(keras, like):
    """0, 1, 2... along axis 1, as a graph op (cumsum of ones), so a Keras Embedding can embed positions."""
    return keras.ops.cumsum(keras.ops.ones_like(like, dtype="int32"), axis=1) - 1


def _transformer_encoder(keras, dim=64, heads=4, blocks=2):
    L = keras.layers
    ids = keras.Input((TOKENS,), dtype="int32", name="token_ids")
    x = L.Embedding(VOCAB, dim, name="token_embedding")(ids)
    positions = L.Embedding(TOKENS, dim, name="position_embedding")(_position_ids(keras, ids))
    x = L.Add()([x, positions])
    for i in range(blocks):  # post-LN, as in "Attention is all you need" / BERT
        h = L.MultiHeadAttention(heads, dim // heads, dropout=0.1, name=f"attention_{i}")(x, x)
        x = L.LayerNormalization(epsilon=1e-6)(L.Add()([x, h]))
        h = L.Dense(2 * dim, activation="gelu")(x)
        h = L.Dense(dim)(h)
        x = L.LayerNormalization(epsilon=1e-6)(L.Add()([x, L.Dropout(0.1)(h)]))
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(ids, L.Dense(CLASSES, name="logits")(x), name="transformer_encoder")


VIT_SIZE, VIT_PATCH = 64, 8


def _vit_tiny(keras, dim=64, heads=4, blocks=2):
    L = keras.layers
    image = keras.Input((VIT_SIZE, VIT_SIZE, 3), name="image")
    x = L.Rescaling(1 / 127.5, offset=-1.0)(image)
    x = L.Conv2D(dim, VIT_PATCH, strides=VIT_PATCH, name="patch_embedding")(x)
    patches = (VIT_SIZE // VIT_PATCH) ** 2
    x = L.Reshape((patches, dim))(x)
    positions = L.Embedding(patches, dim, name="position_embedding")(_position_ids(keras, x[:, :, 0]))
    x = L.Add()([x, positions])
    for i in range(blocks):  # pre-LN, as in ViT
        h = L.LayerNormalization(epsilon=1e-6)(x)
        x = L.Add()([x, L.MultiHeadAttention(heads, dim // heads, name=f"attention_{i}")(h, h)])
        h = L.LayerNormalization(epsilon=1e-6)(x)
        h = L.Dense(2 * dim, activation="gelu")(h)
        x = L.Add()([x, L.Dense(dim)(h)])
    x = L.LayerNormalization(epsilon=1e-6)(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(image, L.Dense(CLASSES, name="logits")(x), name="vit_tiny")


MULTI_SIZE, MULTI_FEATURES = 64, 16


def _two_inputs_two_outputs(keras):
    L = keras.layers
    image = keras.Input((MULTI_SIZE, MULTI_SIZE, 3), name="image")
    features = keras.Input((MULTI_FEATURES,), name="features")
    x = L.Rescaling(1 / 255.0)(image)
    for filters in (16, 32, 64):
        x = L.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    f = L.Dense(32, activation="relu")(features)
    h = L.Dense(64, activation="relu")(L.Concatenate()([x, f]))
    class_probs = L.Dense(5, activation="softmax", name="class_probs")(h)
    score = L.Dense(1, name="score")(h)
    return keras.Model(
        [image, features], {"class_probs": class_probs, "score": score}, name="two_inputs_two_outputs"
    )


def _two_io_calibration(n, seed=0):
    return {
        "image": synthetic_images(n, MULTI_SIZE, seed),
        "features": synthetic_features(n, MULTI_FEATURES, seed),
    }


TABULAR_FEATURES = 20


def _predictions_named(keras):
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((TABULAR_FEATURES,), name="features"),
            L.Dense(64, activation="relu"),
            L.BatchNormalization(),
            L.Dropout(0.2),
            L.Dense(32, activation="relu"),
            L.Dense(3, activation="softmax", name="predictions"),
        ],
        name="tabular_mlp",
    )


# Keras' Embedding init (uniform in +-0.05) leaves an untrained text model's features at about 1 %
# of a trained one's (live_weights scaled their head 120-200x), so they are trained (see the docstring).
TEXT_TRAINING = {"task": token_labels, "until": "steps"}

SEQUENCE = [
    _keras_model(
        "lstm_classifier", "sequence", _lstm_classifier, token_calibration(TOKENS, VOCAB),
        f"Embedding(1000,64)+LSTM(64) text classifier; token_ids int32 (batch,{TOKENS}) in [1,1000); 10 logits",
        train=TEXT_TRAINING,
    ),
    _keras_model(
        "lstm_unrolled", "sequence", _lstm_unrolled, token_calibration(TOKENS, VOCAB),
        f"the lstm_classifier architecture with LSTM(unroll=True): no while loop/TensorList ops;"
        f" token_ids int32 (batch,{TOKENS}) in [1,1000); 10 logits",
        train=TEXT_TRAINING,
    ),
    _keras_model(
        "gru_classifier", "sequence", _gru_classifier, token_calibration(TOKENS, VOCAB),
        f"Embedding+GRU(64) text classifier; token_ids int32 (batch,{TOKENS}) in [1,1000); 5-class softmax",
        train=TEXT_TRAINING,
    ),
    _keras_model(
        "bilstm_classifier", "sequence", _bilstm_classifier, token_calibration(TOKENS, VOCAB),
        f"Embedding+Bidirectional(LSTM(32))+Dense; token_ids int32 (batch,{TOKENS}) in [1,1000); 3 logits",
        train=TEXT_TRAINING,
    ),
    _keras_model(
        "conv1d_text", "sequence", _conv1d_text, token_calibration(TOKENS, VOCAB),
        f"Embedding+Conv1D/MaxPool1D/GlobalMaxPool text CNN; token_ids int32 (batch,{TOKENS}); 4-class softmax",
        train=TEXT_TRAINING,
    ),
    _keras_model(
        "conv1d_timeseries", "sequence", _conv1d_timeseries, series_calibration(SERIES_LEN, SERIES_FEATURES),
        f"TCN-style dilated causal Conv1D+BN regressor; series float32 (batch,{SERIES_LEN},{SERIES_FEATURES})"
        " ~unit scale; 1 value",
    ),
    _keras_model(
        "lstm_dynamic", "sequence", _lstm_dynamic, series_calibration(STEPS, STEP_FEATURES),
        f"LSTM(32) over a dynamic-length series: input (None, None, {STEP_FEATURES}) float32 ~unit scale"
        f" (calibration length {STEPS}); 4 logits",
    ),
    _keras_model(
        "stacked_lstm", "sequence", _stacked_lstm, series_calibration(STEPS, STEP_FEATURES),
        f"2 stacked LSTM(32, return_sequences) + per-step Dense; series float32 (batch,{STEPS},{STEP_FEATURES});"
        f" (batch,{STEPS},3) logits",
    ),
]

ATTENTION = [
    _keras_model(
        "transformer_encoder", "attention", _transformer_encoder, token_calibration(TOKENS, VOCAB),
        f"2 post-LN Transformer encoder blocks (MultiHeadAttention 4 heads, GELU FFN), token+position"
        f" embeddings; token_ids int32 (batch,{TOKENS}) in [1,1000); 10 logits",
    ),
    _keras_model(
        "vit_tiny", "attention", _vit_tiny, image_calibration(VIT_SIZE),
        f"ViT-like: 8x8 patch Conv2D, position embeddings, 2 pre-LN MHA blocks; image {VIT_SIZE}x{VIT_SIZE}x3"
        " float32 in [0,255]; 10 logits",
    ),
]


# --------------------------------------------------------------------------------------------
# keras-hub backbones, from small configs (no presets: nothing is downloaded)
# --------------------------------------------------------------------------------------------
#
# keras-hub's own classes with their own layers (ReversibleEmbedding, PositionEmbedding,
# TransformerEncoder/Decoder, ViT patching), configured small and built with random weights;
# `from_preset` is never called, so neither Kaggle nor Hugging Face is contacted. The text
# models take keras-hub's inputs as its preprocessors write them: int32 (batch, length) token
# ids, padded with 0 after each row's length, and a 0/1 padding mask (BERT also 0/1 segment ids).
# Their sequence length is dynamic, as keras-hub builds it; the rows here are HUB_LENGTH long.

HUB_LENGTH, HUB_DIM = 32, 64


def _keras_hub():
    import keras_hub

    return keras_hub


def _padded_tokens(n, seed):
    """(token ids, padding mask, lengths): Zipf ids in [1, VOCAB) for lengths of 8..HUB_LENGTH, 0 after."""
    rng = np.random.default_rng(seed + 5000)
    lengths = rng.integers(8, HUB_LENGTH + 1, n)
    mask = (np.arange(HUB_LENGTH)[None, :] < lengths[:, None]).astype(np.int32)
    return synthetic_tokens(n, HUB_LENGTH, VOCAB, seed) * mask, mask, lengths


def _bert_calibration(n, seed=0):
    ids, mask, lengths = _padded_tokens(n, seed)
    # A sentence pair: segment 1 from a split point within each row's length to its end.
    split = np.random.default_rng(seed + 6000).integers(2, lengths - 2)
    position = np.arange(HUB_LENGTH)[None, :]
    segments = ((position >= split[:, None]) & (position < lengths[:, None])).astype(np.int32)
    return {"token_ids": ids, "segment_ids": segments, "padding_mask": mask}


def _gpt2_calibration(n, seed=0):
    ids, mask, _ = _padded_tokens(n, seed)
    return {"token_ids": ids, "padding_mask": mask}


def _hub_bert_classifier(keras):
    hub = _keras_hub()
    backbone = hub.models.BertBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=HUB_DIM, intermediate_dim=2 * HUB_DIM,
        max_sequence_length=HUB_LENGTH,
    )
    # keras-hub's task model, as users fine-tune it (preprocessor=None: it takes token ids, not text).
    return hub.models.BertTextClassifier(backbone, num_classes=CLASSES, preprocessor=None)


def _hub_gpt2_pooled(keras):
    hub = _keras_hub()
    backbone = hub.models.GPT2Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=HUB_DIM, intermediate_dim=2 * HUB_DIM,
        max_sequence_length=HUB_LENGTH,
    )
    # keras-hub has no GPT-2 classifier task: the backbone's graph with a mean over the unpadded
    # tokens and a Dense head, so the inputs are the backbone's own (its Embedding reads token_ids).
    inputs = backbone.input
    mask = keras.ops.cast(inputs["padding_mask"], "bool")
    pooled = keras.layers.GlobalAveragePooling1D()(backbone.output, mask=mask)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(pooled), name="hub_gpt2_pooled")


HUB_IMAGE, HUB_PATCH = 32, 4


def _hub_vit_classifier(keras):
    hub = _keras_hub()
    backbone = hub.models.ViTBackbone(
        image_shape=(HUB_IMAGE, HUB_IMAGE, 3), patch_size=HUB_PATCH, num_layers=2, num_heads=4,
        hidden_dim=HUB_DIM, mlp_dim=2 * HUB_DIM,
    )
    # Pooled on the class token; images in [-1, 1], as Google's ViT checkpoints take them (mean and std 0.5).
    return hub.models.ViTImageClassifier(backbone, num_classes=CLASSES, preprocessor=None, pooling="token")


KERAS_HUB = [
    _keras_model(
        "hub_bert_classifier", "attention", _hub_bert_classifier, _bert_calibration,
        f"keras_hub BertTextClassifier on a BertBackbone(vocab {VOCAB}, 2 layers, 2 heads, dim {HUB_DIM}), no preset;"
        f" token_ids int32 (batch,None) in [1,{VOCAB}) 0-padded, segment_ids and padding_mask 0/1"
        f" (calibration length {HUB_LENGTH}); 10 logits",
    ),
    _keras_model(
        "hub_gpt2_pooled", "attention", _hub_gpt2_pooled, _gpt2_calibration,
        f"keras_hub GPT2Backbone(vocab {VOCAB}, 2 causal layers, 2 heads, dim {HUB_DIM}), no preset, masked mean"
        f" + Dense; token_ids int32 (batch,None) in [1,{VOCAB}) 0-padded, padding_mask 0/1"
        f" (calibration length {HUB_LENGTH}); 10 logits",
    ),
    _keras_model(
        "hub_vit_classifier", "attention", _hub_vit_classifier, image_calibration(HUB_IMAGE, "tf", name="images"),
        f"keras_hub ViTImageClassifier on a ViTBackbone({HUB_PATCH}x{HUB_PATCH} patches, 2 layers, 4 heads,"
        f" dim {HUB_DIM}, class token), no preset; images {HUB_IMAGE}x{HUB_IMAGE}x3 {MODE_RANGE['tf']}; 10 logits",
    ),
]


MULTI_IO = [
    _keras_model(
        "two_inputs_two_outputs", "multi-io", _two_inputs_two_outputs, _two_io_calibration,
        f"functional model, inputs image ({MULTI_SIZE}x{MULTI_SIZE}x3 float32 in [0,255]) + features"
        f" ({MULTI_FEATURES} float32); dict outputs class_probs (5-class softmax) and score (scalar)",
    ),
    _keras_model(
        "predictions_named", "multi-io", _predictions_named, feature_calibration(TABULAR_FEATURES),
        f"Sequential tabular MLP with BN+Dropout; features float32 ({TABULAR_FEATURES},) ~unit scale;"
        " single output layer named 'predictions' (3-class softmax)",
    ),
]


# --------------------------------------------------------------------------------------------
# SavedModels
# --------------------------------------------------------------------------------------------

MODULE_FEATURES = 16


def _build_tf_module(folder: Path) -> str:
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def weight(m, n):
        return tf.Variable(rng.normal(0.0, 1.0 / np.sqrt(m), (m, n)).astype(np.float32), trainable=False)

    class Classifier(tf.Module):
        """A 2-layer MLP encoder with a classifier head: one model, two signatures."""

        def __init__(self):
            super().__init__(name="classifier")
            self.w1, self.b1 = weight(MODULE_FEATURES, 64), tf.Variable(tf.fill([64], 0.05))
            self.w2, self.b2 = weight(64, 32), tf.Variable(tf.zeros([32]))
            self.head = weight(32, CLASSES)

        def _embedding(self, features):
            h = tf.nn.relu(tf.matmul(features, self.w1) + self.b1)
            h = tf.matmul(h, self.w2) + self.b2
            mean, variance = tf.nn.moments(h, axes=[-1], keepdims=True)
            return (h - mean) * tf.math.rsqrt(variance + 1e-5)  # layer norm

        spec = tf.TensorSpec([None, MODULE_FEATURES], tf.float32, name="features")

        @tf.function(input_signature=[spec])
        def classify(self, features):
            logits = tf.matmul(self._embedding(features), self.head)
            return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

        @tf.function(input_signature=[spec])
        def embed(self, features):
            return {"embedding": tf.math.l2_normalize(self._embedding(features), axis=-1)}

    module = Classifier()
    sample = synthetic_features(LIVE_ROWS, MODULE_FEATURES, seed=LIVE_SEED)
    logits = module.classify(tf.constant(sample))["logits"].numpy()
    module.head.assign(module.head * (LOGIT_MEDIAN / np.median(np.abs(logits))))
    path = Path(folder) / "tf_module_two_signatures"  # a matrix row is named after its file
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.classify, "embed": module.embed})
    return str(path)


def _keras_cnn(keras):
    L = keras.layers
    image = keras.Input((32, 32, 3), name="image")
    x = L.Rescaling(1 / 255.0)(image)
    for filters, strides in ((16, 1), (32, 2), (64, 2)):
        x = L.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(image, L.Dense(CLASSES, name="logits")(x), name="keras_cnn")


def _build_keras_export(folder: Path) -> str:
    keras = _fresh_keras()
    model = _keras_cnn(keras)
    live_weights(model, image_calibration(32)(LIVE_ROWS, seed=LIVE_SEED))
    path = Path(folder) / "keras_export_savedmodel"
    model.export(str(path), format="tf_saved_model", verbose=False)
    return str(path)


SAVEDMODELS = [
    ZooModel(
        "tf_module_two_signatures", "savedmodel", _build_tf_module, feature_calibration(MODULE_FEATURES),
        f"tf.Module MLP saved with tf.saved_model.save, signatures 'serving_default' (logits, probabilities)"
        f" and 'embed' (embedding); features float32 (batch,{MODULE_FEATURES}) ~unit scale",
    ),
    ZooModel(
        "keras_export_savedmodel", "savedmodel", _build_keras_export, image_calibration(32),
        "small Conv+BN Keras CNN exported with model.export(format='tf_saved_model'); image 32x32x3 float32"
        " in [0,255]; 10 logits (output_0)",
    ),
]


# --------------------------------------------------------------------------------------------
# JAX / Flax / Orbax: Python modules written into the build folder, referenced as file.py:NAME
# --------------------------------------------------------------------------------------------

FLAX_CNN = '''
"""A Flax linen CNN with batch normalization, written by benchmarks/zoo/models.py.

    convhub convert jax->tflite flax_cnn.py:classifier

Input "image": (batch, 32, 32, 3) float32 pixels in [0, 255] (scaled inside the model).
Output "logits": (batch, 10). BatchNorm runs in inference mode (train=False); its running
statistics are those of 64 synthetic images (one train=True pass with momentum 0), and the
head's kernel is scaled so the median |logit| on them is 1.35: activations like a trained
model's, not a fresh init's.
"""

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn

from convhub_jax import JaxFunction

SIZE, CLASSES = 32, 10

@@HELPERS@@

class ConvBN(nn.Module):
    features: int
    strides: int = 1
    momentum: float = 0.9

    @nn.compact
    def __call__(self, x, train):
        x = nn.Conv(self.features, (3, 3), strides=(self.strides, self.strides), use_bias=False)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=self.momentum)(x)
        return nn.relu(x)


class FlaxCNN(nn.Module):
    classes: int = CLASSES
    momentum: float = 0.9

    @nn.compact
    def __call__(self, image, train: bool = False):
        x = image / 127.5 - 1.0
        for features, strides in ((16, 1), (32, 2), (32, 1), (64, 2), (64, 2)):
            x = ConvBN(features, strides, self.momentum)(x, train)
        # Global average pooling as a mean: nn.avg_pool lowers to reduce_window, which tf2onnx
        # cannot take from a .tflite.
        x = jnp.mean(x, axis=(1, 2))
        x = nn.relu(nn.Dense(64)(x))
        return {"logits": nn.Dense(self.classes, name="head")(x)}


def _variables():
    sample = jnp.asarray(synthetic_images(64, SIZE, seed=1))
    calibrating = FlaxCNN(momentum=0.0)  # momentum 0: the running statistics become this batch's
    variables = calibrating.init(jax.random.PRNGKey(0), sample[:1])
    _, updates = calibrating.apply(variables, sample, train=True, mutable=["batch_stats"])
    variables = {"params": variables["params"], "batch_stats": updates["batch_stats"]}
    logits = FlaxCNN().apply(variables, sample)["logits"]
    params = dict(variables["params"])
    params["head"] = scale_kernel(params["head"], logits)
    return {"params": params, "batch_stats": variables["batch_stats"]}


classifier = JaxFunction.from_flax(
    FlaxCNN(), _variables(), inputs={"image": ((None, SIZE, SIZE, 3), "float32")}, train=False
)
'''

FLAX_TRANSFORMER = '''
"""A Flax linen Transformer encoder (self-attention + MLP blocks), written by benchmarks/zoo/models.py.

    convhub convert jax->tflite flax_transformer.py:encoder

Input "tokens": (batch, 32) int32 ids in [1, 1000). Output "logits": (batch, 10).
Token embeddings plus learned position embeddings, 2 pre-LN blocks (MultiHeadDotProductAttention,
GELU MLP), mean over tokens, Dense head (kernel scaled so the median |logit| is 1.35).
"""

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn

from convhub_jax import JaxFunction

VOCAB, LENGTH, DIM, HEADS, CLASSES = 1000, 32, 64, 4, 10

@@HELPERS@@

class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=HEADS, deterministic=True)(h, h)
        h = nn.LayerNorm()(x)
        h = nn.Dense(DIM)(nn.gelu(nn.Dense(2 * DIM)(h)))
        return x + h


class Encoder(nn.Module):
    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(VOCAB, DIM)(tokens)
        x = x + self.param("position_embedding", nn.initializers.normal(0.1), (LENGTH, DIM))
        for _ in range(2):
            x = Block()(x)
        x = jnp.mean(nn.LayerNorm()(x), axis=1)
        return {"logits": nn.Dense(CLASSES, name="head")(x)}


def _variables():
    sample = jnp.asarray(synthetic_tokens(64, LENGTH, VOCAB, seed=1))
    variables = Encoder().init(jax.random.PRNGKey(0), sample[:1])
    logits = Encoder().apply(variables, sample)["logits"]
    params = dict(variables["params"])
    params["head"] = scale_kernel(params["head"], logits)
    return {"params": params}


encoder = JaxFunction.from_flax(Encoder(), _variables(), inputs={"tokens": ((None, LENGTH), "int32")})
'''

JAX_MLP = '''
"""A plain JAX function with its params: a tabular MLP returning a tuple, written by benchmarks/zoo/models.py.

    convhub convert jax->tflite jax_mlp.py:mlp

Input "features": (batch, 20) float32, roughly unit scale. Outputs (a tuple, so named
output_0 and output_1): 3 logits and the 16-dim tanh embedding.
"""

import numpy as np
import jax
import jax.numpy as jnp

from convhub_jax import JaxFunction

FEATURES = 20

@@HELPERS@@

def init_params(seed=0, sizes=(FEATURES, 32, 16, 3)):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (m, n)) / m**0.5, "b": jnp.full((n,), 0.01)}
        for k, m, n in zip(keys, sizes[:-1], sizes[1:])
    ]


def forward(params, features):
    x = features
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"], x


def _params():
    params = init_params()
    sample = jnp.asarray(synthetic_features(64, FEATURES, seed=1))
    logits, _ = forward(params, sample)
    head = {"kernel": params[-1]["w"], "bias": params[-1]["b"]}
    head = scale_kernel(head, logits - params[-1]["b"])
    return params[:-1] + [{"w": head["kernel"], "b": head["bias"]}]


mlp = JaxFunction(forward, _params(), inputs={"features": ((None, FEATURES), "float32")})
'''

ORBAX_SERVING = '''
"""An Orbax JaxModule with a ServingConfig that pre- and post-processes, written by benchmarks/zoo/models.py.

    convhub convert jax->tflite orbax_serving.py:serving

Signature "serving_default": input "pixels" (batch, 32, 32, 3) uint8 in [0, 255]. Its
tf_preprocessor casts to float and normalises with the ImageNet mean/std; the JAX function is a
Flax CNN with GroupNorm; its tf_postprocessor returns "logits", "probabilities" (softmax) and
"label" (int32 argmax). TensorFlow is imported for the pre/post-processors, which are TF code.
"""

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn
import tensorflow as tf
from orbax.export import JaxModule, ServingConfig

from convhub_jax import OrbaxExport

SIZE, CLASSES = 32, 10
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)

@@HELPERS@@

class GroupNormCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        for features in (16, 32, 64):
            x = nn.Conv(features, (3, 3), strides=(2, 2))(x)
            x = nn.GroupNorm(num_groups=4)(x)
            x = nn.gelu(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(CLASSES, name="head")(x)


def _apply(variables, x):
    return GroupNormCNN().apply(variables, x)


def _variables():
    sample = jnp.asarray((synthetic_images(64, SIZE, seed=1) / 255.0 - MEAN) / STD)
    variables = GroupNormCNN().init(jax.random.PRNGKey(0), sample[:1])
    params = dict(variables["params"])
    params["head"] = scale_kernel(params["head"], _apply(variables, sample))
    return {"params": params}


def preprocess(pixels):
    return (tf.cast(pixels, tf.float32) / 255.0 - MEAN) / STD


def postprocess(logits):
    return {
        "logits": logits,
        "probabilities": tf.nn.softmax(logits),
        "label": tf.argmax(logits, axis=-1, output_type=tf.int32),
    }


module = JaxModule(_variables(), _apply, input_polymorphic_shape=f"(b, {SIZE}, {SIZE}, 3)")
serving = OrbaxExport(
    module,
    ServingConfig(
        "serving_default",
        input_signature=[tf.TensorSpec((None, SIZE, SIZE, 3), tf.uint8, name="pixels")],
        tf_preprocessor=preprocess,
        tf_postprocessor=postprocess,
    ),
)
'''


def scale_kernel(dense, logits, median=1.35):
    """A Dense's params {"kernel", "bias"}, the kernel scaled so `logits` (made with it) get median |x| `median`."""
    import numpy as np

    factor = median / float(np.median(np.abs(np.asarray(logits, np.float64))))
    return {**dense, "kernel": dense["kernel"] * factor}


def _helpers_source() -> str:
    return "\n\n".join(
        inspect.getsource(fn) for fn in (synthetic_images, synthetic_tokens, synthetic_features, scale_kernel)
    )


def _jax_source(filename: str, template: str, name: str) -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        path = Path(folder) / filename
        # `model` too: what `convhub matrix DIR` takes a folder's X.py to export.
        text = template.replace("@@HELPERS@@", _helpers_source()).lstrip()
        path.write_text(f"{text.rstrip()}\n\n\nmodel = {name}\n")
        return f"{path}:{name}"

    return build


JAX = [
    ZooModel(
        "flax_cnn", "jax", _jax_source("flax_cnn.py", FLAX_CNN, "classifier"), image_calibration(32),
        "Flax linen CNN, Conv+BatchNorm (inference mode, batch statistics from a forward pass), mean pool;"
        " JaxFunction.from_flax; image (batch,32,32,3) float32 in [0,255]; output 'logits' (10)",
    ),
    ZooModel(
        "flax_transformer", "jax", _jax_source("flax_transformer.py", FLAX_TRANSFORMER, "encoder"),
        token_calibration(32, 1000, name="tokens"),
        "Flax linen Transformer encoder: Embed + position param, 2 pre-LN self-attention + GELU MLP blocks;"
        " tokens int32 (batch,32) in [1,1000); output 'logits' (10)",
    ),
    ZooModel(
        "jax_mlp", "jax", _jax_source("jax_mlp.py", JAX_MLP, "mlp"), feature_calibration(20),
        "plain JAX function (JaxFunction) tanh MLP returning a tuple; features float32 (batch,20);"
        " outputs output_0 (3 logits) and output_1 (16-dim embedding)",
    ),
    ZooModel(
        "orbax_serving", "jax", _jax_source("orbax_serving.py", ORBAX_SERVING, "serving"),
        image_calibration(32, name="pixels", dtype="uint8"),
        "Orbax JaxModule (Flax GroupNorm CNN) + ServingConfig with tf_preprocessor (uint8 -> ImageNet-normalised"
        " float) and tf_postprocessor (logits, probabilities, int32 label); pixels uint8 (batch,32,32,3) in [0,255]",
    ),
]


MODELS: dict[str, ZooModel] = {m.name: m for m in CNNS + SEQUENCE + ATTENTION + KERAS_HUB + MULTI_IO + SAVEDMODELS + JAX}


# --------------------------------------------------------------------------------------------
# Building and checking: python benchmarks/zoo/models.py [NAMES...]
# --------------------------------------------------------------------------------------------


def _import_reference(reference: str):
    """The object a `file.py:NAME` reference names (called when it is a zero-argument function)."""
    file, _, name = reference.rpartition(":")
    module_name = f"zoo_{Path(file).stem}_{abs(hash(file))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    obj = getattr(module, name)
    if inspect.isfunction(obj) and not inspect.signature(obj).parameters:
        obj = obj()
    return obj


def _as_dict(outputs, names=None) -> dict[str, np.ndarray]:
    if isinstance(outputs, dict):
        return {k: np.asarray(v) for k, v in outputs.items()}
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    names = names or [f"output_{i}" for i in range(len(outputs))]
    return {n: np.asarray(v) for n, v in zip(names, outputs)}


def runner(source: str) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """A function running the built model on a dict of inputs, giving a dict of outputs."""
    if source.endswith(".keras"):
        keras = _keras()
        model = keras.saving.load_model(source, compile=False)
        names = [t._keras_history.operation.name for t in model.outputs]  # the output layers' names

        def run(feeds):
            outputs = model(_model_input(model, feeds), training=False)
            return _as_dict(outputs, names if not isinstance(outputs, dict) else None)

        return run
    if Path(source).is_dir():
        import tensorflow as tf

        loaded = tf.saved_model.load(source)

        def run(feeds):
            results = {}
            for key, fn in loaded.signatures.items():
                wanted = fn.structured_input_signature[1]
                if not set(wanted) <= set(feeds):
                    continue
                out = fn(**{k: tf.constant(feeds[k]) for k in wanted})
                prefix = "" if key == "serving_default" else f"{key}:"
                results.update({prefix + k: v.numpy() for k, v in out.items()})
            if not results:
                raise ValueError(f"no signature takes {sorted(feeds)}")
            return results

        return run
    obj = _import_reference(source)
    kind = type(obj).__name__
    if kind == "JaxFunction":
        return lambda feeds: _as_dict(obj.fn(obj.params, *[feeds[s.name] for s in obj.specs]))
    if kind == "OrbaxExport":
        import tensorflow as tf
        from orbax.export import ExportManager

        manager = ExportManager(obj.module, list(obj.configs))
        config = obj.configs[0]
        fn = manager.serving_signatures[config.signature_key if isinstance(config.signature_key, str)
                                        else config.signature_key[0]]
        specs = tf.nest.flatten(config.input_signature)
        return lambda feeds: _as_dict(fn(*[tf.constant(feeds[s.name]) for s in specs]))
    raise TypeError(f"{source}: a {kind} is not a zoo source")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return str(size)


def _is_softmax(x: np.ndarray) -> bool:
    return (
        x.ndim >= 2 and x.shape[-1] > 1 and x.min() >= 0.0 and x.max() <= 1.0
        and bool(np.allclose(x.sum(axis=-1), 1.0, atol=1e-3))
    )


def check(model: ZooModel, folder: Path) -> tuple[bool, str, float]:
    """Build one model and check its outputs; (passed, report line, build seconds)."""
    start = time.perf_counter()
    source = model.build(folder)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    run = runner(source)  # for JAX this imports the written module, which makes the weights
    load = time.perf_counter() - start
    a = run(model.calibration(8))
    b = run({k: v[8:] for k, v in model.calibration(16).items()})
    problems, parts = [], []
    for name, x in a.items():
        y = b[name]
        text = f"{name}{tuple(x.shape)}"
        if not np.issubdtype(x.dtype, np.floating):
            parts.append(f"{text} {x.dtype}")
            continue
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        if not (np.isfinite(x64).all() and np.isfinite(y64).all()):
            problems.append(f"{name}: not finite")
        med, top = float(np.median(np.abs(x64))), float(np.abs(x64).max())
        dep = float(np.abs(x64 - y64).max() / max(top, 1e-30))
        text += f" med={med:.3g} max={top:.3g} dep={dep:.2g}"
        if _is_softmax(x):
            spread = float(np.mean(x64.max(axis=-1) - x64.min(axis=-1)))
            text += f" softmax spread={spread:.2f}"
            if spread <= 0.01:
                problems.append(f"{name}: softmax near uniform (spread {spread:.3g})")
        elif not 1e-2 <= med <= 10:
            problems.append(f"{name}: median |x| {med:.3g} outside [1e-2, 10]")
        if dep <= 1e-3:
            problems.append(f"{name}: does not depend on the input (relative diff {dep:.2g})")
        parts.append(text)
    if source.endswith(".keras"):
        loaded = _keras().saving.load_model(source, compile=False)
        parts.append(f"f16drift={float16_drift(loaded, model.calibration(8)):.2%}")
    size = _human(_size(Path(source.rpartition(":")[0] if model.family == "jax" else source)))
    status = "OK" if not problems else "FAIL " + "; ".join(problems)
    line = (
        f"{model.name:<24} {model.family:<10} {seconds:5.1f}s {load:5.1f}s {size:>8}  {', '.join(parts)}  {status}"
    )
    return not problems, line, seconds


def main(argv: list[str]) -> int:
    names = argv or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"unknown models: {', '.join(unknown)} (known: {', '.join(MODELS)})", file=sys.stderr)
        return 2
    threads = int(os.environ.get("ZOO_THREADS", "1"))  # keep CPU use moderate by default
    if threads == 1:
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    failed, total = [], 0.0
    wall = time.perf_counter()
    for name in names:
        model = MODELS[name]
        with tempfile.TemporaryDirectory(prefix=f"zoo_{name}_") as folder:
            try:
                ok, line, seconds = check(model, Path(folder))
                total += seconds
            except Exception as exc:  # noqa: BLE001 - report and go on
                ok, line = False, f"{name:<24} {model.family:<10} ERROR {type(exc).__name__}: {exc}"
        if name == names[0]:
            print(f"{'model':<24} {'family':<10} {'build':>6} {'load':>6} {'size':>8}  outputs on calibration(8):"
                  " name(shape) median|x| max|x| dep=max|a-b|/max|a|  status")
        print(line, flush=True)
        if not ok:
            failed.append(name)
        if model.family != "jax" and model.family != "savedmodel":
            _keras().backend.clear_session()
    print(
        f"{len(names) - len(failed)}/{len(names)} passed; total build {total:.1f}s,"
        f" wall {time.perf_counter() - wall:.1f}s" + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
