"""What a run leaves for deploying its outputs: the provenance sidecar beside each one, a new
version in a folder of versions (TF Serving), the check's inputs and outputs (--save-io), and
the size and latency figures each result carries. The pipeline calls these around its
transaction (convhub.publish); each is checked before anything loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from convhub import provenance, validate
from convhub.errors import UsageError
from convhub.publish import versions_in

if TYPE_CHECKING:
    from convhub.plan import Target
    from convhub.plugins import Registry
    from convhub.publish import Transaction, _Output
    from convhub.results import ConversionResult, HopOutcome
    from convhub.types import Artifact, Format

EXPECTED = "expected/"  # --save-io: the source's outputs, beside the inputs (which keep their own names)


def _options_for(target: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options one target sees: the unscoped ones and its own TARGET.KEY ones."""
    scoped = {k.partition(".")[2]: v for k, v in options.items() if k.startswith(target + ".")}
    return {**{k: v for k, v in options.items() if "." not in k}, **scoped}


def version_folders(formats: Mapping[str, Format], destinations: Mapping[str, Path | None],
                    options: Mapping[str, Any], sources: Sequence[Path]) -> dict[str, tuple[Path, int | None]]:
    """For each target published as versions: the folder of versions and the version asked for,
    checked now (exit 2): the folder is a folder (or will be), away from the input, writable,
    and a version asked for is not there already."""
    found: dict[str, tuple[Path, int | None]] = {}
    for name, fmt in formats.items():
        dest = destinations.get(name)
        if fmt.versions is None or dest is None:
            continue
        if dest.exists() and not dest.is_dir():
            raise UsageError(f"{dest} is a file; the {name} output is a folder (it holds the model's folder of versions)")
        folder, version = fmt.versions(dest, _options_for(name, options))
        validate.destination(folder, force=True, directory=True, sources=list(sources))
        if version is not None and os.path.lexists(folder / str(version)):
            raise UsageError(f"version {version} exists in {folder}; a version is never replaced",
                             hint=f"leave out --version to add version {max(versions_in(folder), default=0) + 1}")
        found[name] = (folder, version)
    return found


def check_outputs(destinations: Mapping[str, Path | None], versions: Mapping[str, tuple[Path, int | None]],
                  save_io: str | os.PathLike[str] | None, sources: Sequence[Path], *, check: bool = True,
                  benchmark: bool = False) -> None:
    """The files a run writes besides its artifacts: no sidecar path is a folder, and the
    --save-io file is an .npz that is neither an input nor another output. Both --save-io and
    --benchmark happen where the check runs: without it they would silently do nothing."""
    for flag, given in (("--save-io", save_io is not None), ("--benchmark", benchmark)):
        if given and not check:
            raise UsageError(f"{flag} works on the parity check, which --no-check turns off")
    for name, dest in destinations.items():
        if dest is not None and name not in versions:
            side = provenance.sidecar_path(dest)
            if side.is_dir():
                raise UsageError(f"{side} is a folder; convhub writes the provenance of {dest} there")
    if save_io is None:
        return
    path = Path(save_io)
    if path.suffix.lower() != ".npz":
        raise UsageError(f"--save-io {path}: name an .npz file (it is read back with --inputs)")
    if path.is_dir():
        raise UsageError(f"--save-io {path} is a folder; name an .npz file")
    taken = [d for d in destinations.values() if d is not None]
    if any(os.path.realpath(path) == os.path.realpath(d) for d in taken):
        raise UsageError(f"--save-io {path} is also an output of this run; choose another path")
    validate.destination(path, force=True, directory=False, sources=list(sources))


def provenance_of(registry: Registry, model: Any, source: Artifact, seed: int,
                  inputs: str | os.PathLike[str] | None) -> provenance.Provenance:
    """The run's provenance: the source as given, and the inputs the check runs on."""
    described = {"seed": seed} if inputs is None else {
        "file": str(inputs), "file_sha256": provenance.content_hash(Path(inputs))}
    return provenance.Provenance(registry, provenance.describe_source(model, source.format), described)


def add_figures(result: ConversionResult, source: Artifact, extras: Mapping[str, Any]) -> None:
    """The source's size and, with --benchmark, its latency: what each artifact is compared with."""
    result.source_latency = extras.get("source_latency")
    if source.path is not None and Path(source.path).exists():
        from convhub.execute import size_of

        result.source_bytes = size_of(Path(source.path))


def publish(transaction: Transaction, final: HopOutcome, target: Target, force: bool,
            versions: tuple[Path, int | None] | None, result: ConversionResult, workdir: Path,
            extras: Mapping[str, Any], prov: provenance.Provenance) -> _Output:
    """Add a target's artifact to the transaction with its sidecar: beside it, or as a new
    version of its folder of versions."""
    assert final.artifact is not None and final.artifact.path is not None and target.destination is not None
    built = final.artifact.path
    record = prov.record(list(target.route.hops), target.options)
    result.provenance = provenance.sidecar(record, built, final.check, result.ok, result.error, extras.get("feeds"))
    side = workdir / f"sidecar-{len(transaction.outputs)}.json"
    side.write_text(provenance.dumps(result.provenance), encoding="utf-8")
    if versions is not None:
        return transaction.add_version(built, versions[0], versions[1], sidecar=side)
    return transaction.add(built, target.destination, force, sidecar=side)


def save_io(transaction: Transaction, path: str | os.PathLike[str] | None, extras: Mapping[str, Any],
            workdir: Path) -> bool:
    """--save-io: the check's exact inputs under their names, the source's outputs on them under
    expected/NAME, in one .npz (published with the outputs); False when there were none."""
    import numpy as np

    feeds, expected = extras.get("feeds"), extras.get("expected")
    if path is None or not feeds:
        return False
    built = workdir / "inputs-and-outputs.npz"
    np.savez(built, **dict(feeds), **{EXPECTED + k: v for k, v in (expected or {}).items()})
    transaction.add(built, Path(path), True)
    return True
