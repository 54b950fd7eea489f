"""Still-image decoding: formats, EXIF orientation, odd modes -> RGB, and clean errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import media_factory as mf
from tests.utils import frame_pattern, write_image
from xmodal.data.image import IMAGE_EXTENSIONS, load_image
from xmodal.errors import ImageDecodeError

W, H = 40, 30
SOURCE = frame_pattern(3, H, W)


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize(
    ("ext", "tolerance"),
    [(".png", 0), (".bmp", 0), (".tiff", 0), (".jpg", 8), (".webp", 8), (".gif", 12)],
)
def test_formats_decode_to_rgb(ext: str, tolerance: float, tmp_path: Path) -> None:
    path = write_image(tmp_path / f"img{ext}", SOURCE)
    image = load_image(path)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert _mean_abs_diff(image, SOURCE) <= tolerance


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    Image.fromarray(SOURCE).save(path, exif=exif)
    image = load_image(path)
    assert image.shape == (W, H, 3)
    assert _mean_abs_diff(image, np.rot90(SOURCE, k=-1)) < 8


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "CMYK", "I", "F"])
def test_modes_become_rgb(mode: str, tmp_path: Path) -> None:
    ext = ".jpg" if mode == "CMYK" else ".tiff" if mode in ("I", "F") else ".png"
    path = write_image(tmp_path / f"{mode}{ext}", SOURCE, mode=mode)
    with Image.open(path) as saved:
        assert saved.mode == mode
    image = load_image(path)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    if mode in ("L", "LA", "I", "F"):
        gray = np.asarray(Image.fromarray(SOURCE).convert("L"))
        assert _mean_abs_diff(image[..., 0], gray) <= 1
    if mode in ("RGBA", "CMYK"):
        assert _mean_abs_diff(image, SOURCE) <= 3


def test_transparency_is_composed_onto_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 10, 10, 255)  # opaque red; the rest is transparent black
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    image = load_image(path)
    assert image[0, 0].tolist() == [200, 10, 10]
    assert image[1, 1].tolist() == [255, 255, 255]


def test_palette_with_transparency(tmp_path: Path) -> None:
    palette_image = Image.new("P", (4, 3), 1)
    palette_image.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    palette_image.putpixel((0, 0), 0)
    path = tmp_path / "palette.png"
    palette_image.save(path, transparency=0)
    image = load_image(path)
    assert image[0, 0].tolist() == [255, 255, 255]  # transparent index
    assert image[2, 3].tolist() == [0, 200, 0]


@pytest.mark.parametrize("ext", [".png", ".tiff"])
def test_16_bit_gray_is_scaled_not_clipped(ext: str, tmp_path: Path) -> None:
    gradient = np.linspace(0, 65535, W, dtype=np.uint16)[None, :].repeat(H, axis=0)
    path = tmp_path / f"deep{ext}"
    Image.fromarray(gradient).save(path)
    with Image.open(path) as saved:
        assert saved.mode.startswith("I;16")
    image = load_image(path)
    row = image[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert (np.diff(row) > 0).all()  # a ramp, not a wall of 255
    assert abs(row[W // 2] - round(gradient[0, W // 2] / 257)) <= 1
    np.testing.assert_array_equal(image[..., 0], image[..., 2])

    dark = tmp_path / f"dark{ext}"
    Image.fromarray(np.full((H, W), 1000, dtype=np.uint16)).save(dark)
    assert load_image(dark).max() <= 4  # 1000/65535 is dark; must not be brightened


@pytest.mark.parametrize(
    ("values", "expected_max"),
    [
        (np.linspace(0, 65535, W).astype(np.int32), 255),  # 16-bit data in mode "I"
        (np.linspace(0, 1, W).astype(np.float32), 255),  # float image in [0, 1]
        (np.linspace(-5e6, 5e6, W).astype(np.int32), 255),  # arbitrary range: stretched
    ],
    ids=["I-16-bit", "F-unit", "I-wide"],
)
def test_wide_modes_are_scaled_into_8_bit(values: np.ndarray, expected_max: int,
                                          tmp_path: Path) -> None:
    path = tmp_path / "wide.tiff"
    Image.fromarray(values[None, :].repeat(H, axis=0)).save(path)
    row = load_image(path)[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == expected_max
    assert (np.diff(row) >= 0).all() and len(set(row.tolist())) > W // 2


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (W, H), color) for color in ((250, 0, 0), (0, 0, 250))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    image = load_image(path)
    assert image.shape == (H, W, 3)
    assert image[..., 0].mean() > 200 and image[..., 2].mean() < 50


# -- errors ------------------------------------------------------------------------------


def _truncated(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = write_image(path, noise).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _missing(path: Path) -> Path:
    return path


@pytest.mark.parametrize(
    ("name", "make"),
    [("noise.jpg", _truncated), ("noise.png", _truncated), ("garbage.jpg", mf.random_bytes),
     ("readme.png", mf.text_file), ("empty.jpg", mf.zero_byte), ("empty.png", mf.zero_size_png),
     ("missing.png", _missing), ("photos.jpg", mf.directory), ("loop.jpg", mf.symlink_to_itself)],
    ids=["truncated-jpg", "truncated-png", "garbage", "text-png", "zero-byte", "0x0",
         "missing", "directory", "symlink-loop"],
)
def test_unreadable_images_raise_one_line_errors(name: str, make, tmp_path: Path) -> None:
    path = make(tmp_path / name)
    with pytest.raises(ImageDecodeError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert info.value.path == str(path)


def test_zero_sized_image_is_rejected_even_if_pillow_opens_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(tmp_path / "img.png", SOURCE)
    monkeypatch.setattr(Image, "open", lambda *a, **k: Image.new("RGB", (0, 0)))
    with pytest.raises(ImageDecodeError, match=r"empty image \(0x0\)"):
        load_image(path)


@pytest.mark.parametrize("limit", [100, 1000], ids=["error", "warning"])
def test_decompression_bombs_are_refused(
    limit: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow raises above 2x its limit and only warns between 1x and 2x: both are refused."""
    path = write_image(tmp_path / "big.png", SOURCE)  # 1200 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        load_image(path)


