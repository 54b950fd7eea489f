#!/usr/bin/env python
"""Training throughput: xmodal's train loop on videos against the bare fwd+bwd step.

Measured side by side in one run, on a generated two-class folder of H.264 clips:

  fit on videos   xmodal.engine.train.fit with the defaults (decode workers, augmentation,
                  optimiser, checkpoints; each training video decoded once per run into the
                  frame cache); the time each step spends blocked on the DataLoader
                  iterator is recorded by wrapping the loader that fit hands to
                  train_one_epoch
  fit, no frame cache   the same with --no-frame-cache: every epoch decodes every video
  compute only    train_one_epoch on batches already on the device (same model,
                  optimiser, loss and step code, same T and frozen layers; no decoding);
                  a row with every encoder layer training (--frozen-stride 0) beside it

Precisions: fp32 everywhere; bf16 autocast only on CUDA. xmodal keeps every model in
channels_last memory; an extra compute row shows fp32 in NCHW for comparison.

    python tools/bench_train.py --quick      # 8 clips 320x240, batch 4 (< 2 min on 2 cores)
    python tools/bench_train.py              # 16 clips, batch 8
    python tools/bench_train.py --full       # 32 clips 640x360, batch 8, 3 epochs
    python tools/bench_train.py --hd         # 16 clips 1920x1080, batch 8, 3 epochs
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class TimedLoader:
    """Wraps a DataLoader: counts seconds spent blocked in ``next()`` and the whole epoch."""

    def __init__(self, loader: Any, log: list[dict[str, float]]) -> None:
        self.loader = loader
        self.batch_sampler = loader.batch_sampler
        self.log = log

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        wait, batches, start = 0.0, 0, time.perf_counter()
        iterator = iter(self.loader)
        while True:
            t = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            wait += time.perf_counter() - t
            batches += 1
            yield batch
        self.log.append({"wait": wait, "total": time.perf_counter() - start, "batches": batches})


@contextlib.contextmanager
def timing_train_loop(log: list[dict[str, float]]) -> Iterator[None]:
    """Make fit's train_one_epoch see a TimedLoader (fit looks the function up at call time)."""
    import xmodal.engine.train as train

    original = train.train_one_epoch

    def timed(model, loader, *args, **kwargs):
        return original(model, TimedLoader(loader, log), *args, **kwargs)

    train.train_one_epoch = timed
    try:
        yield
    finally:
        train.train_one_epoch = original


def make_cfg(folder: Path, out: Path, args: argparse.Namespace, device: str, precision: str,
             frame_cache: bool = True, frozen_stride: int | None = None):
    from xmodal.config import load_config

    return load_config(None, data=str(folder), modality="video", backbone=ENCODER,
                       epochs=args.epochs, batch_size=args.batch_size, workers=args.workers,
                       val_split=0.0, frames=8, seed=0, out=str(out), device=device,
                       precision=precision, min_steps=0, frame_cache=frame_cache,
                       frozen_stride=frozen_stride)


def run_fit(folder: Path, out: Path, args: argparse.Namespace, device: str,
            precision: str, frame_cache: bool = True) -> dict[str, float]:
    from xmodal.engine.train import fit

    cfg = make_cfg(folder, out, args, device, precision, frame_cache)
    log: list[dict[str, float]] = []
    start = time.perf_counter()
    with timing_train_loop(log):
        fit(cfg)
    wall = time.perf_counter() - start
    last = log[-1]  # the last epoch: persistent workers are up, nothing is being imported
    frames = args.batch_size * last["batches"] * args.train_frames
    return {"frames/s": frames / last["total"], "wait": last["wait"] / last["total"],
            "wall": wall, "fit frames/s": args.epochs * args.clips * args.train_frames / wall}


