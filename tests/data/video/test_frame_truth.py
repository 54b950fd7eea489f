"""Frame truth: the frames sampled are the frames a player shows, on files whose headers lie.

Each kind of fault users have reported against video decoders gets two files made differently
(another container or codec). The sampled frames are checked against a full front-to-back
decode: the number on screen at each sampled time (see tests/video_truth.py).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests import video_truth as vt
from xmodal.data.sampling import tsn_indices
from xmodal.data.video import open_video, sample_frames
from xmodal.errors import VideoDecodeError

av = pytest.importorskip("av")
FRAMES = 8


def _decord_or_skip() -> None:
    pytest.importorskip("decord")


def expected_numbers(truth: list[tuple[float, int]], span: float, frames: int = FRAMES) -> list[int]:
    """What TSN evaluation sampling must see: the number on screen at each segment's sample time
    (slot centres of ``len(truth)`` equal cells of the span, see xmodal.data.video.timeline)."""
    slots = tsn_indices(len(truth), frames, train=False)
    times = (slots + 0.5) * span / len(truth)
    return [vt.on_screen(truth, t) for t in times]


def assert_frame_truth(path: Path, backend: str, fps: float, stream: int | None = None) -> None:
    truth = vt.decoded_truth(path, stream)
    span = vt.truth_span(truth, fps)
    clip = sample_frames(path, frames=FRAMES, backend=backend)
    assert clip.info.num_frames == len(truth)
    assert clip.info.duration_s == pytest.approx(span, abs=1e-3)
    seen = [vt.read_number(frame) for frame in clip.frames]
    assert seen == expected_numbers(truth, span)
    when = {number: t for t, number in truth}
    np.testing.assert_allclose(clip.times_s, [when[n] for n in seen], atol=1e-3)
    assert all(0 <= t < span for t in clip.times_s)


# -- 1. frame count and time span from the header ---------------------------------------------


@pytest.fixture(scope="module")
def edit_list_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Cuts with stream copy: the GOP before the cut is stored, an edit list hides it."""
    root = tmp_path_factory.mktemp("editlist")
    h264 = vt.write_numbered(root / "long.mp4", 250, gop=250, options={"bf": "3"})
    mpeg4 = vt.write_numbered(root / "long.avi", 150, codec="mpeg4", gop=100,
                              options={"bf": "2"})
    return {"mp4": vt.stream_copy_cut(h264, root / "cut.mp4", 6.3, 2),
            "mov": vt.stream_copy_cut(mpeg4, root / "cut.mov", 3.3, 1.5)}


@pytest.mark.parametrize("kind", ["mp4", "mov"])
@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_edit_list_cut_is_sampled_as_shown(edit_list_files: dict[str, Path], kind: str,
                                           backend: str) -> None:
    path = edit_list_files[kind]
    truth = vt.decoded_truth(path)
    with av.open(str(path)) as container:  # the file stores more frames than it shows
        assert container.streams.video[0].frames > len(truth)
    assert_frame_truth(path, backend, fps=25)


@pytest.mark.parametrize("kind", ["mp4", "mov"])
def test_decord_never_misreads_an_edit_list(edit_list_files: dict[str, Path], kind: str) -> None:
    _decord_or_skip()
    path = edit_list_files[kind]
    try:
        assert_frame_truth(path, "decord", fps=25)
    except VideoDecodeError as exc:  # refusing is right; a wrong frame is not
        assert "use --video-backend pyav or auto" in exc.reason


def test_windows_lie_inside_an_edit_list_cut(edit_list_files: dict[str, Path]) -> None:
    from xmodal.engine.inputs import ClipReader

    path = edit_list_files["mp4"]
    span = vt.truth_span(vt.decoded_truth(path), 25)
    _, info = ClipReader(frames=4, input_size=64, resize_size=64, window_s=1.0,
                         stride_s=0.5)._decode_video(path)
    assert info["duration_s"] == pytest.approx(span, abs=1e-3)
    assert info["windows"][0][0] == 0 and info["windows"][-1][1] == pytest.approx(span, abs=1e-3)
    for (start, end), times in zip(info["windows"], info["window_sampled_s"], strict=True):
        assert start < end <= span + 1e-6
        assert all(start - 0.2 <= t < end for t in times)


