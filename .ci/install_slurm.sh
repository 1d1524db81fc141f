#!/usr/bin/env bash
# Install a minimal SLURM (controller + node daemon + client) and MUNGE for the single-node
# test cluster started by tests/slurm_cluster.py. Debian/Ubuntu, run as root. Idempotent.
# Service start-up is blocked during installation: the tests run their own daemons with a
# throwaway config, and containers have no init system to start services anyway.
set -euo pipefail
source "$(dirname "$0")/apt.sh"

if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
   && command -v sbatch >/dev/null && command -v munged >/dev/null; then
    echo "install_slurm: already installed (slurmd $(dpkg-query -W -f='${Version}' slurmd 2>/dev/null || echo '?'))"
    exit 0
fi
require_root install_slurm

policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT

apt_install install_slurm slurmctld slurmd slurm-client munge
echo "install_slurm: installed (slurmd $(dpkg-query -W -f='${Version}' slurmd))"
