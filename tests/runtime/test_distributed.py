"""utils.runtime.distributed: launcher detection from hand-made environments, and sharding/gathering
with two real gloo processes on the CPU."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from utils.runtime import distributed as D
from utils.runtime.distributed import DistributedConfigError, DistributedEnv, detect_environment, shard_indices

SLURM_STEP = {
    "SLURM_JOB_ID": "1234", "SLURM_JOB_NODELIST": "node[01-02]", "SLURM_NTASKS": "4",
    "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0",
}


# ------------------------------------------------------------------------------------------------
# detection

def test_no_launcher_is_single_process():
    assert detect_environment({}) == DistributedEnv()
    assert detect_environment({"PATH": "/usr/bin"}).launcher == "none"
    assert not DistributedEnv().is_distributed and DistributedEnv().is_main


def test_torchrun_variables():
    env = detect_environment({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
                              "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29501"})
    assert env == DistributedEnv(1, 1, 2, "10.0.0.5", 29501, "torchrun")


def test_torchrun_takes_precedence_over_slurm():
    environ = dict(SLURM_STEP, RANK="0", WORLD_SIZE="8", LOCAL_RANK="0", MASTER_ADDR="h", MASTER_PORT="1234")
    env = detect_environment(environ)
    assert (env.launcher, env.world_size, env.master_addr) == ("torchrun", 8, "h")


def test_torchrun_missing_variable_is_one_clear_line():
    with pytest.raises(DistributedConfigError, match="MASTER_ADDR, MASTER_PORT are not") as err:
        detect_environment({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    assert "\n" not in str(err.value)


def test_slurm_step_variables():
    env = detect_environment(SLURM_STEP)
    assert (env.rank, env.world_size, env.local_rank, env.master_addr) == (3, 4, 1, "node01")
    assert env.launcher == "slurm"
    assert env.master_port == D.slurm_port(1234) == 10000 + 1234
    # deterministic: every task of the job computes the same port
    other = detect_environment(dict(SLURM_STEP, SLURM_PROCID="0", SLURM_LOCALID="0"))
    assert (other.master_addr, other.master_port) == (env.master_addr, env.master_port)
    assert 10000 <= D.slurm_port(987654321) < 30000


def test_slurm_comma_node_list_and_overrides():
    env = detect_environment(dict(SLURM_STEP, SLURM_JOB_NODELIST="a1,b[3-4]"))
    assert env.master_addr == "a1"
    env = detect_environment(dict(SLURM_STEP, SLURM_JOB_NODELIST="b[3-4],a1", MASTER_PORT="4242"))
    assert (env.master_addr, env.master_port) == ("b3", 4242)
    # the step's node list wins over the job's: rank 0 runs on the step's first node
    env = detect_environment(dict(SLURM_STEP, SLURM_STEP_NODELIST="node[07-08]"))
    assert env.master_addr == "node07"
    # SLURM_NODELIST is the fallback name; the step's task count wins over the job's
    environ = {k: v for k, v in SLURM_STEP.items() if k != "SLURM_JOB_NODELIST"}
    env = detect_environment(dict(environ, SLURM_NODELIST="gpu-[1,3]", SLURM_STEP_NUM_TASKS="5"))
    assert (env.master_addr, env.world_size) == ("gpu-1", 5)


def test_slurm_bad_values_are_one_clear_line():
    with pytest.raises(DistributedConfigError, match=r"^cannot parse SLURM_JOB_NODELIST='node\[01-': ") as err:
        detect_environment(dict(SLURM_STEP, SLURM_JOB_NODELIST="node[01-"))
    assert "\n" not in str(err.value)
    with pytest.raises(DistributedConfigError, match="SLURM_PROCID must be an integer, got 'x'"):
        detect_environment(dict(SLURM_STEP, SLURM_PROCID="x"))
    with pytest.raises(DistributedConfigError, match="SLURM_PROCID=4 is out of range for SLURM_NTASKS=4"):
        detect_environment(dict(SLURM_STEP, SLURM_PROCID="4"))
    with pytest.raises(DistributedConfigError, match="node list"):
        detect_environment({k: v for k, v in SLURM_STEP.items() if k != "SLURM_JOB_NODELIST"})


def test_slurm_batch_script_or_single_task_is_single_process():
    # plain `python main_INets.py` in an sbatch/salloc with one task
    one_task = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n1", "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}
    assert detect_environment(one_task) == DistributedEnv()
    # `srun -n 1 python ...`: a step of one task, still one process
    env = detect_environment(dict(one_task, SLURM_STEP_ID="0"))
    assert env.world_size == 1 and not env.is_distributed
    # the batch script of a 2-task job (no srun): one process, not rank 0 of 2 waiting forever
    with pytest.warns(UserWarning, match="srun"):
        env = detect_environment(dict(one_task, SLURM_NTASKS="2"))
    assert env == DistributedEnv()


def test_shard_indices_strided():
    assert shard_indices(range(7), 0, 2) == [0, 2, 4, 6]
    assert shard_indices(range(7), 1, 2) == [1, 3, 5]
    assert shard_indices([9, 4], 2, 3) == []
    shards = [shard_indices(list(range(10)), r, 3) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))
    with pytest.raises(ValueError, match="out of range"):
        shard_indices(range(3), 2, 2)
    assert shard_indices(range(3)) == [0, 1, 2]  # no process group: rank 0 of 1


def test_single_process_helpers_are_no_ops():
    env, device = D.setup_distributed(use_gpu=False, environ={})
    assert env == DistributedEnv() and device == torch.device("cpu")
    assert (D.get_rank(), D.get_world_size()) == (0, 1)
    t = torch.ones(3)
    assert D.all_reduce_sum(t) is t and t.tolist() == [1, 1, 1]
    assert D.reduce_metrics({"b": 2, "a": 1.5}) == {"a": 1.5, "b": 2.0}
    assert D.gather_in_order(["x", "y"], [5, 2]) == ["y", "x"]
    assert D.gather_in_order(["x", "y"], [5, 2], order=[5, 2]) == ["x", "y"]
    rows = torch.tensor([[5.0], [2.0]])
    assert D.gather_tensors_in_order(rows, [5, 2]).tolist() == [[2.0], [5.0]]
    D.cleanup_distributed()


def test_use_gpu_without_cuda_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^--use_gpu given but CUDA is not available \(leave it out to run on the "
                                         r"CPU\)$"):
        D.setup_distributed(use_gpu=True, environ={})


# ------------------------------------------------------------------------------------------------
# two real processes (gloo, CPU)

N_ITEMS = 7  # uneven shards: 4 + 3
ORDER = [6, 2, 0, 5, 3, 1, 4]  # a non-sorted original index list


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(local_rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update({"RANK": str(local_rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(local_rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import datetime
    env, device = D.setup_distributed(use_gpu=False, timeout=datetime.timedelta(seconds=60))
    try:
        result: dict = {"env": [env.rank, env.world_size, env.launcher], "device": str(device),
                        "rank": D.get_rank(), "world": D.get_world_size(), "main": D.get_rank() == 0}
        mine = shard_indices(range(N_ITEMS))
        result["shard"] = mine
        result["objects"] = D.gather_in_order([f"item{i}" for i in mine], mine)
        ordered = shard_indices(ORDER)
        result["objects_order"] = D.gather_in_order([f"item{i}" for i in ordered], ordered, order=ORDER)
        rows = torch.tensor([[i, 10 * i, -i] for i in mine], dtype=torch.float32)
        result["tensor"] = D.gather_tensors_in_order(rows, mine).tolist()
        rows = torch.tensor([[i, i + 0.5] for i in ordered], dtype=torch.float64)
        result["tensor_order"] = D.gather_tensors_in_order(rows, torch.tensor(ordered), order=ORDER).tolist()
        # one item for two ranks: rank 1's shard is empty
        one = shard_indices([3])
        result["tensor_empty_shard"] = D.gather_tensors_in_order(torch.full((len(one), 2), 3.0), one).tolist()
        result["objects_empty_shard"] = D.gather_in_order(["three"] * len(one), one)
        result["rows"] = sorted(D.gather_rows(torch.tensor([[float(i)] for i in mine])).flatten().tolist())
        result["rows_empty_shard"] = D.gather_rows(torch.full((len(one), 2), 3.0)).tolist()
        result["sum"] = D.all_reduce_sum(torch.tensor([float(env.rank + 1)])).tolist()
        result["metrics"] = D.reduce_metrics({"correct": len(mine), "count": 2.5})
    finally:
        D.cleanup_distributed()
    Path(out_dir, f"rank{local_rank}.json").write_text(json.dumps(result))


def test_two_processes_gather_in_dataset_order(tmp_path):
    world = 2
    ctx = mp.spawn(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=False)
    deadline = time.monotonic() + 120
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail("the two gloo processes did not finish within 120 s")
    finally:
        for process in ctx.processes:
            if process.is_alive():
                process.kill()
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    assert [r["shard"] for r in results] == [[0, 2, 4, 6], [1, 3, 5]]
    for rank, res in enumerate(results):
        assert res["env"] == [rank, 2, "torchrun"] and res["device"] == "cpu"
        assert (res["rank"], res["world"], res["main"]) == (rank, 2, rank == 0)
        assert res["objects"] == [f"item{i}" for i in range(N_ITEMS)]
        assert res["objects_order"] == [f"item{i}" for i in ORDER]
        assert res["tensor"] == [[i, 10 * i, -i] for i in range(N_ITEMS)]
        assert res["tensor_order"] == [[i, i + 0.5] for i in ORDER]
        assert res["tensor_empty_shard"] == [[3.0, 3.0]]
        assert res["objects_empty_shard"] == ["three"]
        assert res["rows"] == list(range(N_ITEMS)) and res["rows_empty_shard"] == [[3.0, 3.0]]
        assert res["sum"] == [3.0]
        assert res["metrics"] == {"correct": 7.0, "count": 5.0}
