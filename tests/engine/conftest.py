from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated dataset (same generator as samples/), made once per session."""
    out = tmp_path_factory.mktemp("tiny") / "data"
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_samples.py"), "--out", str(out),
                    "--videos-per-class", "3", "--images-per-class", "3"], check=True)
    return out / "train"


def make_checkpoint(directory: Path, classes: list[str], *, seed: int = 0, frames: int = 4,
                    still_scale: float | None = None) -> Path:
    """An untrained head on the pretrained default encoder, saved as a real checkpoint."""
    import torch

    from xmodal.checkpoint import save_checkpoint
    from xmodal.models import build_classifier

    torch.manual_seed(seed)
    model = build_classifier("efficientnet_lite0", len(classes), weights="imagenet")
    pcfg = model.encoder.pretrained_cfg
    meta = {"classes": classes, "backbone": "efficientnet_lite0", "frames": frames,
            "pooling": "mean", "dropout": 0.0,
            "preprocessing": {"input_size": pcfg.input_size, "resize_size": pcfg.resize_size,
                              "mean": list(pcfg.mean), "std": list(pcfg.std)}}
    if still_scale is not None:
        meta["preprocessing"]["still_scale"] = still_scale
    save_checkpoint(model, meta, directory)
    return directory


@pytest.fixture(scope="session")
def three_class_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "m", ["alpha", "beta", "gamma"])


@pytest.fixture(scope="session")
def media_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good videos and images, nested, plus a non-media file that must be ignored."""
    from tests.utils import write_image, write_video

    root = tmp_path_factory.mktemp("media") / "in"
    for i in range(6):
        write_video(root / "clips" / f"v{i:02d}.mp4", 12 + i, size=(80, 60), fps=10)
    for i in range(3):
        write_image(root / "photos" / f"p{i}.jpg", size=(50 + i, 40))
    (root / "notes.txt").write_text("not media")
    return root


@pytest.fixture
def fresh_dynamo():
    """torch.compile's caches are per process and keyed on code, not on the model: a model
    compiled by an earlier test makes a later one recompile on every step. Start and end clean."""
    import torch._dynamo

    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
