"""A real one-node Slurm cluster (Debian's slurm-wlm 22.05 with munge) for the integration tests.

Everything lives in one temporary directory: munge's key, socket and pid file, slurm.conf, the
controller's state, the node's spool and the logs. The daemons listen on 127.0.0.1 only
(``CommunicationParameters=NoInAddrAny,NoCtldInAddrAny``, the node's address is 127.0.0.1) on free ports, run in
the foreground as children of the test and are stopped by it. The configuration is what a small
cluster without cgroups or accounting runs (``proctrack/linuxproc``, ``task/none``); the only
settings turned down for speed are ``KillWait`` (the grace between SIGTERM and SIGKILL) and
``cred_expire`` (how long a requeued job is held); ``MinJobAge`` is raised so that finished jobs
stay visible to ``scontrol`` without accounting.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "scancel", "squeue")
KILL_WAIT = 5
CRED_EXPIRE = 10


def missing_binaries() -> list[str]:
    paths = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [b for b in BINARIES if shutil.which(b, path=paths) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str) -> str:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


class SlurmCluster:
    def __init__(self, root: Path, cpus: int = 4):
        self.root = Path(root)
        self.cpus = cpus
        self.procs: list[subprocess.Popen] = []
        self.node = socket.gethostname().split(".")[0]
        self.env = dict(os.environ)
        self.env["SLURM_CONF"] = str(self.root / "slurm.conf")

    # -- set-up ------------------------------------------------------------------------------
    def _munge(self) -> None:
        d = self.root / "munge"
        d.mkdir()
        sock_dir = d / "run"
        sock_dir.mkdir()
        for path in (self.root, d, sock_dir):  # munged wants every directory above its socket searchable by all
            os.chmod(path, 0o711)
        self.munge_socket = sock_dir / "munge.socket"
        key = d / "munge.key"
        subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
        os.chmod(key, 0o400)
        self.procs.append(subprocess.Popen(
            [_which("munged"), "-F", f"--socket={self.munge_socket}", f"--key-file={key}",
             f"--pid-file={d / 'munged.pid'}", f"--log-file={d / 'munged.log'}", f"--seed-file={d / 'munged.seed'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        self._until(lambda: self.munge_socket.exists(), 10, "munged did not create its socket")

    def _conf(self) -> None:
        r = self.root
        for sub in ("state", "spool", "log", "jobs"):
            (r / sub).mkdir()
        auth = f"socket={self.munge_socket}"
        text = f"""
ClusterName=telemrec
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo={auth},cred_expire={CRED_EXPIRE}
CredType=cred/munge
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
KillWait={KILL_WAIT}
OverTimeLimit=0
MinJobAge=600
InactiveLimit=0
MpiDefault=none
JobRequeue=1
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        (r / "slurm.conf").write_text(text.lstrip())

    def start(self) -> "SlurmCluster":
        self._munge()
        self._conf()
        with open(self.root / "log" / "daemons.out", "ab") as log:
            for argv in ([_which("slurmctld"), "-D", "-i"], [_which("slurmd"), "-D"]):
                self.procs.append(subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT))
        self._until(lambda: "idle" in self.scontrol("show", "node", self.node, check=False).lower(), 30,
                    "the node did not become idle")
        return self

    def stop(self) -> None:
        if any(p.poll() is None for p in self.procs[1:]):
            subprocess.run([_which("scancel"), "--full", "--user=root"], env=self.env, capture_output=True, timeout=10)
        for proc in reversed(self.procs):  # slurmd, slurmctld, munged
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()

    def logs(self) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log", "daemons.out"):
            path = self.root / "log" / name
            if path.exists():
                out.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(out)

    # -- commands ----------------------------------------------------------------------------
    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        proc = subprocess.run([_which(argv[0]), *argv[1:]], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}\n{self.logs()}")
        return proc

    def scontrol(self, *args: str, check: bool = True) -> str:
        return self.run("scontrol", *args, check=check).stdout

    def sbatch(self, script: str, *options: str) -> str:
        path = self.root / "jobs" / f"job{len(list((self.root / 'jobs').iterdir()))}.sh"
        path.write_text(script)
        out = self.run("sbatch", "--parsable", f"--chdir={self.root / 'jobs'}", *options, str(path)).stdout
        return out.strip().split(";")[0]

    def job(self, job_id: str) -> dict:
        text = self.scontrol("show", "job", "-o", job_id, check=False)
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def wait_state(self, job_id: str, states: tuple[str, ...], timeout: float) -> dict:
        found: dict = {}

        def reached() -> bool:
            found.update(self.job(job_id))
            return found.get("JobState") in states

        self._until(reached, timeout, f"job {job_id} did not reach {states}", lambda: found.get("JobState"))
        return found

    def _until(self, predicate, timeout: float, message: str, last=lambda: None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            for proc in self.procs:
                if proc.poll() is not None:
                    raise AssertionError(f"{proc.args[0]} exited ({proc.returncode}) while waiting: {message}\n"
                                         f"{self.logs()}")
            time.sleep(0.25)
        raise AssertionError(f"{message} within {timeout} s (last: {last()})\n{self.logs()}")
