"""Both decoding backends on tiny real videos: frame identity, codecs, broken files, fallback."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests import media_factory as mf
from tests.utils import frame_pattern, write_video
from xmodal.data import video as video_mod
from xmodal.data.sampling import TSNSampler, UniformSampler
from xmodal.data.video import (
    VIDEO_EXTENSIONS,
    PyAVSource,
    VideoInfo,
    open_video,
    read_clip,
)
from xmodal.errors import ConfigError, VideoDecodeError

av = pytest.importorskip("av")

BACKENDS = [
    pytest.param("decord", id="decord"),
    pytest.param("pyav", id="pyav"),
]
ALL_BACKENDS = [*BACKENDS, pytest.param("auto", id="auto")]
W, H = 64, 48


def _needs_decord(backend: str) -> None:
    if backend == "decord":
        pytest.importorskip("decord")


def identify(frame: np.ndarray, num_frames: int) -> int:
    """The pattern index whose frame_pattern is closest to a (lossy) decoded frame."""
    height, width = frame.shape[:2]
    errors = [
        np.abs(frame.astype(np.int16) - frame_pattern(k, height, width).astype(np.int16)).mean()
        for k in range(num_frames)
    ]
    return int(np.argmin(errors))


def identities(frames: np.ndarray, num_frames: int) -> list[int]:
    return [identify(frame, num_frames) for frame in frames]


@pytest.fixture(scope="module")
def h264(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 frames of H.264 with a keyframe every 12 frames."""
    return write_video(tmp_path_factory.mktemp("h264") / "clip.mp4", 48, gop=12)


@pytest.fixture(scope="module")
def bframes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """H.264 with B-frames (reordered decode), the common case for camera/phone files."""
    return write_video(
        tmp_path_factory.mktemp("bf") / "bframes.mp4", 40, gop=10,
        options={"preset": "fast", "bf": "2"},
    )


