"""Class balance: weights with known answers, and the class frequencies the sampler gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.utils import write_image
from xmodal.config import load_config
from xmodal.data.balance import class_counts, loss_weights, positive_weights, sample_weights
from xmodal.data.datasets import KindBatchSampler, Sample
from xmodal.errors import ConfigError

LONG_TAIL = [0] * 90 + [1] * 10


def test_weights_known_answers() -> None:
    assert class_counts(LONG_TAIL).tolist() == [90, 10]
    np.testing.assert_allclose(loss_weights(LONG_TAIL, 2), [100 / (2 * 90), 100 / (2 * 10)])
    np.testing.assert_allclose(loss_weights([0, 0, 2], 3), [3 / 4, 0.0, 3 / 2])  # class 1 absent
    weights = sample_weights(LONG_TAIL, 2)
    assert weights[:90].sum() == pytest.approx(weights[90:].sum())  # each class weighs the same
    multi = [(0, 1), (0,), (0,), (1, 2)]
    np.testing.assert_allclose(positive_weights(multi, 3), [1 / 3, 2 / 2, 3 / 1])
    # class sizes 3, 2, 1: each file the mean of 1/size over its labels
    np.testing.assert_allclose(sample_weights(multi, 3), [(1 / 3 + 1 / 2) / 2, 1 / 3, 1 / 3, (1 / 2 + 1) / 2])


def _class_share(sampler: KindBatchSampler, labels: list[int], epochs: int) -> float:
    drawn = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        drawn += [labels[i] for batch in sampler for i in batch]
    return float(np.mean(drawn))


def test_the_balanced_sampler_draws_each_class_equally_often() -> None:
    kinds = ["image"] * len(LONG_TAIL)
    plain = KindBatchSampler(kinds, 10, shuffle=True, seed=0)
    balanced = KindBatchSampler(kinds, 10, shuffle=True, seed=0, weights=sample_weights(LONG_TAIL))
    assert len(balanced) == len(plain) == 10  # the epoch keeps its length
    assert _class_share(plain, LONG_TAIL, 50) == pytest.approx(0.10)
    # 5,000 draws at p = 0.5: the standard deviation of the share is 0.007.
    assert _class_share(balanced, LONG_TAIL, 50) == pytest.approx(0.5, abs=0.03)
    again = KindBatchSampler(kinds, 10, shuffle=True, seed=0, weights=sample_weights(LONG_TAIL))
    balanced.set_epoch(3)
    again.set_epoch(3)
    assert list(balanced) == list(again)  # same seed and epoch, same draw: resumable


def test_balanced_sampling_keeps_batches_of_one_kind() -> None:
    kinds = ["image"] * 30 + ["video"] * 10
    labels = [0] * 27 + [1] * 3 + [0] * 9 + [1]
    sampler = KindBatchSampler(kinds, 4, shuffle=True, seed=1, weights=sample_weights(labels))
    for batch in sampler:
        assert len({kinds[i] for i in batch}) == 1


def test_training_loader_draws_real_files_class_balanced(tmp_path: Path) -> None:
    from xmodal.engine.data import make_loader

    rng = np.random.default_rng(0)
    samples = []
    for i in range(20):
        label = int(i >= 18)  # 18 files of class 0, 2 of class 1
        path = write_image(tmp_path / f"{label}" / f"{i}.png", rng.integers(0, 256, (12, 12, 3), np.uint8))
        samples.append(Sample(path, label, "image"))
    cfg = load_config(None, csv="unused.csv", batch_size=5, workers=0, balance="sampler",
                      augment="none")
    loader = make_loader(samples, cfg, train=True, input_size=32, resize_size=36,
                         generator=torch.Generator().manual_seed(0), num_classes=2)
    seen = []
    for epoch in range(40):
        loader.batch_sampler.set_epoch(epoch)
        seen += [int(y) for _, labels, _ in loader for y in labels]
    assert len(seen) == 40 * 20
    assert np.mean(seen) == pytest.approx(0.5, abs=0.06)  # 10% of the files, half of the draws


def test_balance_values_are_checked() -> None:
    assert load_config(None).balance == "loss"  # measured: tools/bench_balance.py
    assert load_config(None, csv="x.csv", multi_label=True).balance == "none"
    with pytest.raises(ConfigError, match="balance must be one of none, sampler, loss"):
        load_config(None, balance="oversample")
