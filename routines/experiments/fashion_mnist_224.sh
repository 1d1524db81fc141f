#!/usr/bin/env bash
# GAP vs CA-Stream on Fashion-MNIST at the paper's resolution, 224 px (7x7 maps, as the poster's ResNet-50), CPU
# (Debian's dataset-fashion-mnist, installed when missing). Same images, recipe and protocol as fashion_mnist.sh;
# one seed, half the validation set (150 images): 130.7 min on one core of a 2-core AMD EPYC shared with other runs
# (6 December 2026; a second seed doubles it: add --seeds 0 1).
# Every pixel costs three times the 128 px run's, so bf16 autocast (with channels_last) runs training, the metric
# forwards and Score-CAM's masked forwards (each within a tested budget); Score-CAM scores a seeded 10% of the
# validation set (30 images): its 1280 forwards per image make it the longest step.
# A CPU without bfloat16 kernels (AVX2 only) emulates bf16, 11x slower than float32: there pass --train_amp none
# --metrics_amp none --slow_amp none (docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m routines.experiments.compare --dataset fashion_mnist --imsize 224 --block fashion_mnist_224 --seeds 0 \
    --train_amp bf16 --metrics_amp bf16 --eval_fraction 0.5 --slow_fraction 0.1 --slow_amp bf16 \
    --publish assets/results/fashion_mnist_224 "$@"
