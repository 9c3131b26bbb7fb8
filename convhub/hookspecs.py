# mypy: disable-error-code="empty-body"
# (hook specifications: pluggy reads their signatures and docstrings; plugins give the bodies)
"""The hooks a convhub plugin implements. Built-in plugins use exactly these.

A plugin is a module (or object) registered under the `convhub` entry-point group whose
functions are marked with `convhub.hookimpl`. Each hook returns a list of frozen dataclasses
from `convhub.types`; convhub stamps each with the name of the plugin that returned it.
Plugin modules must not import heavy frameworks at import time: do it inside the callables.
"""

from __future__ import annotations

from typing import Iterable

import pluggy

from convhub.types import Conversion, Format, Option, Runner

hookspec = pluggy.HookspecMarker("convhub")


@hookspec
def convhub_formats() -> Iterable[Format]:
    """Formats this plugin defines: the nodes of the routing graph.

    Example::

        @convhub.hookimpl
        def convhub_formats():
            return [Format("tflm", "C source for TensorFlow Lite Micro", suffix=".cc")]
    """


@hookspec
def convhub_conversions() -> Iterable[Conversion]:
    """Conversions this plugin performs: the edges of the routing graph.

    Example::

        @convhub.hookimpl
        def convhub_conversions():
            return [Conversion("tflite", "tflm", convert=write_c_array, cost=0.1)]
    """


@hookspec
def convhub_runners() -> Iterable[Runner]:
    """Runners this plugin offers: how to run an artifact of a format on NumPy inputs.

    Example::

        @convhub.hookimpl
        def convhub_runners():
            return [Runner("onnx", load=load_onnxruntime_session, requires=("onnxruntime",))]
    """


@hookspec
def convhub_options() -> Iterable[Option]:
    """Options this plugin's formats and conversions read, with their types and ranges: the
    command line gets a flag for each, and every value is checked before any work starts.

    Example::

        @convhub.hookimpl
        def convhub_options():
            return [Option("tflm_array_name", "name of the C array", flag="--tflm-array-name")]
    """
