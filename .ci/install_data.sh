#!/usr/bin/env bash
# Install Debian's dataset-fashion-mnist (the real data set of tests/data/test_data.py and of
# routines/experiments/fashion_mnist*.sh) into /usr/share/datasets/fashion-mnist. Debian/Ubuntu, run as root.
# Idempotent.
set -euo pipefail

if dpkg-query -W -f='${Status}' dataset-fashion-mnist 2>/dev/null | grep -q "install ok installed"; then
    echo "install_data: already installed (dataset-fashion-mnist $(dpkg-query -W -f='${Version}' dataset-fashion-mnist))"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install_data: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends dataset-fashion-mnist
echo "install_data: installed (dataset-fashion-mnist $(dpkg-query -W -f='${Version}' dataset-fashion-mnist))"
