"""Short H.264 clips made from ONE labelled still, for ``tools/bench_accuracy.py``.

A clip shows its image (the object) moving over a background, so the clip's label is the
image's label. Each clip draws its own style from its seed, so that nothing can be tuned
to one look:

* background: a crop of a real scikit-image photo (optionally panning), smooth colour
  noise, or a light plain colour with grain;
* object: 0.4-0.9 of the frame's short side (less when turned, so it always fits), drifting,
  bouncing or zooming, turning by a few degrees; composited through a matte (``ink``:
  strokes whose alpha is their brightness in the still, drawn dark on a light background and
  light on a dark one; ``silhouette``: filled mask of the
  non-black pixels; ``card``: the whole image, opaque);
* optional Gaussian blur and sensor noise; H.264 (libx264, yuv420p) at a realistic
  bitrate (0.05-0.2 bits per pixel per frame); 1-4 s at 10-30 fps; 4:3 or 16:9 frames of
  160 px short side.

The object stays inside the central square of the frame (the part that a centre crop keeps)
and wholly inside the frame. Pixels come from numpy, PIL (one Lanczos upscale of the tiny
image) and OpenCV (the per-frame affine warp and blur, 10x faster than numpy's); PyAV encodes,
single-threaded and bitexact, so a seed gives the same bytes.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 2  # part of every cache key: bump it when a clip's pixels change
SHORT_SIDE = 160
ASPECTS = ((4, 3), (16, 9))
FPS_CHOICES = (10, 12, 15, 24, 25, 30)
SECONDS = (1.0, 4.0)
SCALE = (0.4, 0.9)  # object's side / frame's short side
MAX_TURN_DEG = 10.0
MARGIN = 2  # px between the object's box and the edge of the frame's central square
MATTES = ("ink", "silhouette", "card")
MOTIONS = ("drift", "bounce", "zoom")
BACKGROUNDS = ("photo", "noise", "plain")
# Real photos shipped with scikit-image. astronaut and camera are left out: they show human
# faces, which would put the positive class of the faces-vs-non-faces set in the background.
PHOTOS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "brick", "grass", "gravel", "motorcycle")
INK_DARK = 30.0  # grey level of ink strokes on a light background
OBJECT_UPSCALE = 4  # the tiny image is Lanczos-upscaled once by this factor, then warped bilinearly


@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines one clip's frames (drawn by ``draw_spec``)."""

    width: int
    height: int
    fps: int
    frames: int
    background: str  # "photo" | "noise" | "plain"
    photo: str  # scikit-image photo name ("" unless background == "photo")
    crop: tuple[float, float, float]  # photo crop: left, top (fractions of the free room), size fraction
    pan: tuple[float, float]  # background shift over the clip, px (x, y)
    tint: tuple[float, float, float]  # plain / noise background base colour, 0-255
    motion: str  # "drift" | "bounce" | "zoom"
    scale: tuple[float, float]  # object side / short side at the first and the last frame
    start: tuple[float, float]  # centre at the first frame, fractions of the allowed range
    velocity: tuple[float, float]  # drift / bounce: allowed ranges crossed per clip (x, y)
    angle: tuple[float, float]  # degrees at the first and the last frame
    blur: float  # Gaussian sigma, px (0 = none)
    noise: float  # per-frame sensor noise sigma, 0-255 scale (0 = none)
    bitrate: int  # bits per second
    matte: str  # "ink" | "silhouette" | "card"


