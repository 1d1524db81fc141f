#!/usr/bin/env bash
# GAP vs CA-Stream on the built-in dataset (adds the pointing game from its masks), three seeds, CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m routines.experiments.compare --dataset builtin --slow_amp bf16 --publish assets/results/builtin "$@"
