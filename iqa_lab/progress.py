"""Progress of long work — count, rate and ETA — on stderr, and silent where nobody watches.

``track(items, "hashing images", unit="images")`` wraps an iterable (``size=`` counts batches by
their length); ``Progress(total, ...)`` is the same counter for work that advances by hand
(``bar.advance(len(batch))``). Both print
``<description>: 120/1000 images (12%), 3.4 images/s, elapsed 35s, ETA 4m18s``.

Shown when stderr is a terminal (one line, redrawn at most every ``refresh`` seconds) and not
otherwise (tests, logs, pipes). ``IQA_LAB_PROGRESS=1`` shows it anyway — in a log file as a full
line at most every ``line_every`` seconds — and ``IQA_LAB_PROGRESS=0`` hides it everywhere.
Work that ends within ``delay`` seconds prints nothing: a pass served from a cache stays quiet.

The rate is the mean since the start (``done / elapsed``) and the ETA ``(total - done) / rate``:
no ETA before the first item is done.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")

ENV = "IQA_LAB_PROGRESS"
DELAY = 1.0  # seconds of work before anything is printed (tests set 0)
CLOCK = time.monotonic  # the default clock (tests replace it)


def format_duration(seconds: float | None) -> str:
    """``?`` (unknown), ``42s``, ``4m18s`` or ``1h02m``."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_rate(rate: float | None, unit: str) -> str:
    """``3.4 images/s``, or ``12.5 s per image`` when slower than one unit per second."""
    if not rate:
        return f"? {unit}/s"
    if rate >= 100:
        return f"{rate:.0f} {unit}/s"
    if rate >= 1:
        return f"{rate:.3g} {unit}/s"
    return f"{1 / rate:.3g} s per {unit.removesuffix('s') or unit}"


def progress_shown(stream: TextIO) -> bool:
    """Whether progress goes to ``stream``: ``IQA_LAB_PROGRESS`` (``0``/``1``) when set, else
    whether ``stream`` is a terminal."""
    setting = os.environ.get(ENV, "").strip()
    if setting in ("0", "1"):
        return setting == "1"
    if setting:
        raise ValueError(f"{ENV} must be 0 (hide progress) or 1 (show it), got '{setting}'")
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """A counter of ``total`` units of work that reports its rate and ETA (module docstring).

    ``enabled=None`` decides by ``progress_shown(stream)``; ``delay=None`` is ``DELAY`` and
    ``clock=None`` is ``CLOCK``.
    """

    def __init__(
        self,
        total: int | None,
        description: str,
        unit: str = "items",
        *,
        enabled: bool | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] | None = None,
        delay: float | None = None,
        refresh: float = 0.2,
        line_every: float = 30.0,
    ):
        if total is not None and total < 0:
            raise ValueError(f"progress total must be >= 0, got {total}")
        self.total = total
        self.description = description
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = progress_shown(self.stream) if enabled is None else enabled
        isatty = getattr(self.stream, "isatty", None)
        self.redraw = bool(isatty and isatty())  # terminal: one line rewritten in place
        self.clock = clock if clock is not None else CLOCK
        self.delay = DELAY if delay is None else delay
        self.refresh, self.line_every = refresh, line_every
        self.done = 0
        self.started = self.clock()
        self.shown_at: float | None = None  # when a report was last written
        self.closed = False

    # -- numbers -------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    @property
    def rate(self) -> float | None:
        """Units per second since the start; None before any unit or any time."""
        elapsed = self.elapsed
        return self.done / elapsed if self.done and elapsed > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate; None when unknown (no total, or no rate yet)."""
        rate = self.rate
        if self.total is None or rate is None:
            return None
        return max(self.total - self.done, 0) / rate

    def summary(self) -> str:
        """``<description>: <status>``."""
        return f"{self.description}: {self.status()}"

    def status(self) -> str:
        """``done/total unit (pct%), rate, elapsed, ETA`` (no ETA once closed)."""
        if self.total is None:
            count = f"{self.done} {self.unit}"
        else:
            percent = 100.0 * self.done / self.total if self.total else 100.0
            count = f"{self.done}/{self.total} {self.unit} ({percent:.0f}%)"
        parts = [
            count,
            format_rate(self.rate, self.unit),
            f"elapsed {format_duration(self.elapsed)}",
        ]
        if not self.closed:
            parts.append(f"ETA {format_duration(self.eta)}")
        return ", ".join(parts)

    # -- reporting -----------------------------------------------------------------------------
    def advance(self, count: int = 1) -> None:
        """``count`` more units done; reports when due."""
        self.done += count
        if not self.enabled:
            return
        now = self.clock()
        if now - self.started < self.delay:
            return
        interval = self.refresh if self.redraw else self.line_every
        if self.shown_at is None or now - self.shown_at >= interval:
            self._write()
            self.shown_at = now

    def _write(self, final: bool = False) -> None:
        text = self.summary()
        if self.redraw:
            # \r and clear-to-end-of-line: the line is redrawn in place, the last one kept.
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """The final report (count, rate, elapsed; no ETA), only when something was shown or the
        work took longer than ``delay``."""
        if self.closed:
            return
        self.closed = True
        if self.enabled and (self.shown_at is not None or self.elapsed >= self.delay):
            self._write(final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(
    items: Iterable[T],
    description: str,
    total: int | None = None,
    unit: str = "items",
    size: Callable[[T], int] | None = None,
    **options,
) -> Iterator[T]:
    """Yield ``items``, each counting ``size(item)`` units once the caller is done with it (one
    without ``size``; an iqa_lab DataLoader's batches: ``size=lambda b: len(b["image"])`` and
    ``total=len(loader.dataset)``).
    ``total`` defaults to ``len(items)`` when ``size`` is not given; ``options`` go to
    ``Progress``."""
    if total is None and size is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, description, unit, **options) as bar:
        for item in items:
            yield item
            bar.advance(1 if size is None else size(item))