@pytest.fixture(scope="module")
def vfr_mkv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Variable frame rate (jittered pts) MKV whose first frame is at 0.5 s, not 0."""
    path = tmp_path_factory.mktemp("vfr") / "vfr.mkv"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        stream.codec_context.gop_size = 10
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for k in range(40):
            frame = av.VideoFrame.from_ndarray(frame_pattern(k, H, W), format="rgb24")
            frame.pts = 500 + 40 * k + int(rng.integers(-12, 13))
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# -- decoding the right frames -------------------------------------------------------------


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_frames_come_back_in_the_order_asked_with_repeats(backend: str, h264: Path) -> None:
    _needs_decord(backend)
    indices = [5, 0, 47, 5, 23, 24, 11]
    with open_video(h264, backend) as source:
        frames = source.get_frames(indices)
        assert source.info == VideoInfo(num_frames=48, fps=25.0, duration_s=1.92, width=W, height=H,
                                       codec="h264")
    assert frames.shape == (len(indices), H, W, 3)
    assert frames.dtype == np.uint8 and frames.flags.c_contiguous
    assert identities(frames, 48) == indices
    np.testing.assert_array_equal(frames[0], frames[3])


def test_backends_decode_the_same_frames(h264: Path) -> None:
    pytest.importorskip("decord")
    indices = list(range(0, 48, 5)) + [47]
    with open_video(h264, "decord") as a, open_video(h264, "pyav") as b:
        frames_a, frames_b = a.get_frames(indices), b.get_frames(indices)
    # Different libraries convert YUV->RGB slightly differently, so compare with a tolerance.
    assert np.abs(frames_a.astype(np.int16) - frames_b.astype(np.int16)).mean() < 3.0
    assert identities(frames_a, 48) == identities(frames_b, 48) == indices


@pytest.mark.parametrize("backend", BACKENDS)
def test_indices_past_the_end_clamp_to_the_last_frame(backend: str, h264: Path) -> None:
    _needs_decord(backend)
    with open_video(h264, backend) as source:
        frames = source.get_frames([46, 47, 48, 500])
    assert identities(frames, 48) == [46, 47, 47, 47]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_empty_and_negative_indices(backend: str, h264: Path) -> None:
    _needs_decord(backend)
    with open_video(h264, backend) as source:
        assert source.get_frames([]).shape == (0, H, W, 3)
        with pytest.raises(ValueError, match="must be >= 0"):
            source.get_frames([-1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_video_repeats_frames(backend: str, tmp_path: Path) -> None:
    _needs_decord(backend)
    path = write_video(tmp_path / "short.mp4", 3)
    clip = read_clip(path, TSNSampler(8, train=False), backend=backend)
    frames, info = clip.frames, clip.info
    assert info.num_frames == 3
    assert frames.shape == (8, H, W, 3)
    found = identities(frames, 3)
    assert found == sorted(found) and set(found) == {0, 1, 2}


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_read_clip_uses_the_sampler(backend: str, h264: Path) -> None:
    _needs_decord(backend)
    clip = read_clip(h264, UniformSampler(4), backend=backend)
    assert clip.info.num_frames == 48
    assert identities(clip.frames, 48) == [6, 18, 30, 42]
    np.testing.assert_allclose(clip.times_s, [0.24, 0.72, 1.2, 1.68])  # frame k shows at k / 25 s
    train_clip = read_clip(
        h264, TSNSampler(4, train=True), backend=backend, rng=np.random.default_rng(0)
    )
    found = identities(train_clip.frames, 48)
    assert [i // 12 for i in found] == [0, 1, 2, 3]  # one frame inside each segment


def _resized_as_the_model_does(frames: np.ndarray, size: int) -> np.ndarray:
    import torch

    from xmodal.data.transforms import resize_shorter_side

    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
    return resize_shorter_side(clip, size).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("size", "short_side", "shape"), [
    ((W, H), 24, (24, 32)),   # landscape, shrunk
    ((40, 64), 30, (48, 30)),  # portrait (decord 3.4 cannot decode 48 px wide frames at all)
    ((W, H), 100, (H, W)),  # already smaller: left as it is
])
def test_short_side_resizes_each_frame_as_the_model_does(
    backend: str, size: tuple[int, int], short_side: int, shape: tuple[int, int],
    tmp_path: Path,
) -> None:
    """short_side is an optimisation only: the same pixels as resizing the full-size clip."""
    _needs_decord(backend)
    path = write_video(tmp_path / "clip.mp4", 12, size=size)
    indices = [0, 5, 11]
    with open_video(path, backend) as source:
        full = source.get_frames(indices)
    with open_video(path, backend, short_side=short_side) as source:
        frames = source.get_frames(indices)
        assert (source.info.height, source.info.width) == shape
    assert frames.shape == (3, *shape, 3)
    expected = _resized_as_the_model_does(full, short_side) if min(size) > short_side else full
    np.testing.assert_array_equal(frames, expected)


def test_short_side_applies_after_turning_upright(rotated: Path) -> None:
    with open_video(rotated, "pyav") as source:
        full = source.get_frames([0, 7])
    with open_video(rotated, "pyav", short_side=24) as source:
        frames = source.get_frames([0, 7])
        assert (source.info.width, source.info.height) == (24, 32)
    np.testing.assert_array_equal(frames, _resized_as_the_model_does(full, 24))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_short_side_must_be_positive(backend: str, h264: Path, tmp_path: Path) -> None:
    _needs_decord(backend)
    with pytest.raises(ValueError, match="short_side"):
        open_video(h264, backend, short_side=0)
    with pytest.raises(ValueError, match="short_side"):  # checked before any file is opened
        open_video(tmp_path / "missing.mp4", backend, short_side=-1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_any_frame_rate_and_size(backend: str, tmp_path: Path) -> None:
    _needs_decord(backend)
    path = write_video(tmp_path / "ntsc.mp4", 30, size=(80, 44), fps=Fraction(30000, 1001))
    with open_video(path, backend) as source:
        assert source.info.num_frames == 30
        assert source.info.fps == pytest.approx(29.97, abs=0.01)
        frames = source.get_frames([0, 13, 29])
    assert frames.shape == (3, 44, 80, 3)
    assert identities(frames, 30) == [0, 13, 29]


@pytest.mark.parametrize("backend", BACKENDS)
def test_variable_frame_rate_with_late_start(backend: str, vfr_mkv: Path) -> None:
    _needs_decord(backend)
    indices = [0, 1, 2, 17, 38, 39]
    with open_video(vfr_mkv, backend) as source:
        assert source.info.num_frames == 40
        assert identities(source.get_frames(indices), 40) == indices


# -- codecs found in users' folders -------------------------------------------------------

CODECS = [
    ("h264.mp4", "libx264", "yuv420p"),
    ("h264.mkv", "libx264", "yuv420p"),
    ("h264.avi", "libx264", "yuv420p"),  # pts = dts + 1 here: frame 0 does not start at 0
    ("mpeg4.mp4", "mpeg4", "yuv420p"),
    ("mpeg4.avi", "mpeg4", "yuv420p"),
    ("msmpeg4v2.avi", "msmpeg4v2", "yuv420p"),
    ("msmpeg4.avi", "msmpeg4", "yuv420p"),
    ("mjpeg.avi", "mjpeg", "yuvj420p"),
    ("cinepak.avi", "cinepak", "rgb24"),
    ("cinepak.mov", "cinepak", "rgb24"),
    ("vp9.webm", "libvpx-vp9", "yuv420p"),
]


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stored landscape (64x48) with a display matrix turning it 90 degrees, as phones write."""
    return mf.rotated_video(tmp_path_factory.mktemp("rot") / "portrait.mp4", 90)


