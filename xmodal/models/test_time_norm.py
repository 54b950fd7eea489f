"""Prediction-time BatchNorm with a prior: each frame normalised partly by its own statistics.

In evaluation mode a BatchNorm layer normalises every channel by the mean and variance it saw in
training. For frames from another domain than the training files (video frames after photos:
other scales, scenes, blur, compression; photos after video frames) those statistics no longer
fit. Schneider et al. (2020, "Improving robustness against common corruptions by covariate shift
adaptation", NeurIPS) mix them with the test sample's own statistics, the training statistics
weighing as ``N`` samples against ``n`` test samples; with one frame (n = 1)::

    mean = (N * running_mean + mean_x) / (N + 1)
    var  = (N * running_var  + var_x)  / (N + 1)

where ``mean_x`` and ``var_x`` are the frame's statistics per channel over its pixels (H, W).
The same mixture is You et al.'s (2021) alpha-BN with alpha = 1 / (N + 1). Each frame is
normalised on its own, so a prediction never depends on the other files of its batch, and a
still (T = 1) and a clip's frames are treated alike.

It is implemented as a forward pre-hook on every ``BatchNorm2d`` (any subclass: timm's and
xmodal's with a fused activation) that rescales the layer's input, so that the layer's own
evaluation-mode arithmetic with its running statistics gives the mixed normalisation::

    x' = x * s + (running_mean - mean * s),  s = sqrt((running_var + eps) / (var + eps))

The hook acts only while the layer uses its running statistics (not in training mode) and while
its model predicts (``set_active``; ``FrameClassifier`` turns it on in ``eval()`` and off in
``train()``, so training, even of frozen layers, is unchanged). ``torch.export`` traces it, so
ONNX exports compute the same.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_PRIOR = "_test_bn_prior"  # attribute of each hooked layer: N, the training statistics' weight
_ACTIVE = "_test_bn_active"  # attribute of each hooked layer: whether its hook acts


def attach(model: nn.Module, prior: float) -> int:
    """Register the prediction-time hook (inactive) on every ``BatchNorm2d`` of ``model`` that
    keeps running statistics; ``prior`` is N (> 0). Returns how many layers were hooked. Calling
    it again only changes N."""
    if not prior > 0:
        raise ValueError(f"test_bn_prior must be > 0 (0 turns it off), got {prior}")
    layers = 0
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and module.track_running_stats:
            if not hasattr(module, _PRIOR):
                module.register_forward_pre_hook(_mix_statistics)
                setattr(module, _ACTIVE, False)
            setattr(module, _PRIOR, float(prior))
            layers += 1
    return layers


def set_active(model: nn.Module, active: bool) -> None:
    """Turn the hooks of ``model``'s layers (``attach``) on or off."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and hasattr(module, _PRIOR):
            setattr(module, _ACTIVE, active)


def _mix_statistics(module: nn.BatchNorm2d, args: tuple[Tensor, ...]) -> tuple[Tensor] | None:
    """(x,) -> (x',) such that the layer's evaluation-mode normalisation of x' normalises x by
    the statistics mixed as in the module docstring; None (x unchanged) while inactive."""
    if module.training or not getattr(module, _ACTIVE):
        return None
    x = args[0]
    prior = getattr(module, _PRIOR)
    shape = (1, -1, 1, 1)
    mean_s, var_s = module.running_mean.view(shape), module.running_var.view(shape)
    var_x, mean_x = torch.var_mean(x, dim=(2, 3), correction=0, keepdim=True)
    mean = (prior * mean_s + mean_x) / (prior + 1)
    var = (prior * var_s + var_x) / (prior + 1)
    scale = torch.sqrt((var_s + module.eps) / (var + module.eps))  # (B, C, 1, 1): small
    return (x * scale + (mean_s - mean * scale),)
