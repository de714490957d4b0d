"""A bench ratio with its goal and verdict; the printed table and ``bench.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from iqa_lab.files import atomic_write_text

NOT_MEASURED = "not measured"


@dataclass
class Ratio:
    """One measured ratio; ``value`` None when it could not be measured (``note`` says why)."""

    name: str
    value: float | None
    goal: Mapping  # {"max": x} or {"min": x}
    detail: dict = field(default_factory=dict)
    note: str = ""

    @property
    def goal_text(self) -> str:
        return " ".join(
            f"{'≤' if side == 'max' else '≥'} {bound:g}" for side, bound in self.goal.items()
        )

    @property
    def verdict(self) -> str:
        if self.value is None:
            return NOT_MEASURED
        ok = all(
            self.value <= bound if side == "max" else self.value >= bound
            for side, bound in self.goal.items()
        )
        return "pass" if ok else "FAIL"

    def as_dict(self) -> dict:
        return {**asdict(self), "goal": dict(self.goal), "verdict": self.verdict}


def table(ratios: list[Ratio]) -> str:
    """The ratios as aligned text lines: name, value, goal, verdict, note."""
    width = max(len("ratio"), *(len(r.name) for r in ratios))
    lines = [f"{'ratio':<{width}}  {'value':>8}  {'goal':<8}  verdict"]
    for r in ratios:
        if r.value is None:
            verdict, value = f"{r.verdict}: {r.note}", "-"
        else:
            verdict, value = r.verdict + (f"  ({r.note})" if r.note else ""), f"{r.value:.3g}"
        lines.append(f"{r.name:<{width}}  {value:>8}  {r.goal_text:<8}  {verdict}")
    return "\n".join(lines)


def write_json(path: Path, ratios: list[Ratio], setup: Mapping) -> dict:
    """``bench.json``: the setup measured (model, data, threads, …) and every ratio."""
    report = {"setup": dict(setup), "ratios": [r.as_dict() for r in ratios]}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    return report
