"""xmodal: classify videos and still images with one fine-tuned 2D CNN."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
