#!/usr/bin/env bash
# The whole pipeline on the built-in dataset, on a CPU: train a GAP model (EfficientNet-Lite0 from its packaged
# ImageNet weights), train the CA stream on it with backbone and classifier frozen, generate saliency maps and
# score them. Outputs under $OUT (default runs/demo); with ASSETS=1 the overlay grid is copied to assets/. Ends by
# printing the path of the CA model's report.html (open it in a browser).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/demo}
IMSIZE=${IMSIZE:-128}
EPOCHS=${EPOCHS:-4}
STREAM_EPOCHS=${STREAM_EPOCHS:-}   # default: the recipe's

python main_INets.py --imsize "$IMSIZE" --epochs "$EPOCHS" --workers 0 --overwrite --store_dir "$OUT/gap"
# the stream's recipe of the comparisons (lr 1e-4, 12 epochs: chosen on held-out training images)
python main_INets.py --config configs/ca_stream_miniature.yaml --imsize "$IMSIZE" --workers 0 --overwrite \
    --init_from "$OUT/gap" ${STREAM_EPOCHS:+--epochs "$STREAM_EPOCHS"} --store_dir "$OUT/ca"
python recognition_imagenet.py --state_root "$OUT/gap" --store_dir "$OUT/eval_gap" --salient \
    --method gradcam gradcam++ --fraction 0.25 --workers 0
python recognition_imagenet.py --state_root "$OUT/ca" --store_dir "$OUT/eval_ca" --salient \
    --method gradcam gradcam++ attention --fraction 0.25 --workers 0
python objrecon_imagenet.py --state_root "$OUT/gap" --store_dir "$OUT/eval_gap" --label GAP
python objrecon_imagenet.py --state_root "$OUT/ca" --store_dir "$OUT/eval_ca" --label CA --compare "$OUT/eval_gap"
if [ "${ASSETS:-0}" = 1 ]; then
    cp "$OUT/eval_ca/overlays.png" assets/demo_overlays.png
fi
echo "demo outputs: $OUT (overlays.png, summary.json, curves_*.png, report.html in eval_gap/ and eval_ca/)"
echo "report: $OUT/eval_ca/report.html (GAP vs CA: $OUT/eval_ca/compare.html)"
