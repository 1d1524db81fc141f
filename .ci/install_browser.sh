#!/usr/bin/env bash
# Install Debian's Chromium and its WebDriver for the browser tests of the HTML reports
# (tests/reports/test_pages.py). Debian/Ubuntu, run as root. Idempotent.
set -euo pipefail
source "$(dirname "$0")/apt.sh"

if command -v chromium >/dev/null && [ -x /usr/bin/chromedriver ]; then
    echo "install_browser: already installed ($(dpkg-query -W -f='${Version}' chromium 2>/dev/null || echo '?'))"
    exit 0
fi
apt_install install_browser chromium chromium-driver fonts-dejavu-core
echo "install_browser: installed (chromium $(dpkg-query -W -f='${Version}' chromium))"
