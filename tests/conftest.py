"""Makes tests/helpers.py importable from every test group (math, cli, data, contract), and makes
hypothesis deterministic under CI (CI=true): the same drawn examples on every run of .ci/run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
