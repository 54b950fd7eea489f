#!/usr/bin/env python
"""`xmodal label` end to end against its parts: decode-only, model-only and a naive loop.

All rows are measured in one run on the same folder of generated H.264 videos
(10 s, 30 fps, half with a 1 s and half with an 8 s keyframe interval), for each engine:
PyTorch eager (channels_last), ONNX Runtime fp32 and ONNX Runtime INT8 (the encoder's
ImageNet classifier exported with `xmodal export`, INT8 calibrated on these videos):

  end to end   xmodal.engine.label.label_files with a Predictor (decode workers feed batches)
  decode only  DecodePool + ClipReader, the same workers, no model (PyTorch views: torch
               resize; NumPy views: Pillow resize, what the ONNX Runtime engine reads)
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
    import numpy as np
    import torch

    s = predictor.reader.input_size
    shape = (predictor.batch_size, predictor.models[0].frames, 3, s, s)
    views = torch.randint(0, 256, shape, dtype=torch.uint8, device=predictor.device)
    if not predictor.uses_torch:  # ONNX Runtime takes (N, T, S, S, 3) arrays
        views = np.ascontiguousarray(views.permute(0, 1, 3, 4, 2).numpy())
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

    if getattr(device, "type", device) == "cuda":
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


def time_cli(folder: Path, out: Path, args: argparse.Namespace, device: str,
             model: str = ENCODER) -> float:
    import subprocess

    command = [sys.executable, "-m", "xmodal", "label", str(folder), "--model", model,
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


def single_thread_latency(torch_predictor, onnx_dirs: dict[str, Path], rounds: int = 7) -> list[list]:
    """Per-clip latency (8 frames, 224 px) of each engine on ONE thread, rounds interleaved:
    single-threaded kernels do not wait on each other, so other processes on the cores slow
    every engine alike (OpenMP's barriers make 2-thread PyTorch far slower under load)."""
    import numpy as np
    import torch

    from xmodal.deploy.onnx_model import make_session

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (1, 8, 224, 224, 3), dtype=np.uint8)
    tensor = torch.from_numpy(frames).permute(0, 1, 4, 2, 3)
    sessions = {name: make_session(str(d / "model.onnx"), threads=1) for name, d in onnx_dirs.items()}
    runs = {"PyTorch": lambda: torch_predictor.probabilities(tensor)}
    runs.update({name: (lambda s=s: s.run(["probabilities"], {"frames": frames}))
                 for name, s in sessions.items()})
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds + 1):  # the first round warms up
            for name, run in runs.items():
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                run()
                times[name].append((time.perf_counter() - start_wall, time.process_time() - start_cpu))
    finally:
        torch.set_num_threads(previous)
    rows = []
    base = float(np.median([w for w, _ in times["PyTorch"][1:]]))
    for name, values in times.items():
        wall = float(np.median([w for w, _ in values[1:]]))
        cpu = float(np.median([c for _, c in values[1:]]))
        rows.append([name, wall, cpu, base / wall])
    return rows


def export_models(folder: Path, tmp: Path) -> tuple[Path, Path, float]:
    """fp32 and INT8 exports of the encoder's ImageNet classifier; INT8 calibrated on ``folder``."""
    from xmodal.deploy.onnx_export import export_onnx

    start = time.perf_counter()
    fp32 = export_onnx(ENCODER, tmp / "onnx-fp32").out
    export_s = time.perf_counter() - start
    int8 = export_onnx(ENCODER, tmp / "onnx-int8", int8=True, calibration=folder).out
    return fp32, int8, export_s


