"""Facts about the registered encoders, for ``xmodal backbones``.

Parameters and GFLOPs are measured on the built model (weights not needed);
"offline" says whether ImageNet weights load right now without a network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from xmodal.errors import ModelError
from xmodal.models.encoders import (
    LITE_ENCODERS,
    TIMM_PREFIX,
    TORCHVISION_ENCODERS,
    create_encoder,
    lite_weights_file,
)


@dataclass(frozen=True)
class EncoderFacts:
    name: str
    params_m: float
    gflops: float
    features: int
    input_size: int
    offline: bool


def pretrained_available(name: str) -> bool:
    """Whether ImageNet weights for ``name`` are on disk (package, TORCH_HOME or HF cache)."""
    if name in LITE_ENCODERS:
        try:
            return lite_weights_file(name).is_file()
        except ModelError:  # the package is not installed
            return False
    if name in TORCHVISION_ENCODERS:
        from torchvision import models

        url = models.get_model_weights(name).DEFAULT.url
        return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file()
    if name.startswith(TIMM_PREFIX):
        try:
            import timm
            from huggingface_hub import try_to_load_from_cache

            repo = timm.models.get_pretrained_cfg(name[len(TIMM_PREFIX):]).hf_hub_id
            return any(isinstance(try_to_load_from_cache(repo, f), str)
                       for f in ("model.safetensors", "pytorch_model.bin"))
        except Exception:  # unknown model or no hub id: not available offline
            return False
    return False


def encoder_facts(name: str, size: int | None = None) -> EncoderFacts:
    """Parameters, GFLOPs (multiply-adds, as torchvision and timm quote them) at ``size`` px
    (default: the encoder's own input size) and feature width."""
    from torch.utils.flop_counter import FlopCounterMode

    encoder = create_encoder(name, weights="none").eval()
    params = sum(p.numel() for p in encoder.parameters())
    size = size or encoder.pretrained_cfg.input_size
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(torch.zeros(1, 3, size, size))
    return EncoderFacts(name, params / 1e6, counter.get_total_flops() / 2e9, encoder.num_features,
                        encoder.pretrained_cfg.input_size, pretrained_available(name))
