#!/usr/bin/env python
"""Does labelling leak? Resident memory while `xmodal label` works through many small files.

    python tools/bench_memory.py --files 2000

Writes ``--files`` tiny media files (90% PNG stills, 10% 8-frame H.264 clips),
labels them with the default encoder through the normal engine (decode
workers, batching, resumable JSONL writer), and samples the main process's
RSS (and that of every process below it: the forkserver and its decode
workers) every 5% of the run. A flat curve means no
per-file growth; the table prints the growth per 1,000 files after warm-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _kib_field_mib(path: str, field: str) -> float:
    """MiB of a "Field:  N kB" line of a /proc file; 0 where the process or the field is gone."""
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mib(pid: int) -> float:
    return _kib_field_mib(f"/proc/{pid}/status", "VmRSS:")


def pss_mib(pid: int) -> float:
    """Proportional set size: pages shared by n processes count 1/n in each (Linux 4.14+)."""
    return _kib_field_mib(f"/proc/{pid}/smaps_rollup", "Pss:")


def children_mib() -> tuple[float, float]:
    """(RSS, PSS) summed over every process below this one: decode workers are the forkserver's
    children. RSS counts pages the processes share once per process; PSS divides them."""
    parents: dict[int, int] = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                    parents[int(pid)] = int(fh.read().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    below, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - below
        below |= frontier
    return sum(rss_mib(pid) for pid in below), sum(pss_mib(pid) for pid in below)


def make_files(root: Path, count: int) -> None:
    import numpy as np
    from PIL import Image

    from tests.utils import write_video

    rng = np.random.default_rng(0)
    for i in range(count):
        if i % 10 == 9:
            write_video(root / f"clip{i:05d}.mp4", 8, size=(64, 48), fps=8)
        else:
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / f"s{i:05d}.png")


def main() -> None:
    from xmodal.engine.label import find_files, label_files
    from xmodal.engine.predict import Predictor, load_model
    from xmodal.engine.reporting import Reporter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    samples: list[tuple[int, float, float, float]] = []

    class Sampler(Reporter):
        def track(self, items: Iterable, *, total: int | None = None, desc: str = "") -> Iterator:
            step = max(1, (total or 1) // 20)
            for i, item in enumerate(items, 1):
                if i % step == 0 or i == total:
                    samples.append((i, rss_mib(os.getpid()), *children_mib()))
                yield item

    with tempfile.TemporaryDirectory(prefix="xmodal-mem-") as tmp:
        root = Path(tmp) / "media"
        root.mkdir()
        make_files(root, args.files)
        predictor = Predictor(load_model("efficientnet_lite0"), workers=args.workers, batch_size=32)
        start = time.perf_counter()
        summary = label_files(predictor, find_files([root]).files, Path(tmp) / "out.jsonl",
                              reporter=Sampler())
        seconds = time.perf_counter() - start
    print(f"labelled {summary.done} files ({summary.failed} failed) in {seconds:.0f}s, "
          f"{args.workers} workers")
    print("| files done | main RSS MiB | workers RSS MiB | workers PSS MiB |\n|---|---|---|---|")
    for i, main_rss, workers_rss, workers_pss in samples:
        print(f"| {i} | {main_rss:.0f} | {workers_rss:.0f} | {workers_pss:.0f} |")
    # The allocator's pools fill in steps early on; a leak keeps growing to the end.
    half, last = samples[len(samples) // 2 - 1], samples[-1]
    for name, col in (("main process", 1), ("workers (RSS)", 2), ("workers (PSS)", 3)):
        grow = last[col] - half[col]
        print(f"{name}: {grow:+.1f} MiB over the second half ({last[0] - half[0]} files, "
              f"{grow / max(1, last[0] - half[0]) * 1000:+.2f} MiB per 1,000 files); "
              f"peak {max(s[col] for s in samples):.0f} MiB")


if __name__ == "__main__":
    main()
