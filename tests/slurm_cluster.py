"""A throwaway single-node SLURM cluster for tests: munged, slurmctld and slurmd with a private config.

Everything (config, MUNGE key and socket, state, spool, logs) lives in one temporary folder, the
ports are free ones and the first job id is random, so clusters of parallel test runs do not
meet. Needs root (slurmd runs jobs as SlurmUser=root) and the Debian packages installed by
``.ci/install_slurm.sh`` (slurmctld, slurmd, slurm-client, munge)::

    with SlurmCluster() as cluster:
        job = cluster.sbatch(script, "--ntasks", "2")
        info = cluster.wait_job(job, timeout=60)   # {'JobState': 'COMPLETED', 'ExitCode': '0:0', ...}
"""
from __future__ import annotations

import ctypes
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel")
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                   "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
# variables that would leak an outer launcher or SLURM job into the private cluster
_LEAKY_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_")
_LEAKY_VARS = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE",
               "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID"}
INSTALL_HINT = "run `.ci/install_slurm.sh` as root (apt: slurmctld slurmd slurm-client munge)"


def _die_with_parent() -> None:
    """In the daemon before exec: SIGTERM when the test process dies, so no daemon outlives a killed run."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


class SlurmClusterError(RuntimeError):
    """The test cluster could not start, or a job did not behave; the message carries the daemon logs."""


def unavailable_reason() -> str | None:
    """Why a test cluster cannot run here (missing programs, not root), or None when it can."""
    missing = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None]
    if missing:
        return f"SLURM/MUNGE not installed (missing {', '.join(missing)}); {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "the SLURM test cluster needs root (slurmd starts jobs as SlurmUser=root)"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:  # all bound at once, so the ports differ
            s.bind(("", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return 1024


class SlurmCluster:
    """Start with ``start()`` or ``with``; ``stop()`` cancels jobs, stops the daemons and removes the folder."""

    def __init__(self, start_timeout: float = 60.0, keep_dir: bool | None = None) -> None:
        self.start_timeout = start_timeout
        # CASTREAM_KEEP_SLURM=1 keeps the folder (config, logs) for debugging
        self.keep_dir = bool(os.environ.get("CASTREAM_KEEP_SLURM")) if keep_dir is None else keep_dir
        self.node = socket.gethostname().split(".")[0]
        self.dir: Path | None = None
        self.env: dict[str, str] = {}
        self._procs: dict[str, subprocess.Popen] = {}

    # -- paths ----------------------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        assert self.dir is not None, "cluster not started"
        return self.dir / "slurm.conf"

    def _log(self, name: str) -> Path:
        assert self.dir is not None
        return self.dir / "log" / f"{name}.log"

    # -- life cycle -------------------------------------------------------------------------------
    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise SlurmClusterError(reason)
        self.dir = Path(tempfile.mkdtemp(prefix="castream-slurm-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        assert self.dir is not None
        self.dir.chmod(0o755)  # job steps and the MUNGE socket must be reachable
        for sub in ("state", "spool", "log", "munge"):
            (self.dir / sub).mkdir(mode=0o755)
        key_dir = self.dir / "munge-key"
        key_dir.mkdir(mode=0o700)
        key = key_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        sock = self.dir / "munge" / "munge.socket"

        self._spawn("munged", [
            "munged", "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
            f"--log-file={self._log('munged')}", f"--pid-file={self.dir / 'munge' / 'munged.pid'}",
            f"--seed-file={self.dir / 'munge' / 'munged.seed'}", "--num-threads=4",
        ])
        self._wait(lambda: sock.exists(), 15, "munged to create its socket")

        ctld_port, slurmd_port = _free_ports(2)
        self.conf.write_text(self._config(ctld_port, slurmd_port, sock))
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(_LEAKY_PREFIXES) and k not in _LEAKY_VARS}
        self.env["SLURM_CONF"] = str(self.conf)
        try:  # rank 0's node name is the rendezvous address; make it reachable if it does not resolve
            socket.gethostbyname(self.node)
        except OSError:
            self.env["MASTER_ADDR"] = "127.0.0.1"

        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node])

        def node_idle() -> bool:
            out = self.run(["sinfo", "-h", "-N", "-n", self.node, "-o", "%T"], check=False, timeout=10)
            return out.returncode == 0 and out.stdout.strip().rstrip("*") == "idle"

        self._wait(node_idle, self.start_timeout, f"node {self.node} to be idle in sinfo")

    def _config(self, ctld_port: int, slurmd_port: int, munge_socket: Path) -> str:
        d = self.dir
        cpus = max(os.cpu_count() or 1, 4)
        return f"""\
