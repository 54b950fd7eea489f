"""Display matrices, pixel aspect and the resize as frames are decoded (no I/O)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from fractions import Fraction

import numpy as np
import pytest

from xmodal.data.video.geometry import Orientation, output_size, square_pixel_size, to_display

ONE = 65536  # 1.0 in the matrix's 16.16 fixed point


def _matrix(a: int, b: int, c: int, d: int) -> list[int]:
    return [a * ONE, b * ONE, 0, c * ONE, d * ONE, 0, 0, 0, 1 << 30]


@pytest.mark.parametrize(("matrix", "expected"), [
    (_matrix(1, 0, 0, 1), Orientation()),
    (_matrix(-1, 0, 0, 1), Orientation(False, True, False)),  # left-right mirror, not 180 degrees
    (_matrix(1, 0, 0, -1), Orientation(False, False, True)),
    (_matrix(-1, 0, 0, -1), Orientation(False, True, True)),  # 180 degrees
    (_matrix(0, 1, -1, 0), Orientation(True, True, False)),  # 90 clockwise (phones' "rotate=90")
    (_matrix(0, -1, 1, 0), Orientation(True, False, True)),  # 90 counter-clockwise
    (_matrix(0, 1, 1, 0), Orientation(True, False, False)),  # transpose
    (_matrix(0, -1, -1, 0), Orientation(True, True, True)),  # anti-transpose
])
def test_orientation_from_display_matrix(matrix: list[int], expected: Orientation) -> None:
    assert Orientation.from_display_matrix(matrix) == expected


def test_orientation_maps_pixels_as_the_matrix_says() -> None:
    """p' = a p + c q, q' = b p + d q: check every matrix against that formula on a 3x2 frame."""
    frame = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)  # stored (q rows, p columns)
    for a, b, c, d in [(1, 0, 0, 1), (-1, 0, 0, 1), (1, 0, 0, -1), (-1, 0, 0, -1),
                       (0, 1, -1, 0), (0, -1, 1, 0), (0, 1, 1, 0), (0, -1, -1, 0)]:
        shown = Orientation.from_display_matrix(_matrix(a, b, c, d)).apply(frame)
        coords = [(a * p + c * q, b * p + d * q) for q in range(2) for p in range(3)]
        min_x, min_y = min(x for x, _ in coords), min(y for _, y in coords)
        for q in range(2):
            for p in range(3):
                x, y = a * p + c * q - min_x, b * p + d * q - min_y
                assert shown[y, x, 0] == frame[q, p, 0], (a, b, c, d)


def test_square_pixels_and_output_size() -> None:
    assert square_pixel_size(720, 480, Fraction(32, 27)) == (853, 480)
    assert square_pixel_size(720, 480, Fraction(8, 9)) == (640, 480)
    assert square_pixel_size(720, 480, None) == (720, 480)
    turned = Orientation(transpose=True)
    assert output_size(720, 480, Fraction(32, 27), turned, None) == (480, 853)
    assert output_size(1920, 1080, None, Orientation(), 256) == (455, 256)
    assert output_size(100, 60, None, Orientation(), 256) == (100, 60)  # never enlarged


def test_to_display_with_square_pixels_equals_torchvision_resize() -> None:
    torch = pytest.importorskip("torch")
    from torchvision.transforms import v2

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    mine = to_display(frame, None, Orientation(), 64)
    theirs = v2.Resize(64, antialias=True)(torch.from_numpy(frame).permute(2, 0, 1))
    np.testing.assert_array_equal(mine, theirs.permute(1, 2, 0).numpy())
    assert to_display(frame, None, Orientation(), None) is frame  # nothing to do: no copy


def test_to_display_stretches_non_square_pixels_once() -> None:
    frame = np.zeros((48, 72, 3), dtype=np.uint8)
    assert to_display(frame, Fraction(32, 27), Orientation(), None).shape == (48, 85, 3)
    assert to_display(frame, Fraction(32, 27), Orientation(transpose=True), None).shape == (85, 48, 3)


class _Entry:
    """A side data entry as PyAV gives it: a ``type`` and the bytes of its payload."""

    def __init__(self, kind: str, payload: bytes) -> None:
        self.type, self._payload = kind, payload

    def __bytes__(self) -> bytes:
        return self._payload


class _EntriesSideData(Mapping):
    """PyAV <= 18.1.0: a Mapping by type whose iteration yields the entries themselves."""

    def __init__(self, entries: dict[str, _Entry]) -> None:
        self._entries = entries

    def __getitem__(self, kind: str) -> _Entry:
        return self._entries[kind]

    def __iter__(self) -> Iterator[_Entry]:  # type: ignore[override]
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)


class _Frame:
    def __init__(self, side_data: object) -> None:
        self.side_data = side_data


@pytest.mark.parametrize("style", ["entries", "types"])
def test_orientation_is_read_from_either_pyav_side_data_style(style: str) -> None:
    """PyAV 18.1.1 made a frame's side data iterate its types, not its entries; reading only
    one style silently dropped the display matrix (phone videos sideways)."""
    import struct

    from xmodal.data.video.probe import orientation_of

    rotate_90 = struct.pack("<9i", 0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30)
    entries = {"Type.SEI_UNREGISTERED": _Entry("Type.SEI_UNREGISTERED", b"x" * 40),
               "Type.DISPLAYMATRIX": _Entry("Type.DISPLAYMATRIX", rotate_90)}
    side_data = _EntriesSideData(entries) if style == "entries" else dict(entries)
    assert orientation_of(_Frame(side_data)) == Orientation.from_display_matrix(
        struct.unpack("<9i", rotate_90))
    assert orientation_of(_Frame(side_data)) != Orientation.from_display_matrix(
        (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30))
