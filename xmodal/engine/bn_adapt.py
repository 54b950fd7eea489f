"""BatchNorm statistics of the target domain: ``xmodal adapt RUN --unlabeled DIR --batchnorm``.

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

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmodal.engine.reporting import Reporter

if TYPE_CHECKING:
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    from xmodal.config import TrainConfig
    from xmodal.engine.predict import LoadedModel

DEFAULT_MAX_FRAMES = 2048  # frames the statistics are computed on (drawn evenly over the files)
BATCH_FRAMES = 64  # frames per forward pass: mixed across files
MIN_FRAMES = 16  # fewer give statistics too noisy to replace the training ones


@dataclass
class BatchNormAdaptation:
    """What ``adapt_batchnorm`` did: files and frames used, layers re-estimated."""

    files: int  # unlabelled files decoded
    failed: int  # files that could not be decoded (skipped, named in a warning)
    frames: int  # frames of the unlabelled files the statistics were computed on
    layers: int  # BatchNorm layers re-estimated
    training_frames: int = 0  # frames of the run's own training files (``mixed``)


def adapt_batchnorm(run: str | os.PathLike[str], unlabeled: list[str], out: str | os.PathLike[str], *,
                    mixed: bool = False, max_frames: int = DEFAULT_MAX_FRAMES, seed: int = 0,
                    workers: int | None = None, device: str = "auto",
                    test_bn_prior: float | None = None, files: list[Any] | None = None,
                    reporter: Reporter | None = None) -> BatchNormAdaptation:
    """Copy the run directory ``run`` to the new folder ``out`` with its BatchNorm statistics
    re-estimated on the files under ``unlabeled`` (AdaBN). Every weight is kept; only
    ``running_mean`` and ``running_var`` change, of the layers that estimated theirs from the
    run's data (``trained_norms``). Each file gives the frames its run would classify (``frames``
    TSN segments for a clip, one for a still, at the run's input size); at most ``max_frames`` of
    them, spread evenly over the files (one frame from each of ``max_frames`` files drawn with
    ``seed`` when there are more), are shuffled into batches of 64 frames.

    ``mixed``: as many frames again from the run's own labelled training split (its
    ``config.yaml`` names the data; pseudo-labelled files left out), half the budget at most,
    so that one model serves both domains (photos and video frames), not the target alone.
    ``test_bn_prior``: N of prediction-time BatchNorm for ``out`` (0: off; None: the run's).
    ``files``: the files under ``unlabeled`` when the caller has listed them already.

    Raises ConfigError (``out`` not a new folder, or inside ``run`` or holding it; not a run of
    ``xmodal train``; a multi-label model or one without trained BatchNorm statistics; ``out``
    unwritable), DatasetError (fewer than 16 frames decoded, the run's data gone),
    CheckpointError.
    """
    from xmodal.engine.label import find_files
    from xmodal.engine.runtime import resolve_device
    from xmodal.engine.train import resume_config
    from xmodal.errors import ConfigError, DatasetError

    reporter = reporter or Reporter()
    run, out = Path(run), Path(out)
    check_new_folder(run, out)
    loaded = load_run(run, test_bn_prior)  # statistics estimated as OUT will predict
    cfg = resume_config(run)
    norms = trained_norms(loaded.model, cfg, loaded.input_size)
    if not norms:
        raise ConfigError(f"{run}: no BatchNorm layer of this model learnt its statistics from the "
                          "run's data (a linear probe, or --freeze-bn-stats): nothing to adapt")
    rng = np.random.default_rng(seed)
    files = find_files(unlabeled).files if files is None else files
    budget = max_frames // 2 if mixed else max_frames
    frames, decoded, failed = _frames_of(loaded, files, budget, rng, workers, reporter, "unlabelled")
    if len(frames) < MIN_FRAMES:
        raise DatasetError(", ".join(unlabeled), f"{len(frames)} frame(s) decoded from {decoded} "
                           f"file(s); BatchNorm statistics need at least {MIN_FRAMES}: add "
                           f"unlabelled files (a video gives {loaded.frames} frames, a photo 1)")
    own = _training_frames(loaded, cfg, len(frames), rng, workers, reporter) if mixed else None
    _update_statistics(loaded.model, frames if own is None else _cat(frames, own), norms, seed,
                       resolve_device(device))
    result = BatchNormAdaptation(decoded, failed, len(frames), len(norms), 0 if own is None else len(own))
    meta = _adapted(loaded.meta, run, method="batchnorm", statistics="mixed" if mixed else "target",
                    files=result.files, frames=result.frames, training_frames=result.training_frames)
    _write_run(run, out, loaded.model, meta)
    mix = f" and {result.training_frames} frames of the run's training files" if mixed else ""
    reporter.info(f"BatchNorm statistics of {result.layers} layers re-estimated on {result.frames} "
                  f"frames of {result.files} unlabelled files{mix} -> {out}")
    return result


def set_test_bn_prior(run: str | os.PathLike[str], out: str | os.PathLike[str], prior: float, *,
                      reporter: Reporter | None = None) -> None:
    """Copy the run directory ``run`` to the new folder ``out`` with prediction-time BatchNorm
    (``xmodal.models.test_time_norm``) set to ``prior`` (N; 0 turns it off); every weight and
    statistic is kept, so a model trained without it can use it (or the reverse) without
    retraining. Raises ConfigError (as ``adapt_batchnorm``; an encoder without BatchNorm2d
    layers), CheckpointError."""
    reporter = reporter or Reporter()
    run, out = Path(run), Path(out)
    check_new_folder(run, out)
    loaded = load_run(run, prior)
    _write_run(run, out, loaded.model, _adapted(loaded.meta, run, method="test_bn_prior",
                                                test_bn_prior=float(prior)))
    what = f"N = {prior:g}" if prior else "off"
    reporter.info(f"prediction-time BatchNorm {what}, every weight kept -> {out}")


def _adapted(meta: dict[str, Any], run: Path, **record: Any) -> dict[str, Any]:
    """``meta`` with ``record`` as its latest adaptation (of the run at ``run``); an earlier one
    is kept under ``previous``, so ``xmodal info`` shows the chain."""
    previous = meta.get("adapted")
    return {**meta, "adapted": {**record, "from": str(run.resolve()),
                                **({"previous": previous} if previous else {})}}


def check_new_folder(run: Path, out: Path) -> None:
    """ConfigError unless ``out`` is a new (or empty) folder that is neither inside ``run`` nor
    holds it: adapting writes a whole run there and must never overwrite the one it reads."""
    from xmodal.errors import ConfigError

    r, o = run.resolve(), out.resolve()
    if o == r or r in o.parents or o in r.parents:
        raise ConfigError(f"{out}: --out must be a new folder outside {run} (not it, inside it or "
                          "holding it)")
    if o.exists() and (not o.is_dir() or any(o.iterdir())):
        raise ConfigError(f"{out}: already exists; give --out a new folder for the adapted run")


def _write_run(run: Path, out: Path, model: torch.nn.Module, meta: dict[str, Any]) -> None:
    """``run``'s folder (config, metrics; not its resume state, earlier rounds or signature,
    which no longer matches) with the new weights, staged beside ``out`` and renamed into place."""
    from xmodal.checkpoint import save_checkpoint
    from xmodal.config import dump_yaml, read_yaml
    from xmodal.deploy.signing import SIGNATURE_NAME
    from xmodal.errors import ConfigError

    stage = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.copytree(run, stage, ignore=shutil.ignore_patterns("last", "rounds", "*.tmp*", SIGNATURE_NAME))
        # The copy's configuration names its own folder and prior, so a resume, a later
        # `xmodal adapt` or `xmodal info` of OUT reads OUT, not the run it came from.
        changed = {"out": str(out), "test_bn_prior": meta.get("test_bn_prior") or 0.0}
        if isinstance(meta.get("config"), dict):
            meta = {**meta, "config": {**meta["config"], **changed}}
        save_checkpoint(model, meta, stage)
        if (run / "config.yaml").is_file():
            (stage / "config.yaml").write_text(
                dump_yaml({**read_yaml(run / "config.yaml"), **changed}), encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty: check_new_folder
        os.replace(stage, out)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the adapted run ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` then ``b`` along frames."""
    import torch

    return torch.cat([a, b]) if len(b) else a


def _training_frames(loaded: LoadedModel, cfg: TrainConfig, budget: int, rng: np.random.Generator,
                     workers: int | None, reporter: Reporter) -> torch.Tensor:
    """Up to ``budget`` frames of the run's labelled training split (a self-trained run's
    pseudo-labelled files are of the target domain: left out)."""
    from xmodal.engine.data import load_split

    split = load_split(dataclasses.replace(cfg, pseudo_csv=None))
    frames, _, _ = _frames_of(loaded, [s.path for s in split.train], budget, rng, workers, reporter,
                              "training")
    return frames


def trained_norms(model: torch.nn.Module, cfg: TrainConfig, input_size: int) -> list[_BatchNorm]:
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


def load_run(run: Path, test_bn_prior: float | None = None) -> LoadedModel:
    """The run's model on PyTorch, with prediction-time BatchNorm set to ``test_bn_prior`` (N;
    0: off; None: the run's own) in its model and metadata. ConfigError for what cannot be
    adapted: not a run of ``xmodal train``, a multi-label run, a prior for an encoder without
    BatchNorm2d layers."""
    from xmodal.deploy.onnx_model import is_onnx_export
    from xmodal.engine.multilabel import is_multi_label
    from xmodal.engine.predict import load_model
    from xmodal.errors import ConfigError, ModelError
    from xmodal.models import classifier_from_meta

    if not run.is_dir():
        raise ConfigError(f"{run}: no such run directory")
    if not (run / "config.yaml").is_file() or is_onnx_export(run):
        raise ConfigError(f"{run}: not a run directory of `xmodal train` (an export or a bare "
                          "checkpoint cannot be adapted)")
    loaded = load_model(run, engine="torch")
    if is_multi_label(loaded.meta):
        raise ConfigError(f"{run}: a multi-label run cannot be adapted here (its per-class "
                          "thresholds were tuned for the model as it is)")
    if test_bn_prior is None:
        return loaded
    meta = {**loaded.meta, "test_bn_prior": float(test_bn_prior) or None}
    try:
        model = classifier_from_meta(meta)
    except ModelError:
        raise ConfigError(f"{run}: its encoder ({meta.get('backbone')}) has no BatchNorm2d layer "
                          "for --test-bn-prior to act on") from None
    model.load_state_dict(loaded.model.state_dict())
    return dataclasses.replace(loaded, model=model.eval(), meta=meta)


def _frames_of(loaded: LoadedModel, files: list[Any], budget: int, rng: np.random.Generator,
               workers: int | None, reporter: Reporter, what: str) -> tuple[torch.Tensor, int, int]:
    """(frames (F, 3, S, S) uint8, F <= ``budget``, spread evenly over ``files``; files decoded;
    files that failed, named in one warning), decoded as ``xmodal predict`` decodes them (the same
    reader, in isolated workers). With more files than ``budget``, one frame from each of
    ``budget`` files drawn at random, so at most ``budget`` files are decoded."""
    import torch

    from xmodal.engine.inputs import ClipReader
    from xmodal.engine.predict import describe_failure
    from xmodal.engine.workers import DecodePool

    if len(files) > budget:
        files = [files[i] for i in np.sort(rng.choice(len(files), budget, replace=False))]
    per_file = max(1, -(-budget // max(1, len(files))))  # ceil: the budget spread evenly
    reader = ClipReader.from_meta(loaded.meta)
    if workers is None:  # as predict: starting processes costs more than it saves for a few files
        workers = 0 if len(files) <= 2 else min(4, os.cpu_count() or 1)
    pool = DecodePool(reader, workers=workers, describe_error=describe_failure)
    chunks, failed = [], []
    for index, result, error in reporter.track(pool.imap([str(f) for f in files]),
                                               total=len(files), desc=f"decode {what}"):
        if result is None:
            failed.append(f"{files[index]}: {error}")
            continue
        views = result[0].flatten(0, 1)  # (N*T, 3, S, S)
        keep = rng.permutation(len(views))[:per_file]
        chunks.append(views[np.sort(keep)])
    if failed:
        reporter.warning(f"{len(failed)} {what} file(s) skipped: " + "; ".join(failed[:3])
                         + (" ..." if len(failed) > 3 else ""))
    frames = torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.uint8)
    if len(frames) > budget:  # per_file rounded up: drop frames at random, not the last files'
        frames = frames[np.sort(rng.choice(len(frames), budget, replace=False))]
    return frames, len(chunks), len(failed)


def _update_statistics(model: torch.nn.Module, frames: torch.Tensor, norms: list[_BatchNorm], seed: int,
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
