#!/usr/bin/env python
"""`xmodal label` end to end against its parts: decode-only, model-only and a naive loop.

All rows are measured in one run on the same folder of generated H.264 videos
(10 s, 30 fps, half with a 1 s and half with an 8 s keyframe interval):

  end to end   xmodal.engine.label.label_files with a Predictor (decode workers feed batches)
  decode only  DecodePool + ClipReader, the same workers, no model
  model only   Predictor.probabilities on random uint8 clips already on the device
  naive loop   decode one video in-process, run the model on it, next video (no overlap,
               no batching: what the HuggingFace video-classification pipeline does)
  CLI          `python -m xmodal label ...` as a subprocess, start-up included

    python tools/bench_label.py --quick      # 16 videos 320x240 (~2 min on 2 cores)
    python tools/bench_label.py              # 64 videos 320x240
    python tools/bench_label.py --full       # 128 videos 640x360

The model runs on CUDA when there is one (else the GPU rows say so) and on the CPU
otherwise; ``--device cpu`` forces the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_media import (  # noqa: E402
    DEFAULT_CACHE,
    VideoSpec,
    ensure_videos,
    header,
    link_folder,
    note_start,
    table,
)

ENCODER = "efficientnet_lite0"


def videos_for(args: argparse.Namespace) -> tuple[list[Path], str]:
    width, height = (640, 360) if args.full else (320, 240)
    count = args.videos or (16 if args.quick else 128 if args.full else 64)
    distinct = min(count, 8)  # each distinct file is reused count/8 times through symlinks
    files: list[Path] = []
    for gop_s in (1, 8):
        files += ensure_videos(args.cache, VideoSpec(width, height, 10, gop_s), distinct // 2)
    chosen = [files[i % len(files)] for i in range(count)]
    return chosen, f"{count} x {width}x{height} 10 s H.264 ({len(files)} distinct files, gop 1 s and 8 s)"


def time_model_only(predictor, batches: int, *, nchw: bool = False) -> float:
    """Videos/s of the encoder alone: full batches of random uint8 clips already on the device.

    ``nchw`` puts the model in NCHW memory first (a comparison: xmodal runs every model in
    channels_last); the model is put back afterwards.
    """
    import torch

    shape = (predictor.batch_size, predictor.models[0].frames, 3, predictor.reader.input_size,
             predictor.reader.input_size)
    views = torch.randint(0, 256, shape, dtype=torch.uint8, device=predictor.device)
    model = predictor.models[0].model
    if nchw:
        model.to(memory_format=torch.contiguous_format)
    try:
        predictor.probabilities(views)  # warm-up (and cudnn autotuning)
        _sync(predictor.device)
        start = time.perf_counter()
        for _ in range(batches):
            predictor.probabilities(views)
        _sync(predictor.device)
        return batches * predictor.batch_size / (time.perf_counter() - start)
    finally:
        if nchw:
            model.to(memory_format=torch.channels_last)


def time_compiled(device: str, args: argparse.Namespace, batches: int) -> tuple[float, float]:
    """(videos/s of the compiled encoder, seconds its first call took), on a fresh model."""
    import torch

    from xmodal.engine.predict import Predictor, load_model

    predictor = Predictor(load_model(ENCODER), device=device, batch_size=args.batch_size,
                          workers=args.workers, compile=True)
    shape = (predictor.batch_size, predictor.models[0].frames, 3, predictor.reader.input_size,
             predictor.reader.input_size)
    views = torch.randint(0, 256, shape, dtype=torch.uint8, device=predictor.device)
    start = time.perf_counter()
    predictor.probabilities(views)
    _sync(predictor.device)
    first_s = time.perf_counter() - start
    return time_model_only(predictor, batches), first_s


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_decode_only(predictor, files: list[Path]) -> float:
    from xmodal.engine.predict import describe_failure
    from xmodal.engine.workers import DecodePool

    pool = DecodePool(predictor.reader, workers=predictor._workers_for(len(files)),
                      timeout_s=predictor.timeout_s, describe_error=describe_failure)
    start = time.perf_counter()
    failed = sum(error is not None for _, _, error in pool.imap([str(f) for f in files]))
    seconds = time.perf_counter() - start
    if failed:
        raise SystemExit(f"decode-only: {failed} files failed")
    return len(files) / seconds


def time_end_to_end(predictor, files: list[Path], out: Path) -> float:
    from xmodal.engine.label import label_files

    start = time.perf_counter()
    summary = label_files(predictor, files, out, overwrite=True)
    seconds = time.perf_counter() - start
    if summary.done != len(files):
        raise SystemExit(f"end to end: {summary.failed} of {len(files)} files failed")
    return len(files) / seconds


def time_naive(predictor, files: list[Path]) -> float:
    """One video at a time in this process: decode, model (batch of one clip), next."""
    start = time.perf_counter()
    for file in files:
        views, _ = predictor.reader(str(file))
        predictor.probabilities(views)
    _sync(predictor.device)
    return len(files) / (time.perf_counter() - start)


def time_cli(folder: Path, out: Path, args: argparse.Namespace, device: str) -> float:
    import subprocess

    command = [sys.executable, "-m", "xmodal", "label", str(folder), "--model", ENCODER,
               "--out", str(out), "--overwrite", "--quiet", "--workers", str(args.workers),
               "--device", device]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"CLI failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="16 videos at 320x240, batch 16")
    size.add_argument("--full", action="store_true", help="128 videos at 640x360")
    parser.add_argument("--videos", type=int, help="number of videos (overrides the preset)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="clips per forward pass [as the CLI: 32 on a GPU, each file alone "
                             "on the CPU]")
    parser.add_argument("--workers", type=int, default=2, help="decode workers [2, as the CLI]")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-cli", action="store_true", help="skip the subprocess CLI row")
    parser.add_argument("--compile", action="store_true",
                        help="also time the model-only row with torch.compile (inductor)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    started = note_start()

    import torch

    from xmodal.engine.predict import Predictor, load_model

    files, what = videos_for(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"

    t0 = time.perf_counter()
    model = load_model(ENCODER)
    load_s = time.perf_counter() - t0
    predictor = Predictor(model, device=device, batch_size=args.batch_size, workers=args.workers)
    naive = Predictor(model, device=device, batch_size=1, workers=0)
    model_batches = max(1, len(files) // predictor.batch_size)
    batching = (f"batch {predictor.batch_size} clips" if not predictor.per_file
                else "each file alone (the CPU default)")

    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="xmodal-bench-label-") as tmp:
        folder = link_folder(Path(tmp) / "videos", files)
        links = sorted(folder.iterdir())
        print(f"{what}; model {ENCODER} on {device}, {batching}, {args.workers} workers",
              flush=True)
        print("  model only ...", flush=True)
        rates["model only"] = time_model_only(predictor, model_batches)
        print("  model only, NCHW ...", flush=True)
        nchw = time_model_only(predictor, model_batches, nchw=True)
        print("  decode only ...", flush=True)
        rates["decode only"] = time_decode_only(predictor, links)
        print("  end to end ...", flush=True)
        out = Path(tmp) / "labels.jsonl"
        rates["end to end"] = time_end_to_end(predictor, links, out)
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(records) == len(links) and all("label" in r for r in records)
        print("  naive loop ...", flush=True)
        rates["naive loop"] = time_naive(naive, links)
        cli_s = None
        if not args.no_cli:
            print("  CLI ...", flush=True)
            cli_s = time_cli(folder, Path(tmp) / "cli.jsonl", args, device)
            rates["CLI (incl. start-up)"] = len(links) / cli_s

    bound = min(rates["decode only"], rates["model only"])
    shared = 1 / (1 / rates["decode only"] + 1 / rates["model only"])
    e2e = rates["end to end"]
    print()
    print(header(f"`xmodal label` throughput on {device} (videos/s, higher is better)", started))
    print(f"{what}; {ENCODER} (8 frames per clip, 224 px), {batching}, "
          f"{args.workers} decode workers; model load {load_s:.1f} s (not in the rows).\n")
    rows = [[name, rate, rate / e2e] for name, rate in rates.items()]
    print(table(["mode", "videos/s", "vs end to end"], rows))
    print()
    ratios = [
        ["pipeline efficiency = end to end / min(decode only, model only)", e2e / bound],
        ["end to end / (1 / (1/decode + 1/model)), the bound when both share the same cores",
         e2e / shared],
        ["end to end / naive loop", e2e / rates["naive loop"]],
    ]
    if cli_s is not None:
        ratios.append(["CLI start-up and teardown, s (CLI wall - end-to-end time)",
                       cli_s - len(files) / e2e])
    print(table(["ratio", "value"], ratios))
    if args.compile:
        compiled, compile_s = time_compiled(device, args, model_batches)
        print(f"\n--compile: model only {compiled:.3g} videos/s, {compiled / rates['model only']:.2f}x "
              f"eager, after {compile_s:.1f} s compiling the first batch shape.")
    print(f"\nComparison, not xmodal's behaviour: model only with the model in NCHW memory: "
          f"{nchw:.3g} videos/s; channels_last is {rates['model only'] / nchw:.2f}x that.")
    if device == "cpu":
        print("\nGPU rows: skipped (no CUDA device)" if not torch.cuda.is_available()
              else "\nGPU rows: not run (--device cpu)")


if __name__ == "__main__":
    main()
