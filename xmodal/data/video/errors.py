"""Checks before native code sees a file, and decoder errors as one short line."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from xmodal.errors import VideoDecodeError, missing_reason

# decord prefixes its messages with "[HH:MM:SS] /src/file.cc:LINE: ", which would make the
# recorded reason differ from run to run.
_DECORD_LOG_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ")
# ...and its failed assertions with the C++ expression: "Check failed: f(&x, ...) >= 0 (-22 vs. 0)
# Cannot create buffer source"; the words after it are the reason.
_DECORD_CHECK = re.compile(r"Check failed: .*? \(-?\d+ vs\. -?\d+\)\s*")


def check_path(path: Path) -> None:
    """Reject what no decoder can read before handing it to native code (decord can abort)."""
    if not path.exists():
        raise VideoDecodeError(path, missing_reason(path))
    if path.is_dir():
        raise VideoDecodeError(path, "is a directory, not a video file")
    if not os.access(path, os.R_OK):
        raise VideoDecodeError(path, "permission denied")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")


def one_line(exc: BaseException, path: Path | None = None) -> str:
    """An exception as a short single line, without the path the caller already prints."""
    text = getattr(exc, "strerror", None) or str(exc)  # FFmpeg errors: drop "[Errno N]" and path
    if path is not None:
        text = text.replace(f"'{path}'", "").replace(str(path), "")
    text = _DECORD_CHECK.sub("", _DECORD_LOG_PREFIX.sub("", text))
    text = " ".join(text.split()).strip(" :.") or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """decord's C++ logs every failure to fd 2 itself ("[12:00:00] video_reader.cc:86: ERROR
    ..."), around our one-line message; the reason still reaches the user, once, through the
    exception. XMODAL_DEBUG=1 keeps them, with the tracebacks."""
    saved = None
    if not os.environ.get("XMODAL_DEBUG"):
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to silence
            saved = None
    if saved is None:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
