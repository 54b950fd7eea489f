"""`xmodal render`: the video re-encoded with each frame's label drawn, its audio copied."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cli_harness import run_cli, tiny_model
from tests.utils import frame_pattern
from xmodal.engine.render import Caption, class_colour, frame_captions, render_video

W, H, FPS, FRAMES = 160, 120, 10, 40


def write_video_with_audio(path: Path, *, audio: bool = True) -> Path:
    """40 pattern frames at 10 fps with 4 s of a 440 Hz tone in AAC (16 kHz mono)."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.options = {"preset": "ultrafast"}
        sound = container.add_stream("aac", rate=16000, layout="mono") if audio else None
        for i in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, H, W), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            t = np.arange(16000 * FRAMES // FPS) / 16000
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, len(samples), 1024):
                chunk = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="fltp",
                                                   layout="mono")
                chunk.sample_rate, chunk.pts = 16000, start
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path


def read_output(path: Path) -> dict[str, Any]:
    import av

    with av.open(str(path)) as container:
        v = container.streams.video[0]
        info = {"codec": v.codec_context.name, "rate": v.average_rate, "size": (v.width, v.height),
                "audio": [a.codec_context.name for a in container.streams.audio]}
        info["times"] = [round(float(f.pts * f.time_base), 4) for f in container.decode(v)]
    with av.open(str(path)) as container:
        info["frames"] = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return info


def audio_packets(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def shown_classes(frames: list[np.ndarray], classes: list[str]) -> list[str]:
    """The class whose colour each frame's caption box has (read inside its padding)."""
    colours = np.array([class_colour(i) for i in range(len(classes))], dtype=np.float64)
    corners = [f[1:3, 1:3].reshape(-1, 3).mean(0) for f in frames]
    return [classes[int(np.argmin(np.abs(colours - c).sum(axis=1)))] for c in corners]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model"), ["alpha", "beta", "gamma"])


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video_with_audio(tmp_path_factory.mktemp("clip") / "clip.mp4")


def test_captions_follow_the_nearest_window() -> None:
    record = {"label": "alpha", "score": 0.5, "clips": [
        {"start_s": 0.0, "end_s": 2.0, "label": "alpha", "score": 0.9},
        {"start_s": 1.0, "end_s": 3.0, "label": "beta", "score": 0.8}]}
    mids = (np.arange(30) + 0.5) / 10
    assert frame_captions(record, mids) == [Caption("alpha", 0.9)] * 15 + [Caption("beta", 0.8)] * 15
    assert frame_captions({"label": "gamma", "score": 0.7}, mids[:3]) == [Caption("gamma", 0.7)] * 3


class FixedPredictions:
    """A Predictor's interface with chosen windows, so the drawn labels are known in advance."""

    classes = ["alpha", "beta", "gamma"]

    class reader:
        backend = "auto"

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record

    def iter_predict(self, inputs, reporter=None):
        yield {"path": str(inputs[0]), **self.record}


def test_every_frame_shows_its_window_and_the_audio_is_copied(clip: Path, tmp_path: Path) -> None:
    windows = [(0.0, 1.5, "alpha", 0.91), (1.0, 2.5, "gamma", 0.62), (2.5, 4.0, "beta", 0.77)]
    record = {"label": "alpha", "score": 0.6, "kind": "video", "frames": FRAMES, "duration_s": 4.0,
              "clips": [{"start_s": a, "end_s": b, "label": lab, "score": s} for a, b, lab, s in windows]}
    summary = render_video(FixedPredictions(record), clip, tmp_path / "out.mp4", gif=True)
    assert (summary.frames, summary.fps, summary.width, summary.height, summary.audio) == (
        FRAMES, FPS, W, H, "copied")
    out = read_output(tmp_path / "out.mp4")
    assert out["codec"] == "h264" and out["rate"] == FPS and out["size"] == (W, H)
    assert out["times"] == [round(i / FPS, 4) for i in range(FRAMES)]
    assert out["audio"] == ["aac"] and audio_packets(tmp_path / "out.mp4") == audio_packets(clip)
    # Frame i's middle is (i + 0.5) / 10 s; window centres 0.75, 1.75 and 3.25 s.
    expected = ["alpha"] * 13 + ["gamma"] * 12 + ["beta"] * 15
    assert shown_classes(out["frames"], FixedPredictions.classes) == expected
    # Below the caption the picture is the input's (only re-encoded).
    assert np.abs(out["frames"][20][60:].astype(int) - frame_pattern(20, H, W)[60:]).mean() < 6
    from PIL import Image

    gif = Image.open(summary.gif)
    assert gif.n_frames == FRAMES and gif.size == (W, H) and gif.info["duration"] == 100


def test_render_command_with_a_real_model(model: Path, clip: Path, tmp_path: Path) -> None:
    from xmodal.engine.predict import Predictor, load_model

    out = tmp_path / "labelled.mp4"
    run = run_cli("render", str(model), str(clip), "--window", "1", "--stride", "0.5", "--out", str(out))
    assert run.code == 0, run.err
    assert run.out == f"wrote {out}: 40 frames, 10 fps, 160x120, audio copied\n"
    frames = read_output(out)["frames"]
    assert len(frames) == FRAMES and not (tmp_path / ".labelled.mp4.partial.mp4").exists()
    assert np.abs(frames[0][:3, :3].astype(int) - frame_pattern(0, H, W)[:3, :3]).mean() > 40  # captioned
    # The same through the API: each frame's caption is its nearest window's prediction.
    predictor = Predictor(load_model(model), window_s=1.0, stride_s=0.5, workers=0)
    summary = render_video(predictor, clip, tmp_path / "api.mp4")
    assert len(summary.record["clips"]) == 7
    captions = frame_captions(summary.record, (np.arange(FRAMES) + 0.5) / FPS)
    assert shown_classes(read_output(tmp_path / "api.mp4")["frames"], predictor.classes) == [
        c.label for c in captions]


def test_a_silent_video_and_an_odd_size(model: Path, tmp_path: Path) -> None:
    from tests.utils import write_video

    src = write_video(tmp_path / "odd.mkv", 12, size=(65, 49), fps=5, codec="ffv1", pix_fmt="yuv444p")
    summary = render_video(FixedPredictions({"label": "beta", "score": 0.5, "kind": "video"}), src,
                           tmp_path / "odd.mp4")
    out = read_output(tmp_path / "odd.mp4")
    assert summary.audio == "none" and out["audio"] == [] and len(out["frames"]) == 12
    assert out["size"] == (66, 50)  # padded by a pixel: 4:2:0 H.264 needs even sides
    assert out["rate"] == Fraction(5)


@pytest.mark.parametrize("args, message", [
    (["missing.mp4", "--out", "o.mp4"], "missing.mp4: no such file"),
    (["photo.png", "--out", "o.mp4"], "photo.png: is an image; render draws on videos"),
    (["clip.mp4", "--out", "o.avi"], "o.avi: the output must end in .mp4, .mov, .mkv"),
    (["clip.mp4", "--out", "o.mp4", "--stride", "1"], None),
])
def test_bad_input_is_one_line(model: Path, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               args: list[str], message: str | None) -> None:
    from tests.utils import write_image

    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "photo.png")
    (tmp_path / "clip.mp4").symlink_to(clip)
    run = run_cli("render", str(model), *args)
    assert run.code == 2 and "Traceback" not in run.err
    if message:
        assert run.err_lines == [f"xmodal: error: {message}"]
    else:
        assert "--stride" in run.err
