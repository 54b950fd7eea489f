"""The training recipes that ``tools/bench_accuracy.py`` compares, each on the same split.

A recipe gets a ``Task`` (class folders of training files, test items, the bench's settings)
and returns the accuracy on each test set. Rows are named by a spec string:

* ``plain[:lr=..,batch_size=..,weight_decay=..,zoom_out=..]``: a plain PyTorch fine-tune written
  here, not xmodal's engine: EfficientNet-Lite0 (ImageNet weights) + a new linear head, AdamW on
  all weights at one constant learning rate, no augmentation (``zoom_out=0.5`` adds a random
  zoom-out by black padding to a scale in [0.5, 1]); clips: per-frame logits averaged over T
  frames at the segment centres, in training and testing;
* ``probe-logreg[:C=..]`` / ``probe-knn[:k=..]``: frozen ImageNet features (clips: averaged
  over T frames), then scikit-learn's LogisticRegression (standardised features) or k-NN (cosine);
* ``xmodal-defaults``: xmodal's own training with no options (``fit`` as ``xmodal train`` calls
  it), scored with ``xmodal.load(run).predict(files)`` as ``xmodal predict`` does;
* ``xmodal:KEY=VALUE,...``: the same with TrainConfig overrides (see configs/default.yaml);
* ``xmodal-adapt[:rounds=..,threshold=..,batchnorm=..,KEY=VALUE,...]``: the defaults (or with
  overrides, as ``xmodal:``), then ``xmodal adapt`` (self-training; ``batchnorm=target|mixed``
  first re-estimates BatchNorm statistics, alone with ``rounds=0``) on the same training images
  in the other modality, unlabelled (stills -> their clips).

The bench-wide settings (input size, T, epochs) apply to every row, xmodal's included.
To add a recipe: subclass ``Recipe``, give it ``run`` and ``cost``, register it in ``RECIPES``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

MODALITY = {"stills": "image", "clips": "video", "mixed": "mixed"}


class RecipeError(ValueError):
    """A recipe spec that cannot be run (unknown name or option, bad value)."""


@dataclass(frozen=True)
class Settings:
    """What every row shares: frame size fed to the encoder, frames per clip, epochs."""

    input_size: int = 112
    frames: int = 3
    epochs: int = 5
    device: str = "auto"  # auto | cpu | cuda, for every row

    @property
    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    @property
    def resize_size(self) -> int:
        return round(self.input_size / 0.875)  # torchvision's evaluation crop, as xmodal uses


@dataclass(frozen=True)
class Item:
    """One file of a split: its path, class index, kind and a key unique within the dataset."""

    path: Path
    label: int
    kind: str  # "still" | "clip"
    key: str


@dataclass
class Task:
    """One training split and the fixed test sets it is scored on."""

    dataset: str
    classes: list[str]
    train: str  # "stills" | "clips" | "mixed"
    shot: int
    seed: int
    train_dir: Path
    train_items: list[Item]
    tests: dict[str, list[Item]]  # "stills" / "clips" -> items
    work: Path
    settings: Settings
    media: MediaLoader | None  # None only while estimating
    # The same training images in the other modality (stills -> their clips, clips -> their
    # stills; none for mixed), for recipes that adapt to unlabelled target-domain files.
    unlabeled: list[Item] = dataclasses.field(default_factory=list)
    unlabeled_dir: Path | None = None  # a flat folder of them, without class names

    @property
    def loader(self) -> MediaLoader:
        if self.media is None:
            raise RecipeError("this task has no media loader (it was made for the estimate)")
        return self.media

    def frames_in(self, items: Sequence[Item]) -> int:
        return sum(1 if i.kind == "still" else self.settings.frames for i in items)


# --------------------------------------------------------------------------- decoding

class MediaLoader:
    """Decoded, preprocessed frames and frozen features, cached per file (plain + probes).

    Preprocessing is the usual evaluation transform: shorter side to ``input_size / 0.875``
    (bilinear, antialiased), centre crop ``input_size``. Clips give T frames at the segment
    centres. Features are cached on disk in ``feature_file`` (an .npz keyed by ``Item.key``).
    """

    def __init__(self, settings: Settings, feature_file: Path | None = None) -> None:
        self.settings = settings
        self.feature_file = feature_file
        self._frames: dict[str, Any] = {}
        self._features: dict[str, np.ndarray] = {}
        self._dirty = False
        self._encoder: Any = None
        if feature_file is not None and feature_file.is_file():
            with np.load(feature_file) as saved:
                self._features = {k: saved[k] for k in saved.files}

    def frames(self, item: Item) -> torch.Tensor:
        """uint8 tensor (T, 3, S, S); T = 1 for a still."""
        if item.key not in self._frames:
            self._frames[item.key] = self._load(item)
        return self._frames[item.key]

    def _load(self, item: Item) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        if item.kind == "still":
            from PIL import Image

            with Image.open(item.path) as image:
                array = np.asarray(image.convert("RGB"))[None]
        else:
            array = decode_uniform(item.path, self.settings.frames)
        clip = torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
        clip = F.resize(clip, [self.settings.resize_size], antialias=True)
        return F.center_crop(clip, [self.settings.input_size, self.settings.input_size]).contiguous()

    def features(self, items: Sequence[Item]) -> np.ndarray:
        """Frozen ImageNet features (N, F) float32; a clip's is the mean over its T frames."""
        missing = [i for i in items if i.key not in self._features]
        for start in range(0, len(missing), 16):
            chunk = missing[start:start + 16]
            clips = [self.frames(i) for i in chunk]
            feats = self._encode(clips)
            for item, feat in zip(chunk, feats, strict=True):
                self._features[item.key] = feat
            self._dirty = True
        return np.stack([self._features[i.key] for i in items])

    def _encode(self, clips: list[torch.Tensor]) -> list[np.ndarray]:
        if self._encoder is None:
            self._encoder = FrozenEncoder(self.settings.torch_device)
        with torch.inference_mode():
            feats = self._encoder(torch.cat(clips)).float().cpu().numpy()
        out, start = [], 0
        for clip in clips:
            out.append(feats[start:start + len(clip)].mean(0).astype(np.float32))
            start += len(clip)
        return out

    def save(self) -> None:
        """Write new features to ``feature_file`` (atomically)."""
        if not self._dirty or self.feature_file is None:
            return
        self.feature_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.feature_file.with_name(self.feature_file.name + ".tmp.npz")
        np.savez(tmp, **self._features)
        tmp.replace(self.feature_file)
        self._dirty = False


