"""Video decoding behind one small interface: the frames a player shows, sampled by time.

``probe`` picks the stream and builds the timeline from the packets; ``PyAVSource`` and
``DecordSource`` decode; ``open_video`` chooses (``auto``: PyAV, decord as a fallback);
``geometry`` turns frames upright with square pixels. decord and av are imported lazily, so
``import xmodal`` stays fast.
"""

from __future__ import annotations

from xmodal.data.video.auto import BACKENDS, AutoSource, open_video, read_clip, sample_frames
from xmodal.data.video.base import Clip, VideoInfo, VideoSource, set_decoder_threads
from xmodal.data.video.decord_backend import DecordSource
from xmodal.data.video.pyav_backend import PyAVSource

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
     ".ogv", ".ts"}
)

__all__ = [
    "BACKENDS", "VIDEO_EXTENSIONS", "AutoSource", "Clip", "DecordSource", "PyAVSource",
    "VideoInfo", "VideoSource", "open_video", "read_clip", "sample_frames",
    "set_decoder_threads",
]

