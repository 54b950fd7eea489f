#!/usr/bin/env python
"""INT8 against fp32 on real test sets: does `xmodal export --int8` cost accuracy?

For each dataset of the accuracy suite (tools/_bench_datasets.py: Fashion-MNIST, scikit-learn's
digits, scikit-image's LFW faces vs non-faces; fixed train and test pools), one run is trained
with `xmodal train`'s defaults on SHOT photos per class (stills; the default validation split:
20% from 50 photos per class, else none, and then no export-time report), exported
to ONNX in fp32 and in INT8 (calibrated on the run's own training split, as `xmodal export
--int8` does), and the fixed held-out test photos are scored by PyTorch, ONNX Runtime fp32 and
ONNX Runtime INT8:

    python tools/bench_int8.py                               # the three datasets, 30 shots, 224 px
    python tools/bench_int8.py --datasets digits --input-size 112
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_datasets as datasets  # noqa: E402
from _bench_media import header, note_start, table  # noqa: E402


def write_split(root: Path, ds: datasets.BenchDataset, shot: int, test_per_class: int,
                seed: int) -> tuple[Path, Path]:
    """Class folders of PNGs: ``shot`` training photos per class (the suite's draw for ``seed``)
    and the first ``test_per_class`` of each class's fixed test pool."""
    from PIL import Image

    parts = {"train": ds.train_indices(shot, seed), "test": ds.test_indices(test_per_class)}
    for part, picked in parts.items():
        for c, indices in picked.items():
            folder = root / part / ds.classes[c]
            folder.mkdir(parents=True, exist_ok=True)
            for i in indices:
                Image.fromarray(ds.images[i]).convert("RGB").save(folder / f"{i:05d}.png")
    return root / "train", root / "test"


def train(train_dir: Path, out: Path, args: argparse.Namespace) -> tuple[float, float]:
    """``xmodal train --modality image`` with its defaults (only the frame size may be set):
    (seconds, the validation fraction the run resolved)."""
    from xmodal.config import load_config
    from xmodal.engine.train import fit

    cfg = load_config(None, data=str(train_dir), modality="image", seed=args.seed, out=str(out),
                      input_size=args.input_size)
    start = time.perf_counter()
    result = fit(cfg)
    seconds = time.perf_counter() - start
    resolved = load_config(str(result.run_dir / "config.yaml"))
    return seconds, float(resolved.val_split or 0.0)


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
    parser.add_argument("--datasets", nargs="+", default=list(datasets.DATASETS), choices=datasets.DATASETS)
    parser.add_argument("--shot", type=int, default=30, help="training photos per class [30]")
    parser.add_argument("--test-per-class", type=int, default=50, help="test photos per class [50]")
    parser.add_argument("--input-size", type=int, default=None, help="frame size [the encoder's: 224]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=datasets.default_cache())
    args = parser.parse_args()
    started = note_start()

    from xmodal.deploy.onnx_export import export_onnx

    rows, notes = [], []
    val_fractions: set[float] = set()
    for name in args.datasets:
        try:
            ds = datasets.load(name, args.cache)
        except datasets.DatasetUnavailable as exc:  # one missing dataset must not stop the others
            print(f"  {name}: skipped ({exc})", flush=True)
            notes.append(f"{name}: skipped ({exc})")
            continue
        with tempfile.TemporaryDirectory(prefix="xmodal-int8-") as tmp:
            train_dir, test_dir = write_split(Path(tmp), ds, args.shot, args.test_per_class, args.seed)
            run = Path(tmp) / "run"
            print(f"  {name}: training ...", flush=True)
            train_s, val_fraction = train(train_dir, run, args)
            val_fractions.add(val_fraction)
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
            rows.append([f"{name} ({len(ds.classes)} classes, {len(truth)} test photos)",
                         acc["PyTorch"], acc["ONNX fp32"], acc["ONNX int8"],
                         f"{100 * (acc['ONNX int8'] - acc['ONNX fp32']):+.1f}", f"{agree:.1%}",
                         f"{train_s:.0f}"])
    print()
    print(header("INT8 vs fp32 top-1 on held-out test photos (higher is better)", started))
    print(f"EfficientNet-Lite0 trained by `xmodal train --modality image` with its defaults on "
          f"{args.shot} photos per class (seed {args.seed}, validation split "
          f"{', '.join(f'{v:.0%}' for v in sorted(val_fractions)) or 'n/a'})"
          f"{f' at {args.input_size} px' if args.input_size else ''}; INT8: static QDQ, per-channel "
          "weights, calibrated on the run's training split.\n")
    print(table(["dataset", "PyTorch", "ONNX fp32", "ONNX int8", "int8 - fp32, points",
                 "same label int8/fp32", "train s"], rows))
    print()
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