def decode_uniform(path: Path, count: int) -> np.ndarray:
    """(count, H, W, 3) uint8 RGB frames at the centres of ``count`` equal segments (PyAV)."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise RecipeError(f"{path}: no video frames")
    index = ((np.arange(count) + 0.5) * len(frames) / count).astype(int)
    return np.stack([frames[i] for i in index])


def _encoder() -> nn.Module:
    """EfficientNet-Lite0 with ImageNet weights (xmodal builds it offline; equal to timm's)."""
    from xmodal.models.encoders import create_encoder

    return create_encoder("efficientnet_lite0", "imagenet")


class PlainNet(nn.Module):
    """Encoder + linear head: (B, T, 3, S, S) uint8 -> (B, K) logits averaged over T."""

    def __init__(self, num_classes: int | None) -> None:
        super().__init__()
        self.encoder = _encoder()
        self.head = nn.Linear(self.encoder.num_features, num_classes) if num_classes else nn.Identity()
        cfg = self.encoder.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1) * 255)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        x = (clips.to(self.mean.device).flatten(0, 1).float() - self.mean) / self.std
        return self.head(self.encoder(x)).view(b, t, -1).mean(1)


class FrozenEncoder:
    """The ImageNet encoder in eval mode: uint8 (N, 3, S, S) -> features (N, 1280)."""

    def __init__(self, device: torch.device) -> None:
        self.net = PlainNet(None).eval().to(device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images[:, None])


