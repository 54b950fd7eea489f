"""Shared pieces of the ``tools/bench_*.py`` scripts: test videos, timing, tables, headers.

Benchmark videos are H.264 (libx264, yuv420p, CRF 23, preset veryfast: CABAC and
B-frames on, like most camera and web footage) at a fixed frame rate and a fixed
keyframe interval (scene-cut detection off, so the GOP is exactly what was asked).
The picture is a panning texture with moving shapes and light grain, so motion
compensation and residual coding do real work. Files are cached by their
parameters: a rerun with the same cache directory encodes nothing.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_CACHE = Path(os.environ.get("XMODAL_BENCH_CACHE", "/tmp/xmodal-bench"))
FPS = 30


@dataclass(frozen=True)
class VideoSpec:
    """One kind of benchmark video."""

    width: int
    height: int
    seconds: int
    gop_s: int  # keyframe interval in seconds
    fps: int = FPS

    @property
    def gop(self) -> int:
        return self.fps * self.gop_s

    @property
    def frames(self) -> int:
        return self.fps * self.seconds

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height} {self.seconds}s gop{self.gop_s}s"

    def filename(self, seed: int) -> str:
        return f"h264_{self.width}x{self.height}_{self.seconds}s_{self.fps}fps_gop{self.gop}_{seed}.mp4"


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth colour blobs plus fine detail, float32 (height, width, 3) in [0, 255]."""
    from PIL import Image

    coarse = rng.uniform(30, 225, size=(max(2, height // 40), max(2, width // 40), 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
    fine = rng.normal(0, 18, size=(height // 2 + 1, width // 2 + 1, 1)).astype(np.float32)
    fine = np.repeat(np.repeat(fine, 2, axis=0), 2, axis=1)[:height, :width]
    return np.clip(smooth + fine, 0, 255)


def make_video(path: Path, spec: VideoSpec, seed: int = 0) -> Path:
    """Encode ``spec`` into ``path`` (written to a temporary name, then renamed)."""
    import av

    rng = np.random.default_rng([seed, spec.width, spec.height, spec.seconds])
    w, h, n = spec.width, spec.height, spec.frames
    pan_x, pan_y = max(1, w // 2), max(1, h // 4)
    texture = _texture(rng, h + pan_y, w + pan_x)
    grain = [rng.normal(0, 2.5, size=(h, w, 1)).astype(np.float32) for _ in range(7)]
    boxes = rng.uniform(0, 1, size=(3, 4))  # x phase, y phase, size, colour
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast",
                          "x264-params": f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0"}
        for i in range(n):
            t = i / n
            ox = int(pan_x * (0.5 - 0.5 * np.cos(2 * np.pi * t * spec.seconds / 10)))
            oy = int(pan_y * t)
            frame = texture[oy:oy + h, ox:ox + w] + grain[i % len(grain)]
            for bx, by, size, colour in boxes:
                cx = w * (0.5 + 0.4 * np.sin(2 * np.pi * (bx + i / (spec.fps * 3))))
                cy = h * (0.5 + 0.4 * np.cos(2 * np.pi * (by + i / (spec.fps * 4))))
                r = (0.05 + 0.1 * size) * h
                x0, x1 = max(0, int(cx - r)), min(w, int(cx + r))
                y0, y1 = max(0, int(cy - r)), min(h, int(cy + r))
                frame[y0:y1, x0:x1] = (255 * colour, 90, 255 * (1 - colour))
            array = np.clip(frame, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
    return path


def ensure_videos(cache: Path, spec: VideoSpec, count: int, *, log: bool = True) -> list[Path]:
    """``count`` distinct videos of ``spec`` in ``cache``, encoding the missing ones."""
    paths = [cache / spec.filename(seed) for seed in range(count)]
    missing = [p for p in paths if not p.exists()]
    if missing and log:
        print(f"  encoding {len(missing)} x {spec.label} into {cache} ...", flush=True)
    for seed, path in enumerate(paths):
        if not path.exists():
            make_video(path, spec, seed)
    return paths


def link_folder(folder: Path, files: Sequence[Path], classes: int = 1) -> Path:
    """A fresh folder of symlinks to ``files`` (``classes`` sub-folders, files dealt round-robin)."""
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    for i, file in enumerate(files):
        sub = folder / f"class_{i % classes}" if classes > 1 else folder
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:04d}_{file.name}").symlink_to(file.resolve())
    return folder


# --------------------------------------------------------------------------- timing

def median_wall(command: Sequence[str], repeats: int, *, env: dict[str, str] | None = None,
                cwd: str | None = None) -> tuple[float, list[float]]:
    """Median wall-clock seconds of a subprocess (which must succeed), and every run."""
    import subprocess

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{shlex.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return statistics.median(times), times


# --------------------------------------------------------------------------- reporting

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_text() -> str:
    """1-minute load average now, and at the start of this process's run (see ``note_start``)."""
    now = os.getloadavg()[0]
    return f"{_START_LOAD:.1f} at start, {now:.1f} at end" if _START_LOAD is not None else f"{now:.1f}"


_START_LOAD: float | None = None


def note_start() -> float:
    """Remember the load average when the benchmark starts; warn if the machine is busy."""
    global _START_LOAD
    _START_LOAD = os.getloadavg()[0]
    if _START_LOAD > 0.5 * usable_cores():
        print(f"warning: load average {_START_LOAD:.1f} on {usable_cores()} cores: other processes "
              "are running and will slow and skew these numbers", file=sys.stderr, flush=True)
    return time.perf_counter()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def header(title: str, started: float | None = None) -> str:
    """Machine, library versions, date, load, the exact command line (and its run time) as Markdown."""
    import torch

    try:
        import av

        av_version = av.__version__
    except ImportError:
        av_version = "not installed"
    try:
        from xmodal.data.video.decord_backend import import_decord

        decord_version = import_decord().__version__
    except ImportError:
        decord_version = "not installed"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CUDA not available)"
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return "\n".join([
        f"## {title}",
        "",
        f"- machine: {cpu_model()}, {usable_cores()} cores ({os.cpu_count()} logical CPUs), "
        f"{platform.system()} {platform.release()}",
        f"- GPU: {gpu}",
        f"- python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} intra-op threads), PyAV {av_version}, decord {decord_version}",
        f"- date: {now}; load average {load_text()} (other processes share these cores)",
        f"- command: `{shlex.join([Path(sys.executable).name, *sys.argv])}`"
        + (f" ({time.perf_counter() - started:.0f} s)" if started is not None else ""),
        "",
    ])


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats get 3 significant figures."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
