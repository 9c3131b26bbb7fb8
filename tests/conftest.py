import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["convhub.testing"]  # convhub dogfoods the kit it gives plugin authors

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parent.parent
CONVHUB = Path(sys.executable).parent / "convhub"  # the installed console script, as users run it

# convhub as a terminal's foreground job: SIGINT at its default. A process started from a shell
# without job control (`cmd &` in a script, some CI runners) inherits SIGINT ignored, and Python
# keeps it ignored, as it should: such a job is immune to Ctrl-C. The signal tests need the
# terminal's case, so this launcher resets SIGINT, then becomes convhub (same pid):
# [sys.executable, "-c", FOREGROUND, CONVHUB, *args].
FOREGROUND = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"


def run_cli(*args, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CONVHUB), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


HOSTILE = ROOT / "tests" / "plugins" / "convhub-hostile"


@pytest.fixture(scope="session")
def hostile_site(tmp_path_factory) -> Path:
    """The convhub-hostile test plugin (toy formats that convert in milliseconds, and converters
    that crash), installed from its own pyproject.toml into a folder to put on PYTHONPATH."""
    import shutil

    target = tmp_path_factory.mktemp("hostile-site")
    subprocess.run([shutil.which("uv"), "pip", "install", "--quiet", "--python", sys.executable, "--no-deps",
                    "--target", str(target), str(HOSTILE)], check=True, capture_output=True, timeout=300)
    return target


def assert_schema(payload: dict) -> dict:
    """`payload` is valid against the published JSON Schema of --json (docs/convhub.schema.json)."""
    import json

    import jsonschema

    schema = json.loads((ROOT / "docs" / "convhub.schema.json").read_text())
    jsonschema.validate(payload, schema, cls=jsonschema.Draft202012Validator)
    return payload


CHROMIUM = __import__("shutil").which("chromium") or __import__("shutil").which("chromium-browser")


def screenshot(page: Path, png: Path, size: str = "1200,1400") -> Path:
    """A PNG of an HTML page as headless Chromium renders it (skips the test without Chromium)."""
    if CHROMIUM is None:
        pytest.skip("no Chromium to screenshot the report (apt-get install chromium; .ci/run does)")
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={png.parent / 'chromium-profile'}",
         f"--screenshot={png}", f"--window-size={size}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    return png


def build_cnn(seed: int = 1):
    """Convolution, non-linearity and dense layers, with a dynamic batch dim."""
    import keras

    keras.utils.set_random_seed(seed)
    image = keras.Input(shape=(12, 12, 2), name="image")
    x = keras.layers.Conv2D(6, 3, activation="relu")(image)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="gelu")(x)
    return keras.Model(image, keras.layers.Dense(4, name="scores")(x))


@pytest.fixture(scope="session")
def cnn_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "cnn.keras"
    build_cnn().save(path)
    return path


def outlier_channel_model():
    """A hidden layer with one channel 300 times larger than the others, which the head does not
    read: per-tensor int8 activations (and uint8 weights) take their range from that channel and round
    the others, all the head reads, to a few steps (the outlier channels of real transformers do this).
    The kernel has 1,024 values, the fewest TF.js quantizes."""
    import keras

    keras.utils.set_random_seed(0)
    features = keras.Input((16,), name="features")
    wide, head = keras.layers.Dense(64, activation="relu", name="wide"), keras.layers.Dense(4, name="head")
    model = keras.Model(features, head(wide(features)))
    kernel, bias = wide.get_weights()
    kernel[:, 0] *= 300
    wide.set_weights([kernel, bias])
    kernel, bias = head.get_weights()
    kernel[0, :] = 0
    head.set_weights([kernel, bias])
    return model