# --------------------------------------------------------------------------- recipes

@dataclass(frozen=True)
class Cost:
    """What a recipe's run costs in encoder frames (for the estimate before a run)."""

    train_frames: int = 0  # forward + backward
    infer_frames: int = 0  # forward only
    fixed_s: float = 0.0  # start-up and the like


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its reaped children (decode workers).

    Steadier than wall time when other work shares the cores; a row's decode workers are
    counted once the DataLoader has joined them, at the end of each pass.
    """
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Recipe(ABC):
    """One row of the table. ``spec`` is its name as given on the command line.

    ``uses_unlabeled``: the bench gives the task its unlabelled set (``Task.unlabeled``).

    A recipe that trains times its training alone (``training()``), apart from scoring the
    test sets: ``train_seconds`` holds (wall, CPU) seconds of the last run, or None.
    """

    kind: ClassVar[str]
    uses_features: ClassVar[bool] = False
    uses_unlabeled: ClassVar[bool] = False

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.train_seconds: tuple[float, float] | None = None

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """Time the block as this run's training (wall and CPU seconds)."""
        wall, cpu = time.perf_counter(), cpu_seconds()
        yield
        self.train_seconds = (time.perf_counter() - wall, cpu_seconds() - cpu)

    @abstractmethod
    def run(self, task: Task) -> dict[str, float]:
        """Train on ``task.train_items`` / ``task.train_dir``; accuracy per test set name."""

    @abstractmethod
    def cost(self, task: Task) -> Cost:
        """Encoder frames this run will process, for the estimate."""


def _options(spec: str, allowed: dict[str, Any]) -> dict[str, Any]:
    """Typed ``key=value`` options after the first ':' of ``spec`` (only keys of ``allowed``)."""
    _, _, text = spec.partition(":")
    values = parse_assignments(text, spec)
    for key, value in values.items():
        if key not in allowed:
            raise RecipeError(f"{spec}: unknown option {key!r} (options: {', '.join(allowed) or 'none'})")
        default = allowed[key]
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            values[key] = float(value)
        elif not isinstance(value, type(default)):
            raise RecipeError(f"{spec}: {key} must be a {type(default).__name__}, got {value!r}")
    return {**allowed, **values}


def parse_assignments(text: str, spec: str) -> dict[str, Any]:
    """``"a=1,b=none,c=1e-3"`` -> {"a": 1, "b": "none", "c": 0.001}; "null" is None."""
    values: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, raw = part.partition("=")
        if not eq or not key.strip():
            raise RecipeError(f"{spec}: expected KEY=VALUE, got {part!r}")
        values[key.strip().replace("-", "_")] = _value(raw.strip())
    return values


def _value(raw: str) -> Any:
    if raw in ("null", "None", "~"):
        return None
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


# --------------------------------------------------------------------------- plain

class PlainRecipe(Recipe):
    kind = "plain"
    OPTIONS: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 8, "weight_decay": 0.01,
                                         "zoom_out": 1.0}

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self.opts = _options(spec, self.OPTIONS)
        if not 0 < self.opts["zoom_out"] <= 1:
            raise RecipeError(f"{spec}: zoom_out is the smallest scale, in (0, 1]; 1 = off")

    def cost(self, task: Task) -> Cost:
        return Cost(task.frames_in(task.train_items) * task.settings.epochs,
                    sum(task.frames_in(v) for v in task.tests.values()), 3.0)

    def run(self, task: Task) -> dict[str, float]:
        torch.manual_seed(task.seed)
        generator = torch.Generator().manual_seed(task.seed)
        device = task.settings.torch_device
        model = PlainNet(len(task.classes)).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.opts["lr"],
                                      weight_decay=self.opts["weight_decay"])
        items = task.train_items
        with self.training():
            for _ in range(task.settings.epochs):
                model.train()
                for batch in _batches(items, self.opts["batch_size"], generator):
                    clips = torch.stack([task.loader.frames(i) for i in batch])
                    if self.opts["zoom_out"] < 1:
                        clips = _zoom_out(clips, self.opts["zoom_out"], generator)
                    labels = torch.tensor([i.label for i in batch], device=device)
                    loss = torch.nn.functional.cross_entropy(model(clips), labels)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        model.eval()
        return {name: _accuracy(model, test, task.loader) for name, test in task.tests.items()}


