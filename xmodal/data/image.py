"""Decode still images to RGB uint8 arrays, whatever mode and orientation they were saved in.

Users' folders mix phone JPEGs (EXIF-rotated), PNGs with alpha or 16-bit depth,
palette GIFs and print CMYK files; the model needs every one as upright RGB.
Phone photos also come as HEIC (read by the pillow-heif plugin, loaded on the first
such file) and AVIF (built into Pillow >= 11.3).
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.errors import ImageDecodeError, missing_reason

log = logging.getLogger(__name__)

HEIF_EXTENSIONS: frozenset[str] = frozenset({".heic", ".heif"})
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".avif"}
) | HEIF_EXTENSIONS

# Transparent pixels are shown on a light page by viewers, so that is what we compose onto.
_BACKGROUND = (255, 255, 255)


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """(H, W, 3) uint8 RGB, upright per EXIF; animated files give their first frame.

    Every failure (missing, not an image, truncated, empty, over Pillow's
    decompression-bomb limit) raises ImageDecodeError naming the file.
    """
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise ImageDecodeError(path, missing_reason(path))
    if path.is_dir():
        raise ImageDecodeError(path, "is a directory, not an image file")
    _enable_plugin_for(path)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit; treat both as hostile input.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # decode now so truncation surfaces here, not later
                if image.width == 0 or image.height == 0:
                    raise ImageDecodeError(path, f"empty image ({image.width}x{image.height})")
                return _to_rgb_array(_upright(image))
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        reason = f"too many pixels, refused as a possible decompression bomb ({_one_line(exc)})"
        raise ImageDecodeError(path, reason) from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageDecodeError(path, "not a recognised image format") from exc
    except PermissionError as exc:
        raise ImageDecodeError(path, "permission denied") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError/SyntaxError/ValueError/...
        raise ImageDecodeError(path, f"cannot decode the image ({_one_line(exc)})") from exc


def _enable_plugin_for(path: Path) -> None:
    """Make Pillow able to open ``path``'s format, or say why it cannot."""
    suffix = path.suffix.lower()
    if suffix in HEIF_EXTENSIONS:
        try:
            _register_heif()
        except ImportError as exc:
            raise ImageDecodeError(path, "reading HEIC/HEIF needs the pillow-heif package "
                                         "(pip install pillow-heif)") from exc
    elif suffix == ".avif":
        from PIL import features

        if not features.check("avif"):
            raise ImageDecodeError(path, "this Pillow was built without AVIF support "
                                         "(Pillow >= 11.3 wheels have it)")


@functools.cache
def _register_heif() -> None:
    from pillow_heif import register_heif_opener

    # libheif applies the file's rotation (irot/imir) and pillow-heif then sets the EXIF
    # orientation to 1, so _upright does not turn the picture a second time (tested).
    register_heif_opener()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _upright(image: Any) -> Any:
    """Apply the EXIF orientation; a malformed EXIF block must not cost us the image."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # noqa: BLE001 - broken EXIF raises assorted types
        log.debug("%s: ignoring unreadable EXIF orientation (%s)", image.filename, exc)
        return image


def _to_rgb_array(image: Any) -> np.ndarray:
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return np.array(image, dtype=np.uint8)
    if mode.startswith("I;16") or mode in ("I", "F"):
        gray = _high_depth_to_uint8(np.array(image), sixteen_bit=mode.startswith("I;16"))
        return np.repeat(gray[..., None], 3, axis=-1)
    if (mode == "P" and "transparency" in image.info) or mode in ("PA", "LA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (*_BACKGROUND, 255))
        image = Image.alpha_composite(background, image)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def _high_depth_to_uint8(values: np.ndarray, *, sixteen_bit: bool) -> np.ndarray:
    """Scale 16-bit (or 32-bit int / float) gray to 0..255 instead of clipping it to white."""
    is_float = values.dtype.kind == "f"
    values = values.astype(np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if sixteen_bit:
        scale = 255.0 / 65535.0
    elif is_float and low >= 0 and high <= 1.0:
        scale = 255.0
    elif low >= 0 and high <= 255:  # 8-bit data that merely sits in a wide mode
        scale = 1.0
    elif not is_float and low >= 0 and high <= 65535:  # 16-bit PNGs open as "I" in old Pillow
        scale = 255.0 / 65535.0
    else:  # arbitrary range (32-bit scientific data): stretch to fit
        values = values - low
        scale = 255.0 / max(high - low, 1e-12)
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
