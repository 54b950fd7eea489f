"""The ``xmodal`` command: parse options, call the engine, print.

Every user error is an ``XmodalError``; ``main`` prints it as one line on
stderr and exits non-zero, without a traceback (set XMODAL_DEBUG=1 for one).
Lines for people show file names through ``display``; JSON and CSV output keep
them exactly (see ``xmodal.names``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from xmodal import __version__
from xmodal.config import (
    AUGMENT_PRESETS,
    BALANCE_MODES,
    BATCHNORM_MODES,
    ENGINES,
    FINETUNE_MODES,
    MODALITIES,
    POOLINGS,
    SHOT_DETECTORS,
    VIDEO_BACKENDS,
)
from xmodal.errors import ConfigError, XmodalError
from xmodal.names import display, unsupported_message

EXIT_FAILED_INPUTS = 1
DEFAULT_TIMEOUT_S = 120.0
SHOT_TIMEOUT_S = 3600.0


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="xmodal")
def cli() -> None:
    """Classify videos and still images with one fine-tuned CNN."""


class _Seconds(click.ParamType):
    """A finite number of seconds above 0 (a decode ``--timeout``; ``nan``/``inf`` refused)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        import math

        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not (math.isfinite(seconds) and seconds > 0):
            self.fail(f"{value!r} is not a finite number of seconds above 0", param, ctx)
        return seconds


SECONDS = _Seconds()