@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_rotated_video_is_decoded_upright(backend: str, rotated: Path) -> None:
    with open_video(rotated, backend=backend) as video:
        frames = video.get_frames([0, 5])
        assert (video.info.width, video.info.height) == (H, W)
        assert video.backend == "pyav"
    assert frames.shape == (2, W, H, 3)
    # The pattern's green ramp runs left to right in the stored frame; a counter-clockwise
    # quarter turn (what FFmpeg's autorotate does for +90) puts its bright end on top.
    # (Frame 0's white bar sits at stored x=0..3, the last rows once turned: stay above it.)
    green = frames[0, ..., 1].astype(float)
    assert green[:8].mean() > 200 and green[-14:-6].mean() < 50


@pytest.mark.parametrize("short_side", [None, 24])
def test_rotation_matches_ffmpegs_own_filter(rotated: Path, short_side: int | None) -> None:
    """decord runs FFmpeg's rotation filter (then squeezes the result back into the stored
    shape): an independent oracle for the direction of our turn."""
    decord = pytest.importorskip("decord")
    import cv2

    ours = open_video(rotated, backend="pyav", short_side=short_side).get_frames([0])[0]
    if short_side:
        assert ours.shape == (32, 24, 3)
    theirs = decord.VideoReader(str(rotated), width=W, height=H).get_batch([0]).asnumpy()[0]
    squeezed = cv2.resize(ours, (W, H), interpolation=cv2.INTER_AREA)
    assert np.abs(squeezed.astype(int) - theirs).mean() < 4


def test_decord_refuses_mpeg_ts_and_auto_reads_it(tmp_path: Path) -> None:
    """decord hung (or failed after seconds) seeking in MPEG-TS with long keyframe intervals."""
    pytest.importorskip("decord")
    path = write_video(tmp_path / "clip.ts", 30, gop=10)
    with pytest.raises(VideoDecodeError, match="decord cannot seek reliably in MPEG-TS"):
        open_video(path, "decord")
    with open_video(path, "auto") as source:
        assert source.backend == "pyav"
        assert identities(source.get_frames([2, 25]), 30) == [2, 25]


def test_decord_refuses_a_rotated_video_rather_than_squeeze_it(rotated: Path) -> None:
    pytest.importorskip("decord")
    with pytest.raises(VideoDecodeError, match="decord cannot show a rotated or mirrored video"):
        open_video(rotated, backend="decord")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "codec", "pix_fmt"), CODECS, ids=[c[0] for c in CODECS])
