#!/usr/bin/env bash
# Install Debian's dataset-fashion-mnist (the real data set of tests/data/test_data.py and of
# routines/experiments/fashion_mnist*.sh) into /usr/share/datasets/fashion-mnist. Debian/Ubuntu, run as root.
# Idempotent.
set -euo pipefail
source "$(dirname "$0")/apt.sh"

if dpkg-query -W -f='${Status}' dataset-fashion-mnist 2>/dev/null | grep -q "install ok installed"; then
    echo "install_data: already installed (dataset-fashion-mnist $(dpkg-query -W -f='${Version}' dataset-fashion-mnist))"
    exit 0
fi
apt_install install_data dataset-fashion-mnist
echo "install_data: installed (dataset-fashion-mnist $(dpkg-query -W -f='${Version}' dataset-fashion-mnist))"
