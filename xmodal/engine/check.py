"""``xmodal check``: find the files xmodal cannot decode, without changing anything.

Each file is decoded the way training and labelling read it (the TSN frames
of a clip, or the whole image), in an isolated worker with a timeout, so a
file that crashes or hangs the decoder is reported instead of stopping the scan.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmodal.engine.predict import describe_failure
from xmodal.engine.reporting import Reporter
from xmodal.engine.workers import DEFAULT_TIMEOUT_S, DecodePool


@dataclass
class FileCheck:
    """Decodes one file; picklable for the worker pool. Returns what was read."""

    frames: int = 8
    backend: str = "auto"

    def __call__(self, path: str) -> dict[str, Any]:
        from xmodal.data.image import load_image
        from xmodal.data.sampling import TSNSampler
        from xmodal.data.video import read_clip
        from xmodal.engine.inputs import media_kind, unsupported_reason
        from xmodal.errors import InputError

        file = Path(path)
        kind = media_kind(file)
        if file.is_dir():
            raise InputError(file, "is a directory, not a media file")
        if kind == "image":
            image = load_image(file)
            return {"kind": "image", "width": image.shape[1], "height": image.shape[0]}
        if kind is None:
            raise InputError(file, unsupported_reason(file))
        clip = read_clip(file, TSNSampler(self.frames, train=False), backend=self.backend)
        info = clip.info
        result = {"kind": "video", "frames": info.num_frames, "duration_s": round(info.duration_s, 3),
                  "fps": round(info.fps, 3), "width": info.width, "height": info.height,
                  "stream": info.stream, "codec": info.codec, "decoded": len(clip.frames),
                  "sampled_s": [round(float(t), 3) for t in clip.times_s]}
        declared = declared_frames(file, info.stream)
        if declared is not None and declared - info.num_frames > max(2, TRUNCATED_SHARE * declared):
            result["declared_frames"] = declared
            result["note"] = (f"its header declares {declared} frames, {info.num_frames} can be read: "
                              "a truncated file, or an edit list that hides frames")
        return result


# A video whose header declares more frames than this share above what can be read is named:
# players (and xmodal) show what the packets hold, so a cut download otherwise passes unseen.
TRUNCATED_SHARE = 0.1


def declared_frames(path: Path, stream: int) -> int | None:
    """The frame count the container's header declares for stream ``stream`` (MP4's sample
    table, a few other containers' nb_frames; PyAV's ``stream.frames``), or None when it
    declares none or cannot be read."""
    try:
        import av

        with av.open(str(path), metadata_errors="ignore") as container:  # as the probe opens it
            declared = int(container.streams[stream].frames)
    except Exception:  # noqa: BLE001 - a header PyAV cannot read declares nothing to compare
        return None
    return declared or None


def check_files(files: Sequence[Path], *, frames: int = 8, backend: str = "auto",
                workers: int = 2, timeout_s: float | None = DEFAULT_TIMEOUT_S,
                reporter: Reporter | None = None) -> Iterator[dict[str, Any]]:
    """``{"path", "ok", ...}`` per file in order; failures carry ``error``."""
    reporter = reporter or Reporter()
    pool = DecodePool(FileCheck(frames, backend), workers=workers, timeout_s=timeout_s,
                      describe_error=describe_failure)
    for index, result, error in reporter.track(pool.imap([str(f) for f in files]),
                                               total=len(files), desc="check"):
        if error is None:
            yield {"path": str(files[index]), "ok": True, **result}
        else:
            yield {"path": str(files[index]), "ok": False, "error": error}
