#!/usr/bin/env bash
# GAP vs CA-Stream on Fashion-MNIST (real photographs of clothing; Debian's dataset-fashion-mnist, installed
# when missing), three seeds, CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m routines.experiments.compare --dataset fashion_mnist --slow_amp bf16 --publish assets/results/fashion_mnist "$@"
