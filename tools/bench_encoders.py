#!/usr/bin/env python
"""Forward time of the offline encoders on a batch of frames, with parameters and GFLOPs.

Each encoder (ImageNet weights, eval mode, no_grad, fp32, channels-first) runs a batch of
--batch random frames at its own input size; after --warmup passes, --repeats timed passes,
median, fastest, CPU time and all times listed. The encoders take turns pass by pass, so a slow spell
of the machine hits every row alike. Run it on an idle machine.

    python tools/bench_encoders.py                         # the three EfficientNet-Lite
    python tools/bench_encoders.py --encoders efficientnet_lite0 resnet18
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_media import header, note_start, table  # noqa: E402

from xmodal.models import LITE_ENCODERS, create_encoder  # noqa: E402
from xmodal.models.zoo import encoder_facts  # noqa: E402


def time_forward(names: list[str], batch: int, warmup: int,
                 repeats: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds per forward pass of ``batch`` frames at each encoder's input size.

    The encoders take turns pass by pass, so that load from other processes falls on all alike;
    CPU time (all of this process's threads) is the figure least moved by that load.
    """
    runs = {}
    for name in names:
        encoder = create_encoder(name).eval()
        size = encoder.pretrained_cfg.input_size
        runs[name] = (encoder, torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    with torch.no_grad():
        for i in range(warmup + repeats):
            for name, (encoder, x) in runs.items():
                wall, cpu = time.perf_counter(), time.process_time()
                encoder(x)
                if i >= warmup:
                    times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=list(LITE_ENCODERS))
    parser.add_argument("--batch", type=int, default=8, help="frames per forward pass [8]")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    started = note_start()
    times = time_forward(args.encoders, args.batch, args.warmup, args.repeats)
    rows = []
    for name, runs in times.items():
        facts = encoder_facts(name)
        walls = [wall for wall, _ in runs]
        median = statistics.median(walls)
        rows.append([name, facts.input_size, f"{facts.params_m:.2f}M", f"{facts.gflops:.3f}",
                     median * 1000, median * 1000 / args.batch, min(walls) * 1000,
                     statistics.median(cpu for _, cpu in runs) * 1000,
                     ", ".join(f"{t * 1000:.0f}" for t in walls)])
    print()
    print(header("Encoder forward time (CPU, eval, fp32)", started))
    print(f"batch of {args.batch} random frames at each encoder's input size; median of "
          f"{args.repeats} passes after {args.warmup} warm-up passes, the encoders taking turns; "
          "parameters without the ImageNet head; GFLOPs = multiply-adds per frame.\n")
    print(table(["encoder", "input px", "params", "GFLOPs", "median ms / batch", "ms / frame",
                 "fastest ms / batch", "median CPU ms / batch", "runs ms"], rows))


if __name__ == "__main__":
    main()
