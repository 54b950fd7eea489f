#!/usr/bin/env python
"""Build time and page open time of `xmodal report` for a large labelling run.

Writes a synthetic predictions JSONL of --files records (default 10,000) that point at the
real files of samples/ (38 videos and photos, repeated), with seeded labels, scores, top-5
lists and, for every third video, a 4-window timeline; then times the report build (cold: no
thumbnails yet; warm: the strips reused; and without thumbnails) and, in headless Chromium,
the page: from opening the file to the first page of files drawn (`performance.now()` at the
end of the first render), and a re-render after a filter and a sort change.

    python tools/bench_report.py                 # 10,000 records, 4 page openings
    python tools/bench_report.py --files 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import Chromium, chromium_path  # noqa: E402

CLASSES = [f"class_{i:02d}" for i in range(20)]


def synthetic_records(sources: list[Path], count: int, seed: int = 0) -> list[dict]:
    import numpy as np

    import xmodal
    from xmodal.engine.inputs import media_kind

    rng = np.random.default_rng(seed)
    facts = {}
    for path in sources:
        if media_kind(path) == "video":
            clip = xmodal.sample_frames(path, frames=8)
            facts[path] = {"kind": "video", "frames": clip.info.num_frames,
                           "duration_s": round(clip.info.duration_s, 3),
                           "sampled_s": [round(float(t), 3) for t in clip.times_s]}
        else:
            facts[path] = {"kind": "image", "frames": 1, "duration_s": None}
    records = []
    for i in range(count):
        path = sources[i % len(sources)]
        probs = rng.dirichlet(np.ones(len(CLASSES)) * 0.3)
        order = np.argsort(-probs)[:5]
        top = [{"label": CLASSES[k], "score": round(float(probs[k]), 6)} for k in order]
        record = {"path": str(path), "label": top[0]["label"], "score": top[0]["score"], "top": top,
                  **facts[path], "model": "bench"}
        if record["kind"] == "video" and i % 3 == 0:
            d = record["duration_s"]
            record["clips"] = [{"start_s": round(k * d / 5, 3), "end_s": round((k + 2) * d / 5, 3),
                                "label": CLASSES[int(rng.integers(len(CLASSES)))],
                                "score": round(float(rng.uniform(0.2, 0.9)), 6), "top": top[:3]}
                               for k in range(4)]
        records.append(record)
    return records


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def page_times(index: Path, repeats: int) -> dict[str, float]:
    browser = Chromium(chromium_path(), timeout_s=120)
    try:
        opened, drawn, walls = [], [], []
        for _ in range(repeats):
            start = time.perf_counter()
            browser.open(index.as_uri(), ready="document.body.dataset.openMs")
            walls.append(time.perf_counter() - start)
            opened.append(float(browser.evaluate("document.body.dataset.openMs")))
            drawn.append(browser.evaluate("document.querySelectorAll('#files article').length"))
        rerender = """(async () => {
            const t = performance.now(), before = Number(document.body.dataset.rendered);
            location.hash = HASH;
            while (Number(document.body.dataset.rendered) === before)
                await new Promise(r => setTimeout(r, 1));
            return performance.now() - t; })()"""
        filt = browser.evaluate(rerender.replace("HASH", "'cls=class_03'"))
        sort = browser.evaluate(rerender.replace("HASH", "'sort=-score'"))
    finally:
        browser.close()
    return {"first_ms": opened[0], "open_ms": statistics.median(opened[1:] or opened),
            "open_wall_s": statistics.median(walls[1:] or walls), "rows": drawn[0], "filter_ms": filt,
            "sort_ms": sort}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=4, help="page openings (the first apart)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from xmodal.engine.inputs import scan_paths
    from xmodal.engine.report import build_report
    from xmodal.engine.report.truth import from_folder

    os.chdir(ROOT)
    sources = scan_paths(["samples"]).files
    work = Path(tempfile.mkdtemp(prefix="xmodal-bench-report-"))
    try:
        records = synthetic_records(sources, args.files)
        src = work / "predictions.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in records))
        truth = from_folder("samples/train")
        cold, _ = timed(build_report, src, work / "report", truth=truth, workers=args.workers)
        warm, _ = timed(build_report, src, work / "report", truth=truth, workers=args.workers)
        bare, _ = timed(build_report, src, work / "bare", truth=truth, thumbnails=False)
        data_mb = (work / "report" / "data.js").stat().st_size / 1e6
        thumbs = list((work / "report" / "thumbs").iterdir())
        size_mb = src.stat().st_size / 1e6
        print(f"{args.files} records ({len(sources)} distinct files, {size_mb:.1f} MB JSONL)")
        print(f"build, cold (thumbnails of {len(thumbs)} files): {cold:.2f} s")
        print(f"build, warm (thumbnails reused):         {warm:.2f} s")
        print(f"build, --no-thumbnails:                  {bare:.2f} s")
        print(f"data.js {data_mb:.1f} MB; thumbs {sum(p.stat().st_size for p in thumbs) / 1e3:.0f} kB")
        if chromium_path() is None:
            print("page: no chromium on the PATH")
            return
        page = page_times(work / "report" / "index.html", args.repeats)
        print(f"page open to first {page['rows']} files drawn: {page['open_ms']:.0f} ms (median of "
              f"{max(1, args.repeats - 1)} after the first, {page['first_ms']:.0f} ms, in a fresh browser; "
              f"{page['open_wall_s']:.2f} s from the tab's creation)")
        print(f"re-render after a filter: {page['filter_ms']:.0f} ms; after a sort: {page['sort_ms']:.0f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
