from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.errors import ModelError
from xmodal.models import (
    FrameClassifier,
    build_classifier,
    classifier_from_meta,
    create_encoder,
    imagenet_classifier,
)


def _eval_view(image: np.ndarray) -> torch.Tensor:
    """The evaluation preprocessing: shorter side to 256 (antialiased), centre crop 224; uint8."""
    from torchvision.transforms.v2 import functional as F

    chw = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    return F.center_crop(F.resize(chw, [256], antialias=True), [224, 224])


@pytest.fixture(scope="module")
def lite0() -> tuple[FrameClassifier, list[str]]:
    model, categories = imagenet_classifier("efficientnet_lite0")
    return model.eval(), categories


@pytest.fixture(scope="module")
def small(lite0: tuple[FrameClassifier, list[str]]) -> FrameClassifier:
    """Five classes on the pretrained encoder (random encoders give near-constant features)."""
    torch.manual_seed(0)
    model = FrameClassifier(lite0[0].encoder, 5)
    torch.nn.init.normal_(model.head.weight)
    return model.eval()


def _clips(b: int, t: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 3, size, size), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("photo, index, label",
                         [("chelsea", 285, "Egyptian cat"), ("coffee", 967, "espresso")])
def test_pretrained_default_encoder_recognises_real_photos(lite0: tuple[FrameClassifier, list[str]],
                                                           photo: str, index: int, label: str) -> None:
    """Offline ImageNet weights are really loaded: real photos get their ImageNet class."""
    import skimage.data

    model, categories = lite0
    view = _eval_view(getattr(skimage.data, photo)())
    with torch.no_grad():
        probs = model(view[None, None]).softmax(-1)[0]
    top = int(probs.argmax())
    print(f"{photo}: top-1 {top} {categories[top]!r} p={probs[top]:.4f}")
    assert (top, categories[top]) == (index, label)
    assert probs[top] > 0.3


@pytest.mark.parametrize("t", [1, 8])
def test_forward_shapes(small: FrameClassifier, t: int) -> None:
    clips = _clips(2, t)
    with torch.no_grad():
        assert small.frame_logits(clips).shape == (2, t, 5)
        assert small(clips).shape == (2, 5)


def test_still_batch_is_a_clip_of_one_frame(small: FrameClassifier) -> None:
    clips = _clips(3, 1)
    with torch.no_grad():
        assert torch.equal(small(clips[:, 0]), small(clips))


def test_mean_and_max_pooling(small: FrameClassifier) -> None:
    clips = _clips(2, 4)
    pooled_max = FrameClassifier(small.encoder, 5, pooling="max", head=small.head).eval()
    with torch.no_grad():
        frames = small.frame_logits(clips)
        mean, peak = small(clips), pooled_max(clips)
    torch.testing.assert_close(mean, frames.mean(1))
    torch.testing.assert_close(peak, frames.amax(1))
    assert (peak >= mean - 1e-6).all() and not torch.allclose(peak, mean)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_clip_of_identical_frames_equals_the_still(lite0: tuple[FrameClassifier, list[str]],
                                                   pooling: str) -> None:
    import skimage.data

    model, _ = lite0
    model = FrameClassifier(model.encoder, 1000, pooling=pooling, head=model.head).eval()
    still = _eval_view(skimage.data.chelsea())[None]  # (1, 3, 224, 224)
    clip = still[:, None].expand(1, 8, 3, 224, 224)
    with torch.no_grad():
        a, b = model(still), model(clip)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert a.argmax() == b.argmax()


def test_float_input_in_unit_range_equals_uint8(small: FrameClassifier) -> None:
    clips = _clips(2, 2)
    with torch.no_grad():
        torch.testing.assert_close(small(clips.float() / 255), small(clips), atol=1e-5, rtol=1e-5)


