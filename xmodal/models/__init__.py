"""Encoders (by name, with their pretrained configs) and the temporal-pooling classifier.

Importing this package does not import torchvision.models or timm; builders do, on use.
"""

from xmodal.models.classifier import (
    POOLINGS,
    FrameClassifier,
    build_classifier,
    classifier_from_meta,
    imagenet_classifier,
)
from xmodal.models.encoders import (
    DEFAULT_ENCODER,
    LITE_ENCODERS,
    TIMM_PREFIX,
    TORCHVISION_ENCODERS,
    Encoder,
    PretrainedConfig,
    create_encoder,
    imagenet_categories,
    list_encoders,
    read_state_dict,
)

__all__ = [
    "DEFAULT_ENCODER", "LITE_ENCODERS", "POOLINGS", "TIMM_PREFIX", "TORCHVISION_ENCODERS", "Encoder",
    "FrameClassifier", "PretrainedConfig", "build_classifier", "classifier_from_meta", "create_encoder",
    "imagenet_categories", "imagenet_classifier", "list_encoders",
    "read_state_dict",
]
