"""Progress bars and printed results must not interleave on a terminal."""

from __future__ import annotations

import pytest

from xmodal.engine.reporting import TqdmReporter


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
    reporter = TqdmReporter()
    items = reporter.track(range(3), total=3, desc="checking")
    next(items)
    events.clear()
    with reporter.printing():
        events.append("print")
    assert events[:2] == ["clear", "print"] and "refresh" in events[2:]
    assert list(items) == [1, 2]

