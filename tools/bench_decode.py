#!/usr/bin/env python
"""Eight-frame TSN clip decoding: xmodal's loader against the raw decoding strategies.

Every strategy opens the file, reads the 8 eval-mode TSN frames (segment centres,
``xmodal.data.sampling.tsn_indices``) as (8, H, W, 3) uint8 RGB, and closes it;
clips/s counts whole clips. Measured side by side in one run, on generated H.264
videos (see ``_bench_media.py``), in one process and in a pool of one decoder
process per core (a file per task, as xmodal's decode workers do).

    python tools/bench_decode.py --quick     # 320x240 and 640x360, 10 s (< 2 min)
    python tools/bench_decode.py             # + 1280x720, 10 s
    python tools/bench_decode.py --full      # + 60 s videos (first run encodes ~7 min)
    python tools/bench_decode.py --baseline 9e90744   # + xmodal's loader at that commit

Strategies:
  xmodal auto     xmodal.data.video.open_video(path, "auto").get_frames(idx); in the pool
                  with one decoder thread per worker, as xmodal's decode workers run
  xmodal pyav     the same with backend "pyav"
  decord          decord.VideoReader(path).get_batch(idx), decord's default threads
  decord 1t       the same with num_threads=1
  pyav seq        PyAV with its defaults, decode in order, stop after the last wanted frame
  pyav seek       PyAV, for each wanted frame seek to the keyframe before it and decode forward
  xmodal @base    with --baseline REV: ``open_video(path, "auto")`` of xmodal as it was at commit
                  REV (its single-file video module, or its whole package), for a before/after
                  in one run

A last table weighs ways of bringing frames to the model's size: per clip, resizing after
stacking full-size frames vs resizing each frame as it is decoded (``short_side``, what
inference does; the pixels must be identical); per frame, torch's resize vs PyAV's reformat
(swscale), which converts and shrinks in one step but moves pixels.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_media import (  # noqa: E402
    DEFAULT_CACHE,
    VideoSpec,
    ensure_videos,
    header,
    note_start,
    table,
    usable_cores,
)

FRAMES = 8
RESIZE, CROP = 256, 224  # the default encoder's preprocessing


def _indices(num_frames: int) -> np.ndarray:
    from xmodal.data.sampling import tsn_indices

    return tsn_indices(num_frames, FRAMES, train=False)


def xmodal_loader(path: str, backend: str) -> np.ndarray:
    from xmodal.data.video import open_video
    from xmodal.data.video.probe import clear_cache

    clear_cache()  # time the demux pass every time, as a first open (labelling) pays it
    with open_video(path, backend) as source:
        return source.get_frames(_indices(source.info.num_frames))


def raw_decord(path: str, threads: int = 0) -> np.ndarray:
    from xmodal.data.video.decord_backend import import_decord

    decord = import_decord()  # torch first: decord loaded before it crashes PyTorch later

    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
    frames = reader.get_batch(_indices(len(reader)).tolist()).asnumpy()
    del reader
    return frames


def raw_pyav_sequential(path: str) -> np.ndarray:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        wanted = _indices(stream.frames)
        last, todo, got = int(wanted[-1]), set(wanted.tolist()), {}
        for index, frame in enumerate(container.decode(stream)):
            if index in todo:
                got[index] = frame.to_ndarray(format="rgb24")
            if index >= last:
                break
        return np.stack([got[i] for i in wanted.tolist()])


def raw_pyav_seek(path: str) -> np.ndarray:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        rate, base = stream.average_rate, stream.time_base
        start = stream.start_time or 0
        out = []
        for target in _indices(stream.frames).tolist():
            container.seek(start + int(target / (rate * base)), stream=stream, backward=True)
            for frame in container.decode(stream):
                if round((frame.pts - start) * base * rate) >= target:
                    out.append(frame.to_ndarray(format="rgb24"))
                    break
        return np.stack(out)


STRATEGIES: dict[str, Callable[[str], np.ndarray]] = {
    "xmodal auto": lambda p: xmodal_loader(p, "auto"),
    "xmodal pyav": lambda p: xmodal_loader(p, "pyav"),
    "decord": raw_decord,
    "decord 1t": lambda p: raw_decord(p, threads=1),
    "pyav seq": raw_pyav_sequential,
    "pyav seek": raw_pyav_seek,
}
BASELINE = "xmodal @base"
# The baseline module's file travels to the spawned pool workers in the environment.
_BASELINE_ENV = "XMODAL_BENCH_BASELINE"


def _baseline_loader(module_file: str) -> Callable[[str], np.ndarray]:
    """xmodal's loader at another commit as a strategy: its old single-file video module
    (``git show REV:xmodal/data/video.py``), or, for a folder, that commit's whole ``xmodal``
    package, imported beside this one (``_import_package_copy``)."""
    if Path(module_file).is_dir():
        module = _import_package_copy(Path(module_file), "xmodal.data.video")
    else:
        spec = importlib.util.spec_from_file_location("xmodal_video_baseline", module_file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)

    def load(path: str) -> np.ndarray:
        with module.open_video(path, "auto") as source:
            return source.get_frames(_indices(source.info.num_frames))

    return load


def _import_package_copy(root: Path, name: str) -> Any:
    """Import ``name`` from the ``xmodal`` package under ``root``, then put this checkout's
    ``xmodal`` modules back: the copy's functions keep their own module globals (imports done
    inside a function at run time would find this checkout's modules)."""
    import importlib

    mine = {key: mod for key, mod in sys.modules.items() if key.split(".")[0] == "xmodal"}
    for key in mine:
        del sys.modules[key]
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(root))
        for key in [key for key in sys.modules if key.split(".")[0] == "xmodal"]:
            del sys.modules[key]
        sys.modules.update(mine)


