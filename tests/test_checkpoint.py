from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import xmodal
from xmodal.checkpoint import (
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
    sha256_file,
    update_metadata,
)
from xmodal.errors import CheckpointError
from xmodal.models import build_classifier, classifier_from_meta

CLASSES = ["alpha", "beta", "gamma"]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_classifier("mobilenet_v3_small", len(CLASSES), weights="none", pooling="max").eval()


def _meta(model: torch.nn.Module) -> dict:
    pcfg = model.encoder.pretrained_cfg
    return {"classes": CLASSES, "backbone": "mobilenet_v3_small", "frames": 4, "pooling": "max",
            "dropout": 0.0, "epoch": 3, "metrics": {"val_acc": 0.5},
            "preprocessing": {"input_size": pcfg.input_size, "resize_size": pcfg.resize_size,
                              "mean": list(pcfg.mean), "std": list(pcfg.std)}}


@pytest.fixture
def saved(tmp_path: Path, model: torch.nn.Module) -> Path:
    return save_checkpoint(model, _meta(model), tmp_path / "run")


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_round_trip_metadata_and_tensors(saved: Path, model: torch.nn.Module) -> None:
    assert sorted(p.name for p in saved.iterdir()) == ["model.json", "model.safetensors"]
    weights, meta = load_checkpoint(saved)
    expected = model.state_dict()
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    assert {k: meta[k] for k in _meta(model)} == _meta(model)
    assert meta["xmodal_version"] == xmodal.__version__
    assert meta["sha256"] == sha256_file(saved / "model.safetensors")


def test_the_weights_are_as_readable_as_the_metadata(tmp_path: Path, model: torch.nn.Module) -> None:
    old = os.umask(0o022)
    try:
        run = save_checkpoint(model, _meta(model), tmp_path / "run")
    finally:
        os.umask(old)
    modes = {name: (run / name).stat().st_mode & 0o777 for name in ("model.safetensors", "model.json")}
    assert modes == {"model.safetensors": 0o644, "model.json": 0o644}


@pytest.mark.parametrize("name", [".", "model.safetensors", "model.json"])
def test_load_by_directory_weights_or_json(saved: Path, name: str) -> None:
    weights, meta = load_checkpoint(saved / name)
    assert meta["classes"] == CLASSES and weights


def test_rebuilt_model_predicts_the_same(saved: Path, model: torch.nn.Module) -> None:
    weights, meta = load_checkpoint(saved)
    rebuilt = classifier_from_meta(meta)
    rebuilt.load_state_dict(weights)
    clips = torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(clips), model(clips))


def test_missing_metadata_is_filled_from_the_model(tmp_path: Path, model: torch.nn.Module) -> None:
    _, meta = load_checkpoint(save_checkpoint(model, {"classes": CLASSES}, tmp_path))
    assert meta["backbone"] == "mobilenet_v3_small" and meta["pooling"] == "max"
    assert meta["preprocessing"]["input_size"] == 224 and len(meta["preprocessing"]["mean"]) == 3
    with pytest.raises(ValueError, match="classes"):
        save_checkpoint(model, {"backbone": "x"}, tmp_path / "other")


def test_flipped_byte_is_detected(saved: Path) -> None:
    path = saved / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(saved)
    assert _one_line(exc) == (f"{path}: weights do not match the sha256 recorded in model.json; "
                              "the file was modified or truncated")


def test_truncated_weights_are_detected(saved: Path) -> None:
    path = saved / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="modified or truncated"):
        load_checkpoint(saved / "model.json")


def test_bytes_that_match_the_hash_but_are_not_safetensors(saved: Path) -> None:
    path = saved / "model.safetensors"
    path.write_bytes(b"garbage")
    meta = json.loads((saved / "model.json").read_text())
    meta["sha256"] = sha256_file(path)
    (saved / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(saved)
    assert "not a valid safetensors file" in _one_line(exc)


@pytest.mark.parametrize("remove", ["model.json", "model.safetensors"])
def test_missing_files(saved: Path, remove: str) -> None:
    (saved / remove).unlink()
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(saved)
    assert _one_line(exc).startswith(str(saved / remove))


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "model.pth").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "model.pth")
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path)  # an empty directory


def test_run_dir_with_only_last_points_there(tmp_path: Path, model: torch.nn.Module) -> None:
    save_checkpoint(model, _meta(model), tmp_path / "last")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(tmp_path)
    assert str(tmp_path / "last") in _one_line(exc)


@pytest.mark.parametrize("text, reason", [
    ("{not json", "unreadable checkpoint metadata"),
    ("[1, 2]", "not a JSON object"),
    ('{"backbone": "resnet18", "sha256": "00"}', "no list of class names"),
    ('{"classes": ["a"], "sha256": "00"}', "does not name its backbone"),
    ('{"classes": ["a"], "backbone": "resnet18"}', "no sha256 recorded"),
])
def test_malformed_metadata(saved: Path, text: str, reason: str) -> None:
    (saved / "model.json").write_text(text)
    with pytest.raises(CheckpointError) as exc:
        read_metadata(saved)
    assert reason in _one_line(exc)


def test_save_is_atomic_and_leaves_no_temp_files(saved: Path, model: torch.nn.Module,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    save_checkpoint(model, _meta(model), saved)  # overwrite in place
    assert sorted(p.name for p in saved.iterdir()) == ["model.json", "model.safetensors"]

    import safetensors.torch

    def crash(tensors: dict, filename: str, metadata: dict | None = None) -> None:
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, {**_meta(model), "epoch": 9}, saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    _, meta = load_checkpoint(saved)
    assert meta["epoch"] == 3


def test_atomic_write_helpers(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "report.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path / "deep")) == ["report.json"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_same_weights_save_to_identical_bytes(tmp_path: Path, model: torch.nn.Module) -> None:
    # Reproducible runs should produce checkpoints with identical sha256s.
    saves = [(save_checkpoint(model, _meta(model), tmp_path / str(i)) / "model.safetensors").read_bytes()
             for i in range(4)]
    assert all(s == saves[0] for s in saves)


def test_update_metadata_sets_keys_and_keeps_the_weights_and_their_hash(saved: Path) -> None:
    weights_before, meta_before = load_checkpoint(saved)
    update_metadata(saved, adapted={"method": "self-training", "round": 1}, epoch=7)
    weights, meta = load_checkpoint(saved)  # the recorded sha256 still matches the weights
    assert meta["adapted"] == {"method": "self-training", "round": 1} and meta["epoch"] == 7
    assert {k: v for k, v in meta.items() if k not in ("adapted", "epoch")} == \
        {k: v for k, v in meta_before.items() if k != "epoch"}
    assert all(torch.equal(weights[k], weights_before[k]) for k in weights_before)

