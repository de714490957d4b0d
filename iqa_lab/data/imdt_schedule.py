"""The schedule of iterative mixed-database training (IMDT, StairIQA, Sun et al. 2023, Algorithm 1):
which database trains in each epoch and for how many epochs (``E_i``) per loop.

The epochs a database gets in one loop: Algorithm 1 prints ``E_i = max(round(N_max / N_i), E)``
but calls E "the upper bound"; ``epochs_rule: min`` (default) takes E as the bound,
``min(round(N_max / N_i), E)``, and ``epochs_rule: max`` reproduces the printed formula.
"""

from __future__ import annotations

from dataclasses import dataclass

from iqa_lab.errors import ConfigError

EPOCH_RULES = ("min", "max")


def epochs_per_database(sizes: dict[str, int], upper: int, rule: str = "min") -> dict[str, int]:
    """E_i for each database from its training size N_i (Algorithm 1, line 7)."""
    if rule not in EPOCH_RULES:
        raise ConfigError(f"data.imdt.epochs_rule must be one of {EPOCH_RULES}, got '{rule}'")
    if upper < 1:
        raise ConfigError(f"data.imdt.epochs_upper must be at least 1, got {upper}")
    empty = sorted(name for name, n in sizes.items() if n <= 0)
    if empty:
        raise ConfigError(f"IMDT: database(s) {empty} have no training images under this protocol")
    largest = max(sizes.values())
    pick = min if rule == "min" else max
    # Python's round() rounds halves to even; Algorithm 1's [.] is ordinary rounding.
    return {name: pick(int(largest / n + 0.5), upper) for name, n in sizes.items()}


@dataclass(frozen=True)
class Step:
    """One Lightning epoch of the schedule (all 0-based)."""

    loop: int
    database: str
    epoch: int  # within this database's block of the loop


class IMDTSchedule:
    """Algorithm 1's order: ``loops`` times, each database in turn for its E_i epochs."""

    def __init__(
        self, sizes: dict[str, int], loops: int, epochs_upper: int, epochs_rule: str = "min"
    ):
        if loops < 1:
            raise ConfigError(f"data.imdt.loops must be at least 1, got {loops}")
        self.sizes = dict(sizes)
        self.loops = loops
        self.epochs = epochs_per_database(self.sizes, epochs_upper, epochs_rule)
        self.steps = [
            Step(loop, name, epoch)
            for loop in range(loops)
            for name in self.sizes
            for epoch in range(self.epochs[name])
        ]

    @property
    def total_epochs(self) -> int:
        return len(self.steps)

    @property
    def databases(self) -> list[str]:
        return list(self.sizes)

    def at(self, epoch: int) -> Step:
        if not 0 <= epoch < len(self.steps):
            raise IndexError(
                f"epoch {epoch} is outside the IMDT schedule of {len(self.steps)} epochs"
            )
        return self.steps[epoch]

    def describe(self) -> str:
        blocks = ", ".join(
            f"{name} x{self.epochs[name]} (N={self.sizes[name]})" for name in self.sizes
        )
        return f"{self.loops} loops of [{blocks}] = {self.total_epochs} epochs"
