"""Frames as a player shows them: the display matrix applied, pixels made square, then shrunk.

Phones store portrait video as landscape frames plus a display matrix (rotations, and mirrors
from front cameras and editors); DVDs, DV and broadcast captures store 720x480 or 720x576 frames
of non-square pixels (sample aspect ratio). A classifier must see the picture a viewer sees, as
EXIF orientation is applied to photos.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Orientation:
    """One of the eight axis-aligned display transforms: transpose, then mirror x and/or y."""

    transpose: bool = False
    flip_x: bool = False
    flip_y: bool = False

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.flip_x or self.flip_y)

    @classmethod
    def from_display_matrix(cls, matrix: Sequence[int]) -> Orientation:
        """The transform of FFmpeg's 3x3 display matrix ``[a, b, u, c, d, v, x, y, w]``.

        The matrix maps a stored pixel (p, q) to the shown one, p' = a p + c q (+ x) and
        q' = b p + d q (+ y) (libavutil/display.h; ISO/IEC 14496-12 ``tkhd``); a mirror is a
        negative determinant. Other angles than quarter turns snap to the nearest one. This
        agrees with the ffmpeg CLI's autorotate (transpose/hflip/vflip filters, FFmpeg >= 7).
        """
        a, b, _, c, d, *_ = (float(v) for v in matrix)
        if abs(a) + abs(d) >= abs(b) + abs(c):  # (nearly) diagonal: no quarter turn
            if abs(b) + abs(c) > 1e-3 * (abs(a) + abs(d)):
                log.info("display matrix rotates by %.1f degrees: snapped to a quarter turn",
                         math.degrees(math.atan2(b, a)))
            return cls(False, a < 0, d < 0)
        # p' comes from q and q' from p: a transpose, with mirrors by the signs of c and b.
        return cls(True, c < 0, b < 0)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, C) stored frame -> the shown frame (a view where numpy allows)."""
        if self.transpose:
            frame = frame.transpose(1, 0, 2)
        if self.flip_x:
            frame = frame[:, ::-1]
        if self.flip_y:
            frame = frame[::-1]
        return frame

    def shown_size(self, width: int, height: int) -> tuple[int, int]:
        return (height, width) if self.transpose else (width, height)


IDENTITY = Orientation()


def square_pixel_size(width: int, height: int, sar: Fraction | None) -> tuple[int, int]:
    """(width, height) with square pixels: the width scaled by the sample aspect ratio, as
    players do (720x480 at 32:27 shows as 853x480); an unknown or 1:1 ratio changes nothing."""
    if not sar or sar <= 0 or sar == 1:
        return width, height
    return max(1, round(width * sar)), height


def output_size(width: int, height: int, sar: Fraction | None, orientation: Orientation,
                short_side: int | None) -> tuple[int, int]:
    """(width, height) of a stored ``width`` x ``height`` frame once shown and shrunk."""
    # The stretch belongs to the stored x axis (which a transpose turns into y).
    shown = orientation.shown_size(*square_pixel_size(width, height, sar))
    return _shrunk(*shown, short_side)


def _shrunk(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    if short_side is None or min(width, height) <= short_side:
        return width, height
    from xmodal.data.transforms import shorter_side_shape

    new_h, new_w = shorter_side_shape(height, width, short_side)
    return new_w, new_h


def to_display(frame: np.ndarray, sar: Fraction | None, orientation: Orientation,
               short_side: int | None) -> np.ndarray:
    """(H, W, 3) stored frame -> (H', W', 3) as shown: turned, square pixels, then shrunk.

    Shrinking (``short_side``) is torchvision's ``Resize(short_side, antialias=True)``,
    pixel-equal, done as the frame is decoded so a stack of full-size frames never exists;
    frames already that small are only made square. Square-pixel stretching and shrinking are
    one antialiased resize.
    """
    height, width = frame.shape[:2]
    target_w, target_h = output_size(width, height, sar, orientation, short_side)
    shown = orientation.apply(frame)
    if (target_h, target_w) == shown.shape[:2]:
        return shown if shown is frame else np.ascontiguousarray(shown)
    return _resize(shown, target_h, target_w)


def _resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased bilinear resize of an (H, W, 3) uint8 frame, as torchvision's Resize does."""
    import torch

    from xmodal.data.transforms import resize_to

    chw = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)
    return resize_to(chw, height, width).permute(1, 2, 0).numpy()
