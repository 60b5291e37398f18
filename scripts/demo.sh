#!/usr/bin/env bash
# Set everything up and run the demo (embedded Redis unless --redis-url is given).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/resc-dramatiq demo "$@"
