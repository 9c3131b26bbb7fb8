"""The `convhub` command.

Exit codes: 0 success; 1 a conversion or a parity check failed; 2 bad usage or bad input;
141 stdout was closed early (`convhub formats | head -1`); 130/143 SIGINT/SIGTERM.
`--json` puts exactly one JSON object on stdout (docs/convhub.schema.json); everything meant
for people goes to stderr. Listing commands (formats, plugins, route, --help, completion)
import no ML framework.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from convhub.errors import ConvhubError, Interrupted, UsageError, did_you_mean
from convhub.jsonout import document, dump_json

ARROWS = ("→", "->")

# Each command's help starts with these.
EXAMPLES = {
    "convert": ["convhub convert keras→tflite model.keras -o model.tflite",
                "convhub convert model.keras --to tflite,onnx,tfjs -o out/",
                "convhub convert model.keras --to tflite --quantize int8 -o model.tflite",
                "convhub convert net.py:model --to onnx --via tflite -o model.onnx --json"],
    "check": ["convhub check model.keras model.tflite model.onnx",
              "convhub check saved_model/ model.tflite --inputs inputs.npz --json"],
    "route": ["convhub route keras→tflite",
              "convhub route jax→onnx --all",
              "convhub route jax→onnx examples/jax_function.py:mlp --explain"],
    "formats": ["convhub formats", "convhub formats --json"],
    "plugins": ["convhub plugins", "convhub plugins --json"],
    "matrix": ["convhub matrix models/ --markdown compat.md --json-file compat.json",
               "convhub matrix a.keras net.py:model --to tflite --modes float32,int8"],
    "demo": ["convhub demo", "convhub demo --out demo/ --json"],
    "inspect": ["convhub inspect model.onnx", "convhub inspect out/ --json",
                "convhub inspect serving/model"],
    "batch": ["convhub batch examples/batch/convhub.toml -o out/",
              "convhub batch convhub.toml -o out/ --dry-run",
              "convhub batch pyproject.toml -o out/ --executor ray --address HOST:6379 --json"],
    "cache": ["convhub cache info", "convhub cache clear --unused-for 30"],
    "toolchains": ["convhub toolchains", "convhub toolchains --all     # install every one now (CI images, offline)",
                   "convhub toolchains --check --prune --json"],
    "completion": ['eval "$(convhub completion bash)"     # in ~/.bashrc',
                   'eval "$(convhub completion zsh)"      # in ~/.zshrc',
                   "convhub completion fish > ~/.config/fish/completions/convhub.fish"],
}
USAGES = {
    "convert": "convhub convert [SRC→DST] INPUT -o OUTPUT [--to FORMATS] [options]",
    "check": "convhub check REFERENCE CANDIDATE... [options]",
    "route": "convhub route SRC→DST [INPUT] [--via FORMAT] [--all | --explain] [--json]",
    "matrix": "convhub matrix MODEL... [--to FORMATS] [--modes MODES] [options]",
    "batch": "convhub batch FILE [-o OUT] [--dry-run] [--executor local|ray] [options]",
    "cache": "convhub cache {info,clear} [--unused-for DAYS] [--json]",
}
SHELLS = ("bash", "zsh", "fish")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's layout, at most 80 columns wide (it follows a narrower terminal)."""

    def __init__(self, prog: str) -> None:
        import shutil

        super().__init__(prog, width=min(shutil.get_terminal_size().columns, 80) - 2, max_help_position=28)


class _Parser(argparse.ArgumentParser):
    examples: list[str] = []

    def format_help(self) -> str:
        if not self.examples:
            return super().format_help()
        lines = "".join(f"  {e}\n" for e in self.examples)
        return f"examples:\n{lines}\n{super().format_help()}"

    def error(self, message: str) -> NoReturn:  # one line, a suggestion, exit 2
        raise UsageError(message, hint=_suggestion(self, message) or f"see '{self.prog} --help'")


def _suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    """'did you mean ...' for a misspelled command or flag in argparse's message."""
    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        return did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
    unknown = re.search(r"unrecognized arguments: (.*)", message)
    if unknown:
        flags_of = {p.prog: [f for a in p._actions for f in a.option_strings] for p in _parsers(parser)}
        for word in unknown.group(1).split():
            name = word.partition("=")[0]
            if not word.startswith("-"):
                continue
            # A real option given to a command that does not take it: say whose it is.
            owners = [prog for prog, flags in list(flags_of.items())[1:] if name in flags]
            if owners:
                return f"{name} is an option of {', '.join(owners)}, not of this command; see its --help"
            near = did_you_mean(name, [f for flags in flags_of.values() for f in flags])
            if near:
                return near
    return ""


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += list(action.choices.values())
    return found


def parse_pair(text: str) -> tuple[str, str]:
    """'keras→tflite' or 'keras->tflite' → ('keras', 'tflite')."""
    for arrow in ARROWS:
        source, sep, target = text.partition(arrow)
        if sep:
            source, target = source.strip(), target.strip()
            if source and target and not any(a in target for a in ARROWS):
                return source, target
            break
    raise UsageError(f"malformed conversion {text!r}: write SOURCE→TARGET or SOURCE->TARGET, e.g. keras→tflite")


