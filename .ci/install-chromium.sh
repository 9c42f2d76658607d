#!/usr/bin/env bash
# Installs Debian's chromium when it is absent, for the browser test of `newsevents report`
# (tests/test_report.py renders the HTML report headless and checks the screenshot; without
# /usr/bin/chromium that test skips with the reason). Needs root or sudo, and Debian's archive.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: apt-get not found; the report's browser test will skip" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# fonts-liberation and fonts-dejavu-core: readable text in the screenshot on a bare image.
$SUDO apt-get install -y -qq chromium fonts-liberation fonts-dejavu-core >/dev/null
/usr/bin/chromium --version
