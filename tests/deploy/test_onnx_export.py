"""ONNX export: the graph equals the PyTorch model, is checked, carries its metadata, and is
refused when tampered with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.deploy.onnx_model import OnnxModel, load_onnx_model
from xmodal.engine.predict import Predictor, load_model
from xmodal.errors import CheckpointError


def _views(batch: int, frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, frames, 224, 224, 3), dtype=np.uint8)


@pytest.mark.parametrize(("batch", "frames"), [(1, 1), (3, 1), (1, 8), (3, 8)])
def test_logits_equal_pytorch(checkpoint: Path, exported: Path, batch: int, frames: int) -> None:
    torch_model = load_model(checkpoint).model
    onnx_model = load_onnx_model(exported)
    views = _views(batch, frames, seed=batch * 10 + frames)
    with torch.inference_mode():
        expected = torch_model(torch.from_numpy(views).permute(0, 1, 4, 2, 3))
    got = onnx_model.logits(views)
    assert got.shape == (batch, 3)
    assert np.abs(got - expected.numpy()).max() < 1e-4
    probs = onnx_model.probabilities(views)
    assert np.abs(probs - expected.softmax(-1).numpy()).max() < 1e-5
    assert np.allclose(probs.sum(1), 1.0, atol=1e-6)


def _export_built(tmp_path: Path, backbone: str, weights: str, pooling: str):
    from xmodal.checkpoint import save_checkpoint
    from xmodal.deploy.onnx_export import export_onnx
    from xmodal.models import build_classifier

    torch.manual_seed(0)
    model = build_classifier(backbone, 2, weights=weights, pooling=pooling).eval()
    torch.nn.init.normal_(model.head.weight, std=1.0)  # logits far enough apart to compare
    pcfg = model.encoder.pretrained_cfg
    save_checkpoint(model, {"classes": ["x", "y"], "frames": 3, "pooling": pooling,
                            "preprocessing": pcfg.preprocessing()}, tmp_path / "run")
    return model, load_onnx_model(export_onnx(tmp_path / "run", tmp_path / "onnx").out)


def test_max_pooling_is_exported(tmp_path: Path) -> None:
    model, exported = _export_built(tmp_path, "efficientnet_lite0", "imagenet", "max")
    views = torch.from_numpy(_views(2, 3, seed=7))
    with torch.inference_mode():
        per_frame = model.frame_logits(views.permute(0, 1, 4, 2, 3)).numpy()
    got = exported.logits(views.numpy())
    assert np.abs(got - per_frame.max(1)).max() < 1e-4
    assert np.abs(got - per_frame.mean(1)).max() > 1e-2  # not the mean


def test_a_torchvision_encoder_is_exported(tmp_path: Path) -> None:
    model, exported = _export_built(tmp_path, "mobilenet_v3_small", "none", "mean")
    views = _views(2, 3, seed=8)
    with torch.inference_mode():
        expected = model(torch.from_numpy(views).permute(0, 1, 4, 2, 3)).numpy()
    assert np.abs(exported.logits(views) - expected).max() < 1e-4


def test_graph_passes_the_checker_and_carries_the_metadata(exported: Path) -> None:
    import onnx

    proto = onnx.load(str(exported / "model.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 18
    [frames] = proto.graph.input
    assert frames.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = frames.type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims][2:] == [224, 224, 3]
    assert all(d.dim_param for d in dims[:2])  # batch and time are dynamic
    assert [o.name for o in proto.graph.output] == ["probabilities", "logits", "embedding"]
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"]) == ["alpha", "beta", "gamma"]
    stamped = json.loads(props["xmodal"])
    meta = json.loads((exported / "model.json").read_text())
    assert meta["format"] == "onnx" and meta["frames"] == 4 and meta["pooling"] == "mean"
    assert stamped["preprocessing"] == meta["preprocessing"]
    from xmodal.checkpoint import sha256_file

    assert meta["sha256"] == sha256_file(exported / "model.onnx")


def test_a_tampered_model_onnx_is_refused(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(exported, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        load_onnx_model(copy)
    assert str(info.value) == (f"{copy / 'model.onnx'}: does not match the sha256 recorded in "
                               "model.json; the file was modified or truncated")


def test_export_predicts_what_pytorch_predicts_on_files(checkpoint: Path, exported: Path,
                                                       media: Path) -> None:
    files = sorted(str(p) for p in media.rglob("*.*"))
    ours = Predictor(load_onnx_model(exported), workers=0).predict(files)
    reference = Predictor(load_model(checkpoint), workers=0).predict(files)
    for a, b in zip(ours, reference, strict=True):
        assert a["path"] == b["path"] and a["kind"] == b["kind"] and a["frames"] == b["frames"]
        assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
        # Pillow's resize is within one grey level of torch's on a few pixels (test_resize.py)
        assert max(abs(x["score"] - y["score"]) for x, y in zip(a["top"], b["top"], strict=True)) < 2e-3


def test_load_model_returns_an_onnx_model_for_an_export_dir(exported: Path) -> None:
    model = load_model(exported)
    assert isinstance(model, OnnxModel) and model.engine == "onnx"
    assert (model.frames, model.input_size, model.resize_size) == (4, 224, 256)
    assert model.classes == ["alpha", "beta", "gamma"]
