"""``edgesr promote MODEL``: move ``champion`` to the ``candidate`` version when every gate passes.

The candidate's files are downloaded from the registry, each device profile's latency is measured on
this machine with that profile's runtime, precision and threads, and the gates of
:mod:`edgesr.registry.gates` are evaluated against the current champion. The decision and every gate's
value, limit and verdict are written on the candidate version as tags, pass or fail, so the registry
is the audit trail (each attempt's decision is kept as ``promotion.<n>.*``). On a pass, one signed
bundle per profile is built and published as files of the version (``bundles/<profile>/``) before the
alias moves, so a champion always has its bundles. A failed gate leaves ``champion`` where it was.
``dry_run`` measures and decides but writes nothing.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edgesr.config import Params
from edgesr.errors import MissingInputError, UsageError
from edgesr.registry.bundle import build_bundle
from edgesr.registry.contents import CONTRACT, METRICS, version_file
from edgesr.registry.gates import GateResult, failed, gate_tags, latency_gates, quality_gates
from edgesr.registry.profiles import model_files, profile_latencies
from edgesr.registry.signing import key_id, load_private_key
from edgesr.registry.store import CANDIDATE, CHAMPION, ModelVersion, Registry

__all__ = ["BUNDLES", "Decision", "promote"]

BUNDLES = "bundles"


@dataclass
class Decision:
    """The outcome of one promotion attempt."""

    model: str
    candidate: str
    champion_before: str | None
    gates: list[GateResult]
    dry_run: bool
    bundles: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not failed(self.gates)

    @property
    def promoted(self) -> bool:
        return self.passed and not self.dry_run

    def describe(self) -> str:
        lines = [f"  {gate.describe()}" for gate in self.gates]
        if self.passed:
            verdict = "would be promoted (dry run)" if self.dry_run else f"promoted to {CHAMPION}"
        else:
            names = ", ".join(gate.name for gate in failed(self.gates))
            kept = self.champion_before or "none"
            verdict = f"NOT promoted: failed gate(s) {names}; {CHAMPION} stays at version {kept}"
        return "\n".join([f"{self.model} version {self.candidate}: {verdict}", *lines])


def _metrics(registry: Registry, version: ModelVersion, folder: Path) -> dict:
    return json.loads(registry.download(version, METRICS, folder).read_text())


def _download_models(registry: Registry, version: ModelVersion, params: Params, folder: Path) -> None:
    """The files every profile runs, plus the contract and metrics (not the published bundles)."""
    wanted = {CONTRACT, METRICS}
    for profile in params.registry.profiles.values():
        main = Path(version_file(profile.runtime, profile.precision))
        wanted |= {(main.parent / name).as_posix() for name in model_files(profile.runtime)}
    for path in sorted(wanted):
        registry.download(version, path, (folder / path).parent)


def promote(params: Params, name: str, registry: Registry, dry_run: bool = False, root: Path = Path(".")) -> Decision:
    """Evaluate the gates for ``name``'s candidate; promote it unless one fails (or ``dry_run``).

    The signing key is read from ``registry.keys_dir`` (relative to ``root``).
    """
    cfg = params.registry
    candidate = registry.by_alias(name, CANDIDATE)
    if candidate is None:
        raise MissingInputError(
            f"{name} has no '{CANDIDATE}' version in the registry at {registry.uri}: "
            "register one first (`dvc repro register` or `edgesr register`)"
        )
    champion = registry.by_alias(name, CHAMPION)
    version, champion_version = str(candidate.version), None if champion is None else str(champion.version)
    if champion_version == version:
        raise UsageError(f"{name} version {version} is already the {CHAMPION}; register a new candidate to promote")
    key = None if dry_run else load_private_key(root / cfg.keys_dir)  # before any work: no key, no bundles
    with tempfile.TemporaryDirectory(prefix=f"promote-{name}-") as work:
        version_dir = Path(work) / "version"
        _download_models(registry, candidate, params, version_dir)
        metrics = json.loads((version_dir / METRICS).read_text())
        previous = _metrics(registry, champion, Path(work) / "champion") if champion is not None else None
        runtimes = sorted({p.runtime for p in cfg.profiles.values() if p.precision == "int8"})
        gates = quality_gates(metrics, previous, cfg.gates, runtimes)
        latencies = profile_latencies(cfg.profiles, version_dir, cfg.latency_repeats, cfg.latency_warmup)
        gates += latency_gates(latencies, cfg.profiles)
        decision = Decision(name, version, champion_version, gates, dry_run)
        if dry_run:
            return decision
        assert key is not None
        outcome = {
            "decision": "promoted" if decision.passed else "rejected",
            "failed_gates": ",".join(g.name for g in failed(gates)) or "none",
            "champion_before": decision.champion_before or "none",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        # the gate tags and promotion.* say how the latest attempt went; promotion.<n>.* keep every attempt
        attempt = int(candidate.tags.get("promotion.attempts", "0")) + 1
        tags = gate_tags(gates) | {"promotion.attempts": str(attempt)}
        tags |= {f"promotion.{key}": value for key, value in outcome.items()}
        tags |= {f"promotion.{attempt}.{key}": value for key, value in outcome.items()}
        if decision.passed:
            for profile_name, profile in cfg.profiles.items():
                target = Path(work) / BUNDLES / profile_name
                build_bundle(version_dir, target, name, version, profile_name, profile, key)
                registry.publish(candidate, target, f"{BUNDLES}/{profile_name}")
                decision.bundles.append(f"{BUNDLES}/{profile_name}")
            tags["bundles.signed_by"] = key_id(key.public_key())
            tags["bundles.profiles"] = ",".join(cfg.profiles)
        registry.set_tags(name, version, tags)
        if decision.passed:
            registry.set_alias(name, CHAMPION, version)
    return decision
