"""File names as text: every name the OS can give survives JSON and CSV, and prints anywhere."""

from __future__ import annotations

import csv
import io
import json
import os

from hypothesis import example, given
from hypothesis import strategies as st

from xmodal.engine.output import csv_text, json_line, safe_cell, unsafe_cell
from xmodal.names import display, from_bytes, name_list, to_bytes, unsupported_message

# A POSIX file name: any bytes but "/" and NUL.
names = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b)
LATIN1 = os.fsdecode(b"caf\xe9.mp4")


@given(names)
@example(b"caf\xe9.mp4")
@example("vid\u2028eo\x85.mp4".encode())  # line separators that str.splitlines() splits at
def test_json_line_is_utf8_and_gives_the_bytes_back(name: bytes) -> None:
    line = json_line({"path": os.fsdecode(name)})
    line.encode("utf-8")  # strict: valid UTF-8 for every consumer
    assert "\n" not in line
    assert os.fsencode(json.loads(line)["path"]) == name


@given(names)
@example(b"'=caf\xe9.mp4")
@example(b"=1+1.mp4")
@example(b"''=x")
@example(b"a\r\nb\"c,d.jpg")
def test_csv_cell_gives_the_bytes_back(name: bytes) -> None:
    """Written as the file name's own bytes, read back the same way: os.fsencode is the name."""
    data = to_bytes(csv_text([[safe_cell(os.fsdecode(name)), "label"]]))
    assert data.endswith(b",label\n")
    (cell, label), = csv.reader(io.StringIO(from_bytes(data)))
    assert os.fsencode(unsafe_cell(cell)) == name and label == "label"


def test_csv_cell_holds_the_original_bytes() -> None:
    assert to_bytes(LATIN1) == b"caf\xe9.mp4"


def test_spreadsheet_formulas_stay_escaped() -> None:
    assert safe_cell("=cmd") == "'=cmd" and safe_cell("'=cmd") == "''=cmd"
    assert safe_cell("'quoted") == "'quoted" and safe_cell("plain") == "plain"


@given(st.text())
def test_display_always_encodes(text: str) -> None:
    display(text).encode("utf-8")


def test_display_shows_undecodable_bytes_as_escapes() -> None:
    assert display(LATIN1) == "caf\\xe9.mp4"
    assert display("vidéo 東京.mp4") == "vidéo 東京.mp4"


def test_name_list_names_the_first_few_and_counts_the_rest() -> None:
    paths = [f"d/{i}.xyz" for i in range(7)]
    assert name_list(paths) == "d/0.xyz, d/1.xyz, d/2.xyz, d/3.xyz, d/4.xyz, ... and 2 more"
    assert unsupported_message(paths[:1]) == ("ignored 1 file of unsupported type "
                                              "(not a video or image): d/0.xyz")