def _is_pair(text: str) -> bool:
    return any(a in text for a in ARROWS) and not os.path.exists(text)


def build_parser(options: Sequence[Any] | None = None, source_keys: set[str] | frozenset[str] = frozenset()
                 ) -> argparse.ArgumentParser:
    """The parser; `options` are the plugins' declared options (convhub.types.Option), whose flags
    `convert` gets (and `check` those a source reads), loaded only for those two commands."""
    from convhub import __version__

    parser = _Parser(prog="convhub", formatter_class=_Formatter,
                     description="Convert trained models between frameworks and check parity.",
                     epilog="examples:\n" + "".join(f"  {EXAMPLES[c][0]}\n" for c in ("convert", "check", "route"))
                            + "\n'convhub COMMAND --help' shows each command's options and examples.")
    parser.add_argument("--version", action="version", version=f"convhub {__version__}")
    parser.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                        help="don't load this plugin (repeatable; also CONVHUB_DISABLE_PLUGINS=a,b)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str, description: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description or help[0].upper() + help[1:] + ".",
                           usage=USAGES.get(name), formatter_class=_Formatter)
        assert isinstance(p, _Parser)
        p.examples = EXAMPLES[name]
        return p

    p = command("convert", "convert a model and check the result against it")
    p.add_argument("args", nargs="+", metavar="[SRC→DST] INPUT",
                   help="the conversion (keras→tflite, keras→tflite,onnx) and the input: a file, a"
                        " folder, file.py:NAME or package.module:NAME")
    p.add_argument("-o", "--output", required=True,
                   help="where to write it (a folder when there are several targets)")
    _format_flag(p, "--from", dest="source", help="source format (default: detected from the input)")
    _format_flag(p, "--to", dest="target", help="target format(s), comma-separated, when not given as SRC→DST",
                 many=True)
    _format_flag(p, "--via", dest="via", help="route through this format (e.g. savedmodel); see 'convhub route'")
    _example_inputs_flag(p)
    p.add_argument("--force", action="store_true", help="overwrite outputs that exist")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    g = p.add_argument_group("parity check")
    g.add_argument("--seed", type=int, default=0, help="seed of the random parity inputs (default 0)")
    g.add_argument("--inputs", metavar="NPZ", help="check on these inputs (.npz keyed by input name) instead")
    g.add_argument("--atol", type=float, help="absolute tolerance (default: by the artifact's precision)")
    g.add_argument("--rtol", type=float, help="relative tolerance (default: by the artifact's precision)")
    g.add_argument("--no-check", dest="check", action="store_false", help="skip the parity check")
    g.add_argument("--keep-failed", action="store_true", help="write the output even when the check fails")
    g.add_argument("--report", metavar="HTML", help="write a self-contained HTML report of the check")
    _deploy_flags(g)
    _execution_flags(p)
    _plugin_flags(p, options or [])
    g = p.add_argument_group("outputs")
    g.add_argument("--keep-intermediates", metavar="DIR", help="keep the intermediate artifacts in DIR")
    g.add_argument("--option", action="append", default=[], metavar="[TARGET.]KEY=VALUE",
                   help="an option by its key, for one target with TARGET.KEY (e.g. tflite.quantize=int8)"
                        " or for a third-party plugin (repeatable)")

    p = command("check", "compare artifacts with a reference model on the same inputs, converting nothing")
    p.add_argument("reference", help="the reference model (file, directory, or file.py:NAME)")
    p.add_argument("candidates", nargs="+", metavar="CANDIDATE", help="artifacts to compare with it")
    _format_flag(p, "--from", dest="source", help="format of the reference (default: detected)")
    _example_inputs_flag(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--inputs", metavar="NPZ", help="check on these inputs (.npz keyed by input name)")
    p.add_argument("--atol", type=float, help="absolute tolerance (default: by each artifact's precision)")
    p.add_argument("--rtol", type=float, help="relative tolerance (default: by each artifact's precision)")
    p.add_argument("--report", metavar="HTML", help="write a self-contained HTML report")
    _deploy_flags(p)
    _plugin_flags(p, [o for o in options or [] if o.key in source_keys])
    _execution_flags(p)

    p = command("route", "show how one format converts to another (imports no framework)")
    p.add_argument("pair", metavar="SRC→DST")
    p.add_argument("input", nargs="?", metavar="INPUT",
                   help="plan for this model: read it (this loads its framework) and use its facts")
    _format_flag(p, "--via", dest="via", help="only routes through this format")
    _example_inputs_flag(p)
    p.add_argument("--all", action="store_true", help="list the alternatives too")
    p.add_argument("--explain", action="store_true", help="show the facts and why each conversion can or can't be used")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    p = command("formats", "list the formats that installed plugins know")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    p = command("plugins", "list installed plugins and what each provides")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    p = command("matrix", "convert models to every target in every mode and tabulate what passes")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="model files or directories, file.py:NAME references, or folders of them"
                        " (a folder's X.py is X.py:model; X.calibration.npz beside a model is its calibration data)")
    _format_flag(p, "--to", dest="to", default="tflite,onnx,tfjs", many=True, metavar="FORMATS",
                 help="targets (default tflite,onnx,tfjs)")
    p.add_argument("--modes", metavar="MODES",
                   help="only these modes, e.g. float32,int8 or tflite.int8 (default: every mode of every target)")
    p.add_argument("--markdown", metavar="FILE", help="write the matrix as a Markdown page (e.g. docs/compatibility.md)")
    p.add_argument("--json-file", metavar="FILE", help="write every cell as JSON to FILE")
    p.add_argument("--json", action="store_true", help="print the cells as one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    p.add_argument("--generated-by", metavar="TEXT", help="the command the Markdown page names (default: this one)")
    p.add_argument("--update", action="store_true",
                   help="keep every cell this run does not convert again (other models, targets or modes) from the"
                        " existing --json-file (re-run some cells after a fix)")
    _execution_flags(p)

    _batch_parsers(command)

    p = command("demo", "convert built-in example models through every route and check parity")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    p.add_argument("--out", help="keep the converted models in this directory")

    p = command("inspect", "describe artifacts: inputs and outputs, size, weights, operators, provenance",
                "Describe artifacts (or a folder of outputs, each of its artifacts): inputs and outputs,"
                " size and parameters, the precision of the weights, operators, and where each came from."
                " Imports only what each format needs.")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help="artifacts or folders of them")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p = command("toolchains", "list the environments converters run in; install, check or prune them")
    p.add_argument("--all", action="store_true", help="install every toolchain this environment cannot serve")
    p.add_argument("--check", action="store_true", help="start each installed one and compare it with its lock")
    p.add_argument("--prune", action="store_true", help="remove environments no installed plugin uses any more")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")

    p = command("completion", "print the shell completion script for bash, zsh or fish",
                "Print a script that completes convhub's commands, flags and the installed formats.")
    p.add_argument("shell", choices=SHELLS)
    return parser


