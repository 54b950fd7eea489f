from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.data.transforms import AUGMENT_PRESETS, eval_transform, to_clip_tensor, train_transform


def _random_frame(seed: int, height: int = 48, width: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)


def test_to_clip_tensor_moves_channels_first() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (5, 12, 16, 3), dtype=np.uint8)
    clip = to_clip_tensor(frames)
    assert clip.shape == (5, 3, 12, 16) and clip.dtype == torch.uint8
    assert torch.equal(clip[2, 1], torch.from_numpy(frames[2, :, :, 1]))


@pytest.mark.parametrize("bad", [np.zeros((12, 16, 3), np.uint8), np.zeros((2, 12, 16, 4), np.uint8),
                                 np.zeros((2, 12, 16, 3), np.float32)])
def test_to_clip_tensor_rejects_other_layouts(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        to_clip_tensor(bad)


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_train_transform_treats_all_frames_alike(preset: str) -> None:
    # One random crop/flip/colour op per clip: identical frames must stay identical, whatever the seed.
    transform = train_transform(32, preset=preset)
    clip = _random_frame(0).expand(6, -1, -1, -1).contiguous()
    for seed in range(60):
        torch.manual_seed(seed)
        out = transform(clip)
        assert out.shape == (6, 3, 32, 32) and out.dtype == torch.uint8
        assert all(torch.equal(out[0], out[t]) for t in range(1, 6)), f"frames differ for seed {seed}"


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_train_transform_flips_whole_clip_or_nothing(preset: str) -> None:
    # Frames differ in brightness but share a left-to-right ramp: its direction after the
    # transform says whether that frame was flipped, and all frames must agree.
    ramp = torch.linspace(0, 180, 64).round().to(torch.uint8)
    clip = torch.stack([(ramp + 10 * t).expand(3, 48, 64) for t in range(5)])
    transform = train_transform(32, preset=preset)
    directions = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out = transform(clip).float()
        slopes = out[..., -1].mean(dim=(1, 2)) - out[..., 0].mean(dim=(1, 2))
        signs = {int(torch.sign(s)) for s in slopes if abs(s) > 1}
        assert len(signs) <= 1, f"some frames flipped, others not (seed {seed})"
        directions |= signs
    assert directions == {-1, 1}  # both outcomes happen, so the flip is really random


def test_train_transform_none_is_deterministic_eval() -> None:
    clip = _random_frame(1).expand(2, -1, -1, -1)
    transform = train_transform(32, preset="none")
    assert torch.equal(transform(clip), eval_transform(32)(clip))


def test_train_transform_rejects_unknown_preset() -> None:
    assert AUGMENT_PRESETS == ("none", "light", "strong")
    with pytest.raises(ValueError, match="heavy"):
        train_transform(32, preset="heavy")


@pytest.mark.parametrize("resize_size", [None, 40])
def test_eval_transform_output_size(resize_size: int | None) -> None:
    clip = torch.stack([_random_frame(t, 48, 80) for t in range(3)])
    out = eval_transform(32, resize_size)(clip)
    assert out.shape == (3, 3, 32, 32) and out.dtype == torch.uint8
    assert torch.equal(out, eval_transform(32, resize_size)(clip))


def test_eval_transform_resizes_shorter_side_then_crops_centre() -> None:
    # A tall image: the shorter side (width) becomes resize_size, the crop keeps the centre row band.
    frame = torch.zeros(1, 3, 100, 50, dtype=torch.uint8)
    frame[..., 45:55, :] = 255
    out = eval_transform(20, resize_size=20)(frame)
    assert out.shape == (1, 3, 20, 20)
    assert out[0, 0, 10].float().mean() > 200 and out[0, 0, 0].float().mean() < 10
