from __future__ import annotations

import sys
from pathlib import Path

# Tests import their helpers as `tests.utils`; make the repo root importable
# whether pytest is run from the root or from elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
