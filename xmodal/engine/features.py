"""Linear probing on frozen-encoder features computed once (and cached on disk).

With ``--finetune linear`` the encoder and its BatchNorm statistics are frozen, so a view's
features never change: each training and validation file is decoded and encoded once, as
evaluation sees it (segment centres, no augmentation), and the epochs train the head alone on
the stored features (Kornblith et al., 2019, "Do Better ImageNet Models Transfer Better?", fit
their linear probes the same way). Features are cached per file under ``features/`` of
xmodal's cache (``$XMODAL_CACHE``, default ``~/.cache/xmodal``), keyed by the encoder's weights,
the preprocessing, the frame count and the file's path, size and modification time, so a changed
encoder or file is encoded again and an unchanged one never is.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xmodal.config import TrainConfig
from xmodal.engine.reporting import Reporter


def cache_dir() -> Path:
    """``features/`` under xmodal's cache root (xmodal.cache: ``$XMODAL_CACHE``), or under
    ``$XMODAL_CACHE_DIR``, the older name this cache alone read, when that is set."""
    from xmodal.cache import cache_root

    legacy = os.environ.get("XMODAL_CACHE_DIR")
    return (Path(legacy) if legacy else cache_root()) / "features"


@dataclass
class FeatureBank:
    """Per-frame features of one split: ``features[i]`` is (T_i, D) float32 for sample ``i``,
    or None for a file that could not be decoded (its reason in ``failed``)."""

    features: list[Tensor | None]
    labels: list[int]
    kinds: list[str]
    failed: dict[int, str]
    computed: int  # how many files were encoded now (the rest came from the cache)
    num_classes: int | None = None  # sizes multi-label targets


def encoder_fingerprint(model: nn.Module) -> str:
    """sha256 of the encoder's weights and buffers (BatchNorm statistics included)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_context(model: nn.Module, cfg: TrainConfig, fingerprint: str, input_size: int,
                  resize_size: int) -> str:
    """What, besides the file, a cached feature depends on: the encoder's weights, the views'
    sizes, T, the decoder, and prediction-time BatchNorm (``--test-bn-prior``), which changes
    every feature."""
    context = f"{fingerprint}|{input_size}|{resize_size}|{cfg.frames}|{cfg.video_backend}"
    prior = getattr(model, "test_bn_prior", None)
    return f"{context}|test_bn_prior={prior:g}" if prior else context


def _file_key(path: Path, context: str) -> str:
    stat = path.stat()
    identity = f"{context}|{os.fsencode(path.resolve())!r}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(identity.encode()).hexdigest()


def build_bank(model: nn.Module, samples: Sequence[Any], cfg: TrainConfig, *, input_size: int,
               resize_size: int, device: torch.device, fingerprint: str, use_cache: bool = True,
               reporter: Reporter | None = None, desc: str = "features") -> FeatureBank:
    """Encode every sample's evaluation view with the frozen encoder (or read it back)."""
    from safetensors.torch import load_file

    reporter = reporter or Reporter()
    context = cache_context(model, cfg, fingerprint, input_size, resize_size)
    features: list[Tensor | None] = [None] * len(samples)
    keys = [_file_key(Path(s.path), context) if Path(s.path).exists() else None for s in samples]
    todo = []
    for i, key in enumerate(keys):
        cached = cache_dir() / key[:2] / f"{key}.safetensors" if key else None
        if use_cache and cached is not None and cached.is_file():
            features[i] = load_file(cached)["features"]
        else:
            todo.append(i)
    failed: dict[int, str] = {}
    model.eval()
    # Decoding draws seeds from torch's RNG; the training that follows must not depend on
    # whether the features came from the cache.
    with torch.random.fork_rng(devices=[]):
        _encode(model, samples, todo, cfg, input_size, resize_size, device, keys, use_cache,
                features, failed, reporter, desc)
    return FeatureBank(features, [s.label for s in samples], [s.kind for s in samples], failed,
                       len(todo), model.num_classes)


def _encode(model: nn.Module, samples: Sequence[Any], todo: list[int], cfg: TrainConfig,
            input_size: int, resize_size: int, device: torch.device, keys: list[str | None],
            use_cache: bool, features: list[Tensor | None], failed: dict[int, str],
            reporter: Reporter, desc: str) -> None:
    from safetensors.torch import save_file

    for i, clip, reason in reporter.track(_views(samples, todo, cfg, input_size, resize_size),
                                          total=len(todo), desc=desc):
        if clip is None:
            failed[i] = reason
            continue
        with torch.inference_mode():
            frames = model.normalise(clip.to(device))
            features[i] = model.encoder(frames).float().cpu()
        if use_cache and keys[i] is not None:
            target = cache_dir() / keys[i][:2] / f"{keys[i]}.safetensors"
            target.parent.mkdir(parents=True, exist_ok=True)
            save_file({"features": features[i].contiguous()}, str(target))


