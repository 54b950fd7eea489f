"""MixStyle: training-time mixing of feature statistics between the frames of a batch.

A CNN's early feature maps carry a frame's "style" (exposure, contrast, blur, texture, noise) in
the mean and standard deviation of each channel over its pixels. MixStyle (Zhou et al., 2021,
"Domain Generalization with MixStyle", ICLR) normalises a sample's features by its own statistics
and gives them statistics mixed with another sample's of the batch::

    mu, sigma = mean and std of x per (sample, channel) over (H, W)     (no gradient)
    lam ~ Beta(alpha, alpha),  j = a random other sample of the batch
    x' = (x - mu) / sigma * (lam * sigma + (1 - lam) * sigma_j) + (lam * mu + (1 - lam) * mu_j)

so a model trained on photos sees photo content with the feature statistics of its other
training images (zoomed out onto scenes, blurred, compressed by ``--augment cross``) in between,
and leans less on the statistics that differ between photos and video frames (prediction-time
BatchNorm, ``xmodal.models.test_time_norm``, showed where they differ: the early layers).
As in the paper it acts after the stages that end at output stride 4, 8 and 16, with
probability ``p`` per batch and layer, alpha = 0.1, and only in training: inference and
exports are unchanged. Here the frames of one clip keep one partner clip and one ``lam``, so a
clip's style stays the same over time (``set_clip_length``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ALPHA = 0.1  # Beta(alpha, alpha) of the mixing weight (the paper's)
STRIDES = (4, 8, 16)  # after the stages ending at these output strides (the paper's res1-res3)
EPS = 1e-6
_STATE = "_mixstyle"  # attribute of each hooked layer: its MixStyleState


class MixStyleState:
    """What the hooks of one model share: the probability and the clip length T of the batch."""

    def __init__(self, p: float, alpha: float = ALPHA) -> None:
        if not 0 < p <= 1:
            raise ValueError(f"mixstyle must be a probability in (0, 1] (0 turns it off), got {p}")
        self.p, self.alpha, self.clip_length = p, alpha, 1


def stage_ends(encoder: nn.Module, size: int = 224, strides: tuple[int, ...] = STRIDES) -> list[str]:
    """Names of the modules whose outputs end the encoder's stages at ``strides`` (a ResNet's
    ``layer1``-``layer3``, an EfficientNet's stage containers): for each stride s, the last module
    to return an (N, C, H, W) map at s that does not lie inside a module which takes a map at s
    and returns a coarser one (the next stage's first block, whose expansion layers still work
    at s). Found by one forward of a (1, 3, size, size) input with hooks, as
    ``optim.stride_prefix`` finds its layers, so it holds for any CNN family."""
    inputs: dict[str, int] = {}
    outputs: list[tuple[str, int]] = []  # in the order the modules return

    def stride(x: object) -> int | None:
        if isinstance(x, Tensor) and x.ndim == 4 and x.shape[-2] > 1:
            return round(size / x.shape[-2])
        return None

    def before(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if args and (s := stride(args[0])) is not None:
                inputs.setdefault(name, s)
        return hook

    def after(name: str):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            if (s := stride(output)) is not None:
                outputs.append((name, s))
        return hook

    handles = []
    for name, module in encoder.named_modules():
        if name:
            handles += [module.register_forward_pre_hook(before(name)),
                        module.register_forward_hook(after(name))]
    was_training = encoder.training
    try:
        encoder.eval()
        parameter = next(encoder.parameters())
        with torch.no_grad():
            encoder(torch.zeros(1, 3, size, size, device=parameter.device, dtype=parameter.dtype))
    finally:
        for handle in handles:
            handle.remove()
        encoder.train(was_training)
    out_stride = dict(outputs)
    ends = []
    for s in strides:
        downsamplers = [n for n, o in out_stride.items() if o > s and inputs.get(n) == s]
        inside = [n for n, o in outputs if o == s
                  and not any(n.startswith(d + ".") for d in downsamplers)]
        if inside:
            ends.append(inside[-1])
    return ends


def attach(model: nn.Module, encoder: nn.Module, p: float, size: int = 224) -> list[str]:
    """Hook MixStyle (probability ``p``) after ``encoder``'s stage ends (``stage_ends``), and a
    pre-hook on ``model`` (a ``FrameClassifier``: (B, T, 3, H, W) clips) that tells them T.
    Returns the hooked modules' names; raises ValueError if there are none."""
    state = MixStyleState(p)
    names = stage_ends(encoder, size)
    if not names:
        raise ValueError(f"no (N, C, H, W) stage at output stride {', '.join(map(str, STRIDES))} "
                         "for MixStyle to act on")
    modules = dict(encoder.named_modules())
    for name in names:
        setattr(modules[name], _STATE, state)
        modules[name].register_forward_hook(_mix)

    def clip_length(module: nn.Module, args: tuple) -> None:
        clips = args[0]
        state.clip_length = clips.shape[1] if clips.ndim == 5 else 1

    model.register_forward_pre_hook(clip_length)
    return names


def mix(x: Tensor, clip_length: int = 1, alpha: float = ALPHA) -> Tensor:
    """MixStyle of (B * T, C, H, W) features: each clip's frames take the statistics mixed with
    one random other clip's frames (the same partner and weight for all T). Statistics carry no
    gradient, as in the paper."""
    frames = x.shape[0]
    clips = frames // clip_length
    var, mu = torch.var_mean(x.detach().float(), dim=(2, 3), keepdim=True)
    sigma = (var + EPS).sqrt()
    lam = torch.distributions.Beta(alpha, alpha).sample((clips, 1, 1, 1)).to(x.device)
    lam = lam.repeat_interleave(clip_length, 0)
    perm = torch.randperm(clips, device=x.device)
    order = (perm[:, None] * clip_length + torch.arange(clip_length, device=x.device)).flatten()
    mu_mix = lam * mu + (1 - lam) * mu[order]
    sigma_mix = lam * sigma + (1 - lam) * sigma[order]
    return ((x.float() - mu) / sigma * sigma_mix + mu_mix).to(x.dtype)


def _mix(module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
    state: MixStyleState = getattr(module, _STATE)
    if not module.training or torch.rand(()) >= state.p:
        return None
    if output.shape[0] // max(1, state.clip_length) < 2:
        return None  # one clip: nothing to mix with
    return mix(output, state.clip_length, state.alpha)
