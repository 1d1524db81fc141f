#!/usr/bin/env bash
# GPU checks on one card, in three groups (default: all, in this order):
#   targets     the performance targets: the per-channel CAMs and FullGrad against the package, the profile of the
#               fast gradient CAMs, the paper-table estimate, insertion/deletion against the bare forward, --compile
#   throughput  training-step ratios, saliency maps/s (the fast path and every method), the RISE-style metrics
#   pipeline    the scripts end to end on the built-in dataset: CUDA, bf16 autocast, DDP over NCCL (torchrun)
# Results and logs go to $OUT (default bench/results/gpu); each step has its own time limit so one failure does not
# hide the others, and BUDGET (seconds, default none) caps the whole run: a step gets at most what is left, and the
# steps after the budget is spent are skipped, so a card lent for minutes still returns the first groups' files
# (`targets` writes 7). Written into bench/results/gpu, the results refresh the tables of docs/performance.md; copied there from
# elsewhere, `python -m bench.readme` does.
#     bash bench/gpu_checks.sh
#     BUDGET=480 bash bench/gpu_checks.sh targets
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
RUN=${RUN:-/tmp/ca_stream_gpu}
PY=${PYTHON:-python3}
GROUPS_TO_RUN=("$@")
[ ${#GROUPS_TO_RUN[@]} -eq 0 ] && GROUPS_TO_RUN=(targets throughput pipeline)
for group in "${GROUPS_TO_RUN[@]}"; do
    case $group in
        targets|throughput|pipeline) ;;
        *) echo "unknown group $group: expected targets, throughput or pipeline" >&2; exit 2;;
    esac
done
export CASTREAM_DATA=${CASTREAM_DATA:-$RUN/data} PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUN"
deadline=$(( ${BUDGET:+$SECONDS + BUDGET} ))
step() {
    local limit=$1; shift
    if [ -n "${BUDGET:-}" ]; then
        local left=$((deadline - SECONDS))
        if [ "$left" -lt 10 ]; then echo "### SKIPPED (budget spent): $*"; return; fi
        [ "$left" -lt "$limit" ] && limit=$left
    fi
    echo "### $*"
    local start=$SECONDS
    timeout "$limit" "$@" || echo "### FAILED ($?): $*"
    echo "### $((SECONDS - start)) s (limit $limit s)"
}
targets() {
    step 150 $PY -m bench.bench_perchannel --device cuda --images 8 --fullgrad-images 64 --package-images 8 \
        --chunk 1024 --repeats 2 --out "$OUT/perchannel_gpu.json"
    step 120 $PY -m bench.profile_gradient --device cuda --batch 64 --out "$OUT/profile_gradient_cuda"
    step 200 $PY -m bench.paper_table --device cuda --batch 64 --chunk 1024 --scorecam-images 8 \
        --out "$OUT/paper_table_gpu.json"
    step 120 $PY -m bench.bench_metrics --device cuda --images 64 --batch 2048 --amp bf16 --repeats 3 \
        --out "$OUT/metrics_gpu.json"
    step 300 $PY -m bench.bench_compile --device cuda --batch 128 --amp bf16 --out "$OUT/compile_gpu.json"
}
throughput() {
    step 120 $PY -m bench.bench_training --device cuda --batch 128 --repeats 10 --out "$OUT/training_gpu.json"
    step 120 $PY -m bench.bench_saliency --device cuda --batch 64 --repeats 5 --scorecam --out "$OUT/saliency_gpu.json"
    step 240 $PY -m bench.bench_saliency --device cuda --batch 64 --repeats 2 --all-methods \
        --out "$OUT/saliency_gpu_all.json"
    step 60 $PY -m bench.bench_metrics --device cuda --images 16 --batch 2048 --amp bf16 --repeats 2 --protocol rise \
        --out "$OUT/metrics_gpu_rise.json"
}
pipeline() {
    local common=(--imsize 96 --epochs 3 --workers 4 --use_gpu --amp bf16 --channels_last --overwrite)
    step 120 torchrun --nproc_per_node 1 main_INets.py "${common[@]}" --store_dir "$RUN/gap"
    step 120 torchrun --nproc_per_node 1 main_INets.py "${common[@]}" --pool ca --freeze --init_from "$RUN/gap" \
        --lr 3e-3 --store_dir "$RUN/ca"
    step 60 $PY recognition_imagenet.py --state_root "$RUN/ca" --store_dir "$RUN/eval_ca" --salient --use_gpu \
        --method gradcam gradcam++ scorecam ablationcam fullgrad attention --workers 4 --batch_size 256
    step 60 $PY objrecon_imagenet.py --state_root "$RUN/ca" --store_dir "$RUN/eval_ca" --use_gpu --amp bf16 --label CA
    cp "$RUN/ca/log.csv" "$OUT/train_ca_log.csv" 2>/dev/null
    cp "$RUN/eval_ca/summary.json" "$OUT/objrecon_summary.json" 2>/dev/null
}
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, torch.cuda.get_device_name())"
for group in "${GROUPS_TO_RUN[@]}"; do echo "## $group"; "$group"; done
} 2>&1 | tee "$OUT/gpu_checks.log"
