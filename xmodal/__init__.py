"""xmodal: classify videos and still images with one fine-tuned 2D CNN.

``xmodal.load(MODEL).predict(["clip.mp4", "photo.jpg"])`` is the Python API and
``xmodal.sample_frames("clip.mp4")`` shows the frames a model sees; heavy modules are
imported on first use so that ``import xmodal`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load", "load_embedder", "Predictor", "sample_frames"]


def __getattr__(name: str) -> Any:
    if name in ("load", "Predictor"):
        from xmodal.engine import predict

        return getattr(predict, name)
    if name == "load_embedder":
        from xmodal.engine.embed import load_embedder

        return load_embedder
    if name == "sample_frames":
        from xmodal.data.video import sample_frames

        return sample_frames
    raise AttributeError(f"module 'xmodal' has no attribute {name!r}")