def _joined(parts: list[Path], out: Path) -> Path:
    out.write_bytes(b"".join(p.read_bytes() for p in parts))  # `cat a b > out`
    return out


@pytest.fixture(scope="module")
def joined_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two recordings joined with cat: the second one's clock starts again from its own zero."""
    root = tmp_path_factory.mktemp("joined")
    ts = [vt.write_numbered(root / f"part{k}.ts", range(50 * k, 50 * k + 50), gop=25,
                            container_format="mpegts") for k in range(2)]
    ps = [vt.write_numbered(root / f"part{k}.mpg", range(40 * k, 40 * k + 40), codec="mpeg2video",
                            gop=12, container_format="mpeg") for k in range(2)]
    return {"ts": _joined(ts, root / "joined.ts"), "mpg": _joined(ps, root / "joined.mpg")}


@pytest.mark.parametrize("kind", ["ts", "mpg"])
@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_joined_streams_are_sampled_over_both_parts(joined_files: dict[str, Path], kind: str,
                                                   backend: str) -> None:
    path = joined_files[kind]
    assert_frame_truth(path, backend, fps=25)
    seen = [vt.read_number(f) for f in sample_frames(path, FRAMES, backend).frames]
    assert min(seen) < 20 and max(seen) > 60  # both parts


def test_decord_refuses_joined_streams(joined_files: dict[str, Path]) -> None:
    _decord_or_skip()
    with pytest.raises(VideoDecodeError, match="pyav or auto"):
        open_video(joined_files["mpg"], "decord")


