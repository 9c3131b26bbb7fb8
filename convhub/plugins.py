"""Loading plugins and collecting what they contribute, each object stamped with its plugin.

One broken plugin never takes the tool down: a plugin that fails to import, or contributes
something invalid, is reported in one warning naming it and the reason, and everything else
keeps working. CONVHUB_STRICT_PLUGINS=1 turns those warnings into errors (for CI and plugin
authors); CONVHUB_DISABLE_PLUGINS=a,b (or `convhub --disable-plugin a`) keeps plugins from
being imported at all.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy

from convhub import hookspecs
from convhub.errors import PluginError
from convhub.graph import RouteGraph
from convhub.types import Conversion, Format, Option, Runner

ENTRY_POINT_GROUP = "convhub"
BUILTIN_PLUGINS = ("tensorflow", "tflite", "jax", "onnx", "tfjs", "tfserving")  # loaded first: they win name clashes
hookimpl = pluggy.HookimplMarker("convhub")


@dataclass
class PluginInfo:
    name: str
    version: str | None
    formats: list[str] = field(default_factory=list)
    conversions: list[str] = field(default_factory=list)
    runners: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    broken: str = ""  # why this plugin misbehaved in this process (the first reason), if it did

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def strict() -> bool:
    return os.environ.get("CONVHUB_STRICT_PLUGINS", "") not in ("", "0")


def disabled_plugins() -> set[str]:
    return {n.strip() for n in os.environ.get("CONVHUB_DISABLE_PLUGINS", "").split(",") if n.strip()}


def report_problem(message: str, problems: list[str] | None = None) -> None:
    """A plugin problem: an error in strict mode, else one warning on stderr."""
    if strict():
        raise PluginError(message)
    if problems is not None:
        problems.append(message)
    print(f"convhub: warning: {message}", file=sys.stderr)


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    order = {name: i for i, name in enumerate(BUILTIN_PLUGINS)}
    return sorted(found, key=lambda ep: (order.get(ep.name, len(order)), ep.name))


def plugin_manager(*, entry_points: bool = True, problems: list[str] | None = None) -> pluggy.PluginManager:
    """A plugin manager with convhub's hook specs and, by default, every installed plugin that
    is not disabled."""
    pm = pluggy.PluginManager("convhub")
    pm.add_hookspecs(hookspecs)
    if not entry_points:
        return pm
    for name in disabled_plugins():
        pm.set_blocked(name)
    for ep in _entry_points():
        if pm.is_blocked(ep.name):
            continue
        if pm.get_plugin(ep.name) is not None:
            report_problem(f"two installed plugins are named {ep.name!r}; the second ({ep.value}) is skipped", problems)
            continue
        try:
            register(pm, ep.load(), ep.name, problems)
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of third-party code
            report_problem(f"plugin {ep.name!r} failed to load and is skipped: {type(exc).__name__}: {exc}", problems)
    return pm


def _distribution(plugin: str) -> str:
    """'distribution NAME VERSION' behind an entry-point plugin, or how it was registered."""
    ep = next((ep for ep in _entry_points() if ep.name == plugin), None)
    if ep is None or ep.dist is None:
        return "registered in code"
    return f"distribution {ep.dist.name} {ep.dist.version}"


def _unknown_hooks(plugin: object) -> list[str]:
    """Hook implementations whose names no hook spec has (a misspelled `convhub_format`)."""
    import difflib

    specs = [n for n in dir(hookspecs) if n.startswith("convhub_")]
    found = []
    for name in dir(plugin):
        if name.startswith("convhub_") and name not in specs and hasattr(getattr(plugin, name, None), "convhub_impl"):
            near = difflib.get_close_matches(name, specs, n=1)
            found.append(f"{name!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    return found


def register(pm: pluggy.PluginManager, plugin: object, name: str, problems: list[str] | None) -> bool:
    """Register one plugin, checked against the hook specs; a problem is reported, not raised."""
    unknown = _unknown_hooks(plugin)
    if unknown:
        report_problem(f"plugin {name!r} is skipped: it implements no hook named {', '.join(unknown)}", problems)
        return False
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        report_problem(f"plugin {name!r} is skipped: {exc}", problems)
        return False
    return True


def _plugin_versions() -> dict[str, str | None]:
    """Versions of the distributions behind entry-point plugins, by plugin name."""
    return {ep.name: (ep.dist.version if ep.dist else None) for ep in _entry_points()}


class Registry:
    """Everything the registered plugins contribute, with the plugin behind each object."""

    def __init__(self, pm: pluggy.PluginManager, problems: list[str] | None = None):
        self.plugin_manager = pm
        self.problems: list[str] = problems if problems is not None else []
        versions = _plugin_versions()
        self.plugins: dict[str, PluginInfo] = {
            # In registration order (built-ins first), which decides who keeps a clashing name.
            name: PluginInfo(name, versions.get(name)) for name, plugin in pm.list_name_plugin() if plugin is not None
        }
        self.formats: dict[str, Format] = {}
        self.conversions: list[Conversion] = []
        self.runners: dict[str, list[Runner]] = {}
        offered = {name: self._contributions(name) for name in self.plugins}
        contributions = {name: c for name, c in offered.items() if c is not None}
        for plugin, (formats, *_) in list(contributions.items()):
            # A format name another plugin provides is refused with the whole plugin: half of
            # it (its edges into the other plugin's format) would silently shadow that one.
            taken = next((f for f in formats if f.name in self.formats), None)
            if taken is not None:
                owner = self.formats[taken.name].plugin
                self._problem(f"format {taken.name!r} of plugin {plugin!r} ({_distribution(plugin)}) is already provided by"
                              f" plugin {owner!r} ({_distribution(owner)}); plugin {plugin!r} is skipped")
                self.plugins[plugin].broken = f"its format {taken.name!r} clashes with plugin {owner!r}'s"
                del contributions[plugin]
                continue
            for fmt in formats:
                self.formats[fmt.name] = fmt
                self.plugins[plugin].formats.append(fmt.name)
        self.options: dict[str, Option] = {}
        for plugin, (_, conversions, runners, options) in contributions.items():
            for option in options:
                if option.key in self.options:
                    self._problem(f"option {option.key!r} is declared by both plugin {self.options[option.key].plugin!r}"
                                  f" and plugin {plugin!r}; {plugin!r}'s is ignored")
                    continue
                self.options[option.key] = option
                self.plugins[plugin].options.append(option.key)
            for conv in conversions:
                same = next((c for c in self.conversions if c.name == conv.name), None)
                unknown = [end for end in (conv.source, conv.target) if end not in self.formats]
                if same is not None:
                    self._problem(f"conversion {conv.name!r} is defined by both plugin {same.plugin!r}"
                                  f" and plugin {plugin!r}; {plugin!r}'s is ignored")
                elif unknown:
                    self._problem(f"plugin {plugin!r}: conversion {conv.name!r} uses unknown format {unknown[0]!r}; ignored")
                else:
                    self.conversions.append(conv)
                    self.plugins[plugin].conversions.append(conv.name)
            for runner in runners:
                if runner.format not in self.formats:
                    self._problem(f"plugin {plugin!r}: runner {runner.name!r} runs unknown format {runner.format!r}; ignored")
                    continue
                self.runners.setdefault(runner.format, []).append(runner)
                self.plugins[plugin].runners.append(runner.name)
        self.graph = RouteGraph(self.conversions, on_broken=self.mark_broken)

    def mark_broken(self, plugin: str, reason: str) -> None:
        """A plugin misbehaved (a hook raised, its worker crashed): said once, kept for `plugins`."""
        info = self.plugins.get(plugin)
        if info is None or info.broken:
            return
        info.broken = reason
        self._problem(f"plugin {plugin!r} is broken: {reason}")

    def detect(self, thing: Any) -> list[Format]:
        """The formats whose cheap `detect` claims `thing`; a detect() that raises claims nothing
        and marks its plugin broken, so one bad plugin cannot stop every conversion."""
        found = []
        for fmt in self.formats.values():
            if fmt.detect is None:
                continue
            try:
                if fmt.detect(thing):
                    found.append(fmt)
            except Exception as exc:  # noqa: BLE001 - third-party code
                self.mark_broken(fmt.plugin, f"detect() of format {fmt.name!r} raised {type(exc).__name__}: {exc}")
        return found

    def detect_format(self, thing: Any) -> Format:
        """The one format of a path or object, or InputError saying there is none or several."""
        import os

        from convhub.errors import InputError

        found = self.detect(thing)
        if len(found) == 1:
            return found[0]
        what = str(thing) if isinstance(thing, (str, os.PathLike)) else f"a {type(thing).__name__} object"
        if not found:
            raise InputError(f"cannot tell which format {what} is; name it, e.g. keras→tflite or --from keras")
        raise InputError(f"{what} could be any of {', '.join(f.name for f in found)}; name the source format with --from")

    def _problem(self, message: str) -> None:
        report_problem(message, self.problems)

    def _contributions(self, plugin: str) -> tuple[list[Format], list[Conversion], list[Runner], list[Option]] | None:
        """All a plugin contributes, stamped with its name; None (and one warning) if any of it is invalid."""
        out: list[list[Any]] = []
        for hook_name, kind in (("convhub_formats", Format), ("convhub_conversions", Conversion),
                                ("convhub_runners", Runner), ("convhub_options", Option)):
            items: list[Any] = []
            for impl in getattr(self.plugin_manager.hook, hook_name).get_hookimpls():
                if impl.plugin_name != plugin:
                    continue
                try:
                    returned = list(impl.function() or ())
                except Exception as exc:  # noqa: BLE001 - third-party code
                    self._problem(f"plugin {plugin!r} is skipped: {hook_name}() failed: {type(exc).__name__}: {exc}")
                    return None
                wrong = next((x for x in returned if not isinstance(x, kind)), None)
                if wrong is not None:
                    self._problem(f"plugin {plugin!r} is skipped: {hook_name}() returned a {type(wrong).__name__},"
                                  f" expected {kind.__name__}")
                    return None
                items += [dataclasses.replace(x, plugin=plugin) for x in returned]
            out.append(items)
        formats, conversions, runners, options = out
        return formats, conversions, runners, options

    def format(self, name: str) -> Format:
        """The format a user's name stands for: its name or an alias, in any case; else
        UsageError with the closest name."""
        from convhub.errors import UsageError, did_you_mean

        fmt = self.formats.get(name) or self.formats.get(str(name).lower()) or self.aliases().get(str(name).lower())
        if fmt is not None:
            return fmt
        known = ", ".join(sorted(self.formats)) or "none"
        near = did_you_mean(str(name), [*self.formats, *self.aliases()])
        raise UsageError(f"unknown format {name!r}", hint=f"{near + ' ' if near else ''}known: {known}")

    def aliases(self) -> dict[str, Format]:
        """Every alias a format declares, lower-case; a name or an earlier alias wins a clash."""
        found: dict[str, Format] = {}
        for fmt in self.formats.values():
            for alias in fmt.aliases:
                if alias not in self.formats:
                    found.setdefault(alias, fmt)
        return found

    def runner(self, fmt: str) -> Runner | None:
        """The first runner for a format whose modules are installed, here or in its toolchain."""
        from convhub.graph import missing_modules
        from convhub.toolchains import unavailable

        for runner in self.runners.get(fmt, []):
            if not missing_modules(runner.requires) or (
                    runner.toolchain is not None and unavailable(runner.toolchain) is None):
                return runner
        return None


def build_registry(plugins: Iterable[tuple[str, object]] = (), *, entry_points: bool = True) -> Registry:
    """A registry of the installed plugins plus `plugins` ((name, plugin object) pairs)."""
    problems: list[str] = []
    pm = plugin_manager(entry_points=entry_points, problems=problems)
    for name, plugin in plugins:
        register(pm, plugin, name, problems)
    return Registry(pm, problems)


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of all installed plugins, built once per process."""
    return build_registry()
