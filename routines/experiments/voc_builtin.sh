#!/usr/bin/env bash
# GAP vs CA-Stream on the built-in multi-label set (the built-in shapes, one to three per image, in the VOCdevkit
# layout: --dataset voc), two seeds, CPU: mAP, the metrics over image-class pairs, the pointing game on the class's
# boxes (15 px). Shorter than builtin.sh: 600 training images, a quarter of the 200 validation images scored,
# Score-CAM on 3% of them (6 images).
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m routines.experiments.compare --dataset voc_builtin --eval_fraction 0.5 --slow_fraction 0.05 \
    --publish assets/results/voc_builtin "$@"
