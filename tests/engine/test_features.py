"""Linear probing on cached frozen features: the same head as encoding every epoch, and a
cache that is used exactly when nothing it depends on changed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.checkpoint import load_checkpoint
from xmodal.config import load_config
from xmodal.data.datasets import scan_folder
from xmodal.engine import features
from xmodal.engine.train import fit
from xmodal.models import build_classifier


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XMODAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "features"


def _cfg(data: Path, out: Path, **kw):
    base = dict(data=str(data), modality="mixed", frames=2, epochs=3, batch_size=4, workers=0,
                out=str(out), val_split=0.34, lr=1e-2, warmup_epochs=0.0, input_size=64,
                finetune="linear", augment="none", min_steps=0)
    base.update(kw)
    return load_config(None, **base)


def test_cached_probe_trains_the_same_head_as_encoding_every_epoch(
        tiny_dataset: Path, tmp_path: Path, cache: Path) -> None:
    cached = fit(_cfg(tiny_dataset, tmp_path / "cached", epochs=2))
    assert len(list(cache.rglob("*.safetensors"))) == 18  # every file once: 9 videos, 9 images
    fresh = fit(_cfg(tiny_dataset, tmp_path / "fresh", epochs=2, feature_cache=False))
    a, _ = load_checkpoint(cached.run_dir)
    b, _ = load_checkpoint(fresh.run_dir)
    torch.testing.assert_close(a["head.weight"], b["head.weight"], rtol=1e-4, atol=1e-6)
    assert [r["val_acc"] for r in cached.history] == [r["val_acc"] for r in fresh.history]
    # The temperature is fitted on the validation features either way.
    assert cached.calibration["files"] == fresh.calibration["files"] == 6
    assert "note" not in cached.calibration, cached.calibration
    assert cached.calibration["temperature"] == pytest.approx(fresh.calibration["temperature"], rel=1e-3)
    # the encoder is untouched by a linear probe
    base = build_classifier("efficientnet_lite0", 3).state_dict()
    torch.testing.assert_close(a["encoder.backbone.conv_stem.weight"],
                               base["encoder.backbone.conv_stem.weight"])


def test_cache_is_reused_and_invalidated_by_a_changed_file_or_encoder(
        tiny_dataset: Path, tmp_path: Path, cache: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    samples, _ = scan_folder(data, "mixed")
    samples = samples[::4]  # a few videos and images are enough
    cfg = _cfg(data, tmp_path / "run")
    model = build_classifier("efficientnet_lite0", 3)
    sizes = {"input_size": 64, "resize_size": 73}
    fingerprint = features.encoder_fingerprint(model)
    first = features.build_bank(model, samples, cfg, device=torch.device("cpu"),
                                fingerprint=fingerprint, **sizes)
    assert first.computed == len(samples) and not first.failed
    again = features.build_bank(model, samples, cfg, device=torch.device("cpu"),
                                fingerprint=fingerprint, **sizes)
    assert again.computed == 0
    for a, b in zip(first.features, again.features, strict=True):
        torch.testing.assert_close(a, b)
    touched = samples[0].path
    os.utime(touched, ns=(1, 1))  # same bytes, another modification time: encoded again
    assert features.build_bank(model, samples, cfg, device=torch.device("cpu"),
                               fingerprint=fingerprint, **sizes).computed == 1
    with torch.no_grad():
        model.encoder.backbone.conv_stem.weight.mul_(1.01)
    changed = features.encoder_fingerprint(model)
    assert changed != fingerprint
    assert features.build_bank(model, samples, cfg, device=torch.device("cpu"),
                               fingerprint=changed, **sizes).computed == len(samples)
    bigger = {"input_size": 96, "resize_size": 110}
    assert features.build_bank(model, samples, cfg, device=torch.device("cpu"),
                               fingerprint=changed, **bigger).computed == len(samples)


def test_a_broken_file_is_skipped_not_cached(tiny_dataset: Path, tmp_path: Path,
                                             cache: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    broken = next(data.rglob("*.mp4"))
    broken.write_bytes(b"not a video")
    result = fit(_cfg(data, tmp_path / "run", epochs=1))
    assert any(str(broken) in s for s in result.skipped_files)
    assert len(list(cache.rglob("*.safetensors"))) == 17


def test_probe_head_equals_scikit_learns_logistic_regression() -> None:
    """LP-FT's first stage: the head becomes LogisticRegression(C=1) on the raw features."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, 16))
    labels = np.repeat(np.arange(3), 20)
    frames = centres[labels][:, None, :] + rng.normal(0, 1.5, (60, 4, 16))  # 4 frames per clip
    bank = features.FeatureBank([torch.tensor(f, dtype=torch.float32) for f in frames],
                                labels.tolist(), ["video"] * 60, {}, 60)
    model = torch.nn.Module()
    model.head = torch.nn.Linear(16, 3)
    features.fit_probe_head(model, bank)
    pooled = frames.mean(1)
    reference = LogisticRegression(C=1.0, max_iter=1000, tol=1e-8).fit(pooled, labels)
    with torch.no_grad():
        mine = model.head(torch.tensor(pooled, dtype=torch.float32)).numpy()
    theirs = reference.decision_function(pooled)
    np.testing.assert_allclose(mine, theirs, atol=2e-3)
    assert (mine.argmax(1) == labels).mean() > 0.8


