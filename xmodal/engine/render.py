"""``xmodal render``: a video re-encoded with the predicted label and score drawn on every frame.

Each frame shows the label of the window whose centre is nearest to it (``segments``; one
label throughout without ``--window``), as MMAction2's long-video demo labels each frame from
the window around it. The output has the frames a player shows, at their own presentation
times (a variable rate stays variable), upright, at the size a player shows (odd sizes are
padded by a pixel: H.264 in 4:2:0 needs even ones), encoded in H.264 by PyAV; the first audio
stream is copied unchanged (re-encoded to AAC only when the output container cannot hold it).
Frames are decoded, drawn and encoded a few at a time, so a long video never sits in memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.engine.predict import Predictor
from xmodal.engine.reporting import Reporter
from xmodal.engine.segments import nearest_windows
from xmodal.errors import ConfigError, InputError, VideoDecodeError

TIME_BASE = Fraction(1, 90000)  # MPEG's 90 kHz clock: exact for 24, 25, 30, 29.97, 50, 60 fps
CHUNK = 16  # frames decoded per request
GIF_WIDTH = 320
GIF_MAX_FPS = 10.0
GIF_MAX_FRAMES = 150
OUTPUT_SUFFIXES = (".mp4", ".mov", ".mkv")


@dataclass
class RenderSummary:
    out: Path
    frames: int
    fps: float
    width: int
    height: int
    audio: str  # "copied", "re-encoded to AAC", or "none"
    record: dict[str, Any]  # the prediction drawn
    gif: Path | None = None


@dataclass(frozen=True)
class Caption:
    """What one frame shows: a class and its score."""

    label: str
    score: float


def frame_captions(record: dict[str, Any], frame_mid_s: np.ndarray) -> list[Caption]:
    """The caption of each frame: its nearest window's label, or the file's without windows."""
    clips = record.get("clips") or []
    if not clips:
        return [Caption(record["label"], record["score"])] * len(frame_mid_s)
    nearest = nearest_windows([c["start_s"] for c in clips], [c["end_s"] for c in clips], frame_mid_s)
    captions = [Caption(c["label"], c["score"]) for c in clips]
    return [captions[k] for k in nearest]


def class_colour(index: int) -> tuple[int, int, int]:
    """A distinct, dark-enough colour per class index (golden-angle hues, white text on it)."""
    import colorsys

    r, g, b = colorsys.hls_to_rgb(((index * 137.508) % 360) / 360, 0.42, 0.55)
    return round(r * 255), round(g * 255), round(b * 255)


class Painter:
    """Draws captions in the top-left corner: white text on the class's colour."""

    def __init__(self, classes: Sequence[str], height: int) -> None:
        from PIL import ImageFont

        self.index = {name: i for i, name in enumerate(classes)}
        self.size = max(12, round(height / 16))
        self.font = ImageFont.load_default(size=self.size)
        self._patches: dict[Caption, np.ndarray] = {}

    def patch(self, caption: Caption) -> np.ndarray:
        """(h, w, 3) uint8 box with the caption, made once per caption."""
        if caption not in self._patches:
            from PIL import Image, ImageDraw

            from xmodal.names import display

            text = f"{display(caption.label)} {caption.score:.2f}"
            pad = max(2, self.size // 4)
            left, top, right, bottom = self.font.getbbox(text)
            box = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad),
                            class_colour(self.index.get(caption.label, 0)))
            ImageDraw.Draw(box).text((pad - left, pad - top), text, font=self.font, fill=(255, 255, 255))
            self._patches[caption] = np.asarray(box)
        return self._patches[caption]

    def draw(self, frame: np.ndarray, caption: Caption) -> np.ndarray:
        patch = self.patch(caption)
        h, w = min(patch.shape[0], frame.shape[0]), min(patch.shape[1], frame.shape[1])
        frame[:h, :w] = patch[:h, :w]
        return frame


