"""Formatting prediction records as a table, JSON lines or CSV.

CSV cells are escaped against spreadsheet formula injection: file and class
names are user data, and a cell starting with = + - @ would run as a formula.
File names that are not UTF-8 follow ``xmodal.names``: escaped in JSON, their own
bytes in CSV, ``\\xNN`` on a terminal.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from typing import Any, TextIO

from xmodal.names import display, escape_surrogates

# A formula start, after any quotes: "'=x" is quoted too, so that unsafe_cell can tell it from "=x".
LABEL_SEPARATOR = "|"  # between a multi-label record's labels, as in a training CSV's cell
_NEEDS_QUOTE = re.compile("'*[=+\\-@\t\r]")


def safe_cell(value: Any) -> Any:
    """Prefix text that a spreadsheet would evaluate with a quote, as OWASP recommends."""
    if isinstance(value, str) and _NEEDS_QUOTE.match(value):
        return "'" + value
    return value


def unsafe_cell(cell: str) -> str:
    """The value ``safe_cell`` was given: the inverse for every string."""
    return cell[1:] if cell.startswith("'") and _NEEDS_QUOTE.match(cell, 1) else cell


def json_line(record: dict[str, Any]) -> str:
    """One JSON object, UTF-8 as written; undecodable bytes of file names as \\udcXX escapes."""
    return escape_surrogates(json.dumps(record, ensure_ascii=False))


def csv_header(top_k: int, *, labels: bool = False) -> list[str]:
    """``labels``: a multi-label model's column of the classes above their thresholds."""
    cols = ["path", "label", "score"]
    for rank in range(2, top_k + 1):
        cols += [f"label_{rank}", f"score_{rank}"]
    return cols + ["sampled_s", "error"] + (["labels"] if labels else [])


def csv_row(record: dict[str, Any], top_k: int, *, labels: bool = False) -> list[Any]:
    row: list[Any] = [record["path"]]
    top = record.get("top", [])
    for rank in range(top_k):
        if rank < len(top):
            row += [top[rank]["label"], f"{top[rank]['score']:.6f}"]
        else:
            row += ["", ""]
    row.append(" ".join(str(t) for t in record.get("sampled_s") or ()))
    row.append(record.get("error", ""))
    if labels:
        row.append(LABEL_SEPARATOR.join(record.get("labels", [])))
    return [safe_cell(v) for v in row]


def csv_text(rows: Iterable[list[Any]]) -> str:
    """CSV rows, each ending in "\\n"; a cell holding "\\r" or "\\n" is quoted, so it reads back whole."""
    buffer = io.StringIO()
    # With "\r\n" as the terminator the writer quotes cells holding either character (with "\n"
    # alone it leaves a bare "\r" unquoted, which readers take for a line end); each row then
    # ends in "\n" like the rest of our files.
    writer = csv.writer(buffer, lineterminator="\r\n")
    lines = []
    for row in rows:
        writer.writerow(row)
        lines.append(buffer.getvalue()[:-2] + "\n")
        buffer.seek(0)
        buffer.truncate()
    return "".join(lines)


def write_csv_rows(stream: TextIO, rows: Iterable[list[Any]]) -> None:
    stream.write(csv_text(rows))


def table_line(record: dict[str, Any]) -> str:
    if "error" in record:
        return display(f"{record['path']}\tERROR: {record['error']}")
    top = "  ".join(f"{t['label']} ({t['score']:.3f})" for t in record["top"])
    if "labels" in record:  # a multi-label model: the classes above their thresholds first
        top = f"[{LABEL_SEPARATOR.join(record['labels'])}]  {top}"
    elif record["label"] != record["top"][0]["label"]:  # below --min-score
        top = f"[{record['label']}]  {top}"
    return display(f"{record['path']}\t{top}")


def to_csv_text(records: Iterable[dict[str, Any]], top_k: int, *, labels: bool = False) -> str:
    return csv_text([csv_header(top_k, labels=labels)] + [csv_row(r, top_k, labels=labels)
                                                          for r in records])
