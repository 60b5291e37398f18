#!/usr/bin/env bash
# Create .venv from the lock (uv.lock): the project in editable mode with its test and dev
# tools and the embedded server (the demo's Redis when no --redis-url is given). The same
# lock gives the same versions next month; scripts/lock.sh refreshes it on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/uv.sh sync --quiet --frozen --python "${PYTHON:-python3}" --extra dev --extra embedded
