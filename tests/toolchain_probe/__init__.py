"""What tests/test_toolchains.py runs in a toolchain of its own: Python 3.11 and NumPy 2.2.6."""

from pathlib import Path

from convhub.types import Toolchain

HERE = Path(__file__).parent
PROBE = Toolchain("probe", ("numpy==2.2.6", "pluggy>=1.5"), HERE / "probe.txt", python="<3.12",
                  description="tests: another Python and NumPy")


def versions() -> tuple[str, str]:
    import platform

    import numpy

    return platform.python_version(), numpy.__version__


def double(arrays: dict, spec) -> tuple:
    return {name: value * 2 for name, value in arrays.items()}, spec


def refuse_input() -> None:
    from convhub.errors import InputError

    raise InputError("the probe refuses this input")


def crash() -> None:
    import os

    os.abort()
