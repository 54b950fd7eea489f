from __future__ import annotations

from pathlib import Path

import pytest

from xmodal.cache import cache_root
from xmodal.deploy.cache import cache_entry
from xmodal.engine.features import cache_dir


def test_one_root_for_every_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX exports and linear-probe features live under the same $XMODAL_CACHE (the feature
    cache once read only $XMODAL_CACHE_DIR, so setting the documented variable missed it)."""
    monkeypatch.delenv("XMODAL_CACHE_DIR", raising=False)
    monkeypatch.setenv("XMODAL_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert cache_dir() == tmp_path / "c" / "features"
    assert cache_entry(b"{}").parent == tmp_path / "c" / "onnx"
    monkeypatch.setenv("XMODAL_CACHE_DIR", str(tmp_path / "old"))  # the older name still works
    assert cache_dir() == tmp_path / "old" / "features"


def test_the_default_root_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XMODAL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "xmodal"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "xmodal"
