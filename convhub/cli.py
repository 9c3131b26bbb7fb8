"""The `convhub` command.

Exit codes: 0 success; 1 a conversion or a parity check failed; 2 bad usage or bad input.
`--json` puts exactly one JSON object on stdout; everything meant for people goes to stderr.
Listing commands (formats, plugins, route, --help) import no ML framework.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from convhub.errors import ConvhubError, Interrupted, UsageError
from convhub.jsonout import dump_json

ARROWS = ("→", "->")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage over two lines; one line is enough
        raise UsageError(f"{message} (see '{self.prog} --help')")


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


def build_parser(options: Sequence[Any] | None = None, source_keys: set[str] = frozenset()) -> argparse.ArgumentParser:
    """The parser; `options` are the plugins' declared options (convhub.types.Option), whose flags
    `convert` gets (and `check` those a source reads), loaded only for those two commands."""
    from convhub import __version__

    parser = _Parser(prog="convhub", description="Convert trained models between frameworks and check parity.")
    parser.add_argument("--version", action="version", version=f"convhub {__version__}")
    parser.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                        help="don't load this plugin (repeatable; also CONVHUB_DISABLE_PLUGINS=a,b)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("convert", help="convert a model and check the result against it")
    p.add_argument("args", nargs="+", metavar="[SRC→DST] INPUT",
                   help="the conversion (e.g. keras→tflite, or keras→tflite,onnx) and the input:"
                        " a file, a directory, or file.py:NAME / package.module:NAME")
    p.add_argument("-o", "--output", required=True,
                   help="where to write the converted model (a directory when there are several targets)")
    p.add_argument("--from", dest="source", help="source format (default: detected from the input)")
    p.add_argument("--to", dest="target", help="target format(s), comma-separated, when not given as SRC→DST")
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
    _execution_flags(p)
    _plugin_flags(p, options or [])
    g = p.add_argument_group("outputs")
    g.add_argument("--keep-intermediates", metavar="DIR", help="keep the intermediate artifacts in DIR")
    g.add_argument("--option", action="append", default=[], metavar="[TARGET.]KEY=VALUE",
                   help="an option by its key, for one target with TARGET.KEY (e.g. tflite.quantize=int8)"
                        " or for a third-party plugin (repeatable)")

    p = sub.add_parser("check", help="compare artifacts with a reference model on the same inputs, converting nothing")
    p.add_argument("reference", help="the reference model (file, directory, or file.py:NAME)")
    p.add_argument("candidates", nargs="+", metavar="CANDIDATE", help="artifacts to compare with it")
    p.add_argument("--from", dest="source", help="format of the reference (default: detected)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--inputs", metavar="NPZ", help="check on these inputs (.npz keyed by input name)")
    p.add_argument("--atol", type=float, help="absolute tolerance (default: by each artifact's precision)")
    p.add_argument("--rtol", type=float, help="relative tolerance (default: by each artifact's precision)")
    p.add_argument("--report", metavar="HTML", help="write a self-contained HTML report")
    _plugin_flags(p, [o for o in options or [] if o.key in source_keys])
    _execution_flags(p)

    p = sub.add_parser("route", help="show how one format converts to another (imports no framework)")
    p.add_argument("pair", metavar="SRC→DST")
    p.add_argument("input", nargs="?", metavar="INPUT",
                   help="plan for this model: read it (this loads its framework) and use its facts")
    p.add_argument("--all", action="store_true", help="list the alternatives too")
    p.add_argument("--explain", action="store_true", help="show the facts and why each conversion can or can't be used")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("formats", help="list the formats that installed plugins know")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("plugins", help="list installed plugins and what each provides")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("matrix", help="convert models to every target in every mode and tabulate what passes")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="model files or directories, file.py:NAME references, or folders of them"
                        " (a folder's X.py is X.py:model; X.calibration.npz beside a model is its calibration data)")
    p.add_argument("--to", default="tflite,onnx,tfjs", metavar="FORMATS", help="targets (default tflite,onnx,tfjs)")
    p.add_argument("--modes", metavar="MODES",
                   help="only these modes, e.g. float32,int8 or tflite.int8 (default: every mode of every target)")
    p.add_argument("--markdown", metavar="FILE", help="write the matrix as a Markdown page (e.g. docs/compatibility.md)")
    p.add_argument("--json-file", metavar="FILE", help="write every cell as JSON to FILE")
    p.add_argument("--json", action="store_true", help="print the cells as one JSON object on stdout")
    p.add_argument("--generated-by", metavar="TEXT", help="the command the Markdown page names (default: this one)")
    p.add_argument("--update", action="store_true",
                   help="keep the cells of the models this run does not convert, from the existing --json-file"
                        " (re-run some models after a fix)")
    _execution_flags(p)

    p = sub.add_parser("demo", help="convert built-in example models through every route and check parity")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="keep the converted models in this directory")
    return parser


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


def _execution_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--jobs", "-j", type=int, metavar="N",
                   help="worker processes at most (default: from the cores and free memory)")
    g.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="stop a hop or check that runs longer (default 1800)")


def _emit(args: argparse.Namespace, payload: Any, human: str) -> None:
    if getattr(args, "json", False):
        print(dump_json(payload))
    elif human:
        print(human)


def cmd_formats(args) -> int:
    from convhub.plugins import default_registry
    from convhub.table import render

    registry = default_registry()
    graph = registry.graph
    rows, payload = [], []
    for fmt in sorted(registry.formats.values(), key=lambda f: f.name):
        has_runner = registry.runner(fmt.name) is not None
        rows.append([fmt.name, fmt.plugin, "yes" if fmt.read else "", "yes" if has_runner else "", fmt.description])
        payload.append({
            "name": fmt.name, "plugin": fmt.plugin, "description": fmt.description,
            "source": fmt.read is not None, "runner": has_runner, "suffix": fmt.suffix,
            "targets": sorted({c.target for c in graph.conversions if c.source == fmt.name}),
        })
    _emit(args, payload, render(["format", "plugin", "source", "runnable", "description"], rows))
    return 0


def cmd_plugins(args) -> int:
    from convhub.plugins import default_registry
    from convhub.table import render

    plugins = sorted(default_registry().plugins.values(), key=lambda p: p.name)
    rows = [
        [p.name, p.version or "", ", ".join(p.formats), ", ".join(p.conversions), ", ".join(p.runners),
         p.broken or "ok"]
        for p in plugins
    ]
    _emit(args, [p.to_json() for p in plugins],
          render(["plugin", "version", "formats", "conversions", "runners", "state"], rows))
    return 0


def cmd_route(args) -> int:
    from convhub.plugins import default_registry

    registry = default_registry()
    source, target = parse_pair(args.pair)
    registry.format(source), registry.format(target)
    graph = registry.graph
    facts = None
    if args.input is not None:
        from convhub.jsonout import jsonable
        from convhub.pipeline import read_source

        facts = read_source(registry, args.input, registry.format(source)).facts
    routes = graph.routes(source, target, facts)
    if not routes and not args.explain:
        graph.best(source, target, facts)  # raises NoRouteError with the reasons
    shown = routes if args.all or args.explain else routes[:1]
    lines = []
    if facts is not None:
        lines.append("facts: " + ", ".join(f"{k}={_short(v)}" for k, v in facts.items()))
    for i, route in enumerate(shown):
        label = "" if len(shown) == 1 else ("best: " if i == 0 else "  or: ")
        lines.append(f"{label}{route}   (cost {route.cost:g}{', lossy' if route.lossy else ''})")
        for hop in route.hops:
            lines.append(f"    {hop.source} → {hop.target}  [{hop.plugin}] {hop.description}")
            lines += [f"        note: {note}" for note in route_notes(hop, facts)]
    if not routes:
        lines.append(f"no usable route from {source} to {target}")
    unusable = graph.unusable(source, target, facts) if (args.all or args.explain) else []
    lines += [f"  not usable: {route}: {why}" for route, why in unusable]
    payload = {
        "ok": bool(routes), "source": source, "target": target, "routes": [_route_json(r, facts) for r in shown],
        "unusable": [{"route": route.formats, "hops": [h.name for h in route.hops], "reason": why} for route, why in unusable],
    }
    if not routes:
        payload["error"] = f"no usable route from {source} to {target}"
    if facts is not None:
        payload["facts"] = jsonable(facts)
    _emit(args, payload, "\n".join(lines))
    return 0 if routes else 2


def _route_json(route, facts) -> dict:
    payload = route.to_json()
    for hop, entry in zip(route.hops, payload["hops"]):
        entry["notes"] = route_notes(hop, facts)
    return payload


def route_notes(hop, facts) -> list[str]:
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


def cmd_check(args) -> int:
    from convhub.pipeline import check

    progress = _progress(args)
    options = conversion_options(args, _declared())
    if args.report:
        _check_report_path(args.report, [args.reference, *args.candidates])
    result = check(args.reference, args.candidates, source=args.source, seed=args.seed, inputs=args.inputs,
                   atol=args.atol, rtol=args.rtol, options=options, jobs=args.jobs, timeout=args.timeout,
                   progress=progress)
    if args.report:
        from convhub import report

        report.write([result], args.report)
        progress(f"wrote the report to {args.report}")
    text = check_summary(result)
    if args.json:
        print(dump_json(result.to_json()))
        print(text, file=sys.stderr)
    else:
        print(text)
    return 0 if result.ok else 1


def check_summary(result) -> str:
    from convhub.table import number, render

    rows = []
    for cand, p in zip(result.candidates, result.parity):
        for i, o in enumerate(p.outputs or [None]):
            rows.append([
                str(cand.path) if i == 0 else "", cand.format if i == 0 else "", p.runner if i == 0 else "",
                o.name if o else "", number(o.max_abs_diff) if o else "", str(p.tolerance) if i == 0 and p.tolerance else "",
                ("ok" if o.passed else "FAILED") if o else ("ok" if p.passed else ("FAILED" if p.checked else "not checked")),
            ])
    lines = [f"reference: {result.reference.path or 'in-memory model'} ({result.reference.format})",
             render(["artifact", "format", "runner", "output", "max abs diff", "tolerance", "parity"], rows)]
    lines += [f"{c.path} met: {p.criterion}" for c, p in zip(result.candidates, result.parity)
              if p.checked and p.passed and p.criterion]
    lines += [f"weak evidence: {w}" for p in result.parity for w in p.weak_evidence]
    lines.append("all match" if result.ok else f"FAILED: {result.error}")
    return "\n".join(lines)


def _progress(args):
    if getattr(args, "quiet", False):
        return lambda msg: None
    start = time.perf_counter()
    # A copy of stderr as it is now: while an in-memory model's framework call runs here, fd 2
    # points to a log file, and progress must still reach the terminal.
    terminal = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1) if _has_fd(sys.stderr) else sys.stderr
    return lambda msg: print(f"[{time.perf_counter() - start:5.1f}s] {msg}", file=terminal, flush=True)


def _has_fd(stream) -> bool:
    try:
        stream.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False


def summary(result) -> str:
    from convhub.table import human_bytes, number, render

    checks = {p.format: p for p in result.parity}
    rows = []
    for art in result.artifacts:
        p = checks.get(art.format)
        precision = art.facts.get("precision", "")
        if p is None or not p.checked:
            rows.append([art.format, precision, human_bytes(art.bytes), f"{art.seconds:.1f}s", "", "", "", "",
                         "" if p is None else "not checked"])
            continue
        for i, o in enumerate(p.outputs or [None]):
            prev = next((d for d in p.vs_previous if d.name == o.name), None) if o else None
            rows.append([
                art.format if i == 0 else "", precision if i == 0 else "",
                human_bytes(art.bytes) if i == 0 else "", f"{art.seconds:.1f}s" if i == 0 else "",
                o.name if o else "", number(o.max_abs_diff) if o else "",
                number(prev.max_abs_diff) if prev else "", str(p.tolerance) if i == 0 else "",
                ("ok" if o.passed else "FAILED") if o else ("ok" if p.passed else "FAILED"),
            ])
    lines = [f"route: {result.route}", render(
        ["artifact", "precision", "size", "time", "output", "vs source", "vs previous hop", "tolerance", "parity"],
        rows,
    )]
    final = result.parity[-1] if result.parity else None
    if final is not None and final.checked and final.passed and final.criterion:
        lines.append(f"{final.format} met: {final.criterion}")
    lines += [f"weak evidence: {w}" for w in result.weak_evidence]
    lines += [f"{a.format}: {a.facts['fallback']}" for a in result.artifacts if a.facts.get("fallback")]
    if result.ok:
        given = f"seed {result.seed}" if result.seed is not None else f"from {result.inputs}"
        lines.append(f"wrote {result.output} in {result.seconds:.1f}s (parity inputs {given})")
    else:
        lines.append(f"FAILED: {result.error}")
        lines.append(f"kept {result.output} (--keep-failed)" if result.output else f"{result.target}: not written")
    return "\n".join(lines)


def conversion_options(args, declared: Sequence[Any]) -> dict[str, Any]:
    """The options from the plugins' flags and from --option KEY=VALUE, each checked by its
    declaration when a plugin declared it (an undeclared key is a third-party plugin's, as text)."""
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
        options[key] = by_key[name].parse(value) if name in by_key else value
    return options


def _check_report_path(path: str, inputs: list[str]) -> None:
    from pathlib import Path

    from convhub import pyref, validate

    validate.report_path(Path(path), [Path(i) for i in inputs if not pyref.looks_like_reference(i)])


def _target_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise UsageError(f"malformed target list {text!r}: write e.g. tflite,onnx,tfjs")
    return names


def cmd_convert(args) -> int:
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
    names = _target_list(targets)
    registry = default_registry()
    formats = [registry.format(n) for n in names]
    model: Any = args.args[-1]
    if len(names) == 1:
        outputs = {names[0]: args.output}
    else:  # several targets: -o is a folder holding <input name><suffix> for each
        outputs = outputs_in(args.output, default_output_name(model), formats)
    options = conversion_options(args, _declared())
    progress = _progress(args)
    if args.report:
        _check_report_path(args.report, [model])
    results = run_many(
        model, names, outputs, source=source, force=args.force, check=args.check, seed=args.seed,
        inputs=args.inputs, atol=args.atol, rtol=args.rtol, keep_failed=args.keep_failed,
        keep_intermediates=args.keep_intermediates, options=options, jobs=args.jobs, timeout=args.timeout,
        progress=progress,
    )
    if args.report:
        from convhub import report

        report.write(results, args.report)
        progress(f"wrote the report to {args.report}")
    text = "\n\n".join(summary(r) for r in results)
    ok = all(r.ok for r in results)
    if args.json:
        if len(results) == 1:
            payload = results[0].to_json()
        else:
            payload = {"ok": ok, "source": results[0].source, "targets": names,
                       "results": [r.to_json() for r in results], "seconds": round(results[0].seconds, 3)}
        print(dump_json(payload))
        print(text, file=sys.stderr)
    else:
        print(text)
    return 0 if ok else 1


def cmd_matrix(args) -> int:
    from convhub import matrix, validate
    from convhub.plugins import default_registry

    registry = default_registry()
    targets = _target_list(args.to)
    wanted = [m.strip() for m in args.modes.split(",")] if args.modes else None
    matrix.modes_of(registry, targets, wanted)  # an unknown target or mode: exit 2 before anything loads
    models = matrix.models_in(args.models, registry)
    written = [Path(f) for f in (args.markdown, args.json_file) if f]
    for path in written:
        validate.report_path(path, [Path(m.source.rpartition(":")[0] or m.source) for m in models])
    progress = _progress(args)
    started = time.perf_counter()

    def show(cell) -> None:
        verdict = "ok" if cell.passed else cell.status.upper()
        err = f" {cell.max_abs_diff:.2g}" if cell.max_abs_diff is not None else ""
        progress(f"  {cell.model} → {cell.target} {cell.mode}: {verdict}{err}"
                 + (f" ({_first(cell.cause)})" if cell.cause else ""))

    cells: list = []

    def keep(cell) -> None:
        cells.append(cell)
        show(cell)

    commands = [args.generated_by or "convhub matrix " + " ".join(args.models)]
    kept, kept_seconds = [], 0.0
    if args.update:
        if not args.json_file:
            raise UsageError("--update needs --json-file: the matrix whose other cells it keeps")
        if Path(args.json_file).exists():
            kept, kept_seconds, before = matrix.load(Path(args.json_file))
            commands = before + commands
    from convhub.publish import write_text

    def write(interrupted: bool = False) -> dict:
        every = matrix.merge(kept, cells, {m.name for m in models})
        matrix.add_alternatives(every)
        seconds = kept_seconds + time.perf_counter() - started
        payload = matrix.to_json(every, seconds, interrupted=interrupted, commands=commands)
        if args.markdown:
            write_text(Path(args.markdown), matrix.to_markdown(every, seconds, "`, then `".join(commands),
                                                               interrupted=interrupted))
        if args.json_file:
            write_text(Path(args.json_file), dump_json(payload) + "\n")
        return payload

    try:
        matrix.run_matrix(models, targets, modes=wanted, registry=registry, jobs=args.jobs,
                          timeout=args.timeout, progress=progress, on_cell=keep)
    except BaseException:
        # Ctrl-C or SIGTERM an hour in: the cells decided so far are written, marked incomplete.
        if cells and (args.markdown or args.json_file):
            write(interrupted=True)
            progress(f"interrupted: wrote the {len(cells)} cells decided so far")
        raise
    payload = write()
    s = payload["summary"]
    text = f"{s['passed']} of {s['ran']} cells passed" + (f", {s['skipped']} skipped" if s["skipped"] else "")
    if args.json:
        print(dump_json({"ok": s["failed"] == 0, **payload}))
    print(text, file=sys.stderr if args.json else sys.stdout)
    return 0 if s["failed"] == 0 else 1


def _first(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 160 else line[:159] + "…"


def cmd_demo(args) -> int:
    from convhub import demo

    return demo.main(out=args.out, as_json=args.json, progress=_progress(args))


COMMANDS = {"convert": cmd_convert, "check": cmd_check, "route": cmd_route, "formats": cmd_formats, "plugins": cmd_plugins, "matrix": cmd_matrix, "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = None

    def fail(message: str, code: int, kind: str = "error", **extra: Any) -> int:
        # --json promises one object on stdout, even when the command line itself was wrong.
        if (args is None and "--json" in argv) or getattr(args, "json", False):
            print(json.dumps({"ok": False, "error": message, "exit_code": code, **extra}))
        print(f"convhub: {kind}: {message}", file=sys.stderr)
        return code

    previous = _on_sigterm()
    try:
        args = _parser_for(argv).parse_args(argv)
        if args.disable_plugin:  # read when the registry is built, before any plugin is imported
            from convhub.plugins import disabled_plugins

            os.environ["CONVHUB_DISABLE_PLUGINS"] = ",".join(sorted(disabled_plugins() | set(args.disable_plugin)))
        if args.command is None:
            build_parser().print_help()
            return 2
        return COMMANDS[args.command](args)
    except ConvhubError as exc:
        return fail(str(exc), exc.exit_code)
    except (KeyboardInterrupt, Interrupted) as exc:
        code = exc.exit_code if isinstance(exc, Interrupted) else 130
        name = "SIGTERM" if code == 143 else "SIGINT"
        # The work folder is gone and every output is as it was: publishing is all or nothing.
        return fail(f"stopped by {name}; no output was changed", code, kind="interrupted", interrupted=True)
    except Exception as exc:  # a bug in convhub or a plugin: say so in one line unless debugging
        if os.environ.get("CONVHUB_DEBUG"):
            raise
        return fail(f"{type(exc).__name__}: {exc} (set CONVHUB_DEBUG=1 for the traceback)", 1, kind="internal error")
    finally:
        _stop_workers()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


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


def _on_sigterm():
    """SIGTERM stops the run like Ctrl-C does: workers killed, work folder removed, exit 143."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
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
