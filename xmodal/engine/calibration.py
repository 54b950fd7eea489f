"""Calibrated scores: temperature scaling, expected calibration error, "unknown" below a score.

Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks"): one scalar
T > 0 divides the clip logits before the softmax; it is fitted after training by minimising the
negative log-likelihood of the validation split, which leaves every argmax (so accuracy) as it
was and makes the top score track how often it is right. The expected calibration error (ECE)
is theirs too: top-1 confidences in 15 equal-width bins, the bins' |accuracy - confidence|
weighted by their share of the files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

ECE_BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)  # an optimum outside it means the split cannot tell
UNKNOWN = "unknown"
COVERAGE_SCORES = (0.0, 0.3, 0.5, 0.7, 0.9)  # the --min-score values eval always reports


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of (N, K) probabilities against (N,) class indices: sum over equal-width bins of the
    top-1 confidence of |accuracy - mean confidence| x (files in the bin / N). NaN for N = 0."""
    if len(targets) == 0:
        return float("nan")
    confidence = probs.max(1)
    correct = probs.argmax(1) == targets
    # Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 joins bin 0.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def negative_log_likelihood(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> float:
    import torch

    return float(torch.nn.functional.cross_entropy(logits.double() / temperature, targets))


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float | None:
    """The T > 0 that minimises the NLL of softmax(logits / T) on (N, K) logits and (N,) targets
    (L-BFGS on log T; Guo et al.'s reference code runs L-BFGS on T). None when the minimum is
    not inside TEMPERATURE_RANGE: a split the model gets all right has it at T -> 0 (every score
    pushed to 1), which says nothing about files it has not seen; so does an empty split."""
    import torch

    if len(targets) == 0:
        return None
    logits, targets = logits.detach().double(), targets.detach().long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    low, high = TEMPERATURE_RANGE
    return temperature if low < temperature < high else None


def calibration_summary(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """Fit the temperature and report NLL and ECE before and after, on those logits; T = 1
    with a ``note`` when the split has no minimum to fit (see fit_temperature)."""
    fitted = fit_temperature(logits, targets)
    temperature = 1.0 if fitted is None else fitted
    y = targets.numpy()
    before = logits.double().softmax(1).numpy()
    after = (logits.double() / temperature).softmax(1).numpy()
    note = {} if fitted is not None else {
        "note": "no temperature fitted: the validation NLL has no minimum within "
                f"{TEMPERATURE_RANGE} (e.g. every file right); scores kept as trained"}
    return {"temperature": round(temperature, 6), "files": int(len(y)), **note,
            "nll_before": round(negative_log_likelihood(logits, targets), 6),
            "nll_after": round(negative_log_likelihood(logits, targets, temperature), 6),
            "ece_before": round(expected_calibration_error(before, y), 6),
            "ece_after": round(expected_calibration_error(after, y), 6)}


def temperature_of(meta: Mapping[str, Any]) -> float:
    """The fitted temperature a checkpoint's metadata records (1.0 when it has none)."""
    return float(meta.get("temperature") or 1.0)


def clip_scores(logits: torch.Tensor, meta: Mapping[str, Any]) -> torch.Tensor:
    """(N, K) clip logits -> scores: softmax(logits / T), with the model's fitted T; for a
    multi-label model, a sigmoid per class."""
    if meta.get("multi_label"):
        return logits.sigmoid()
    temperature = temperature_of(meta)
    return (logits / temperature if temperature != 1.0 else logits).softmax(-1)


def temperature_scaled(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / T) = softmax(logits / T) for probs = softmax(logits): temperature
    scaling for an engine that gives probabilities only; T = 1 / t undoes a scaling by t."""
    logp = np.log(np.maximum(probs.astype(np.float64), np.finfo(np.float64).tiny)) / temperature
    logp -= logp.max(-1, keepdims=True)
    out = np.exp(logp)
    return (out / out.sum(-1, keepdims=True)).astype(probs.dtype)


def apply_min_score(decided: dict[str, Any], min_score: float | None) -> dict[str, Any]:
    """``label`` becomes ``unknown`` when the top score is below ``min_score`` (``top`` stays)."""
    if min_score is not None and decided["score"] < min_score:
        return {**decided, "label": UNKNOWN}
    return decided


def coverage_table(probs: np.ndarray, targets: np.ndarray,
                   min_scores: Sequence[float] = COVERAGE_SCORES) -> list[dict[str, Any]]:
    """For each S: the share of files whose top score is >= S (covered, not ``unknown``) and the
    top-1 accuracy on those (NaN when none is covered)."""
    confidence, correct = probs.max(1), probs.argmax(1) == targets
    rows = []
    for s in sorted(set(min_scores)):
        covered = confidence >= s
        rows.append({"min_score": s, "coverage": round(float(covered.mean()), 5) if len(targets) else 0.0,
                     "accuracy": round(float(correct[covered].mean()), 5) if covered.any() else float("nan"),
                     "files": int(covered.sum())})
    return rows
