"""Class balance for imbalanced training sets: sampling weights and loss weights. Pure.

``--balance sampler`` draws each epoch's files with replacement, a file's chance inversely
proportional to its class's size, so every class is seen about equally often (class-balanced
sampling, as in Kang et al., 2020, "Decoupling Representation and Classifier for Long-Tailed
Recognition"). ``--balance loss`` keeps the data as it is and weights the loss instead: class
c gets N / (K n_c), scikit-learn's ``class_weight="balanced"``; for multi-label training each
class's positives get n_negative / n_positive (``BCEWithLogitsLoss(pos_weight=...)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _members(label: Any) -> tuple[int, ...]:
    return tuple(label) if isinstance(label, tuple) else (int(label),)


def class_counts(labels: Sequence[Any], num_classes: int | None = None) -> np.ndarray:
    """Files per class (a multi-label file counts once for each of its labels); ``num_classes``
    defaults to the highest label + 1."""
    if num_classes is None:
        num_classes = 1 + max((max(_members(label)) for label in labels), default=-1)
    counts = np.zeros(num_classes, dtype=np.int64)
    for label in labels:
        counts[list(_members(label))] += 1
    return counts


def sample_weights(labels: Sequence[Any], num_classes: int | None = None) -> np.ndarray:
    """Each file's sampling weight: 1 / (its class's size), so every class has the same total
    weight; a multi-label file gets the mean over its labels (rare labels raise it)."""
    counts = class_counts(labels, num_classes)
    return np.array([np.mean([1.0 / counts[c] for c in _members(label)]) for label in labels])


def loss_weights(labels: Sequence[Any], num_classes: int) -> np.ndarray:
    """Cross-entropy class weights N / (K n_c) (mean 1 over the files; 0 for an absent class)."""
    counts = class_counts(labels, num_classes)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights


def positive_weights(labels: Sequence[Any], num_classes: int) -> np.ndarray:
    """Multi-label: n_negative / n_positive per class (1 for a class without positives)."""
    counts = class_counts(labels, num_classes)
    return np.where(counts > 0, (len(labels) - counts) / np.maximum(counts, 1), 1.0)