if os.environ.get(_BASELINE_ENV):
    STRATEGIES[BASELINE] = _baseline_loader(os.environ[_BASELINE_ENV])
XMODAL = ("xmodal auto", "xmodal pyav", BASELINE)
RAW = tuple(name for name in STRATEGIES if name not in XMODAL)


def use_baseline(rev: str) -> None:
    """Register the loader of commit ``rev`` here and, through the environment, in the pool."""
    repo = Path(__file__).resolve().parents[1]
    folder = Path(tempfile.mkdtemp())
    single = subprocess.run(["git", "show", f"{rev}:xmodal/data/video.py"], capture_output=True,
                            text=True, cwd=repo)
    if single.returncode == 0:  # before xmodal/data/video/ became a package
        target = folder / "video_baseline.py"
        target.write_text(single.stdout)
    else:
        archive = subprocess.run(["git", "archive", rev, "xmodal"], check=True,
                                 capture_output=True, cwd=repo).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        target = folder
    os.environ[_BASELINE_ENV] = str(target)
    STRATEGIES[BASELINE] = _baseline_loader(str(target))


def _task(job: tuple[str, str]) -> float:
    """Pool task: decode one clip; return the CPU seconds it took in this process (all threads).

    Only a number goes back: the pickling of frames is not charged to the decoder."""
    name, path = job
    cpu = time.process_time()
    STRATEGIES[name](path)
    return time.process_time() - cpu


def _warm(_: int) -> None:
    import av  # noqa: F401

    from xmodal.data.video.decord_backend import import_decord

    import_decord()

    from xmodal.data.video import set_decoder_threads

    set_decoder_threads(1)  # as in xmodal's decode workers; the raw rows keep their defaults


def _single(fn: Callable[[str], np.ndarray], files: list[str], min_time: float) -> tuple[float, float]:
    """(clips/s, CPU ms per clip) in this process over >= min_time s."""
    runs, wall, cpu = 0, time.perf_counter(), time.process_time()
    while runs == 0 or time.perf_counter() - wall < min_time:
        fn(files[runs % len(files)])
        runs += 1
    return runs / (time.perf_counter() - wall), 1e3 * (time.process_time() - cpu) / runs


def bench_kind(paths: list[Path], pool, workers: int, min_time: float,
               rounds: int) -> dict[str, dict[str, float]]:
    """Per strategy: clips/s and CPU ms per clip, one process and pool, each the median of
    ``rounds`` interleaved rounds (so a slow spell of the machine hits every strategy alike)."""
    files = [str(p) for p in paths]
    samples: dict[str, dict[str, list[float]]] = {
        name: {"1p": [], "1p cpu": [], "pool": [], "pool cpu": []} for name in STRATEGIES}
    for name, fn in STRATEGIES.items():  # warm-up: imports, page cache
        fn(files[0])
        pool.map(_task, [(name, files[i % len(files)]) for i in range(workers)], chunksize=1)
    slice_s = min_time / rounds
    for _ in range(rounds):
        for name, fn in STRATEGIES.items():
            got = samples[name]
            rate, cpu_ms = _single(fn, files, slice_s)
            got["1p"].append(rate)
            got["1p cpu"].append(cpu_ms)
            # Enough tasks for ~slice_s of pool work (estimated from one process), >= 1 per worker.
            count = max(workers, round(rate * workers * slice_s))
            jobs = [(name, files[i % len(files)]) for i in range(count)]
            start = time.perf_counter()
            cpu = pool.map(_task, jobs, chunksize=1)
            got["pool"].append(count / (time.perf_counter() - start))
            got["pool cpu"].append(1e3 * sum(cpu) / count)
    return {name: {k: statistics.median(v) for k, v in got.items()} for name, got in samples.items()}


