"""User-facing error types.

Each kind of bad input has its own exception so callers can catch what they
can handle; every message names the file (or option) and the reason in one
line, which is what the CLI prints before exiting non-zero.
"""

from __future__ import annotations

from os import PathLike


class XmodalError(Exception):
    """Base class for errors caused by user input, not by a bug in xmodal."""

    exit_code = 2


def missing_reason(path: PathLike[str]) -> str:
    """Why a path that does not exist cannot be read: a link to nowhere (or to itself), or nothing."""
    from pathlib import Path

    return "broken symbolic link (no target, or a loop)" if Path(path).is_symlink() else "no such file"


def _located(path: str | PathLike[str] | None, reason: str) -> str:
    return f"{path}: {reason}" if path is not None else reason


class InputError(XmodalError):
    """A path the user gave does not exist or cannot be read."""

    def __init__(self, path: str | PathLike[str] | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(_located(path, reason))


class VideoDecodeError(InputError):
    """A video cannot be opened or yields no usable frames."""


class ImageDecodeError(InputError):
    """An image cannot be opened or decoded."""


class DatasetError(InputError):
    """A dataset folder or CSV cannot be used (empty, unknown labels, ...)."""


class ModelError(XmodalError):
    """An encoder name, weights file or pretrained weights cannot be used."""


class CheckpointError(InputError):
    """A checkpoint is missing, malformed, or fails its integrity check."""


class ConfigError(XmodalError):
    """A configuration file or option value is invalid."""


class SignatureError(CheckpointError):
    """A model's signature is missing, or does not verify with the given public key."""
