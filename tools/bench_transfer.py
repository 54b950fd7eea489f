#!/usr/bin/env python
"""Does ImageNet pretraining pay? Three runs side by side on a real labelled dataset.

(a) pretrained encoder, linear probe   (b) pretrained, full fine-tune
(c) the same architecture from scratch — same epochs, seed, data and schedule.

    python tools/bench_transfer.py --dataset digits --epochs 4
    python tools/bench_transfer.py --dataset lfw --epochs 4

Datasets ship inside packages (no download): scikit-learn's ``load_digits``
(8x8 handwritten digits, 10 classes) and scikit-image's ``lfw_subset``
(faces vs non-faces). Images are written to a temp folder as PNGs and go
through xmodal's normal train and eval paths.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 (N, H, W), labels, class names)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        images = (d.images / 16.0 * 255).round().astype(np.uint8)
        return images, d.target, [str(i) for i in range(10)]
    if name == "lfw":
        from skimage.data import lfw_subset

        images = (lfw_subset() * 255).round().astype(np.uint8)
        labels = np.array([0] * 100 + [1] * 100)  # documented order: 100 faces, then 100 non-faces
        return images, labels, ["face", "non_face"]
    raise SystemExit(f"unknown dataset {name!r}: use digits or lfw")


def write_split(root: Path, images: np.ndarray, labels: np.ndarray, classes: list[str],
                train_per_class: int, test_per_class: int, seed: int) -> tuple[Path, Path]:
    """Stratified train/test folders of PNGs (one sub-folder per class)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test = idx[train_per_class:train_per_class + test_per_class]
        for part, chosen in (("train", idx[:train_per_class]), ("test", test)):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(images[i]).convert("RGB").save(folder / f"{i:05d}.png")
    return root / "train", root / "test"


def run(train_dir: Path, test_dir: Path, out: Path, *, weights: str, finetune: str, epochs: int,
        lr: float, seed: int, batch_size: int, backbone: str, input_size: int) -> tuple[float, float]:
    from xmodal.config import load_config
    from xmodal.engine.evaluate import evaluate_folder
    from xmodal.engine.predict import Predictor, load_model
    from xmodal.engine.train import fit

    cfg = load_config(None, data=str(train_dir), modality="image", backbone=backbone,
                      weights=weights, finetune=finetune, epochs=epochs, lr=lr,
                      backbone_lr_mult=1.0 if weights == "none" else 0.1, batch_size=batch_size,
                      val_split=0.0, seed=seed, out=str(out), workers=0, warmup_epochs=0.5,
                      augment="light", input_size=input_size)
    start = time.perf_counter()
    fit(cfg)
    seconds = time.perf_counter() - start
    report = evaluate_folder(Predictor(load_model(out), workers=0, batch_size=64), test_dir,
                             modality="image")
    return report.video_level["top1"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=["digits", "lfw"])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-per-class", type=int, default=None)
    parser.add_argument("--test-per-class", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-size", type=int, default=112, help="Pixels (CPU-friendly default).")
    args = parser.parse_args()

    images, labels, classes = load_dataset(args.dataset)
    per_class = args.train_per_class or (20 if args.dataset == "digits" else 50)
    rows = []
    with tempfile.TemporaryDirectory(prefix="xmodal-transfer-") as tmp:
        train_dir, test_dir = write_split(Path(tmp), images, labels, classes, per_class,
                                           args.test_per_class, args.seed)
        n_test = sum(1 for _ in test_dir.rglob("*.png"))
        setups = [("pretrained, linear probe", "imagenet", "linear"),
                  ("pretrained, full fine-tune", "imagenet", "full"),
                  ("from scratch, full", "none", "full")]
        for title, weights, finetune in setups:
            acc, secs = run(train_dir, test_dir, Path(tmp) / title.replace(" ", "_"),
                            weights=weights, finetune=finetune, epochs=args.epochs, lr=args.lr,
                            seed=args.seed, batch_size=args.batch_size, backbone=args.backbone,
                            input_size=args.input_size)
            rows.append((title, acc, secs))
            print(f"  {title}: test accuracy {acc:.3f} ({secs:.0f}s)", flush=True)
    chance = 1 / len(classes)
    print(f"\n{args.dataset}: {per_class} training images per class, {n_test} test images, "
          f"{args.backbone} at {args.input_size} px, {args.epochs} epochs, seed {args.seed}, "
          f"chance {chance:.3f}")
    print("| setup | test accuracy | vs scratch | train time |\n|---|---|---|---|")
    scratch = rows[-1][1]
    for title, acc, secs in rows:
        print(f"| {title} | {acc:.3f} | {acc / max(scratch, 1e-9):.2f}x | {secs:.0f} s |")


if __name__ == "__main__":
    main()