def _views(samples: Sequence[Any], todo: list[int], cfg: TrainConfig, input_size: int,
           resize_size: int) -> Iterator[tuple[int, Tensor | None, str]]:
    """(index, (T, 3, S, S) uint8 evaluation view or None, reason), decoded in worker processes."""
    from torch.utils.data import DataLoader, Dataset

    from xmodal.data.datasets import ClipDataset
    from xmodal.data.transforms import eval_transform
    from xmodal.errors import InputError

    dataset = ClipDataset([samples[i] for i in todo], cfg.frames,
                          eval_transform(input_size, resize_size), train=False,
                          backend=cfg.video_backend, short_side=resize_size)

    class Indexed(Dataset):
        def __len__(self) -> int:
            return len(dataset)

        def __getitem__(self, k: int) -> tuple[int, Tensor | None, str]:
            try:
                return todo[k], dataset[k][0], ""
            except InputError as exc:
                return todo[k], None, f"{samples[todo[k]].path}: {exc.reason}"

    loader = DataLoader(Indexed(), batch_size=None, num_workers=cfg.workers,
                        worker_init_fn=_one_thread)
    yield from loader


def _one_thread(worker_id: int) -> None:
    from xmodal.data.video import set_decoder_threads

    torch.set_num_threads(1)
    set_decoder_threads(1)


def head_batches(bank: FeatureBank, batch_size: int, *, shuffle: bool, generator: torch.Generator,
                 seed: int, epoch: int, balanced: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
    """(B, T, D) features and (B,) labels (multi-hot (B, K) rows for multi-label samples),
    batches of one kind (constant T), in the order
    ``KindBatchSampler`` gives epoch ``epoch``; files that failed are left out. ``balanced``:
    files drawn class-balanced (``--balance sampler``)."""
    from xmodal.data.datasets import KindBatchSampler
    from xmodal.engine.multilabel import targets_tensor

    good = [i for i, f in enumerate(bank.features) if f is not None]
    weights = None
    if balanced:
        from xmodal.data.balance import sample_weights

        weights = sample_weights([bank.labels[i] for i in good], bank.num_classes)
    sampler = KindBatchSampler([bank.kinds[i] for i in good], batch_size, shuffle=shuffle,
                               generator=generator, seed=seed, pad=False, weights=weights)
    sampler.set_epoch(epoch)
    for batch in sampler:
        rows = [good[k] for k in batch]
        yield (torch.stack([bank.features[i] for i in rows]),
               targets_tensor([bank.labels[i] for i in rows], bank.num_classes))


def head_logits(model: nn.Module, features: Tensor) -> Tensor:
    """(B, T, D) frozen features -> (B, K) clip logits: dropout, head, temporal pooling, as
    ``FrameClassifier.forward`` does after its encoder."""
    b, t = features.shape[:2]
    return model.pool(model.head(model.dropout(features.flatten(0, 1))).view(b, t, -1))


def fit_probe_head(model: nn.Module, bank: FeatureBank, *, l2: float = 1.0,
                   max_iter: int = 200) -> None:
    """Set ``model.head`` to an L2-regularised multinomial logistic regression on the bank's
    clip features (frames averaged: with mean pooling the head's pooled logits are exactly the
    regression's), fitted with L-BFGS on the raw features as scikit-learn's
    ``LogisticRegression(C=1/l2)`` is (centred for conditioning; the bias absorbs the mean).
    The first stage of LP-FT (Kumar et al., 2022, "Fine-Tuning can Distort Pretrained Features
    and Underperform Out-of-Distribution"): fine-tuning from a fitted head moves the pretrained
    features less, which helps on shifted data (photos -> video frames). Multi-label samples
    get one binary logistic regression per class (scikit-learn's one-vs-rest), as BCE trains.

    Not on standardised features: folded back into the raw space, a standardised fit weights a
    near-constant feature by 1 / its std (head rows of norm 50-750 on 80 digits, against about 1
    here), and fine-tuning then moves the logits wildly with every small change of such a
    feature (LP-FT fell from 0.83 to 0.32 on digits stills, tools/bench_accuracy.py). On these
    features the raw fit also probes better (digits, 10 per class: 0.80 against 0.75)."""
    from xmodal.engine.multilabel import targets_tensor

    rows = [i for i, f in enumerate(bank.features) if f is not None]
    x = torch.stack([bank.features[i].mean(0) for i in rows]).double()
    y = targets_tensor([bank.labels[i] for i in rows], model.head.out_features)
    data_loss = (nn.functional.cross_entropy if y.ndim == 1 else
                 lambda logits, hot, reduction: nn.functional.binary_cross_entropy_with_logits(
                     logits, hot.double(), reduction=reduction))
    mean = x.mean(0)
    z = x - mean
    classes = model.head.out_features
    weight = torch.zeros(classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        # scikit-learn's objective divided by the number of samples
        loss = (data_loss(z @ weight.T + bias, y, reduction="sum")
                + 0.5 * l2 * weight.pow(2).sum()) / len(y)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        model.head.weight.copy_(weight.to(model.head.weight))
        model.head.bias.copy_((bias - weight @ mean).to(model.head.bias))
