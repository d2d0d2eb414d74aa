"""Progress lines: a long loop says how far it is in its log, terminal or not."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from kdspectra.data.noise import embed_noisy
from kdspectra.runtime.progress import Progress, format_duration


class FakeClock:
    """A clock the test advances by hand: a "ten-minute" loop runs in microseconds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def progress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.progress"]


def test_a_run_longer_than_the_interval_logs_count_rate_and_eta(caplog) -> None:
    clock = FakeClock()
    log = logging.getLogger("test.progress")
    caplog.set_level(logging.INFO, logger="test.progress")
    with Progress(1000, desc="embed test", unit="img", logger=log, clock=clock) as progress:
        for _ in range(10):  # 100 images every 3 s: 30 s in all, past the 10 s interval
            clock.now += 3.0
            progress.update(100)
    lines = progress_lines(caplog)
    # Lines at 12 s and 24 s (the first updates after each interval), then the closing one.
    assert lines[0] == "embed test: 400/1,000 img (40 %), 33.3 img/s, ETA 18 s"
    assert lines[1] == "embed test: 800/1,000 img (80 %), 33.3 img/s, ETA 6 s"
    assert lines[2] == "embed test: done, 1,000 img in 30 s (33.3 img/s)"
    assert len(lines) == 3


def test_a_run_shorter_than_the_interval_logs_only_its_closing_line(caplog) -> None:
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="test.progress")
    progress = Progress(
        50, desc="short", unit="img", logger=logging.getLogger("test.progress"), clock=clock
    )
    clock.now += 2.0
    progress.update(50)
    progress.close()
    assert progress_lines(caplog) == ["short: done, 50 img in 2 s (25.0 img/s)"]


def test_every_n_updates_and_unknown_total(caplog) -> None:
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="test.progress")
    log = logging.getLogger("test.progress")
    progress = Progress(None, desc="sets", unit="set", logger=log, every=2, clock=clock)
    for _ in range(5):
        clock.now += 1.0
        progress.update()
    assert progress_lines(caplog) == ["sets: 2 set, 1.0 set/s", "sets: 4 set, 1.0 set/s"]


def test_no_bar_without_a_terminal_and_bad_cadence_is_refused() -> None:
    assert Progress(3, desc="x")._bar is None  # pytest's stderr is not a TTY
    with pytest.raises(ValueError, match="interval"):
        Progress(3, desc="x", interval=0)


@pytest.mark.parametrize(
    ("seconds", "text"), [(4.4, "4 s"), (185, "3 min 05 s"), (7620, "2 h 07 min")]
)
def test_durations_read_as_a_person_would_write_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_the_noise_pass_logs_its_progress(caplog) -> None:
    caplog.set_level(logging.INFO, logger="kdspectra.data.noise")
    images = np.zeros((4, 2, 2, 3), np.float32)
    out = embed_noisy(lambda x: x.reshape(len(x), -1), images, [0.0, 0.1], seed=0)
    assert out.shape == (2, 4, 12)
    assert any(r.getMessage().startswith("noise pass: done, 8 img") for r in caplog.records), (
        caplog.text
    )


def test_bytes_read_in_megabytes_and_a_resumed_count(caplog) -> None:
    clock = FakeClock()
    log = logging.getLogger("test.progress")
    caplog.set_level(logging.INFO, logger="test.progress")
    with Progress(
        200_000_000, desc="cifar.tar.gz", unit="MB", divisor=1_000_000, logger=log,
        initial=50_000_000, clock=clock,
    ) as progress:  # fmt: skip
        clock.now += 12.0
        progress.update(60_000_000)  # 5 MB/s in this process; 90 MB left
    lines = progress_lines(caplog)
    assert lines[0] == "cifar.tar.gz: 110.0/200.0 MB (55 %), 5.0 MB/s, ETA 18 s"
    assert lines[1] == "cifar.tar.gz: done, 60.0 MB in 12 s (5.0 MB/s)"
