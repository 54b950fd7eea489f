"""Signed models: `xmodal sign`, and --verify-key refusing unsigned, re-keyed or changed models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import xmodal
from tests.test_cli import run_cli
from tests.utils import write_image
from xmodal.errors import SignatureError


def _key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("keys")
    return {"ours": _key_pair(folder, "ours"), "theirs": _key_pair(folder, "theirs")}


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image(tmp_path_factory.mktemp("photo") / "p.jpg", size=(90, 70))


def _signed_copy(source: Path, tmp_path: Path, private: Path, capsys) -> Path:  # noqa: ANN001
    copy = tmp_path / source.name
    shutil.copytree(source, copy)
    code, out, _ = run_cli(capsys, "sign", str(copy), "--key", str(private))
    assert code == 0 and out.startswith("signed ") and (copy / "model.sig").is_file()
    return copy


def _refused(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert all(n in lines[0] for n in needles), lines[0]


@pytest.mark.parametrize("kind", ["export", "run"])
def test_a_signed_model_verifies_everywhere(kind: str, exported: Path, checkpoint: Path, photo: Path,
                                            keys, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    private, public = keys["ours"]
    model = _signed_copy(exported if kind == "export" else checkpoint, tmp_path, private, capsys)
    code, out, _ = run_cli(capsys, "predict", str(model), str(photo), "--verify-key", str(public),
                           "--format", "json")
    assert code == 0 and json.loads(out)["label"] in ("alpha", "beta", "gamma")
    code, _, err = run_cli(capsys, "label", str(photo.parent), "--model", str(model), "--out",
                           str(tmp_path / "l.jsonl"), "--verify-key", str(public), "--quiet")
    assert code == 0, err
    data = tmp_path / "data"
    write_image(data / "alpha" / "a.jpg", size=(80, 60))
    code, out, _ = run_cli(capsys, "eval", str(model), "--data", str(data), "--verify-key",
                           str(public), "--quiet")
    assert code == 0 and "files: 1" in out
    assert xmodal.load(model, verify_key=public).predict(str(photo))[0]["label"]
    # files xmodal does not load may appear later (an eval report) without breaking the signature
    (model / "eval").mkdir()
    (model / "eval" / "report.json").write_text("{}")
    xmodal.load(model, verify_key=public)


def test_unsigned_models_are_refused(exported: Path, photo: Path, keys, capsys) -> None:  # noqa: ANN001
    _, public = keys["ours"]
    code, _, err = run_cli(capsys, "predict", str(exported), str(photo), "--verify-key", str(public))
    _refused(code, err, str(exported), "no signature (model.sig)")


def test_another_key_is_refused(exported: Path, photo: Path, keys, tmp_path: Path,
                                capsys) -> None:  # noqa: ANN001
    model = _signed_copy(exported, tmp_path, keys["ours"][0], capsys)
    code, _, err = run_cli(capsys, "predict", str(model), str(photo), "--verify-key",
                           str(keys["theirs"][1]))
    _refused(code, err, "signature does not verify with", "theirs.pub.pem")


@pytest.mark.parametrize("change", ["weights", "classes", "config"])
def test_a_changed_file_is_refused(change: str, exported: Path, checkpoint: Path, keys,
                                   tmp_path: Path, capsys) -> None:  # noqa: ANN001
    private, public = keys["ours"]
    model = _signed_copy(checkpoint if change == "config" else exported, tmp_path, private, capsys)
    meta_path = model / "model.json"
    if change == "weights":
        # Even with the sha256 in model.json rewritten to match, as an attacker would.
        onnx_path = model / "model.onnx"
        data = bytearray(onnx_path.read_bytes())
        data[-100] ^= 0x01
        onnx_path.write_bytes(bytes(data))
        from xmodal.checkpoint import sha256_file

        meta = json.loads(meta_path.read_text())
        meta["sha256"] = sha256_file(onnx_path)
        meta_path.write_text(json.dumps(meta))
    else:
        meta = json.loads(meta_path.read_text())
        if change == "classes":
            meta["classes"] = ["alpha", "gamma", "beta"]
        else:
            meta["pooling"] = "max"
        meta_path.write_text(json.dumps(meta))
    with pytest.raises(SignatureError) as info:
        xmodal.load(model, verify_key=public)
    assert "changed since signing" in str(info.value) and "model.json" in str(info.value)


def test_sign_with_a_bad_key_is_one_line(exported: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    code, _, err = run_cli(capsys, "sign", str(exported), "--key", str(bad))
    _refused(code, err, str(bad), "not an elliptic-curve private key")
    assert not (exported / "model.sig").exists()


def test_a_signed_run_cannot_be_forced_onto_its_unsigned_export(checkpoint: Path, photo: Path, keys,
                                                                tmp_path: Path, capsys) -> None:  # noqa: ANN001
    private, public = keys["ours"]
    model = _signed_copy(checkpoint, tmp_path, private, capsys)
    code, _, err = run_cli(capsys, "predict", str(model), str(photo), "--verify-key", str(public),
                           "--engine", "onnx")
    _refused(code, err, "a signed run folder runs on PyTorch", "sign the export")