@pytest.fixture(scope="module")
def understated_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Headers that count fewer frames, or a shorter span, than the stream holds."""
    root = tmp_path_factory.mktemp("understated")
    avi = vt.write_numbered(root / "forty.avi", 100, codec="mpeg4", gop=12)
    mkv = vt.write_numbered(root / "short.mkv", 100, gop=12)
    mp4 = vt.write_numbered(root / "mdhd.mp4", 100, gop=12)
    mov = vt.write_numbered(root / "mdhd.mov", 100, codec="mpeg4", gop=12)
    return {"avi-header-40": vt.understate_avi_frame_count(avi, 40),
            "mkv-duration-40%": vt.understate_mkv_duration(mkv, 0.4),
            "mp4-mdhd-30x": vt.shorten_mp4_track_duration(mp4, 30),
            "mov-mdhd-30x": vt.shorten_mp4_track_duration(mov, 30)}


@pytest.mark.parametrize("kind", ["avi-header-40", "mkv-duration-40%", "mp4-mdhd-30x",
                                  "mov-mdhd-30x"])
@pytest.mark.parametrize("backend", ["pyav", "auto", "decord"])
def test_understated_headers_do_not_hide_frames(understated_files: dict[str, Path], kind: str,
                                                backend: str) -> None:
    if backend == "decord":
        _decord_or_skip()
    path = understated_files[kind]
    try:
        assert_frame_truth(path, backend, fps=25)
    except VideoDecodeError as exc:
        assert backend == "decord" and "pyav or auto" in exc.reason
    assert len(vt.decoded_truth(path)) == 100


# -- 2. variable frame rate --------------------------------------------------------------------


def _paused_pts() -> list[int]:
    """ms timestamps: frames 0-59 at 30 fps, frame 60 on screen from 2 s to 12 s, then 30 fps."""
    before = [round(k * 1000 / 30) for k in range(60)]
    return before + [2000] + [12000 + round(k * 1000 / 30) for k in range(30)]


@pytest.fixture(scope="module")
def paused_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vfr")
    pts = _paused_pts()
    ms = Fraction(1, 1000)
    return {"mp4": vt.write_numbered(root / "paused.mp4", len(pts), fps=30, pts=pts, time_base=ms,
                                     options={"bf": "2"}),
            "mkv": vt.write_numbered(root / "paused.mkv", len(pts), fps=30, pts=pts, time_base=ms,
                                     codec="mpeg4", container_format="matroska")}


@pytest.mark.parametrize("kind", ["mp4", "mkv"])
@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_variable_frame_rate_is_sampled_by_time(paused_files: dict[str, Path], kind: str,
                                                backend: str) -> None:
    path = paused_files[kind]
    assert_frame_truth(path, backend, fps=30)
    with open_video(path, backend) as source:  # at 2.5-11 s the frame on screen is frame 60
        clip = source.read_times([2.5, 5.0, 11.0, 11.99, 12.0])
    assert [vt.read_number(f) for f in clip.frames] == [60, 60, 60, 60, 61]
    np.testing.assert_allclose(clip.times_s, [2.0, 2.0, 2.0, 2.0, 12.0])


@pytest.mark.parametrize("kind", ["mp4", "mkv"])
def test_decord_and_pyav_agree_on_variable_frame_rate(paused_files: dict[str, Path],
                                                      kind: str) -> None:
    _decord_or_skip()
    path = paused_files[kind]
    pyav = sample_frames(path, FRAMES, "pyav")
    try:
        dec = sample_frames(path, FRAMES, "decord")
    except VideoDecodeError as exc:
        assert "pyav or auto" in exc.reason
        return
    assert [vt.read_number(f) for f in dec.frames] == [vt.read_number(f) for f in pyav.frames]
    np.testing.assert_allclose(dec.times_s, pyav.times_s)


# -- 3. which stream -----------------------------------------------------------------------------


def _with_thumbnail_first(path: Path, container_format: str) -> Path:
    """A one-frame MJPEG thumbnail track first (as drone cameras write), then the real video."""
    with av.open(str(path), "w", format=container_format) as container:
        thumb = container.add_stream("mjpeg", rate=1)
        thumb.width, thumb.height, thumb.pix_fmt = 64, 48, "yuvj420p"
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = vt.W, vt.H, "yuv420p"
        video.options = {"preset": "fast"}
        still = np.full((48, 64, 3), 30, np.uint8)
        container.mux(thumb.encode(av.VideoFrame.from_ndarray(still, format="rgb24")))
        container.mux(thumb.encode())
        for k in range(50):
            container.mux(video.encode(av.VideoFrame.from_ndarray(vt.numbered_frame(k), format="rgb24")))
        container.mux(video.encode())
    return path


@pytest.fixture(scope="module")
def thumbnail_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("streams")
    files = {"mp4": _with_thumbnail_first(root / "drone.mp4", "mp4"),
             "mov": _with_thumbnail_first(root / "drone.mov", "mov")}
    video = vt.write_numbered(root / "plain.mp4", 50)
    cover = root / "cover.jpg"
    from PIL import Image

    Image.fromarray(np.full((60, 80, 3), 200, np.uint8)).save(cover)
    files["mkv-still-first"] = root / "still_first.mkv"  # a one-frame MJPEG track, then the video
    vt.ffmpeg("-i", str(video), "-i", str(cover), "-map", "1", "-map", "0", "-c", "copy",
              str(files["mkv-still-first"]))
    files["mp4-cover-art"] = root / "cover_art.mp4"  # cover art: an attached picture
    vt.ffmpeg("-i", str(video), "-i", str(cover), "-map", "1", "-map", "0", "-c", "copy",
              "-disposition:v:0", "attached_pic", str(files["mp4-cover-art"]))
    return files


@pytest.mark.parametrize("kind", ["mp4", "mov", "mkv-still-first", "mp4-cover-art"])
@pytest.mark.parametrize("backend", ["pyav", "auto", "decord"])
def test_the_moving_stream_is_read_not_a_thumbnail(thumbnail_files: dict[str, Path], kind: str,
                                                   backend: str) -> None:
    if backend == "decord":
        _decord_or_skip()
    path = thumbnail_files[kind]
    with av.open(str(path)) as container:
        real = next(s.index for s in container.streams.video if s.codec_context.name == "h264")
    try:
        assert_frame_truth(path, backend, fps=25, stream=real)
    except VideoDecodeError as exc:
        assert backend == "decord" and "pyav or auto" in exc.reason
        return
    info = sample_frames(path, 2, backend).info
    assert (info.stream, info.width, info.height, info.num_frames) == (real, vt.W, vt.H, 50)


# -- 4. display matrix -------------------------------------------------------------------------

# (degrees counter-clockwise, hflip, vflip) -> where the red, green and blue corners are shown.
ORIENTATIONS = {
    (0, False, False): ("top-left", "top-right", "bottom-left"),
    (0, True, False): ("top-right", "top-left", "bottom-right"),  # a left-right mirror
    (0, False, True): ("bottom-left", "bottom-right", "top-left"),
    (180, False, False): ("bottom-right", "bottom-left", "top-right"),
    (90, False, False): ("bottom-left", "top-left", "bottom-right"),
    (270, False, False): ("top-right", "bottom-right", "top-left"),
    (90, True, False): ("bottom-right", "top-right", "bottom-left"),
    (90, False, True): ("top-left", "bottom-left", "top-right"),
}


@pytest.mark.parametrize("container", ["mp4", "mov"])
@pytest.mark.parametrize("display", list(ORIENTATIONS), ids=lambda d: f"{d[0]}-h{int(d[1])}v{int(d[2])}")
@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_display_matrix_is_applied_whole(display: tuple[int, bool, bool], container: str,
                                         backend: str, tmp_path: Path) -> None:
    codec = "libx264" if container == "mp4" else "mpeg4"
    path = vt.write_numbered(tmp_path / f"shown.{container}", 5, codec=codec, display=display)
    frame = sample_frames(path, 1, backend).frames[0]
    red, green, blue = ORIENTATIONS[display]
    corners = vt.corner_colours(frame)
    assert (corners[red], corners[green], corners[blue]) == ("red", "green", "blue")
    turned = display[0] in (90, 270)
    assert frame.shape[:2] == ((vt.W, vt.H) if turned else (vt.H, vt.W))


def test_decord_refuses_a_mirrored_video(tmp_path: Path) -> None:
    _decord_or_skip()
    path = vt.write_numbered(tmp_path / "mirror.mp4", 5, display=(0, True, False))
    with pytest.raises(VideoDecodeError, match="rotated or mirrored"):
        open_video(path, "decord")


# -- 5. non-square pixels ------------------------------------------------------------------------


def _disc(width: int, height: int, sar: Fraction) -> np.ndarray:
    """A frame whose disc is round once pixels are shown ``sar`` times as wide as tall."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = height * 0.35
    inside = ((xx - width / 2) * float(sar)) ** 2 + (yy - height / 2) ** 2 < radius**2
    frame = np.full((height, width, 3), 230, np.uint8)
    frame[inside] = 20
    return frame