def _batch_parsers(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("batch", "convert a job file's models × targets × option sets, cached, here or on Ray",
                "Convert and check every cell (model × target × option set) of a job file;\n"
                "a cell converted before, unchanged, comes from the cache (docs/batch.md).")
    p.add_argument("job", metavar="FILE", help="the job: a convhub.toml, or a pyproject.toml with [tool.convhub]")
    p.add_argument("-o", "--output", metavar="OUT", help="the output folder (default: `output` in the job file)")
    p.add_argument("--dry-run", action="store_true", help="show the cells, their routes and what is cached; run nothing")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the cells run: this machine's workers, or a Ray cluster (pip install \"convhub[ray]\")")
    p.add_argument("--address", metavar="ADDR", help="the Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--force", action="store_true", help="write into an output folder batch did not make")
    p.add_argument("--no-cache", dest="use_cache", action="store_false",
                   help="run every cell again (the results still go into the cache)")
    p.add_argument("--retry-failed", action="store_true", help="run the cells that failed before again")
    p.add_argument("--cache-dir", metavar="DIR", help="the cache (default: CONVHUB_CACHE_DIR, else the platform's)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    _execution_flags(p)

    p = command("cache", "show or clear the cache of `convhub batch`")
    p.add_argument("action", choices=("info", "clear"))
    p.add_argument("--unused-for", type=float, metavar="DAYS", help="clear: only entries no batch used for DAYS days")
    p.add_argument("--cache-dir", metavar="DIR", help="the cache (default: CONVHUB_CACHE_DIR, else the platform's)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _format_flag(p: argparse.ArgumentParser, flag: str, *, many: bool = False, **kwargs: Any) -> None:
    """A flag whose value is a format name (or, `many`, a comma-separated list): shell
    completion offers the installed formats."""
    kwargs.setdefault("metavar", "FORMATS" if many else "FORMAT")
    action = p.add_argument(flag, **kwargs)
    action.completer = _complete_formats  # type: ignore[attr-defined]


def _complete_formats(prefix: str, **_: Any) -> list[str]:
    from convhub.plugins import default_registry

    done, comma, last = prefix.rpartition(",")
    names = sorted(default_registry().formats)
    return [f"{done}{comma}{name}" for name in names if name.startswith(last.lower())]


def _plugin_flags(p: argparse.ArgumentParser, options: Sequence[Any]) -> None:
    """A flag for each option a plugin declares; values are checked by the declaration (Option.parse)."""
    if not options:
        return
    g = p.add_argument_group("plugin options (each checked by the plugin's declaration)")
    for option in sorted(options, key=lambda o: o.flag):
        text = f"{option.help} [{option.plugin}]" if option.plugin else option.help
        dest = f"plugin_{option.key}"
        if option.type == "bool":
            g.add_argument(option.flag, dest=dest, action="store_const", const=option.flag_value, default=None, help=text)
            continue
        metavar = "{" + ",".join(option.choices) + "}" if option.choices else option.type.upper()
        g.add_argument(option.flag, dest=dest, metavar=metavar, help=text)


def _deploy_flags(g: Any) -> None:
    g.add_argument("--benchmark", action="store_true",
                   help="also measure each artifact's latency in its own runtime, and the source's")
    g.add_argument("--save-io", metavar="NPZ",
                   help="write the check's inputs and the source's outputs on them to NPZ (replay with --inputs)")


def _execution_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--jobs", "-j", type=int, metavar="N",
                   help="worker processes at most (default: from the cores and free memory)")
    g.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="stop a hop or check that runs longer (default 1800)")


def _emit(args: argparse.Namespace, payload: dict[str, Any], human: Callable[[], Sequence[Any]]) -> None:
    """--json: the command's one JSON object on stdout; else what `human()` makes, for people
    (built only then: the JSON path imports no rich)."""
    if getattr(args, "json", False):
        print(dump_json(document(args.command, payload)))
    else:
        from convhub.console import show

        show(*human())


def _feedback(args: argparse.Namespace) -> Any:
    from convhub.console import Feedback

    return Feedback(quiet=getattr(args, "quiet", False))


def cmd_formats(args: argparse.Namespace) -> int:
    from convhub.plugins import default_registry
    from convhub.table import Column, table

    registry = default_registry()
    graph = registry.graph
    rows, payload = [], []
    for fmt in sorted(registry.formats.values(), key=lambda f: f.name):
        has_runner = registry.runner(fmt.name) is not None
        rows.append([fmt.name, ", ".join(fmt.aliases), fmt.plugin, "yes" if fmt.read else "",
                     "yes" if has_runner else "", fmt.description])
        payload.append({
            "name": fmt.name, "aliases": list(fmt.aliases), "plugin": fmt.plugin, "description": fmt.description,
            "source": fmt.read is not None, "runner": has_runner, "suffix": fmt.suffix,
            "targets": sorted({c.target for c in graph.conversions if c.source == fmt.name}),
        })
    _emit(args, {"ok": True, "formats": payload},
          lambda: [table([Column("format"), Column("aliases"), Column("plugin"), Column("source"),
                          Column("runnable"), Column("description")], rows)])
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from convhub.plugins import default_registry
    from convhub.table import Column, table

    registry = default_registry()
    plugins = sorted(registry.plugins.values(), key=lambda p: p.name)
    rows = [
        [p.name, p.version or "", ", ".join(p.formats), ", ".join(p.conversions), ", ".join(p.runners),
         f"broken: {p.broken}" if p.broken else "ok"]
        for p in plugins
    ]
    _emit(args, {"ok": True, "plugins": [p.to_json() for p in plugins], "problems": list(registry.problems)},
          lambda: [table([Column("plugin"), Column("version"), Column("formats"), Column("conversions"),
                          Column("runners"), Column("state", status=True)], rows)])
    return 0


def _example_inputs_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--example-inputs", metavar="NPZ|FILE.py:NAME",
                        help="what a JAX function or Flax module is traced with: an .npz of its positional inputs"
                             " in order (np.savez(f, x)), or a reference to a tuple of arrays")


