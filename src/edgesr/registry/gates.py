"""Quality gates of a promotion: each a value, a limit and a verdict, written on the version as tags.

Pure functions of the versions' metrics (:data:`edgesr.registry.contents.METRICS`) and the latencies
measured for the device profiles; :mod:`edgesr.registry.promote` gathers the inputs and records the result.

- ``psnr/<runtime>/<set>``: the candidate's int8 PSNR-Y >= the champion's minus ``psnr_tolerance_db``
  (passes with no limit when there is no champion, or it has no value for that runtime and set; fails
  when the champion was measured on a set the candidate was not, e.g. a checkout without ``../shared``);
- ``int8_drop/<runtime>/<set>``: fp32 - int8 PSNR-Y <= ``max_int8_drop_db``;
- ``parity/<runtime>``: max |PyTorch - runtime| of the fp32 export <= ``max_parity_abs``;
- ``latency/<profile>``: median ms of one tile on the profile's runtime, precision and threads <= its budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from edgesr.registry.settings import DeviceProfile, PromotionGates

__all__ = ["GateResult", "failed", "gate_tags", "latency_gates", "quality_gates"]


@dataclass(frozen=True)
class GateResult:
    """One gate: ``value`` must be ``rule`` (>= or <=) ``limit``; ``limit`` None: nothing to compare with."""

    name: str
    value: float
    limit: float | None
    rule: Literal[">=", "<="]

    @property
    def passed(self) -> bool:
        if self.limit is None:
            return True
        return self.value >= self.limit if self.rule == ">=" else self.value <= self.limit

    def describe(self) -> str:
        limit = "no champion value" if self.limit is None else f"{self.rule} {self.limit:.4g}"
        value = "not measured" if math.isnan(self.value) else f"{self.value:.4g}"
        return f"{self.name}: {value} ({limit}) {'pass' if self.passed else 'FAIL'}"


def quality_gates(
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    gates: PromotionGates,
    runtimes: Iterable[str],
) -> list[GateResult]:
    """PSNR against the champion, int8 drop and export parity of the candidate on ``runtimes``."""
    results = []
    for runtime in runtimes:
        quantize = candidate["quantize"][runtime]
        previous = (champion or {}).get("quantize", {}).get(runtime, {}).get("psnr", {}).get("int8", {})
        measured = quantize["psnr"]["int8"]
        for set_name in [*measured, *(s for s in previous if s not in measured)]:
            limit = previous[set_name] - gates.psnr_tolerance_db if set_name in previous else None
            value = measured.get(set_name, math.nan)  # NaN fails any limit: a set the candidate was not measured on
            results.append(GateResult(f"psnr/{runtime}/{set_name}", value, limit, ">="))
        for set_name, summary in quantize["sets"].items():
            results.append(GateResult(f"int8_drop/{runtime}/{set_name}", summary["drop"], gates.max_int8_drop_db, "<="))
        parity = candidate["export"][f"{runtime}_max_abs"]
        results.append(GateResult(f"parity/{runtime}", parity, gates.max_parity_abs, "<="))
    return results


def latency_gates(latencies_ms: Mapping[str, float], profiles: Mapping[str, DeviceProfile]) -> list[GateResult]:
    """Each profile's measured latency against its budget."""
    return [
        GateResult(f"latency/{name}", latencies_ms[name], profile.latency_budget_ms, "<=")
        for name, profile in profiles.items()
    ]


def failed(results: Iterable[GateResult]) -> list[GateResult]:
    """The gates that did not pass, in order."""
    return [result for result in results if not result.passed]


def gate_tags(results: Iterable[GateResult]) -> dict[str, str]:
    """``gate.<name>.{value,limit,passed}`` for every gate (MLflow tag keys: '/' and '.' are allowed)."""
    tags = {}
    for result in results:
        tags[f"gate.{result.name}.value"] = f"{result.value:.6g}"
        tags[f"gate.{result.name}.limit"] = "none" if result.limit is None else f"{result.rule} {result.limit:.6g}"
        tags[f"gate.{result.name}.passed"] = "yes" if result.passed else "no"
    return tags
