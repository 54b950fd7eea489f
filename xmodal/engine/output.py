"""Formatting prediction records as a table, JSON lines or CSV.

CSV cells are escaped against spreadsheet formula injection: file and class
names are user data, and a cell starting with = + - @ would run as a formula.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any, TextIO

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """Prefix text that a spreadsheet would evaluate with a quote, as OWASP recommends."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False)


def csv_header(top_k: int) -> list[str]:
    cols = ["path", "label", "score"]
    for rank in range(2, top_k + 1):
        cols += [f"label_{rank}", f"score_{rank}"]
    return cols + ["sampled_s", "error"]


def csv_row(record: dict[str, Any], top_k: int) -> list[Any]:
    row: list[Any] = [record["path"]]
    top = record.get("top", [])
    for rank in range(top_k):
        if rank < len(top):
            row += [top[rank]["label"], f"{top[rank]['score']:.6f}"]
        else:
            row += ["", ""]
    row.append(" ".join(str(t) for t in record.get("sampled_s") or ()))
    row.append(record.get("error", ""))
    return [safe_cell(v) for v in row]


def write_csv_rows(stream: TextIO, rows: Iterable[list[Any]]) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerows(rows)


def table_line(record: dict[str, Any]) -> str:
    if "error" in record:
        return f"{record['path']}\tERROR: {record['error']}"
    top = "  ".join(f"{t['label']} ({t['score']:.3f})" for t in record["top"])
    return f"{record['path']}\t{top}"


def to_csv_text(records: Iterable[dict[str, Any]], top_k: int) -> str:
    buffer = io.StringIO()
    write_csv_rows(buffer, [csv_header(top_k)] + [csv_row(r, top_k) for r in records])
    return buffer.getvalue()