def example_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """--example-inputs as a reading option; a file that is not there is refused before anything loads
    (a reference is imported by the worker that reads the model)."""
    from convhub import pyref, validate

    given = getattr(args, "example_inputs", None)
    if given is None:
        return {}
    if not pyref.looks_like_reference(given):
        validate.data_file(Path(given), "--example-inputs")
    return {"example_inputs": given}


def cmd_route(args: argparse.Namespace) -> int:
    from convhub.plugins import default_registry

    registry = default_registry()
    source, target = (registry.format(name).name for name in parse_pair(args.pair))
    via = registry.format(args.via).name if args.via else None
    graph = registry.graph
    facts = None
    if args.input is not None:
        from convhub.jsonout import jsonable
        from convhub.pipeline import read_source

        with _feedback(args) as progress:
            progress(f"reading {args.input}")
            facts = read_source(registry, args.input, registry.format(source), example_inputs(args)).facts
    routes = graph.routes(source, target, facts, via)
    if not routes and not args.explain:
        graph.best(source, target, facts, via)  # raises NoRouteError with the reasons
    shown = routes if args.all or args.explain else routes[:1]
    lines: list[tuple[str, str]] = []
    if facts is not None:
        lines.append(("dim", "facts: " + ", ".join(f"{k}={_short(v)}" for k, v in facts.items())))
    for i, route in enumerate(shown):
        label = "" if len(shown) == 1 else ("best: " if i == 0 else "  or: ")
        lines.append(("bold", f"{label}{route}   (cost {route.cost:g}{', lossy' if route.lossy else ''})"))
        for hop in route.hops:
            lines.append(("", f"    {hop.source} → {hop.target}  [{hop.plugin}] {hop.description}"))
            if (toolchain := runs_in(hop)) is not None:
                lines.append(("dim", f"        runs in toolchain {toolchain}"))
            lines += [("yellow", f"        note: {note}") for note in route_notes(hop, facts)]
    if not routes:
        lines.append(("red", f"no usable route from {source} to {target}" + (f" through {via}" if via else "")))
    unusable = graph.unusable(source, target, facts) if (args.all or args.explain) else []
    lines += [("dim", f"  not usable: {route}: {why}") for route, why in unusable]
    payload: dict[str, Any] = {
        "ok": bool(routes), "source": source, "target": target, "via": via,
        "routes": [_route_json(r, facts) for r in shown],
        "unusable": [{"route": route.formats, "hops": [h.name for h in route.hops], "reason": why} for route, why in unusable],
    }
    if not routes:
        payload["error"] = f"no usable route from {source} to {target}"
    if facts is not None:
        payload["facts"] = jsonable(facts)
    _emit(args, payload, lambda: _styled(lines))
    return 0 if routes else 2


