"""Inference: load a model by checkpoint, export directory or encoder name; classify files
and arrays.

Two engines run a model: PyTorch (``LoadedModel``; training's engine, and the GPU's) and
ONNX Runtime (``xmodal.deploy.onnx_model.OnnxModel``; an export directory, or a trained run
on the CPU, where it is faster). With ONNX Runtime alone, torch is never imported: views are
NumPy arrays made by Pillow, which keeps a cold start short. Decoding runs in isolated worker
processes (one decoder per worker, made inside it; see ``workers.py``); the main process
batches views of equal shape for the encoder, so stills and clips of any mix go through the
same model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from xmodal.config import ENGINES
from xmodal.engine.calibration import apply_min_score, clip_scores
from xmodal.engine.inputs import DEFAULT_FRAMES, ClipReader, scan_paths
from xmodal.engine.multilabel import labels_above, predictor_thresholds
from xmodal.engine.reporting import Reporter
from xmodal.engine.workers import DEFAULT_TIMEOUT_S, DecodePool
from xmodal.errors import CheckpointError, ConfigError, ModelError, XmodalError
from xmodal.names import unsupported_message

if TYPE_CHECKING:
    import torch


@dataclass
class LoadedModel:
    """A classifier with everything needed to preprocess for it and name its outputs.

    ``model`` is a ``torch.nn.Module`` here; ``OnnxModel`` (the same fields) holds an
    ONNX Runtime session instead.
    """

    model: Any
    classes: list[str]
    meta: dict[str, Any]
    name: str
    engine: ClassVar[str] = "torch"

    @property
    def frames(self) -> int:
        return int(self.meta.get("frames", DEFAULT_FRAMES))

    @property
    def input_size(self) -> int:
        return int(self.meta["preprocessing"]["input_size"])

    @property
    def resize_size(self) -> int:
        return int(self.meta["preprocessing"]["resize_size"])


def load_model(ref: str | os.PathLike[str], *, engine: str = "torch",
               reporter: Reporter | None = None) -> LoadedModel:
    """``ref`` is a run dir, a checkpoint file, an ONNX export dir, or an encoder name (ImageNet
    classes). An export dir always runs on ONNX Runtime; ``engine="onnx"`` runs a run dir or
    checkpoint on ONNX Runtime too, through its cached export (``xmodal.deploy.cache``; the
    reporter hears when it is made)."""
    from xmodal.deploy.onnx_model import is_onnx_export, load_onnx_model

    path = Path(ref)
    if path.exists() and is_onnx_export(path):
        return load_onnx_model(path)
    if path.exists():
        if engine == "onnx":
            from xmodal.deploy.cache import load_cached_onnx

            return load_cached_onnx(path, reporter or Reporter())
        return _load_checkpoint_model(path)
    from xmodal.models import imagenet_classifier, list_encoders

    name = str(ref)
    if name in list_encoders() or name.startswith("timm:"):
        if engine == "onnx":
            raise ModelError(f"{name}: an encoder name runs on PyTorch; for ONNX Runtime export it "
                             f"first (xmodal export {name} --out DIR) and predict with DIR")
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


def gpu_visible() -> bool:
    """Whether a CUDA (or ROCm) GPU is visible, without importing torch (2 s of start-up):
    the NVIDIA driver lists its GPUs in /proc, ROCm exposes /dev/kfd."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    nvidia = Path("/proc/driver/nvidia/gpus")
    return (nvidia.is_dir() and any(nvidia.iterdir())) or Path("/dev/kfd").exists()


