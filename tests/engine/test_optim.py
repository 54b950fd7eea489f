from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xmodal.config import dump_yaml, load_config
from xmodal.engine.optim import (
    apply_freezing,
    build_optimizer,
    build_scheduler,
    encoder_stages,
    param_groups,
    set_train_mode,
    stride_prefix,
    warmup_cosine,
)
from xmodal.errors import ConfigError
from xmodal.models import build_classifier


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_classifier("resnet18", 3, weights="none", dropout=0.0)


def test_lr_multiplier_and_no_decay_groups(model: torch.nn.Module) -> None:
    cfg = load_config(None, lr=1e-2, backbone_lr_mult=0.1, weight_decay=0.05)
    groups = {g["name"]: g for g in param_groups(model, cfg)}
    assert set(groups) == {"head", "head_no_decay", "encoder", "encoder_no_decay"}
    assert groups["head"]["lr"] == pytest.approx(1e-2)
    assert groups["encoder"]["lr"] == pytest.approx(1e-3)
    assert groups["encoder_no_decay"]["lr"] == pytest.approx(1e-3)
    assert groups["head_no_decay"]["weight_decay"] == 0.0
    assert groups["encoder_no_decay"]["weight_decay"] == 0.0
    assert groups["encoder"]["weight_decay"] == 0.05
    assert all(p.ndim <= 1 for p in groups["encoder_no_decay"]["params"])  # norms and biases
    assert all(p.ndim > 1 for p in groups["encoder"]["params"])
    n_params = sum(len(g["params"]) for g in groups.values())
    assert n_params == len(list(model.parameters()))
    opt = build_optimizer(model, load_config(None, optimizer="sgd", lr=0.1))
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9


def test_warmup_then_cosine() -> None:
    f = warmup_cosine(total_steps=10, warmup_steps=2)
    values = [f(s) for s in range(10)]
    assert values[0] < values[1] < values[2] == 1.0
    assert all(a >= b for a, b in zip(values[2:], values[3:], strict=False))
    assert values[-1] < 0.05


def test_linear_probe_freezes_encoder_and_batchnorm(model: torch.nn.Module) -> None:
    cfg = load_config(None, finetune="linear", lr=0.1, weight_decay=0.0)
    apply_freezing(model, cfg, epoch=0)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = model.head.weight.clone()
    optimizer = build_optimizer(model, cfg)
    set_train_mode(model)
    x = torch.randint(0, 255, (4, 2, 3, 64, 64), dtype=torch.uint8)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    after = model.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert not torch.equal(head_before, model.head.weight)


def test_frozen_batchnorm_statistics_while_the_weights_train() -> None:
    torch.manual_seed(0)
    model = build_classifier("resnet18", 3, weights="none", dropout=0.0)
    cfg = load_config(None, finetune="full", lr=0.1, freeze_bn_stats=True)
    apply_freezing(model, cfg, epoch=0)
    stats = {k: v.clone() for k, v in model.encoder.state_dict().items() if "running" in k}
    weight = model.encoder.backbone.conv1.weight.clone()
    optimizer = build_optimizer(model, cfg)
    set_train_mode(model, freeze_bn_stats=True)
    x = torch.randint(0, 255, (4, 2, 3, 64, 64), dtype=torch.uint8)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
    after = model.encoder.state_dict()
    assert stats and all(torch.equal(stats[k], after[k]) for k in stats)  # statistics kept
    assert not torch.equal(weight, model.encoder.backbone.conv1.weight)  # weights trained
    set_train_mode(model)  # the default estimates them from the batch again
    model(x)
    assert any(not torch.equal(stats[k], model.encoder.state_dict()[k]) for k in stats)


