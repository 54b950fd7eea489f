#!/usr/bin/env python
"""Start-up and latency of one `xmodal predict` on a 10 s 640x360 H.264 clip, and where it goes.

Every row is a fresh subprocess (median of --repeats runs, all run times listed):
the full `python -m xmodal predict efficientnet_lite0 CLIP` (PyTorch), the same with
--batch-size 1, `xmodal predict EXPORT CLIP` with ONNX exports (fp32, INT8) of the same
classifier, a trained-run-like checkpoint on its cached ONNX export and on PyTorch, and the
imports they pay for. Run it on an idle machine: other processes on the same cores inflate
every row.

    python tools/bench_startup.py            # 3 repeats
    python tools/bench_startup.py --quick    # 1 repeat
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_media import DEFAULT_CACHE, VideoSpec, ensure_videos, header, median_wall, note_start, table  # noqa: E402

ENCODER = "efficientnet_lite0"


def prepare_models(tmp: Path, clip: Path, env: dict[str, str]) -> tuple[Path, Path, Path]:
    """fp32 and INT8 exports of the ImageNet classifier (INT8 calibrated on the clip), and a
    3-class checkpoint of the same encoder whose ONNX export is cached (one untimed predict)."""
    import subprocess

    import torch

    from xmodal.checkpoint import save_checkpoint
    from xmodal.deploy.onnx_export import export_onnx
    from xmodal.models import build_classifier

    fp32 = export_onnx(ENCODER, tmp / "fp32").out
    calibration = tmp / "calibration"
    calibration.mkdir()
    (calibration / clip.name).symlink_to(clip)
    int8 = export_onnx(ENCODER, tmp / "int8", int8=True, calibration=calibration).out
    torch.manual_seed(0)
    model = build_classifier(ENCODER, 3)
    save_checkpoint(model, {"classes": ["a", "b", "c"], "frames": 8}, tmp / "run")
    subprocess.run([sys.executable, "-m", "xmodal", "predict", str(tmp / "run"), str(clip),
                    "--device", "cpu"], check=True, capture_output=True, env=env)
    return fp32, int8, tmp / "run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per row")
    parser.add_argument("--repeats", type=int, default=None, help="runs per row [3; --quick 1]")
    parser.add_argument("--device", default="cpu", help="device for predict [cpu]")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    started = note_start()
    repeats = args.repeats or (1 if args.quick else 3)
    clip = ensure_videos(args.cache, VideoSpec(640, 360, 10, 2), 1)[0]
    import os
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="xmodal-bench-startup-"))
    env = dict(os.environ, XMODAL_CACHE=str(tmp / "cache"))
    print("  exporting ...", flush=True)
    fp32, int8, run = prepare_models(tmp, clip, env)
    py = sys.executable
    predict = [py, "-m", "xmodal", "predict", ENCODER, str(clip), "--device", args.device]
    load = ("from xmodal.engine.predict import load_model; load_model('efficientnet_lite0')")
    commands = [
        ("python -c pass", [py, "-c", "pass"]),
        ("import torch", [py, "-c", "import torch"]),
        ("import torchvision", [py, "-c", "import torchvision"]),
        ("import timm", [py, "-c", "import timm"]),
        ("import xmodal.cli", [py, "-c", "import xmodal.cli"]),
        ("import + load_model(efficientnet_lite0)", [py, "-c", load]),
        (f"xmodal predict {ENCODER} CLIP (default batching)", predict),
        (f"xmodal predict {ENCODER} CLIP --batch-size 1", [*predict, "--batch-size", "1"]),
        ("import onnxruntime", [py, "-c", "import onnxruntime"]),
        ("xmodal predict EXPORT_FP32 CLIP (ONNX Runtime)",
         [py, "-m", "xmodal", "predict", str(fp32), str(clip), "--device", args.device]),
        ("xmodal predict EXPORT_INT8 CLIP (ONNX Runtime)",
         [py, "-m", "xmodal", "predict", str(int8), str(clip), "--device", args.device]),
        ("xmodal predict RUN CLIP (default: cached ONNX export)",
         [py, "-m", "xmodal", "predict", str(run), str(clip), "--device", args.device]),
        ("xmodal predict RUN CLIP --engine torch",
         [py, "-m", "xmodal", "predict", str(run), str(clip), "--device", args.device,
          "--engine", "torch"]),
    ]
    rows = []
    for name, command in commands:
        print(f"  {name} ...", flush=True)
        median, runs = median_wall(command, repeats, env=env)
        rows.append([name, median, ", ".join(f"{t:.2f}" for t in runs)])
    print()
    print(header("Start-up and single-clip latency (wall seconds, lower is better)", started))
    print(f"clip: {clip.name} (640x360, 10 s, 30 fps, H.264, keyframe every 2 s); "
          f"device {args.device}; median of {repeats}.\n")
    print(table(["command (fresh process)", "median s", "runs s"], rows))
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
