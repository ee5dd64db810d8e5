"""Set-up for running the notebooks under nbval: the test run's embedding cache, offline models.

The kernels nbval starts inherit this process's environment, so the notebooks share the
embedding cache of the test suite (`.cache/test`) instead of the user's own.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("WORKBENCH_CACHE_DIR", str(ROOT / ".cache" / "test"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