def test_codecs(backend: str, name: str, codec: str, pix_fmt: str, tmp_path: Path) -> None:
    _needs_decord(backend)
    try:
        av.codec.Codec(codec, "w")
    except Exception:  # noqa: BLE001 - PyAV raises UnknownCodecError / ValueError by version
        pytest.skip(f"this PyAV build has no {codec} encoder")
    path = write_video(tmp_path / name, 20, codec=codec, pix_fmt=pix_fmt, gop=8)
    indices = [0, 7, 8, 13, 19, 19]
    with open_video(path, backend) as source:
        assert source.info.num_frames == 20
        assert source.info.fps == pytest.approx(25.0)
        frames = source.get_frames(indices)
    assert frames.shape == (6, H, W, 3)
    assert identities(frames, 20) == indices


@pytest.mark.parametrize(("name", "codec", "pix_fmt"), CODECS, ids=[c[0] for c in CODECS])
def test_pyav_long_sequential_pass_equals_a_full_decode(name: str, codec: str, pix_fmt: str,
                                                        tmp_path: Path) -> None:
    """Far-apart frames in one pass: FFmpeg skips unreferenced frames on the way (each codec
    decides which those are); the frames wanted must equal a decode of every frame."""
    try:
        av.codec.Codec(codec, "w")
    except Exception:  # noqa: BLE001 - PyAV raises UnknownCodecError / ValueError by version
        pytest.skip(f"this PyAV build has no {codec} encoder")
    options = {"bf": "2"} if codec == "mpeg4" else None  # MPEG-4 Part 2 B-frames (DivX/Xvid)
    path = write_video(tmp_path / name, 72, codec=codec, pix_fmt=pix_fmt, gop=72, options=options)
    with av.open(str(path)) as container:
        everything = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    wanted = [1, 30, 55, 71]
    with PyAVSource(path, strategy="sequential") as source:
        np.testing.assert_array_equal(source.get_frames(wanted), everything[wanted])
    assert identities(everything[wanted], 72) == wanted


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_h264_in_avi_without_frame_timestamps(backend: str, tmp_path: Path) -> None:
    """decord's seek lands in the wrong GOP here (frame 16 came back as frame 0), so decord
    must read such files in order, and auto hands them to PyAV, which can still seek."""
    _needs_decord(backend)
    path = write_video(tmp_path / "h264.avi", 20, gop=8)
    with open_video(path, backend) as source:
        assert identities(source.get_frames([16]), 20) == [16]
        assert identities(source.get_frames([19, 3, 30]), 20) == [19, 3, 19]
        if backend == "auto":
            assert source.backend == "pyav"


# -- PyAV: sequential pass vs seeking --------------------------------------------------------

SPARSE = [0, 3, 3, 29, 11, 47, 36]
DENSE = list(range(10, 20))