def _batches(items: list[Item], size: int, generator: torch.Generator) -> list[list[Item]]:
    """Shuffled batches holding one kind each (stills and clips differ in T), in shuffled order."""
    batches = []
    for kind in ("still", "clip"):
        group = [i for i in items if i.kind == kind]
        order = torch.randperm(len(group), generator=generator).tolist()
        batches += [[group[j] for j in order[s:s + size]] for s in range(0, len(order), size)]
    return [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]


def _zoom_out(clips: torch.Tensor, smallest: float, generator: torch.Generator) -> torch.Tensor:
    """Each clip shrunk to a random scale in [smallest, 1] at a random place, black around it
    (one draw for all frames of a clip)."""
    b, t, c, h, w = clips.shape
    out = torch.zeros_like(clips)
    for n in range(b):
        scale = smallest + (1 - smallest) * torch.rand(1, generator=generator).item()
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        small = torch.nn.functional.interpolate(clips[n].float(), size=(sh, sw), mode="bilinear",
                                                antialias=True, align_corners=False)
        top = int(torch.randint(0, h - sh + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - sw + 1, (1,), generator=generator))
        out[n, :, :, top:top + sh, left:left + sw] = small.round().clamp(0, 255).to(clips.dtype)
    return out


def _accuracy(model: nn.Module, items: list[Item], media: MediaLoader) -> float:
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(items), 16):
            chunk = items[start:start + 16]
            logits = model(torch.stack([media.frames(i) for i in chunk])).cpu()
            correct += int((logits.argmax(1) == torch.tensor([i.label for i in chunk])).sum())
    return correct / max(1, len(items))


# --------------------------------------------------------------------------- probes

class _Probe(Recipe):
    uses_features = True

    def cost(self, task: Task) -> Cost:
        return Cost()  # features are counted once per file, by the harness

    def run(self, task: Task) -> dict[str, float]:
        x = task.loader.features(task.train_items)
        y = np.array([i.label for i in task.train_items])
        model = self.model(len(x)).fit(x, y)
        out = {}
        for name, items in task.tests.items():
            pred = model.predict(task.loader.features(items))
            out[name] = float(np.mean(pred == np.array([i.label for i in items])))
        return out

    @abstractmethod
    def model(self, n_train: int) -> Any:
        """A fresh scikit-learn classifier."""


class LogRegProbe(_Probe):
    kind = "probe-logreg"
    OPTIONS: ClassVar[dict[str, Any]] = {"C": 1.0}

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self.opts = _options(spec, self.OPTIONS)

    def model(self, n_train: int) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=self.opts["C"], max_iter=5000))


class KnnProbe(_Probe):
    kind = "probe-knn"
    OPTIONS: ClassVar[dict[str, Any]] = {"k": 5}

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self.opts = _options(spec, self.OPTIONS)

    def model(self, n_train: int) -> Any:
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=min(self.opts["k"], n_train), metric="cosine")


# --------------------------------------------------------------------------- xmodal