# written by tests/slurm_cluster.py: a private single-node cluster
ClusterName=castream-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={self._log('slurmctld')}
SlurmdLogFile={self._log('slurmd')}
MailProg=/bin/true
# no cgroups, no accounting: works in containers
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
# random first job id: the rendezvous port derives from it, so parallel clusters do not collide
FirstJobId={random.randint(100000, 900000)}
# finished jobs stay visible to scontrol (no accounting database to ask afterwards)
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=30
# trust the CPU count below even on smaller machines, so 2-task jobs fit a 1-CPU runner
SlurmdParameters=config_overrides
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName=debug Default=YES Nodes=ALL MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self._log(f"{name}.stdout"), "wb")
        env = dict(os.environ, SLURM_CONF=str(self.conf))
        # own session: the daemons do not get the test runner's terminal signals
        self._procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             env=env, start_new_session=True, preexec_fn=_die_with_parent)
        out.close()

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise SlurmClusterError(f"{name} exited with {proc.returncode} while waiting for {what}\n"
                                            f"{self.logs()}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise SlurmClusterError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")
            time.sleep(0.25)

    def stop(self) -> None:
        """Cancel the jobs, stop the daemons, kill stray job processes and remove the folder."""
        if self.dir is None:
            return
        if self._procs.get("slurmctld") and self._procs["slurmctld"].poll() is None:
            jobs = self.run(["squeue", "-h", "-o", "%A"], check=False, timeout=10).stdout.split()
            if jobs:
                self.run(["scancel", *jobs], check=False, timeout=10)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    out = self.run(["squeue", "-h", "-o", "%A"], check=False, timeout=10)
                    if out.returncode != 0 or not out.stdout.strip():
                        break
                    time.sleep(0.5)
        for name in reversed(list(self._procs)):  # slurmd, slurmctld, then munged
            proc = self._procs[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self._procs.clear()
        self._kill_strays()
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def _kill_strays(self) -> None:
        """Kill leftover slurmstepd/job processes of this cluster: those whose environment names our config."""
        marker = f"SLURM_CONF={self.conf}".encode()
        for pid_dir in Path("/proc").glob("[0-9]*"):
            pid = int(pid_dir.name)
            if pid == os.getpid():
                continue
            try:
                environ = (pid_dir / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    # -- use --------------------------------------------------------------------------------------
    def run(self, cmd: Sequence[str], check: bool = True, timeout: float = 30,
            **kwargs) -> subprocess.CompletedProcess:
        """Run a client command (sbatch, squeue, ...) against this cluster; text output."""
        env = dict(self.env, **kwargs.pop("env", {}))
        result = subprocess.run(list(cmd), env=env, capture_output=True, text=True, timeout=timeout, **kwargs)
        if check and result.returncode != 0:
            raise SlurmClusterError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def sbatch(self, script: str | os.PathLike, *options: str, args: Sequence[str] = (),
               cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> int:
        """Submit ``script`` with sbatch ``options`` and script ``args``; return the job id."""
        out = self.run(["sbatch", "--parsable", *options, str(script), *args], cwd=cwd, env=env or {})
        return int(out.stdout.strip().split(";")[0])

    def job_info(self, job_id: int) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, ExitCode, Restarts, StdOut, ...)."""
        out = self.run(["scontrol", "show", "job", "-o", str(job_id)]).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def wait_job(self, job_id: int, timeout: float) -> dict[str, str]:
        """Poll until the job reaches a final state; on timeout cancel it and raise with its output."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.job_info(job_id)
            if info.get("JobState") in TERMINAL_STATES:
                return info
            if time.monotonic() > deadline:
                self.run(["scancel", str(job_id)], check=False)
                raise SlurmClusterError(f"job {job_id} still {info.get('JobState')} after {timeout:.0f} s\n"
                                        f"{self.job_output(info)}\n{self.logs()}")
            time.sleep(0.5)

    @staticmethod
    def job_output(info: dict[str, str], tail: int = 60) -> str:
        path = Path(info.get("StdOut", ""))
        if not path.is_file():
            return f"(no job output at {path})"
        lines = path.read_text(errors="replace").splitlines()
        return f"--- job output {path} (last {tail} lines) ---\n" + "\n".join(lines[-tail:])

    def logs(self, tail: int = 30) -> str:
        """The last lines of every daemon log, for error messages."""
        if self.dir is None:
            return ""
        parts = []
        for path in sorted((self.dir / "log").glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()
            parts.append(f"--- {path.name} ---\n" + "\n".join(lines[-tail:]))
        return "\n".join(parts)