@pytest.mark.parametrize("video", ["h264", "bframes", "vfr_mkv"])
@pytest.mark.parametrize("indices", [SPARSE, DENSE], ids=["sparse", "dense"])
def test_pyav_strategies_return_identical_frames(
    video: str, indices: list[int], request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(video)
    results = {}
    for strategy in ("sequential", "seek", "auto"):
        with PyAVSource(path, strategy=strategy) as source:
            results[strategy] = source.get_frames(indices)
    np.testing.assert_array_equal(results["sequential"], results["seek"])
    np.testing.assert_array_equal(results["sequential"], results["auto"])
    expected = [min(i, 39) for i in indices]  # bframes/vfr have 40 frames, h264 48
    assert identities(results["seek"], 48) in (indices, expected)


def test_pyav_seeks_only_when_sparse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_video(tmp_path / "gop8.mp4", 60, gop=8)
    seeks: list[int] = []
    real_seek = PyAVSource._seek

    def spy(self: PyAVSource, target: int) -> None:
        seeks.append(target)
        real_seek(self, target)

    monkeypatch.setattr(PyAVSource, "_seek", spy)
    with PyAVSource(path) as source:
        assert identities(source.get_frames([1, 2, 4]), 60) == [1, 2, 4]
        assert seeks == []  # dense: one pass
        assert source._last is not None and source._last[0] == 4  # stopped after the last wanted
        assert identities(source.get_frames([30, 58]), 60) == [30, 58]
        assert seeks == [30, 58]  # sparse: jump to the keyframes before 30 and 58


@pytest.mark.parametrize("ext", [".mkv", ".ts"])
def test_pyav_seeks_in_containers_without_a_sample_index(
    ext: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MKV lists its keyframes in cues that FFmpeg reads on the first seek; MPEG-TS lists none,
    so the keyframe interval is learned from the keyframes decoded. Either way sparse frames
    must be reached by seeking (not by decoding the whole file), B-frames included."""
    path = write_video(tmp_path / f"gop8{ext}", 96, gop=8, options={"preset": "fast", "bf": "2"})
    wanted = [5, 20, 45, 70, 93]
    with PyAVSource(path, strategy="sequential") as source:
        expected = source.get_frames(wanted)
    assert identities(expected, 96) == wanted
    decoded: list[int] = []
    real_next = PyAVSource._next_frame

    def counting(self: PyAVSource) -> tuple[int, object] | None:
        item = real_next(self)
        if item is not None:
            decoded.append(item[0])
        return item

    monkeypatch.setattr(PyAVSource, "_next_frame", counting)
    with PyAVSource(path) as source:
        np.testing.assert_array_equal(source.get_frames(wanted), expected)
        assert source._can_seek  # no seek misfired (that would fall back to one pass)
    # One pass would decode 94 frames; seeking skips most GOPs between the wanted frames.
    assert len(decoded) < 60, decoded


# Three non-reference B-frames between references; x264 picks them for panning content (it
# codes frame_pattern's videos as P-frames only).
FORCED_B_FRAMES = {"preset": "fast", "x264-params": "bframes=3:b-adapt=0:b-pyramid=none"}


def _panning_video(path: Path, num_frames: int) -> tuple[Path, np.ndarray]:
    """A panning noise texture with B-frames, and all its frames as one full decode gives them."""
    texture = np.random.default_rng(0).integers(0, 256, (H + num_frames, W + num_frames, 3),
                                                dtype=np.uint8)
    frames = [texture[i // 2:i // 2 + H, i:i + W] for i in range(num_frames)]
    write_video(path, frames=frames, options=FORCED_B_FRAMES)
    with av.open(str(path)) as container:
        types = [f.pict_type for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert sum(t == av.video.frame.PictureType.B for t in types) >= num_frames // 2
    return path, decoded


def test_pyav_skips_unreferenced_frames_far_from_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Non-reference B-frames far before a wanted frame are skipped, never the wanted frames:
    the frames equal a full decode's, with far fewer frames decoded."""
    path, truth = _panning_video(tmp_path / "bf.mp4", 120)
    wanted = [7, 40, 41, 77, 118, 119]
    count = 0
    real_next = PyAVSource._next_frame

    def counting(self: PyAVSource) -> tuple[int, object] | None:
        nonlocal count
        item = real_next(self)
        count += item is not None
        return item

    monkeypatch.setattr(PyAVSource, "_next_frame", counting)
    with PyAVSource(path, strategy="sequential") as source:
        np.testing.assert_array_equal(source.get_frames(wanted), truth[wanted])
    assert count < 90, count  # 120 without skipping


def test_pyav_past_the_end_after_skipping_clamps_to_the_real_last_frame(tmp_path: Path) -> None:
    """A header that overcounts: the end is met while skipping (the last frames before it
    may be skipped B-frames), so decoding runs again without skipping and clamps to the real
    last frame."""
    path, truth = _panning_video(tmp_path / "bf.mp4", 60)
    with PyAVSource(path) as source:
        source.info = VideoInfo(200, source.info.fps, 8.0, source.info.width, source.info.height)
        frames = source.get_frames([10, 150])
    np.testing.assert_array_equal(frames, truth[[10, 59]])


# -- broken and lying files ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_truncated_mp4_gives_frames_or_a_clean_error(backend: str, h264: Path,
                                                     tmp_path: Path) -> None:
    _needs_decord(backend)
    data = h264.read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    try:
        with open_video(path, backend) as source:
            frames = source.get_frames([0, 10, 47])
    except VideoDecodeError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:
        assert frames.shape == (3, H, W, 3)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("ext", [".mkv", ".avi"])
def test_stream_that_ends_early_clamps_to_the_last_decodable_frame(
    backend: str, ext: str, tmp_path: Path
) -> None:
    """Cut in half, these still open; the AVI header keeps claiming 60 frames (PyAV believes it,
    decord counts what is there), so past-the-end indices must clamp, not fail."""
    _needs_decord(backend)
    full = write_video(tmp_path / f"full{ext}", 60, gop=10)
    data = full.read_bytes()
    path = tmp_path / f"half{ext}"
    path.write_bytes(data[: len(data) // 2])
    with open_video(path, backend) as source:
        frames = source.get_frames([0, 5, 59, 59])
        real_end = source.info.num_frames
        assert 5 < real_end < 60
        again = source.get_frames([0, 59])
    found = identities(frames, 60)
    assert found[:2] == [0, 5]
    # The last frame; the cut damages the last few, which FFmpeg conceals with earlier content.
    assert real_end - 4 <= found[2] <= real_end - 1
    np.testing.assert_array_equal(frames[2], frames[3])
    # The damaged last frame is error-concealed, which FFmpeg's frame threads do not make
    # bit-exact from run to run; it must still be the same frame.
    assert np.abs(again[1].astype(np.int16) - frames[2].astype(np.int16)).mean() < 1.0


def test_pyav_header_overcount_is_corrected(tmp_path: Path) -> None:
    full = write_video(tmp_path / "full.avi", 60, codec="mpeg4", gop=10)
    data = full.read_bytes()
    path = tmp_path / "half.avi"
    path.write_bytes(data[: len(data) // 2])
    for strategy in ("sequential", "seek"):
        with PyAVSource(path, strategy=strategy) as source:
            count = source.info.num_frames
            with av.open(str(path)) as container:  # the frames that are there, not the header's 60
                decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            assert count == len(decoded) < 60
            assert source.info.duration_s == pytest.approx(count / 25)
            last = source.get_frames([59])  # past the end: the last frame there is
            np.testing.assert_array_equal(last[0], decoded[-1])


def _missing(path: Path) -> Path:
    return path


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize(
    ("name", "make"),
    [("empty.mp4", mf.zero_byte), ("noise.mp4", mf.random_bytes), ("notes.avi", mf.text_file),
     ("missing.mp4", _missing), ("folder.mp4", mf.directory), ("loop.mp4", mf.symlink_to_itself)],
    ids=["zero-byte", "random-bytes", "text-avi", "missing", "directory", "symlink-loop"],
)
def test_unreadable_files_raise_one_line_errors(backend: str, name: str, make,
                                                tmp_path: Path) -> None:
    _needs_decord(backend)
    path = make(tmp_path / name)
    with pytest.raises(VideoDecodeError) as info:
        with open_video(path, backend) as source:
            source.get_frames([0])
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert info.value.path == str(path)


# -- auto backend ----------------------------------------------------------------------------


def test_auto_serves_with_pyav(h264: Path) -> None:
    with open_video(h264, "auto") as source:
        assert source.backend == "pyav"
        assert identities(source.get_frames([3, 40]), 48) == [3, 40]


def _break_pyav_open(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: PyAVSource, *args: object) -> None:
        raise VideoDecodeError(self.path, "not a readable video (simulated)")

    monkeypatch.setattr(PyAVSource, "_open", broken)


def test_auto_falls_back_to_decord_when_pyav_cannot_open(
    h264: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("decord")
    _break_pyav_open(monkeypatch)
    with open_video(h264, "auto") as source:
        assert source.backend == "decord"
        assert identities(source.get_frames([3, 40]), 48) == [3, 40]


def test_auto_falls_back_to_decord_when_pyav_fails_mid_decode(
    h264: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("decord")

    def broken(self: PyAVSource, indices: list[int]) -> np.ndarray:
        raise VideoDecodeError(self.path, "no frame could be decoded (simulated)")

    monkeypatch.setattr(PyAVSource, "get_frames", broken)
    with open_video(h264, "auto") as source:
        assert source.backend == "pyav"
        frames = source.get_frames([3, 40])
        assert source.backend == "decord"
    assert identities(frames, 48) == [3, 40]


def test_auto_reports_both_reasons_when_both_fail(
    h264: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decord = pytest.importorskip("decord")
    _break_pyav_open(monkeypatch)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated decord failure")

    monkeypatch.setattr(decord, "VideoReader", broken)
    with pytest.raises(VideoDecodeError) as info:
        open_video(h264, "auto")
    assert "not a readable video (simulated)" in info.value.reason
    assert "simulated decord failure" in info.value.reason
    assert "\n" not in str(info.value)


def test_auto_without_decord_reports_pyavs_reason(
    h264: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decord(*args: object, **kwargs: object) -> None:
        raise ImportError("No module named 'decord'")

    _break_pyav_open(monkeypatch)
    monkeypatch.setattr(video_mod.auto, "DecordSource", no_decord)
    with pytest.raises(VideoDecodeError, match=r"not a readable video \(simulated\)$"):
        open_video(h264)


def test_unknown_backend_is_a_config_error(h264: Path) -> None:
    with pytest.raises(ConfigError, match="unknown video backend 'opencv'"):
        open_video(h264, "opencv")


def test_video_extensions() -> None:
    assert {".mp4", ".avi", ".mkv", ".mov", ".webm"} <= VIDEO_EXTENSIONS
    assert ".gif" not in VIDEO_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in VIDEO_EXTENSIONS)


def test_decoders_are_imported_lazily() -> None:
    code = (
        "import sys, xmodal.data.video, xmodal.data.image, xmodal.data.sampling; "
        "print(sorted({'av', 'decord'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("debug", [False, True])
def test_decord_native_log_lines_are_silenced_unless_debugging(
    debug: bool, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """decord's C++ prints its own "[HH:MM:SS] video_reader.cc:NN: ERROR ..." to fd 2; the user
    gets our one line instead (XMODAL_DEBUG=1 keeps decord's, for debugging)."""
    pytest.importorskip("decord")
    if debug:
        monkeypatch.setenv("XMODAL_DEBUG", "1")
    else:
        monkeypatch.delenv("XMODAL_DEBUG", raising=False)
    path = tmp_path / "junk.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match="decord cannot open it"):
        open_video(path, backend="decord")
    assert ("video_reader.cc" in capfd.readouterr().err) is debug


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_a_name_that_is_not_utf8_is_read(backend: str, h264: Path, tmp_path: Path) -> None:
    """Latin-1 bytes from an old archive: decord encodes names as UTF-8, so it gets the file
    through /proc/self/fd; every backend returns the frames and closes what it opened."""
    _needs_decord(backend)
    name = os.path.join(os.fsencode(tmp_path), b"caf\xe9.mp4")
    with open(name, "wb") as file:
        file.write(h264.read_bytes())
    before = len(os.listdir("/proc/self/fd"))
    with open_video(os.fsdecode(name), backend) as source:
        assert identities(source.get_frames([3, 40]), 48) == [3, 40]
    assert len(os.listdir("/proc/self/fd")) == before


def _decode_in_child(path: str, backend: str) -> np.ndarray:
    with open_video(path, backend=backend) as source:
        return source.get_frames([0, 20, 47])


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_a_child_forked_after_the_parent_decoded_still_decodes(h264: Path, backend: str) -> None:
    """DataLoader workers are forked; state a converter or decoder left in the parent (PyAV
    18.1.1 keeps one swscale context with its own threads per thread) must not make the child
    wait forever on threads that were not copied."""
    import multiprocessing

    _needs_decord(backend)
    parent = _decode_in_child(str(h264), backend)  # the parent decodes first
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(_decode_in_child, (str(h264), backend)).get(timeout=60)
    assert identities(child, 48) == [0, 20, 47]
    np.testing.assert_array_equal(child, parent)
