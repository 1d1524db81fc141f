#!/usr/bin/env bash
# GPU checks on one card: training-step ratios, saliency and insertion/deletion throughput (against the bare
# forward too), the per-channel CAMs and FullGrad against the package, the profile of the fast gradient CAMs,
# --compile, the paper-table estimate, and the whole pipeline (CUDA, bf16 autocast, DDP over NCCL through torchrun)
# on the built-in dataset, and every method's maps/s. Results and logs go to $OUT (default bench/results/gpu); each
# step has its own time limit so one failure does not hide the others. Written into bench/results/gpu, the results
# refresh the README's tables; copied there from elsewhere, `python -m bench.readme` does.
#     bash bench/gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
RUN=${RUN:-/tmp/ca_stream_gpu}
PY=${PYTHON:-python3}
export CASTREAM_DATA=${CASTREAM_DATA:-$RUN/data} PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUN"
step() { local limit=$1; shift; echo "### $*"; timeout "$limit" "$@" || echo "### FAILED ($?): $*"; }
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, torch.cuda.get_device_name())"
step 120 $PY -m bench.bench_training --device cuda --batch 128 --repeats 10 --out "$OUT/training_gpu.json"
step 120 $PY -m bench.bench_saliency --device cuda --batch 64 --repeats 5 --scorecam --out "$OUT/saliency_gpu.json"
step 240 $PY -m bench.bench_saliency --device cuda --batch 64 --repeats 2 --all-methods \
    --out "$OUT/saliency_gpu_all.json"
step 120 $PY -m bench.bench_metrics --device cuda --images 64 --batch 2048 --amp bf16 --repeats 3 \
    --out "$OUT/metrics_gpu.json"
step 60 $PY -m bench.bench_metrics --device cuda --images 16 --batch 2048 --amp bf16 --repeats 2 --protocol rise \
    --out "$OUT/metrics_gpu_rise.json"
step 150 $PY -m bench.bench_perchannel --device cuda --images 8 --fullgrad-images 16 --chunk 1024 --repeats 2 \
    --out "$OUT/perchannel_gpu.json"
step 120 $PY -m bench.profile_gradient --device cuda --batch 64 --out "$OUT/profile_gradient_cuda"
step 300 $PY -m bench.bench_compile --device cuda --batch 128 --amp bf16 --out "$OUT/compile_gpu.json"
step 200 $PY -m bench.paper_table --device cuda --batch 64 --chunk 1024 --scorecam-images 8 \
    --out "$OUT/paper_table_gpu.json"
common=(--imsize 96 --epochs 3 --workers 4 --use_gpu --amp bf16 --channels_last --overwrite)
step 120 torchrun --nproc_per_node 1 main_INets.py "${common[@]}" --store_dir "$RUN/gap"
step 120 torchrun --nproc_per_node 1 main_INets.py "${common[@]}" --pool ca --freeze --init_from "$RUN/gap" \
    --lr 3e-3 --store_dir "$RUN/ca"
step 60 $PY recognition_imagenet.py --state_root "$RUN/ca" --store_dir "$RUN/eval_ca" --salient --use_gpu \
    --method gradcam gradcam++ scorecam ablationcam fullgrad attention --workers 4 --batch_size 256
step 60 $PY objrecon_imagenet.py --state_root "$RUN/ca" --store_dir "$RUN/eval_ca" --use_gpu --amp bf16 --label CA
cp "$RUN/ca/log.csv" "$OUT/train_ca_log.csv" 2>/dev/null
cp "$RUN/eval_ca/summary.json" "$OUT/objrecon_summary.json" 2>/dev/null
} 2>&1 | tee "$OUT/gpu_checks.log"
