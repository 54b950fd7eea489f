"""Videos that lie, made the way users' files come to lie, and the truth to check frames against.

Every frame shows its own number (ten black or white bands, left to right, bit 0 first) and
three coloured corners (top-left red, top-right green, bottom-left blue), so the frame that comes
back can be read, and so can its orientation. The truth is a full front-to-back decode: the
frames a player shows and when.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

NBITS = 10
W, H = 128, 96
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def numbered_frame(number: int, height: int = H, width: int = W) -> np.ndarray:
    """(H, W, 3) uint8: ``number`` in bands across the middle rows, coloured corners above/below."""
    frame = np.full((height, width, 3), 128, dtype=np.uint8)
    band = width // NBITS
    top, bottom = height // 4, height - height // 4
    for bit in range(NBITS):
        frame[top:bottom, bit * band:(bit + 1) * band] = 255 if (number >> bit) & 1 else 0
    corner = max(4, min(height, width) // 6)
    frame[:corner, :corner] = RED
    frame[:corner, -corner:] = GREEN
    frame[-corner:, :corner] = BLUE
    return frame


def read_number(frame: np.ndarray) -> int:
    """The number an upright ``numbered_frame`` shows, after lossy coding and any resize."""
    height, width = frame.shape[:2]
    grey = frame.astype(np.float32).mean(axis=2)
    band = width // NBITS
    rows = slice(int(height * 0.3), int(height * 0.7))
    number = 0
    for bit in range(NBITS):
        cols = slice(bit * band + band // 4, bit * band + band - band // 4)
        number |= int(grey[rows, cols].mean() > 128) << bit
    return number


def corner_colours(frame: np.ndarray) -> dict[str, str]:
    """Which marker colour sits in each corner: {"top-left": "red", ...}."""
    height, width = frame.shape[:2]
    size = max(2, min(height, width) // 12)
    patches = {"top-left": frame[:size, :size], "top-right": frame[:size, -size:],
               "bottom-left": frame[-size:, :size], "bottom-right": frame[-size:, -size:]}
    names = {"red": RED, "green": GREEN, "blue": BLUE, "grey": (128, 128, 128)}
    out = {}
    for where, patch in patches.items():
        mean = patch.reshape(-1, 3).astype(np.float32).mean(axis=0)
        out[where] = min(names, key=lambda n: float(np.abs(mean - np.array(names[n])).sum()))
    return out


def write_numbered(
    path: Path,
    numbers: Sequence[int] | int,
    *,
    fps: int = 25,
    codec: str = "libx264",
    container_format: str | None = None,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    size: tuple[int, int] = (W, H),
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    gop: int = 25,
    sar: Fraction | None = None,
    display: tuple[int, bool, bool] | None = None,
    frames: Sequence[np.ndarray] | None = None,
) -> Path:
    """Encode numbered frames with PyAV; ``pts`` in ``time_base`` ticks for variable rates;
    ``display`` = (degrees counter-clockwise, hflip, vflip) for a display matrix."""
    import av

    numbers = list(range(numbers)) if isinstance(numbers, int) else list(numbers)
    width, height = size
    with av.open(str(path), mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.gop_size = gop
        opts = {"preset": "fast"} if codec.startswith("libx26") else {}
        opts.update(options or {})
        stream.options = opts
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        if display is not None:
            stream.set_display_rotation(display[0], hflip=display[1], vflip=display[2])
        if time_base is not None:
            stream.time_base = stream.codec_context.time_base = time_base
        for k, number in enumerate(numbers):
            array = frames[k] if frames is not None else numbered_frame(number, height, width)
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = int(pts[k]), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def decoded_truth(path: Path, stream_index: int | None = None) -> list[tuple[float, int]]:
    """(seconds from the first frame, number) of every frame a full decode gives, in order.

    Times come from the frames' timestamps; where those restart (joined streams) or are
    missing, from the frame's position at the stream's average rate."""
    import av

    with av.open(str(path)) as container:
        stream = (container.streams[stream_index] if stream_index is not None
                  else container.streams.video[0])
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        rows = [(f.pts, read_number(f.to_ndarray(format="rgb24"))) for f in container.decode(stream)]
        tb = float(stream.time_base)
    stamps = [p for p, _ in rows]
    if None in stamps or any(b <= a for a, b in zip(stamps, stamps[1:], strict=False)):
        return [(k / rate, n) for k, (_, n) in enumerate(rows)]
    return [((p - stamps[0]) * tb, n) for p, n in rows]


def on_screen(truth: list[tuple[float, int]], time_s: float) -> int:
    """The number on screen at ``time_s``: the last frame shown at or before it."""
    shown = [n for t, n in truth if t <= time_s + 1e-9]
    return shown[-1] if shown else truth[0][1]


def truth_span(truth: list[tuple[float, int]], fps: float) -> float:
    """How long a player shows the video: the last frame's start plus one frame."""
    return truth[-1][0] + 1 / fps


