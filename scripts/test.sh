#!/usr/bin/env bash
# Set everything up from the lock and run the checks: the lock matches pyproject.toml,
# ruff (lint + format), mypy strict, pytest on two processes (the tests mostly wait on
# the servers and processes they start). Extra arguments go to pytest, e.g.
# scripts/test.sh -k router, or -n 0 for one process.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/system.sh
scripts/uv.sh lock --check --quiet --python "${PYTHON:-python3}"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest -n "${TEST_PROCESSES:-2}" "$@"
