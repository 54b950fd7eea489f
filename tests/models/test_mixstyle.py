from __future__ import annotations

import pytest
import torch

from xmodal.models import build_classifier, mixstyle


@pytest.mark.parametrize(("backbone", "ends"), [
    ("efficientnet_lite0", ["backbone.blocks.1", "backbone.blocks.2", "backbone.blocks.4"]),
    ("resnet18", ["backbone.layer1", "backbone.layer2", "backbone.layer3"]),
])
def test_stage_ends_are_the_stage_containers_at_strides_4_8_16(backbone: str, ends: list[str]) -> None:
    # Not the next stage's first expansion layer, which still works at the finer stride.
    model = build_classifier(backbone, 3, weights="none")
    assert mixstyle.stage_ends(model.encoder, 64) == ends


def test_mix_gives_each_frame_the_mixed_statistics_of_its_clip_and_a_partner() -> None:
    torch.manual_seed(0)
    clips, t = 4, 3
    # Every frame of clip i has channel means 10 * i and stds i + 1, so a clip's frames share
    # statistics and any partner's are told apart.
    base = torch.randn(clips * t, 2, 8, 8)
    base = (base - base.mean((2, 3), keepdim=True)) / base.std((2, 3), correction=0, keepdim=True)
    level = torch.arange(clips).repeat_interleave(t).view(-1, 1, 1, 1).float()
    x = base * (level + 1) + 10 * level
    out = mixstyle.mix(x, clip_length=t, alpha=0.1)
    mean = out.mean((2, 3)).view(clips, t, 2)
    std = out.std((2, 3), correction=0).view(clips, t, 2)
    for i in range(clips):
        # one partner j and one weight per clip: mean = 10 (lam i + (1 - lam) j), std = mean / 10 + 1
        assert torch.allclose(mean[i], mean[i, :1].expand(t, 2), atol=1e-3)
        assert torch.allclose(std[i], mean[i] / 10 + 1, atol=1e-3)
        assert 0 <= mean[i, 0, 0] / 10 <= clips - 1 + 1e-4
    # the normalised content of every frame is kept
    normalised = (out - out.mean((2, 3), keepdim=True)) / out.std((2, 3), correction=0, keepdim=True)
    torch.testing.assert_close(normalised, base, atol=1e-3, rtol=1e-3)


def test_acts_in_training_only_and_tells_clips_apart() -> None:
    torch.manual_seed(0)
    model = build_classifier("efficientnet_lite0", 3, weights="none").eval()
    for module in model.modules():  # training forwards leave the running statistics alone
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.0
    clips = torch.randint(0, 256, (4, 2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        plain_eval = model(clips)
        model.train()
        torch.manual_seed(1)
        plain_train = model(clips)
    names = mixstyle.attach(model, model.encoder, p=1.0, size=64)
    assert len(names) == 3
    with torch.no_grad():
        torch.manual_seed(1)
        assert not torch.allclose(model(clips), plain_train, atol=1e-4)  # mixed in training
        model.eval()
        torch.testing.assert_close(model(clips), plain_eval)  # never at inference
    state = dict(model.encoder.named_modules())[names[0]]._mixstyle
    assert state.clip_length == 2


def test_probability_is_checked() -> None:
    model = build_classifier("efficientnet_lite0", 3, weights="none")
    with pytest.raises(ValueError, match="probability"):
        mixstyle.attach(model, model.encoder, p=1.5, size=64)
