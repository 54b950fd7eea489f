from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.data.transforms import (
    AUGMENT_PRESETS,
    batch_mixer,
    eval_transform,
    to_clip_tensor,
    train_transform,
)


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
    assert AUGMENT_PRESETS == ("none", "light", "strong", "cross")
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


def _distinct_clips(b: int = 4, t: int = 3, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip i is filled with the constant 40*(i+1), so a mixed pixel tells its sources apart."""
    clips = torch.stack([torch.full((t, 3, size, size), 40 * (i + 1), dtype=torch.uint8)
                         for i in range(b)])
    return clips, torch.arange(b) % 3


def test_batch_mixer_off_when_both_alphas_are_zero() -> None:
    assert batch_mixer(0.0, 0.0, 3) is None


def test_mixup_mixes_every_frame_of_a_clip_with_one_coefficient() -> None:
    torch.manual_seed(0)
    clips, labels = _distinct_clips()
    mixed, soft = batch_mixer(0.8, 0.0, 3)(clips, labels)
    assert mixed.dtype == torch.float32 and mixed.shape == clips.shape
    assert torch.allclose(soft.sum(1), torch.ones(4))
    source = clips.float() / 255
    for i in range(4):
        values = mixed[i].unique()
        assert len(values) == 1  # one coefficient for all frames and pixels of the clip
        # a convex combination of this clip and its neighbour in the batch (torchvision rolls by 1)
        a, b = source[i].flatten()[0], source[i - 1].flatten()[0]
        lam = (values[0] - b) / (a - b)
        assert 0.0 <= lam <= 1.0
        one_hot = torch.eye(3)
        expected = lam * one_hot[labels[i]] + (1 - lam) * one_hot[labels[i - 1]]
        assert torch.allclose(soft[i], expected, atol=1e-5)


def test_cutmix_cuts_one_box_for_all_frames() -> None:
    torch.manual_seed(1)
    clips, labels = _distinct_clips(t=4, size=32)
    mixed, soft = batch_mixer(0.0, 1.0, 3)(clips, labels)
    source = clips.float() / 255
    for i in range(4):
        pasted = mixed[i] != source[i]  # (T, C, H, W): where the neighbour's pixels went
        assert torch.equal(pasted, pasted[:1].expand_as(pasted))  # the same box in every frame
        assert torch.allclose(mixed[i][pasted], source[i - 1][pasted])
        kept = 1 - pasted[0, 0].float().mean()
        assert torch.allclose(soft[i].max(), torch.maximum(kept, 1 - kept), atol=1e-5) or \
            labels[i] == labels[i - 1]


def test_mixup_and_cutmix_train(tmp_path) -> None:
    """A short run with both on goes through the real training loop and logs an accuracy."""
    from tests.utils import write_image
    from xmodal.config import load_config
    from xmodal.engine.train import fit

    for c in ("a", "b"):
        for i in range(4):
            write_image(tmp_path / "data" / c / f"{i}.png", size=(40, 30))
    cfg = load_config(None, data=str(tmp_path / "data"), modality="image", frames=1, epochs=1,
                      batch_size=4, workers=0, out=str(tmp_path / "run"), val_split=0.0,
                      warmup_epochs=0.0, input_size=64, mixup=0.8, cutmix=1.0,
                      min_steps=0)
    result = fit(cfg)
    assert result.history[0]["train_loss"] > 0 and 0.0 <= result.history[0]["train_acc"] <= 1.0


# Shapes (T, C, H, W): landscape, portrait, square, an upscale, odd sizes, and already at size.
@pytest.mark.parametrize("shape", [(8, 3, 360, 640), (1, 3, 480, 300), (2, 3, 100, 100),
                                   (1, 3, 201, 179), (3, 3, 256, 341), (1, 3, 257, 999)])
def test_resize_and_centre_crop_equal_torchvisions(shape: tuple[int, ...]) -> None:
    """Inference resizes without torchvision (start-up time), so it must match it exactly."""
    from torchvision.transforms import v2

    from xmodal.data.transforms import center_crop, resize_shorter_side

    clip = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    expected = v2.Resize(256, antialias=True)(clip)
    resized = resize_shorter_side(clip, 256)
    assert resized.dtype == torch.uint8
    torch.testing.assert_close(resized, expected, rtol=0, atol=0)
    torch.testing.assert_close(center_crop(resized, 224), v2.CenterCrop(224)(expected), rtol=0, atol=0)


def test_centre_crop_refuses_a_clip_smaller_than_the_crop() -> None:
    from xmodal.data.transforms import center_crop

    with pytest.raises(ValueError, match="cannot centre-crop 224x224 from 100x300"):
        center_crop(torch.zeros(1, 3, 100, 300, dtype=torch.uint8), 224)
