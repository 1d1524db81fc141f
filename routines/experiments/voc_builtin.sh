#!/usr/bin/env bash
# GAP vs CA-Stream on the built-in multi-label set (the built-in shapes, one to three per image, in the VOCdevkit
# layout: --dataset voc), three seeds, CPU: mAP, the metrics over image-class pairs, the pointing game on the class's
# boxes (15 px). 600 training images, half of the 200 validation images scored, Score-CAM on 5% of them (10 images):
# 116.8 min on one core (6 December 2026, a 2-core AMD EPYC shared with three other runs).
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m routines.experiments.compare --dataset voc_builtin --eval_fraction 0.5 --slow_fraction 0.05 \
    --publish assets/results/voc_builtin "$@"
