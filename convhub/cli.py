"""The `convhub` command.

Exit codes: 0 success; 1 a conversion or a parity check failed; 2 bad usage or bad input.
`--json` puts exactly one JSON object on stdout; everything meant for people goes to stderr.
Listing commands (formats, plugins, route, --help) import no ML framework.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Sequence

from convhub.errors import ConvhubError, UsageError

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


def build_parser() -> argparse.ArgumentParser:
    from convhub import __version__

    parser = _Parser(prog="convhub", description="Convert trained models between frameworks and check parity.")
    parser.add_argument("--version", action="version", version=f"convhub {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("convert", help="convert a model and check the result against it")
    p.add_argument("args", nargs="+", metavar="[SRC→DST] INPUT",
                   help="the conversion (e.g. keras→tflite) and the input: a file, a directory, or file.py:NAME")
    p.add_argument("-o", "--output", required=True, help="where to write the converted model")
    p.add_argument("--from", dest="source", help="source format (default: detected from the input)")
    p.add_argument("--to", dest="target", help="target format, when not given as SRC→DST")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--seed", type=int, default=0, help="seed of the random parity inputs (default 0)")
    p.add_argument("--atol", type=float, help="absolute tolerance (default: by the artifact's precision)")
    p.add_argument("--rtol", type=float, help="relative tolerance (default: by the artifact's precision)")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the parity check")
    p.add_argument("--keep-failed", action="store_true", help="write OUTPUT even when the parity check fails")
    p.add_argument("--signature", help="SavedModel signature to convert (default serving_default)")
    p.add_argument("--unsafe", action="store_true",
                   help="allow Keras files with Python code (Lambda layers); only for files you trust")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")

    p = sub.add_parser("route", help="show how one format converts to another (imports no framework)")
    p.add_argument("pair", metavar="SRC→DST")
    p.add_argument("--all", action="store_true", help="list the alternatives too")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("formats", help="list the formats that installed plugins know")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("plugins", help="list installed plugins and what each provides")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("demo", help="convert built-in example models through every route and check parity")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="keep the converted models in this directory")
    return parser


def _emit(args: argparse.Namespace, payload: Any, human: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2))
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
        [p.name, p.version or "", ", ".join(p.formats), ", ".join(p.conversions), ", ".join(p.runners)]
        for p in plugins
    ]
    _emit(args, [p.to_json() for p in plugins], render(["plugin", "version", "formats", "conversions", "runners"], rows))
    return 0


def cmd_route(args) -> int:
    from convhub.plugins import default_registry

    registry = default_registry()
    source, target = parse_pair(args.pair)
    registry.format(source), registry.format(target)
    graph = registry.graph
    routes = graph.routes(source, target)
    if not routes:
        graph.best(source, target)  # raises NoRouteError with the reasons
    shown = routes if args.all else routes[:1]
    lines = []
    for i, route in enumerate(shown):
        label = "" if not args.all else ("best: " if i == 0 else "  or: ")
        lines.append(f"{label}{route}   (cost {route.cost:g}{', lossy' if route.lossy else ''})")
        lines += [f"    {h.source} → {h.target}  [{h.plugin}] {h.description}" for h in route.hops]
    blocked = [r for r in graph.explain(source, target) if "→" in r] if args.all else []
    lines += [f"  unusable: {r}" for r in blocked]
    payload = {"source": source, "target": target, "routes": [r.to_json() for r in shown], "unusable": blocked}
    _emit(args, payload, "\n".join(lines))
    return 0


def _progress(args):
    if getattr(args, "quiet", False):
        return lambda msg: None
    start = time.perf_counter()
    return lambda msg: print(f"[{time.perf_counter() - start:5.1f}s] {msg}", file=sys.stderr, flush=True)


def summary(result) -> str:
    from convhub.table import human_bytes, number, render

    checks = {p.format: p for p in result.parity}
    rows = []
    for art in result.artifacts:
        p = checks.get(art.format)
        tol = f"{p.tolerance.atol:g}/{p.tolerance.rtol:g}" if p and p.tolerance else ""
        verdict = "" if p is None else ("ok" if p.passed else ("FAILED" if p.checked else "not checked"))
        rows.append([art.format, art.plugin, human_bytes(art.bytes), f"{art.seconds:.1f}s",
                     number(p.max_abs_diff) if p else "", tol, verdict])
    lines = [f"route: {result.route}", render(["artifact", "plugin", "size", "time", "max abs diff", "atol/rtol", "parity"], rows)]
    if result.ok:
        lines.append(f"wrote {result.output} in {result.seconds:.1f}s (parity inputs seed {result.seed})")
    else:
        lines.append(f"FAILED: {result.error}")
        lines.append(f"kept {result.output} (--keep-failed)" if result.output else "nothing was written")
    return "\n".join(lines)


def cmd_convert(args) -> int:
    from convhub import pyref
    from convhub.pipeline import run

    if len(args.args) > 2:
        raise UsageError(f"expected [SRC→DST] INPUT, got {len(args.args)} arguments")
    source, target = args.source, args.target
    if len(args.args) == 2:
        if not _is_pair(args.args[0]):
            raise UsageError(f"malformed conversion {args.args[0]!r}: write SOURCE→TARGET, e.g. keras→tflite")
        source, target = parse_pair(args.args[0])
    elif target is None:
        raise UsageError("name the target: convhub convert SRC→DST INPUT -o OUTPUT, or --to FORMAT")
    model: Any = args.args[-1]
    options = {"safe_mode": not args.unsafe}
    if args.signature:
        options["signature"] = args.signature
    progress = _progress(args)
    if pyref.looks_like_reference(model):
        progress(f"importing {model} (this runs its code)")
        model = pyref.load(model)
    result = run(
        model, target, args.output, source=source, force=args.force, check=args.check, seed=args.seed,
        atol=args.atol, rtol=args.rtol, keep_failed=args.keep_failed, options=options, progress=progress,
    )
    text = summary(result)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        print(text, file=sys.stderr)
    else:
        print(text)
    return 0 if result.ok else 1


def cmd_demo(args) -> int:
    from convhub import demo

    return demo.main(out=args.out, as_json=args.json, progress=_progress(args))


COMMANDS = {"convert": cmd_convert, "route": cmd_route, "formats": cmd_formats, "plugins": cmd_plugins, "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 2
        return COMMANDS[args.command](args)
    except ConvhubError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "error": str(exc), "exit_code": exc.exit_code}))
        print(f"convhub: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("convhub: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in convhub or a plugin: say so in one line unless debugging
        if os.environ.get("CONVHUB_DEBUG"):
            raise
        print(f"convhub: internal error: {type(exc).__name__}: {exc} (set CONVHUB_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
