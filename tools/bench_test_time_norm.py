#!/usr/bin/env python
"""What prediction-time BatchNorm (``--test-bn-prior``) costs in inference speed.

The default classifier (EfficientNet-Lite0, 10 classes) is exported to ONNX twice, without the
prior (its BatchNorm folded into the convolutions by ONNX Runtime) and with it (each frame's
statistics computed per layer: ``xmodal.models.test_time_norm``), in fp32 and INT8 (quantised as
``xmodal export --int8`` does; calibrated on random frames, which is enough to time it), and each
graph is timed side by side on the same batches of uint8 frames with ONNX Runtime, and in PyTorch
eager:

    python tools/bench_test_time_norm.py                       # 224 px, batch of 8 frames
    python tools/bench_test_time_norm.py --input-size 112 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_media import header  # noqa: E402


def export(prior: float | None, size: int, directory: Path) -> tuple[object, Path, Path]:
    """(the PyTorch model, its fp32 graph, its INT8 graph)."""
    import torch

    from xmodal.deploy.onnx_export import DEFAULT_OPSET, ExportGraph, _to_onnx
    from xmodal.deploy.quantize import quantize_file
    from xmodal.models import build_classifier

    torch.manual_seed(0)
    model = build_classifier("efficientnet_lite0", 10, test_bn_prior=prior).eval()
    fp32, int8 = directory / f"prior{prior}-fp32.onnx", directory / f"prior{prior}-int8.onnx"
    example = torch.randint(0, 256, (2, 2, size, size, 3), dtype=torch.uint8)
    _to_onnx(ExportGraph(model).eval(), example, fp32, DEFAULT_OPSET, f"prior {prior}")
    frames = np.random.default_rng(0).integers(0, 256, (64, size, size, 3), dtype=np.uint8)
    quantize_file(fp32, int8, frames, work=directory, frame_statistics=prior is not None)
    return model, fp32, int8


def seconds_per_batch(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``run()`` over ``repeats`` calls, after one warm-up call."""
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8, help="frames per forward pass [8]")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads; 0: all cores")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--prior", type=float, default=32.0, help="N of the graph with the prior [32]")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    frames = np.random.default_rng(1).integers(0, 256, (args.batch, 1, args.input_size, args.input_size, 3),
                                               dtype=np.uint8)
    clips = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).contiguous()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for prior in (None, args.prior):
            model, fp32, int8 = export(prior, args.input_size, Path(tmp))
            for name, path in (("ONNX Runtime fp32", fp32), ("ONNX Runtime INT8", int8)):
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                rows[(name, prior)] = seconds_per_batch(lambda s=session: s.run(None, {"frames": frames}),
                                                        args.repeats)
            with torch.no_grad():
                rows[("PyTorch eager", prior)] = seconds_per_batch(lambda m=model: m(clips), args.repeats)
    print(header("Prediction-time BatchNorm: inference cost", started))
    print(f"\n{args.batch} frames of {args.input_size} px per batch; median of {args.repeats} "
          "(seconds per batch)\n")
    print(f"| engine | prior off | prior {args.prior:g} | ratio (with / without) |")
    print("|---|---|---|---|")
    for name in ("PyTorch eager", "ONNX Runtime fp32", "ONNX Runtime INT8"):
        off, on = rows[(name, None)], rows[(name, args.prior)]
        print(f"| {name} | {off:.4f} | {on:.4f} | {on / off:.2f}x |")


if __name__ == "__main__":
    main()
