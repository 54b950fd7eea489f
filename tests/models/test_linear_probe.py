"""Pretrained features separate a real dataset: a linear probe in seconds on CPU."""

from __future__ import annotations

import numpy as np
import torch

from xmodal.models import build_classifier


def _features(weights: str, images: np.ndarray) -> np.ndarray:
    torch.manual_seed(0)
    model = build_classifier("efficientnet_lite0", 2, weights=weights).eval()
    x = torch.from_numpy(images).float().div(255)[:, None].expand(-1, 3, -1, -1)
    x = torch.nn.functional.interpolate(x, size=112, mode="bilinear", antialias=False)
    with torch.inference_mode():
        x = (x * 255 - model.mean) / model.std
        return model.encoder(x).numpy()


def test_linear_probe_on_lfw_faces_vs_non_faces() -> None:
    from skimage.data import lfw_subset
    from sklearn.linear_model import LogisticRegression

    images = (lfw_subset() * 255).round().astype(np.uint8)  # 100 faces, then 100 non-faces
    labels = np.repeat([0, 1], 100)
    rng = np.random.default_rng(0)
    order = rng.permutation(200)
    train, test = order[:100], order[100:]

    def probe(weights: str) -> float:
        feats = _features(weights, images)
        clf = LogisticRegression(max_iter=2000).fit(feats[train], labels[train])
        return float(clf.score(feats[test], labels[test]))

    pretrained = probe("imagenet")
    scratch = probe("none")
    print(f"linear probe accuracy: pretrained {pretrained:.3f}, random init {scratch:.3f}")
    assert pretrained >= 0.9, pretrained  # chance is 0.5