def _disc_aspect(frame: np.ndarray) -> float:
    dark = frame.mean(axis=2) < 128
    rows, cols = np.flatnonzero(dark.any(axis=1)), np.flatnonzero(dark.any(axis=0))
    return (cols[-1] - cols[0] + 1) / (rows[-1] - rows[0] + 1)


@pytest.mark.parametrize(("name", "codec", "size", "sar", "shown"), [
    ("dvd-ntsc-wide.mp4", "libx264", (720, 480), Fraction(32, 27), (853, 480)),
    ("dvd-ntsc-4x3.mkv", "mpeg2video", (720, 480), Fraction(8, 9), (640, 480)),
])
@pytest.mark.parametrize("backend", ["pyav", "auto", "decord"])
def test_frames_come_at_the_display_aspect(name: str, codec: str, size: tuple[int, int],
                                           sar: Fraction, shown: tuple[int, int], backend: str,
                                           tmp_path: Path) -> None:
    if backend == "decord":
        _decord_or_skip()
    frame = _disc(*size, sar)
    path = vt.write_numbered(tmp_path / name, 3, codec=codec, size=size, sar=sar,
                             frames=[frame] * 3)
    clip = sample_frames(path, 1, backend)
    assert (clip.info.width, clip.info.height) == shown
    assert clip.frames.shape[1:3] == (shown[1], shown[0])
    assert _disc_aspect(clip.frames[0]) == pytest.approx(1.0, abs=0.03)
    with open_video(path, backend, short_side=224) as source:  # shrunk, still round
        small = source.get_frames([0])[0]
    assert min(small.shape[:2]) == 224
    assert _disc_aspect(small) == pytest.approx(1.0, abs=0.03)