def draw_spec(rng: np.random.Generator, matte: str, *, short_side: int = SHORT_SIDE) -> ClipSpec:
    """A random clip style; ``matte`` comes from the dataset (how its objects separate from black)."""
    if matte not in MATTES:
        raise ValueError(f"matte must be one of {', '.join(MATTES)}, got {matte!r}")
    aw, ah = ASPECTS[rng.integers(len(ASPECTS))]
    height = short_side
    width = _even(short_side * aw / ah)
    fps = int(rng.choice(FPS_CHOICES))
    frames = max(2, round(rng.uniform(*SECONDS) * fps))
    background = str(rng.choice(BACKGROUNDS, p=[0.5, 0.25, 0.25]))
    photo = str(rng.choice(PHOTOS)) if background == "photo" else ""
    motion = str(rng.choice(MOTIONS))
    if motion == "zoom":
        a, b = rng.uniform(*SCALE, size=2)
        while abs(a - b) < 0.2:  # a zoom that shows
            a, b = rng.uniform(*SCALE, size=2)
        scale = (float(a), float(b))
        velocity = tuple(rng.uniform(-0.3, 0.3, size=2))
    else:
        s = rng.uniform(*SCALE)
        scale = (float(s), float(np.clip(s * rng.uniform(0.9, 1.1), *SCALE)))
        velocity = tuple(rng.uniform(0.4, 1.0, size=2) * rng.choice([-1, 1], size=2)
                         * (2.5 if motion == "bounce" else 1.0))
    pan_room = 0.1 * width if rng.random() < 0.5 else 0.0
    return ClipSpec(
        width=width, height=height, fps=fps, frames=int(frames), background=background, photo=photo,
        crop=(float(rng.random()), float(rng.random()), float(rng.uniform(0.35, 1.0))),
        pan=(float(pan_room * rng.uniform(-1, 1)), float(pan_room * rng.uniform(-0.5, 0.5))),
        tint=tuple(float(v) for v in _tint(rng, background)),
        motion=motion, scale=scale, start=(float(rng.random()), float(rng.random())),
        velocity=(float(velocity[0]), float(velocity[1])),
        angle=tuple(float(v) for v in rng.uniform(-MAX_TURN_DEG, MAX_TURN_DEG, size=2)),
        blur=float(rng.uniform(0.5, 1.5)) if rng.random() < 0.4 else 0.0,
        noise=float(rng.uniform(2.0, 8.0)) if rng.random() < 0.5 else 0.0,
        bitrate=int(max(50_000, rng.uniform(0.05, 0.2) * width * height * fps)),
        matte=matte,
    )


def _even(value: float) -> int:
    return int(round(value / 2)) * 2


def _tint(rng: np.random.Generator, background: str) -> np.ndarray:
    if background == "plain":  # light, slightly coloured: paper, a wall, a table
        return rng.uniform(190, 245) + rng.uniform(-12, 12, size=3)
    return rng.uniform(60, 200, size=3)


# --------------------------------------------------------------------------- object path

@dataclass(frozen=True)
class ObjectTrack:
    """Per-frame placement of the object: centre (px), side (px) and angle (radians)."""

    cx: np.ndarray
    cy: np.ndarray
    side: np.ndarray
    angle: np.ndarray

    def half_extent(self) -> np.ndarray:
        """Half the side of the axis-aligned box around the turned square object, px."""
        return self.side / 2 * (np.abs(np.cos(self.angle)) + np.abs(np.sin(self.angle)))


def _turn_factor(degrees: float) -> float:
    rad = np.deg2rad(abs(degrees))
    return float(np.cos(rad) + np.sin(rad))


def track(spec: ClipSpec) -> ObjectTrack:
    """Where the object is in each frame; it stays inside the frame's central square."""
    t = np.linspace(0.0, 1.0, spec.frames)
    angle_deg = spec.angle[0] + (spec.angle[1] - spec.angle[0]) * t
    short = min(spec.width, spec.height)
    turn = np.array([_turn_factor(a) for a in angle_deg])
    # Shrink the object where needed so that, turned, it still fits the square (with a margin).
    side = short * (spec.scale[0] + (spec.scale[1] - spec.scale[0]) * t)
    side = np.minimum(side, (short - 2 * MARGIN - 2) / turn)
    half = side / 2 * turn
    # The box keeps MARGIN px from the square's edges: the warp's soft edge reaches past it.
    reach = half.max() + MARGIN
    left = (spec.width - short) / 2
    top = (spec.height - short) / 2
    room = max(0.0, short - 2 * reach)  # the centre's free range, the same for every frame
    pos = []
    for start, vel in zip(spec.start, spec.velocity, strict=True):
        if spec.motion == "bounce":
            u = start + vel * t
            u = np.abs(((u + 1) % 2) - 1)  # triangle wave: reflect at 0 and 1
        else:
            u = np.clip(start + vel * t, 0.0, 1.0) if spec.motion == "zoom" else _drift(start, vel, t)
        pos.append(u)
    cx = left + reach + room * pos[0]
    cy = top + reach + room * pos[1]
    return ObjectTrack(cx, cy, side, np.deg2rad(angle_deg))


