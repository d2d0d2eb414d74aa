"""Progress of a long loop as log lines: count, rate and ETA, terminal or not.

A cluster job has no terminal: its stderr is the rule's log file, where a tqdm bar either
is switched off (tqdm disables itself off a TTY) or writes carriage-return noise. A teacher
extraction of 60,000 images at 224 px then says nothing for minutes. :class:`Progress`
logs one line every ``interval`` seconds (and, optionally, every ``every`` updates) through
:mod:`logging`, which :func:`kdspectra.runtime.logs.log_to` routes into the rule's log, and
one closing line with the total time; a tqdm bar is drawn only when stderr is a terminal.

    with Progress(len(images), desc="embed test", unit="img", logger=log) as progress:
        for batch in batches:
            ...
            progress.update(len(batch))

The clock is injectable so a test can run a "long" loop without sleeping.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

# Seconds between two progress lines: often enough that a silent log means a stuck job,
# rarely enough that a day-long run's log stays readable (~8,600 lines a day at most).
INTERVAL_S = 10.0


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``: what a reader scanning a log wants."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _terminal_bar(
    total: int | None,
    desc: str,
    unit: str,
    show: bool | None,
    initial: int = 0,
    divisor: float = 1,
) -> Any:
    """A tqdm bar when ``show`` (``None``: only when stderr is a terminal), else ``None``."""
    if show is False or (show is None and not sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm  # imported only when a bar is drawn

    scale = 1 / divisor if divisor != 1 else False
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=scale, leave=False)


class Progress:
    """Counts finished items and logs ``count/total, rate, ETA`` at a fixed cadence.

    ``total`` may be ``None`` when unknown (the line then has no percentage or ETA).
    ``interval`` is in seconds of ``clock``; ``every`` (optional) also logs each time the
    number of updates reaches a multiple of it, for loops whose steps are slow but whose
    readers want each one. ``bar``: draw a tqdm bar (``None``: only on a terminal).
    ``initial``: items already done before this process (a resumed run); they count
    toward the total but not toward the rate, so the ETA is this process's pace.
    ``divisor``: items per displayed ``unit`` (1e6 to count bytes in MB).
    """

    def __init__(
        self,
        total: int | None,
        *,
        desc: str,
        unit: str = "it",
        logger: logging.Logger | None = None,
        interval: float | None = None,
        every: int | None = None,
        bar: bool | None = None,
        initial: int = 0,
        divisor: float = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        interval = INTERVAL_S if interval is None else interval  # read now: tests shorten it
        if interval <= 0 or (every is not None and every < 1) or initial < 0 or divisor <= 0:
            raise ValueError(
                "Progress: interval > 0, every >= 1, initial >= 0 and divisor > 0 expected, "
                f"got {interval}, {every}, {initial}, {divisor}"
            )
        self.total, self.desc, self.unit = total, desc, unit
        self.log = logger or logging.getLogger("kdspectra.progress")
        self.interval, self.every, self.clock = interval, every, clock
        self.count = self.updates = 0
        self.initial, self.divisor = initial, divisor
        self.start = self.last_logged = clock()
        self._bar = _terminal_bar(total, desc, unit, bar, initial, divisor)

    def update(self, n: int = 1) -> None:
        """Add ``n`` finished items; log a line when the interval (or ``every``) is due."""
        self.count += n
        self.updates += 1
        if self._bar is not None:
            self._bar.update(n)
        now = self.clock()
        due_by_count = self.every is not None and self.updates % self.every == 0
        if now - self.last_logged >= self.interval or due_by_count:
            self.last_logged = now
            self.log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """``desc: 1,200/5,000 img (24 %), 310 img/s, ETA 12 s`` at time ``now``."""
        elapsed = max((self.clock() if now is None else now) - self.start, 1e-9)
        rate = self.count / elapsed
        finished = self.initial + self.count
        done, speed = self._amount(finished), f"{rate / self.divisor:,.1f} {self.unit}/s"
        if self.total:
            left = (self.total - finished) / rate if rate > 0 else float("inf")
            eta = format_duration(left) if left != float("inf") else "unknown"
            pct = 100.0 * finished / self.total
            return (
                f"{self.desc}: {done}/{self._amount(self.total)} {self.unit} ({pct:.0f} %), "
                f"{speed}, ETA {eta}"
            )
        return f"{self.desc}: {done} {self.unit}, {speed}"

    def _amount(self, items: float) -> str:
        """``1,200`` items, or ``12.5`` units of ``divisor`` items."""
        return f"{items:,}" if self.divisor == 1 else f"{items / self.divisor:,.1f}"

    def close(self) -> None:
        """Log the closing line (count, total time, mean rate) and close the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elapsed = self.clock() - self.start
        rate = self.count / elapsed if elapsed > 0 else float("nan")
        self.log.info(
            "%s: done, %s %s in %s (%.1f %s/s)", self.desc, self._amount(self.count),
            self.unit, format_duration(elapsed), rate / self.divisor, self.unit,
        )  # fmt: skip

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif self._bar is not None:  # a failed loop: no "done" line, only the bar goes
            self._bar.close()
