#!/usr/bin/env python
"""INT8 against fp32 on real test sets: does `xmodal export --int8` cost accuracy?

For each dataset (scikit-learn's digits, scikit-image's LFW faces vs non-faces; both ship inside
their packages, see tools/bench_transfer.py), one run is fine-tuned with xmodal (pretrained
EfficientNet-Lite0, full fine-tune, a 20% validation split), exported to ONNX in fp32 and in
INT8 (calibrated on the run's own training split, as `xmodal export --int8` does), and the
held-out test images are scored by PyTorch, ONNX Runtime fp32 and ONNX Runtime INT8:

    python tools/bench_int8.py                      # digits and lfw, 112 px, 5 epochs
    python tools/bench_int8.py --datasets digits --epochs 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_media import header, note_start, table  # noqa: E402
from bench_transfer import load_dataset, write_split  # noqa: E402


def train(train_dir: Path, out: Path, args: argparse.Namespace) -> float:
    from xmodal.config import load_config
    from xmodal.engine.train import fit

    cfg = load_config(None, data=str(train_dir), modality="image", backbone="efficientnet_lite0",
                      weights="imagenet", finetune="full", epochs=args.epochs, lr=args.lr,
                      batch_size=16, val_split=0.2, seed=args.seed, out=str(out), workers=0,
                      warmup_epochs=0.5, augment="light", input_size=args.input_size)
    start = time.perf_counter()
    fit(cfg)
    return time.perf_counter() - start


def scores(model_ref: Path, test_dir: Path, engine: str) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, true class) per test image."""
    from xmodal.data.samples import scan_folder
    from xmodal.engine.predict import Predictor, load_model

    samples, classes = scan_folder(test_dir, "image")
    model = load_model(model_ref, engine=engine)
    remap = [model.classes.index(c) for c in classes]
    predictor = Predictor(model, workers=0, device="cpu")
    pred = np.full(len(samples), -1)
    for index, probs, _, _ in predictor.iter_probabilities([str(s.path) for s in samples]):
        pred[index] = int(probs[0].argmax())
    return pred, np.array([remap[s.label] for s in samples])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "lfw"], choices=["digits", "lfw"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--train-per-class", type=int, default=None,
                        help="[digits 50, lfw 50]")
    parser.add_argument("--test-per-class", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = note_start()

    from xmodal.deploy.onnx_export import export_onnx

    rows, notes = [], []
    for name in args.datasets:
        images, labels, classes = load_dataset(name)
        per_class = args.train_per_class or 50
        with tempfile.TemporaryDirectory(prefix="xmodal-int8-") as tmp:
            train_dir, test_dir = write_split(Path(tmp), images, labels, classes, per_class,
                                              args.test_per_class, args.seed)
            run = Path(tmp) / "run"
            print(f"  {name}: training ...", flush=True)
            train_s = train(train_dir, run, args)
            print(f"  {name}: exporting fp32 and int8 ...", flush=True)
            fp32 = export_onnx(run, Path(tmp) / "fp32").out
            int8 = export_onnx(run, Path(tmp) / "int8", int8=True)
            notes += [f"{name}: {n}" for n in int8.notes]
            preds = {}
            for label, ref, engine in (("PyTorch", run, "torch"), ("ONNX fp32", fp32, "onnx"),
                                       ("ONNX int8", int8.out, "onnx")):
                print(f"  {name}: scoring the test set with {label} ...", flush=True)
                preds[label], truth = scores(ref, test_dir, engine)
            acc = {k: float((p == truth).mean()) for k, p in preds.items()}
            agree = float((preds["ONNX int8"] == preds["ONNX fp32"]).mean())
            rows.append([f"{name} ({len(classes)} classes, {len(truth)} test images)",
                         acc["PyTorch"], acc["ONNX fp32"], acc["ONNX int8"],
                         f"{100 * (acc['ONNX int8'] - acc['ONNX fp32']):+.1f}", f"{agree:.1%}",
                         f"{train_s:.0f}"])
    print()
    print(header("INT8 vs fp32 top-1 on held-out test images (higher is better)", started))
    print(f"EfficientNet-Lite0 fine-tuned (full) by xmodal at {args.input_size} px, {args.epochs} "
          f"epochs, seed {args.seed}, 20% validation split; INT8: static QDQ, per-channel weights, "
          "calibrated on the run's training split.\n")
    print(table(["dataset", "PyTorch", "ONNX fp32", "ONNX int8", "int8 - fp32, points",
                 "same label int8/fp32", "train s"], rows))
    print()
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
