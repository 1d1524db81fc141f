# Sourced by the *.sbatch scripts (after `cd` to the repository root): pre-emption handling and
# the launcher. The scripts ask SLURM for `--signal=B:USR1@120 --requeue`: 120 s before the time
# limit (or when pre-empted with a grace period) the batch shell gets USR1 and requeues the job;
# the requeued run passes --resume, so main_INets.py continues from <store_dir>/last.pth (the evaluation
# scripts of routines/evaluation/ from their committed shards). Work done since the last checkpoint is lost.

requeue_job() {
    echo "[$(date '+%F %T')] job ${SLURM_JOB_ID}: got USR1, requeueing (restart ${SLURM_RESTART_COUNT:-0})"
    scontrol requeue "${SLURM_JOB_ID}"
}
trap requeue_job USR1

# One rank per task on CPU jobs: as many threads as CPUs given to the task (torchrun does the same).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"

# launch CMD...: `srun CMD...`, one task = one rank; a rank that fails ends the others (--kill-on-bad-exit), which
# would otherwise wait out the rendezvous timeout (30 min) for it, e.g. after rank 0 found the run folder in use.
# srun runs in the background because bash
# only runs a trap between foreground commands; `wait` returns early when USR1 arrives, so wait
# again until the step has really ended and return its exit status.
launch() {
    srun --kill-on-bad-exit=1 "$@" &
    local pid=$! status
    while true; do
        wait "$pid" && return 0
        status=$?
        kill -0 "$pid" 2>/dev/null || return "$status"
    done
}
