from __future__ import annotations

import os
import pathlib
import pickle
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from xmodal.errors import ModelError
from xmodal.models import (
    DEFAULT_ENCODER,
    LITE_ENCODERS,
    TORCHVISION_ENCODERS,
    create_encoder,
    imagenet_categories,
    list_encoders,
    read_state_dict,
)

REQUIRED = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_small", "mobilenet_v3_large",
            "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "convnext_tiny",
            "regnet_y_800mf", "vgg16_bn")


def _torchvision_model(name: str) -> torch.nn.Module:
    import torchvision.models as tvm

    torch.manual_seed(0)
    return tvm.get_model(name, weights=None)


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


# --------------------------------------------------------------------------- registry


def test_import_does_not_load_torchvision_models_or_timm() -> None:
    # `xmodal predict` start-up time depends on this staying true.
    code = ("import sys, xmodal.models, xmodal.checkpoint; "
            "bad = [m for m in sys.modules if m == 'timm' or m.startswith(('timm.', 'torchvision.models'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_registry_lists_default_first_and_required_families() -> None:
    names = list_encoders()
    assert names[0] == DEFAULT_ENCODER == "efficientnet_lite0"
    assert set(REQUIRED) <= set(names)


def test_imagenet_categories_offline() -> None:
    categories = imagenet_categories()
    assert len(categories) == 1000
    assert categories[285] == "Egyptian cat"
    assert categories[967] == "espresso"


@pytest.mark.parametrize("name, expected", [("resnet5", "resnet50"), ("mobilenet_v3", "mobilenet_v3_small"),
                                            ("efficientnet_lite", "efficientnet_lite0"),
                                            ("convnext-tiny", "convnext_tiny")])
def test_unknown_encoder_suggests_close_matches(name: str, expected: str) -> None:
    with pytest.raises(ModelError) as exc:
        create_encoder(name, weights="none")
    text = _one_line(exc)
    assert f"unknown encoder {name!r}" in text
    assert "did you mean" in text and expected in text


def test_unknown_timm_model_suggests_close_matches() -> None:
    with pytest.raises(ModelError) as exc:
        create_encoder("timm:resnet5O", weights="none")
    assert "resnet50" in _one_line(exc)


# --------------------------------------------------------------------------- every family


@pytest.mark.parametrize("name", [*TORCHVISION_ENCODERS, *LITE_ENCODERS, "timm:resnet18"])
def test_forward_backward_every_family(name: str) -> None:
    """Features come out flat, gradients flow, one optimiser step changes the weights."""
    torch.manual_seed(0)
    encoder = create_encoder(name, weights="none")
    cfg = encoder.pretrained_cfg
    assert encoder.name == name
    assert encoder.imagenet_head is None  # no trained head without pretrained weights
    assert cfg.input_size > 0 and cfg.resize_size >= cfg.input_size and len(cfg.mean) == len(cfg.std) == 3
    assert not any(isinstance(m, torch.nn.Linear) and m.out_features == 1000 for m in encoder.modules())

    head = torch.nn.Linear(encoder.num_features, 3)
    params = [*encoder.parameters(), *head.parameters()]
    optimiser = torch.optim.SGD(params, lr=0.1)
    features = encoder(torch.randn(2, 3, 64, 64))
    assert features.shape == (2, encoder.num_features)
    loss = torch.nn.functional.cross_entropy(head(features), torch.tensor([0, 2]))
    loss.backward()
    first = next(p for p in encoder.parameters() if p.grad is not None)
    assert torch.isfinite(first.grad).all()
    before = first.detach().clone()
    optimiser.step()
    assert not torch.equal(before, first.detach())


def test_default_encoder_is_pretrained_offline() -> None:
    encoder = create_encoder(DEFAULT_ENCODER)
    cfg = encoder.pretrained_cfg
    assert (cfg.input_size, cfg.resize_size, cfg.mean, cfg.std) == (224, 256, (0.5,) * 3, (0.5,) * 3)
    assert encoder.num_features == 1280
    assert encoder.imagenet_head is not None and encoder.imagenet_head.out_features == 1000
    # The ImageNet head is kept aside, not saved with (nor trained as part of) the encoder.
    assert not any(k.startswith("classifier") for k in encoder.state_dict())


def test_torchvision_pretrained_cfg_comes_from_the_weights() -> None:
    cfg = create_encoder("efficientnet_b3", weights="none").pretrained_cfg
    assert (cfg.input_size, cfg.resize_size, cfg.interpolation) == (300, 320, "bicubic")
    cfg = create_encoder("resnet50", weights="none").pretrained_cfg
    assert (cfg.input_size, cfg.resize_size) == (224, 232)
    assert cfg.mean == pytest.approx((0.485, 0.456, 0.406))


# --------------------------------------------------------------------------- ImageNet weights offline


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No cached weights and no network, whatever the machine has."""
    import torch.hub

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    return tmp_path / "torch"


def _cache_path(torch_home: Path, name: str) -> Path:
    import torchvision.models as tvm

    url = tvm.get_model_weights(name).DEFAULT.url
    return torch_home / "hub" / "checkpoints" / os.path.basename(url)


def test_uncached_torchvision_weights_offline_is_one_line_model_error(empty_torch_home: Path) -> None:
    with pytest.raises(ModelError) as exc:
        create_encoder("resnet50")
    text = _one_line(exc)
    assert text.startswith("resnet50: ImageNet weights are not cached and cannot be downloaded (")
    assert "Temporary failure in name resolution" in text
    assert "--weights PATH" in text and "efficientnet_lite0" in text


def test_cached_torchvision_weights_load_without_network(empty_torch_home: Path) -> None:
    reference = _torchvision_model("resnet18")
    cached = _cache_path(empty_torch_home, "resnet18")
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    encoder = create_encoder("resnet18")
    assert torch.equal(encoder.backbone.conv1.weight, reference.conv1.weight)
    assert torch.equal(encoder.imagenet_head.weight, reference.fc.weight)


def test_corrupt_cached_torchvision_weights_is_model_error(empty_torch_home: Path) -> None:
    cached = _cache_path(empty_torch_home, "resnet18")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError) as exc:
        create_encoder("resnet18")
    text = _one_line(exc)
    assert str(cached) in text and "cannot be loaded" in text


def test_timm_weights_offline_is_one_line_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("We couldn't connect to 'https://huggingface.co'\nmore detail")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ModelError) as exc:
        create_encoder("timm:resnet18")
    text = _one_line(exc)
    assert text.startswith("timm:resnet18: ImageNet weights are not cached and cannot be downloaded")
    assert "--weights PATH" in text


# --------------------------------------------------------------------------- weights=PATH


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("headless", [False, True])
def test_local_weights_round_trip(tmp_path: Path, suffix: str, headless: bool) -> None:
    reference = _torchvision_model("resnet18")
    state = {k: v for k, v in reference.state_dict().items() if not (headless and k.startswith("fc."))}
    path = tmp_path / f"weights{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, path)

    encoder = create_encoder("resnet18", weights=str(path))
    assert torch.equal(encoder.backbone.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    if headless:
        assert encoder.imagenet_head is None
    else:
        assert torch.equal(encoder.imagenet_head.weight, reference.fc.weight)


def test_local_weights_accept_wrapped_and_xmodal_prefixed_state(tmp_path: Path) -> None:
    reference = create_encoder("mobilenet_v3_small", weights="none")
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.backbone.state_dict().items()}}, path)
    assert torch.equal(create_encoder("mobilenet_v3_small", weights=path).backbone.features[0][0].weight,
                       reference.backbone.features[0][0].weight)
    # A fine-tuned xmodal model: its encoder is reused, its task head ignored.
    classifier_state = {f"encoder.backbone.{k}": v for k, v in reference.backbone.state_dict().items()}
    save_file({**classifier_state, "head.weight": torch.zeros(3, 1024), "head.bias": torch.zeros(3)},
              tmp_path / "m.safetensors")
    again = create_encoder("mobilenet_v3_small", weights=tmp_path / "m.safetensors")
    assert torch.equal(again.backbone.features[0][0].weight, reference.backbone.features[0][0].weight)


def test_mismatched_local_weights_name_the_keys(tmp_path: Path) -> None:
    state = _torchvision_model("resnet18").state_dict()
    del state["layer4.1.bn2.weight"]
    state["conv1.weight"] = torch.zeros(8, 3, 7, 7)
    state["extra.bias"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ModelError) as exc:
        create_encoder("resnet18", weights=str(path))
    text = _one_line(exc)
    assert text.startswith(f"{path}: weights do not fit this encoder")
    assert "missing layer4.1.bn2.weight" in text
    assert "unexpected extra.bias" in text
    assert "shape mismatch conv1.weight (8, 3, 7, 7) vs (64, 3, 7, 7)" in text


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r34.safetensors"
    save_file(_torchvision_model("resnet34").state_dict(), path)
    with pytest.raises(ModelError) as exc:
        create_encoder("resnet18", weights=path)
    assert "unexpected layer1.2." in _one_line(exc)


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".safetensors"])
def test_corrupt_weights_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(os.urandom(2048))
    with pytest.raises(ModelError) as exc:
        create_encoder("resnet18", weights=path)
    assert _one_line(exc).startswith(f"{path}: ")


def test_missing_weights_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as exc:
        create_encoder("resnet18", weights=tmp_path / "nope.pth")
    assert _one_line(exc) == f"{tmp_path / 'nope.pth'}: weights file not found"


def test_non_tensor_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "arch": "resnet18"}, path)
    with pytest.raises(ModelError, match="not a state dict"):
        read_state_dict(path)


class _Payload:
    """Unpickling this touches a marker file: stands in for arbitrary code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (pathlib.Path.touch, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused_not_executed(tmp_path: Path, writer: str) -> None:
    # Control: the payload really does run when unpickled without protection.
    control = tmp_path / "control-ran"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.exists()

    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    state = {"conv1.weight": torch.zeros(1), "trap": _Payload(marker)}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(state))
    else:
        torch.save(state, path)
    with pytest.raises(ModelError) as exc:
        create_encoder("resnet18", weights=path)
    text = _one_line(exc)
    assert text.startswith(f"{path}: refused to load")
    assert not marker.exists()


@pytest.mark.parametrize("name, params_m, gflops, features, size", [
    # At each model's own input size. timm quotes the models with their 1000-way heads (1.28M
    # parameters more): Lite0 4.65M, 0.4 GMACs; Lite1 5.42M, 0.62; Lite2 6.09M, 0.90.
    ("efficientnet_lite0", 3.37, 0.384, 1280, 224),
    ("efficientnet_lite1", 4.14, 0.599, 1280, 240),
    ("efficientnet_lite2", 4.81, 0.858, 1280, 260),
    ("resnet18", 11.18, 1.81, 512, 224),  # torchvision: 11.7M with the head, 1.81 GFLOPS
])
def test_encoder_facts_for_xmodal_backbones(name: str, params_m: float, gflops: float, features: int,
                                            size: int, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from xmodal.models.zoo import encoder_facts

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache, whatever this machine holds
    facts = encoder_facts(name)
    assert facts.params_m == pytest.approx(params_m, abs=0.01)
    assert facts.gflops == pytest.approx(gflops, abs=0.01)
    assert (facts.features, facts.input_size) == (features, size)
    # The Lite weights ship in packages; torchvision's are not in an empty cache.
    assert facts.offline == (name in LITE_ENCODERS)


def test_encoder_facts_at_another_size() -> None:
    from xmodal.models.zoo import encoder_facts

    # Lite2 at 224 px rather than its own 260: feature maps 112 ... 7 instead of 130 ... 9.
    facts = encoder_facts("efficientnet_lite2", size=224)
    assert facts.input_size == 260
    assert facts.gflops == pytest.approx(0.575, abs=0.005)