def test_gradual_unfreezing_schedule(model: torch.nn.Module) -> None:
    cfg = load_config(None, finetune="gradual", unfreeze_every=1)
    stages = encoder_stages(model.encoder)
    assert len(stages) == 4
    for epoch, expected in [(0, 0), (1, 1), (2, 2), (5, 4)]:
        apply_freezing(model, cfg, epoch)
        trainable = [all(p.requires_grad for p in s) for s in stages]
        assert trainable == [False] * (4 - expected) + [True] * expected
        assert all(p.requires_grad for p in model.head.parameters())
    apply_freezing(model, load_config(None, finetune="full"), 0)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("backbone, stride, first_free", [
    ("resnet18", 4, "encoder.backbone.layer2.0.conv1.weight"),  # layer2 halves the resolution
    ("resnet18", 8, "encoder.backbone.layer3.0.conv1.weight"),
    ("efficientnet_lite0", 4, "encoder.backbone.blocks.2.0.conv_dw.weight"),  # stride 8 starts
    # squeeze-excite gates output 1 x 1: they join their block instead of ending the prefix
    ("efficientnet_b0", 8, "encoder.backbone.features.4.0.block.1.0.weight"),
    ("mobilenet_v3_large", 8, "encoder.backbone.features.7.block.1.0.weight"),
])
def test_frozen_stride_freezes_the_high_resolution_prefix(backbone: str, stride: int,
                                                          first_free: str) -> None:
    torch.manual_seed(0)
    model = build_classifier(backbone, 3, weights="none", dropout=0.0)
    frozen = stride_prefix(model, stride, size=64)
    names = [name for name, _ in model.named_parameters()]
    cut = names.index(first_free)
    assert frozen == set(names[:cut])  # a prefix in depth order, up to the first coarser layer
    assert stride_prefix(model, stride, size=96) == frozen  # any input size: a stride, not px
    assert stride_prefix(model, 0) == frozenset()
    cfg = load_config(None, frozen_stride=stride, lr=0.1)
    apply_freezing(model, cfg, epoch=0, frozen=frozen)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(model, cfg)
    set_train_mode(model)
    x = torch.randint(0, 255, (4, 2, 3, 64, 64), dtype=torch.uint8)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    frozen_modules = {n.rsplit(".", 1)[0] for n in frozen}
    # frozen weights and their BatchNorm statistics stay; everything after them trains
    assert not any(k.rsplit(".", 1)[0] in frozen_modules for k in changed)
    assert first_free in changed and "head.weight" in changed


@pytest.mark.parametrize("finetune, stride", [("full", 8), ("linear", 0)])
def test_batchnorm_without_affine_parameters_freezes_with_its_block(finetune: str,
                                                                    stride: int) -> None:
    torch.manual_seed(0)
    model = build_classifier("resnet18", 3, weights="none", dropout=0.0)
    block = model.encoder.backbone.layer1[0]
    block.bn1 = torch.nn.BatchNorm2d(64, affine=False)  # no parameters of its own to freeze
    cfg = load_config(None, finetune=finetune, frozen_stride=stride, lr=0.1)
    apply_freezing(model, cfg, epoch=0, frozen=stride_prefix(model, stride, size=64))
    set_train_mode(model)
    mean = block.bn1.running_mean.clone()
    model(torch.randint(0, 255, (4, 2, 3, 64, 64), dtype=torch.uint8))
    assert not block.bn1.training and torch.equal(mean, block.bn1.running_mean)
    assert model.encoder.backbone.layer4[0].bn1.training == (finetune == "full")


@pytest.mark.parametrize("value", [-4, 1, 3, 6, 64, True, "8", 8.0])
def test_frozen_stride_must_be_a_stride(value: object) -> None:
    with pytest.raises(ConfigError, match="frozen_stride"):
        load_config(None, frozen_stride=value)


def test_frozen_stride_needs_pretrained_weights() -> None:
    assert load_config(None, modality="video").frozen_stride_for_training == 8
    assert load_config(None, modality="video", weights="none").frozen_stride_for_training == 0
    with pytest.raises(ConfigError, match="random"):
        load_config(None, modality="video", weights="none", frozen_stride=8)


def test_scheduler_steps_per_epoch(model: torch.nn.Module) -> None:
    cfg = load_config(None, epochs=2, warmup_epochs=1.0, lr=1.0)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=5)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 5


def test_config_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "run.yaml"
    src.write_text("backbone: resnet18\nframes: 4\nlr: 0.01\nfinetune: gradual\n")
    cfg = load_config(src, epochs=7)
    assert (cfg.backbone, cfg.frames, cfg.lr, cfg.finetune, cfg.epochs) == ("resnet18", 4, 0.01,
                                                                           "gradual", 7)
    saved = tmp_path / "config.yaml"
    saved.write_text(dump_yaml(cfg.to_dict()))
    assert load_config(saved) == cfg


@pytest.mark.parametrize("text, needle", [("frames: 0\n", "frames"), ("modality: audio\n", "modality"),
                                          ("lr: -1\n", "lr"), ("[1, 2]\n", "mapping"),
                                          ("a: [\n", "invalid YAML")])
def test_config_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(path)
