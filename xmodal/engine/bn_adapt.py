"""BatchNorm statistics of the target domain: ``xmodal adapt RUN --unlabeled DIR --rounds 0``.

A model's BatchNorm layers normalise each channel by the mean and variance they saw in training.
When the files it will label look different (video frames after photos: other scales, scenes,
blur, compression), those statistics no longer fit, and re-estimating them on unlabelled files
of the target domain, with every weight kept, is a cheap and often strong correction: AdaBN (Li
et al., 2016, "Revisiting Batch Normalization For Practical Domain Adaptation"; also Schneider
et al., 2020, "Improving robustness against common corruptions by covariate shift adaptation").
The statistics are computed as PyTorch's ``torch.optim.swa_utils.update_bn`` does (a cumulative
average over batches in training mode), on batches that mix frames of many files, since the
frames of one clip vary far less than frames across clips.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmodal.engine.reporting import Reporter

if TYPE_CHECKING:
    import torch

DEFAULT_MAX_FRAMES = 2048  # frames the statistics are computed on (drawn evenly over the files)
BATCH_FRAMES = 64  # frames per forward pass: mixed across files
MIN_FRAMES = 16  # fewer give statistics too noisy to replace the training ones


@dataclass
class BatchNormAdaptation:
    files: int  # unlabelled files decoded
    failed: int  # files that could not be decoded (skipped, named in a warning)
    frames: int  # frames the statistics were computed on
    layers: int  # BatchNorm layers re-estimated


def adapt_batchnorm(run: str | os.PathLike[str], unlabeled: list[str], out: str | os.PathLike[str], *,
                    max_frames: int = DEFAULT_MAX_FRAMES, seed: int = 0, workers: int | None = None,
                    device: str = "auto", reporter: Reporter | None = None) -> BatchNormAdaptation:
    """Copy the run directory ``run`` to ``out`` with its BatchNorm statistics re-estimated on
    the files under ``unlabeled`` (AdaBN). Every weight is kept; only ``running_mean`` and
    ``running_var`` change, of the layers that estimated theirs from the run's data
    (``trained_norms``). Each file gives the frames its run would classify (``frames`` TSN
    segments for a clip, one for a still, at the run's input size); at most ``max_frames`` of them,
    drawn evenly over the files with ``seed``, are shuffled into batches of 64 frames.

    Raises ConfigError (``out`` is ``run``, a multi-label or BatchNorm-free model, an ONNX
    export), DatasetError (no file, or none decodable), CheckpointError.
    """
    from xmodal.checkpoint import save_checkpoint
    from xmodal.engine.runtime import resolve_device
    from xmodal.engine.train import resume_config
    from xmodal.errors import ConfigError, DatasetError

    reporter = reporter or Reporter()
    run, out = Path(run), Path(out)
    if out.resolve() == run.resolve():
        raise ConfigError(f"{out}: --out must be a new folder, not the run being adapted")
    loaded = _load_run(run)
    norms = trained_norms(loaded.model, resume_config(run), loaded.input_size)
    if not norms:
        raise ConfigError(f"{run}: no BatchNorm layer of this model learnt its statistics from the "
                          "run's data (a linear probe, or --freeze-bn-stats): nothing to adapt")
    frames, failed, count = _target_frames(loaded, unlabeled, max_frames, seed, workers, reporter)
    if len(frames) < MIN_FRAMES:
        raise DatasetError(", ".join(unlabeled), f"{len(frames)} frame(s) decoded from {count - failed} "
                           f"file(s); BatchNorm statistics need at least {MIN_FRAMES}")
    _update_statistics(loaded.model, frames, norms, seed, resolve_device(device))
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(run, out, ignore=shutil.ignore_patterns("last", "rounds", "*.tmp"))
    meta = dict(loaded.meta)
    meta["adapted"] = {"method": "batchnorm", "from": str(run), "files": count - failed,
                       "frames": len(frames)}
    save_checkpoint(loaded.model, meta, out)
    result = BatchNormAdaptation(count - failed, failed, len(frames), len(norms))
    reporter.info(f"BatchNorm statistics of {result.layers} layers re-estimated on {result.frames} "
                  f"frames of {result.files} unlabelled files -> {out}")
    return result


def trained_norms(model: torch.nn.Module, cfg: Any, input_size: int) -> list[Any]:
    """The BatchNorm layers whose running statistics ``cfg``'s training estimated from its data
    (as of its last epoch): AdaBN replaces statistics of the training domain. Layers that kept
    ImageNet's (a frozen-stride prefix, a linear probe's encoder, ``freeze_bn_stats``) stay."""
    import torch

    from xmodal.engine.optim import apply_freezing, set_train_mode, stride_prefix

    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    apply_freezing(model, cfg, max(0, cfg.epochs - 1), stride_prefix(model, cfg.frozen_stride_for_training,
                                                                    input_size))
    set_train_mode(model, cfg.freeze_bn_stats)
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    model.eval()
    for name, p in model.named_parameters():
        p.requires_grad_(flags[name])
    return norms


def _load_run(run: Path) -> Any:
    from xmodal.deploy.onnx_model import is_onnx_export
    from xmodal.engine.multilabel import is_multi_label
    from xmodal.engine.predict import load_model
    from xmodal.errors import ConfigError

    if not (run / "config.yaml").is_file() or is_onnx_export(run):
        raise ConfigError(f"{run}: not a run directory of `xmodal train` (an export or a bare "
                          "checkpoint cannot be adapted)")
    loaded = load_model(run, engine="torch")
    if is_multi_label(loaded.meta):
        raise ConfigError(f"{run}: a multi-label run cannot be adapted here")
    return loaded


def _target_frames(loaded: Any, unlabeled: list[str], max_frames: int, seed: int,
                   workers: int | None, reporter: Reporter) -> tuple[torch.Tensor, int, int]:
    """(frames (F, 3, S, S) uint8, files that failed, files found) from the unlabelled files,
    decoded as ``xmodal predict`` decodes them (the same reader, in isolated workers)."""
    import torch

    from xmodal.engine.inputs import ClipReader
    from xmodal.engine.label import find_files
    from xmodal.engine.predict import describe_failure
    from xmodal.engine.workers import DecodePool

    files = find_files(unlabeled).files
    rng = np.random.default_rng(seed)
    per_file = max(1, -(-max_frames // max(1, len(files))))  # ceil: the budget spread evenly
    reader = ClipReader(loaded.frames, loaded.input_size, loaded.resize_size, "auto")
    if workers is None:  # as predict: starting processes costs more than it saves for a few files
        workers = 0 if len(files) <= 2 else min(4, os.cpu_count() or 1)
    pool = DecodePool(reader, workers=workers, describe_error=describe_failure)
    chunks, failed = [], []
    for index, result, error in reporter.track(pool.imap([str(f) for f in files]),
                                               total=len(files), desc="decode"):
        if result is None:
            failed.append(f"{files[index]}: {error}")
            continue
        views = result[0].flatten(0, 1)  # (N*T, 3, S, S)
        keep = rng.permutation(len(views))[:per_file]
        chunks.append(views[np.sort(keep)])
    if failed:
        reporter.warning(f"{len(failed)} unlabelled file(s) skipped: " + "; ".join(failed[:3])
                         + (" ..." if len(failed) > 3 else ""))
    frames = torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.uint8)
    return frames[:max_frames], len(failed), len(files)


def _update_statistics(model: torch.nn.Module, frames: torch.Tensor, norms: list[Any], seed: int,
                       device: torch.device) -> None:
    """Reset ``norms`` and average their batch statistics over shuffled batches of ``frames``
    (uint8 (F, 3, S, S)), as ``torch.optim.swa_utils.update_bn`` does; the rest of the model stays
    in evaluation mode (dropout off), and the model ends in evaluation mode."""
    import torch

    momenta = [m.momentum for m in norms]
    model.to(device).eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts the same
        m.train()
    order = torch.randperm(len(frames), generator=torch.Generator().manual_seed(seed))
    # A last batch much smaller than the others would weigh as much as any of them: fold it in.
    starts = list(range(0, len(frames), BATCH_FRAMES))
    if len(starts) > 1 and len(frames) - starts[-1] < BATCH_FRAMES // 2:
        starts.pop()
    bounds = [*starts[1:], len(frames)]
    with torch.no_grad():
        for start, stop in zip(starts, bounds, strict=True):
            model.frame_logits(frames[order[start:stop]].unsqueeze(1).to(device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.to("cpu").eval()