def test_normalisation_uses_the_encoder_config(small: FrameClassifier) -> None:
    cfg = small.encoder.pretrained_cfg
    grey = torch.full((1, 3, 4, 4), 128, dtype=torch.uint8)
    expected = (128 / 255 - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    torch.testing.assert_close(small.normalise(grey)[0, :, 0, 0], expected)


def test_dropout_sits_before_the_head_and_is_off_in_eval() -> None:
    torch.manual_seed(0)
    model = build_classifier("mobilenet_v3_small", 3, weights="none", dropout=0.5)
    assert model.dropout.p == 0.5
    clips = _clips(2, 2)
    with torch.no_grad():
        features = model.encoder(model.normalise(clips.flatten(0, 1)))
        model.train()
        assert not torch.equal(model.head(model.dropout(features)), model.head(features))
        model.eval()
        assert torch.equal(model(clips), model(clips))


def test_new_head_starts_small_and_checkpoint_has_no_imagenet_head() -> None:
    model = build_classifier("efficientnet_lite0", 4)
    assert model.head.weight.shape == (4, 1280) and model.head.weight.std() < 0.02
    keys = set(model.state_dict())
    assert {"head.weight", "head.bias"} <= keys
    assert not any(k.startswith("encoder.backbone.classifier") for k in keys)
    assert "mean" not in keys and "std" not in keys  # preprocessing lives in the JSON metadata


def test_classifier_from_meta_rebuilds_the_same_model(small: FrameClassifier) -> None:
    meta = {"backbone": "efficientnet_lite0", "classes": list("abcde"), "pooling": "max", "dropout": 0.1,
            "preprocessing": {"input_size": 160, "resize_size": 182, "mean": [0.5, 0.5, 0.5],
                              "std": [0.25, 0.25, 0.25]}}
    rebuilt = classifier_from_meta(meta)
    rebuilt.load_state_dict(small.state_dict())
    rebuilt.eval()
    assert rebuilt.pooling == "max" and rebuilt.num_classes == 5 and rebuilt.dropout.p == 0.1
    ref = FrameClassifier(small.encoder, 5, pooling="max", head=small.head).eval()
    clips = _clips(1, 2)
    with torch.no_grad():
        grey = torch.full((1, 2, 3, 64, 64), 0.5)  # the mean: zero after either normalisation
        torch.testing.assert_close(rebuilt(grey), ref(grey))
    cfg = rebuilt.encoder.pretrained_cfg
    assert (cfg.input_size, cfg.resize_size, cfg.mean, cfg.std) == (160, 182, (0.5,) * 3, (0.25,) * 3)
    torch.testing.assert_close(rebuilt.std.flatten(), torch.full((3,), 0.25 * 255))
    with torch.no_grad():  # the recorded std (0.25, not the registry's 0.5) is what normalises
        assert not torch.allclose(rebuilt(clips), ref(clips))


def test_classifier_from_meta_needs_backbone_and_classes() -> None:
    with pytest.raises(ModelError, match="lacks 'backbone' or 'classes'"):
        classifier_from_meta({"classes": ["a"]})


def test_imagenet_classifier_needs_trained_head() -> None:
    with pytest.raises(ModelError, match="no trained ImageNet classifier"):
        imagenet_classifier("resnet18", weights="none")


def test_invalid_arguments() -> None:
    encoder = create_encoder("mobilenet_v3_small", weights="none")
    with pytest.raises(ModelError, match="pooling"):
        FrameClassifier(encoder, 3, pooling="avg")
    with pytest.raises(ModelError, match="at least one class"):
        FrameClassifier(encoder, 0)
    with pytest.raises(ModelError, match="does not fit"):
        FrameClassifier(encoder, 3, head=torch.nn.Linear(10, 3))
    with pytest.raises(ValueError, match="expected clips shaped"):
        FrameClassifier(encoder, 3)(torch.zeros(1, 2, 1, 8, 8, dtype=torch.uint8))


def test_training_step_on_clips_and_stills() -> None:
    """One optimiser step over a mixed diet: the same weights learn from T=1 and T=4 batches."""
    torch.manual_seed(0)
    model = build_classifier("mobilenet_v3_small", 3, weights="none")
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for clips in (_clips(2, 4), _clips(2, 1)):
        loss = torch.nn.functional.cross_entropy(model(clips), torch.tensor([0, 1]))
        optimiser.zero_grad()
        loss.backward()
        assert model.head.weight.grad.abs().sum() > 0
        optimiser.step()
