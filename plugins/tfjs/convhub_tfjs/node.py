"""Running TF.js graph models in Node.js with @tensorflow/tfjs, the pure-JavaScript package.

The npm packages are installed on first use with `npm ci` from the package-lock.json shipped in
js/, into a per-user cache folder named after the lock's hash; `python -m convhub_tfjs.node install`
does it ahead of time. Tensors travel to and from one long-lived `node js/runner.js` process as
raw little-endian bytes behind a JSON header (see js/runner.js), so values arrive bit-exact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path
from typing import IO, Any, Mapping

import numpy as np

from convhub import status
from convhub.errors import RuntimeMissing
from convhub.toolchains import cache_root, install_once
from convhub.types import Artifact

from convhub_tfjs import graph_model

JS_DIR = Path(__file__).parent / "js"
RUNNER = JS_DIR / "runner.js"
PACKAGE_FILES = ("package.json", "package-lock.json")
COMPLETE = ".convhub-complete"  # written last, inside the folder that is then renamed into place
NPM_TIMEOUT = 900

# What TF.js computes in, for each NumPy dtype convhub may feed (TF.js has no 64-bit types).
WIRE_DTYPES = {
    "float32": "float32", "float64": "float32", "float16": "float32",
    "int32": "int32", "int64": "int32", "int16": "int32", "int8": "int32", "uint8": "int32", "uint16": "int32",
    "bool": "bool",
}
NUMPY_OF_WIRE = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype("u1")}


class NodeRuntimeError(RuntimeError):
    """The runner process died or answered with an error."""


class NodeMissing(RuntimeMissing):
    """Node.js or npm is not on PATH, or the npm install failed: TF.js models can't be checked here."""


def install_dir() -> Path:
    """Where this lock's packages live: one folder per lock, so a new lock never reuses old packages."""
    digest = hashlib.sha256()
    for name in PACKAGE_FILES:
        digest.update((JS_DIR / name).read_bytes())
    return cache_root() / f"tfjs-{digest.hexdigest()[:16]}"


def _executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise NodeMissing(
            f"the tfjs-node runner needs Node.js 18+ with npm: {name!r} is not on PATH (https://nodejs.org)"
        )
    return path


def _installed(target: Path) -> bool:
    return (target / COMPLETE).is_file()


def ensure_installed() -> Path:
    """Install the npm packages of js/package-lock.json once per user; returns the install folder.

    A file lock keeps two processes from installing at the same time, and the install happens in
    a scratch folder renamed into place at the end, so a half-done install is never used.
    """
    target = install_dir()
    install_once(target, _installed, lambda: _npm_install(target))
    return target


