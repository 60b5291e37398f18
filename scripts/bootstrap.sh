#!/usr/bin/env bash
# Create .venv from the lock (uv.lock): the project in editable mode with its test and dev
# tools and the embedded server (the demo's Redis when no --redis-url is given). The same
# lock gives the same versions next month; `scripts/lock.sh` refreshes it on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
UV_VERSION=0.13.9
# uv itself is pinned too, in a virtualenv of its own (.uv/), so that it never changes the
# project's environment or the machine's Python
if ! .uv/bin/uv --version 2>/dev/null | grep -qx "uv $UV_VERSION.*"; then
    "$PYTHON" -m venv --clear .uv
    .uv/bin/python -m pip install --quiet "uv==$UV_VERSION"
fi
.uv/bin/uv sync --quiet --frozen --python "$PYTHON" --extra dev --extra embedded
