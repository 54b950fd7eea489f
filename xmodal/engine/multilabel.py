"""Multi-label classification: targets, per-class thresholds and the metrics ``eval`` reports.

A multi-label model scores each class on its own (a sigmoid of the clip logit, the logits
pooled over time first) and is trained with binary cross-entropy; a file gets every class whose
score reaches that class's threshold, tuned on the validation split for the best F1 of the
class. Average precision is the area under the precision-recall step curve, as scikit-learn's
``average_precision_score`` computes it (tested against it); mAP is its mean over the classes
that have positives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

DEFAULT_THRESHOLD = 0.5
SEPARATOR = "|"  # between labels in a CSV cell: clip.mp4,dog|running


def is_multi_label(meta: Mapping[str, Any]) -> bool:
    return bool(meta.get("multi_label"))


def targets_tensor(labels: Sequence[Any], num_classes: int | None) -> torch.Tensor:
    """(B,) int64 class indices for single labels; (B, K) float multi-hot rows for tuples."""
    import torch

    if labels and isinstance(labels[0], tuple):
        if num_classes is None:
            raise ValueError("multi-label targets need the number of classes")
        hot = torch.zeros(len(labels), num_classes)
        for row, members in enumerate(labels):
            hot[row, list(members)] = 1.0
        return hot
    return torch.as_tensor(labels, dtype=torch.long)


def example_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per example: 1.0/0.0 for a right/wrong argmax (single label, (B,) targets), or the F1 of
    the predicted set (sigmoid >= 0.5) against the true one ((B, K) targets)."""
    if targets.ndim == 1:
        return (logits.argmax(1) == targets).float()
    return example_f1((logits > 0).cpu().numpy(), targets.cpu().numpy() > 0.5, reduce=False)


def example_f1(predicted: np.ndarray, truth: np.ndarray, *, reduce: bool = True) -> Any:
    """Example-based F1 of (N, K) boolean sets: 2|P & T| / (|P| + |T|) per example (1 when both
    are empty), averaged unless ``reduce`` is False (then a tensor of the N values)."""
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    both = (predicted & truth).sum(1)
    sizes = predicted.sum(1) + truth.sum(1)
    per = np.where(sizes == 0, 1.0, 2 * both / np.maximum(sizes, 1))
    if reduce:
        return float(per.mean())
    import torch

    return torch.from_numpy(per).float()


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """AP of one class: sum over distinct score thresholds of (R_n - R_{n-1}) P_n; None when
    the class has no positives."""
    truth = truth.astype(bool)
    if not truth.any():
        return None
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], truth[order]
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    last_of_tie = np.r_[np.diff(ranked) != 0, True]
    tp, fp = tp[last_of_tie], fp[last_of_tie]
    precision, recall = tp / (tp + fp), tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def tune_thresholds(scores: np.ndarray, truth: np.ndarray) -> list[float]:
    """Per class, the score threshold with the best F1 on (N, K) scores and truths: halfway
    between the lowest score kept and the next lower one. A class with no positives keeps 0.5."""
    thresholds = []
    for k in range(scores.shape[1]):
        s, y = scores[:, k], truth[:, k].astype(bool)
        if not y.any():
            thresholds.append(DEFAULT_THRESHOLD)
            continue
        levels = np.unique(s)[::-1]  # distinct scores, high to low
        below = np.r_[levels[1:], 0.0]
        best, best_f1 = DEFAULT_THRESHOLD, -1.0
        for level, lower in zip(levels, below, strict=True):
            kept = s >= level
            tp = int((kept & y).sum())
            f1 = 2 * tp / (kept.sum() + y.sum())
            if f1 > best_f1:
                best, best_f1 = float((level + lower) / 2), f1
        thresholds.append(round(best, 6))
    return thresholds


def thresholds_of(meta: Mapping[str, Any], num_classes: int) -> np.ndarray:
    return np.asarray(meta.get("thresholds") or [DEFAULT_THRESHOLD] * num_classes, dtype=np.float64)


def predictor_thresholds(models: Sequence[Any]) -> np.ndarray | None:
    """The per-class thresholds of a multi-label model (None for single-label models).
    Fusion averages scores of one kind, with one set of thresholds: multi-label models alone."""
    from xmodal.errors import ModelError

    kinds = {is_multi_label(m.meta) for m in models}
    if kinds == {False}:
        return None
    if len(models) > 1:
        raise ModelError("fusing a multi-label model is not supported: its per-class thresholds "
                         "belong to its own scores")
    return thresholds_of(models[0].meta, len(models[0].classes))


def labels_above(probs: Any, classes: Sequence[str], thresholds: np.ndarray) -> list[str]:
    """The classes whose score reaches their threshold, highest score first."""
    scores = np.asarray(probs, dtype=np.float64)
    chosen = np.flatnonzero(scores >= thresholds)
    return [classes[i] for i in chosen[np.argsort(-scores[chosen], kind="stable")]]


def threshold_summary(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """Tune the thresholds on validation logits (N, K) and multi-hot targets; with the
    example-based F1 at 0.5 and at the tuned thresholds."""
    scores, truth = logits.double().sigmoid().numpy(), targets.numpy() > 0.5
    thresholds = tune_thresholds(scores, truth)
    return {"thresholds": thresholds, "files": int(len(truth)),
            "f1_at_0.5": round(example_f1(scores >= DEFAULT_THRESHOLD, truth), 6),
            "f1_tuned": round(example_f1(scores >= np.asarray(thresholds), truth), 6)}


def multi_label_metrics(scores: np.ndarray, truth: np.ndarray, classes: Sequence[str],
                        thresholds: np.ndarray) -> dict[str, Any]:
    """mAP, per-class AP / precision / recall at the thresholds / support, example-based F1."""
    truth = truth.astype(bool)
    predicted = scores >= thresholds
    per_class, aps = {}, []
    for k, name in enumerate(classes):
        ap = average_precision(scores[:, k], truth[:, k])
        if ap is not None:
            aps.append(ap)
        tp = int((predicted[:, k] & truth[:, k]).sum())
        chosen, positives = int(predicted[:, k].sum()), int(truth[:, k].sum())
        per_class[name] = {"ap": None if ap is None else round(ap, 5),
                           "precision": round(tp / chosen, 5) if chosen else 0.0,
                           "recall": round(tp / positives, 5) if positives else 0.0,
                           "threshold": round(float(thresholds[k]), 6),
                           "support": int(truth[:, k].sum())}
    return {"map": round(float(np.mean(aps)), 5) if aps else None,
            "example_f1": round(example_f1(predicted, truth), 5), "per_class": per_class}
