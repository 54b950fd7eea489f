"""The CUDA paths: bf16 autocast, channels_last, uint8 frames normalised on the device.

Skipped (cleanly, with the reason) where no CUDA device exists, as in CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xmodal.engine.label import find_files
from xmodal.engine.predict import Predictor, load_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_gpu_bf16_predictions_agree_with_cpu_fp32(three_class_checkpoint: Path,
                                                  media_folder: Path) -> None:
    files = [str(f) for f in find_files([media_folder]).files]
    cpu = Predictor(load_model(three_class_checkpoint), device="cpu", workers=0).predict(files)
    gpu = Predictor(load_model(three_class_checkpoint), device="cuda", workers=0,
                    precision="bf16")
    assert gpu.bf16 and gpu.batch_size == 32 and not gpu.per_file
    first_conv = next(m for m in gpu.models[0].model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.is_cuda
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(cpu, gpu.predict(files), strict=True):
        assert a["path"] == b["path"]
        assert abs(a["score"] - b["score"]) < 0.02  # bf16 rounding
        assert a["label"] == b["label"] or abs(a["top"][0]["score"] - a["top"][1]["score"]) < 0.02


def test_gpu_uint8_clips_are_normalised_on_the_device(three_class_checkpoint: Path) -> None:
    model = load_model(three_class_checkpoint).model.cuda()
    clips = torch.randint(0, 256, (2, 4, 3, 64, 64), dtype=torch.uint8)
    x = model.normalise(clips.flatten(0, 1))
    assert x.is_cuda and x.dtype == torch.float32
    expected = (clips.flatten(0, 1).float().cuda() - model.mean) / model.std
    torch.testing.assert_close(x, expected)


def test_gpu_training_step_in_bf16(tiny_dataset: Path, tmp_path: Path) -> None:
    from xmodal.config import load_config
    from xmodal.engine.train import fit

    cfg = load_config(None, data=str(tiny_dataset), modality="mixed", frames=2, epochs=1,
                      batch_size=4, workers=0, out=str(tmp_path / "run"), val_split=0.34,
                      warmup_epochs=0.0, device="cuda", precision="bf16", input_size=112,
                      min_steps=0)
    result = fit(cfg)
    assert result.history[0]["train_loss"] > 0
    assert (tmp_path / "run" / "model.safetensors").is_file()
