"""``xmodal eval``: accuracy, per-class metrics and a confusion matrix on a labelled folder.

Video-level scores average the softmax over ``clips x crops`` views per file
(TSN-style multi-view testing); clip-level accuracy scores every view alone,
so the two are reported side by side. Mixed data is also reported by kind.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.engine.calibration import (
    COVERAGE_SCORES,
    ECE_BINS,
    coverage_table,
    expected_calibration_error,
    temperature_of,
    temperature_scaled,
)
from xmodal.engine.predict import Predictor
from xmodal.engine.reporting import Reporter
from xmodal.errors import DatasetError
from xmodal.names import display


@dataclass
class EvalReport:
    classes: list[str]
    files: int
    failed: list[dict[str, str]]
    video_level: dict[str, Any]
    clip_level: dict[str, Any]
    by_kind: dict[str, dict[str, Any]]
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    settings: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)  # ECE before / after temperature
    coverage: list[dict[str, Any]] = field(default_factory=list)  # --min-score S: coverage, accuracy

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _accuracy(probs: np.ndarray, targets: np.ndarray, k: int) -> float:
    if len(targets) == 0:
        return float("nan")
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1)[:, :k]
    return float((top == targets[:, None]).any(axis=1).mean())


def confusion_matrix(targets: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (targets, preds), 1)
    return matrix


def per_class_metrics(matrix: np.ndarray, classes: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall and one-vs-rest accuracy for each class (NaN-free: 0 when undefined)."""
    total = matrix.sum()
    out = {}
    for i, name in enumerate(classes):
        tp = matrix[i, i]
        fp = matrix[:, i].sum() - tp
        fn = matrix[i, :].sum() - tp
        tn = total - tp - fp - fn
        out[name] = {"precision": round(float(tp / (tp + fp)) if tp + fp else 0.0, 5),
                     "recall": round(float(tp / (tp + fn)) if tp + fn else 0.0, 5),
                     "accuracy": round(float((tp + tn) / total) if total else 0.0, 5),
                     "support": int(matrix[i, :].sum())}
    return out


