"""File names as text: lossless in output files, safe on terminals, short in summaries.

A POSIX file name is bytes. Python decodes the bytes that are not UTF-8 (Latin-1 names from
old archives, camera cards, Windows shares) to lone surrogates, U+DC80-U+DCFF
(``os.fsdecode``'s surrogateescape), which a strict UTF-8 writer refuses. The rules:

- JSON escapes them (``"caf\\udce9.mp4"``): the file stays valid UTF-8, ``json.loads`` gives
  the name back and ``os.fsencode`` the original bytes.
- CSV cells hold the original bytes (``to_bytes``); read with ``from_bytes``, a cell gives
  the same name back. A CSV with such a name is therefore not valid UTF-8 as a whole.
- Terminals and logs get ``display``: each such byte as ``\\xNN``, for reading only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

_SURROGATE = re.compile("[\ud800-\udfff]")


def to_bytes(text: str) -> bytes:
    """UTF-8, with each surrogate-escaped byte of a file name written back as that byte."""
    return text.encode("utf-8", "surrogateescape")


def from_bytes(data: bytes) -> str:
    """The inverse of ``to_bytes``: bytes that are not UTF-8 become surrogate escapes."""
    return data.decode("utf-8", "surrogateescape")


def escape_surrogates(text: str) -> str:
    """Lone surrogates as JSON escapes (``\\udce9``); for JSON text made with ensure_ascii=False."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def display(text: str | os.PathLike[str]) -> str:
    """``text`` safe for any terminal or log: an undecodable byte of a name shows as ``\\xNN``."""
    text = os.fspath(text)
    return _SURROGATE.sub(lambda m: _shown(ord(m.group())), text)


def _shown(code: int) -> str:
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def name_list(paths: Sequence[str | os.PathLike[str]], limit: int = 5) -> str:
    """The first ``limit`` names, for display, and how many more there are."""
    shown = ", ".join(display(p) for p in paths[:limit])
    return shown + (f", ... and {len(paths) - limit} more" if len(paths) > limit else "")


def unsupported_message(paths: Sequence[str | os.PathLike[str]]) -> str:
    """One line naming the files a folder scan ignored because their type is not supported."""
    noun = "file" if len(paths) == 1 else "files"
    return (f"ignored {len(paths)} {noun} of unsupported type (not a video or image): "
            f"{name_list(paths)}")
