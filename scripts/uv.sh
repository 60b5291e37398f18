#!/usr/bin/env bash
# Run the pinned uv (installed on first use into .uv/, a virtualenv of its own, so that it
# never changes the project's environment or the machine's Python).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
if ! .uv/bin/uv --version 2>/dev/null | grep -q "^uv $UV_VERSION\b"; then
    "${PYTHON:-python3}" -m venv --clear .uv
    .uv/bin/python -m pip install --quiet "uv==$UV_VERSION"
fi
exec .uv/bin/uv "$@"