@dataclass
class MultiLabelReport:
    """``eval`` of a multi-label model: mAP, per-class AP (and precision / recall at the
    model's thresholds), example-based F1."""

    classes: list[str]
    files: int
    failed: list[dict[str, str]]
    map: float | None
    example_f1: float
    per_class: dict[str, dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def evaluate_folder(predictor: Predictor, data: str | Path | None, *, modality: str = "mixed",
                    reporter: Reporter | None = None, csv: str | Path | None = None
                    ) -> EvalReport | MultiLabelReport:
    """Score every file of a class-per-folder dataset (or of a ``path,label`` CSV; ``a|b`` for
    several labels); undecodable files are listed, not counted.

    Scores are calibrated (each model's temperature); the report gives the ECE before and after,
    and coverage and accuracy for a range of --min-score values (and ``predictor.min_score``).
    A multi-label model gets a ``MultiLabelReport``.
    """
    reporter = reporter or Reporter()
    samples, data_classes = _labelled_files(predictor, data, csv, modality, reporter)
    source = csv if csv is not None else data
    classes = predictor.classes
    unknown = sorted(set(data_classes) - set(classes))
    if unknown:
        raise DatasetError(source, f"class(es) the model does not know: {', '.join(unknown[:5])}")
    remap = [classes.index(c) for c in data_classes]
    if predictor.thresholds is not None:
        return _evaluate_multi_label(predictor, samples, remap, source, reporter)
    file_probs, targets, kinds, view_probs, view_targets, failed = [], [], [], [], [], []
    undo = _uncalibration(predictor)
    raw_probs = []
    for index, probs, info, error in _score(predictor, [str(s.path) for s in samples], reporter):
        sample = samples[index]
        if probs is None:
            failed.append({"path": str(sample.path), "error": error})
            continue
        views = np.asarray(probs[:info.get("n_avg", 1)])
        file_probs.append(views.mean(0))
        if undo is not None:
            raw_probs.append(temperature_scaled(views, undo).mean(0))
        targets.append(remap[sample.label])
        kinds.append(sample.kind)
        view_probs.extend(views)
        view_targets.extend([remap[sample.label]] * len(views))
    if not file_probs:
        raise DatasetError(source, f"no file could be decoded ({len(failed)} failed)")
    P, y = np.stack(file_probs), np.asarray(targets)
    matrix = confusion_matrix(y, P.argmax(1), len(classes))
    kinds_arr = np.asarray(kinds)
    by_kind = {kind: _summary(P[kinds_arr == kind], y[kinds_arr == kind])
               for kind in sorted(set(kinds))}
    extra = [predictor.min_score] if predictor.min_score is not None else []
    return EvalReport(
        classes=classes, files=len(samples), failed=failed,
        video_level=_summary(P, y), clip_level=_summary(np.stack(view_probs), np.asarray(view_targets)),
        by_kind=by_kind, per_class=per_class_metrics(matrix, classes), confusion=matrix.tolist(),
        settings={"model": predictor.name, "data": str(source), "clips": predictor.reader.clips,
                  "crops": predictor.reader.crops, "frames": predictor.reader.frames,
                  "still_scale": predictor.reader.still_scale, "min_score": predictor.min_score},
        calibration=_calibration(predictor, P, np.stack(raw_probs) if raw_probs else None, y),
        coverage=coverage_table(P, y, [*COVERAGE_SCORES, *extra]))


def _labelled_files(predictor: Predictor, data: str | Path | None, csv: str | Path | None,
                    modality: str, reporter: Reporter) -> tuple[list[Any], list[str]]:
    """The samples and their class names, from a class-per-folder dataset or a CSV."""
    from xmodal.data.samples import read_csv, scan_folder
    from xmodal.engine import distributed

    multi_label = predictor.thresholds is not None
    if csv is not None:
        samples, names = read_csv(csv, modality, multi_label=multi_label)
    elif data is not None:
        # Every rank scans the folder; only the first names the files passed over.
        warn = reporter.warning if distributed.env_info().is_main else _ignore
        samples, names = scan_folder(data, modality, warn)
    else:
        raise DatasetError(None, "nothing to evaluate on: pass --data DIR or --csv FILE")
    if multi_label and samples and isinstance(samples[0].label, int):
        samples = [dataclasses.replace(s, label=(s.label,)) for s in samples]
    return samples, names


def _evaluate_multi_label(predictor: Predictor, samples: list[Any], remap: list[int],
                          source: str | Path | None, reporter: Reporter) -> MultiLabelReport:
    from xmodal.engine.multilabel import multi_label_metrics

    scores, truth, failed = [], [], []
    for index, probs, info, error in _score(predictor, [str(s.path) for s in samples], reporter):
        sample = samples[index]
        if probs is None:
            failed.append({"path": str(sample.path), "error": error})
            continue
        scores.append(np.asarray(probs[:info.get("n_avg", 1)]).mean(0))
        row = np.zeros(len(predictor.classes), dtype=bool)
        row[[remap[k] for k in sample.label]] = True
        truth.append(row)
    if not scores:
        raise DatasetError(source, f"no file could be decoded ({len(failed)} failed)")
    assert predictor.thresholds is not None
    metrics = multi_label_metrics(np.stack(scores), np.stack(truth), predictor.classes,
                                  predictor.thresholds)
    return MultiLabelReport(classes=predictor.classes, files=len(samples), failed=failed,
                            map=metrics["map"], example_f1=metrics["example_f1"],
                            per_class=metrics["per_class"],
                            settings={"model": predictor.name, "data": str(source),
                                      "clips": predictor.reader.clips,
                                      "crops": predictor.reader.crops,
                                      "frames": predictor.reader.frames,
                                      "still_scale": predictor.reader.still_scale})


def _uncalibration(predictor: Predictor) -> float | None:
    """The temperature that undoes the model's (1 / T), so one pass gives the scores before
    calibration too; None for fused models (each has its own T, and only the mean comes back)."""
    if len(predictor.models) != 1:
        return None
    return 1.0 / temperature_of(predictor.models[0].meta)


def _calibration(predictor: Predictor, probs: np.ndarray, raw: np.ndarray | None,
                 targets: np.ndarray) -> dict[str, Any]:
    temperatures = [temperature_of(m.meta) for m in predictor.models]
    return {"temperature": temperatures[0] if len(temperatures) == 1 else temperatures,
            "ece": round(expected_calibration_error(probs, targets), 5),
            "ece_uncalibrated": (round(expected_calibration_error(raw, targets), 5)
                                 if raw is not None else None),
            "bins": ECE_BINS}


def _ignore(message: str) -> None:
    """A warning some other process gives."""


def _score(predictor: Predictor, items: list[str], reporter: Reporter | None) -> list[tuple]:
    """Per-file results in file order; under torchrun each rank scores every world_size-th file."""
    from xmodal.engine import distributed

    info = distributed.env_info()
    mine = list(range(info.rank, len(items), info.world_size))
    results = [(mine[i], probs, meta, error) for i, probs, meta, error
               in predictor.iter_probabilities([items[j] for j in mine], reporter)]
    gathered = [r for part in distributed.gather_objects(results) for r in part]
    return sorted(gathered, key=lambda r: r[0])


def _summary(probs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    return {"top1": round(_accuracy(probs, targets, 1), 5), "top5": round(_accuracy(probs, targets, 5), 5),
            "count": int(len(targets))}


def save_report(report: EvalReport | MultiLabelReport, out_dir: str | Path) -> tuple[Path, ...]:
    """Write ``report.json`` and (single-label) ``confusion_matrix.png`` atomically into ``out_dir``."""
    from xmodal.checkpoint import atomic_write_bytes, atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    atomic_write_text(json_path, json.dumps(report.to_dict(), indent=2))
    if isinstance(report, MultiLabelReport):
        return (json_path,)
    png_path = out_dir / "confusion_matrix.png"
    atomic_write_bytes(png_path, render_confusion(np.asarray(report.confusion), report.classes))
    return json_path, png_path


def render_confusion(matrix: np.ndarray, classes: list[str]) -> bytes:
    """A PNG of the confusion matrix with class names on both axes and counts in the cells."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    size = min(30.0, max(4.0, 0.45 * n + 2.5))
    classes = [display(name) for name in classes]  # FreeType refuses undecodable bytes
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8 if n > 20 else 10)
    ax.set_yticks(range(n), classes, fontsize=8 if n > 20 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 40:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > threshold else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
