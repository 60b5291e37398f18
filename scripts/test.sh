#!/usr/bin/env bash
# Set everything up and run the checks: ruff (lint + format), mypy strict, pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k router.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# the dashboard's browser tests drive Debian's chromium (never skipped): install it if missing
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
    else
        echo "error: /usr/bin/chromium is missing: apt-get install chromium (as root)" >&2
        exit 1
    fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
