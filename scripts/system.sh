#!/usr/bin/env bash
# The system programs the tests drive, never skipped: Debian's chromium (the dashboard's
# browser tests), Graphviz's dot (the dashboard's pipeline graph) and node (a resc worker
# in another language). Installs what is missing (as root; otherwise says what to do).
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v dot >/dev/null || missing+=(graphviz)
command -v node >/dev/null || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    else
        echo "error: missing ${missing[*]}: apt-get install ${missing[*]} (as root)" >&2
        exit 1
    fi
fi