def _styled(lines: Sequence[tuple[str, str]]) -> list[Any]:
    from rich.text import Text

    return [Text(line, style=style) for style, line in lines]


def _route_json(route: Any, facts: Any) -> dict[str, Any]:
    payload: dict[str, Any] = route.to_json()
    for hop, entry in zip(route.hops, payload["hops"]):
        entry["notes"] = route_notes(hop, facts)
        entry["toolchain"] = hop.toolchain.name if runs_in(hop) is not None else None
    return payload


def runs_in(hop: Any) -> str | None:
    """'NAME (installed)' or 'NAME (made on first use)' for a hop that runs in a toolchain because
    this environment cannot serve it; None when it runs here."""
    from convhub import toolchains

    if hop.toolchain is None or toolchains.unmet(hop.toolchain) is None:
        return None
    place = toolchains.installed(hop.toolchain)
    ready = place is not None and (place / toolchains.MARKER).is_file()
    return f"{hop.toolchain.name} ({'installed' if ready else 'made on first use'})"


def route_notes(hop: Any, facts: Any) -> list[str]:
    """What a hop will do to this model (its plugin's notes(facts)); a plugin's bug is a note too."""
    if hop.notes is None or facts is None:
        return []
    try:
        return [str(n) for n in hop.notes(facts) or ()]
    except Exception as exc:  # noqa: BLE001 - a plugin's bug must not hide the route
        return [f"notes() of {hop.plugin or 'its plugin'} raised {type(exc).__name__}: {exc}"]


def _short(value: Any) -> str:
    if isinstance(value, list) and value and hasattr(value[0], "shape"):
        return "[" + ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in value) + "]"
    if isinstance(value, list) and len(value) > 6:  # 18 layer names say less than their count
        return f"[{', '.join(map(str, value[:3]))}, … ({len(value)} in all)]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def cmd_check(args: argparse.Namespace) -> int:
    from convhub import summary
    from convhub.pipeline import check

    options = {**conversion_options(args, _declared()), **example_inputs(args)}
    if args.report:
        _check_report_path(args.report, [args.reference, *args.candidates])
    with _feedback(args) as progress:
        result = check(args.reference, args.candidates, source=args.source, seed=args.seed, inputs=args.inputs,
                       atol=args.atol, rtol=args.rtol, options=options, jobs=args.jobs, timeout=args.timeout,
                       progress=progress, benchmark=args.benchmark, save_io=args.save_io)
        if args.report:
            from convhub import report

            report.write([result], args.report)
            progress.note(f"wrote the report to {args.report}")
    _emit(args, result.to_json(), lambda: [summary.check_renderable(result)])
    if args.json:
        _show_on_stderr(summary.check_renderable(result))
    return 0 if result.ok else 1


def _show_on_stderr(renderable: Any) -> None:
    """With --json, the human summary goes to stderr, where progress went."""
    from convhub.console import show

    show(renderable, stderr=True)


def conversion_options(args: argparse.Namespace, declared: Sequence[Any]) -> dict[str, Any]:
    """The options from the plugins' flags and from --option KEY=VALUE, each checked by its
    declaration when a plugin declared it (an undeclared key is a third-party plugin's, as text,
    unless it is a near miss of a declared one)."""
    by_key = {o.key: o for o in declared}
    options: dict[str, Any] = {}
    for option in declared:
        value = getattr(args, f"plugin_{option.key}", None)
        if value is not None:
            options[option.key] = option.parse(value)
    for item in getattr(args, "option", []):
        key, sep, value = item.partition("=")
        if not sep or not key or key.startswith(".") or key.endswith("."):
            raise UsageError(f"--option {item!r}: write KEY=VALUE or TARGET.KEY=VALUE")
        name = key.rpartition(".")[2]
        if name not in by_key and did_you_mean(name, by_key):
            raise UsageError(f"--option {item!r}: no plugin declares an option {name!r}",
                             hint=f"{did_you_mean(name, by_key)} declared: {', '.join(sorted(by_key))}")
        options[key] = by_key[name].parse(value) if name in by_key else value
    return options


def _check_report_path(path: str, inputs: list[str]) -> None:
    from convhub import pyref, validate

    validate.report_path(Path(path), [Path(i) for i in inputs if not pyref.looks_like_reference(i)])


def _target_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise UsageError(f"malformed target list {text!r}: write e.g. tflite,onnx,tfjs")
    return names


