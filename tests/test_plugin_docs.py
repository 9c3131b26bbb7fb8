"""docs/plugins.md stays true: every hook spec and every field is documented, and the minimal
plugin it shows really plugs in (as datasette tests its plugin docs)."""

import dataclasses
import inspect
import re
import types

import pytest

from convhub import hookspecs
from convhub import types as convhub_types
from convhub.plugins import build_registry
from conftest import ROOT

DOC = (ROOT / "docs" / "plugins.md").read_text()
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("convhub_")]


def test_there_are_hooks_to_document():
    assert set(HOOKS) == {"convhub_formats", "convhub_conversions", "convhub_runners", "convhub_options"}


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_spec_is_documented_with_its_exact_signature(hook):
    signature = str(inspect.signature(getattr(hookspecs, hook))).replace("'", "")
    assert f"### `{hook}{signature}`" in DOC


@pytest.mark.parametrize("kind", [convhub_types.Format, convhub_types.Conversion, convhub_types.Runner,
                                  convhub_types.Option, convhub_types.Toolchain])
def test_each_field_a_plugin_sets_is_documented(kind):
    block = re.search(rf"```python\n{kind.__name__}\((.*?)\n\)\n```", DOC, re.S)
    assert block, f"no {kind.__name__}(...) block in docs/plugins.md"
    fields = {f.name for f in dataclasses.fields(kind)} - {"plugin"}  # stamped by convhub, not set by plugins
    undocumented = {f for f in fields if not re.search(rf"\b{f}\b", block.group(1))}
    assert not undocumented


def test_the_minimal_plugin_in_the_docs_plugs_in():
    code = re.search(r"## A complete minimal plugin\n\n```python\n(.*?)```", DOC, re.S).group(1)
    module = types.ModuleType("convhub_tflite_copy")
    exec(compile(code, "docs/plugins.md", "exec"), module.__dict__)
    registry = build_registry([("tflite-copy", module)])
    assert registry.problems == []
    route = registry.graph.best("keras", "tflite-copy")
    assert route.formats == ["keras", "savedmodel", "tflite", "tflite-copy"]
    assert route.hops[-1].plugin == "tflite-copy" and registry.runner("tflite-copy").name == "litert"