def _fraction(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A value in (0, 1], NaN refused (click's FloatRange lets NaN through)."""
    if value is not None and not 0.0 < value <= 1.0:
        raise click.BadParameter(f"must be in (0, 1], got {value}")
    return value


def _inference_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The decoding and device options that predict, eval and label share."""
    options = [
        click.option("--video-backend", type=click.Choice(VIDEO_BACKENDS), default="auto",
                     show_default=True),
        click.option("--batch-size", type=int,
                     help="Clips' worth of frames per forward pass. [32 on a GPU, 1 on the CPU]"),
        click.option("--workers", type=int, default=None, help="Decode worker processes. [auto]"),
        click.option("--device", default="auto", show_default=True),
        click.option("--compile", "compile_model", is_flag=True,
                     help="torch.compile the encoder: each new input shape compiles first "
                          "(tens of seconds), then runs faster; for long runs. Implies "
                          "--engine torch."),
        click.option("--engine", type=click.Choice(ENGINES), default="auto", show_default=True,
                     help="auto: ONNX Runtime on the CPU (a run is exported once, cached), "
                          "PyTorch on a GPU. Export dirs always run on ONNX Runtime."),
        click.option("--verify-key", "verify_key", type=click.Path(),
                     help="Refuse a model whose signature (xmodal sign) does not verify with "
                          "this public key (PEM)."),
        click.option("--still-scale", "still_scale", type=float, callback=_fraction,
                     help="Show photos to the model zoomed out to this fraction of the frame, "
                          "centred on their border colour (1: as they come). [the model's: 0.8 "
                          "for one trained on videos alone, else 1]"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


_min_score_option = click.option(
    "--min-score", type=click.FloatRange(0.0, 1.0), default=None,
    help="Label a file (or window) whose top score is below S as 'unknown' (its top list stays).")


# --------------------------------------------------------------------------- train

@cli.command()
@click.option("--data", type=click.Path(), help="Dataset root: one sub-folder per class.")
@click.option("--csv", "csv_path", type=click.Path(), help="CSV of path,label rows instead of --data.")
@click.option("--multi-label", "multi_label", is_flag=True, default=None,
              help="--csv labels 'a|b': several per file (sigmoid per class, tuned thresholds).")
@click.option("--modality", type=click.Choice(MODALITIES), help="Which files to use. [video]")
@click.option("--config", "config_path", type=click.Path(), help="YAML config; flags override it.")
@click.option("--backbone", help="Encoder name (see `xmodal backbones`). [efficientnet_lite0]")
@click.option("--weights", help="imagenet | none | PATH to a local state dict. [imagenet]")
@click.option("--frames", type=int, help="Frames (TSN segments) per video clip. [8]")
@click.option("--train-frames", type=int,
              help="Frames per training clip (TSN trains on 3 segments; inference keeps "
                   "--frames). [min(3, frames)]")
@click.option("--input-size", type=int, help="Frame size in px. [the encoder's, 224]")
@click.option("--train-size", type=int, help="Training crop size in px. [= input size]")
@click.option("--epochs", type=int, help="Training epochs. [5]")
@click.option("--min-steps", type=int, help="Train more epochs until this many optimiser steps. [400]")
@click.option("--batch-size", type=int, help="Clips per batch. [8]")
@click.option("--lr", type=float, help="Head learning rate. [1e-3]")
@click.option("--backbone-lr-mult", type=float, help="Encoder LR = lr x this. [1.0]")
@click.option("--finetune", type=click.Choice(FINETUNE_MODES), help="Which weights train. [full]")
@click.option("--frozen-stride", type=int,
              help="Freeze the encoder's stem and layers up to this output stride (4, 8, ...: "
                   "the high-resolution layers keep their pretrained weights: faster steps); "
                   "0 = none. [8 with --modality video, else 0]")
@click.option("--pooling", type=click.Choice(POOLINGS), help="Temporal consensus. [mean]")
@click.option("--test-bn-prior", type=float,
              help="Prediction-time BatchNorm: each frame is normalised by its own statistics "
                   "mixed with the training ones, which weigh as N frames (Schneider et al., "
                   "2020); across photos and video frames 32 gained 4-8 points on two of the "
                   "accuracy suite's three data sets, for 3-5x slower inference. [0: off]")
@click.option("--still-scale", type=float,
              help="At prediction, photos are zoomed out to this fraction of the frame, centred "
                   "on their border colour, as the training clips show objects smaller (1: as "
                   "they come; predict --still-scale overrides it). [0.8 with --modality video, "
                   "else 1]")
@click.option("--augment", type=click.Choice(AUGMENT_PRESETS), help="Augmentation preset. [cross]")
@click.option("--mixup", type=float, help="MixUp Beta alpha, e.g. 0.8; 0 = off. [0]")
@click.option("--cutmix", type=float, help="CutMix Beta alpha, e.g. 1.0; 0 = off. [0]")
@click.option("--balance", type=click.Choice(BALANCE_MODES),
              help="Imbalanced classes: class-balanced sampling or loss weights. "
                   "[loss; none with --multi-label]")
@click.option("--val", type=click.Path(), help="Validation folder (else --val-split of --data).")
@click.option("--val-split", type=float,
              help="Held-out fraction, stratified by file. [0.2 if every class has >= 50 files "
                   "or with --multi-label, else 0: every file trains]")
@click.option("--patience", type=int,
              help="Stop after N epochs without val improvement (training loss when nothing is "
                   "held out).")
@click.option("--video-backend", type=click.Choice(VIDEO_BACKENDS), help="Decoder. [auto]")
@click.option("--workers", type=int, help="Decode worker processes. [2]")
@click.option("--seed", type=int, help="Random seed. [0]")
@click.option("--device", help="auto | cpu | cuda. [auto]")
@click.option("--compile/--no-compile", default=None,
              help="torch.compile the encoder (slow first batch, then faster). [no]")
@click.option("--feature-cache/--no-feature-cache", default=None,
              help="--finetune linear: encode each file once and cache its features. [yes]")
@click.option("--frame-cache/--no-frame-cache", default=None,
              help="Decode each training video once per run (its frames kept in the cache until "
                   "the run ends), not every epoch. [yes]")
@click.option("--out", type=click.Path(), help="Run directory to write.")
@click.option("--resume", "resume_dir", type=click.Path(), help="Continue the run in RUN_DIR.")
@click.option("--overwrite", is_flag=True,
              help="Train into an --out that already holds a run, replacing it.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(config_path: str | None, resume_dir: str | None, overwrite: bool, quiet: bool,
          csv_path: str | None, **options: Any) -> None:
    """Fine-tune an ImageNet-pretrained encoder and a new head on your classes.

    \b
    xmodal train --data samples/train --modality mixed --out runs/demo
    """
    from xmodal.config import load_config
    from xmodal.engine.reporting import TqdmReporter
    from xmodal.engine.train import fit, holds_run, resume_config

    if resume_dir is not None and overwrite:
        raise click.UsageError("--overwrite starts a run over, --resume continues one: pick one")
    if resume_dir is not None:
        cfg = resume_config(resume_dir, **{k: v for k, v in options.items() if k == "epochs"})
    else:
        cfg = load_config(config_path, csv=csv_path, **options)
        if cfg.out is not None and holds_run(cfg.out) and not overwrite:
            raise ConfigError(f"{cfg.out}: already holds a training run; --resume {cfg.out} "
                              "continues it, --overwrite replaces it")
    from xmodal.engine import distributed

    result = fit(cfg, TqdmReporter(quiet=quiet), resume=resume_dir is not None)
    if not distributed.env_info().is_main:
        return
    best = ("n/a (no validation split)" if result.best_accuracy is None
            else f"{result.best_accuracy:.3f} (epoch {result.best_epoch})")
    metric = "F1 (example-based)" if cfg.multi_label else "accuracy"
    click.echo(f"best validation {metric}: {best}")
    click.echo(display(f"saved: {result.run_dir}"))


# --------------------------------------------------------------------------- adapt

@cli.command()
@click.argument("run")
@click.option("--unlabeled", "unlabeled", multiple=True, type=click.Path(),
              help="Folder (or file) of unlabelled videos/photos of the target domain; repeatable "
                   "(needed unless --rounds 0 with --test-bn-prior alone).")
@click.option("--out", required=True, type=click.Path(), help="Run directory to write.")
@click.option("--rounds", type=int, default=2, show_default=True,
              help="Self-training rounds (0: --batchnorm and/or --test-bn-prior alone).")
@click.option("--threshold", type=float, default=0.7, show_default=True,
              help="Clip-level score from which a prediction is taken as a label.")
@click.option("--batchnorm", type=click.Choice(BATCHNORM_MODES), default="none", show_default=True,
              help="First re-estimate the BatchNorm statistics (AdaBN: every weight kept, seconds "
                   "to a minute) on the unlabelled files (target), or on them and the run's "
                   "training files, half each (mixed: one model for both).")
@click.option("--epochs", type=int, help="Epochs per round. [the run's]")
@click.option("--augment", type=click.Choice(AUGMENT_PRESETS), default="cross", show_default=True,
              help="Augmentation of the rounds (the students are noised).")
@click.option("--test-bn-prior", type=float,
              help="Prediction-time BatchNorm of the adapted run: N of the training statistics "
                   "mixed with each frame's own (as xmodal train --test-bn-prior); 0: off. With "
                   "--rounds 0 and no --batchnorm, the run is copied with it set, weights kept. "
                   "[the run's]")
@click.option("--workers", type=int, help="Decode worker processes. [the run's]")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def adapt(run: str, unlabeled: tuple[str, ...], out: str, rounds: int, threshold: float,
          batchnorm: str, epochs: int | None, augment: str, test_bn_prior: float | None,
          workers: int | None, quiet: bool) -> None:
    """Adapt RUN to your own unlabelled videos: BatchNorm statistics, self-training, or both;
    or give an existing run prediction-time BatchNorm.

    \b
    xmodal adapt runs/photos --unlabeled my_videos/ --out runs/photos_adapted
    xmodal adapt runs/photos --unlabeled my_videos/ --rounds 0 --batchnorm mixed --out runs/both
    xmodal adapt runs/photos --rounds 0 --test-bn-prior 32 --out runs/photos_tbn
    """
    from xmodal.engine.adapt import adapt as run_adapt
    from xmodal.engine.reporting import TqdmReporter

    history = run_adapt(run, list(unlabeled), out, rounds=rounds, threshold=threshold,
                        batchnorm=batchnorm, epochs=epochs, augment=augment,
                        test_bn_prior=test_bn_prior, workers=workers,
                        reporter=TqdmReporter(quiet=quiet))
    for r in history:
        acc = "n/a" if r.val_accuracy is None else f"{r.val_accuracy:.3f}"
        click.echo(f"round {r.round}: {r.selected} of {r.considered} unlabelled files used; "
                   f"best validation accuracy {acc}")
    click.echo(display(f"saved: {out}"))


# --------------------------------------------------------------------------- predict

@cli.command()
@click.argument("model")
@click.argument("paths", nargs=-1)
@click.option("--model", "fused", multiple=True,
              help="Fuse several models (repeat); then MODEL is read as a path too.")
@click.option("--top-k", "top_k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)
@_min_score_option
@_inference_options
def predict(model: str, paths: tuple[str, ...], fused: tuple[str, ...], top_k: int, fmt: str,
            min_score: float | None, video_backend: str, batch_size: int | None,
            workers: int | None, device: str, compile_model: bool, engine: str,
            verify_key: str | None, still_scale: float | None) -> None:
    """Classify images and videos (files or folders) with MODEL.

    MODEL is a run directory, a checkpoint, an ONNX export directory (xmodal export) or an
    encoder name such as efficientnet_lite0 (then the 1,000 ImageNet classes are used).

    \b
    xmodal predict runs/demo samples/demo/clip.mp4 samples/demo/photo.jpg
    xmodal predict efficientnet_lite0 photo.jpg --format json
    xmodal predict --model runs/a --model runs/b clip.mp4      # fused
    """
    from xmodal.engine.output import csv_header, csv_row, json_line, table_line
    from xmodal.engine.predict import Predictor
    from xmodal.engine.reporting import TqdmReporter

    models = list(fused) if fused else [model]
    paths = (model, *paths) if fused else paths
    if not paths:
        raise click.UsageError("give at least one image, video or folder to predict")
    loaded = _load_models(models, engine, device, compile_model, verify_key)
    predictor = Predictor(loaded, device=device, video_backend=video_backend,
                          batch_size=batch_size, workers=workers, top_k=top_k,
                          compile=compile_model, min_score=min_score, still_scale=still_scale)
    failed = 0
    multi_label = predictor.thresholds is not None
    if fmt == "csv":
        _echo_csv(csv_header(predictor.top_k, labels=multi_label))
    for record in predictor.iter_predict(list(paths), TqdmReporter(quiet=True)):
        if "error" in record:
            failed += 1
            click.echo(display(f"xmodal: {record['path']}: {record['error']}"), err=True)
        if fmt == "json":
            click.echo(json_line(_public(record)))
        elif fmt == "csv":
            _echo_csv(csv_row(record, predictor.top_k, labels=multi_label))
        elif "error" not in record:
            click.echo(table_line(record))
    if failed:
        raise SystemExit(EXIT_FAILED_INPUTS)


def _load_models(refs: list[str], engine: str, device: str, compile_model: bool,
                 verify_key: str | None) -> list[Any]:
    from xmodal.engine.predict import load_models
    from xmodal.engine.reporting import StderrReporter

    return load_models(refs, engine=engine, device=device, compile=compile_model,
                       verify_key=verify_key, reporter=StderrReporter())


def _run_sharded(run: Callable[..., Any], worker: Any, scan: Any, out: str, overwrite: bool,
                 quiet: bool, dist: Any) -> tuple[Any, str]:
    """``run(worker, files, out, ...)`` on this rank's share (label and embed); the summary and
    the "ignored" note for the main rank, (None, "") on the others."""
    from xmodal.engine.reporting import Reporter, TqdmReporter

    reporter = TqdmReporter(quiet=quiet) if dist.is_main else Reporter()
    if scan.unsupported and dist.is_main:
        reporter.warning(unsupported_message(scan.unsupported))
    summary = run(worker, scan.files, Path(out), overwrite=overwrite, reporter=reporter)
    if not dist.is_main:
        return None, ""
    return summary, f", ignored {len(scan.unsupported)} of unsupported type" if scan.unsupported else ""


def _public(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("path", "error") if "error" in record else ("path", "label", "score", "labels", "top",
                                                        "kind", "frames", "duration_s", "sampled_s")
    return {k: record[k] for k in keys if k in record}


def _echo_csv(row: list[Any]) -> None:
    """One CSV row; a file name's bytes are written as they are, as in label's CSV."""
    from xmodal.engine.output import csv_text
    from xmodal.names import to_bytes

    click.echo(to_bytes(csv_text([row])), nl=False)


# --------------------------------------------------------------------------- eval

@cli.command(name="eval")
@click.argument("model", required=False)
@click.option("--model", "fused", multiple=True, help="Fuse several models (repeat).")
@click.option("--data", type=click.Path(), help="Folder with one sub-folder per class.")
@click.option("--csv", "csv_path", type=click.Path(),
              help="CSV of path,label rows instead of --data (multi-label: label1|label2).")
@click.option("--modality", type=click.Choice(MODALITIES), default="mixed", show_default=True)
@click.option("--clips", type=int, default=1, show_default=True, help="TSN clips per video.")
@click.option("--crops", type=click.Choice(["1", "3"]), default="1", show_default=True)
@click.option("--out", type=click.Path(), help="Folder for report.json and confusion_matrix.png.")
@_min_score_option
@_inference_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate(model: str | None, fused: tuple[str, ...], data: str | None, csv_path: str | None,
             modality: str, clips: int, crops: str, out: str | None, min_score: float | None,
             video_backend: str, batch_size: int | None, workers: int | None, device: str,
             compile_model: bool, engine: str, verify_key: str | None, still_scale: float | None,
             quiet: bool) -> None:
    """Accuracy, per-class metrics and a confusion matrix of MODEL on --data or --csv;
    mAP, per-class AP and example-based F1 for a multi-label model.

    \b
    xmodal eval runs/demo --data samples/train --clips 3 --crops 3 --out runs/demo/eval
    xmodal eval runs/tags --csv test.csv --out runs/tags/eval
    """
    from xmodal.engine import distributed
    from xmodal.engine.evaluate import evaluate_folder, save_report
    from xmodal.engine.predict import Predictor
    from xmodal.engine.reporting import TqdmReporter

    refs = [m for m in (model, *fused) if m]
    if not refs:
        raise click.UsageError("give a MODEL (or --model, repeated, to fuse several)")
    if clips < 1:
        raise click.BadParameter("must be >= 1", param_hint="--clips")
    if (data is None) == (csv_path is None):
        raise click.UsageError("give one of --data DIR or --csv FILE")
    dist = distributed.init(device)
    rank_device = distributed.device_for(dist, device)
    loaded = _load_models(refs, engine, rank_device, compile_model, verify_key)
    predictor = Predictor(loaded, device=rank_device,
                          video_backend=video_backend, batch_size=batch_size, workers=workers,
                          clips=clips, crops=int(crops), compile=compile_model, min_score=min_score,
                          still_scale=still_scale)
    report = evaluate_folder(predictor, data, modality=modality, csv=csv_path,
                             reporter=TqdmReporter(quiet=quiet or not dist.is_main))
    if not dist.is_main:
        return
    # Saved before printing: a closed stdout (`| head`) must not lose the report.
    saved = save_report(report, out) if out else None
    if predictor.thresholds is not None:
        _print_multi_label_report(report)
    else:
        _print_report(report)
    if saved:
        click.echo(display("saved: " + ", ".join(str(p) for p in saved)))
    if report.failed:
        raise SystemExit(EXIT_FAILED_INPUTS)


def _print_report(report: Any) -> None:
    v, c = report.video_level, report.clip_level
    click.echo(f"files: {report.files} ({len(report.failed)} failed to decode)")
    click.echo(f"video-level top-1 {v['top1']:.4f}  top-5 {v['top5']:.4f}  (n={v['count']})")
    click.echo(f"clip-level  top-1 {c['top1']:.4f}  top-5 {c['top5']:.4f}  (n={c['count']} views)")
    if len(report.by_kind) > 1:
        for kind, m in report.by_kind.items():
            click.echo(f"  {kind + 's':7s} top-1 {m['top1']:.4f}  top-5 {m['top5']:.4f}  (n={m['count']})")
    names = {name: display(name) for name in report.classes}
    width = max(len(shown) for shown in names.values())
    click.echo(f"{'class':{width}s}  precision  recall  accuracy  support")
    for name, m in report.per_class.items():
        click.echo(f"{names[name]:{width}s}  {m['precision']:9.3f}  {m['recall']:6.3f}  "
                   f"{m['accuracy']:8.3f}  {m['support']:7d}")
    _print_calibration(report)
    for failure in report.failed:
        click.echo(display(f"xmodal: {failure['path']}: {failure['error']}"), err=True)


def _print_multi_label_report(report: Any) -> None:
    shown = "n/a (no positives)" if report.map is None else f"{report.map:.4f}"
    click.echo(f"files: {report.files} ({len(report.failed)} failed to decode)")
    click.echo(f"mAP {shown}  example-based F1 {report.example_f1:.4f} (at the model's thresholds)")
    names = {name: display(name) for name in report.classes}
    width = max(len(shown) for shown in names.values())
    click.echo(f"{'class':{width}s}      AP  precision  recall  threshold  support")
    for name, m in report.per_class.items():
        ap = "    -" if m["ap"] is None else f"{m['ap']:.3f}"
        click.echo(f"{names[name]:{width}s}  {ap:>6s}  {m['precision']:9.3f}  {m['recall']:6.3f}  "
                   f"{m['threshold']:9.3f}  {m['support']:7d}")
    for failure in report.failed:
        click.echo(display(f"xmodal: {failure['path']}: {failure['error']}"), err=True)


def _print_calibration(report: Any) -> None:
    cal = report.calibration
    temperature = cal["temperature"]
    shown = (f"{temperature:.3f}" if isinstance(temperature, float)
             else ", ".join(f"{t:.3f}" for t in temperature))
    before = "n/a (fused)" if cal["ece_uncalibrated"] is None else f"{cal['ece_uncalibrated']:.4f}"
    click.echo(f"calibration: temperature {shown}; ECE before {before}, after {cal['ece']:.4f} "
               f"({cal['bins']} bins)")
    chosen = report.settings.get("min_score")
    click.echo("min score  coverage  accuracy  files")
    for row in report.coverage:
        mark = "  <- --min-score" if chosen is not None and row["min_score"] == chosen else ""
        click.echo(f"{row['min_score']:9.2f}  {row['coverage']:8.3f}  {row['accuracy']:8.3f}  "
                   f"{row['files']:5d}{mark}")


# --------------------------------------------------------------------------- label

@cli.command()
@click.argument("folders", nargs=-1, required=True)
@click.option("--model", "models", multiple=True, required=True,
              help="Run dir, checkpoint, export dir or encoder name; repeat to fuse models.")
@click.option("--out", required=True, type=click.Path(), help="PREDICTIONS.jsonl or .csv")
@click.option("--glob", "globs", multiple=True, help="File name pattern(s), e.g. '*.mp4'. [media]")
@click.option("--window", type=float, help="Also classify sliding windows of SEC seconds.")
@click.option("--stride", type=float, help="Window stride in seconds. [= --window]")
@click.option("--segments", type=click.Choice(["shots"]),
              help="Also classify each shot of a video (split at its shot boundaries).")
@click.option("--shot-detector", type=click.Choice(SHOT_DETECTORS), default="content",
              show_default=True, help="Shot boundaries: PySceneDetect's content detector, or "
                                      "TransNetV2 (finds dissolves; slow on a CPU).")
@click.option("--overwrite", is_flag=True, help="Start over instead of resuming.")
@click.option("--top-k", "top_k", type=click.IntRange(min=1), default=5, show_default=True)
@_min_score_option
@_inference_options
@click.option("--timeout", type=SECONDS, default=None,
              help="Seconds one file may take to decode before it is recorded as failed. "
                   "[120; 3600 with --segments shots, which decodes every frame]")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def label(folders: tuple[str, ...], models: tuple[str, ...], out: str, globs: tuple[str, ...],
          window: float | None, stride: float | None, segments: str | None, shot_detector: str,
          overwrite: bool, top_k: int, min_score: float | None, video_backend: str,
          batch_size: int | None, workers: int | None, timeout: float | None, device: str,
          compile_model: bool, engine: str, verify_key: str | None, still_scale: float | None,
          quiet: bool) -> None:
    """Label every video and image under FOLDERS into a JSONL or CSV file (resumable).

    \b
    xmodal label samples/ --model runs/demo --out predictions.jsonl
    xmodal label videos/ --model runs/demo --window 4 --stride 2 --out timeline.jsonl
    xmodal label videos/ --model runs/demo --segments shots --out shots.jsonl
    """
    from xmodal.engine import distributed
    from xmodal.engine.label import find_files, label_sharded
    from xmodal.engine.predict import Predictor

    _check_window(window, stride)
    if segments is not None and window is not None:
        raise click.BadParameter("give --segments shots or --window, not both", param_hint="--segments")
    if timeout is None:  # shot detection reads every frame of a video, not 8
        timeout = SHOT_TIMEOUT_S if segments else DEFAULT_TIMEOUT_S
    scan = find_files(folders, tuple(globs))
    dist = distributed.init(device, timeout_s=7 * 24 * 3600.0)  # ranks may finish far apart
    rank_device = distributed.device_for(dist, device)
    loaded = _load_models(list(models), engine, rank_device, compile_model, verify_key)
    predictor = Predictor(loaded, device=rank_device,
                          video_backend=video_backend, batch_size=batch_size,
                          workers=2 if workers is None else workers, top_k=top_k, window_s=window,
                          stride_s=stride, timeout_s=timeout, compile=compile_model,
                          min_score=min_score, segments=segments, shot_detector=shot_detector,
                          still_scale=still_scale)
    summary, ignored = _run_sharded(label_sharded, predictor, scan, out, overwrite, quiet, dist)
    if summary is None:
        return
    click.echo(display(f"labelled {summary.done}, skipped {summary.skipped} (already in {out}), "
                       f"failed {summary.failed}{ignored}; wrote {out}"), err=quiet)
    if summary.failed:
        raise SystemExit(EXIT_FAILED_INPUTS)


# --------------------------------------------------------------------------- embed

@cli.command()
@click.argument("model")
@click.argument("paths", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(),
              help="FILE.npy: an (N, D) float32 array; FILE.jsonl beside it names each row.")
@click.option("--glob", "globs", multiple=True, help="File name pattern(s), e.g. '*.mp4'. [media]")
@click.option("--window", type=float, help="One row per window of SEC seconds (videos).")
@click.option("--stride", type=float, help="Window stride in seconds. [= --window]")
@click.option("--overwrite", is_flag=True, help="Start over instead of resuming.")
@_inference_options
@click.option("--timeout", type=SECONDS, default=120.0, show_default=True,
              help="Seconds one file may take to decode before it is recorded as failed.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def embed(model: str, paths: tuple[str, ...], out: str, globs: tuple[str, ...],
          window: float | None, stride: float | None, overwrite: bool, video_backend: str,
          batch_size: int | None, workers: int | None, timeout: float, device: str,
          compile_model: bool, engine: str, verify_key: str | None, still_scale: float | None,
          quiet: bool) -> None:
    """Write the pooled clip embedding of every file under PATHS (resumable).

    MODEL is a run directory, a checkpoint or an encoder name (PyTorch; `--engine onnx` runs a
    run through its cached ONNX export), or an ONNX export directory (ONNX Runtime). The
    embedding is the head's input (the encoder's features) averaged over the sampled frames.

    \b
    xmodal embed runs/demo samples/ --out embeddings.npy
    xmodal embed efficientnet_lite0 videos/ --window 4 --stride 2 --out timeline.npy
    """
    from xmodal.engine import distributed
    from xmodal.engine.embed import Embedder, embed_sharded, index_path
    from xmodal.engine.label import find_files

    _check_window(window, stride)
    if Path(out).suffix.lower() != ".npy":
        raise click.BadParameter("must end in .npy (FILE.jsonl is written beside it)",
                                 param_hint="--out")
    scan = find_files(paths, tuple(globs))
    dist = distributed.init(device, timeout_s=7 * 24 * 3600.0)  # ranks may finish far apart
    from xmodal.deploy.onnx_model import is_onnx_export

    # auto means PyTorch for a run (its embedding needs no export); export dirs run on ONNX Runtime.
    if engine == "auto" and not (Path(model).exists() and is_onnx_export(Path(model))):
        engine = "torch"
    loaded = _load_models([model], engine, device, compile_model, verify_key)[0]
    embedder = Embedder(loaded, device=distributed.device_for(dist, device),
                        video_backend=video_backend, batch_size=batch_size,
                        workers=2 if workers is None else workers, window_s=window,
                        stride_s=stride, timeout_s=timeout, compile=compile_model,
                        still_scale=still_scale)
    summary, ignored = _run_sharded(embed_sharded, embedder, scan, out, overwrite, quiet, dist)
    if summary is None:
        return
    click.echo(display(f"embedded {summary.done}, skipped {summary.skipped} (already in {out}), "
                       f"failed {summary.failed}{ignored}; wrote {out} ({summary.rows} x "
                       f"{embedder.dim}) and {index_path(Path(out))}"), err=quiet)
    if summary.failed:
        raise SystemExit(EXIT_FAILED_INPUTS)


# --------------------------------------------------------------------------- report

@cli.command()
@click.argument("predictions", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Folder to write the report into.")
@click.option("--data", type=click.Path(), help="Ground truth: the dataset's class folders.")
@click.option("--eval", "eval_report", type=click.Path(),
              help="Ground truth: the report.json of `xmodal eval --out` (its data folder).")
@click.option("--thumbnails/--no-thumbnails", default=True, show_default=True,
              help="Decode the frames the model saw into small JPEG strips.")
@click.option("--workers", type=int, default=2, show_default=True, help="Decode worker processes.")
@click.option("--timeout", type=SECONDS, default=60.0, show_default=True,
              help="Seconds one file's thumbnails may take before it is shown without them.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def report(predictions: str, out: str, data: str | None, eval_report: str | None, thumbnails: bool,
           workers: int, timeout: float, quiet: bool) -> None:
    """Write an HTML report of a labelling run's PREDICTIONS.jsonl (open OUT/index.html).

    \b
    xmodal report predictions.jsonl --out report/
    xmodal report predictions.jsonl --data samples/train --out report/   # + confusion matrix
    """
    from xmodal.engine.report import build_report
    from xmodal.engine.report.truth import from_eval_report, from_folder
    from xmodal.engine.reporting import TqdmReporter

    if data and eval_report:
        raise click.UsageError("give --data or --eval, not both")
    truth = from_folder(data) if data else from_eval_report(eval_report) if eval_report else None
    reporter = TqdmReporter(quiet=quiet)
    summary = build_report(predictions, out, truth=truth, thumbnails=thumbnails, workers=workers,
                           timeout_s=timeout, reporter=reporter)
    if summary.thumbnail_errors:
        first_path, first_reason = summary.thumbnail_errors[0]
        reporter.warning(f"{len(summary.thumbnail_errors)} file(s) shown without thumbnails; first: "
                         f"{first_path}: {first_reason}")
    accuracy = "" if summary.accuracy is None else f", accuracy {summary.accuracy:.4f}"
    click.echo(display(f"report of {summary.files} files ({summary.failed} failed{accuracy}): "
                       f"{summary.out / 'index.html'}"))


# --------------------------------------------------------------------------- render

@cli.command()
@click.argument("model")
@click.argument("video", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="OUT.mp4 (or .mov, .mkv) to write.")
@click.option("--window", type=float, help="Label sliding windows of SEC seconds. [whole video]")
@click.option("--stride", type=float, help="Window stride in seconds. [= --window]")
@click.option("--gif", is_flag=True, help="Also write a small animated preview, OUT.gif.")
@click.option("--video-backend", type=click.Choice(VIDEO_BACKENDS), default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def render(model: str, video: str, out: str, window: float | None, stride: float | None, gif: bool,
           video_backend: str, device: str, quiet: bool) -> None:
    """Re-encode VIDEO with MODEL's label and score drawn on every frame.

    \b
    xmodal render runs/demo samples/demo/clip.mp4 --out clip_labelled.mp4
    xmodal render runs/demo long.mp4 --window 4 --stride 2 --out long_labelled.mp4 --gif
    """
    from xmodal.engine.predict import Predictor
    from xmodal.engine.render import render_video
    from xmodal.engine.reporting import TqdmReporter

    _check_window(window, stride)
    predictor = Predictor(_load_models([model], "auto", device, False, None), device=device,
                          video_backend=video_backend,
                          workers=0, window_s=window, stride_s=stride)
    result = render_video(predictor, video, out, gif=gif, reporter=TqdmReporter(quiet=quiet))
    preview = f"; preview {result.gif}" if result.gif else ""
    click.echo(display(f"wrote {result.out}: {result.frames} frames, {result.fps:g} fps, "
                       f"{result.width}x{result.height}, audio {result.audio}{preview}"))


def _check_window(window: float | None, stride: float | None) -> None:
    if window is not None and window <= 0:
        raise click.BadParameter("must be > 0", param_hint="--window")
    if stride is not None and (window is None or stride <= 0):
        raise click.BadParameter("needs --window and a value > 0", param_hint="--stride")


# --------------------------------------------------------------------------- check

def _describe_checked(result: dict) -> str:
    """'video, 52 frames, 2.16 s, 25 fps, 128x96, stream 1 (h264)' or 'image, 40x30'."""
    size = f"{result['width']}x{result['height']}"
    if result["kind"] != "video":
        return f"{result['kind']}, {size}"
    return (f"video, {result['frames']} frames, {result['duration_s']} s, {result['fps']} fps, "
            f"{size}, stream {result['stream']} ({result['codec']})")


@cli.command()
@click.argument("folders", nargs=-1, required=True)
@click.option("--frames", type=int, default=8, show_default=True, help="Frames to decode per video.")
@click.option("--video-backend", type=click.Choice(VIDEO_BACKENDS), default="auto",
              show_default=True)
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--timeout", type=SECONDS, default=120.0, show_default=True,
              help="Seconds a file may take before it is reported as hanging.")
@click.option("--all", "show_all", is_flag=True, help="Also list the files that are fine.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def check(folders: tuple[str, ...], frames: int, video_backend: str, workers: int, timeout: float,
          show_all: bool, as_json: bool, quiet: bool) -> None:
    """List the files under FOLDERS that cannot be decoded, and why. Changes nothing.

    \b
    xmodal check samples/
    """
    from xmodal.engine.check import check_files
    from xmodal.engine.inputs import unsupported_reason
    from xmodal.engine.label import find_files
    from xmodal.engine.output import json_line
    from xmodal.engine.reporting import TqdmReporter

    scan = find_files(folders)
    files = scan.files
    bad = 0
    reporter = TqdmReporter(quiet=quiet)
    if scan.unsupported:
        reporter.warning(unsupported_message(scan.unsupported))
    for result in check_files(files, frames=frames, backend=video_backend, workers=workers,
                              timeout_s=timeout, reporter=reporter):
        bad += not result["ok"]
        with reporter.printing():
            if as_json and (show_all or not result["ok"] or "note" in result):
                click.echo(json_line(result))
            elif not result["ok"]:
                click.echo(display(f"{result['path']}: {result['error']}"))
            elif show_all or "note" in result:  # decodable, but maybe not all of it
                note = f"; {result['note']}" if "note" in result else ""
                click.echo(display(f"{result['path']}: ok ({_describe_checked(result)}){note}"))
    if show_all:  # every file passed over, by name: "ok" is null, as nothing was decoded
        for path in scan.unsupported:
            skipped = {"path": str(path), "ok": None, "skipped": unsupported_reason(path)}
            click.echo(json_line(skipped) if as_json else display(f"{path}: skipped, {skipped['skipped']}"))
    ignored = f"; ignored {len(scan.unsupported)} of unsupported type" if scan.unsupported else ""
    click.echo(f"checked {len(files)} files: {len(files) - bad} ok, {bad} cannot be decoded{ignored}",
               err=True)
    if bad:
        raise SystemExit(EXIT_FAILED_INPUTS)


# --------------------------------------------------------------------------- backbones

@cli.command()
@click.option("--timm", "timm_names", multiple=True, help="Also describe timm:NAME (repeat).")
def backbones(timm_names: tuple[str, ...]) -> None:
    """List the available encoders: parameters, GFLOPs at their input size, feature width, offline weights.

    \b
    xmodal backbones
    xmodal backbones --timm convnext_nano
    """
    from xmodal.models import list_encoders
    from xmodal.models.zoo import encoder_facts

    names = list_encoders() + [n if n.startswith("timm:") else f"timm:{n}" for n in timm_names]
    click.echo(f"{'encoder':22s} {'params':>8s} {'GFLOPs':>7s} {'features':>8s} {'input':>5s}  "
               "ImageNet weights offline")
    for name in names:
        f = encoder_facts(name)
        offline = "yes" if f.offline else "no (cached or downloaded on first use)"
        click.echo(f"{name:22s} {f.params_m:7.1f}M {f.gflops:7.2f} {f.features:8d} {f.input_size:5d}  "
                   f"{offline}")
    click.echo("any timm model works as timm:NAME; --weights PATH loads a local state dict")


# --------------------------------------------------------------------------- export

@cli.command(name="export")
@click.argument("models", nargs=-1, required=True, metavar="MODEL")
@click.option("--out", required=True, type=click.Path(), help="Folder for model.onnx and model.json.")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--int8", is_flag=True, help="Static INT8 quantisation (QDQ, per-channel weights).")
@click.option("--calibration", type=click.Path(),
              help="Folder of media to calibrate --int8 on. [the run's training data]")
@click.option("--calibration-frames", type=int, default=300, show_default=True,
              help="Frames to calibrate --int8 on.")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset.")
@click.option("--quiet", is_flag=True, help="No progress messages.")
def export(models: tuple[str, ...], out: str, fmt: str, int8: bool, calibration: str | None,
           calibration_frames: int, opset: int, quiet: bool) -> None:
    """Export MODEL (a run dir, checkpoint or encoder name) as an ONNX graph for ONNX Runtime.

    The graph takes uint8 RGB frames (batch, time, S, S, 3) and returns class probabilities:
    normalisation, encoder, head, temporal pooling and softmax are inside it. The folder is a
    model for predict, label, eval, info and xmodal.load, and runs without PyTorch.

    \b
    xmodal export runs/demo --out runs/demo-onnx
    xmodal export runs/demo --int8 --out runs/demo-int8
    """
    from xmodal.deploy.onnx_export import export_onnx
    from xmodal.engine.reporting import TqdmReporter
    from xmodal.errors import ModelError

    if calibration is not None and not int8:
        raise click.UsageError("--calibration is for --int8")
    if len(models) > 1:
        raise ModelError(f"cannot export a fused model ({len(models)} models): export each one, "
                         "then fuse the exports at predict time (--model A --model B)")
    result = export_onnx(models[0], out, int8=int8, calibration=calibration,
                         calibration_frames=calibration_frames, opset=opset,
                         reporter=TqdmReporter(quiet=quiet))
    for note in result.notes:
        click.echo(display(note))
    meta = result.meta
    click.echo(display(f"saved: {Path(out) / 'model.onnx'} ({meta['precision']}, "
                       f"opset {meta['opset']}, {len(meta['classes'])} classes)"))


# --------------------------------------------------------------------------- sign

@cli.command()
@click.argument("model_dir", type=click.Path())
@click.option("--key", "private_key", required=True, type=click.Path(),
              help="Elliptic-curve private key (PEM) to sign with.")
def sign(model_dir: str, private_key: str) -> None:
    """Sign a run or export folder's model files (OpenSSF model signing) into MODEL_DIR/model.sig.

    predict, label, eval and xmodal.load then check it with --verify-key PUBLIC.pem.

    \b
    xmodal sign runs/demo-onnx --key signing-key.pem
    """
    from xmodal.deploy.signing import sign_model

    signature, files = sign_model(model_dir, private_key)
    click.echo(display(f"signed {', '.join(files)}: {signature}"))


# --------------------------------------------------------------------------- info

def _adaptation_lines(meta: dict[str, Any]) -> list[str]:
    """What ``xmodal adapt`` did to a run, the latest first, then the runs it was made from."""
    lines, record = [], meta.get("adapted")
    while isinstance(record, dict):
        source = record.get("from")
        if record.get("method") == "batchnorm":
            mixed = (f" and {record.get('training_frames')} frames of its training files"
                     if record.get("training_frames") else "")
            lines.append(f"BatchNorm statistics ({record.get('statistics', 'target')}) from "
                         f"{record.get('frames')} frames of {record.get('files')} unlabelled "
                         f"files{mixed}; weights, metrics and scores' temperature are those of {source}")
        elif record.get("method") == "test_bn_prior":
            prior = record.get("test_bn_prior")
            what = f"N = {prior:g}" if isinstance(prior, (int, float)) and prior else "off"
            lines.append(f"prediction-time BatchNorm set ({what}); weights, statistics, metrics "
                         f"(measured as that run predicted) and scores' temperature are those of "
                         f"{source}")
        elif record.get("method") == "self-training":
            lines.append(f"self-training round {record.get('round')}: {record.get('selected')} of "
                         f"{record.get('considered')} unlabelled files taken at the label {source} "
                         f"predicted (score >= {record.get('threshold')}), fine-tuned from it")
        record = record.get("previous")
    return lines


@cli.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print the metadata as JSON.")
def info(model: str, as_json: bool) -> None:
    """Show a checkpoint's or export's classes, backbone, frames and training config.

    \b
    xmodal info runs/demo
    """
    meta = _verified_metadata(model)
    if as_json:
        click.echo(json.dumps(meta, indent=2))
        return
    pre = meta.get("preprocessing", {})
    echo(f"{'export' if meta.get('format') == 'onnx' else 'checkpoint'}: {model}")
    if meta.get("format") == "onnx":
        echo(f"format:     ONNX opset {meta.get('opset')}, {meta.get('precision')}; "
             f"input {meta.get('input', {}).get('name')} {meta.get('input', {}).get('shape')} "
             "uint8 RGB")
        quant = meta.get("quantization") or {}
        if quant.get("validation"):
            v = quant["validation"]
            echo(f"int8:       validation top-1 {v['top1_int8']:.4f} vs fp32 {v['top1_fp32']:.4f} "
                 f"({v['files']} files)")
    echo(f"backbone:   {meta.get('backbone')}")
    echo(f"classes:    {len(meta['classes'])}: {', '.join(meta['classes'])}")
    echo(f"frames:     {meta.get('frames')} (pooling: {meta.get('pooling')})")
    echo(f"input:      {pre.get('input_size')} px, mean {pre.get('mean')}, std {pre.get('std')}")
    if pre.get("still_scale", 1.0) < 1:
        why = " (trained on videos alone)" if meta.get("modality") == "video" else ""
        echo(f"stills:     zoomed out to {pre['still_scale']:g} of the frame{why}")
    if "epoch" in meta:
        echo(f"epoch:      {meta['epoch']}  metrics: {json.dumps(meta.get('metrics', {}))}")
    if meta.get("test_bn_prior"):
        echo(f"batchnorm:  prediction-time: each frame's own statistics mixed with the running "
             f"ones, which weigh as {meta['test_bn_prior']:g} frames")
    for line in _adaptation_lines(meta):
        echo(f"adapted:    {line}")
    if meta.get("multi_label"):
        shown = ", ".join(f"{c} {t:.3f}" for c, t in zip(meta["classes"], meta.get("thresholds") or
                                                         [0.5] * len(meta["classes"]), strict=True))
        echo(f"labels:     several per file (sigmoid); thresholds: {shown}")
    elif "calibration" in meta:
        cal = meta["calibration"]
        echo(f"scores:     temperature {meta.get('temperature', 1.0):.4f} (validation ECE "
             f"{cal['ece_before']:.3f} -> {cal['ece_after']:.3f})")
    config = meta.get("config")
    if config:
        echo("config:")
        for key, value in config.items():
            if value not in (None, {}):
                echo(f"  {key}: {value}")


def echo(line: str) -> None:
    """A line for people on stdout: paths and class names are shown with ``display``."""
    click.echo(display(line))


def _verified_metadata(model: str) -> dict[str, Any]:
    """A checkpoint's or export's metadata, after checking its weights' sha256."""
    from xmodal.deploy.onnx_model import export_paths, read_export_metadata, read_verified_bytes

    paths = export_paths(model) if Path(model).exists() else None
    if paths is not None:
        meta = read_export_metadata(model)
        read_verified_bytes(paths[0], meta["sha256"], paths[1].name)
        return meta
    from xmodal.checkpoint import load_checkpoint

    return load_checkpoint(model)[1]


# --------------------------------------------------------------------------- entry point

def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors become one line on stderr and a non-zero exit code."""
    try:
        cli.main(args=argv, prog_name="xmodal", standalone_mode=False)
        _leave_process_group()
    except click.exceptions.Abort:
        click.echo("xmodal: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except XmodalError as exc:
        if os.environ.get("XMODAL_DEBUG"):
            raise
        click.echo(f"xmodal: error: {display(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("xmodal: interrupted", err=True)
        sys.exit(130)


def _leave_process_group() -> None:
    if "torch.distributed" in sys.modules:
        from xmodal.engine import distributed

        distributed.shutdown()


if __name__ == "__main__":
    main()
