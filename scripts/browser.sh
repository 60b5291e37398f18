#!/usr/bin/env bash
# The dashboard's browser tests drive Debian's chromium (never skipped), and its pipeline
# graph is laid out by Graphviz's dot: install them if missing.
set -euo pipefail
if ! command -v dot >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends graphviz
    else
        echo "error: Graphviz's dot is missing: apt-get install graphviz (as root)" >&2
        exit 1
    fi
fi
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
    else
        echo "error: /usr/bin/chromium is missing: apt-get install chromium (as root)" >&2
        exit 1
    fi
fi