def render_video(predictor: Predictor, video: str | os.PathLike[str], out: str | os.PathLike[str], *,
                 gif: bool = False, reporter: Reporter | None = None) -> RenderSummary:
    """Classify ``video`` with ``predictor`` (its windows, if set) and write the annotated copy."""
    import av

    from xmodal.data.video import open_video

    video, out = Path(video), Path(out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"{out}: the output must end in {', '.join(OUTPUT_SUFFIXES)}")
    if not video.exists():
        from xmodal.errors import missing_reason

        raise InputError(video, missing_reason(video))
    record = next(iter(predictor.iter_predict([video], reporter)))
    if "error" in record:
        raise VideoDecodeError(video, record["error"])
    if record.get("kind") != "video":
        raise InputError(video, "is an image; render draws on videos")
    reporter = reporter or Reporter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial{out.suffix}")
    try:
        with open_video(video, predictor.reader.backend) as source:
            timeline, info = source.timeline, source.info
            ends = np.append(timeline.starts_s[1:], timeline.end_s)
            captions = frame_captions(record, (timeline.starts_s + ends) / 2)
            painter = Painter(predictor.classes, info.height)
            preview = _GifFrames(info.num_frames, info.fps) if gif else None
            with av.open(str(tmp), "w") as container:
                writer = _Writer(container, video, info)
                frames = _frames(source, info.num_frames)
                for index, frame in reporter.track(enumerate(frames), total=info.num_frames,
                                                   desc="render"):
                    frame = painter.draw(frame, captions[index])
                    writer.write(frame, float(timeline.starts_s[index]))
                    if preview is not None:
                        preview.offer(index, frame)
                writer.close()
        os.replace(tmp, out)
    except av.FFmpegError as exc:
        raise VideoDecodeError(video, f"cannot write {out} ({exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
    gif_path = preview.save(out.with_suffix(".gif")) if preview is not None else None
    return RenderSummary(out, info.num_frames, info.fps, info.width, info.height, writer.audio, record,
                         gif_path)


def _frames(source: Any, count: int) -> Iterator[np.ndarray]:
    for start in range(0, count, CHUNK):
        yield from source.get_frames(list(range(start, min(count, start + CHUNK))))


class _Writer:
    """H.264 video at the frames' own times, and the input's first audio stream, interleaved."""

    def __init__(self, container: Any, source: Path, info: Any) -> None:
        import av

        self.container = container
        self.video = container.add_stream("libx264", rate=Fraction(info.fps).limit_denominator(100_000))
        self.video.width, self.video.height = info.width + info.width % 2, info.height + info.height % 2
        self.video.pix_fmt = "yuv420p"
        self.video.codec_context.time_base = TIME_BASE
        self.video.options = {"crf": "20", "preset": "medium"}
        self.audio, self._audio_in, self._audio_out, self._packets, self._resampler = (
            "none", None, None, iter(()), None)
        self._pending_packet: Any = None
        self._input = av.open(str(source))
        # Frame times count from the first frame; the audio keeps the file's clock, so the
        # video is put back where it started in that clock, and the two stay in sync.
        stream = self._input.streams[info.stream]
        self.start_s = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        if self._input.streams.audio:
            self._open_audio(self._input.streams.audio[0])

    def _open_audio(self, stream: Any) -> None:
        self._audio_in = stream
        if stream.codec_context.name in self.container.supported_codecs:
            self._audio_out = self.container.add_stream_from_template(stream)
            self.audio = "copied"
            self._packets = (p for p in self._input.demux(stream) if p.size)
        else:
            self._audio_out = self.container.add_stream("aac", rate=stream.rate)
            self.audio = "re-encoded to AAC"
            self._packets = (p for p in self._input.demux(stream))

    def write(self, array: np.ndarray, time_s: float) -> None:
        import av

        if array.shape[1] != self.video.width or array.shape[0] != self.video.height:
            array = np.pad(array, ((0, self.video.height - array.shape[0]),
                                   (0, self.video.width - array.shape[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
        frame.pts, frame.time_base = round((self.start_s + time_s) / TIME_BASE), TIME_BASE
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self._audio_until(self.start_s + time_s)

    def _audio_until(self, time_s: float | None) -> None:
        """Mux the audio up to ``time_s`` (all of it when None), so the streams interleave."""
        while self._audio_out is not None:
            packet = self._pending_packet if self._pending_packet is not None else next(self._packets, None)
            self._pending_packet = None
            if packet is None:
                break
            at = None if packet.pts is None else float(packet.pts * packet.time_base)
            if time_s is not None and at is not None and at > time_s:
                self._pending_packet = packet
                break
            if self.audio == "copied":
                packet.stream = self._audio_out
                self.container.mux(packet)
            else:
                for frame in packet.decode():
                    frame.pts = None
                    for out in self._audio_out.encode(frame):
                        self.container.mux(out)

    def close(self) -> None:
        for packet in self.video.encode():
            self.container.mux(packet)
        self._audio_until(None)
        if self.audio == "re-encoded to AAC":
            for packet in self._audio_out.encode():
                self.container.mux(packet)
        self._input.close()


class _GifFrames:
    """Every k-th annotated frame, small: at most GIF_MAX_FPS and GIF_MAX_FRAMES over the video."""

    def __init__(self, count: int, fps: float) -> None:
        self.step = max(1, math.ceil(fps / GIF_MAX_FPS), math.ceil(count / GIF_MAX_FRAMES))
        self.frame_ms = max(20, round(1000 * self.step / fps))  # browsers clamp shorter delays
        self.images: list[Any] = []

    def offer(self, index: int, frame: np.ndarray) -> None:
        if index % self.step == 0:
            from PIL import Image

            image = Image.fromarray(frame)
            height = max(1, round(image.height * GIF_WIDTH / image.width))
            self.images.append(image.resize((GIF_WIDTH, height), Image.BILINEAR)
                               if image.width > GIF_WIDTH else image)

    def save(self, path: Path) -> Path:
        first, *rest = self.images
        tmp = path.with_name(f".{path.name}.partial")
        first.save(tmp, format="GIF", save_all=True, append_images=rest, duration=self.frame_ms, loop=0)
        os.replace(tmp, path)
        return path
