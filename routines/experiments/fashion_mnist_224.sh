#!/usr/bin/env bash
# GAP vs CA-Stream on Fashion-MNIST at the paper's resolution, 224 px (7x7 maps, as the poster's ResNet-50), two
# seeds, CPU (Debian's dataset-fashion-mnist, installed when missing). Same images and schedule as fashion_mnist.sh;
# bf16 autocast for training and the metric forwards (speed knobs with tested budgets)
# keep it near an hour on 2 cores, and the fast Score-CAM path scores it on 20% of the validation set (60 images)
# instead of 10%.
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m routines.experiments.compare --dataset fashion_mnist --imsize 224 --block fashion_mnist_224 --seeds 0 1 \
    --train_amp bf16 --metrics_amp bf16 --slow_fraction 0.2 \
    --publish assets/results/fashion_mnist_224 "$@"
