"""Typed run configuration: YAML in ``configs/`` overridden by CLI flags.

One flat dataclass per concern keeps the resolved config readable when it is
saved beside the checkpoint, and avoids MMAction2-style deep inheritance.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from xmodal.errors import ConfigError

MODALITIES = ("image", "video", "mixed")
POOLINGS = ("mean", "max")
FINETUNE_MODES = ("full", "linear", "gradual", "lp-ft")
OPTIMIZERS = ("adamw", "sgd")
AUGMENT_PRESETS = ("none", "light", "strong", "cross")
VIDEO_BACKENDS = ("auto", "decord", "pyav")
DEVICES = ("auto", "cpu", "cuda")
BALANCE_MODES = ("none", "sampler", "loss")  # xmodal.data.balance
SHOT_DETECTORS = ("content", "transnetv2")  # label --segments shots (xmodal.data.shots)
ENGINES = ("auto", "torch", "onnx")  # inference engines (predict, eval, label)
BATCHNORM_MODES = ("none", "target", "mixed")  # xmodal adapt --batchnorm: whose statistics
TSN_TRAIN_SEGMENTS = 3  # default T of training clips (see TrainConfig.clip_frames_for_training)
# val_split None (the default): hold out VAL_SPLIT of each class only when every class has
# AUTO_VAL_MIN_PER_CLASS files (10 for validation). Below that a split of 2-9 files per class
# picks checkpoints by chance and takes a fifth of the training data: on 10 and 30 files per
# class, training on all of them raised stills accuracy on digits, Fashion-MNIST and LFW, and
# clips-trained accuracy at 10 (tools/bench_accuracy.py, docs/accuracy.md, 2026-12-03).
VAL_SPLIT = 0.2
AUTO_VAL_MIN_PER_CLASS = 50
# frozen_stride None (the default): a --modality video run keeps the encoder's stem and its
# layers up to output stride VIDEO_FROZEN_STRIDE at their ImageNet weights: 0.72-0.74x the
# training time at 112 px (1.42x the compute speed at 224 px), a clips-trained model's accuracy
# on stills +2.9, +6.0, -0.7 points (digits, Fashion-MNIST, LFW; 10 per class, 3 seeds) and
# +5.6, +5.6 (digits, Fashion-MNIST; 20 per class, T = 8, 2 seeds), its clip accuracy -0.5,
# +1.7, -0.7 and -6.8, 0.0. Stills-trained runs did not gain (stills 0.886 -> 0.871, 0.750 ->
# 0.758, 0.970 -> 0.930, 2 seeds), so image and mixed runs train every layer
# (tools/bench_accuracy.py; docs/accuracy.md, "Suite run, 2026-12-03 (4)").
VIDEO_FROZEN_STRIDE = 8
# Prediction-time BatchNorm (xmodal.models.test_time_norm; Schneider et al., 2020): each frame is
# normalised by the training statistics weighted as N frames, mixed with its own. Off by default:
# N = 32 raised a stills-trained model's clip accuracy on the suite by +5.0 / +4.2 / -0.7 points
# (digits / Fashion-MNIST / LFW) and a clips-trained model's photo accuracy by +7.9 / +5.0 / +0.7,
# but its unfused BatchNorm layers made ONNX Runtime inference 3-5x slower (INT8: 9-14x) on 2
# cores (tools/bench_test_time_norm.py; docs/accuracy.md, "2026-12-07").
TEST_BN_PRIOR = 0.0
# still_scale None (the default): a --modality video run sees a still (a photo, a 1-frame clip)
# zoomed out to VIDEO_STILL_SCALE of the frame's sides, centred on its border colour
# (xmodal.data.resize.zoom_out), as its training clips showed their objects: smaller than a
# photo does. On the accuracy suite's clips-trained models (10 per class, 3 seeds, 840 / 1,000 /
# 100 test stills) clips -> stills went 0.513 -> 0.681 (digits), 0.647 -> 0.696 (Fashion-MNIST),
# 0.997 -> 0.987 (LFW); 0.65 gave 0.663 / 0.703 / 0.983. Stills-trained models lose at any
# zoom-out (0.913 -> 0.900, 0.736 -> 0.719, 0.967 -> 0.957 at 0.8), so image and mixed runs
# keep 1 (tools/bench_accuracy.py; docs/accuracy.md, "2026-12-08 (14)").
VIDEO_STILL_SCALE = 0.8
FROZEN_STRIDES = (0, 2, 4, 8, 16, 32)


@dataclass
class TrainConfig:
    """Everything that determines a training run; saved as ``config.yaml`` in the run dir."""

    # data
    data: str | None = None
    csv: str | None = None
    multi_label: bool = False  # CSV labels "a|b": sigmoid per class, BCE, tuned thresholds
    modality: str = "video"
    val: str | None = None
    val_split: float | None = None  # None: VAL_SPLIT if every class has AUTO_VAL_MIN_PER_CLASS files, else 0
    pseudo_csv: str | None = None  # extra training rows (self-training), never validated on
    frames: int = 8
    train_frames: int | None = None  # T of training clips; None = min(3, frames): TSN's 3 segments
    video_backend: str = "auto"
    workers: int = 2
    # model
    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"
    init: str | None = None  # start from this run's weights (same classes), e.g. to adapt it
    pooling: str = "mean"
    dropout: float = 0.2
    test_bn_prior: float = TEST_BN_PRIOR  # prediction-time BatchNorm: N of the training statistics; 0 = off
    still_scale: float | None = None  # stills zoomed out to this fraction at prediction; None: by modality
    input_size: int | None = None
    train_size: int | None = None  # training crop size (FixRes: below the test size); None = input
    # optimisation
    finetune: str = "full"
    freeze_bn_stats: bool = False  # BatchNorm keeps its pretrained running statistics
    frozen_stride: int | None = None  # freeze the encoder up to this output stride; None: by modality
    unfreeze_every: int = 1
    epochs: int = 5
    min_steps: int = 400  # tiny data sets: more epochs until this many optimiser steps (docs/accuracy.md)
    batch_size: int = 8
    lr: float = 1e-3
    backbone_lr_mult: float = 1.0
    optimizer: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    grad_clip: float | None = 1.0
    accumulate: int = 1
    augment: str = "cross"
    mixup: float = 0.0  # Beta(alpha, alpha) for MixUp; 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha) for CutMix; 0 = off (both on: one or the other per batch)
    image_ratio: float | None = None
    # none | sampler | loss: class-balanced sampling or loss weights; None: loss (measured best
    # on a long-tailed split, and the same as none on balanced classes), none for multi-label
    balance: str | None = None
    patience: int | None = None
    precision: str = "auto"
    compile: bool = False  # torch.compile the encoder (pays on long GPU runs)
    feature_cache: bool = True  # linear probe: encode each file once, cache its features on disk
    frame_cache: bool = True  # decode each training video once per run (xmodal.data.frame_cache)
    # run
    seed: int = 0
    device: str = "auto"
    out: str | None = None

    @property
    def clip_frames_for_training(self) -> int:
        """T of a training clip: ``train_frames``, or TSN's 3 segments (Wang et al., 2016,
        "Temporal Segment Networks": trained with 3, tested with 25), never more than ``frames``;
        inference keeps ``frames``."""
        return self.train_frames if self.train_frames is not None else min(TSN_TRAIN_SEGMENTS, self.frames)

    @property
    def frozen_stride_for_training(self) -> int:
        """The output stride up to which the encoder stays frozen (0: none): ``frozen_stride``,
        or VIDEO_FROZEN_STRIDE for ``modality`` video and 0 for image and mixed runs and for
        ``weights`` none (nothing pretrained to keep)."""
        if self.frozen_stride is not None:
            return self.frozen_stride
        pretrained = self.weights != "none"
        return VIDEO_FROZEN_STRIDE if self.modality == "video" and pretrained else 0

    @property
    def still_scale_for_prediction(self) -> float:
        """The fraction of the frame's sides a still fills when the run predicts it (1: as is):
        ``still_scale``, or VIDEO_STILL_SCALE for ``modality`` video (a clips-only model) and 1
        for image and mixed runs, which trained on stills as they come."""
        if self.still_scale is not None:
            return self.still_scale
        return VIDEO_STILL_SCALE if self.modality == "video" else 1.0

    def val_fraction(self, class_sizes: list[int]) -> float:
        """The fraction of each class held out for validation: ``val_split`` when set, else
        VAL_SPLIT when every class has at least AUTO_VAL_MIN_PER_CLASS files (always with
        ``multi_label``, whose thresholds are tuned on it), else 0 (every file trains, and the
        epoch with the lowest training loss is kept). ``class_sizes``: files per class."""
        if self.val_split is not None:
            return self.val_split
        if self.multi_label or (class_sizes and min(class_sizes) >= AUTO_VAL_MIN_PER_CLASS):
            return VAL_SPLIT
        return 0.0

    def validate(self) -> TrainConfig:
        """Reject impossible values early, with the option's name in the message."""
        _choice("modality", self.modality, MODALITIES)
        _choice("pooling", self.pooling, POOLINGS)
        _choice("finetune", self.finetune, FINETUNE_MODES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("augment", self.augment, AUGMENT_PRESETS)
        _choice("video_backend", self.video_backend, VIDEO_BACKENDS)
        if self.balance is None:
            self.balance = "none" if self.multi_label else "loss"
        _choice("balance", self.balance, BALANCE_MODES)
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, ("auto", "fp32", "bf16"))
        _positive("frames", self.frames)
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        _positive("accumulate", self.accumulate)
        _positive("unfreeze_every", self.unfreeze_every)
        stride = self.frozen_stride
        if stride is not None and (type(stride) is not int or stride not in FROZEN_STRIDES):
            raise ConfigError(f"frozen_stride must be one of {', '.join(map(str, FROZEN_STRIDES))} "
                              f"(0: every layer trains), got {stride!r}")
        if stride and self.weights == "none":
            raise ConfigError("frozen_stride keeps layers at their pretrained weights; with "
                              "weights none they would stay random: use frozen_stride 0")
        if self.min_steps < 0:
            raise ConfigError(f"min_steps must be >= 0, got {self.min_steps}")
        for name in ("input_size", "train_size"):
            if getattr(self, name) is not None and getattr(self, name) < 32:
                raise ConfigError(f"{name} must be >= 32 px, got {getattr(self, name)}")
        if self.train_frames is not None:
            _positive("train_frames", self.train_frames)
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.val_split is not None and not 0.0 <= self.val_split < 1.0:
            raise ConfigError(f"val_split must be in [0, 1), got {self.val_split}")
        if not (self.test_bn_prior >= 0 and math.isfinite(self.test_bn_prior)):
            raise ConfigError(f"test_bn_prior must be a finite number >= 0 (0 = off), "
                              f"got {self.test_bn_prior}")
        if self.still_scale is not None and not 0.0 < self.still_scale <= 1.0:
            raise ConfigError(f"still_scale must be in (0, 1] (1: stills as they come), "
                              f"got {self.still_scale}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        for name in ("mixup", "cutmix"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (0 = off), got {getattr(self, name)}")
        if self.multi_label and self.csv is None:
            raise ConfigError("multi_label needs --csv: a folder per class cannot give a file "
                              "several labels (write path,label1|label2 rows)")
        if self.multi_label and (self.mixup or self.cutmix):
            raise ConfigError("mixup and cutmix mix one label per clip; turn them off with multi_label")
        if self.image_ratio is not None and not 0.0 < self.image_ratio < 1.0:
            raise ConfigError(f"image_ratio must be in (0, 1), got {self.image_ratio}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Read a YAML config (if given), apply non-None overrides, validate."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_yaml(path))
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("extra") == {}:  # written (always empty, never read) by runs before 2026-12-07
        del values["extra"]
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        source = f"{path}: " if path is not None else ""
        raise ConfigError(f"{source}unknown config key(s): {', '.join(unknown)}")
    try:
        return TrainConfig(**values).validate()
    except TypeError as exc:  # wrong value types from YAML
        raise ConfigError(f"{path}: {exc}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping, turning parse errors into one-line ConfigErrors."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def dump_yaml(values: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(values, sort_keys=False)