class XmodalRecipe(Recipe):
    """xmodal's training (``fit``, as ``xmodal train``) and ``xmodal.load(...).predict``."""

    kind = "xmodal"
    BENCH_KEYS: ClassVar[tuple[str, ...]] = ("data", "modality", "out", "seed")

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        base, _, text = spec.partition(":")
        if base == "xmodal-defaults" and text:
            raise RecipeError(f"{spec}: xmodal-defaults takes no options; use xmodal:KEY=VALUE,...")
        self.overrides = parse_assignments(text, spec)
        if base == "xmodal" and not self.overrides:
            raise RecipeError(f"{spec}: give overrides (xmodal:KEY=VALUE,...) or use xmodal-defaults")
        fixed = sorted(set(self.overrides) & set(self.BENCH_KEYS))
        if fixed:
            raise RecipeError(f"{spec}: {', '.join(fixed)} are set by the bench, not by a recipe")
        self.config(Settings(), Path("."), "stills", Path("."), 0)  # unknown keys, bad values: fail now

    def config(self, settings: Settings, data: Path, train: str, out: Path, seed: int) -> Any:
        from xmodal.config import TrainConfig, load_config
        from xmodal.errors import ConfigError

        values = {"epochs": settings.epochs, "frames": settings.frames, "input_size": settings.input_size,
                  "device": settings.device, **self.overrides}
        # load_config reads None as "flag not given"; here KEY=null means None (e.g. grad_clip=null).
        nulls = {k: None for k, v in values.items() if v is None}
        unknown = sorted(set(nulls) - set(TrainConfig.__dataclass_fields__))
        if unknown:
            raise RecipeError(f"{self.spec}: unknown config key(s): {', '.join(unknown)}")
        try:
            cfg = load_config(None, data=str(data), modality=MODALITY[train], out=str(out), seed=seed,
                              **values)
            return dataclasses.replace(cfg, **nulls).validate() if nulls else cfg
        except ConfigError as exc:
            raise RecipeError(f"{self.spec}: {exc}") from None
        except TypeError:  # a None where a number is compared
            raise RecipeError(f"{self.spec}: {', '.join(nulls)} cannot be null") from None

    def cost(self, task: Task) -> Cost:
        cfg = self.config(task.settings, task.train_dir, task.train, task.work, task.seed)
        t, t_train = cfg.frames, cfg.clip_frames_for_training
        frames = sum(1 if i.kind == "still" else t for i in task.train_items)
        trained = sum(1 if i.kind == "still" else t_train for i in task.train_items)
        sizes = list(collections.Counter(i.label for i in task.train_items).values())
        val = cfg.val_fraction(sizes) if cfg.val is None else 0.0
        tests = sum(len(v) if name == "stills" else len(v) * t for name, v in task.tests.items())
        steps = max(1, -(-round(len(task.train_items) * (1 - val)) // cfg.batch_size))
        epochs = max(cfg.epochs, -(-cfg.min_steps // steps))  # min_steps adds epochs on small sets
        return Cost(round(trained * (1 - val) * epochs),
                    round(frames * val * epochs) + tests, 8.0)

    def run(self, task: Task) -> dict[str, float]:
        import xmodal
        from xmodal.engine.train import fit

        out = task.work / "run"
        with self.training():
            fit(self.config(task.settings, task.train_dir, task.train, out, task.seed))
        return _scores(xmodal.load(out, device=task.settings.device), task)


def _scores(predictor: Any, task: Task) -> dict[str, float]:
    """Top-1 of ``predictor`` (``xmodal.load``) on each test set, as ``xmodal predict`` labels."""
    scores = {}
    for name, items in task.tests.items():
        records = predictor.predict([str(i.path) for i in items])
        truth = [task.classes[i.label] for i in items]
        scores[name] = float(np.mean([r.get("label") == t for r, t in zip(records, truth, strict=True)]))
    return scores


class AdaptRecipe(XmodalRecipe):
    """xmodal's defaults, then ``xmodal adapt`` (self-training) on the task's unlabelled set: the
    same training images in the other modality, never the test files. Mixed training has no
    other modality to adapt to, so there the row is the defaults' run."""

    kind = "xmodal-adapt"
    uses_unlabeled = True
    OPTIONS: ClassVar[dict[str, Any]] = {"rounds": 2, "threshold": 0.7, "batchnorm": "none"}
    # batchnorm=true: the spelling of "target" in commit 8c71c1e (results of 2026-12-06)
    ALIASES: ClassVar[dict[Any, str]] = {True: "target", False: "none"}

    def __init__(self, spec: str) -> None:
        Recipe.__init__(self, spec)
        values = parse_assignments(spec.partition(":")[2], spec)
        self.opts = {**self.OPTIONS, **{k: values.pop(k) for k in self.OPTIONS if k in values}}
        self.opts["batchnorm"] = self.ALIASES.get(self.opts["batchnorm"], self.opts["batchnorm"])
        self.overrides = values  # the first training's TrainConfig overrides, as xmodal:...
        fixed = sorted(set(self.overrides) & set(self.BENCH_KEYS))
        if fixed:
            raise RecipeError(f"{spec}: {', '.join(fixed)} are set by the bench, not by a recipe")
        if self.opts["batchnorm"] not in ("none", "target", "mixed"):
            raise RecipeError(f"{spec}: batchnorm is none, target or mixed (xmodal adapt --batchnorm)")
        least = 0 if self.opts["batchnorm"] != "none" else 1
        if (not isinstance(self.opts["rounds"], int) or self.opts["rounds"] < least
                or not 0 < self.opts["threshold"] < 1):
            raise RecipeError(f"{spec}: rounds must be an integer >= 1 (0 with batchnorm=target or "
                              "mixed) and threshold in (0, 1)")
        self.config(Settings(), Path("."), "stills", Path("."), 0)  # unknown keys, bad values: fail now

    def cost(self, task: Task) -> Cost:
        base = super().cost(task)
        if not task.unlabeled:
            return base
        cfg = self.config(task.settings, task.train_dir, task.train, task.work, task.seed)
        t, t_train = cfg.frames, cfg.clip_frames_for_training
        predicted = sum(1 if i.kind == "still" else t for i in task.unlabeled)
        extra = sum(1 if i.kind == "still" else t_train for i in task.train_items + task.unlabeled)
        rounds = self.opts["rounds"]
        passes = rounds + (self.opts["batchnorm"] != "none")
        return Cost(base.train_frames + rounds * extra * task.settings.epochs,
                    base.infer_frames + passes * predicted, base.fixed_s * (1 + passes))

    def run(self, task: Task) -> dict[str, float]:
        import xmodal
        from xmodal.engine.adapt import adapt
        from xmodal.engine.train import fit

        out = task.work / "run"
        with self.training():
            fit(self.config(task.settings, task.train_dir, task.train, out, task.seed))
            if task.unlabeled_dir is not None:
                adapted = task.work / "adapted"
                adapt(out, [str(task.unlabeled_dir)], adapted, rounds=self.opts["rounds"],
                      threshold=self.opts["threshold"], batchnorm=self.opts["batchnorm"])
                out = adapted
        return _scores(xmodal.load(out, device=task.settings.device), task)


RECIPES: dict[str, type[Recipe]] = {
    "plain": PlainRecipe,
    "probe-logreg": LogRegProbe,
    "probe-knn": KnnProbe,
    "xmodal-defaults": XmodalRecipe,
    "xmodal": XmodalRecipe,
    "xmodal-adapt": AdaptRecipe,
}
DEFAULT_RECIPES = ("plain", "probe-logreg", "probe-knn", "xmodal-defaults")


def parse_recipe(spec: str) -> Recipe:
    """A recipe from its spec string (see the module docstring); RecipeError if it is bad."""
    base = spec.partition(":")[0].strip()
    if base not in RECIPES:
        raise RecipeError(f"unknown recipe {spec!r}; choose from {', '.join(RECIPES)} "
                          "(NAME or NAME:KEY=VALUE,...)")
    return RECIPES[base](spec.strip())