def choose_engine(engine: str = "auto", device: str = "auto", compile: bool | str = False) -> str:
    """``"torch"`` or ``"onnx"`` for the models a run dir or checkpoint names.

    ``auto``: ONNX Runtime on the CPU (2.9x faster than PyTorch eager there for the default
    encoder, equal results to 1e-5; docs/performance.md), PyTorch on a GPU or with --compile.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; use {', '.join(ENGINES)}")
    on_gpu = device.startswith("cuda") or (device == "auto" and gpu_visible())
    if engine == "onnx":
        if device.startswith("cuda"):
            raise ConfigError("--engine onnx runs on the CPU (ONNX Runtime's CPU provider); "
                              "use --device cpu, or --engine torch for the GPU")
        if compile:
            raise ConfigError("--compile is torch.compile: it needs --engine torch")
        return "onnx"
    if engine == "torch" or compile or on_gpu:
        return "torch"
    return "onnx"


def load_models(refs: Sequence[str | os.PathLike[str]], *, engine: str = "auto", device: str = "auto",
                compile: bool | str = False, verify_key: str | os.PathLike[str] | None = None,
                reporter: Reporter | None = None) -> list[LoadedModel]:
    """The models for ``refs`` on the engine ``choose_engine`` picks (export dirs: always ONNX
    Runtime; encoder names: always PyTorch). ``verify_key``: each model's signature must
    verify with this public key (``xmodal sign``), else SignatureError."""
    chosen = choose_engine(engine, device, compile)
    reporter = reporter or Reporter()
    return [_load_one(ref, engine, chosen, verify_key, reporter) for ref in refs]


def _load_one(ref: str | os.PathLike[str], asked: str, chosen: str,
              verify_key: str | os.PathLike[str] | None, reporter: Reporter) -> LoadedModel:
    from xmodal.deploy.onnx_model import is_onnx_export

    path = Path(ref)
    export = path.exists() and is_onnx_export(path)
    if export and asked == "torch":
        raise ModelError(f"{ref}: an ONNX export runs on ONNX Runtime only; drop --engine torch")
    if verify_key is not None:
        from xmodal.deploy.signing import verify_model

        if asked == "onnx" and not export:
            raise ConfigError(f"{ref}: a signed run folder runs on PyTorch (its ONNX export is "
                              "cached outside the signed folder); export it, sign the export, "
                              "and predict with that")
        verify_model(ref, verify_key)
        chosen = "onnx" if export else "torch"
    if chosen == "onnx" and not export and path.exists() and asked == "auto":
        try:
            return load_model(ref, engine="onnx", reporter=reporter)
        except ModelError as exc:  # e.g. a timm encoder the exporter cannot trace
            reporter.warning(f"{ref}: running on PyTorch (no ONNX export: {exc})")
            return load_model(ref, engine="torch")
    # An encoder name runs on PyTorch unless ONNX was asked for (then load_model says why not).
    engine = chosen if path.exists() or asked == "onnx" else "torch"
    return load_model(ref, engine=engine, reporter=reporter)


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


def _shared_still_scale(models: Sequence[LoadedModel]) -> float:
    """The ``still_scale`` every model records (1 where none is recorded), or ConfigError."""
    scales = {m.name: float(m.meta.get("preprocessing", {}).get("still_scale", 1.0)) for m in models}
    if len(set(scales.values())) > 1:
        listed = ", ".join(f"{name} {scale:g}" for name, scale in scales.items())
        raise ConfigError(f"the fused models show stills at different scales ({listed}: a "
                          "clips-only model zooms photos out); pick one for all with --still-scale")
    return next(iter(scales.values()))


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
    ONNX Runtime models run each file alone, in passes of ``batch_frames`` frames at most.
    Probabilities come out as NumPy arrays whatever the engine.

    Preprocessing is the first model's (fused models share one reader): its frames and sizes;
    stills are zoomed out to ``still_scale`` if given, else to the models' own scale (a
    clips-only model's 0.8, ``ClipReader``), which fused models must share (ConfigError
    otherwise: one reader cannot show each its own).
    """

    def __init__(self, models: LoadedModel | Sequence[LoadedModel], *, device: str = "auto",
                 video_backend: str = "auto", batch_size: int | None = None,
                 workers: int | None = None,
                 top_k: int = 5, precision: str = "auto", clips: int = 1, crops: int = 1,
                 window_s: float | None = None, stride_s: float | None = None,
                 timeout_s: float | None = DEFAULT_TIMEOUT_S, compile: bool | str = False,
                 min_score: float | None = None, segments: str | None = None,
                 shot_detector: str = "content", still_scale: float | None = None) -> None:
        self.models = [models] if isinstance(models, LoadedModel) else list(models)
        check_same_classes(self.models)
        self.uses_torch = any(m.engine == "torch" for m in self.models)
        self.device: Any = "cpu"
        self.bf16 = False
        if self.uses_torch:
            from xmodal.engine.runtime import prepare_model, resolve_device, use_bf16

            self.device = resolve_device(device)
            self.bf16 = use_bf16(self.device, precision)
            for m in self.models:
                if m.engine == "torch":
                    prepare_model(m.model, self.device, compile=compile)
        elif device.startswith("cuda"):
            raise ConfigError(f"{self.models[0].name}: ONNX exports run on the CPU here "
                              "(ONNX Runtime's CPU provider); use --device cpu")
        self.device_type = self.device if isinstance(self.device, str) else self.device.type
        first = self.models[0]
        self.classes = first.classes
        if still_scale is None:
            still_scale = _shared_still_scale(self.models)
        self.reader = ClipReader.from_meta(first.meta, video_backend, clips=clips, crops=crops,
                                           window_s=window_s, stride_s=stride_s,
                                           arrays="torch" if self.uses_torch else "numpy",
                                           still_scale=still_scale)
        # One file per batch on the CPU unless asked otherwise (see the class docstring).
        self.per_file = batch_size is None and self.device_type != "cuda"
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
                           ) -> Iterator[tuple[int, np.ndarray | None, dict[str, Any], str | None]]:
        """``(index, per-view probabilities (N, K), info, error)`` for each item, in order."""
        reporter = reporter or Reporter()
        pool = DecodePool(self.reader, workers=self._workers_for(len(items)),
                          timeout_s=self.timeout_s, describe_error=describe_failure)
        pending: list[tuple[int, Any, dict[str, Any]]] = []
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

    def probabilities(self, views: Any) -> np.ndarray:
        """Fused softmax probabilities (N, K) for (N, T, 3, H, W) uint8 tensor views (PyTorch)
        or (N, T, H, W, 3) uint8 array views (ONNX Runtime alone), as the reader makes them."""
        return self._fused([views])[0]

    def _fused(self, groups: Sequence[Any]) -> list[np.ndarray]:
        """Probabilities (N_i, K) for groups of views, averaged over the models."""
        total: list[np.ndarray] | None = None
        torch_probs = self._torch_probs(groups) if self.uses_torch else {}
        for k, m in enumerate(self.models):
            probs = torch_probs[k] if m.engine == "torch" else self._onnx_probs(m, groups)
            total = probs if total is None else [a + b for a, b in zip(total, probs, strict=True)]
        assert total is not None
        return [p / len(self.models) for p in total]

    def _onnx_probs(self, model: Any, groups: Sequence[Any]) -> list[np.ndarray]:
        return self._onnx_passes(model.probabilities, groups)

    def _onnx_passes(self, run: Any, groups: Sequence[Any]) -> list[np.ndarray]:
        """``run`` (an ONNX model's output for (N, T, S, S, 3) views) on each group alone, in
        passes of at most ``batch_frames`` frames (whole views)."""
        out = []
        for g in groups:
            views = g if isinstance(g, np.ndarray) else _tensor_views_as_array(g)
            step = max(1, self.batch_frames // views.shape[1])
            out.append(np.concatenate([run(views[i:i + step]) for i in range(0, len(views), step)]))
        return out

    def _torch_probs(self, groups: Sequence[Any]) -> dict[int, list[np.ndarray]]:
        """PyTorch models' probabilities, by model index: every frame is classified, then each
        view pools its own frames' logits."""
        import torch

        with torch.inference_mode():
            frames = torch.cat([g.flatten(0, 1) for g in groups])
            out: dict[int, list[np.ndarray]] = {}
            for k, m in enumerate(self.models):
                if m.engine != "torch":
                    continue
                logits = self._frame_logits(m.model, frames)
                probs, start = [], 0
                for g in groups:
                    n, t = g.shape[:2]
                    pooled = m.model.pool(logits[start:start + n * t].view(n, t, -1))
                    probs.append(clip_scores(pooled, m.meta).cpu().numpy())  # calibrated
                    start += n * t
                out[k] = probs
            return out

    def _frame_logits(self, model: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
        """Float logits (F, K) from passes of ``batch_frames`` frames (the last one padded,
        unless each file runs alone)."""
        import torch

        from xmodal.engine.runtime import autocast

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

    def _flush(self, pending: list[tuple[int, Any, dict[str, Any]]]
               ) -> Iterator[tuple[int, np.ndarray, dict[str, Any], None]]:
        probs = self._fused([views for _, views, _ in pending])
        for (index, _, info), file_probs in zip(pending, probs, strict=True):
            yield index, file_probs, info, None

    def _record(self, name: str, probs: np.ndarray, info: dict[str, Any]) -> dict[str, Any]:
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

    def _top(self, probs: np.ndarray) -> dict[str, Any]:
        # Stable: of two equal scores the first class comes first, whatever the engine.
        indices = np.argsort(-probs, kind="stable")[:self.top_k]
        top = [{"label": self.classes[i], "score": round(float(probs[i]), 6)} for i in indices]
        return {"label": top[0]["label"], "score": top[0]["score"], "top": top}


def _tensor_views_as_array(views: torch.Tensor) -> np.ndarray:
    """(N, T, 3, H, W) uint8 tensor views as the (N, T, H, W, 3) array an ONNX graph takes."""
    return np.ascontiguousarray(views.permute(0, 1, 3, 4, 2).numpy())


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


def load(*models: str | os.PathLike[str], engine: str = "auto",
         verify_key: str | os.PathLike[str] | None = None, **kwargs: Any) -> Predictor:
    """``xmodal.load("runs/x")``: a ready Predictor; several models are fused. ``engine`` and
    ``verify_key`` as in ``load_models``; the other keywords go to ``Predictor``."""
    if not models:
        raise ModelError("xmodal.load needs at least one model (run dir, checkpoint, export "
                         "dir or encoder name)")
    loaded = load_models(models, engine=engine, device=kwargs.get("device", "auto"),
                         compile=kwargs.get("compile", False), verify_key=verify_key)
    return Predictor(loaded, **kwargs)
