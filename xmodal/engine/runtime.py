"""Device, precision and reproducibility choices shared by training and inference."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

from xmodal.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` means the GPU when present; asking for CUDA without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but no CUDA GPU is available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda") from None


def use_bf16(device: torch.device, precision: str = "auto") -> bool:
    """bf16 autocast pays on GPUs; on CPU it is slower than fp32 on most machines."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    if enabled:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def prepare_model(model: torch.nn.Module, device: torch.device, *,
                  compile: bool | str = False) -> torch.nn.Module:
    """Move to the device, in channels_last memory: cuDNN's and oneDNN's NHWC convolutions are
    the fast ones (on 2 CPU cores EfficientNet-Lite0 runs 1.5x faster than in NCHW,
    tools/bench_label.py and bench_train.py). ``compile``: see compile_encoder."""
    model = model.to(device).to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    compile_encoder(model, compile)
    return model


def compile_encoder(model: torch.nn.Module, backend: bool | str) -> None:
    """``torch.compile`` the encoder in place (``--compile``; True means inductor).

    In place, so state-dict keys and checkpoints stay as they are. Each new input shape
    compiles once: on 2 CPU cores EfficientNet-Lite0 took 38 s for its first batch (10 s with
    inductor's cache warm), then ran 1.3-2x faster (tools/bench_label.py --compile), so it
    pays on long runs only. If
    compiling fails (no C++ compiler, an unsupported op) the model runs uncompiled after one
    warning from torch, rather than stopping the run.
    """
    if not backend:
        return
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    target = getattr(model, "encoder", model)
    target.compile(backend="inductor" if backend is True else str(backend))


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a generator for data ordering."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def worker_threads(workers: int) -> int:
    """Threads per decode worker so that workers x threads does not exceed the cores."""
    cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))
