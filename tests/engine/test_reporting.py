"""Progress on a terminal (tqdm bars that printed lines do not tear) and in logs (plain lines)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xmodal.engine import reporting
from xmodal.engine.reporting import PlainProgress, TqdmReporter


def test_printing_clears_the_bar_first_and_redraws_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from tqdm import tqdm

    events: list[str] = []
    real_clear, real_refresh = tqdm.clear, tqdm.refresh

    def clear(self, *args, **kwargs):
        events.append("clear")
        return real_clear(self, *args, **kwargs)

    def refresh(self, *args, **kwargs):
        events.append("refresh")
        return real_refresh(self, *args, **kwargs)

    monkeypatch.setattr(tqdm, "clear", clear)
    monkeypatch.setattr(tqdm, "refresh", refresh)
    reporter = TqdmReporter(bars=True)
    items = reporter.track(range(3), total=3, desc="checking")
    next(items)
    events.clear()
    with reporter.printing():
        events.append("print")
    assert events[:2] == ["clear", "print"] and "refresh" in events[2:]
    assert list(items) == [1, 2]


class FakeClock:
    def __init__(self, step_s: float) -> None:
        self.now, self.step_s = 0.0, step_s

    def __call__(self) -> float:
        return self.now

    def tick(self, items):
        for item in items:
            self.now += self.step_s
            yield item


def test_plain_lines_every_step_with_rate_and_time_left() -> None:
    clock, lines = FakeClock(1.0), []
    progress = PlainProgress("epoch 1/5", 40, step=0.25, min_interval_s=5, clock=clock,
                             write=lines.append)
    assert list(progress.track(clock.tick(range(40)))) == list(range(40))
    assert lines == ["epoch 1/5: 10/40 (25%), 1.0/s, 0:30 left",
                     "epoch 1/5: 20/40 (50%), 1.0/s, 0:20 left",
                     "epoch 1/5: 30/40 (75%), 1.0/s, 0:10 left",
                     "epoch 1/5: 40 done in 0:40 (1.0/s)"]


def test_plain_lines_are_not_more_frequent_than_the_minimum_interval() -> None:
    clock, lines = FakeClock(0.125), []  # 100 items in 12.5 s: a 5% step every 0.625 s
    list(PlainProgress("label", 100, step=0.05, min_interval_s=3, clock=clock,
                       write=lines.append).track(clock.tick(range(100))))
    assert [line.split(",")[0] for line in lines] == [
        "label: 25/100 (25%)", "label: 50/100 (50%)", "label: 75/100 (75%)",
        "label: 100 done in 0:12 (8.0/s)"]


def test_a_short_loop_prints_nothing_and_an_unknown_total_gets_a_heartbeat() -> None:
    clock, lines = FakeClock(0.01), []
    list(PlainProgress("check", 50, clock=clock, write=lines.append).track(clock.tick(range(50))))
    assert lines == []
    clock = FakeClock(20.0)
    list(PlainProgress("features", None, max_interval_s=60, clock=clock,
                       write=lines.append).track(clock.tick(range(7))))
    assert lines == ["features: 3 done, 20.0 s each", "features: 6 done, 20.0 s each",
                     "features: 7 done in 2:20 (20.0 s each)"]


def test_a_log_that_is_not_a_terminal_gets_lines_not_carriage_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`xmodal check` with stderr in a file (as under nohup or Slurm): whole lines, no bar frames."""
    from tests.cli_harness import run_cli
    from tests.utils import write_image

    for i in range(4):
        write_image(tmp_path / "in" / f"p{i}.png")
    monkeypatch.setattr(reporting, "MIN_INTERVAL_S", 0.0)
    run = run_cli("check", str(tmp_path / "in"), "--workers", "0")
    assert run.code == 0, run.err
    assert "\r" not in run.err
    progress = [line for line in run.err_lines if line.startswith("check: ")]
    assert [line.split(",")[0] for line in progress[:3]] == ["check: 1/4 (25%)", "check: 2/4 (50%)",
                                                             "check: 3/4 (75%)"]
    assert all(line.endswith(" left") for line in progress[:3])
    assert len(progress) == 4 and progress[3].startswith("check: 4 done in 0:00 (")


def test_a_pipe_gets_no_bar_frames(tmp_path: Path) -> None:
    """The same command in a real subprocess, stderr a pipe: no carriage-return frames."""
    from tests.utils import write_image

    for i in range(3):
        write_image(tmp_path / "in" / f"p{i}.png")
    proc = subprocess.run([sys.executable, "-m", "xmodal", "check", str(tmp_path / "in"), "--workers", "0"],
                          capture_output=True, timeout=300)  # bytes: text mode reads "\r" as "\n"
    assert proc.returncode == 0, proc.stderr
    assert b"\r" not in proc.stderr and b"checked 3 files: 3 ok" in proc.stderr