def test_image_extensions() -> None:
    assert {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".heic", ".heif",
            ".avif"} == IMAGE_EXTENSIONS


@pytest.mark.parametrize("ext", [".heic", ".HEIF", ".avif"])
def test_phone_photos_come_back_upright(ext: str, tmp_path: Path) -> None:
    """Stored sideways with orientation 6, like a phone's portrait shot: the pixels we return
    are the upright picture, turned once (not twice by both the container and EXIF)."""
    path = mf.phone_photo(tmp_path / f"phone{ext}", SOURCE, orientation=6)
    data = path.read_bytes()
    assert data[4:12] in (b"ftypheic", b"ftypavif", b"ftypmif1")  # really HEIF / AVIF
    assert b"irot" in data  # the file itself carries the rotation
    image = load_image(path)
    assert image.shape == (W, H, 3) and image.dtype == np.uint8
    assert _mean_abs_diff(image, np.rot90(SOURCE, k=-1)) < 8
    jpeg = load_image(mf.phone_photo(tmp_path / "phone.jpg", SOURCE, orientation=6))
    assert _mean_abs_diff(image, jpeg) < 8  # the same picture as the phone's JPEG


def test_heif_plugin_loads_only_for_heif_files(tmp_path: Path) -> None:
    """pillow-heif is imported on the first HEIC, not by xmodal or other images."""
    mf.phone_photo(tmp_path / "a.heic", SOURCE)
    write_image(tmp_path / "b.jpg", SOURCE)
    code = ("import sys; from xmodal.data.image import load_image\n"
            f"load_image({str(tmp_path / 'b.jpg')!r}); print('pillow_heif' in sys.modules)\n"
            f"print(load_image({str(tmp_path / 'a.heic')!r}).shape, 'pillow_heif' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.split("\n")[:2] == ["False", f"({W}, {H}, 3) True"]


def test_heic_without_pillow_heif_is_a_clear_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from xmodal.data import image as image_module

    path = mf.phone_photo(tmp_path / "a.heic", SOURCE)
    image_module._register_heif.cache_clear()
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import pillow_heif raises
    try:
        with pytest.raises(ImageDecodeError, match="needs the pillow-heif package"):
            load_image(path)
    finally:
        image_module._register_heif.cache_clear()
