"""How the engine reports progress without printing.

The engine only talks to a ``Reporter``; the CLI passes one that draws tqdm
bars, the Python API gets the silent default, so both share one code path.
Bars are for terminals: when stderr is not a TTY (CI, nohup, Slurm, a pipe), the
CLI's reporter prints a plain line every few percent instead, with the rate and
the time left, where tqdm would fill the log with carriage-return frames.
Messages pass through ``xmodal.names.display``: a file name that is not UTF-8
must not crash a terminal or a log.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from xmodal.names import display

T = TypeVar("T")

log = logging.getLogger("xmodal")

# Plain progress lines (stderr not a TTY): one per STEP of the total, at most one per
# MIN_INTERVAL_S seconds, at least one per MAX_INTERVAL_S seconds.
STEP = 0.05
MIN_INTERVAL_S = 5.0
MAX_INTERVAL_S = 300.0


class Reporter:
    """Silent reporter: messages go to the ``xmodal`` logger, bars are not drawn."""

    def track(self, items: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterator[T]:
        yield from items

    def info(self, message: str) -> None:
        log.info(display(message))

    def warning(self, message: str) -> None:
        log.warning(display(message))

    def printing(self) -> contextlib.AbstractContextManager[None]:
        """Wrap output printed while a bar runs, so lines and bar do not interleave."""
        return contextlib.nullcontext()


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


class TqdmReporter(Reporter):
    """Progress on stderr with rate and ETA: tqdm bars on a terminal, plain lines elsewhere.

    ``bars`` forces one or the other (default: bars only when stderr is a TTY).
    """

    def __init__(self, *, quiet: bool = False, bars: bool | None = None) -> None:
        self.quiet = quiet
        self.bars = stderr_is_terminal() if bars is None else bars

    def track(self, items: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterator[T]:
        if self.quiet:
            yield from items
        elif not self.bars:
            yield from PlainProgress(desc, total).track(items)
        else:
            yield from self._bar(items, total, desc)

    @staticmethod
    def _bar(items: Iterable[T], total: int | None, desc: str) -> Iterator[T]:
        from tqdm import tqdm

        bar = tqdm(items, total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5)
        try:
            yield from bar
        finally:
            bar.close()

    def info(self, message: str) -> None:
        from tqdm import tqdm

        if not self.quiet:
            tqdm.write(display(message))

    def warning(self, message: str) -> None:
        from tqdm import tqdm

        tqdm.write(f"warning: {display(message)}", file=sys.stderr)

    def printing(self) -> contextlib.AbstractContextManager[None]:
        if not self.bars:
            return contextlib.nullcontext()
        from tqdm import tqdm

        # Clears the bars, lets the caller print (stdout or stderr), redraws them.
        return tqdm.external_write_mode()


class PlainProgress:
    """Progress as whole lines for logs: ``desc: 120/480 (25%), 3.1/s, 1:56 left``.

    A line is printed each time another ``step`` of the total is done, but not more often
    than every ``min_interval_s`` seconds, and at least every ``max_interval_s`` (a heartbeat
    for long runs, and the only lines when the total is unknown). A loop that printed
    anything, or lasted ``min_interval_s``, ends with a ``done`` line with its time and rate.
    """

    def __init__(self, desc: str, total: int | None, *, step: float | None = None,
                 min_interval_s: float | None = None, max_interval_s: float | None = None,
                 clock: Callable[[], float] | None = None,
                 write: Callable[[str], None] | None = None) -> None:
        self.desc = desc or "progress"
        self.total = total if total else None
        self.step = STEP if step is None else step
        self.min_interval_s = MIN_INTERVAL_S if min_interval_s is None else min_interval_s
        self.max_interval_s = MAX_INTERVAL_S if max_interval_s is None else max_interval_s
        self.clock = clock or time.monotonic
        self.write = write or _to_stderr

    def track(self, items: Iterable[T]) -> Iterator[T]:
        start = last = self.clock()
        next_step = 1  # the next multiple of `step` of the total to report
        done = printed = 0
        for item in items:
            yield item
            done += 1
            now = self.clock()
            # Whole steps done; the epsilon keeps 15 x 0.05 from falling short of 0.75.
            steps = int(done / self.total / self.step + 1e-9) if self.total else 0
            due_step = steps >= next_step and done != self.total  # the end has its own line
            if (due_step and now - last >= self.min_interval_s) or now - last >= self.max_interval_s:
                self.write(self._line(done, now - start))
                last, printed = now, printed + 1
            next_step = max(next_step, steps + 1)
        elapsed = self.clock() - start
        if printed or elapsed >= self.min_interval_s:
            self.write(f"{self.desc}: {done} done in {_clock(elapsed)} ({_rate(done, elapsed)})")

    def _line(self, done: int, elapsed: float) -> str:
        rate = _rate(done, elapsed)
        if self.total is None:
            return f"{self.desc}: {done} done, {rate}"
        left = (self.total - done) * elapsed / done
        return (f"{self.desc}: {done}/{self.total} ({100 * done / self.total:.0f}%), {rate}, "
                f"{_clock(left)} left")


def _rate(done: int, elapsed: float) -> str:
    if elapsed <= 0:
        return "-/s"
    per_second = done / elapsed
    return f"{per_second:.1f}/s" if per_second >= 1 else f"{elapsed / max(done, 1):.1f} s each"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _to_stderr(line: str) -> None:
    print(display(line), file=sys.stderr, flush=True)


class StderrReporter(Reporter):
    """Messages on stderr, one line each: notes that must not mix with records on stdout."""

    def info(self, message: str) -> None:
        print(f"xmodal: {message}", file=sys.stderr, flush=True)

    def warning(self, message: str) -> None:
        print(f"xmodal: warning: {message}", file=sys.stderr, flush=True)
