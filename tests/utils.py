"""Helpers that write tiny real media files for tests (PyAV / Pillow)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def frame_pattern(index: int, height: int, width: int) -> np.ndarray:
    """A frame whose content encodes its index, so tests can tell frames apart after lossy coding."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    level = (index * 37) % 256
    frame[..., 0] = level
    frame[..., 1] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    frame[..., 2] = 255 - level
    # A bright bar whose horizontal position moves with the index.
    x = (index * 7) % max(1, width - 4)
    frame[:, x : x + 4, :] = 255
    return frame


def write_video(
    path: str | Path,
    num_frames: int = 16,
    *,
    size: tuple[int, int] = (64, 48),
    fps: int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    gop: int | None = None,
    frames: Sequence[np.ndarray] | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Encode ``num_frames`` pattern frames (or the given frames) with PyAV; size is (width, height)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = pix_fmt
        if gop is not None:
            stream.codec_context.gop_size = gop
        opts = dict(options or {})
        if codec == "libx264":
            opts.setdefault("preset", "ultrafast")
        stream.options = opts
        source = frames if frames is not None else [
            frame_pattern(i, height, width) for i in range(num_frames)
        ]
        for array in source:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_image(path: str | Path, array: np.ndarray | None = None, *, mode: str | None = None,
                size: tuple[int, int] = (40, 30)) -> Path:
    """Save an RGB array (or a pattern of ``size`` = (width, height)), optionally converted to ``mode``."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if array is None:
        width, height = size
        array = frame_pattern(3, height, width)
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    image.save(path)
    return path