def compare_records(a: Path, b: Path) -> tuple[float, float]:
    """(max |score difference| of the top class, share of equal top-1 labels) of two label files."""
    ra = [json.loads(line) for line in a.read_text().splitlines()]
    rb = [json.loads(line) for line in b.read_text().splitlines()]
    same = sum(x["label"] == y["label"] for x, y in zip(ra, rb, strict=True))
    diff = max(abs(x["top"][0]["score"] - {t["label"]: t["score"] for t in y["top"]}
                   .get(x["top"][0]["label"], 0.0)) for x, y in zip(ra, rb, strict=True))
    return diff, same / len(ra)


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

    from xmodal.deploy.onnx_model import load_onnx_model
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
    checks: list[list] = []
    with tempfile.TemporaryDirectory(prefix="xmodal-bench-label-") as tmp:
        folder = link_folder(Path(tmp) / "videos", files)
        links = sorted(folder.iterdir())
        print(f"{what}; model {ENCODER} on {device}, {batching}, {args.workers} workers",
              flush=True)
        print("  exporting fp32 and int8 ...", flush=True)
        calib = link_folder(Path(tmp) / "calibration", files[:8])
        fp32_dir, int8_dir, export_s = export_models(calib, Path(tmp))
        engines = {"PyTorch": predictor}
        if device == "cpu":
            for name, path in (("ONNX Runtime fp32", fp32_dir), ("ONNX Runtime int8", int8_dir)):
                engines[name] = Predictor(load_onnx_model(path), batch_size=args.batch_size,
                                          workers=args.workers)
        for name, p in engines.items():
            print(f"  model only, {name} ...", flush=True)
            rates[f"model only, {name}"] = time_model_only(p, model_batches)
        latency = None
        if device == "cpu":
            print("  one thread per engine ...", flush=True)
            latency = single_thread_latency(predictor, {"ONNX Runtime fp32": fp32_dir,
                                                        "ONNX Runtime int8": int8_dir})
        print("  model only, PyTorch NCHW ...", flush=True)
        nchw = time_model_only(predictor, model_batches, nchw=True)
        print("  decode only ...", flush=True)
        rates["decode only, PyTorch views"] = time_decode_only(predictor, links)
        if device == "cpu":
            rates["decode only, NumPy views (ONNX path)"] = time_decode_only(
                engines["ONNX Runtime int8"], links)
        outs = {}
        for name, p in engines.items():
            print(f"  end to end, {name} ...", flush=True)
            outs[name] = Path(tmp) / f"labels-{name.replace(' ', '_')}.jsonl"
            rates[f"end to end, {name}"] = time_end_to_end(p, links, outs[name])
            records = [json.loads(line) for line in outs[name].read_text().splitlines()]
            assert len(records) == len(links) and all("label" in r for r in records)
        for name in list(outs)[1:]:
            diff, same = compare_records(outs["PyTorch"], outs[name])
            checks.append([f"{name} vs PyTorch: max top-1 score difference / same top-1 label",
                           f"{diff:.2g} / {same:.0%}"])
        print("  naive loop ...", flush=True)
        rates["naive loop, PyTorch"] = time_naive(naive, links)
        cli_s = None
        if not args.no_cli:
            print("  CLI ...", flush=True)
            cli_s = time_cli(folder, Path(tmp) / "cli.jsonl", args, device)
            rates["CLI, PyTorch (incl. start-up)"] = len(links) / cli_s
            if device == "cpu":
                int8_cli = time_cli(folder, Path(tmp) / "cli8.jsonl", args, device, str(int8_dir))
                rates["CLI, ONNX int8 export (incl. start-up)"] = len(links) / int8_cli

    decode = rates["decode only, PyTorch views"]
    e2e = rates["end to end, PyTorch"]
    model_rate = rates["model only, PyTorch"]
    bound = min(decode, model_rate)
    shared = 1 / (1 / decode + 1 / model_rate)
    print()
    print(header(f"`xmodal label` throughput on {device} (videos/s, higher is better)", started))
    print(f"{what}; {ENCODER} (8 frames per clip, 224 px), {batching}, "
          f"{args.workers} decode workers; model load {load_s:.1f} s, fp32 export {export_s:.1f} s "
          "(not in the rows).\n")
    rows = [[name, rate, rate / e2e] for name, rate in rates.items()]
    print(table(["mode", "videos/s", "vs end to end, PyTorch"], rows))
    print()
    ratios = [
        ["PyTorch: pipeline efficiency = end to end / min(decode only, model only)", e2e / bound],
        ["PyTorch: end to end / (1 / (1/decode + 1/model)), the bound when both share the cores",
         e2e / shared],
        ["PyTorch: end to end / naive loop", e2e / rates["naive loop, PyTorch"]],
    ]
    if device == "cpu":
        int8 = rates["end to end, ONNX Runtime int8"]
        numpy_decode = rates["decode only, NumPy views (ONNX path)"]
        ratios += [
            ["ONNX int8 end to end / PyTorch end to end (target >= 3)", int8 / e2e],
            ["ONNX int8 end to end / decode only, NumPy views (target >= 0.8)", int8 / numpy_decode],
            ["ONNX int8 end to end / decode only, PyTorch views", int8 / decode],
            ["ONNX fp32 end to end / PyTorch end to end", rates["end to end, ONNX Runtime fp32"] / e2e],
        ]
    if cli_s is not None:
        ratios.append(["CLI start-up and teardown, s (CLI wall - end-to-end time)",
                       cli_s - len(files) / e2e])
    print(table(["ratio", "value"], ratios))
    if checks:
        print()
        print(table(["same videos, records compared", "value"], checks))
    if latency:
        print("\nOne clip (8 frames, 224 px) on ONE thread per engine, rounds interleaved (robust to "
              "other load; median of 7):\n")
        print(table(["engine", "wall s", "CPU s", "speed-up vs PyTorch"], latency))
    if args.compile:
        compiled, compile_s = time_compiled(device, args, model_batches)
        print(f"\n--compile: model only {compiled:.3g} videos/s, {compiled / model_rate:.2f}x "
              f"eager, after {compile_s:.1f} s compiling the first batch shape.")
    print(f"\nComparison, not xmodal's behaviour: model only with the model in NCHW memory: "
          f"{nchw:.3g} videos/s; channels_last is {model_rate / nchw:.2f}x that.")
    if device == "cpu":
        print("\nGPU rows: skipped (no CUDA device)" if not torch.cuda.is_available()
              else "\nGPU rows: not run (--device cpu)")


if __name__ == "__main__":
    main()
