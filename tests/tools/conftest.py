from __future__ import annotations

import sys
from pathlib import Path

# The benchmark helpers are scripts' modules in tools/, imported as top-level modules there.
TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))