def cmd_convert(args: argparse.Namespace) -> int:
    from convhub import summary
    from convhub.pipeline import default_output_name, outputs_in, run_many
    from convhub.plugins import default_registry

    if len(args.args) > 2:
        raise UsageError(f"expected [SRC→DST] INPUT, got {len(args.args)} arguments")
    source, targets = args.source, args.target
    if len(args.args) == 2:
        if not _is_pair(args.args[0]):
            raise UsageError(f"malformed conversion {args.args[0]!r}: write SOURCE→TARGET, e.g. keras→tflite")
        source, targets = parse_pair(args.args[0])
    elif targets is None:
        raise UsageError("name the target: convhub convert SRC→DST INPUT -o OUTPUT, or --to FORMAT[,FORMAT...]")
    registry = default_registry()
    formats = [registry.format(n) for n in _target_list(targets)]
    names = [f.name for f in formats]
    if len(set(names)) != len(names):
        raise UsageError(f"malformed target list {targets!r}: a format is named twice")
    model: Any = args.args[-1]
    if len(names) == 1:
        outputs = {names[0]: args.output}
    else:  # several targets: -o is a folder holding <input name><suffix> for each
        outputs = outputs_in(args.output, default_output_name(model), formats)
    options = {**conversion_options(args, _declared()), **example_inputs(args)}
    if args.report:
        _check_report_path(args.report, [model])
    with _feedback(args) as progress:
        results = run_many(
            model, names, outputs, source=source, force=args.force, check=args.check, seed=args.seed,
            inputs=args.inputs, atol=args.atol, rtol=args.rtol, keep_failed=args.keep_failed,
            keep_intermediates=args.keep_intermediates, options=options, jobs=args.jobs, timeout=args.timeout,
            progress=progress, via=args.via, benchmark=args.benchmark, save_io=args.save_io,
        )
        if args.report:
            from convhub import report

            report.write(results, args.report)
            progress.note(f"wrote the report to {args.report}")
    ok = all(r.ok for r in results)
    failed = [r for r in results if not r.ok]
    payload = {"ok": ok, "source": results[0].source, "targets": names, "via": args.via and registry.format(args.via).name,
               "results": [r.to_json() for r in results], "seconds": round(max(r.seconds for r in results), 3),
               "error": "; ".join(f"{r.target}: {r.error}" for r in failed) or None}
    _emit(args, payload, lambda: [summary.renderable(results)])
    if args.json:
        _show_on_stderr(summary.renderable(results))
    return 0 if ok else 1


def cmd_matrix(args: argparse.Namespace) -> int:
    from convhub import matrix, validate
    from convhub.plugins import default_registry

    registry = default_registry()
    targets = [registry.format(t).name for t in _target_list(args.to)]
    wanted = [m.strip() for m in args.modes.split(",")] if args.modes else None
    matrix.modes_of(registry, targets, wanted)  # an unknown target or mode: exit 2 before anything loads
    models = matrix.models_in(args.models, registry)
    written = [Path(f) for f in (args.markdown, args.json_file) if f]
    for path in written:
        validate.report_path(path, [Path(m.source.rpartition(":")[0] or m.source) for m in models])
    started = time.perf_counter()
    cells: list[Any] = []
    commands = [args.generated_by or "convhub matrix " + " ".join(args.models)]
    kept: list[Any] = []
    kept_seconds = 0.0
    versions = matrix.environment()
    if args.update:
        if not args.json_file:
            raise UsageError("--update needs --json-file: the matrix whose other cells it keeps")
        if Path(args.json_file).exists():
            kept, kept_seconds, before, earlier = matrix.load(Path(args.json_file))
            commands = list(dict.fromkeys(before + commands))  # a command run again is named once
            versions = matrix.versions_since(earlier, versions)
    from convhub.publish import write_text

    def write(interrupted: bool = False) -> dict[str, Any]:
        every = matrix.merge(kept, cells)
        matrix.add_alternatives(every)
        seconds = kept_seconds + time.perf_counter() - started
        payload = matrix.to_json(every, seconds, interrupted=interrupted, commands=commands, versions=versions)
        if args.markdown:
            write_text(Path(args.markdown), matrix.to_markdown(every, seconds, commands,
                                                               interrupted=interrupted, versions=versions))
        if args.json_file:
            write_text(Path(args.json_file), dump_json(payload) + "\n")
        return payload

    with _feedback(args) as progress:
        def keep(cell: Any) -> None:
            cells.append(cell)
            verdict = "ok" if cell.passed else cell.status.upper()
            err = f" {cell.max_abs_diff:.2g}" if cell.max_abs_diff is not None else ""
            progress.note(f"  {cell.model} → {cell.target} {cell.mode}: {verdict}{err}"
                          + (f" ({_first(cell.cause)})" if cell.cause else ""))

        try:
            matrix.run_matrix(models, targets, modes=wanted, registry=registry, jobs=args.jobs,
                              timeout=args.timeout, progress=progress, on_cell=keep)
        except BaseException as exc:
            # Ctrl-C or SIGTERM an hour in: the cells decided so far are written, marked incomplete,
            # and the last line says so rather than that nothing changed.
            if cells and (args.markdown or args.json_file):
                write(interrupted=True)
                files = " and ".join(str(f) for f in (args.markdown, args.json_file) if f)
                exc.written = f"wrote the {len(cells)} cells decided so far to {files}, marked incomplete"  # type: ignore[attr-defined]
                progress.note(f"interrupted: {exc.written}")  # type: ignore[attr-defined]
            raise
    payload = write()
    s = payload["summary"]
    text = f"{s['passed']} of {s['ran']} cells passed" + (f", {s['skipped']} skipped" if s["skipped"] else "")
    _emit(args, {"ok": s["failed"] == 0, **payload}, lambda: _styled([("bold green" if s["failed"] == 0 else "bold red", text)]))
    if args.json:
        _show_on_stderr(text)
    return 0 if s["failed"] == 0 else 1


