from __future__ import annotations

import pytest
import torch
from torch import nn

from xmodal.models import FrameClassifier, build_classifier, classifier_from_meta, test_time_norm


def _layer(channels: int = 4, seed: int = 0) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels, eps=1e-3)
    bn.running_mean.copy_(torch.randn(channels, generator=g))
    bn.running_var.copy_(torch.rand(channels, generator=g) + 0.5)
    bn.weight.data.copy_(torch.randn(channels, generator=g))
    bn.bias.data.copy_(torch.randn(channels, generator=g))
    return bn.eval()


def _expected(bn: nn.BatchNorm2d, x: torch.Tensor, prior: float) -> torch.Tensor:
    """Schneider et al. (2020), n = 1 per frame, written out."""
    out = torch.empty_like(x)
    for i, frame in enumerate(x):
        for c in range(x.shape[1]):
            m = (prior * bn.running_mean[c] + frame[c].mean()) / (prior + 1)
            v = (prior * bn.running_var[c] + frame[c].var(unbiased=False)) / (prior + 1)
            out[i, c] = (frame[c] - m) / torch.sqrt(v + bn.eps) * bn.weight[c] + bn.bias[c]
    return out


def test_mixes_each_frame_statistics_with_the_running_ones() -> None:
    bn = _layer()
    x = torch.randn(3, 4, 5, 6) * 3 + 2
    plain = bn(x)
    assert test_time_norm.attach(bn, 16.0) == 1
    with torch.no_grad():
        assert torch.equal(bn(x), plain)  # attached, not active yet
        test_time_norm.set_active(bn, True)
        torch.testing.assert_close(bn(x), _expected(bn, x, 16.0))
        assert not torch.allclose(bn(x), plain, atol=1e-2)
        test_time_norm.attach(bn, 1e9)  # N -> infinity: the running statistics alone
        torch.testing.assert_close(bn(x), plain, atol=1e-4, rtol=1e-4)


def test_a_frame_is_normalised_alone_whatever_its_batch() -> None:
    bn = _layer()
    test_time_norm.attach(bn, 4.0)
    test_time_norm.set_active(bn, True)
    x = torch.randn(5, 4, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(bn(x)[2:3], bn(x[2:3]))


def test_training_mode_and_frozen_layers_are_untouched() -> None:
    bn = _layer()
    test_time_norm.attach(bn, 4.0)
    test_time_norm.set_active(bn, True)
    x = torch.randn(3, 4, 5, 5)
    reference = _layer()
    bn.train()
    reference.train()
    torch.testing.assert_close(bn(x), reference(x))  # batch statistics, as without the hook
    torch.testing.assert_close(bn.running_mean, reference.running_mean)


def test_attach_refuses_a_prior_of_zero_or_less() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        test_time_norm.attach(_layer(), 0.0)


def _tiny_classifier(prior: float | None) -> FrameClassifier:
    torch.manual_seed(0)
    return build_classifier("efficientnet_lite0", 3, weights="none", test_bn_prior=prior)


def test_classifier_turns_it_on_in_eval_and_off_in_train() -> None:
    model = _tiny_classifier(16.0)
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(layers) == 49 and all(m._test_bn_prior == 16.0 for m in layers)
    assert not any(m._test_bn_active for m in layers)  # a new model trains
    model.eval()
    assert all(m._test_bn_active for m in layers)
    model.train()
    assert not any(m._test_bn_active for m in layers)


def test_classifier_from_meta_keeps_the_recorded_prior_and_old_runs_stay_off() -> None:
    base = {"backbone": "efficientnet_lite0", "classes": list("abc")}
    assert classifier_from_meta(base).test_bn_prior is None
    rebuilt = classifier_from_meta({**base, "test_bn_prior": 8.0})
    assert rebuilt.test_bn_prior == 8.0
    trained = _tiny_classifier(8.0).eval()
    rebuilt.load_state_dict(trained.state_dict())
    rebuilt.eval()
    plain = _tiny_classifier(None).eval()
    plain.load_state_dict(trained.state_dict())
    clips = torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(clips), trained(clips))
        assert not torch.allclose(rebuilt(clips), plain(clips), atol=1e-3)


def test_prior_helps_a_real_photo_seen_through_a_shift() -> None:
    """ImageNet's EfficientNet-Lite0 on scikit-image's chelsea (class 285, Egyptian cat) seen
    at a quarter of its contrast, dim, as an underexposed video frame: ImageNet's statistics
    alone make it a tiger cat (282); with its own statistics mixed in, it is the Egyptian cat
    again. (One example of the kind of shift the method corrects, not a claim that every shift
    gains: tools/bench_accuracy.py measures that.)"""
    import skimage.data
    from torchvision.transforms.v2 import functional as F

    from xmodal.models import imagenet_classifier

    model, _ = imagenet_classifier("efficientnet_lite0")
    chw = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).contiguous()
    view = F.center_crop(F.resize(chw, [256], antialias=True), [224, 224]).float()
    dim = (view * 0.25 + 20).round().to(torch.uint8)[None, None]
    with torch.no_grad():
        before = model.eval()(dim).softmax(-1)[0]
        test_time_norm.attach(model.encoder, 16.0)
        test_time_norm.set_active(model.encoder, True)
        after = model(dim).softmax(-1)[0]
    print(f"dim photo: top-1 {int(before.argmax())} -> {int(after.argmax())}, "
          f"p(285) {before[285]:.3f} -> {after[285]:.3f}")
    assert int(before.argmax()) == 282 and int(after.argmax()) == 285
    assert after[285] > before[285] + 0.05


def test_linear_probe_features_are_cached_apart_with_and_without_the_prior() -> None:
    from xmodal.config import load_config
    from xmodal.engine.features import cache_context

    cfg = load_config(None, data="x")
    plain, with_prior = _tiny_classifier(None), _tiny_classifier(32.0)
    assert cache_context(plain, cfg, "w", 112, 128) == "w|112|128|8|auto"
    assert cache_context(with_prior, cfg, "w", 112, 128) == "w|112|128|8|auto|test_bn_prior=32"


def test_an_encoder_without_batchnorm_or_an_infinite_prior_is_refused() -> None:
    from xmodal.config import load_config
    from xmodal.errors import ConfigError, ModelError

    with pytest.raises(ModelError, match="no BatchNorm2d layer"):
        build_classifier("convnext_tiny", 3, weights="none", test_bn_prior=32.0)
    with pytest.raises(ConfigError, match="finite number >= 0"):
        load_config(None, data="x", test_bn_prior=float("inf"))


def test_a_frozen_layer_inside_a_training_model_keeps_its_running_statistics() -> None:
    """``freeze_bn_stats`` (and a video run's frozen-stride prefix) leave BatchNorm layers in
    evaluation mode while the model trains: they normalise by their running statistics alone, as
    without the prior; the prior is for prediction."""
    from xmodal.config import load_config
    from xmodal.engine.optim import set_train_mode

    model = _tiny_classifier(32.0)
    plain = _tiny_classifier(None)
    plain.load_state_dict(model.state_dict())
    for m in (model, plain):
        set_train_mode(m, True)  # freeze_bn_stats: every BatchNorm layer in evaluation mode
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms) and model.training
    clips = torch.randint(0, 256, (2, 1, 3, 64, 64), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(clips), plain(clips))
    assert load_config(None, data="x").test_bn_prior == 0.0  # off unless asked for
