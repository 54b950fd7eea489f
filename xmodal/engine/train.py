"""Fine-tuning: ``train_one_epoch``, ``evaluate`` and ``fit``.

Shaped like torchvision's reference scripts: each function does one thing,
and ``fit`` only wires them together, saves checkpoints and reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from xmodal.config import (
    AUTO_VAL_MIN_PER_CLASS,
    VAL_SPLIT,
    TrainConfig,
    dump_yaml,
    load_config,
    read_yaml,
)
from xmodal.data.transforms import BatchMixer, batch_mixer
from xmodal.engine import distributed
from xmodal.engine.data import Split, describe, load_split, make_loader, uses_frame_cache
from xmodal.engine.multilabel import example_scores
from xmodal.engine.optim import (
    apply_freezing,
    build_optimizer,
    build_scheduler,
    set_train_mode,
    stride_prefix,
)
from xmodal.engine.reporting import Reporter
from xmodal.engine.runtime import autocast, prepare_model, resolve_device, seed_everything, use_bf16
from xmodal.errors import ConfigError, DatasetError

LAST_DIR = "last"


@dataclass
class EpochResult:
    loss: float
    accuracy: float
    seen: int
    skipped: list[str] = field(default_factory=list)


@dataclass
class FitResult:
    run_dir: Path
    best_accuracy: float | None
    best_epoch: int
    history: list[dict[str, Any]]
    skipped_files: list[str]
    calibration: dict[str, Any] | None = None  # fitted on the validation split (model.json)


def _to_device(clips: torch.Tensor, device: torch.device) -> torch.Tensor:
    # (B, T, C, H, W) -> NHWC memory per frame, matching the channels_last model.
    clips = clips.to(device, non_blocking=True)
    return clips.contiguous(memory_format=torch.channels_last_3d) if clips.ndim == 5 else clips


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, criterion: nn.Module,
                    device: torch.device, cfg: TrainConfig, *, bf16: bool = False,
                    reporter: Reporter | None = None, desc: str = "train",
                    mixer: BatchMixer | None = None) -> EpochResult:
    """One pass over ``loader``; steps the optimiser every ``cfg.accumulate`` batches.

    With a ``mixer`` (MixUp/CutMix) the loss is taken against the mixed soft labels and the
    reported accuracy against each clip's dominant label.
    """
    reporter = reporter or Reporter()
    set_train_mode(_unwrap(model), cfg.freeze_bn_stats)
    skipped: list[str] = []
    optimizer.zero_grad(set_to_none=True)
    steps = _EpochSteps(model, optimizer, scheduler, cfg)
    for clips, labels, bad in reporter.track(loader, total=len(loader), desc=desc):
        skipped.extend(bad)
        if clips is None:
            continue
        clips, labels = _to_device(clips, device), labels.to(device, non_blocking=True)
        targets = labels
        if mixer is not None:
            clips, targets = mixer(clips, labels)
            labels = targets.argmax(1)
        with autocast(device, bf16):
            logits = model(clips)
        steps.backward(criterion(logits.float(), targets), logits, labels)
    steps.finish()
    return _reduced(steps.total_loss, steps.correct, steps.seen, skipped)


@dataclass
class _EpochSteps:
    """One epoch's backward passes: the optimiser steps every ``cfg.accumulate`` of them (and
    once more for a remainder); the loss and correct examples are summed for the epoch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    cfg: TrainConfig
    pending: int = 0
    total_loss: float = 0.0
    correct: float = 0.0
    seen: int = 0

    def backward(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        (loss / self.cfg.accumulate).backward()
        self.pending += 1
        if self.pending == self.cfg.accumulate:
            self.finish()
        self.total_loss += loss.item() * len(labels)
        self.correct += example_scores(logits.detach(), labels).sum().item()
        self.seen += len(labels)

    def finish(self) -> None:
        if self.pending:
            _optimizer_step(self.model, self.optimizer, self.scheduler, self.cfg)
            self.pending = 0


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _reduced(total_loss: float, correct: int, seen: int, skipped: list[str]) -> EpochResult:
    """Loss and accuracy over all ranks (identity in a single process)."""
    total_loss, correct, seen = distributed.sum_across([total_loss, correct, seen])
    skipped = sorted({s for part in distributed.gather_objects(skipped) for s in part})
    return EpochResult(total_loss / max(1, seen), correct / max(1, seen), int(seen), skipped)


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, cfg: TrainConfig) -> None:
    if cfg.grad_clip:
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None],
                                 cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, criterion: nn.Module, device: torch.device,
             *, bf16: bool = False, reporter: Reporter | None = None) -> EpochResult:
    """Loss and top-1 accuracy over ``loader`` (files that fail to decode are skipped)."""
    reporter = reporter or Reporter()
    model.eval()
    total_loss, correct, seen, skipped = 0.0, 0, 0, []
    for clips, labels, bad in reporter.track(loader, total=len(loader), desc="val"):
        skipped.extend(bad)
        if clips is None:
            continue
        clips, labels = _to_device(clips, device), labels.to(device)
        with autocast(device, bf16):
            logits = model(clips).float()
        total_loss += criterion(logits, labels).item() * len(labels)
        correct += example_scores(logits, labels).sum().item()
        seen += len(labels)
    return _reduced(total_loss, correct, seen, skipped)


