"""Inference: load a model by checkpoint or encoder name, classify files and arrays.

Decoding runs in isolated worker processes (one decoder per worker, made inside
it; see ``workers.py``); the main process batches views of equal shape for the
encoder, so stills and clips of any mix go through the same model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xmodal.engine.calibration import apply_min_score, clip_scores
from xmodal.engine.inputs import ClipReader, scan_paths
from xmodal.engine.multilabel import labels_above, predictor_thresholds
from xmodal.engine.reporting import Reporter
from xmodal.engine.runtime import autocast, prepare_model, resolve_device, use_bf16
from xmodal.engine.workers import DEFAULT_TIMEOUT_S, DecodePool
from xmodal.errors import CheckpointError, ModelError, XmodalError
from xmodal.names import unsupported_message

DEFAULT_FRAMES = 8


@dataclass
class LoadedModel:
    """A classifier with everything needed to preprocess for it and name its outputs."""

    model: torch.nn.Module
    classes: list[str]
    meta: dict[str, Any]
    name: str

    @property
    def frames(self) -> int:
        return int(self.meta.get("frames", DEFAULT_FRAMES))

    @property
    def input_size(self) -> int:
        return int(self.meta["preprocessing"]["input_size"])

    @property
    def resize_size(self) -> int:
        return int(self.meta["preprocessing"]["resize_size"])


def load_model(ref: str | os.PathLike[str]) -> LoadedModel:
    """``ref`` is a run dir, a checkpoint file, or an encoder name (ImageNet classes)."""
    path = Path(ref)
    if path.exists():
        return _load_checkpoint_model(path)
    from xmodal.models import imagenet_classifier, list_encoders

    name = str(ref)
    if name in list_encoders() or name.startswith("timm:"):
        model, categories = imagenet_classifier(name)
        pcfg = model.encoder.pretrained_cfg
        meta = {"classes": categories, "backbone": name, "frames": DEFAULT_FRAMES,
                "pooling": "mean",
                "preprocessing": {"input_size": pcfg.input_size, "resize_size": pcfg.resize_size,
                                  "mean": list(pcfg.mean), "std": list(pcfg.std)}}
        return LoadedModel(model.eval(), categories, meta, name)
    import difflib

    close = difflib.get_close_matches(name, list_encoders(), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `xmodal backbones`"
    raise ModelError(f"{name}: no such checkpoint or run directory, and not a known encoder{hint}")


def _load_checkpoint_model(path: Path) -> LoadedModel:
    from xmodal.checkpoint import load_checkpoint
    from xmodal.models import classifier_from_meta

    weights, meta = load_checkpoint(path)
    model = classifier_from_meta(meta)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(path, f"weights do not fit the recorded backbone ({first})") from None
    return LoadedModel(model.eval(), list(meta["classes"]), meta, str(path))


def check_same_classes(models: Sequence[LoadedModel]) -> None:
    """Fusion averages probabilities, which only makes sense over one class list."""
    first = models[0]
    for other in models[1:]:
        if other.classes != first.classes:
            only_a = sorted(set(first.classes) - set(other.classes))[:3]
            only_b = sorted(set(other.classes) - set(first.classes))[:3]
            detail = (f"only in the first: {', '.join(only_a) or '-'}; "
                      f"only in the second: {', '.join(only_b) or '-'}"
                      if only_a or only_b else "same names in a different order")
            raise ModelError(f"cannot fuse {first.name} and {other.name}: their class lists "
                             f"differ ({detail})")


def describe_failure(exc: BaseException) -> str:
    """The one-line reason recorded for a file that failed to decode."""
    if isinstance(exc, XmodalError):
        return getattr(exc, "reason", str(exc))
    return f"unexpected decode failure ({type(exc).__name__}: {exc})"


# --------------------------------------------------------------------------- predictor

class Predictor:
    """Classifies files, folders, arrays and PIL images; the CLI and ``xmodal.load`` share it.

    Batching decides whether a resumed labelling run writes the same numbers as an
    uninterrupted one. oneDNN's CPU kernels round a frame's result differently depending on
    the other frames in its batch (last digits), so on the CPU (``batch_size=None``) every
    file runs alone, its frames in passes of one clip's worth: scores depend on the file only,
    and the CPU loses nothing, as larger batches are slower per frame there (they spill out
    of the caches). With ``batch_size`` clips (default 32 on a GPU), stills and clips share
    forward passes of exactly ``batch_size`` clips' worth of frames (the last one padded),
    which keeps the GPU busy; scores can then differ from run to run in the last digits.
    """

    def __init__(self, models: LoadedModel | Sequence[LoadedModel], *, device: str = "auto",
                 video_backend: str = "auto", batch_size: int | None = None,
                 workers: int | None = None,
                 top_k: int = 5, precision: str = "auto", clips: int = 1, crops: int = 1,
                 window_s: float | None = None, stride_s: float | None = None,
                 timeout_s: float | None = DEFAULT_TIMEOUT_S, compile: bool | str = False,
                 min_score: float | None = None, segments: str | None = None,
                 shot_detector: str = "content") -> None:
        self.models = [models] if isinstance(models, LoadedModel) else list(models)
        check_same_classes(self.models)
        self.device = resolve_device(device)
        self.bf16 = use_bf16(self.device, precision)
        for m in self.models:
            prepare_model(m.model, self.device, compile=compile)
        first = self.models[0]
        self.classes = first.classes
        self.reader = ClipReader(first.frames, first.input_size, first.resize_size, video_backend,
                                 clips=clips, crops=crops, window_s=window_s, stride_s=stride_s)
        # One file per batch on the CPU unless asked otherwise (see the class docstring).
        self.per_file = batch_size is None and self.device.type != "cuda"
        self.batch_size = max(1, batch_size or (1 if self.per_file else 32))
        self.batch_frames = self.batch_size * max(m.frames for m in self.models)
        self.workers = workers
        self.timeout_s = timeout_s
        self.top_k = max(1, min(top_k, len(self.classes)))
        self.min_score = min_score
        self.thresholds = predictor_thresholds(self.models)  # multi-label models only
        self.reader.segments, self.reader.shot_detector = segments, shot_detector

    @property
    def name(self) -> str:
        return "+".join(m.name for m in self.models)

    def predict(self, inputs: Any) -> list[dict[str, Any]]:
        """One record per input (folders expand to their files), in input order."""
        return list(self.iter_predict(inputs))

    def iter_predict(self, inputs: Any, reporter: Reporter | None = None) -> Iterator[dict[str, Any]]:
        """Records in input order; a file that fails yields ``{"path", "error"}``.

        Files of unsupported type inside folders are named in one warning to ``reporter``.
        """
        reporter = reporter or Reporter()
        items, unsupported = _normalise_inputs(inputs)
        if unsupported:
            reporter.warning(unsupported_message(unsupported))
        yield from self.iter_items(items, reporter)

    def iter_items(self, items: Sequence[Any], reporter: Reporter | None = None,
                   names: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        names = names if names is not None else [_item_name(i) for i in items]
        for index, probs, info, error in self.iter_probabilities(items, reporter):
            if probs is None:
                yield {"path": names[index], "error": error}
            else:
                yield self._record(names[index], probs, info)

    def iter_probabilities(self, items: Sequence[Any], reporter: Reporter | None = None
                           ) -> Iterator[tuple[int, torch.Tensor | None, dict[str, Any], str | None]]:
        """``(index, per-view probabilities (N, K), info, error)`` for each item, in order."""
        reporter = reporter or Reporter()
        pool = DecodePool(self.reader, workers=self._workers_for(len(items)),
                          timeout_s=self.timeout_s, describe_error=describe_failure)
        pending: list[tuple[int, torch.Tensor, dict[str, Any]]] = []
        queued_frames = 0
        for index, result, error in reporter.track(pool.imap(items), total=len(items),
                                                   desc="predict"):
            views = None if result is None else result[0]
            # Records leave in input order: a failure (or another frame size) flushes the queue.
            if pending and (views is None or views.shape[2:] != pending[0][1].shape[2:]):
                yield from self._flush(pending)
                pending, queued_frames = [], 0
            if views is None:
                yield index, None, {}, error
                continue
            pending.append((index, views, result[1]))
            queued_frames += views.shape[0] * views.shape[1]
            if self.per_file or queued_frames >= self.batch_frames:
                yield from self._flush(pending)
                pending, queued_frames = [], 0
        if pending:
            yield from self._flush(pending)

    def _workers_for(self, count: int) -> int:
        if self.workers is not None:
            return self.workers
        # Starting worker processes costs more than it saves for a handful of files.
        return 0 if count <= 2 else min(4, os.cpu_count() or 1)

    def probabilities(self, views: torch.Tensor) -> torch.Tensor:
        """Fused softmax probabilities (N, K) for (N, T, 3, H, W) uint8 views."""
        return self._fused([views])[0]

    @torch.inference_mode()
    def _fused(self, groups: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Probabilities (N_i, K) for groups of (N_i, T_i, 3, H, W) views that share batches:
        every frame is classified, then each view pools its own frames' logits."""
        frames = torch.cat([g.flatten(0, 1) for g in groups])
        total: list[torch.Tensor] | None = None
        for m in self.models:
            logits = self._frame_logits(m.model, frames)
            probs, start = [], 0
            for g in groups:
                n, t = g.shape[:2]
                pooled = m.model.pool(logits[start:start + n * t].view(n, t, -1))
                probs.append(clip_scores(pooled, m.meta))  # softmax(logits / T): calibrated
                start += n * t
            total = probs if total is None else [a + b for a, b in zip(total, probs, strict=True)]
        assert total is not None
        return [(p / len(self.models)).cpu() for p in total]

    def _frame_logits(self, model: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
        """Float logits (F, K) from passes of ``batch_frames`` frames (the last one padded,
        unless each file runs alone)."""
        out = []
        for start in range(0, len(frames), self.batch_frames):
            chunk = frames[start:start + self.batch_frames]
            real = len(chunk)
            if real < self.batch_frames and not self.per_file:
                pad = chunk[:1].expand(self.batch_frames - real, *chunk.shape[1:])
                chunk = torch.cat([chunk, pad])
            chunk = chunk.to(self.device, non_blocking=True)
            with autocast(self.device, self.bf16):
                logits = model.frame_logits(chunk.unsqueeze(1))[:, 0]
            out.append(logits[:real].float())
        return torch.cat(out)

    def _flush(self, pending: list[tuple[int, torch.Tensor, dict[str, Any]]]
               ) -> Iterator[tuple[int, torch.Tensor, dict[str, Any], None]]:
        probs = self._fused([views for _, views, _ in pending])
        for (index, _, info), file_probs in zip(pending, probs, strict=True):
            yield index, file_probs, info, None

    def _record(self, name: str, probs: torch.Tensor, info: dict[str, Any]) -> dict[str, Any]:
        """File-level prediction (mean over the averaged views) plus one entry per window."""
        info = dict(info)
        n_avg = info.pop("n_avg", 1)
        windows = info.pop("windows", None)
        window_times = info.pop("window_sampled_s", None) or [None] * len(windows or ())
        record = {"path": name, **self._label(probs[:n_avg].mean(0)), **info, "model": self.name}
        if windows:
            record["clips"] = [{"start_s": a, "end_s": b, **self._label(p), "sampled_s": t}
                               for (a, b), p, t in zip(windows, probs[n_avg:], window_times,
                                                       strict=True)]
        return record

    def _label(self, probs: Any) -> dict[str, Any]:
        """``_top``, then ``unknown`` below ``min_score`` (xmodal.engine.calibration) and, for
        a multi-label model, ``labels``: every class at or above its threshold."""
        decided = apply_min_score(self._top(probs), self.min_score)
        if self.thresholds is not None:
            decided["labels"] = labels_above(probs, self.classes, self.thresholds)
        return decided

    def _top(self, probs: torch.Tensor) -> dict[str, Any]:
        scores, indices = probs.topk(self.top_k)
        top = [{"label": self.classes[i], "score": round(float(s), 6)}
               for s, i in zip(scores.tolist(), indices.tolist(), strict=True)]
        return {"label": top[0]["label"], "score": top[0]["score"], "top": top}


def _normalise_inputs(inputs: Any) -> tuple[list[Any], list[Path]]:
    """The items to classify (folders expanded) and the files of unsupported type passed over."""
    if isinstance(inputs, (str, os.PathLike)) or isinstance(inputs, np.ndarray) or hasattr(
            inputs, "convert"):
        inputs = [inputs]
    items: list[Any] = []
    unsupported: list[Path] = []
    paths: list[Any] = []

    def expand() -> None:
        scan = scan_paths(paths, keep_empty=True)
        items.extend(scan.files)
        unsupported.extend(scan.unsupported)
        paths.clear()

    for item in inputs:
        if isinstance(item, (str, os.PathLike)):
            paths.append(item)
        else:
            expand()
            items.append(item)
    expand()
    return items, unsupported


def _item_name(item: Any) -> str:
    return str(item) if isinstance(item, (str, os.PathLike)) else "<array>"


def load(*models: str | os.PathLike[str], **kwargs: Any) -> Predictor:
    """``xmodal.load("runs/x")``: a ready Predictor; several models are fused."""
    if not models:
        raise ModelError("xmodal.load needs at least one model (run dir, checkpoint or encoder name)")
    return Predictor([load_model(m) for m in models], **kwargs)
