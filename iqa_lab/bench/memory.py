"""Peak resident memory of this process and its children (loader workers), sampled from /proc."""

from __future__ import annotations

import os
import resource
import threading
from pathlib import Path

GIB = 1024**3


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:  # the process ended between the listing and the read
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            pass
    return found


def tree_rss_bytes(pid: int | None = None) -> int:
    """Resident bytes of ``pid`` (default: this process) and all its descendants."""
    todo, total = [pid or os.getpid()], 0
    while todo:
        current = todo.pop()
        total += _rss_bytes(current)
        todo += _children(current)
    return total


class PeakRSS:
    """``with PeakRSS(interval) as peak:`` samples the process tree's resident memory every
    ``interval`` seconds; ``peak.bytes`` is the largest sum seen (never below this process's own
    peak from ``getrusage``, which catches spikes between samples)."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.bytes = max(self.bytes, tree_rss_bytes())
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> PeakRSS:
        if not Path("/proc/self/status").exists():
            raise RuntimeError("peak RSS is read from /proc, which this system lacks (Linux only)")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.bytes = max(self.bytes, tree_rss_bytes())
        own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        self.bytes = max(self.bytes, own_peak)
