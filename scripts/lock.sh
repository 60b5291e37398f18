#!/usr/bin/env bash
# Refresh uv.lock on purpose: every dependency to its newest release that pyproject.toml
# allows (or one: scripts/lock.sh --upgrade-package redis). Then run scripts/test.sh on
# the new lock and commit uv.lock with whatever it needed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then set -- --upgrade; fi
exec scripts/uv.sh lock --python "${PYTHON:-python3}" "$@"