def _npm_install(target: Path) -> None:
    npm = _executable("npm")
    for stale in target.parent.glob(f"{target.name}.tmp-*"):  # left by an interrupted install
        shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=target.parent))
    try:
        for name in PACKAGE_FILES:
            shutil.copy2(JS_DIR / name, scratch / name)
        # --ignore-scripts: no package needs an install script (core-js's only prints a banner).
        try:
            with status.busy("installing the TF.js runtime for Node (first use, ~300 MB)"):
                proc = subprocess.run(
                    [npm, "ci", "--ignore-scripts", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"],
                    cwd=scratch, capture_output=True, text=True, timeout=NPM_TIMEOUT,
                    env={**os.environ, "npm_config_update_notifier": "false"},
                )
        except subprocess.TimeoutExpired:  # no registry, or a very slow one: nothing to check with
            raise NodeMissing(
                f"npm ci of @tensorflow/tfjs into {target} did not finish in {NPM_TIMEOUT} s"
            ) from None
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
            detail = lines[-1] if lines else f"exit code {proc.returncode}"
            raise NodeMissing(f"npm ci of @tensorflow/tfjs into {target} failed: {detail}")
        (scratch / COMPLETE).write_text("ok\n")
        os.rename(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_frame(stream: IO[bytes], header: dict, buffers: list[bytes] = ()) -> None:
    data = json.dumps(header).encode("utf-8")
    stream.write(struct.pack("<I", len(data)))
    stream.write(data)
    for buf in buffers:
        stream.write(buf)
    stream.flush()


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) < n:
        raise EOFError
    return data


def _read_frame(stream: IO[bytes]) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<I", _read_exactly(stream, 4))
    header = json.loads(_read_exactly(stream, length))
    total = sum(t["byteLength"] for t in header.get("tensors", []))
    return header, _read_exactly(stream, total) if total else b""


def _stop(proc: subprocess.Popen, stderr: IO[bytes]) -> None:
    with contextlib.suppress(OSError):
        proc.stdin.close()  # the runner exits when its stdin ends
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    stderr.close()


class Session:
    """A graph model loaded in a `node` process, with the signature's input and output names."""

    def __init__(self, artifact: Artifact):
        model_dir = Path(artifact.path).resolve()
        model_json = graph_model.load(model_dir)
        self.inputs, self.outputs = graph_model.signature_of(model_json, model_dir)
        # TF.js returns int32 where the graph says int64 and so on; hand back the graph's dtypes.
        self._ops = graph_model.ops_of(model_json)  # for the hint a TF.js error gets
        self._output_dtypes = {
            name: graph_model.NUMPY_DTYPES.get(info.get("dtype", ""))
            for name, info in model_json["signature"]["outputs"].items()
        }
        node = _executable("node")
        modules = ensure_installed()
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [node, str(RUNNER), str(modules), str(model_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
        )
        self._finalizer = weakref.finalize(self, _stop, self._proc, self._stderr)
        header, _ = self._receive()
        self.tfjs_version = header.get("tfjs")
        self.backend = header.get("backend")

    def close(self) -> None:
        self._finalizer()

    def _died(self) -> NodeRuntimeError:
        self._proc.poll()
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"exit code {self._proc.returncode}"
        return NodeRuntimeError(f"the Node.js TF.js runner stopped: {detail}")

    def _receive(self) -> tuple[dict, bytes]:
        try:
            header, payload = _read_frame(self._proc.stdout)
        except EOFError:
            raise self._died() from None
        if "error" in header:
            raise RuntimeError(f"TF.js: {header['error']}{graph_model.hint(header['error'], self._ops)}")
        return header, payload

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        specs, buffers = [], []
        for spec in self.inputs:
            if spec.name not in feeds:
                raise KeyError(f"no value for the input {spec.name!r}")
            value = np.asarray(feeds[spec.name])
            wire = WIRE_DTYPES.get(value.dtype.name)
            if wire is None:
                raise TypeError(f"input {spec.name!r}: TF.js cannot take {value.dtype} values")
            if wire == "int32" and value.size and (value.min() < -(2**31) or value.max() >= 2**31):
                raise ValueError(f"input {spec.name!r} has values outside int32, TF.js's only integer type")
            data = np.ascontiguousarray(value, dtype=NUMPY_OF_WIRE[wire]).tobytes()
            specs.append({"name": spec.name, "dtype": wire, "shape": list(value.shape), "byteLength": len(data)})
            buffers.append(data)
        try:
            _write_frame(self._proc.stdin, {"tensors": specs}, buffers)
        except (BrokenPipeError, OSError):
            raise self._died() from None
        header, payload = self._receive()
        results, offset = {}, 0
        for spec in header["tensors"]:
            raw = payload[offset : offset + spec["byteLength"]]
            offset += spec["byteLength"]
            array = np.frombuffer(raw, dtype=NUMPY_OF_WIRE[spec["dtype"]]).reshape(spec["shape"])
            wanted = self._output_dtypes.get(spec["name"]) or ("bool" if spec["dtype"] == "bool" else spec["dtype"])
            results[spec["name"]] = array.astype(wanted)  # a copy, also when the dtype is the same
        return {name: results[name] for name in self.outputs}


def main(argv: list[str] | None = None) -> int:
    """`python -m convhub_tfjs.node install`: install the Node.js packages now; `where`: print the folder."""
    args = sys.argv[1:] if argv is None else argv
    if args not in (["install"], ["where"]):
        print("usage: python -m convhub_tfjs.node install|where", file=sys.stderr)
        return 2
    if args == ["where"]:
        print(install_dir())
        return 0
    try:
        _executable("node")
        print(ensure_installed())
    except (NodeMissing, NodeRuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"convhub_tfjs: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
