#!/usr/bin/env python
"""Which --balance for imbalanced classes? none, sampler and loss side by side on a long-tailed split.

    python tools/bench_balance.py --dataset digits --ratio 10 --seeds 0 1 2
    python tools/bench_balance.py --dataset digits --finetune full --epochs 5 --seeds 0

The training split is long-tailed (Cui et al., 2019, "Class-Balanced Loss Based on Effective
Number of Samples"): class c of K keeps n_max * ratio^(-c / (K - 1)) images, so the largest class
has ``ratio`` times the smallest's; the test split is balanced (``--test-per-class`` each), so
its accuracy is the mean per-class recall. Data: scikit-learn's handwritten digits or
scikit-image's LFW faces vs non-faces (bench_transfer.py's loaders; no download). Each setting
trains through xmodal's own ``fit`` and is scored by ``evaluate_folder``; the linear probe's
features are encoded once per seed and shared by the three runs (same files, same cache).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_transfer import load_dataset  # noqa: E402

MODES = ("none", "sampler", "loss")


def long_tailed_counts(num_classes: int, n_max: int, ratio: float) -> list[int]:
    """Training images per class: n_max * ratio^(-c / (K - 1)), at least 1."""
    return [max(1, round(n_max * ratio ** (-c / max(1, num_classes - 1)))) for c in range(num_classes)]


def write_split(root: Path, images: np.ndarray, labels: np.ndarray, classes: list[str],
                counts: list[int], test_per_class: int, seed: int) -> tuple[Path, Path]:
    """Long-tailed train and balanced test folders of PNGs (one sub-folder per class)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < counts[c] + test_per_class:
            raise SystemExit(f"class {name}: {len(idx)} images, need {counts[c] + test_per_class}")
        test = idx[counts[c]:counts[c] + test_per_class]
        for part, chosen in (("train", idx[:counts[c]]), ("test", test)):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(images[i]).convert("RGB").save(folder / f"{i:05d}.png")
    return root / "train", root / "test"


def run(train_dir: Path, test_dir: Path, out: Path, args: argparse.Namespace, balance: str,
        seed: int) -> tuple[dict[str, float], float]:
    """Per-class test recall after training with ``balance``, and the training seconds."""
    from xmodal.config import load_config
    from xmodal.engine.evaluate import evaluate_folder
    from xmodal.engine.predict import Predictor, load_model
    from xmodal.engine.train import fit

    cfg = load_config(None, data=str(train_dir), modality="image", finetune=args.finetune,
                      epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, val_split=0.0,
                      seed=seed, out=str(out), workers=0, warmup_epochs=0.5,
                      augment="none" if args.finetune == "linear" else "light",
                      input_size=args.input_size, balance=balance)
    start = time.perf_counter()
    fit(cfg)
    seconds = time.perf_counter() - start
    report = evaluate_folder(Predictor(load_model(out), workers=0, batch_size=64), test_dir,
                             modality="image")
    return {name: m["recall"] for name, m in report.per_class.items()}, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=["digits", "lfw"])
    parser.add_argument("--ratio", type=float, default=10.0, help="Largest / smallest class.")
    parser.add_argument("--n-max", type=int, default=None, help="Images of the largest class.")
    parser.add_argument("--test-per-class", type=int, default=None)
    parser.add_argument("--finetune", default="linear", choices=["linear", "full"])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()

    images, labels, classes = load_dataset(args.dataset)
    n_max = args.n_max or (60 if args.dataset == "digits" else 50)
    test_per_class = args.test_per_class or (40 if args.dataset == "digits" else 40)
    counts = long_tailed_counts(len(classes), n_max, args.ratio)
    recalls: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    seconds: dict[str, list[float]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="xmodal-balance-") as tmp:
        os.environ["XMODAL_CACHE_DIR"] = str(Path(tmp) / "cache")  # shared by the three runs
        for seed in args.seeds:
            data = Path(tmp) / f"seed{seed}"
            train_dir, test_dir = write_split(data, images, labels, classes, counts,
                                              test_per_class, seed)
            for mode in MODES:
                per_class, secs = run(train_dir, test_dir, data / f"run-{mode}", args, mode, seed)
                recalls[mode].append(per_class)
                seconds[mode].append(secs)
                r = np.array(list(per_class.values()))
                print(f"  seed {seed} {mode:7s}: mean recall {r.mean():.3f}, worst {r.min():.3f} "
                      f"({secs:.0f}s)", flush=True)
    print(f"\n{args.dataset}, training images per class {counts} (ratio {args.ratio:g}), "
          f"{test_per_class} test images per class, {args.finetune} at {args.input_size} px, "
          f"{args.epochs} epochs, lr {args.lr:g}, seeds {args.seeds}")
    tail = len(classes) // 3 or 1
    print("| --balance | mean recall (= test accuracy) | worst class | 3 largest classes | "
          f"{tail} smallest classes | train time |\n|---|---|---|---|---|---|")
    for mode in MODES:
        table = np.array([[r[c] for c in classes] for r in recalls[mode]])  # seeds x classes
        mean = table.mean(1)
        spread = f" ± {mean.std():.3f}" if len(mean) > 1 else ""
        print(f"| {mode} | {mean.mean():.3f}{spread} | {table.min(1).mean():.3f} | "
              f"{table[:, :3].mean():.3f} | {table[:, -tail:].mean():.3f} | "
              f"{np.mean(seconds[mode]):.0f} s |")
    print("\nper-class recall (mean over seeds), classes from largest to smallest:")
    print("| --balance | " + " | ".join(f"{c} ({n})" for c, n in zip(classes, counts, strict=True))
          + " |\n|---|" + "---|" * len(classes))
    for mode in MODES:
        table = np.array([[r[c] for c in classes] for r in recalls[mode]])
        print(f"| {mode} | " + " | ".join(f"{v:.2f}" for v in table.mean(0)) + " |")


if __name__ == "__main__":
    main()