def _first(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 160 else line[:159] + "…"


def cmd_batch(args: argparse.Namespace) -> int:
    from convhub import batchrun, batchview

    if args.address is not None and args.executor != "ray":
        raise UsageError("--address is the Ray cluster's: add --executor ray")
    if args.executor == "ray":
        from convhub import raycluster

        raycluster.require()  # exit 2 with the install line, before the job file loads a plugin
    view = batchview.LiveProgress(quiet=args.quiet)
    try:
        result = batchrun.batch(args.job, args.output, executor=args.executor, address=args.address, jobs=args.jobs,
                           timeout=args.timeout, dry_run=args.dry_run, use_cache=args.use_cache,
                           retry_failed=args.retry_failed, force=args.force, cache_dir=args.cache_dir, progress=view)
    finally:
        view.close()
    _emit(args, result.to_json(), lambda: [batchview.renderable(result)])
    if args.json and not args.quiet:
        _show_on_stderr(batchview.renderable(result))
    return 0 if result.ok else 1


def cmd_cache(args: argparse.Namespace) -> int:
    from convhub.cache import Cache
    from convhub.table import human_bytes

    store = Cache(Path(args.cache_dir) if args.cache_dir else None)
    if args.action == "clear":
        if args.unused_for is not None and (args.unused_for < 0 or args.unused_for != args.unused_for):
            raise UsageError(f"--unused-for must be a number of days ≥ 0, not {args.unused_for:g}")
        count, freed = store.clear(None if args.unused_for is None else args.unused_for * 86400)
        text = f"removed {count} entries ({human_bytes(freed)}) from {store.root}"
        _emit(args, {"ok": True, "action": "clear", "path": str(store.root), "removed": count, "bytes": freed},
              lambda: [text])
        return 0
    info = store.info()
    text = f"{store.root}: {info['entries']} entries, {human_bytes(info['bytes']) or '0 B'}"
    _emit(args, {"ok": True, "action": "info", **info}, lambda: [text])
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from convhub import demo

    with _feedback(args) as progress:
        return demo.main(out=args.out, as_json=args.json, progress=progress)


def cmd_inspect(args: argparse.Namespace) -> int:
    from convhub import inspection
    from convhub.plugins import default_registry

    entries = inspection.inspect_paths(args.artifacts, default_registry())
    ok = not any(e.get("error") for e in entries)
    _emit(args, {"ok": ok, "artifacts": entries}, lambda: [inspection.renderable(entries)])
    return 0 if ok else 1


def cmd_completion(args: argparse.Namespace) -> int:
    """The shell's completion script; it calls `convhub` back (with _ARGCOMPLETE set) at each
    Tab, so the formats offered are the ones installed then."""
    from argcomplete.shell_integration import shellcode

    print(shellcode(["convhub"], shell=args.shell))
    return 0


def cmd_toolchains(args: argparse.Namespace) -> int:
    """Every toolchain the installed plugins declare, with its Python, lock hash, size and state;
    --all installs the missing ones, --check verifies the installed ones, --prune removes the rest."""
    from convhub import toolchains
    from convhub.plugins import default_registry
    from convhub.table import Column, table

    registry = default_registry()
    declared: dict[tuple[str, str], tuple[Any, list[str]]] = {}
    users = [*((c.toolchain, f"{c.plugin}: {c.name}") for c in registry.conversions),
             *((r.toolchain, f"{r.plugin}: {r.name} runner") for rs in registry.runners.values() for r in rs)]
    for toolchain, label in users:
        if toolchain is not None:
            key = (toolchain.name, toolchains.lock_hash(toolchain))
            declared.setdefault(key, (toolchain, []))[1].append(label)
    failed: list[str] = []
    removed: list[dict[str, Any]] = []
    with _feedback(args) as feedback:
        for toolchain, _ in declared.values():
            if args.all and toolchains.unmet(toolchain) is not None and toolchains.unavailable(toolchain) is None:
                feedback(f"toolchain {toolchain.name}")
                try:
                    toolchains.ensure(toolchain, feedback.detail)
                except ConvhubError as exc:
                    failed.append(str(exc))
    entries = []
    for toolchain, used_by in declared.values():
        entry = toolchains.status(toolchain, used_by)
        if args.check and entry.state == "installed":
            why = toolchains.check(toolchain)
            if why is not None:
                entry.state, entry.reason = "broken", why
                failed.append(f"toolchain {toolchain.name}: {why}")
        entries.append(entry)
    if args.prune:
        removed = [{"path": str(path), "size": size} for path, size in
                   toolchains.prune(t for t, _ in declared.values())]
    ok = not failed
    payload = {"ok": ok, "root": str(toolchains.root()), "toolchains": [e.to_json() for e in entries],
               "removed": removed, "error": "; ".join(failed) or None}

    def size(n: int | None) -> str:
        return "" if n is None else f"{n / 1e6:,.0f} MB"

    rows = [[e.name, e.python or "", e.lock_hash, size(e.size), e.state, e.reason] for e in entries]
    listing = table([Column("toolchain"), Column("python"), Column("lock"), Column("size", figure=True),
                     Column("state", status=True), Column("why")], rows) if rows else \
        "no toolchains: no installed plugin declares one"
    _emit(args, payload, lambda: [listing,
                                  *(f"removed {r['path']} ({size(r['size'])})" for r in removed),
                                  *failed])
    return 0 if ok else 1


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "convert": cmd_convert, "check": cmd_check, "route": cmd_route, "formats": cmd_formats, "plugins": cmd_plugins,
    "matrix": cmd_matrix, "demo": cmd_demo, "inspect": cmd_inspect, "completion": cmd_completion,
    "batch": cmd_batch, "cache": cmd_cache, "toolchains": cmd_toolchains}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args: argparse.Namespace | None = None

    def fail(error: ConvhubError | str, code: int, kind: str = "error", **extra: Any) -> int:
        from convhub.console import error as show_error

        message, hint = (error.message, error.hint) if isinstance(error, ConvhubError) else (error, "")
        # --json promises one object on stdout, even when the command line itself was wrong.
        if (args is None and "--json" in argv) or getattr(args, "json", False):
            command = getattr(args, "command", None) or next((a for a in argv if a in COMMANDS), None)
            fields: dict[str, Any] = {"ok": False, "error": message, "exit_code": code, **extra}
            if hint:
                fields["hint"] = hint
            _print_quietly(dump_json(document(command, fields)))
        show_error(message, hint=hint, kind=kind)
        return code

    previous = _on_sigterm()
    try:
        if os.environ.get("_ARGCOMPLETE"):
            _complete()
        args = _parser_for(argv).parse_args(argv)
        if args.disable_plugin:  # read when the registry is built, before any plugin is imported
            from convhub.plugins import disabled_plugins

            os.environ["CONVHUB_DISABLE_PLUGINS"] = ",".join(sorted(disabled_plugins() | set(args.disable_plugin)))
        if args.command is None:
            build_parser().print_help()
            return 2
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        # `convhub formats | head -1`: the reader has what it wanted. No traceback, and nothing
        # more written to the closed pipe (Python's own flush at exit would complain again).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except ConvhubError as exc:
        return fail(exc, exc.exit_code)
    except (KeyboardInterrupt, Interrupted) as exc:
        code = exc.exit_code if isinstance(exc, Interrupted) else 130
        name = "SIGTERM" if code == 143 else "SIGINT"
        # The work folder is gone and every output is as it was (publishing is all or nothing),
        # except what a command says it wrote on the way out (a matrix's decided cells).
        done = getattr(exc, "written", None) or "no output was changed"
        return fail(f"stopped by {name}; {done}", code, kind="interrupted", interrupted=True)
    except Exception as exc:  # a bug in convhub or a plugin: say so in one line unless debugging
        if os.environ.get("CONVHUB_DEBUG"):
            raise
        return fail(f"{type(exc).__name__}: {exc} (set CONVHUB_DEBUG=1 for the traceback)", 1, kind="internal error")
    finally:
        _stop_workers()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _print_quietly(text: str) -> None:
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _complete() -> None:
    """Answer the shell's completion request (argcomplete's protocol) and exit: the parser with
    every plugin's flags, the installed formats for --to, --from and --via."""
    import argcomplete

    from convhub.plugins import default_registry

    registry = default_registry()
    source_keys = {k for f in registry.formats.values() for k in f.options}
    argcomplete.autocomplete(build_parser(_declared(), source_keys))


