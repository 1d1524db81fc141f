#!/usr/bin/env bash
# Install Debian's Chromium and its WebDriver for the browser tests of the HTML reports
# (tests/evaluation/test_report_html.py). Debian/Ubuntu, run as root. Idempotent.
set -euo pipefail

if command -v chromium >/dev/null && [ -x /usr/bin/chromedriver ]; then
    echo "install_browser: already installed ($(dpkg-query -W -f='${Version}' chromium 2>/dev/null || echo '?'))"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install_browser: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core
echo "install_browser: installed (chromium $(dpkg-query -W -f='${Version}' chromium))"