def check_frames(path: Path) -> dict[str, int]:
    """Largest per-pixel difference of each strategy from sequential PyAV (the reference)."""
    reference = raw_pyav_sequential(str(path)).astype(np.int16)
    out = {}
    for name, fn in STRATEGIES.items():
        frames = fn(str(path))
        out[name] = (int(np.abs(frames.astype(np.int16) - reference).max())
                     if frames.shape == reference.shape else -1)
    return out


def model_clip(path: str, short_side: int | None) -> np.ndarray:
    """The 224 px clip inference feeds the model: decode, resize to 256, centre crop."""
    import torch

    from xmodal.data.transforms import center_crop, resize_shorter_side
    from xmodal.data.video import open_video

    with open_video(path, "auto", short_side=short_side) as source:
        frames = source.get_frames(_indices(source.info.num_frames))
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)  # as ClipReader: no copy
    return center_crop(resize_shorter_side(clip, RESIZE), CROP).numpy()


def bench_reduced(paths: list[Path], min_time: float, rounds: int) -> list[object]:
    """CPU ms per model clip, resized after stacking full-size frames vs as each is decoded
    (short_side), one decoder thread, median of interleaved rounds; largest pixel difference."""
    import torch

    from xmodal.data.video import set_decoder_threads

    set_decoder_threads(1)  # runs last: the main process's tables are done
    torch.set_num_threads(1)
    files = [str(p) for p in paths]
    modes = {"full + resize": None, "short_side": RESIZE}
    cpu: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(rounds):
        for name, short_side in modes.items():
            runs, start = 0, time.process_time()
            while runs == 0 or time.process_time() - start < min_time / rounds:
                model_clip(files[runs % len(files)], short_side)
                runs += 1
            cpu[name].append(1e3 * (time.process_time() - start) / runs)
    full, reduced = (model_clip(files[0], s).astype(np.int16) for s in modes.values())
    ms = [statistics.median(v) for v in cpu.values()]
    return [*(f"{m:.0f}" for m in ms), ms[0] / ms[1], int(np.abs(full - reduced).max())]


def bench_frame_resize(path: Path, repeats: int = 5) -> list[object]:
    """Per decoded frame: RGB conversion at full size + torch's resize (xmodal) vs PyAV's
    reformat to 256 px in swscale (bilinear, area): CPU ms and mean pixel difference."""
    import av
    import torch

    from xmodal.data.transforms import resize_shorter_side, shorter_side_shape

    with av.open(str(path)) as container:
        frames = [f for _, f in zip(range(FRAMES), container.decode(video=0), strict=False)]
    height, width = shorter_side_shape(frames[0].height, frames[0].width, RESIZE)

    def torch_resize(frame):
        chw = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
        return resize_shorter_side(chw, RESIZE).permute(1, 2, 0).numpy()

    def swscale(interpolation):
        return lambda frame: frame.to_ndarray(format="rgb24", width=width, height=height,
                                              interpolation=interpolation)

    row, reference = [], None
    for fn in (torch_resize, swscale("BILINEAR"), swscale("AREA")):
        start = time.process_time()
        for _ in range(repeats):
            out = np.stack([fn(f) for f in frames]).astype(np.int16)
        row.append(f"{1e3 * (time.process_time() - start) / (repeats * len(frames)):.2f}")
        reference = out if reference is None else reference
        row.append(f"{np.abs(out - reference).mean():.2f}")
    return row[:1] + row[2:]  # the reference's difference from itself is 0


def specs_for(args: argparse.Namespace) -> list[VideoSpec]:
    sizes = [(320, 240), (640, 360)] + ([] if args.quick else [(1280, 720)])
    durations = [10] + ([60] if args.full else [])
    return [VideoSpec(w, h, seconds, gop_s) for seconds in durations for w, h in sizes
            for gop_s in (1, 8)]


def reduced_specs_for(args: argparse.Namespace) -> list[VideoSpec]:
    """Kinds larger than the model's resize (smaller ones are never scaled up)."""
    sizes = [(640, 360)] + ([] if args.quick else [(1280, 720), (1920, 1080)])
    return [VideoSpec(w, h, 10, 1) for w, h in sizes]