def _drift(start: float, vel: float, t: np.ndarray) -> np.ndarray:
    """A straight drift of length |vel| that fits in [0, 1] (started early enough)."""
    span = min(abs(vel), 1.0)
    first = start * (1.0 - span)
    return first + span * t if vel > 0 else first + span * (1.0 - t)


# --------------------------------------------------------------------------- rendering

def prepare_object(image: np.ndarray, matte: str, ink: float = 255.0) -> tuple[np.ndarray, np.ndarray]:
    """Upscaled colour (h, w, 3) float32 0-255 and alpha (h, w) float32 0-1 of a uint8 image.

    ``ink``: strokes of grey level ``ink`` whose alpha is the image's brightness;
    ``silhouette``: the image's own grey levels inside the filled mask of its non-black
    pixels; ``card``: the whole image, opaque.
    """
    from PIL import Image
    from scipy import ndimage

    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape}")
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    grey = rgb.mean(axis=2)
    if matte == "ink":
        alpha = grey / 255.0
        colour = np.full_like(rgb, int(ink))
    elif matte == "silhouette":
        mask = ndimage.binary_fill_holes(grey > 12)
        alpha = ndimage.gaussian_filter(mask.astype(np.float32), 0.5)
        colour = rgb
    elif matte == "card":
        alpha = np.ones(grey.shape, np.float32)
        colour = rgb
    else:
        raise ValueError(f"matte must be one of {', '.join(MATTES)}, got {matte!r}")
    h, w = grey.shape
    size = (w * OBJECT_UPSCALE, h * OBJECT_UPSCALE)
    big = np.asarray(Image.fromarray(colour.astype(np.uint8)).resize(size, Image.LANCZOS), np.float32)
    big_alpha = np.asarray(Image.fromarray((alpha * 255).astype(np.uint8)).resize(size, Image.LANCZOS),
                           np.float32) / 255.0
    if matte == "card":
        big_alpha[:] = 1.0  # Lanczos ringing must not make the card's edge see-through
    return big, np.clip(big_alpha, 0.0, 1.0)


