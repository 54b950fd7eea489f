"""Ground truth for a report: the class folder each labelled file lies in.

``--data DIR`` names the dataset root (``DIR/<class>/**/<file>``, as ``train`` and ``eval``
read it); ``--eval REPORT.json`` names it through the report's ``settings.data`` and adds the
accuracy that ``xmodal eval`` measured. A record's path is matched against the root as both
are given (relative paths from the current folder), so no file is opened.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xmodal.errors import DatasetError, InputError, missing_reason


@dataclass
class GroundTruth:
    """Files under ``root`` are of the class named by their first folder below it."""

    root: Path
    classes: list[str]
    source: str
    eval_summary: dict[str, Any] = field(default_factory=dict)

    def label_of(self, path: str) -> str | None:
        """The class folder ``path`` lies in, or None when it lies outside ``root``."""
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(self.root))
        parts = Path(rel).parts
        if len(parts) < 2 or parts[0] == os.pardir:
            return None
        return parts[0] if parts[0] in self.classes else None


def from_folder(root: str | os.PathLike[str]) -> GroundTruth:
    """Truth from a class-per-folder dataset root (its non-hidden sub-folders are the classes)."""
    root = Path(root)
    if not root.exists():
        raise InputError(root, missing_reason(root))
    if not root.is_dir():
        raise InputError(root, "is not a folder of class folders")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetError(root, "no class folders in it")
    return GroundTruth(root, classes, source=f"class folders of {root}")


def from_eval_report(path: str | os.PathLike[str]) -> GroundTruth:
    """Truth from the dataset an ``xmodal eval --out`` report was measured on, with its accuracy."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, missing_reason(path)) from None
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    except ValueError:
        raise InputError(path, "not a JSON file (expected the report.json of `xmodal eval --out`)") from None
    data = report.get("settings", {}).get("data") if isinstance(report, dict) else None
    if not isinstance(data, str) or not isinstance(report.get("classes"), list):
        raise InputError(path, "not an `xmodal eval` report (no settings.data or classes)")
    summary = {key: report[key] for key in ("video_level", "clip_level", "by_kind", "files")
               if key in report}
    summary["failed"] = len(report.get("failed") or [])
    return GroundTruth(Path(data), list(report["classes"]), source=f"{path} (data: {data})",
                       eval_summary=summary)


def confusion(truths: list[str | None], predictions: list[str | None]) -> dict[str, Any]:
    """Accuracy and the confusion matrix over the files that have both a truth and a prediction.

    Returns ``labels`` (rows: true, columns: predicted; every class that occurs), ``matrix``,
    ``accuracy``, ``count``, and per-class ``recall`` and ``support``.
    """
    pairs = [(t, p) for t, p in zip(truths, predictions, strict=True) if t is not None and p is not None]
    labels = sorted({t for t, _ in pairs} | {p for _, p in pairs})
    index = {name: i for i, name in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in pairs:
        matrix[index[t]][index[p]] += 1
    support = Counter(t for t, _ in pairs)
    correct = sum(t == p for t, p in pairs)
    return {"labels": labels, "matrix": matrix, "count": len(pairs),
            "accuracy": round(correct / len(pairs), 5) if pairs else None,
            "recall": {name: round(matrix[index[name]][index[name]] / support[name], 5)
                       for name in labels if support[name]},
            "support": {name: support[name] for name in labels if support[name]}}