def run_compute(args: argparse.Namespace, device_name: str, precision: str, *,
                nchw: bool = False, compile: bool = False, frozen_stride: int | None = None) -> float:
    """frames/s of train_one_epoch on device-resident uint8 batches (no decoding), with the
    encoder frozen up to the video default's output stride (or ``frozen_stride``) as fit
    freezes it; with ``compile``, xmodal's torch.compile of the encoder, timed after its
    compiling warm-up."""
    import torch
    from torch import nn

    from xmodal.engine.optim import apply_freezing, build_optimizer, build_scheduler, stride_prefix
    from xmodal.engine.runtime import prepare_model, resolve_device, use_bf16
    from xmodal.engine.train import train_one_epoch
    from xmodal.models import build_classifier

    device = resolve_device(device_name)
    cfg = make_cfg(Path("."), Path("."), args, device_name, precision, frozen_stride=frozen_stride)
    model = build_classifier(ENCODER, 2, dropout=cfg.dropout)
    apply_freezing(model, cfg, 0, stride_prefix(model, cfg.frozen_stride_for_training))
    model = prepare_model(model, device, compile=compile)
    if nchw:
        model = model.to(memory_format=torch.contiguous_format)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, args.steps + 1)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    gen = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (args.batch_size, args.train_frames, 3, 224, 224), dtype=torch.uint8,
                          generator=gen).to(device)
    labels = torch.randint(0, 2, (args.batch_size,), generator=gen).to(device)
    bf16 = use_bf16(device, precision)
    warm = time.perf_counter()
    train_one_epoch(model, [(clips, labels, [])], optimizer, scheduler, criterion, device, cfg,
                    bf16=bf16)  # warm-up (and compiling)
    if compile:
        print(f"    compiling and the first step took {time.perf_counter() - warm:.0f} s", flush=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    train_one_epoch(model, [(clips, labels, [])] * args.steps, optimizer, scheduler, criterion,
                    device, cfg, bf16=bf16)  # loss.item() in the loop syncs every step
    return args.steps * args.batch_size * args.train_frames / (time.perf_counter() - start)


def _row(name: str, fit: dict[str, float], compute: float) -> list[Any]:
    return [name, fit["frames/s"], compute, fit["frames/s"] / compute, f"{fit['wait']:.0%}",
            fit["fit frames/s"], f"{fit['wall']:.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="8 clips 320x240, batch 4, 2 epochs")
    size.add_argument("--full", action="store_true", help="32 clips 640x360, batch 8, 3 epochs")
    size.add_argument("--hd", action="store_true", help="16 clips 1920x1080, batch 8, 3 epochs")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers [2]")
    parser.add_argument("--epochs", type=int, help="epochs of each fit [2; 3 with --full, --hd]")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--cpu-options", action="store_true",
                        help="also compute-only rows with bf16 autocast and with --compile on the "
                             "CPU (xmodal's CPU default is fp32, eager)")
    args = parser.parse_args()
    started = note_start()
    args.clips = 8 if args.quick else 32 if args.full else 16
    args.batch_size = 4 if args.quick else 8
    args.epochs = args.epochs or (3 if args.full or args.hd else 2)
    args.steps = 2 if args.quick else 3

    import torch

    from xmodal.config import TrainConfig

    args.train_frames = TrainConfig(frames=8).clip_frames_for_training  # the default T_train
    default_stride = TrainConfig(modality="video").frozen_stride_for_training

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    cuda = args.device != "cpu" and torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    width, height = (1920, 1080) if args.hd else (640, 360) if args.full else (320, 240)
    files: list[Path] = []
    for gop_s in (1, 8):
        files += ensure_videos(args.cache, VideoSpec(width, height, 10, gop_s), 4)
    chosen = [files[i % len(files)] for i in range(args.clips)]

    precisions = ["fp32", "bf16"] if cuda else ["fp32"]
    rows: list[list[Any]] = []
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="xmodal-bench-train-") as tmp:
        folder = link_folder(Path(tmp) / "data", chosen, classes=2)
        for precision in precisions:
            label = "fp32" if precision == "fp32" else "bf16 + channels_last"
            print(f"  {device} {label}: fit ...", flush=True)
            fit = run_fit(folder, Path(tmp) / f"run-{precision}", args, device, precision)
            print(f"  {device} {label}: compute only ...", flush=True)
            compute = run_compute(args, device, precision)
            results[precision] = (fit, compute)
            rows.append(_row(f"{device} {label}{' (channels_last)' if precision == 'fp32' else ''}",
                             fit, compute))
        print(f"  {device} fp32: fit with --no-frame-cache ...", flush=True)
        uncached = run_fit(folder, Path(tmp) / "run-uncached", args, device, "fp32", frame_cache=False)
        rows.insert(1, _row(f"{device} fp32, --no-frame-cache", uncached, results["fp32"][1]))
        print(f"  {device} fp32 NCHW: compute only ...", flush=True)
        extra = run_compute(args, device, "fp32", nchw=True)
        print(f"  {device} fp32, every layer trains (--frozen-stride 0): compute only ...", flush=True)
        unfrozen = run_compute(args, device, "fp32", frozen_stride=0)
        options = {}
        if args.cpu_options and not cuda:
            print("  cpu bf16 autocast: compute only ...", flush=True)
            options["bf16 autocast"] = run_compute(args, device, "bf16")
            print("  cpu torch.compile: compute only ...", flush=True)
            options["torch.compile (inductor)"] = run_compute(args, device, "fp32", compile=True)

    print()
    print(header(f"Training throughput on {device} (frames/s, higher is better)", started))
    print(f"{args.clips} clips ({width}x{height} 10 s H.264, 2 classes), {args.train_frames} training "
          f"frames each (the default), {ENCODER} at 224 px frozen up to stride {default_stride} "
          f"(the video default), batch {args.batch_size}, {args.epochs} "
          f"epochs, {args.workers} DataLoader workers, default augmentation, AdamW; compute only = "
          f"{args.steps} steps after one warm-up.\n")
    print(table(["device / precision", "train loop (last epoch)", "compute only", "loop / compute",
                 "time waiting for data", "fit incl. start-up & checkpoints", "fit wall s"], rows))
    fp32 = results["fp32"][1]
    cached = results["fp32"][0]
    print(f"\nframe cache: last epoch {cached['frames/s'] / uncached['frames/s']:.2f}x the frames/s "
          f"of decoding every epoch; whole fit {uncached['wall'] / cached['wall']:.2f}x faster "
          f"({cached['wall']:.0f} s vs {uncached['wall']:.0f} s)")
    print(f"\ncompute only, {device} fp32 with the model in NCHW memory: {extra:.3g} frames/s; "
          f"channels_last (xmodal's) is {fp32 / extra:.2f}x that")
    print(f"compute only, {device} fp32 with every encoder layer training (--frozen-stride 0): "
          f"{unfrozen:.3g} frames/s; the default frozen stride {default_stride} is "
          f"{fp32 / unfrozen:.2f}x that")
    for name, value in options.items():
        print(f"compute only, {device} {name}: {value:.3g} frames/s, {value / fp32:.2f}x fp32 eager")
    if cuda and "bf16" in results:
        loop = results["bf16"][0]["frames/s"] / results["fp32"][0]["frames/s"]
        print(f"\nbf16 / fp32: train loop {loop:.2f}x, "
              f"compute {results['bf16'][1] / results['fp32'][1]:.2f}x")
    if not cuda:
        print("\nGPU rows (fp32 and bf16 + channels_last on CUDA): skipped (no CUDA device)"
              if not torch.cuda.is_available() else "\nGPU rows: not run (--device cpu)")


if __name__ == "__main__":
    main()