@functools.lru_cache(maxsize=len(PHOTOS))
def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def _background(spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    """A float32 canvas (H + pan, W + pan, 3) that the frames' windows move over."""
    from PIL import Image

    pad_x, pad_y = int(np.ceil(abs(spec.pan[0]))), int(np.ceil(abs(spec.pan[1])))
    w, h = spec.width + pad_x, spec.height + pad_y
    if spec.background == "photo":
        photo = _photo(spec.photo)
        ph, pw = photo.shape[:2]
        scale = spec.crop[2] * min(pw / w, ph / h)
        cw, ch = max(8, int(w * scale)), max(8, int(h * scale))
        x0, y0 = int(spec.crop[0] * (pw - cw)), int(spec.crop[1] * (ph - ch))
        crop = Image.fromarray(photo[y0:y0 + ch, x0:x0 + cw]).resize((w, h), Image.BICUBIC)
        return np.asarray(crop, np.float32)
    tint = np.asarray(spec.tint, np.float32)
    if spec.background == "plain":
        grain = rng.normal(0, 3.0, size=(h, w, 1)).astype(np.float32)
        return np.clip(tint + grain, 0, 255)
    coarse = rng.uniform(-70, 70, size=(max(2, h // 32), max(2, w // 32), 3)) + tint
    blobs = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    fine = rng.normal(0, 10, size=(h, w, 1)).astype(np.float32)
    return np.clip(np.asarray(blobs, np.float32) + fine, 0, 255)


def _ink_level(canvas: np.ndarray) -> float:
    """Ink shows as it would on camera: dark on a light background, light on a dark one."""
    return INK_DARK if canvas.mean() > 140 else 255.0


def ink_of(spec: ClipSpec, seed: int) -> str | None:
    """The ink ``render`` draws the clip's strokes with, "dark" or "light" (the ``ink``
    matte; its stills are light strokes on black), None for other mattes."""
    if spec.matte != "ink":
        return None
    canvas = _background(spec, np.random.default_rng([GENERATOR_VERSION, seed, 1]))
    return "dark" if _ink_level(canvas) == INK_DARK else "light"


def render(image: np.ndarray, spec: ClipSpec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames (T, H, W, 3) and the object's alpha per frame (T, H, W) float32."""
    import cv2

    rng = np.random.default_rng([GENERATOR_VERSION, seed, 1])
    canvas = _background(spec, rng)
    colour, alpha = prepare_object(image, spec.matte, _ink_level(canvas))
    source = np.concatenate([colour, alpha[..., None]], axis=2)
    oh, ow = alpha.shape
    where = track(spec)
    frames = np.empty((spec.frames, spec.height, spec.width, 3), np.uint8)
    mattes = np.zeros((spec.frames, spec.height, spec.width), np.float32)
    half = where.half_extent()
    for i in range(spec.frames):
        frac = i / max(1, spec.frames - 1)
        px = int(round(max(0.0, spec.pan[0]) - spec.pan[0] * frac)) if spec.pan[0] else 0
        py = int(round(max(0.0, spec.pan[1]) - spec.pan[1] * frac)) if spec.pan[1] else 0
        frame = canvas[py:py + spec.height, px:px + spec.width].copy()
        # Only the box around the turned object is sampled (the track keeps it inside the frame).
        x0, x1 = int(where.cx[i] - half[i]) - 1, int(np.ceil(where.cx[i] + half[i])) + 1
        y0, y1 = int(where.cy[i] - half[i]) - 1, int(np.ceil(where.cy[i] + half[i])) + 1
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(spec.width, x1), min(spec.height, y1)
        # Inverse map, frame pixel -> object pixel: rotate back about the centre, then scale.
        k = max(ow, oh) / where.side[i]
        cos, sin = np.cos(where.angle[i]), np.sin(where.angle[i])
        inverse = k * np.array([[cos, sin], [-sin, cos]])
        offset = inverse @ np.array([x0 + 0.5 - where.cx[i], y0 + 0.5 - where.cy[i]])
        matrix = np.hstack([inverse, (offset + [ow / 2 - 0.5, oh / 2 - 0.5])[:, None]])
        sample = cv2.warpAffine(source, matrix, (x1 - x0, y1 - y0),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        a = sample[..., 3:4]
        frame[y0:y1, x0:x1] = frame[y0:y1, x0:x1] * (1 - a) + sample[..., :3] * a
        mattes[i, y0:y1, x0:x1] = a[..., 0]
        if spec.noise:
            frame += rng.normal(0, spec.noise, size=frame.shape[:2] + (1,)).astype(np.float32)
        out = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
        if spec.blur:
            out = cv2.GaussianBlur(out, (0, 0), spec.blur)
        frames[i] = out
    return frames, mattes


# --------------------------------------------------------------------------- encoding

def encode_h264(frames: np.ndarray, path: Path, fps: int, bitrate: int) -> Path:
    """MP4 / H.264 at ``bitrate`` bits/s; single-threaded and bitexact (same frames, same bytes).
    Written to a temporary name, then renamed, so a killed run leaves no half file."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.mp4")
    _, height, width, _ = frames.shape
    with av.open(str(tmp), mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bitrate
        stream.codec_context.gop_size = 2 * fps
        stream.codec_context.thread_count = 1
        # See tools/make_samples.py: without mbtree and with one x264 thread the bytes repeat.
        stream.options = {"preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format="yuv420p")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
    return path


def make_clip(image: np.ndarray, matte: str, path: Path, seed: int) -> ClipSpec:
    """Draw a style from ``seed``, render ``image`` moving in it and write ``path`` (MP4)."""
    spec = draw_spec(np.random.default_rng([GENERATOR_VERSION, seed, 0]), matte)
    frames, _ = render(image, spec, seed)
    encode_h264(frames, path, spec.fps, spec.bitrate)
    return spec


def contact_sheet(images: list[np.ndarray], matte: str, seeds: list[int]) -> np.ndarray:
    """One row per image: the still (nearest-neighbour, as seen), then its clip's first, middle and
    last frames (the central square): uint8 (rows * S, 4 * S, 3), S the short side."""
    from PIL import Image

    rows = []
    for image, seed in zip(images, seeds, strict=True):
        spec = draw_spec(np.random.default_rng([GENERATOR_VERSION, seed, 0]), matte)
        frames, _ = render(image, spec, seed)
        left = (spec.width - spec.height) // 2
        still = Image.fromarray(image).resize((spec.height, spec.height), Image.NEAREST).convert("RGB")
        picks = [frames[i][:, left:left + spec.height] for i in (0, len(frames) // 2, len(frames) - 1)]
        rows.append(np.concatenate([np.asarray(still), *picks], axis=1))
    return np.concatenate(rows, axis=0)
