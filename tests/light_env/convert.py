"""Run by tests/test_light_install.py with the light environment's Python (today's JAX, convhub
installed with `uv pip install '.[jax]'`): converts the NNX CNN and the linen MLP to tflite, onnx
and tfjs with `convhub.convert(..., example_inputs=(x,))` and prints one JSON object: each result,
and what the second conversion spent on toolchains (finding them, linking the bridge, encoding
calls as JSON), then how long a worker of each toolchain takes to start and answer, next to one
of this environment.

    python tests/light_env/convert.py OUT_DIR
"""

import json
import platform
import sys
import time
from pathlib import Path

import convhub
from convhub import toolchains, wire, workers
from convhub.plugins import default_registry

sys.path.insert(0, str(Path(__file__).parent))
import models  # noqa: E402

TARGETS = ["tflite", "onnx", "tfjs"]


def timed(module, name, spent):
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - started

    setattr(module, name, wrapper)


def worker_start(toolchain):
    """Seconds for a new worker to start and answer one call (a toolchain's, or this Python's)."""
    pool = workers.Pool(jobs=1)
    started = time.perf_counter()
    try:
        pool.call(platform.python_version, toolchain=toolchain)
        return time.perf_counter() - started
    finally:
        pool.shutdown()


def main(out: Path) -> None:
    report = {}
    started = time.perf_counter()
    cnn = convhub.convert(models.nnx_cnn(), to=TARGETS, output=out / "cnn", example_inputs=models.image_inputs)
    report["first_seconds"] = time.perf_counter() - started
    spent = {}
    for module, name in ((toolchains, "ensure"), (toolchains, "unmet"), (toolchains, "unavailable"), (toolchains, "bridge"),
                         (wire, "encode"), (wire, "loads")):
        timed(module, name, spent)
    started = time.perf_counter()
    mlp = convhub.convert(models.linen_mlp(), to=TARGETS, output=out / "mlp", example_inputs=models.feature_inputs)
    report["second_seconds"] = time.perf_counter() - started
    report["second_toolchain_seconds"] = spent
    report["results"] = {"cnn": [r.to_json() for r in cnn], "mlp": [r.to_json() for r in mlp]}
    workers.shutdown()
    registry = default_registry()
    used = {c.toolchain for c in registry.conversions if c.toolchain is not None}
    used |= {r.toolchain for rs in registry.runners.values() for r in rs if r.toolchain is not None}
    report["worker_start_seconds"] = {"this environment": worker_start(None),
                                      **{t.name: worker_start(t) for t in sorted(used, key=lambda t: t.name)}}
    print(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
