from __future__ import annotations

import sys
from pathlib import Path

# Tests import their helpers as `tests.utils`; make the repo root importable
# whether pytest is run from the root or from elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pytest_configure(config) -> None:  # noqa: ANN001 - pytest's hook signature
    """ONNX exports of test checkpoints go to a temporary cache, never to ~/.cache (subprocesses
    inherit it, so an export made once is shared by the whole session)."""
    import os
    import tempfile

    if "XMODAL_CACHE" not in os.environ:
        os.environ["XMODAL_CACHE"] = tempfile.mkdtemp(prefix="xmodal-test-cache-")
    # Tests import decord directly (pytest.importorskip): PyTorch must be loaded before it, or a
    # later test's PyTorch work segfaults (see xmodal.data.video.decord_backend.import_decord).
    import torch  # noqa: F401
