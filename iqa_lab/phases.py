"""Wall time of a run's phases (data, features, training, test, ...), in the order they ran.

``with clock.phase("test"): ...`` adds the block's wall time to that phase; ``clock.carve("fit",
"features", seconds)`` moves work timed elsewhere (a callback inside ``trainer.fit``) out of one
phase into its own. ``clock.seconds`` goes into ``results.json`` (``phases_s``) and
``clock.summary()`` prints ``phases: data_prepare 1.2 s, features 40.3 s, ... (total 58.1 s)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class PhaseClock:
    """Seconds per named phase; a phase timed twice adds up."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self.clock()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + self.clock() - start

    def carve(self, whole: str, part: str, seconds: float | None, rest: str | None = None) -> None:
        """Split ``seconds`` of phase ``whole`` off into phase ``part`` (placed before it); the
        remainder is renamed ``rest`` when given. Nothing to carve (None or 0) leaves ``part``
        out."""
        total = self.seconds.pop(whole)
        carved = min(max(seconds or 0.0, 0.0), total)
        if carved:
            self.seconds[part] = self.seconds.get(part, 0.0) + carved
        self.seconds[rest or whole] = total - carved

    def rounded(self, digits: int = 2) -> dict[str, float]:
        return {name: round(s, digits) for name, s in self.seconds.items()}

    def summary(self) -> str:
        parts = ", ".join(f"{name} {s:.1f} s" for name, s in self.seconds.items())
        return f"phases: {parts} (total {sum(self.seconds.values()):.1f} s)"
