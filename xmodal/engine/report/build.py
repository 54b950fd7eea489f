"""``xmodal report``: a static HTML report of a labelling run, opened from disk without a server.

The folder holds ``index.html``, ``report.js``, ``report.css`` (no library, nothing fetched from
the network), ``data.js`` (the records, trimmed to what the page shows; loaded with a script
tag because browsers refuse ``fetch`` on ``file://``) and ``thumbs/`` (one small JPEG strip per
file, of the frames the model saw). The page lists a page of files at a time and lazy-loads
their thumbnails, so 10,000 files open as fast as 50.
"""

from __future__ import annotations

import datetime
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from xmodal.engine.export import read_records
from xmodal.engine.report.thumbnails import HEIGHT, ThumbnailRequest, make_strips, request_for
from xmodal.engine.report.truth import GroundTruth, confusion
from xmodal.engine.reporting import Reporter
from xmodal.engine.segments import record_segments
from xmodal.errors import InputError
from xmodal.names import display

ASSETS = ("index.html", "report.js", "report.css")
PAGE_SIZE = 50


@dataclass
class ReportSummary:
    out: Path
    files: int
    failed: int  # records of files that failed to label
    thumbnails: int  # files shown with a thumbnail strip
    thumbnail_errors: list[tuple[str, str]]  # (path, reason) of files whose frames could not be read
    accuracy: float | None


def build_report(predictions: str | os.PathLike[str], out: str | os.PathLike[str], *,
                 truth: GroundTruth | None = None, thumbnails: bool = True, workers: int = 2,
                 timeout_s: float = 60.0, page_size: int = PAGE_SIZE,
                 reporter: Reporter | None = None) -> ReportSummary:
    """Write the report of a labelling JSONL into folder ``out``.

    Raises InputError for a missing or malformed predictions file; a file that can no longer be
    decoded is shown with the reason instead of its thumbnails.
    """
    reporter = reporter or Reporter()
    records = list(read_records(predictions, on_torn_line=reporter.warning))
    if not records:
        raise InputError(predictions, "holds no records")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    thumbs = _thumbnails(records, out / "thumbs", workers, timeout_s, reporter) if thumbnails else {}
    truths = [truth.label_of(r["path"]) for r in records] if truth else [None] * len(records)
    entries = [_entry(r, g, thumbs.get(i)) for i, (r, g) in enumerate(zip(records, truths, strict=True))]
    payload = _payload(records, entries, predictions, truth, truths, page_size)
    _write(out, payload)
    errors = [(r["path"], thumbs[i][1]) for i, r in enumerate(records) if i in thumbs and thumbs[i][1]]
    return ReportSummary(out, len(records), payload["counts"]["error"],
                         sum(1 for value in thumbs.values() if value[0]), errors,
                         payload["truth"]["accuracy"] if payload["truth"] else None)


def _thumbnails(records: Sequence[dict[str, Any]], folder: Path, workers: int, timeout_s: float,
                reporter: Reporter) -> dict[int, tuple[str | None, str | None]]:
    """Record index -> (strip file relative to the report, or None; the reason it is missing)."""
    requests: dict[int, ThumbnailRequest] = {}
    result: dict[int, tuple[str | None, str | None]] = {}
    for i, r in enumerate(records):
        if "error" in r:
            continue
        try:
            requests[i] = request_for(r, HEIGHT)
        except InputError as exc:
            result[i] = (None, exc.reason)
    failures = dict(make_strips(list(requests.values()), folder, workers=workers, timeout_s=timeout_s,
                                reporter=reporter))
    for i, request in requests.items():
        error = failures.get(request.name)
        result[i] = (None, error) if error else (f"thumbs/{request.name}", None)
    return result


def _entry(r: dict[str, Any], truth: str | None,
           thumb: tuple[str | None, str | None] | None) -> dict[str, Any]:
    """A record as the page needs it (short keys: 10,000 of them are loaded at once)."""
    path = r["path"]
    e: dict[str, Any] = {"p": display(path), "u": Path(os.path.abspath(path)).as_uri()}
    if "error" in r:
        e.update(k="error", e=display(r["error"]))
    else:
        e.update(k=r.get("kind", ""), l=display(r["label"]), s=r["score"],
                 top=[[display(t["label"]), t["score"]] for t in r.get("top") or ()])
        if r.get("sampled_s"):
            e["t"] = r["sampled_s"]
        if r.get("duration_s"):
            e["d"] = r["duration_s"]
        if r.get("clips") and r.get("duration_s") and r.get("frames"):
            e["c"] = _timeline(r)
    if truth is not None:
        e["g"] = display(truth)
    if thumb is not None:
        if thumb[0]:
            e["th"] = thumb[0]
        else:
            e["te"] = display(thumb[1] or "")
    return e


def _timeline(r: dict[str, Any]) -> list[list[Any]]:
    """``[start_s, end_s, label, score, window_start_s, window_end_s]`` per segment of frames."""
    seconds_per_frame = r["duration_s"] / r["frames"]
    rows = []
    for s in record_segments(r):
        clip = r["clips"][s.window]
        rows.append([round(s.first * seconds_per_frame, 3), round((s.last + 1) * seconds_per_frame, 3),
                     display(clip["label"]), clip["score"], clip["start_s"], clip["end_s"]])
    return rows


def _payload(records: Sequence[dict[str, Any]], entries: list[dict[str, Any]], predictions: Any,
             truth: GroundTruth | None, truths: list[str | None], page_size: int) -> dict[str, Any]:
    kinds = Counter(e["k"] for e in entries)
    labels = Counter(e["l"] for e in entries if "l" in e)
    classes = sorted(set(labels) | {t for e in entries for t, _ in e.get("top", ())}
                     | {c[2] for e in entries for c in e.get("c", ())}
                     | {e["g"] for e in entries if "g" in e})
    payload: dict[str, Any] = {
        "title": f"xmodal report: {display(Path(predictions).name)}",
        "source": display(os.path.abspath(predictions)),
        "created": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "page_size": page_size, "classes": classes,
        "counts": {"video": kinds["video"], "image": kinds["image"], "error": kinds["error"],
                   "thumbnail_errors": sum("te" in e for e in entries)},
        "label_counts": sorted(labels.items(), key=lambda kv: (-kv[1], kv[0])),
        "files": entries, "truth": None}
    if truth is not None:
        preds = [None if "error" in r else display(r["label"]) for r in records]
        shown = [None if t is None else display(t) for t in truths]
        matrix = confusion(shown, preds)
        payload["truth"] = {**matrix, "source": display(truth.source), "eval": truth.eval_summary,
                            "without": sum(t is None for t in truths)}
    return payload


def _write(out: Path, payload: dict[str, Any]) -> None:
    from xmodal.checkpoint import atomic_write_text

    assets = resources.files("xmodal.engine.report") / "assets"
    for name in ASSETS:
        atomic_write_text(out / name, (assets / name).read_text(encoding="utf-8"))
    # ensure_ascii: the page's text is pure ASCII whatever the names. The JSON goes in a string
    # for JSON.parse, which reads 10,000 records 2-3x faster than the same object literal.
    data = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    literal = data.replace("\\", "\\\\").replace("'", "\\'")
    atomic_write_text(out / "data.js", f"window.XMODAL_REPORT = JSON.parse('{literal}');\n")
