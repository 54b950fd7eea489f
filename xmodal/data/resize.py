"""Torch-free frame resizing and cropping (Pillow and NumPy), for the ONNX Runtime path.

``xmodal.data.transforms`` resizes with torch, which the ONNX Runtime path must not import
(``import torch`` is most of a cold start). Pillow's ``BILINEAR`` resize with
``reducing_gap=None`` is the antialiased triangle filter that torch's ``antialias=True``
was ported from: on natural and random frames it is within 1 grey level of torch's result
on under 0.4% of the pixels, identical elsewhere (tests/data/test_resize.py measures it).
"""

from __future__ import annotations

import numpy as np


def shorter_side_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) after torchvision's ``Resize(size)``: shorter side ``size``, aspect kept
    (the longer side rounded down, as torchvision does)."""
    if size < 1:
        raise ValueError(f"resize size must be >= 1, got {size}")
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """One (H, W, 3) uint8 RGB frame resized to (height, width, 3) with antialiased bilinear
    filtering (Pillow's, the reference of torch's ``antialias=True``). Same size: returned as is."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
    if frame.shape[:2] == (height, width):
        return frame
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(frame))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=None))


def resize_shorter_side(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 frame with its shorter side resized to ``size``, aspect kept."""
    return resize(frame, *shorter_side_shape(frame.shape[0], frame.shape[1], size))


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """torchvision's ``CenterCrop(size)`` for (..., H, W, 3) frames at least ``size`` on each side."""
    height, width = frames.shape[-3:-1]
    if height < size or width < size:
        raise ValueError(f"cannot centre-crop {size}x{size} from {height}x{width}")
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return frames[..., top:top + size, left:left + size, :]


def zoom_out(frame: np.ndarray, scale: float) -> np.ndarray:
    """An (H, W, 3) uint8 frame centred on a canvas of (round(H / scale), round(W / scale))
    filled with the per-channel median of its 1-px border: the picture at ``scale`` of the new
    frame's sides, its backdrop extended. ``scale`` in (0, 1]; 1 returns the frame as is. The
    canvas is 1 / scale^2 times the frame's pixels: shrink a large photo first.

    Shows a photo as a video frame shows its object: smaller, with surroundings. Like
    torchvision's ``RandomZoomOut`` (SSD's "zoom out", Liu et al., 2016) with a fixed scale,
    centred, and the border's colour as the fill, so a studio backdrop or a scan's paper stays
    seamless; a photo whose border varies gets a plain frame of about its border's colour.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
    if not 0 < scale <= 1:
        raise ValueError(f"zoom-out scale must be in (0, 1], got {scale}")
    height, width = frame.shape[:2]
    new_h, new_w = round(height / scale), round(width / scale)
    if (new_h, new_w) == (height, width):
        return frame
    border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])
    canvas = np.empty((new_h, new_w, 3), np.uint8)
    canvas[:] = np.median(border, axis=0).round().astype(np.uint8)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    canvas[top:top + height, left:left + width] = frame
    return canvas
