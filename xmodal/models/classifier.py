"""Encoder + head + temporal pooling: one model for clips and stills.

A clip (B, T, 3, H, W) goes through the encoder as B*T images in one batch;
per-frame logits are pooled over T (TSN's segmental consensus). A still image
is a clip with T = 1, so the same weights and code path classify both.
Frames arrive as uint8 and are normalised on the model's device, which keeps
host-to-device copies 4x smaller than float.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from xmodal.errors import ModelError
from xmodal.models import test_time_norm
from xmodal.models.encoders import Encoder, create_encoder, imagenet_categories

POOLINGS = ("mean", "max")


class FrameClassifier(nn.Module):
    """(B, T, 3, H, W) uint8 frames -> (B, K) clip logits; (B, 3, H, W) is taken as T = 1."""

    def __init__(self, encoder: Encoder, num_classes: int, *, pooling: str = "mean",
                 dropout: float = 0.0, head: nn.Linear | None = None,
                 test_bn_prior: float | None = None) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ModelError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if num_classes < 1:
            raise ModelError(f"a classifier needs at least one class, got {num_classes}")
        if head is None:
            head = nn.Linear(encoder.num_features, num_classes)
            # Small initial logits: the new head starts near uniform and does not
            # send large gradients into the pretrained encoder in the first steps.
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)
        if (head.in_features, head.out_features) != (encoder.num_features, num_classes):
            raise ModelError(f"head {head.in_features}->{head.out_features} does not fit "
                             f"{encoder.num_features} features -> {num_classes} classes")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = head
        cfg = encoder.pretrained_cfg
        # Scaled by 255 so uint8 input needs one subtract and one divide. Not persistent:
        # the checkpoint's JSON metadata records the preprocessing.
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1) * 255, persistent=False)
        # Prediction-time BatchNorm (xmodal.models.test_time_norm): off in training, on in eval().
        self.test_bn_prior = test_bn_prior or None
        if self.test_bn_prior is not None and not test_time_norm.attach(self.encoder, self.test_bn_prior):
            raise ModelError(f"{encoder.name}: no BatchNorm2d layer for --test-bn-prior to act on "
                             "(LayerNorm/GroupNorm encoders); use 0")

    def train(self, mode: bool = True) -> FrameClassifier:
        """As ``nn.Module.train``; also turns prediction-time BatchNorm off (training) or on."""
        super().train(mode)
        if self.test_bn_prior is not None:
            test_time_norm.set_active(self.encoder, not mode)
        return self

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def normalise(self, images: Tensor) -> Tensor:
        """uint8 [0, 255] or float [0, 1] images -> normalised float, on the model's device."""
        images = images.to(self.mean.device, non_blocking=True)
        x = images.to(self.mean.dtype)
        if images.dtype != torch.uint8:
            x = x * 255
        x = (x - self.mean) / self.std
        # prepare_model puts the CNN in channels_last; a model left in NCHW gets NCHW input.
        if _is_channels_last(self.encoder):
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def frame_logits(self, clips: Tensor) -> Tensor:
        """Per-frame logits (B, T, K), before temporal pooling."""
        if clips.ndim == 4:
            clips = clips.unsqueeze(1)
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"expected clips shaped (B, T, 3, H, W) or (B, 3, H, W), "
                             f"got {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        features = self.encoder(self.normalise(clips.flatten(0, 1)))
        return self.head(self.dropout(features)).view(b, t, -1)

    def pool(self, frame_logits: Tensor) -> Tensor:
        """(B, T, K) per-frame logits -> (B, K): the temporal consensus."""
        return frame_logits.mean(1) if self.pooling == "mean" else frame_logits.amax(1)

    def forward(self, clips: Tensor) -> Tensor:
        """Clip-level logits (B, K): per-frame logits pooled over time."""
        return self.pool(self.frame_logits(clips))


def _is_channels_last(model: nn.Module) -> bool:
    """Whether the first convolution's weights are in NHWC memory (the whole model was moved)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.is_contiguous(memory_format=torch.channels_last)
    return False


def build_classifier(backbone: str, num_classes: int, weights: str = "imagenet",
                     pooling: str = "mean", dropout: float = 0.0,
                     test_bn_prior: float | None = None) -> FrameClassifier:
    """A (pretrained) encoder with a new ``num_classes`` head, ready to fine-tune.
    ``test_bn_prior``: N of prediction-time BatchNorm (``xmodal.models.test_time_norm``);
    None or 0: off."""
    return FrameClassifier(create_encoder(backbone, weights), num_classes, pooling=pooling,
                           dropout=dropout, test_bn_prior=test_bn_prior)


def imagenet_classifier(backbone: str, weights: str = "imagenet") -> tuple[FrameClassifier, list[str]]:
    """The encoder with its own ImageNet head and the 1000 class names (``predict ENCODER``)."""
    encoder = create_encoder(backbone, weights)
    head = encoder.imagenet_head
    if head is None:
        raise ModelError(f"{backbone}: these weights ({weights}) have no trained ImageNet classifier "
                         "to predict with; use weights='imagenet' or a full ImageNet state dict")
    if encoder.pretrained_cfg.categories_source != "imagenet" or head.out_features != 1000:
        raise ModelError(f"{backbone}: its classifier has {head.out_features} outputs, not the 1000 "
                         "ImageNet classes whose names xmodal knows")
    return FrameClassifier(encoder, head.out_features, head=head), imagenet_categories()


def classifier_from_meta(meta: Mapping[str, Any]) -> FrameClassifier:
    """The architecture a checkpoint describes, weights not downloaded (the caller loads them).

    The recorded preprocessing wins over the registry's, so a checkpoint keeps
    being fed the way it was trained even if the registry changes.
    """
    try:
        backbone, classes = str(meta["backbone"]), list(meta["classes"])
    except (KeyError, TypeError):
        raise ModelError("checkpoint metadata lacks 'backbone' or 'classes'") from None
    encoder = create_encoder(backbone, weights="none")
    encoder.pretrained_cfg = encoder.pretrained_cfg.with_preprocessing(meta.get("preprocessing") or {})
    prior = meta.get("test_bn_prior")  # runs before 2026-12-07 have none: off
    return FrameClassifier(encoder, len(classes), pooling=str(meta.get("pooling", "mean")),
                           dropout=float(meta.get("dropout", 0.0)),
                           test_bn_prior=None if prior is None else float(prior))