# -- the ffmpeg CLI, for what PyAV cannot write ------------------------------------------------


def ffmpeg(*args: str) -> None:
    """Run the ffmpeg CLI quietly; skip the test where it is not installed."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("the ffmpeg CLI is not installed (Debian package ffmpeg)")
    subprocess.run([exe, "-y", "-loglevel", "error", *args], check=True)


def stream_copy_cut(source: Path, out: Path, start_s: float, length_s: float) -> Path:
    """``ffmpeg -ss START -t LEN -i SRC -c copy OUT``: keeps the GOP before START, hidden by an
    edit list (MP4/MOV)."""
    ffmpeg("-ss", str(start_s), "-t", str(length_s), "-i", str(source), "-c", "copy", str(out))
    return out


# -- headers that lie, patched in place -------------------------------------------------------


def _boxes(data: bytes, start: int, end: int):
    """(type, box start, payload start, box end) of the ISO-BMFF boxes in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        yield kind.decode("latin-1"), pos, pos + header, pos + size
        pos += size


def shorten_mp4_track_duration(path: Path, factor: int = 30) -> Path:
    """Divide the video track's duration in its ``mdhd`` box by ``factor`` (a header that lies
    about length; the samples are untouched)."""
    data = bytearray(path.read_bytes())
    for kind, _, body, end in _boxes(data, 0, len(data)):
        if kind != "moov":
            continue
        for tkind, _, tbody, tend in _boxes(data, body, end):
            if tkind != "trak" or b"vide" not in data[tbody:tend]:
                continue
            for mkind, _, mbody, mend in _boxes(data, tbody, tend):
                if mkind != "mdia":
                    continue
                for hkind, _, hbody, _ in _boxes(data, mbody, mend):
                    if hkind == "mdhd":
                        version = data[hbody]
                        fmt, offset = (">Q", hbody + 24) if version == 1 else (">I", hbody + 16)
                        (duration,) = struct.unpack_from(fmt, data, offset)
                        struct.pack_into(fmt, data, offset, duration // factor)
                        path.write_bytes(bytes(data))
                        return path
    raise RuntimeError(f"{path}: no video mdhd box")


def understate_avi_frame_count(path: Path, frames: int) -> Path:
    """Set the AVI main header's total frames and the video stream header's length to
    ``frames``, and drop the index (``idx1``) that would reveal the rest, as capture tools
    that died before finishing the file leave it."""
    data = bytearray(path.read_bytes())
    avih = data.find(b"avih")
    struct.pack_into("<I", data, avih + 8 + 16, frames)  # dwTotalFrames
    flags = struct.unpack_from("<I", data, avih + 8 + 12)[0]
    struct.pack_into("<I", data, avih + 8 + 12, flags & ~0x10)  # no AVIF_HASINDEX
    strh = data.find(b"strhvids")
    struct.pack_into("<I", data, strh + 8 + 32, frames)  # dwLength
    index = data.rfind(b"idx1")
    if index > 0:
        del data[index:]
        struct.pack_into("<I", data, 4, len(data) - 8)  # the RIFF size
    path.write_bytes(bytes(data))
    return path


def understate_mkv_duration(path: Path, factor: float = 0.4) -> Path:
    """Scale the Matroska segment's Duration element (a float) by ``factor``."""
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89")
    size = data[at + 2] & 0x0F
    fmt = ">d" if size == 8 else ">f"
    (value,) = struct.unpack_from(fmt, data, at + 3)
    struct.pack_into(fmt, data, at + 3, value * factor)
    path.write_bytes(bytes(data))
    return path
