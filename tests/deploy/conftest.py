from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.conftest import make_checkpoint


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pretrained default encoder with a new 3-class head, 4 frames per clip."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "run", ["alpha", "beta", "gamma"])


@pytest.fixture(scope="session")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xmodal.deploy.onnx_export import export_onnx

    return export_onnx(checkpoint, tmp_path_factory.mktemp("export") / "onnx").out


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Videos larger and smaller than the model's 256 px resize, and photos; all real files."""
    from tests.utils import write_image, write_video

    root = tmp_path_factory.mktemp("deploy-media") / "in"
    write_video(root / "clips" / "wide.mp4", 30, size=(480, 272), fps=10)
    write_video(root / "clips" / "small.mp4", 20, size=(160, 120), fps=10)
    write_image(root / "photos" / "tall.jpg", size=(200, 300))
    write_image(root / "photos" / "big.png", size=(640, 400))
    return root
