"""torchrun support: process groups, rank-0-only side effects, metric reduction.

xmodal uses PyTorch's own engine (torchrun + DistributedDataParallel): NCCL
on GPUs, gloo on CPU. Outside torchrun every helper here is a no-op, so the
single-process code path is the same code, and imports no torch (the ONNX Runtime path
runs without it).
"""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """What torchrun told this process through the environment."""
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def init(device_name: str = "auto", *, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group when launched by torchrun (idempotent)."""
    info = env_info()
    if not info.enabled or _initialized():
        return info
    import torch
    import torch.distributed as dist

    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo",
                            timeout=datetime.timedelta(seconds=timeout_s))
    return info


def device_for(info: DistInfo, device_name: str) -> str:
    """Each rank drives its own GPU (LOCAL_RANK); CPU ranks share the CPU."""
    if not info.enabled or device_name not in ("auto", "cuda"):
        return device_name
    import torch

    return f"cuda:{info.local_rank}" if torch.cuda.is_available() else device_name


def _initialized() -> bool:
    """Whether a process group exists; never imports torch (no torch, no group)."""
    module = sys.modules.get("torch.distributed")
    return module is not None and module.is_available() and module.is_initialized()


def barrier() -> None:
    if _initialized():
        import torch.distributed as dist

        dist.barrier()


def sum_across(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    """Element-wise sum over ranks (for loss sums, correct counts, sample counts)."""
    if not _initialized():
        return values
    import torch
    import torch.distributed as dist

    backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=backend_device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics drift apart per rank).

    DDP syncs gradients, so parameters agree; running statistics are updated
    locally from each rank's batches. Rank 0's are the ones saved, so all ranks
    evaluate and continue with those.
    """
    if not _initialized():
        return
    import torch.distributed as dist

    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (picklable objects only)."""
    if not _initialized():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def shutdown() -> None:
    if _initialized():
        import torch.distributed as dist

        dist.destroy_process_group()
