"""Writers of broken, odd and hostile media files, one function per kind, for the bad-input tests.

Every function takes the path to write and returns it, so a test chooses the names (unicode,
spaces, a video extension on a folder). Files are tiny and made from fixed seeds.
"""

from __future__ import annotations

import os
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np

from tests.utils import frame_pattern, write_image, write_video

W, H = 64, 48


def _rng(path: Path) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(path.name.encode()))


def _packet_spans(path: Path) -> list[tuple[int, int]]:
    """(file offset, size) of every video packet, from a demux pass (no decoding)."""
    import av

    with av.open(str(path)) as container:
        return [(packet.pos, packet.size) for packet in container.demux(video=0)
                if packet.size and packet.pos is not None and packet.pos >= 0]


def _overwrite(path: Path, spans: list[tuple[int, int]], fill: str, seed: int = 0) -> Path:
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for pos, size in spans:
        data[pos:pos + size] = bytes(size) if fill == "zeros" else rng.bytes(size)
    path.write_bytes(bytes(data))
    return path


# -- files that are not media at all -----------------------------------------------------------


def zero_byte(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def random_bytes(path: Path, size: int = 4096) -> Path:
    path.write_bytes(_rng(path).bytes(size))
    return path


def text_file(path: Path) -> Path:
    path.write_text("this is a text file, not a video\n" * 20)
    return path


def directory(path: Path) -> Path:
    """An empty folder named like a media file."""
    path.mkdir()
    return path


def symlink_to_itself(path: Path) -> Path:
    """A link that points at itself: every open fails with ELOOP."""
    os.symlink(path.name, path)
    return path


def symlink_to_parent(path: Path) -> Path:
    """A folder link back to the folder holding it: a naive walk never ends."""
    os.symlink(".", path, target_is_directory=True)
    return path


# -- broken videos -------------------------------------------------------------------------------


def truncated_mp4(path: Path) -> Path:
    """An H.264 MP4 cut in half; the index (moov) is written last, so it is lost."""
    write_video(path, 48, size=(W, H), gop=12)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_faststart_mp4(path: Path) -> Path:
    """An H.264 MP4 with its index first, cut at 60%: the index promises frames that are gone."""
    _encode_h264(path, 48, container_options={"movflags": "faststart"})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 5])
    return path


def mkv_header_only(path: Path) -> Path:
    """A valid Matroska header and track (codec and size known) cut before the first frame."""
    write_video(path, 24, size=(W, H), gop=12)
    data = path.read_bytes()
    cluster = data.find(b"\x1f\x43\xb6\x75")  # the Cluster element ID: frames start here
    if cluster < 0:
        raise RuntimeError(f"{path}: no Matroska cluster found")
    path.write_bytes(data[:cluster])
    return path


def zeroed_packets_mp4(path: Path) -> Path:
    """An intact H.264 MP4 container (index, sizes, timestamps) whose frame data is all zeros."""
    write_video(path, 24, size=(W, H), gop=12)
    return _overwrite(path, _packet_spans(path), "zeros")


def corrupt_second_half_avi(path: Path, num_frames: int = 40) -> Path:
    """MPEG-4 Part 2 in AVI whose later half of frame data is random bytes (the decode breaks)."""
    write_video(path, num_frames, size=(W, H), codec="mpeg4", gop=10)
    spans = _packet_spans(path)
    return _overwrite(path, spans[len(spans) // 2:], "random", seed=1)


# -- odd but valid videos ------------------------------------------------------------------------


def one_frame_video(path: Path) -> Path:
    return write_video(path, 1, size=(W, H))


def rotated_video(path: Path, degrees: int = 90) -> Path:
    """An H.264 MP4 whose stream carries a display matrix (phone-style rotation metadata)."""
    return _encode_h264(path, 12, rotation=degrees)


def variable_frame_rate_mkv(path: Path, num_frames: int = 30) -> Path:
    """H.264 in Matroska with irregular gaps between frames (20 to 120 ms), as screen recorders write."""
    gaps = _rng(path).choice([20, 40, 40, 120], size=num_frames)
    return _encode_h264(path, num_frames, pts_ms=np.concatenate([[0], np.cumsum(gaps[:-1])]))


def _encode_h264(path: Path, num_frames: int, *, pts_ms: np.ndarray | None = None,
                 rotation: int | None = None, container_options: dict[str, str] | None = None) -> Path:
    """Pattern frames as H.264 at 25 fps, or at ``pts_ms`` milliseconds each (variable rate)."""
    import av

    with av.open(str(path), mode="w", options=container_options or {}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        stream.codec_context.gop_size = 12
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if pts_ms is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for k in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_pattern(k, H, W), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = int(pts_ms[k]), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


# -- images ----------------------------------------------------------------------------------------


def animated_gif(path: Path) -> Path:
    from PIL import Image

    frames = [Image.fromarray(frame_pattern(k, H, W)) for k in range(4)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0)
    return path


def png_16bit(path: Path) -> Path:
    from PIL import Image

    ramp = np.linspace(0, 65535, W * H, dtype=np.uint16).reshape(H, W)
    Image.fromarray(ramp).save(path)  # mode I;16
    return path


def cmyk_jpeg(path: Path) -> Path:
    return write_image(path, frame_pattern(5, H, W), mode="CMYK")


def palette_png_with_transparency(path: Path) -> Path:
    from PIL import Image

    image = Image.fromarray(frame_pattern(2, H, W)).convert("P", palette=Image.Palette.ADAPTIVE)
    image.save(path, transparency=0)
    return path


def one_pixel_png(path: Path) -> Path:
    return write_image(path, np.full((1, 1, 3), 200, dtype=np.uint8))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def zero_size_png(path: Path) -> Path:
    """A PNG header declaring 0x0 pixels (Pillow refuses to write one, so it is made by hand)."""
    path.write_bytes(_png(0, 0, 8, 2, zlib.compress(b"")))
    return path


def decompression_bomb_png(path: Path, side: int = 20_000) -> Path:
    """A real, complete 1-bit greyscale PNG of side x side black pixels (400 MP) in ~50 kB."""
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then the packed bits
    packer = zlib.compressobj(9)
    chunks = [packer.compress(row * 1000) for _ in range(side // 1000)]
    chunks.append(packer.compress(row * (side % 1000)))
    chunks.append(packer.flush())
    path.write_bytes(_png(side, side, 1, 0, b"".join(chunks)))
    return path


def phone_photo(path: Path, array: np.ndarray, orientation: int = 6) -> Path:
    """A photo stored sideways with an EXIF orientation, as phones save them, in the format the
    extension names: .heic / .heif via pillow-heif (it writes the rotation as HEIF's irot and
    keeps the tag in ``info["original_orientation"]``), .avif / .jpg via Pillow."""
    from PIL import Image

    if path.suffix.lower() in (".heic", ".heif"):
        from pillow_heif import register_heif_opener

        register_heif_opener()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path, exif=exif.tobytes(), quality=95)
    return path


def renamed_to_bytes(path: Path, name: bytes) -> Path:
    """Give an existing file a name of raw bytes (e.g. Latin-1 b"caf\xe9.mp4", not UTF-8), as old
    archives, camera cards and Windows shares do; returns the path as Python sees it."""
    target = os.fsencode(path.parent) + b"/" + name
    os.rename(os.fsencode(path), target)
    return Path(os.fsdecode(target))


def unreadable(path: Path) -> Path:
    """Take every permission away from an existing file (root still reads it: check os.geteuid())."""
    path.chmod(0)
    return path
