#!/usr/bin/env bash
# The dashboard's browser tests drive Debian's chromium (never skipped): install it if missing.
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
    else
        echo "error: /usr/bin/chromium is missing: apt-get install chromium (as root)" >&2
        exit 1
    fi
fi