def ratio_rows(results: dict[str, dict[str, dict[str, float]]], key: str) -> list[list[object]]:
    rows = []
    for kind, by_name in results.items():
        rates = {name: values[key] for name, values in by_name.items()}
        best = max(RAW, key=lambda n: rates[n])
        row = [kind, *[rates[n] for n in STRATEGIES], best,
               rates["xmodal auto"] / rates[best], rates["xmodal pyav"] / rates[best]]
        if BASELINE in rates:
            row.append(rates["xmodal auto"] / rates[BASELINE])
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="320x240 and 640x360, 10 s; < 2 min")
    size.add_argument("--full", action="store_true", help="also 60 s videos")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where videos are kept")
    parser.add_argument("--files", type=int, default=2, help="distinct files per video kind")
    parser.add_argument("--workers", type=int, default=usable_cores(),
                        help="pool size (default: all cores)")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds per cell, split over the rounds [quick 0.9, default 1.5, full 2]")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; median is shown")
    parser.add_argument("--baseline", metavar="REV",
                        help="also time xmodal's loader as it was at git commit REV")
    args = parser.parse_args()
    if args.baseline:
        use_baseline(args.baseline)
    started = note_start()
    min_time = args.min_time or (0.9 if args.quick else 2.0 if args.full else 1.5)

    specs = specs_for(args)
    print(f"preparing {len(specs)} video kinds x {args.files} files ...", flush=True)
    reduced_specs = reduced_specs_for(args)
    videos = {spec.label: ensure_videos(args.cache, spec, args.files)
              for spec in [*specs, *reduced_specs]}

    results: dict[str, dict[str, dict[str, float]]] = {}
    diffs: dict[str, dict[str, int]] = {}
    context = multiprocessing.get_context("spawn")  # no inherited decoder threads or locks
    with context.Pool(args.workers) as pool:
        pool.map(_warm, range(args.workers))
        for spec in specs:
            print(f"  {spec.label} ...", flush=True)
            paths = videos[spec.label]
            diffs[spec.label] = check_frames(paths[0])
            results[spec.label] = bench_kind(paths, pool, args.workers, min_time, args.rounds)
    reduced = {}
    for spec in reduced_specs:
        print(f"  {spec.label} at {RESIZE} px ...", flush=True)
        reduced[spec.label] = bench_reduced(videos[spec.label], 2 * min_time, args.rounds)
        reduced[spec.label] += bench_frame_resize(videos[spec.label][0])

    print()
    print(header("Eight-frame TSN clip decoding (clips/s, higher is better)", started))
    print(f"H.264 (libx264 veryfast CRF 23, yuv420p, High profile with B-frames), {30} fps; "
          f"gop = keyframe interval; {args.files} files per kind; median of {args.rounds} "
          f"interleaved rounds, >= {min_time:g} s per cell in all. "
          "best raw = fastest of the raw strategies; the last two columns are xmodal / best raw "
          "(>= 1 means the loader is at least as fast).")
    cols = ["video", *STRATEGIES, "best raw", "auto / best", "pyav / best"]
    if BASELINE in STRATEGIES:
        cols.append(f"auto / {args.baseline}")
    print("\n### One process\n")
    print(table(cols, ratio_rows(results, "1p")))
    print(f"\n### Pool of {args.workers} decoder processes (one file per task)\n")
    print(table(cols, ratio_rows(results, "pool")))
    print("\n### CPU milliseconds per clip (all threads; robust to other load, lower is better)\n")
    cpu_rows = [[kind, *[f"{v['1p cpu']:.0f} / {v['pool cpu']:.0f}" for v in by_name.values()]]
                for kind, by_name in results.items()]
    print("one process / pool worker\n")
    print(table(["video", *STRATEGIES], cpu_rows))
    print("\n### Frames check: max |pixel difference| from sequential PyAV (0 = identical)\n")
    print(table(["video", *STRATEGIES], [[k, *d.values()] for k, d in diffs.items()]))
    print(f"\n### Resizing to the model's size ({RESIZE} px): CPU ms, one decoder thread\n")
    print(f"Per {CROP} px clip (decode, resize, centre crop; xmodal auto): *full + resize* stacks "
          "full-size frames, then resizes; *short_side* shrinks each frame as it is decoded "
          "(what inference does). Per frame (conversion to RGB and resize only): torch = full-size "
          "conversion + torch's antialiased bilinear resize (xmodal); swscale = PyAV's reformat "
          "straight to the size, with its mean pixel difference from torch's.\n")
    print(table(["video", "clip: full + resize", "clip: short_side", "speed-up", "max abs diff",
                 "frame: torch", "swscale bilinear", "diff", "swscale area", "diff"],
                [[k, *row] for k, row in reduced.items()]))

if __name__ == "__main__":
    main()
