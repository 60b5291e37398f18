#!/usr/bin/env bash
# The long soak: SOAK_EVENTS events (default 200000) through the rule chain while router
# processes are killed with SIGKILL every 2-4 s and Redis is stopped once for 5 s, and
# the worker-crash redelivery measured with Dramatiq's defaults. Prints the figures.
# Extra arguments go to pytest (e.g. -k long_soak).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export SOAK_EVENTS="${SOAK_EVENTS:-200000}"
exec .venv/bin/pytest -m soak -s -q -p no:cacheprovider tests/test_chaos_soak.py tests/test_worker_crash.py "$@"
