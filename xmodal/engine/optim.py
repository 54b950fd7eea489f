"""Optimiser, schedule and freezing policies for fine-tuning a pretrained encoder."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from xmodal.config import TrainConfig

NUM_STAGES = 4


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Head and encoder groups (discriminative LR), each split so norms and biases get no decay."""
    groups: list[dict] = []
    for part, lr in (("head", cfg.lr), ("encoder", cfg.lr * cfg.backbone_lr_mult)):
        module = getattr(model, part)
        decay, no_decay = [], []
        for name, param in module.named_parameters():
            (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
        groups.append({"params": decay, "lr": lr, "weight_decay": cfg.weight_decay,
                       "name": f"{part}"})
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0,
                       "name": f"{part}_no_decay"})
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def warmup_cosine(total_steps: int, warmup_steps: int) -> callable:
    """LR factor: linear warmup from ~0 to 1, then cosine decay to 0 over the rest."""
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, warmup))


def encoder_stages(encoder: nn.Module, num_stages: int = NUM_STAGES) -> list[list[nn.Parameter]]:
    """Split the encoder's parameters, input to output, into stages of similar size.

    Registration order follows depth in every torchvision/timm CNN, so equal
    chunks by parameter count give a family-independent notion of 'stage'.
    """
    params = list(encoder.parameters())
    total = sum(p.numel() for p in params)
    stages: list[list[nn.Parameter]] = [[] for _ in range(num_stages)]
    seen = 0
    for p in params:
        index = min(num_stages - 1, int(num_stages * seen / max(1, total)))
        stages[index].append(p)
        seen += p.numel()
    return [s for s in stages if s]


def trainable_stages(cfg: TrainConfig, epoch: int) -> int | None:
    """How many of the deepest encoder stages train in ``epoch`` (None = all)."""
    if cfg.finetune in ("full", "lp-ft"):
        return None
    if cfg.finetune == "linear":
        return 0
    return min(NUM_STAGES, epoch // cfg.unfreeze_every)


def apply_freezing(model: nn.Module, cfg: TrainConfig, epoch: int,
                   frozen: frozenset[str] = frozenset()) -> None:
    """Set requires_grad per stage, and off for the parameters named in ``frozen`` (names in
    ``model``, see ``stride_prefix``); frozen BatchNorm layers keep their running statistics."""
    count = trainable_stages(cfg, epoch)
    stages = encoder_stages(model.encoder)
    for i, stage in enumerate(stages):
        trainable = count is None or i >= len(stages) - count
        for p in stage:
            p.requires_grad_(trainable)
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)


def stride_prefix(model: nn.Module, stride: int, size: int = 224) -> frozenset[str]:
    """Names of the encoder parameters (as ``model.named_parameters()`` gives them) that work at
    output stride ``stride`` or finer: those of every layer run before the first one whose output
    is coarser than ``size / stride`` px (the stem and the early, high-resolution stages). Found
    by one forward of a (1, 3, size, size) input in evaluation mode with hooks, so it holds for
    any CNN family (a squeeze-excite gate's 1 x 1 output joins its block); a layer whose output
    is not (N, C, H, W) (a transformer's tokens) ends the prefix. ``stride`` 0: none. The layers
    freeze as MMAction2's ``frozen_stages`` and timm's ``freeze`` do; chosen by stride, not by a
    family's own stage count."""
    if stride <= 0:
        return frozenset()
    encoder = model.encoder
    calls: list[tuple[str, int | None]] = []

    def record(name: str):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            height = output.shape[-2] if isinstance(output, Tensor) and output.ndim == 4 else None
            calls.append((name, height))
        return hook

    owners = {name: module for name, module in encoder.named_modules()
              if any(True for _ in module.parameters(recurse=False))}
    handles = [module.register_forward_hook(record(name)) for name, module in owners.items()]
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
    prefix: list[str] = []
    for name, height in calls:
        if height is None:
            break
        # A 1x1 output (squeeze-excite's pooled gate) says nothing of its block's resolution;
        # sizes rounded down by unpadded layers (299 px -> 35) still count as their stride.
        if height > 1 and round(math.log2(size / height)) > math.log2(stride):
            break
        if name not in prefix:
            prefix.append(name)
    names = {f"encoder.{name}.{p}" if name else f"encoder.{p}"
             for name in prefix for p, _ in owners[name].named_parameters(recurse=False)}
    return frozenset(names)


def set_train_mode(model: nn.Module, freeze_bn_stats: bool = False) -> None:
    """Train mode, except normalisation layers whose parameters are frozen (linear probe), or
    all of them with ``freeze_bn_stats``: BatchNorm then keeps ImageNet's running statistics
    instead of estimating them from a few correlated clips per batch (B clips x T frames). A norm
    layer without affine parameters (``affine=False``) is frozen when every parameter of the
    module that holds it is."""
    model.train()
    modules = dict(model.encoder.named_modules())
    for name, module in modules.items():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            # A norm layer without affine parameters is as frozen as the block that holds it.
            owner = module if module.affine else modules[name.rpartition(".")[0]]
            params = list(owner.parameters())
            if freeze_bn_stats or (params and not any(p.requires_grad for p in params)):
                module.eval()
