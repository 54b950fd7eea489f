"""Running ``xmodal`` in this process as a terminal would, and a tiny real model to run it with.

The CLI runs with file descriptors 1 and 2 captured (so what the forked decode workers print is
caught too) behind text streams of strict UTF-8, as on a machine whose locale is en_US.UTF-8:
printing a file name that is not UTF-8 there raises unless xmodal takes care.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from xmodal.cli import main


@dataclass
class CliRun:
    code: int
    out_bytes: bytes
    err_bytes: bytes

    @property
    def out(self) -> str:
        return self.out_bytes.decode("utf-8")  # strict: human and JSON output must be UTF-8

    @property
    def err(self) -> str:
        return self.err_bytes.decode("utf-8")

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def run_cli(*args: str) -> CliRun:
    """``xmodal ARGS`` in this process with fds 1 and 2 (inherited by decode workers) captured."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved_fds, saved_streams = (os.dup(1), os.dup(2)), (sys.stdout, sys.stderr)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout = open(1, "w", encoding="utf-8", errors="strict", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", errors="strict", closefd=False)
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        finally:
            sys.stdout.close()
            sys.stderr.close()
            sys.stdout, sys.stderr = saved_streams
            for fd, saved in zip((1, 2), saved_fds, strict=True):
                os.dup2(saved, fd)
                os.close(saved)
        out.seek(0)
        err.seek(0)
        return CliRun(code, out.read(), err.read())


def tiny_model(directory: Path, classes: list[str]) -> Path:
    """An untrained head on pretrained EfficientNet-Lite0 that reads 2 frames at 64 px: the
    decoding and reporting are the same as for any model, at a fraction of the cost."""
    import torch

    from xmodal.checkpoint import save_checkpoint
    from xmodal.models import build_classifier

    torch.manual_seed(0)
    net = build_classifier("efficientnet_lite0", len(classes), weights="imagenet")
    pcfg = net.encoder.pretrained_cfg
    meta = {"classes": classes, "backbone": "efficientnet_lite0", "frames": 2, "pooling": "mean",
            "dropout": 0.0, "preprocessing": {"input_size": 64, "resize_size": 72,
                                              "mean": list(pcfg.mean), "std": list(pcfg.std)}}
    return save_checkpoint(net, meta, directory)
