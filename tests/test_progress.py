"""Progress of long work: counts, rate and ETA are right, and nothing is printed when disabled."""

from __future__ import annotations

import io

import pytest

from iqa_lab.progress import Progress, format_duration, format_rate, progress_shown, track


class Clock:
    """A hand-driven clock: ``clock.now += 2`` is two seconds later."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_counts_rate_and_eta_follow_the_clock():
    clock, out = Clock(), io.StringIO()
    bar = Progress(100, "hashing", "images", enabled=False, stream=out, clock=clock)
    assert (bar.rate, bar.eta) == (None, None)  # nothing done: no rate, no ETA
    assert bar.summary() == "hashing: 0/100 images (0%), ? images/s, elapsed 0s, ETA ?"
    clock.now += 10
    bar.advance(25)
    assert bar.done == 25
    assert bar.rate == pytest.approx(2.5)
    assert bar.eta == pytest.approx(30.0)  # 75 left at 2.5/s
    assert bar.summary() == "hashing: 25/100 images (25%), 2.5 images/s, elapsed 10s, ETA 30s"
    clock.now += 290
    bar.advance(5)  # 30 in 300 s: slower than one a second
    assert bar.eta == pytest.approx(700.0)
    assert bar.summary() == (
        "hashing: 30/100 images (30%), 10 s per image, elapsed 5m00s, ETA 11m40s"
    )
    assert out.getvalue() == ""


def test_disabled_progress_prints_nothing_however_long_the_work():
    clock, out = Clock(), Terminal()
    with Progress(1000, "features", enabled=False, stream=out, clock=clock) as bar:
        for _ in range(1000):
            clock.now += 1
            bar.advance()
    assert out.getvalue() == ""


def test_not_a_terminal_is_silent_unless_the_environment_asks(monkeypatch):
    monkeypatch.delenv("IQA_LAB_PROGRESS", raising=False)
    assert not progress_shown(io.StringIO())  # a pipe, a log file, pytest's capture
    assert progress_shown(Terminal())
    monkeypatch.setenv("IQA_LAB_PROGRESS", "0")
    assert not progress_shown(Terminal())
    monkeypatch.setenv("IQA_LAB_PROGRESS", "1")
    assert progress_shown(io.StringIO())
    monkeypatch.setenv("IQA_LAB_PROGRESS", "yes")
    with pytest.raises(ValueError, match="IQA_LAB_PROGRESS must be 0 .* or 1"):
        progress_shown(io.StringIO())


def test_a_log_gets_a_full_line_every_line_every_seconds_and_a_final_one(monkeypatch):
    monkeypatch.setenv("IQA_LAB_PROGRESS", "1")
    clock, out = Clock(), io.StringIO()
    items = list(range(6))
    for _ in track(items, "build", unit="photos", stream=out, clock=clock, line_every=20):
        clock.now += 10  # each photo takes 10 s
    assert out.getvalue().splitlines() == [
        "build: 1/6 photos (17%), 10 s per photo, elapsed 10s, ETA 50s",
        "build: 3/6 photos (50%), 10 s per photo, elapsed 30s, ETA 30s",
        "build: 5/6 photos (83%), 10 s per photo, elapsed 50s, ETA 10s",
        "build: 6/6 photos (100%), 10 s per photo, elapsed 1m00s",
    ]


def test_a_terminal_line_is_redrawn_in_place_and_kept_at_the_end():
    clock, out = Clock(), Terminal()
    with Progress(4, "cells", "runs", stream=out, clock=clock, refresh=0) as bar:
        for _ in range(4):
            clock.now += 2
            bar.advance()
    frames = out.getvalue().split("\r\x1b[2K")
    assert frames[0] == ""
    assert frames[1:] == [
        "cells: 1/4 runs (25%), 2 s per run, elapsed 2s, ETA 6s",
        "cells: 2/4 runs (50%), 2 s per run, elapsed 4s, ETA 4s",
        "cells: 3/4 runs (75%), 2 s per run, elapsed 6s, ETA 2s",
        "cells: 4/4 runs (100%), 2 s per run, elapsed 8s, ETA 0s",
        "cells: 4/4 runs (100%), 2 s per run, elapsed 8s\n",
    ]


def test_work_shorter_than_the_delay_prints_nothing():
    clock, out = Clock(), Terminal()
    for _ in track(range(500), "cache hits", stream=out, clock=clock, delay=1.0):
        clock.now += 0.001  # 0.5 s in all: served from a cache
    assert out.getvalue() == ""


def test_batches_count_their_items_and_the_last_one_counts_too():
    clock, out = Clock(), io.StringIO()
    batches = [[0] * 16, [0] * 16, [0] * 8]  # a DataLoader's batches over 40 images
    options = dict(size=len, enabled=True, stream=out, clock=clock, delay=0)
    for batch in track(batches, "caching", 40, "images", **options):
        clock.now += len(batch) / 8  # 8 images/s
    assert out.getvalue().splitlines() == [
        "caching: 16/40 images (40%), 8 images/s, elapsed 2s, ETA 3s",
        "caching: 40/40 images (100%), 8 images/s, elapsed 5s",
    ]


def test_unknown_total_counts_without_percent_or_eta():
    clock = Clock()
    bar = Progress(None, "decoding", "files", enabled=False, clock=clock)
    clock.now += 4
    bar.advance(8)
    assert bar.eta is None
    assert bar.summary() == "decoding: 8 files, 2 files/s, elapsed 4s, ETA ?"


@pytest.mark.parametrize(
    "seconds, text",
    [(None, "?"), (float("nan"), "?"), (0.4, "0s"), (59.4, "59s"), (61, "1m01s"), (3725, "1h02m")],
)
def test_durations_read_at_a_glance(seconds, text):
    assert format_duration(seconds) == text


def test_rates_read_at_a_glance():
    assert format_rate(None, "images") == "? images/s"
    assert format_rate(1012.6, "images") == "1013 images/s"
    assert format_rate(33.3333, "images") == "33.3 images/s"
    assert format_rate(0.25, "runs") == "4 s per run"


def test_a_negative_total_is_refused():
    with pytest.raises(ValueError, match="total must be >= 0"):
        Progress(-1, "x")