def test_probe_head_gives_a_near_constant_feature_no_outsized_weight() -> None:
    """A pooled CNN feature that barely varies over a few-shot set must not get a weight of
    1 / its std: fine-tuning moves such a feature a little and the logits would jump (LP-FT on
    digits fell from 0.83 to 0.32 when the head was fitted on standardised features)."""
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(2), 10)
    frames = rng.normal(0, 1, (20, 1, 8)) + labels[:, None, None] * 2.0
    frames[:, :, 7] = 0.5 + 1e-4 * rng.normal(0, 1, (20, 1))  # near-constant, noise only
    bank = features.FeatureBank([torch.tensor(f, dtype=torch.float32) for f in frames],
                                labels.tolist(), ["image"] * 20, {}, 20)
    model = torch.nn.Module()
    model.head = torch.nn.Linear(8, 2)
    features.fit_probe_head(model, bank)
    informative = model.head.weight[:, :7].abs().max().item()
    assert model.head.weight[:, 7].abs().max().item() < 0.01 * informative


def test_multi_label_probe_head_is_one_logistic_regression_per_class() -> None:
    """--finetune lp-ft --multi-label: each class's head row is scikit-learn's binary
    LogisticRegression(C=1) of that class against the rest, on the raw features."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    centres = rng.normal(0, 1, (3, 16))
    labels = [(0,), (1,), (2,), (0, 1), (1, 2), (0, 2)] * 8
    hot = np.zeros((len(labels), 3))
    for row, members in enumerate(labels):
        hot[row, list(members)] = 1
    frames = (hot @ centres)[:, None, :] + rng.normal(0, 0.7, (len(labels), 2, 16))
    bank = features.FeatureBank([torch.tensor(f, dtype=torch.float32) for f in frames], labels,
                                ["video"] * len(labels), {}, len(labels), 3)
    model = torch.nn.Module()
    model.head = torch.nn.Linear(16, 3)
    features.fit_probe_head(model, bank)
    pooled = frames.mean(1)
    with torch.no_grad():
        mine = model.head(torch.tensor(pooled, dtype=torch.float32)).numpy()
    for k in range(3):
        theirs = (LogisticRegression(C=1.0, max_iter=1000, tol=1e-8).fit(pooled, hot[:, k])
                  .decision_function(pooled))
        np.testing.assert_allclose(mine[:, k], theirs, atol=2e-3)
    assert ((mine > 0) == (hot > 0)).mean() > 0.9
