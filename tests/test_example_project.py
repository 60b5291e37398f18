"""The example project's own tests (``example_project/test_pipeline.py``) run, on the
testing kit, in a pytest process of their own (the app reads its server's URL when it
is imported)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_example_projects_tests_pass_on_the_kit() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RESC_REDIS_URL"}
    argv = [sys.executable, "-m", "pytest", "example_project", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
