"""Clip-level prediction tables from a labelling output.

``xmodal label --window W --stride S`` writes one record per file with its
windows under ``clips``; these functions flatten that into the CSV tables
users load into spreadsheets and timeline tools. File names that are not UTF-8
are written as their own bytes, as in label's CSV (see ``xmodal.names``).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from xmodal.engine.output import csv_text, safe_cell
from xmodal.errors import InputError, missing_reason
from xmodal.names import from_bytes, to_bytes

CLIP_COLUMNS = ["path", "start_s", "end_s", "label", "score"]
SUMMARY_COLUMNS = ["path", "label", "score", "kind", "duration_s", "num_clips", "majority_clip_label",
                   "error"]


def read_records(path: str | Path,
                 on_torn_line: Callable[[str], None] | None = None) -> Iterator[dict[str, Any]]:
    """Records of a labelling JSONL. A torn last line (a run killed mid-write) is ignored, and
    named to ``on_torn_line`` if given; any other line that is not a record is an error."""
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        raise InputError(path, "expected the .jsonl output of `xmodal label`")
    try:
        text = from_bytes(path.read_bytes())
    except FileNotFoundError:
        raise InputError(path, missing_reason(path)) from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, not the .jsonl output of `xmodal label`") from None
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    lines = text.split("\n")  # "\n" only: splitlines() also splits at a U+2028 in a file name
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):  # no "\n" after it: interrupted mid-write
                if on_torn_line is not None:
                    on_torn_line(f"{path}: line {number} is cut off (an interrupted run?); ignored")
                return  # the labeller will redo this file
            raise InputError(path, f"line {number} is not valid JSON") from None
        if not isinstance(record, dict) or "path" not in record:
            raise InputError(path, f"line {number} is not a labelling record")
        yield record


def clip_rows(records: Iterable[dict[str, Any]]) -> Iterator[list[Any]]:
    """One row per window; a file labelled without windows is one clip spanning it."""
    for r in records:
        if "error" in r:
            continue
        clips = r.get("clips") or [{"start_s": 0.0 if r.get("duration_s") is not None else "",
                                    "end_s": r.get("duration_s") if r.get("duration_s") is not None
                                    else "", "label": r["label"], "score": r["score"]}]
        for c in clips:
            yield [safe_cell(r["path"]), c["start_s"], c["end_s"], safe_cell(c["label"]),
                   f"{c['score']:.6f}"]


def summary_rows(records: Iterable[dict[str, Any]]) -> Iterator[list[Any]]:
    for r in records:
        if "error" in r:
            yield [safe_cell(r["path"]), "", "", "", "", 0, "", safe_cell(r["error"])]
            continue
        clips = r.get("clips") or []
        majority = collections.Counter(c["label"] for c in clips).most_common(1)
        yield [safe_cell(r["path"]), safe_cell(r["label"]), f"{r['score']:.6f}", r.get("kind", ""),
               "" if r.get("duration_s") is None else r["duration_s"], len(clips),
               safe_cell(majority[0][0]) if majority else "", ""]


def write_table(path: str | Path, header: list[str], rows: Iterable[list[Any]]) -> int:
    """Write a CSV atomically; returns the number of data rows."""
    from xmodal.checkpoint import atomic_write_bytes

    rows = list(rows)
    atomic_write_bytes(Path(path), to_bytes(csv_text([header, *rows])))
    return len(rows)
