"""Videos assembled from shots with known boundaries: hard cuts, cross-dissolves, fades through black.

Each shot pans slowly across one photo (scikit-image's, shipped with the package), so frames
change inside a shot too, as in real footage. ``assemble`` returns where each boundary is:
the first frame of the new shot for a cut; the middle frame of a gradual transition, with the
frames the transition spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
          "retina", "camera", "coins", "moon", "page", "text")


@dataclass(frozen=True)
class Boundary:
    frame: int  # the first frame of the new shot (a cut), or the middle of a transition
    first: int  # the frames the transition spans, first to last (first == frame for a cut)
    last: int
    kind: str  # "cut", "dissolve" or "fade"


@dataclass(frozen=True)
class Shot:
    photo: str
    frames: int
    transition: str = "cut"  # into this shot from the one before: cut, dissolve or fade
    length: int = 0  # frames of a gradual transition


def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image.astype(np.uint8)


def _pan(photo: np.ndarray, frames: int, size: tuple[int, int], rng: np.random.Generator) -> list[np.ndarray]:
    """``frames`` views of a 16:9 window gliding across ``photo``, resized to ``size`` (w, h)."""
    from PIL import Image

    h, w = photo.shape[:2]
    win_h = int(min(h, w * 9 / 16) * 0.7)
    win_w = int(win_h * 16 / 9)
    start = rng.integers(0, [h - win_h + 1, w - win_w + 1])
    end = rng.integers(0, [h - win_h + 1, w - win_w + 1])
    out = []
    for k in range(frames):
        top, left = (start + (end - start) * k / max(1, frames - 1)).astype(int)
        crop = photo[top:top + win_h, left:left + win_w]
        out.append(np.asarray(Image.fromarray(crop).resize(size, Image.BILINEAR)))
    return out


def assemble(path: str | Path, shots: Sequence[Shot], *, fps: int = 25, size: tuple[int, int] = (320, 180),
             seed: int = 0, codec: str = "libx264") -> list[Boundary]:
    """Write the shots as one video and return the boundaries between them, in order."""
    from tests.utils import write_video

    rng = np.random.default_rng(seed)
    frames: list[np.ndarray] = []
    boundaries: list[Boundary] = []
    for i, shot in enumerate(shots):
        own = _pan(_photo(shot.photo), shot.frames, size, rng)
        if i == 0 or shot.transition == "cut":
            if i:
                boundaries.append(Boundary(len(frames), len(frames), len(frames), "cut"))
            frames += own
        elif shot.transition == "dissolve":  # the last L frames of A blend into the first L of B
            n = shot.length
            start = len(frames) - n
            for k in range(n):
                alpha = (k + 1) / (n + 1)
                mixed = (1 - alpha) * frames[start + k] + alpha * own[k]
                frames[start + k] = np.round(mixed).astype(np.uint8)
            frames += own[n:]
            boundaries.append(Boundary(start + n // 2, start, start + n - 1, "dissolve"))
        elif shot.transition == "fade":  # A fades to black over L/2 frames, B fades in over L/2
            half = shot.length // 2
            start = len(frames) - half
            for k in range(half):
                frames[start + k] = np.round(frames[start + k] * (1 - (k + 1) / half)).astype(np.uint8)
            for k in range(half):
                own[k] = np.round(own[k] * ((k + 1) / (half + 1))).astype(np.uint8)
            frames += own
            boundaries.append(Boundary(start + half, start, start + 2 * half - 1, "fade"))
        else:
            raise ValueError(f"unknown transition {shot.transition!r}")
    write_video(path, frames=frames, size=size, fps=fps, codec=codec)
    return boundaries


def random_plan(rng: np.random.Generator, shots: int, fps: int = 25,
                kinds: Sequence[str] = ("cut", "cut", "dissolve", "fade")) -> list[Shot]:
    """``shots`` shots of 1.2-3 s, each entered by a transition drawn from ``kinds`` (gradual
    ones 0.4-1 s long), no photo twice in a row."""
    plan: list[Shot] = []
    previous = ""
    for i in range(shots):
        photo = str(rng.choice([p for p in PHOTOS if p != previous]))
        previous = photo
        frames = int(rng.integers(int(1.2 * fps), 3 * fps + 1))
        kind = "cut" if i == 0 else str(rng.choice(kinds))
        length = 0 if kind == "cut" else int(rng.integers(int(0.4 * fps), fps + 1)) // 2 * 2
        plan.append(Shot(photo, frames, kind, length))
    return plan
