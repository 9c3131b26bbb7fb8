"""Plugin registration: built-ins arrive through entry points, test plugins through the same hooks."""

import pytest

from convhub import hookimpl
from convhub.errors import PluginError
from convhub.plugins import Registry, build_registry, plugin_manager
from convhub.types import Conversion, Format, Runner


class TinyPlugin:
    """A plugin registered from the tests: a new format with an edge from tflite and a runner."""

    @hookimpl
    def convhub_formats(self):
        return [Format("tinyfmt", "a format only this test knows", suffix=".tiny")]

    @hookimpl
    def convhub_conversions(self):
        return [Conversion("tflite", "tinyfmt", convert=lambda a, d, o: None, cost=0.5)]

    @hookimpl
    def convhub_runners(self):
        return [Runner("tinyfmt", load=lambda artifact: None, name="tiny-runner")]


def test_builtin_plugins_register_through_entry_points():
    registry = Registry(plugin_manager())
    assert {"tensorflow", "tflite"} <= set(registry.plugins)
    assert registry.plugins["tflite"].version == "0.1.0"
    assert registry.formats["keras"].plugin == "tensorflow"
    assert registry.formats["tflite"].plugin == "tflite"
    assert {c.name: c.plugin for c in registry.conversions}.items() >= {
        ("keras->savedmodel", "tensorflow"),
        ("savedmodel->tflite", "tflite"),
    }
    assert registry.graph.best("keras", "tflite").formats == ["keras", "savedmodel", "tflite"]


def test_a_plugin_registered_from_a_test_extends_the_graph_and_is_stamped():
    pm = plugin_manager()
    pm.register(TinyPlugin(), name="tiny")
    registry = Registry(pm)
    assert registry.formats["tinyfmt"].plugin == "tiny"
    route = registry.graph.best("keras", "tinyfmt")
    assert route.formats == ["keras", "savedmodel", "tflite", "tinyfmt"]
    assert [h.plugin for h in route.hops] == ["tensorflow", "tflite", "tiny"]
    assert registry.plugins["tiny"].formats == ["tinyfmt"]
    assert registry.plugins["tiny"].runners == ["tiny-runner"]
    assert registry.runners["tinyfmt"][0].plugin == "tiny"


def test_the_same_format_from_two_plugins_names_both(capsys):
    class Clash:
        @hookimpl
        def convhub_formats(self):
            return [Format("tflite", "another tflite")]

    registry = build_registry([("clash", Clash())])
    message = (
        "format 'tflite' of plugin 'clash' (registered in code) is already provided by plugin 'tflite' "
        "(distribution convhub-tflite 0.1.0); plugin 'clash' is skipped"
    )
    assert registry.problems == [message]
    assert capsys.readouterr().err == f"convhub: warning: {message}\n"
    assert registry.formats["tflite"].plugin == "tflite"  # the built-in keeps the name


def test_a_plugin_returning_the_wrong_type_is_skipped_with_one_warning(capsys):
    class Wrong:
        @hookimpl
        def convhub_formats(self):
            return [Format("fine", "a valid format")]

        @hookimpl
        def convhub_runners(self):
            return [{"name": "dict-runner"}]

    registry = build_registry([("wrong", Wrong())])
    assert registry.problems == ["plugin 'wrong' is skipped: convhub_runners() returned a dict, expected Runner"]
    assert "fine" not in registry.formats and registry.graph.best("keras", "tflite")


def test_strict_mode_turns_plugin_problems_into_errors(monkeypatch):
    class Dangling:
        @hookimpl
        def convhub_conversions(self):
            return [Conversion("keras", "nowhere", convert=lambda a, d, o: None)]

    assert build_registry([("dangling", Dangling())]).problems == [
        "plugin 'dangling': conversion 'keras->nowhere' uses unknown format 'nowhere'; ignored"
    ]
    monkeypatch.setenv("CONVHUB_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'dangling': conversion 'keras->nowhere' uses unknown format"):
        build_registry([("dangling", Dangling())])


def test_disabled_plugins_are_not_even_imported(monkeypatch):
    import sys

    monkeypatch.setenv("CONVHUB_DISABLE_PLUGINS", "tflite, tfjs")
    monkeypatch.delitem(sys.modules, "convhub_tflite", raising=False)
    registry = build_registry()
    assert "tflite" not in registry.plugins and "tflite" not in registry.formats
    assert "convhub_tflite" not in sys.modules
    assert "keras" in registry.formats