# -- 6. decord on open-GOP HEVC ------------------------------------------------------------------


@pytest.mark.parametrize("container", ["mp4", "matroska"])
def test_decord_refuses_open_gop_hevc_and_auto_reads_it(container: str, tmp_path: Path) -> None:
    try:
        av.codec.Codec("libx265", "w")
    except Exception:  # noqa: BLE001 - an FFmpeg build without x265
        pytest.skip("PyAV's FFmpeg has no libx265")
    path = vt.write_numbered(
        tmp_path / f"open_gop.{'mp4' if container == 'mp4' else 'mkv'}", 200, codec="libx265",
        pix_fmt="yuv420p10le", container_format=container, gop=50,
        options={"x265-params": "keyint=50:min-keyint=50:open-gop=1:bframes=4:log-level=error"})
    if pytest.importorskip("decord"):
        with pytest.raises(VideoDecodeError, match="open-GOP HEVC"):
            open_video(path, "decord")
    assert_frame_truth(path, "auto", fps=25)
    with open_video(path, "auto") as source:
        got = [vt.read_number(f) for f in source.get_frames([5, 60, 110, 47, 149, 190, 99, 51])]
    assert got == [5, 60, 110, 47, 149, 190, 99, 51]


def test_closed_gop_hevc_is_not_called_open(tmp_path: Path) -> None:
    from xmodal.data.video.probe import probe

    path = vt.write_numbered(tmp_path / "closed.mp4", 60, codec="libx265", gop=20,
                             options={"x265-params": "keyint=20:open-gop=0:log-level=error"})
    assert probe(path).open_gop is False


# -- the records show what was classified --------------------------------------------------------


def test_check_and_label_agree_on_frames_duration_and_times(edit_list_files: dict[str, Path],
                                                            tmp_path: Path) -> None:
    from click.testing import CliRunner

    from xmodal.cli import cli

    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "cut.mp4").write_bytes(edit_list_files["mp4"].read_bytes())
    runner = CliRunner()
    checked = runner.invoke(cli, ["check", str(folder), "--all", "--json", "--workers", "1"])
    assert checked.exit_code == 0, checked.output
    facts = json.loads(checked.stdout.splitlines()[0])
    out = tmp_path / "labels.jsonl"
    labelled = runner.invoke(cli, ["label", str(folder), "--model", "efficientnet_lite0", "--out",
                                   str(out), "--window", "1", "--workers", "1", "--quiet"])
    assert labelled.exit_code == 0, labelled.output
    record = json.loads(out.read_text().splitlines()[0])
    truth = vt.decoded_truth(edit_list_files["mp4"])
    assert record["frames"] == facts["frames"] == len(truth)
    assert record["duration_s"] == facts["duration_s"] == pytest.approx(vt.truth_span(truth, 25), abs=1e-3)
    assert record["sampled_s"] == facts["sampled_s"]
    assert len(record["sampled_s"]) == 8 and all(0 <= t < record["duration_s"] for t in record["sampled_s"])
    for window in record["clips"]:
        assert window["start_s"] < window["end_s"] <= record["duration_s"]
        assert len(window["sampled_s"]) == 8
