"""Signed models: OpenSSF ``model-signing`` over a run's or an export's model files.

A sha256 in model.json proves integrity, not origin: whoever can write the folder can rewrite
both. ``sign_model`` signs the files xmodal loads (model.json and model.safetensors, or
model.json and model.onnx) with an elliptic-curve private key into ``model.sig`` beside them;
``verify_model`` refuses, with one line, a model whose signature is missing, made with another
key, or no longer matches a signed file. Other files in the folder (metrics, ``last/``, eval
reports) are not signed, so they can change without breaking the signature.
"""

from __future__ import annotations

import os
from pathlib import Path

from xmodal.errors import InputError, SignatureError

SIGNATURE_NAME = "model.sig"


def model_files(ref: str | os.PathLike[str]) -> tuple[Path, list[str]]:
    """(folder, names of the files to sign) for a run dir, export dir or one of their files."""
    from xmodal.checkpoint import checkpoint_paths
    from xmodal.deploy.onnx_model import export_paths

    path = Path(ref)
    if not path.exists():
        raise InputError(path, "no such model folder or file")
    exported = export_paths(path)
    files = exported if exported is not None else checkpoint_paths(path)
    folder = files[0].parent
    for f in files:
        if not f.is_file():
            raise InputError(f, "model file is missing")
    return folder, sorted(f.name for f in files)


def _hashing_config(folder: Path, signed: list[str]):  # noqa: ANN202 - model_signing's type
    import model_signing

    others = [p.name for p in folder.iterdir() if p.name not in signed]
    return model_signing.hashing.Config().set_ignored_paths(paths=others, ignore_git_paths=True)


def sign_model(ref: str | os.PathLike[str], private_key: str | os.PathLike[str]) -> tuple[Path, list[str]]:
    """Sign the model files of ``ref`` with ``private_key`` (PEM); returns (signature, files)."""
    folder, signed = model_files(ref)
    key = _existing(private_key, "private key")
    import model_signing

    try:
        config = model_signing.signing.Config().use_elliptic_key_signer(private_key=key)
    except Exception as exc:  # noqa: BLE001 - cryptography raises several types for a bad key
        raise InputError(key, f"not an elliptic-curve private key in PEM ({_first_line(exc)})") from None
    signature = folder / SIGNATURE_NAME
    config.set_hashing_config(_hashing_config(folder, signed)).sign(folder, signature)
    return signature, signed


def verify_model(ref: str | os.PathLike[str], public_key: str | os.PathLike[str]) -> None:
    """Raise SignatureError unless ``ref``'s model.sig verifies with ``public_key`` and every
    signed file is unchanged."""
    folder, signed = model_files(ref)
    key = _existing(public_key, "public key")
    signature = folder / SIGNATURE_NAME
    if not signature.is_file():
        raise SignatureError(folder, f"no signature ({SIGNATURE_NAME}); refusing an unsigned model "
                             f"(sign it with `xmodal sign {folder} --key PRIVATE.pem`)")
    import model_signing

    try:
        config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key)
    except Exception as exc:  # noqa: BLE001
        raise InputError(key, f"not an elliptic-curve public key in PEM ({_first_line(exc)})") from None
    try:
        config.set_ignore_unsigned_files(True).verify(folder, signature)
    except ValueError as exc:
        raise SignatureError(folder, _reason(str(exc), signed, key)) from None
    except Exception as exc:  # noqa: BLE001 - a damaged signature file fails in its parser
        raise SignatureError(folder, f"signature {SIGNATURE_NAME} is damaged or not a model "
                             f"signature ({_first_line(exc)})") from None


def _reason(message: str, signed: list[str], key: Path) -> str:
    """One line from model_signing's verification error."""
    if message.startswith("Signature mismatch"):
        changed = [name for name in signed if name in message]
        what = ", ".join(changed) if changed else "a signed file"
        return f"signature does not match the files: {what} changed since signing"
    return f"signature does not verify with {key} (signed with another key?)"


def _existing(path: str | os.PathLike[str], what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"no such {what} file")
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