def _declared() -> list[Any]:
    from convhub.plugins import default_registry

    return list(getattr(default_registry(), "options", {}).values())


def _parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The plugins' option flags are loaded for `convert` and `check` only: `--help`, listings
    and `route` stay as quick as before."""
    command = next((a for a in argv if not a.startswith("-") and a in COMMANDS), None)
    if command not in ("convert", "check"):
        return build_parser()
    disabled = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--disable-plugin"]
    disabled += [a.partition("=")[2] for a in argv if a.startswith("--disable-plugin=")]
    if disabled:  # read when the registry is built, before any plugin is imported
        from convhub.plugins import disabled_plugins

        os.environ["CONVHUB_DISABLE_PLUGINS"] = ",".join(sorted(disabled_plugins() | set(disabled)))
    from convhub.plugins import default_registry

    registry = default_registry()
    source_keys = {k for f in registry.formats.values() for k in f.options}
    return build_parser(_declared(), source_keys)


def _on_sigterm() -> Any:
    """SIGTERM stops the run like Ctrl-C does: workers killed, work folder removed, exit 143."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> NoReturn:
        raise Interrupted(signum)

    return signal.signal(signal.SIGTERM, handler)


def _stop_workers() -> None:
    if "convhub.workers" in sys.modules:  # listings never started any
        sys.modules["convhub.workers"].shutdown()


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