def build_criterion(cfg: TrainConfig, split: Split, device: torch.device) -> nn.Module:
    """Cross-entropy with label smoothing, or (multi-label) binary cross-entropy on the pooled
    logits; ``--balance loss`` weights the classes (xmodal.data.balance)."""
    from xmodal.data.balance import loss_weights, positive_weights

    labels, k = [s.label for s in split.train], len(split.classes)
    if cfg.multi_label:
        pos = positive_weights(labels, k) if cfg.balance == "loss" else None
        return nn.BCEWithLogitsLoss(pos_weight=None if pos is None else
                                    torch.tensor(pos, dtype=torch.float32, device=device))
    weight = loss_weights(labels, k) if cfg.balance == "loss" else None
    return nn.CrossEntropyLoss(weight=None if weight is None else
                               torch.tensor(weight, dtype=torch.float32, device=device),
                               label_smoothing=cfg.label_smoothing)


@torch.inference_mode()
def collect_logits(model: nn.Module, loader: DataLoader, device: torch.device, *,
                   bf16: bool = False, reporter: Reporter | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip logits (N, K) float32 and targets over ``loader``, on the CPU, in loader order
    (this rank's share under torchrun); files that fail to decode are left out."""
    reporter = reporter or Reporter()
    model.eval()
    logits, targets = [], []
    for clips, labels, _ in reporter.track(loader, total=len(loader), desc="calibrate"):
        if clips is None:
            continue
        with autocast(device, bf16):
            logits.append(model(_to_device(clips, device)).float().cpu())
        targets.append(labels)
    if not logits:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(targets)


def fit(cfg: TrainConfig, reporter: Reporter | None = None, *, resume: bool = False,
        stop_after: int | None = None) -> FitResult:
    """Train a classifier as ``cfg`` says and write the run directory.

    RUN_DIR holds the best model (``model.safetensors`` + ``model.json``), the
    resolved ``config.yaml``, ``metrics.jsonl`` and ``last/`` for ``--resume``.
    ``stop_after`` ends the run after that many epochs, as an interruption would.
    Training videos decoded once (``frame_cache``) live in a folder of xmodal's cache
    (``frames/run-HOST-PID-*``) removed when the run returns or raises; one left by a killed
    process (SIGTERM, SIGKILL, out of memory) is removed by the next run on the same host, and
    one of another host after two days.
    """
    with _frame_cache_folder(cfg, reporter) as frames:
        return _fit(cfg, reporter, resume=resume, stop_after=stop_after, frame_cache_root=frames)


STALE_FRAMES_S = 2 * 86400  # another host's frames/run-* folder untouched this long is left over


@contextlib.contextmanager
def _frame_cache_folder(cfg: TrainConfig, reporter: Reporter | None) -> Iterator[str | None]:
    """A new folder for this run's decoded frames, or None (no cache: decode every epoch)
    when the run does not use one or the cache cannot be written."""
    from xmodal.cache import cache_root

    if not uses_frame_cache(cfg):
        yield None
        return
    parent = cache_root() / "frames"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(parent)
        folder = tempfile.TemporaryDirectory(prefix=f"run-{_host()}-{os.getpid()}-", dir=parent,
                                             ignore_cleanup_errors=True)
    except OSError as exc:
        if reporter is not None:
            reporter.warning(f"{parent}: cannot keep decoded frames ({exc.strerror or exc}); "
                             "every epoch decodes the training videos")
        yield None
        return
    with folder as path:
        yield path


def _host() -> str:
    """This machine's name as it appears in frames folders (letters, digits, '.', '_', '-')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"


def _remove_stale(parent: Path) -> None:
    """Remove ``run-*`` folders whose run is over: made on this host by a process that no longer
    exists, or (another host's, or named before the owner was recorded) untouched for
    ``STALE_FRAMES_S``. A live run's folder removed by mistake only costs it speed: its cache
    then decodes every epoch (``FrameCache`` never recreates its root)."""
    now, host = time.time(), _host()
    for old in parent.glob("run-*"):
        with contextlib.suppress(OSError):
            owner, _, pid = old.name[len("run-"):].rpartition("-")[0].rpartition("-")
            dead = owner == host and pid.isdigit() and not _process_exists(int(pid))
            if dead or now - old.stat().st_mtime > STALE_FRAMES_S:
                shutil.rmtree(old, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _fit(cfg: TrainConfig, reporter: Reporter | None, *, resume: bool, stop_after: int | None,
         frame_cache_root: str | None) -> FitResult:
    from xmodal.models import build_classifier

    if cfg.out is None:
        raise ConfigError("no output directory: pass --out RUN_DIR")
    dist_info = distributed.init(cfg.device)
    reporter = (reporter or Reporter()) if dist_info.is_main else Reporter()
    run_dir = Path(cfg.out)
    generator = seed_everything(cfg.seed)
    device = resolve_device(distributed.device_for(dist_info, cfg.device))
    bf16 = use_bf16(device, cfg.precision)

    split = load_split(cfg, reporter.warning)
    reporter.info(f"data: {len(split.classes)} classes; train {describe(split.train)}; "
                  f"val {describe(split.val)}")
    if cfg.val is None and cfg.val_split is None and split.val_fraction == 0:
        reporter.info(f"no validation split: a class has fewer than {AUTO_VAL_MIN_PER_CLASS} "
                      "files, so every file trains and the epoch with the lowest training loss "
                      f"is kept (--val-split {VAL_SPLIT} holds files out anyway)")
    model = build_classifier(cfg.backbone, len(split.classes), weights=cfg.weights,
                             pooling=cfg.pooling, dropout=cfg.dropout,
                             test_bn_prior=cfg.test_bn_prior)
    if cfg.init is not None and not resume:  # a resume loads last/, which already holds it
        _load_init(model, cfg.init, split.classes)
    if cfg.input_size is not None:  # e.g. smaller frames for speed; recorded in the checkpoint
        model.encoder.pretrained_cfg = dataclasses.replace(
            model.encoder.pretrained_cfg, input_size=cfg.input_size,
            resize_size=round(cfg.input_size / 0.875))
    pcfg = model.encoder.pretrained_cfg
    frozen = stride_prefix(model, cfg.frozen_stride_for_training, pcfg.input_size)
    model = prepare_model(model, device, compile=cfg.compile)
    shard = {"num_replicas": dist_info.world_size, "rank": dist_info.rank}
    train_loader = make_loader(split.train, cfg, train=True, input_size=pcfg.input_size,
                               resize_size=pcfg.resize_size, generator=generator,
                               num_classes=len(split.classes),
                               frame_cache_root=frame_cache_root, **shard)
    val_loader = (make_loader(split.val, cfg, train=False, input_size=pcfg.input_size,
                              resize_size=pcfg.resize_size, num_classes=len(split.classes),
                              **shard) if split.val else None)
    optimizer = build_optimizer(model, cfg)
    steps = max(1, -(-len(train_loader) // cfg.accumulate))
    if not resume and cfg.epochs * steps < cfg.min_steps:
        # A schedule sized in steps: 80 files make 10 steps an epoch, too few to fine-tune.
        cfg = dataclasses.replace(cfg, epochs=-(-cfg.min_steps // steps))
        reporter.info(f"small data set: {cfg.epochs} epochs of {steps} steps, to reach "
                      f"min_steps {cfg.min_steps}")
    scheduler = build_scheduler(optimizer, cfg, steps)
    criterion = build_criterion(cfg, split, device)
    if cfg.balance != "none":
        from xmodal.data.balance import class_counts

        counts = class_counts([s.label for s in split.train], len(split.classes))
        reporter.info(f"class balance: {cfg.balance} (training files per class: "
                      f"{counts.min()} to {counts.max()})")
    mixer = batch_mixer(cfg.mixup, cfg.cutmix, len(split.classes))
    if dist_info.enabled:
        reporter.info(f"distributed: {dist_info.world_size} processes; effective batch size "
                      f"{cfg.batch_size * dist_info.world_size * cfg.accumulate} = {cfg.batch_size} "
                      f"x {dist_info.world_size} ranks x {cfg.accumulate} accumulation; lr {cfg.lr:g} "
                      f"is used as given (linear scaling rule would be "
                      f"{cfg.lr * dist_info.world_size:g})")

    probe = None
    if cfg.finetune == "linear" and not dist_info.enabled:
        probe = _LinearProbe(model, split, cfg, pcfg, device, reporter)
        steps = max(1, -(-probe.batches_per_epoch // cfg.accumulate))
        scheduler = build_scheduler(optimizer, cfg, steps)

    state = _TrainingState()
    if resume:
        state = _load_resume_state(run_dir, model, optimizer, scheduler, generator)
        if dist_info.is_main:
            _forget_metrics_after(run_dir, state.epoch)
        reporter.info(f"resuming {run_dir} after epoch {state.epoch}")
        if state.epoch >= cfg.epochs:
            reporter.warning(f"{run_dir}: already trained {state.epoch} epochs (a small data set's "
                             f"min_steps can add epochs to those asked for), so --epochs "
                             f"{cfg.epochs} trains none; pass --epochs above {state.epoch}")
    elif cfg.finetune == "lp-ft":
        _fit_head_first(model, split, cfg, pcfg, device, reporter)
    # The resolved T of training clips and validation fraction are written down, so a resume (or
    # `xmodal adapt`, or `xmodal export --int8`'s validation report) sees this run's split and
    # trains as this run did whatever the defaults become.
    cfg = dataclasses.replace(cfg, train_frames=cfg.clip_frames_for_training,
                              frozen_stride=cfg.frozen_stride_for_training,
                              still_scale=cfg.still_scale_for_prediction,
                              val_split=cfg.val_split if cfg.val is not None else split.val_fraction)
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:  # a run trained again into its folder starts its log and state afresh
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
            if (run_dir / LAST_DIR / "state.json").is_file():
                shutil.rmtree(run_dir / LAST_DIR, ignore_errors=True)
        _write_config(run_dir, _typed_paths(cfg, run_dir) if resume else cfg)
    meta = _metadata(cfg, split, model)
    if resume:  # how `xmodal adapt` made the run (a self-training round) outlives its resume
        meta.update(_kept_on_resume(run_dir))

    for epoch in range(state.epoch, cfg.epochs):
        train_loader.batch_sampler.set_epoch(epoch)
        apply_freezing(model, cfg, epoch, frozen)
        net = _distributed_wrapper(model, device) if dist_info.enabled else model
        start = time.perf_counter()
        if probe is not None:
            tr, va = probe.epoch(optimizer, scheduler, criterion, generator, epoch)
        else:
            tr = train_one_epoch(net, train_loader, optimizer, scheduler, criterion, device,
                                 cfg, bf16=bf16, reporter=reporter,
                                 desc=f"epoch {epoch + 1}/{cfg.epochs}", mixer=mixer)
            distributed.broadcast_buffers(model)
            va = evaluate(model, val_loader, criterion, device, bf16=bf16,
                          reporter=reporter) if val_loader else None
        state.note_skipped(tr.skipped + (va.skipped if va else []), reporter)
        if tr.seen == 0:
            raise DatasetError(cfg.data or cfg.csv, "no training file could be decoded "
                               f"({len(state.skipped)} skipped; first: {state.first_skipped()})")
        record = _epoch_record(epoch, tr, va, optimizer, time.perf_counter() - start,
                               metric="f1" if cfg.multi_label else "acc")
        state.history.append(record)
        reporter.info(_format_record(record))
        score: Any = va.accuracy if va else -tr.loss
        if va and cfg.multi_label:  # example F1 saturates on small splits: the loss breaks ties
            score = [va.accuracy, -va.loss]
        improved = state.best_score is None or score > state.best_score
        if improved:
            state.best_score, state.best_epoch = score, epoch + 1
        state.epoch = epoch + 1
        if dist_info.is_main:  # one writer; the others wait so a resume sees a whole epoch
            if improved:
                _save_model(model, {**meta, "epoch": epoch + 1, "metrics": record}, run_dir)
            _append_metrics(run_dir, record)
            _save_resume_state(run_dir, model, optimizer, scheduler, generator, state, meta)
        distributed.barrier()
        if stop_after is not None and epoch + 1 >= stop_after:
            break
        if cfg.patience is not None and epoch + 1 - state.best_epoch >= cfg.patience:
            reporter.info(f"early stop: no validation improvement for {cfg.patience} epochs")
            break

    if state.skipped:
        reporter.warning(f"{len(state.skipped)} file(s) could not be decoded and were skipped")
    stuck = None if cfg.multi_label or mixer is not None else chance_warning(
        state.history, _guess_prior(cfg, split))
    if stuck:
        hint = " (freeze_bn_stats needs about a tenth of the default --lr)" if cfg.freeze_bn_stats else ""
        reporter.warning(stuck + hint)
    calibration = None
    if split.val:
        def val_logits() -> tuple[torch.Tensor, torch.Tensor]:
            if probe is not None:
                return probe.val_logits()
            return collect_logits(model, val_loader, device, bf16=bf16, reporter=reporter)

        calibration = _calibrate(model, run_dir, val_logits, reporter, multi_label=cfg.multi_label)
    best = state.best_score[0] if isinstance(state.best_score, list) else state.best_score
    best_acc = best if split.val else None
    return FitResult(run_dir, best_acc, state.best_epoch, state.history, sorted(state.skipped),
                     calibration)


def _guess_prior(cfg: TrainConfig, split: Any) -> list[float]:
    """The class shares a constant guess follows under ``cfg.balance`` (see chance_warning)."""
    from xmodal.data.balance import class_counts

    k = len(split.classes)
    if cfg.balance != "none":
        return [1.0 / k] * k
    counts = class_counts([s.label for s in split.train], k)
    return [float(c) / max(1, int(counts.sum())) for c in counts]


def chance_warning(history: list[dict[str, Any]], prior: list[float]) -> str | None:
    """A one-line warning when a single-label run learned nothing, else None.

    ``prior``: the class shares a constant guess would follow, summing to 1 (uniform when the
    loss or the sampler balances the classes, the training set's shares otherwise). A run
    learned nothing when its training loss never fell below 95% of the prior's entropy (the
    cross-entropy of always guessing the prior: ln K for uniform) and its best training
    accuracy stayed under min(1.5 p, p + 0.1), p the largest share; a loss that is not finite
    (NaN, inf) is named as divergence. Causes seen: a learning rate too high for frozen
    BatchNorm statistics (``freeze_bn_stats`` at the default 1e-3). Records without
    ``train_acc`` (multi-label runs report F1) are not judged.
    """
    records = [r for r in history if "train_acc" in r]
    if len(prior) < 2 or not records:
        return None
    losses = [float(r["train_loss"]) for r in records]
    if not all(math.isfinite(loss) for loss in losses):
        bad = next(v for v in losses if not math.isfinite(v))
        return f"training diverged: the training loss became {bad}; try a lower --lr"
    floor = -sum(p * math.log(p) for p in prior if p > 0)
    top = max(prior)
    accuracy = max(float(r["train_acc"]) for r in records)
    if min(losses) < 0.95 * floor or accuracy >= min(1.5 * top, top + 0.1):
        return None
    return (f"training did not learn: the training loss never fell below {min(losses):.2f} (a "
            f"constant guess scores {floor:.2f}) and training accuracy stayed at {accuracy:.2f}; "
            "try a lower --lr and check the labels")


def _calibrate(model: nn.Module, run_dir: Path,
               val_logits: Callable[[], tuple[torch.Tensor, torch.Tensor]],
               reporter: Reporter, *, multi_label: bool = False) -> dict[str, Any] | None:
    """Fit the best model's temperature on the validation split and record it in its
    model.json (``temperature``, and ``calibration``: NLL and ECE before and after); for a
    multi-label model, tune its per-class ``thresholds`` instead (and ``threshold_tuning``)."""
    from xmodal.checkpoint import load_checkpoint, save_checkpoint
    from xmodal.engine.calibration import calibration_summary
    from xmodal.engine.multilabel import threshold_summary

    weights, meta = load_checkpoint(run_dir)
    model.load_state_dict(weights)
    parts = distributed.gather_objects(val_logits())
    logits = torch.cat([p[0] for p in parts if len(p[1])] or [torch.zeros(0, 0)])
    targets = torch.cat([p[1] for p in parts])
    summary = None
    if distributed.env_info().is_main and len(targets) and multi_label:
        summary = threshold_summary(logits, targets)
        save_checkpoint(model, {**meta, "thresholds": summary["thresholds"],
                                "threshold_tuning": summary}, run_dir)
        reporter.info(f"thresholds: tuned per class on {summary['files']} validation files; "
                      f"example-based F1 {summary['f1_at_0.5']:.3f} at 0.5 -> "
                      f"{summary['f1_tuned']:.3f}")
    elif distributed.env_info().is_main and len(targets):
        summary = calibration_summary(logits, targets)
        save_checkpoint(model, {**meta, "temperature": summary["temperature"],
                                "calibration": summary}, run_dir)
        reporter.info(summary.get("note") or
                      f"calibration: temperature {summary['temperature']:.3f} on "
                      f"{summary['files']} validation files; ECE {summary['ece_before']:.3f} -> "
                      f"{summary['ece_after']:.3f}")
    distributed.barrier()
    return summary


class _LinearProbe:
    """``--finetune linear`` in one process: the head trains on frozen features encoded once
    (xmodal.engine.features), cached on disk unless ``feature_cache`` is off, in which case
    they are encoded again every epoch (the same numbers, the same head: tested)."""

    def __init__(self, model: nn.Module, split: Split, cfg: TrainConfig, pcfg: Any,
                 device: torch.device, reporter: Reporter) -> None:
        from xmodal.engine import features

        self.model, self.split, self.cfg, self.device, self.reporter = model, split, cfg, device, reporter
        self.sizes = {"input_size": pcfg.input_size, "resize_size": pcfg.resize_size}
        self.fingerprint = features.encoder_fingerprint(model)
        if cfg.mixup or cfg.cutmix or cfg.augment != "none":
            reporter.info("linear probe on frozen features: views as evaluation sees them "
                          "(no augmentation, MixUp or CutMix)")
        self.banks = self._banks() if cfg.feature_cache else None
        train_bank = self.banks[0] if self.banks else self._banks()[0]
        self.batches_per_epoch = sum(1 for _ in features.head_batches(
            train_bank, cfg.batch_size, shuffle=False, generator=torch.Generator(), seed=0,
            epoch=0))

    def _banks(self) -> tuple[Any, Any]:
        from xmodal.engine import features

        made = [features.build_bank(self.model, samples, self.cfg, device=self.device,
                                    fingerprint=self.fingerprint, use_cache=self.cfg.feature_cache,
                                    reporter=self.reporter, desc=f"{name} features", **self.sizes)
                if samples else None
                for name, samples in (("train", self.split.train), ("val", self.split.val))]
        computed = sum(b.computed for b in made if b is not None)
        total = len(self.split.train) + len(self.split.val)
        self.reporter.info(f"features: {computed} of {total} files encoded, "
                           f"{total - computed} read from the cache")
        return made[0], made[1]

    def epoch(self, optimizer: torch.optim.Optimizer, scheduler: Any, criterion: nn.Module,
              generator: torch.Generator, epoch: int) -> tuple[EpochResult, EpochResult | None]:
        from xmodal.engine import features

        train_bank, val_bank = self.banks or self._banks()
        model, cfg = self.model, self.cfg
        model.train()
        steps = _EpochSteps(model, optimizer, scheduler, cfg)
        for feats, labels in features.head_batches(train_bank, cfg.batch_size, shuffle=True,
                                                   generator=generator, seed=cfg.seed, epoch=epoch,
                                                   balanced=cfg.balance == "sampler"):
            feats, labels = feats.to(self.device), labels.to(self.device)
            logits = features.head_logits(model, feats)
            steps.backward(criterion(logits, labels), logits, labels)
        steps.finish()
        failed = sorted(train_bank.failed.values()) + sorted(val_bank.failed.values() if val_bank else [])
        tr = EpochResult(steps.total_loss / max(1, steps.seen), steps.correct / max(1, steps.seen),
                         steps.seen, failed)
        return tr, (self._evaluate(val_bank, criterion) if val_bank is not None else None)

    @torch.inference_mode()
    def _evaluate(self, bank: Any, criterion: nn.Module) -> EpochResult:
        from xmodal.engine import features

        self.model.eval()
        total_loss, correct, seen = 0.0, 0, 0
        for feats, labels in features.head_batches(bank, self.cfg.batch_size, shuffle=False,
                                                   generator=torch.Generator(), seed=0, epoch=0):
            logits = features.head_logits(self.model, feats.to(self.device))
            labels = labels.to(self.device)
            total_loss += criterion(logits, labels).item() * len(labels)
            correct += example_scores(logits, labels).sum().item()
            seen += len(labels)
        return EpochResult(total_loss / max(1, seen), correct / max(1, seen), seen, [])

    @torch.inference_mode()
    def val_logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip logits (N, K) and targets of the validation split, from its stored features."""
        from xmodal.engine import features

        _, bank = self.banks or self._banks()
        self.model.eval()
        logits, targets = [], []
        for feats, labels in features.head_batches(bank, self.cfg.batch_size, shuffle=False,
                                                   generator=torch.Generator(), seed=0, epoch=0):
            logits.append(features.head_logits(self.model, feats.to(self.device)).float().cpu())
            targets.append(labels)
        return torch.cat(logits), torch.cat(targets)


def _fit_head_first(model: nn.Module, split: Split, cfg: TrainConfig, pcfg: Any,
                    device: torch.device, reporter: Reporter) -> None:
    """LP-FT's first stage: a logistic-regression head on the frozen encoder's features of the
    training files (encoded once, cached like ``--finetune linear``'s), before fine-tuning."""
    from xmodal.engine import features

    bank = features.build_bank(model, split.train, cfg, input_size=pcfg.input_size,
                               resize_size=pcfg.resize_size, device=device,
                               fingerprint=features.encoder_fingerprint(model),
                               use_cache=cfg.feature_cache, reporter=reporter,
                               desc="probe features")
    features.fit_probe_head(model, bank)
    reporter.info(f"lp-ft: head fitted on the frozen features of {len(split.train)} files "
                  f"({bank.computed} encoded now)")


def _load_init(model: nn.Module, run: str, classes: list[str]) -> None:
    """Start from a run's weights (``init``): same backbone and classes, or one clear line."""
    from xmodal.checkpoint import load_checkpoint
    from xmodal.errors import CheckpointError

    weights, meta = load_checkpoint(run)
    if list(meta.get("classes", [])) != list(classes):
        raise CheckpointError(run, f"its classes {meta.get('classes')} are not this run's {classes}")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(run, f"its weights do not fit backbone {meta.get('backbone')!r} "
                                   f"({len(missing)} missing, {len(unexpected)} unexpected)")


def _distributed_wrapper(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP over the currently trainable parameters (rebuilt when freezing changes them)."""
    if not any(p.requires_grad for p in model.parameters()):
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


@dataclass
class _TrainingState:
    epoch: int = 0
    best_score: float | list[float] | None = None  # multi-label: [val F1, -val loss]
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)

    def note_skipped(self, failures: list[str], reporter: Reporter) -> None:
        for failure in failures:
            if failure not in self.skipped:
                self.skipped.add(failure)
                reporter.warning(f"skipped {failure}")

    def first_skipped(self) -> str:
        return min(self.skipped) if self.skipped else "none"

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "best_score": self.best_score, "best_epoch": self.best_epoch,
                "history": self.history, "skipped": sorted(self.skipped)}


def _metadata(cfg: TrainConfig, split: Split, model: nn.Module) -> dict[str, Any]:
    pcfg = model.encoder.pretrained_cfg
    return {
        "classes": split.classes,
        "backbone": cfg.backbone,
        "frames": cfg.frames,
        "pooling": cfg.pooling,
        "multi_label": cfg.multi_label,
        "dropout": cfg.dropout,
        "test_bn_prior": cfg.test_bn_prior or None,
        "modality": cfg.modality,
        "preprocessing": {"input_size": pcfg.input_size, "resize_size": pcfg.resize_size,
                          "mean": list(pcfg.mean), "std": list(pcfg.std),
                          "still_scale": cfg.still_scale_for_prediction},
        "config": cfg.to_dict(),
        "data": data_location(cfg),
    }


def _kept_on_resume(run_dir: Path) -> dict[str, Any]:
    """What a run's saved model.json records beyond its training metadata and a resume must
    write again: ``adapted`` (``xmodal adapt``'s record of a self-training round)."""
    from xmodal.checkpoint import META_NAME, read_metadata

    if not (run_dir / META_NAME).is_file():
        return {}
    saved = read_metadata(run_dir)
    return {key: saved[key] for key in ("adapted",) if key in saved}


def data_location(cfg: TrainConfig) -> dict[str, Any]:
    """Where the run's data is, as absolute paths, with what rebuilds its split (``xmodal export
    --int8`` calibrates on the training files and scores the validation files)."""
    def absolute(path: str | None) -> str | None:
        return None if path is None else str(Path(path).resolve())

    return {"data": absolute(cfg.data), "csv": absolute(cfg.csv), "val": absolute(cfg.val),
            "val_split": cfg.val_split, "seed": cfg.seed, "modality": cfg.modality}


def _save_model(model: nn.Module, meta: dict[str, Any], directory: Path) -> None:
    from xmodal.checkpoint import save_checkpoint

    save_checkpoint(model, meta, directory)


def _write_config(run_dir: Path, cfg: TrainConfig) -> None:
    from xmodal.checkpoint import atomic_write_text

    atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg.to_dict()))


def _append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()


def _forget_metrics_after(run_dir: Path, epoch: int) -> None:
    """Drop metrics.jsonl's records of epochs after ``epoch``: a kill between an epoch's record
    and its saved state makes the resume train that epoch again, which logs it again."""
    from xmodal.checkpoint import atomic_write_text

    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if _logged_epoch(line) <= epoch]
    if len(kept) < len(lines):
        atomic_write_text(path, "".join(kept))


def _logged_epoch(line: str) -> float:
    """A metrics.jsonl line's epoch; a torn line (a kill while writing it) counts as later."""
    try:
        return float(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


def _epoch_record(epoch: int, tr: EpochResult, va: EpochResult | None,
                  optimizer: torch.optim.Optimizer, seconds: float, *,
                  metric: str = "acc") -> dict[str, Any]:
    """``metric``: ``acc`` (top-1 accuracy) or ``f1`` (multi-label: example-based F1 at 0.5)."""
    record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": round(tr.loss, 5),
                              f"train_{metric}": round(tr.accuracy, 5),
                              "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 2)}
    if va is not None:
        record.update({"val_loss": round(va.loss, 5), f"val_{metric}": round(va.accuracy, 5)})
    return record


def _format_record(r: dict[str, Any]) -> str:
    metric = "f1" if "train_f1" in r else "acc"
    text = f"epoch {r['epoch']}: train loss {r['train_loss']:.4f} {metric} {r[f'train_{metric}']:.3f}"
    if "val_loss" in r:
        text += f" | val loss {r['val_loss']:.4f} {metric} {r[f'val_{metric}']:.3f}"
    return text + f" | {r['seconds']:.1f}s"


def _save_resume_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                       scheduler: Any, generator: torch.Generator, state: _TrainingState,
                       meta: dict[str, Any]) -> None:
    """Everything ``--resume`` needs, written atomically so a kill leaves the previous one."""
    import io

    from xmodal.checkpoint import atomic_write_bytes, atomic_write_text, save_checkpoint

    last = run_dir / LAST_DIR
    save_checkpoint(model, {**meta, "epoch": state.epoch}, last)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(), "torch_rng": torch.get_rng_state()}, buffer)
    atomic_write_bytes(last / "trainer.pt", buffer.getvalue())
    atomic_write_text(last / "state.json", json.dumps(state.to_json(), indent=1))


