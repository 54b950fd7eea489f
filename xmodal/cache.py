"""Where xmodal keeps what it can make again: ONNX exports of runs (``onnx/``), the frozen
encoder's features of linear probes (``features/``) and, while a run trains, its decoded
training frames (``frames/``)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$XMODAL_CACHE``, else ``$XDG_CACHE_HOME/xmodal``, else ``~/.cache/xmodal``."""
    if os.environ.get("XMODAL_CACHE"):
        return Path(os.environ["XMODAL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xmodal"
