#!/usr/bin/env bash
# Set everything up and run the checks: ruff (lint + format), mypy strict, pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k router.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