def _load_resume_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                       scheduler: Any, generator: torch.Generator) -> _TrainingState:
    from xmodal.checkpoint import load_checkpoint
    from xmodal.errors import CheckpointError

    last = run_dir / LAST_DIR
    if not (last / "state.json").is_file():
        raise CheckpointError(run_dir, "nothing to resume (no last/state.json); "
                              "train without --resume first")
    weights, _ = load_checkpoint(last)
    model.load_state_dict(weights)
    try:
        trainer = torch.load(last / "trainer.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # a refused or corrupt pickle is a user-facing error here
        raise CheckpointError(last / "trainer.pt", f"cannot load optimizer state ({exc})") from None
    optimizer.load_state_dict(trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    generator.set_state(trainer["generator"])
    torch.set_rng_state(trainer["torch_rng"])
    saved = json.loads((last / "state.json").read_text(encoding="utf-8"))
    return _TrainingState(epoch=saved["epoch"], best_score=saved["best_score"],
                          best_epoch=saved["best_epoch"], history=saved["history"],
                          skipped=set(saved["skipped"]))


def _typed_paths(cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    """``cfg`` with the data, csv and val paths its run's config.yaml holds (as typed, perhaps
    relative), which ``_with_recorded_paths`` replaced for reading: a resume rewrites
    config.yaml and must not pin a project moved with its data to the old absolute paths."""
    try:
        typed = read_yaml(run_dir / "config.yaml")
    except ConfigError:
        return cfg
    return dataclasses.replace(cfg, **{k: typed[k] for k in ("data", "csv", "val") if k in typed})


def _with_recorded_paths(cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    """``cfg`` with its relative data, csv and val paths replaced by the absolute ones the run's
    model.json recorded (``data_location``) where those exist, so that a run resumed or adapted
    from another working folder finds its own data; config.yaml keeps the paths as typed."""
    from xmodal.checkpoint import META_NAME

    try:
        recorded = json.loads((run_dir / META_NAME).read_text(encoding="utf-8")).get("data")
    except (OSError, ValueError, AttributeError):
        return cfg
    if not isinstance(recorded, dict):
        return cfg
    changes = {key: recorded[key] for key in ("data", "csv", "val")
               if getattr(cfg, key) and not Path(getattr(cfg, key)).is_absolute()
               and isinstance(recorded.get(key), str) and Path(recorded[key]).exists()}
    return dataclasses.replace(cfg, **changes) if changes else cfg


def holds_run(directory: str | Path) -> bool:
    """Whether ``directory`` already holds a training run: its config.yaml, and its model, log
    or resume state (a data folder with a class named "last" is not one)."""
    directory = Path(directory)
    return (directory / "config.yaml").is_file() and any(
        (directory / name).is_file() for name in ("model.json", "metrics.jsonl",
                                                  f"{LAST_DIR}/state.json"))


def resume_config(run_dir: str | Path, **overrides: Any) -> TrainConfig:
    """The saved config of a run, with e.g. more ``epochs`` allowed as overrides."""
    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    cfg = _with_recorded_paths(load_config(path, **overrides), run_dir)
    cfg.out = str(run_dir)
    if cfg.train_frames is None:  # written before 3 became the default, when null meant frames
        cfg.train_frames = cfg.frames
    if cfg.frozen_stride is None:  # written before frozen_stride existed: every layer trained
        cfg.frozen_stride = 0
    if cfg.still_scale is None:  # written before still_scale existed: stills shown as they came
        cfg.still_scale = 1.0
    return cfg
