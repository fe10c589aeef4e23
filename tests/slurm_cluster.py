"""A private single-node Slurm cluster for the tests, built like a small site's.

Debian's Slurm (``slurm-wlm``), its munge and PMIx (``libpmix2``, and ``libpmix-dev``, whose
unversioned ``libpmix.so`` is what Slurm's mpi/pmix plugin opens): our own
munge key and munged socket, slurmctld and slurmd on free loopback ports, all state, spool and
logs in one temporary directory, ``SLURM_CONF`` pointing there. One node (this machine's
hostname, 2 CPUs), partition ``debug`` (the default) and partition ``closed`` (DOWN: a queue
that cannot run a job). A site-like Prolog/TaskProlog/Epilog give each job
``TMPDIR=<cluster>/jobtmp/job<ID>`` (made at allocation, removed with the job),
``OMP_NUM_THREADS`` from ``--cpus-per-task`` and a ``CUDA_VISIBLE_DEVICES``.

Use it from a test module::

    from slurm_cluster import slurm_cluster  # noqa: F401  (the session fixture)

    def test_x(slurm_cluster):
        done = slurm_cluster.run_in_job(["env"], kind="srun", mpi="pmix")
        assert "SLURM_JOB_ID=" in done.stdout

Needs root (slurmd starts jobs as their users); skips with the reason elsewhere.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import random
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import end_process, require_system_package

PACKAGES = "slurm-wlm munge libpmix2 libpmix-dev"
TEST_USER = "kmslurm"
# What a job the tests start may take: long enough for a kernel launch inside a job.
JOB_TIMEOUT = 180
PR_SET_PDEATHSIG = 1  # prctl(2)

# Sites differ; this one is like many: the prolog makes the job's scratch directory as root
# at allocation, the task prolog hands it (and the thread count, and a device) to every
# task, the epilog removes it, so that whatever was put there vanishes with the job.
PROLOG = """#!/bin/sh
dir="{jobtmp}/job$SLURM_JOB_ID"
mkdir -p "$dir" && chown "$SLURM_JOB_UID" "$dir" && chmod 700 "$dir"
"""
EPILOG = """#!/bin/sh
rm -rf "{jobtmp}/job$SLURM_JOB_ID"
"""
TASK_PROLOG = """#!/bin/sh
echo "export TMPDIR={jobtmp}/job$SLURM_JOB_ID"
echo "export OMP_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-1}}"
echo "export CUDA_VISIBLE_DEVICES=0"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SlurmCluster:
    """A running private cluster: its directory, config and the helpers clients need."""

    work: Path
    node: str
    user: str | None  # an unprivileged user jobs can run as (None: none could be made)
    partition: str = "debug"
    closed_partition: str = "closed"
    startup_seconds: float = 0.0
    daemons: list[subprocess.Popen] = field(default_factory=list)
    _mpi_checked: dict[str, bool] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.work / "slurm.conf"

    @property
    def jobtmp(self) -> Path:
        """Where the TaskProlog puts each job's TMPDIR (``jobtmp/job<ID>``)."""
        return self.work / "jobtmp"

    @property
    def env(self) -> dict[str, str]:
        """What a Slurm client needs in its environment to talk to this cluster (the munge
        socket is in slurm.conf's AuthInfo, so clients need nothing else)."""
        return {"SLURM_CONF": str(self.conf)}

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with this cluster's client settings
        and without any job of the caller's own (a test run inside a job must not look like
        a step of it)."""
        env = {
            name: value
            for name, value in (os.environ if base is None else base).items()
            if not name.startswith(("SLURM_", "SLURMD_", "PMI_", "PMIX_", "SBATCH_", "SALLOC_"))
        }
        env.update(self.env)
        return env

    def home_for(self, user: str, path: Path) -> Path:
        """A home directory at ``path`` that ``user`` owns (for jobs run as that user)."""
        path.mkdir(parents=True, exist_ok=True)
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        return path

    def run_in_job(
        self,
        cmd: Sequence[str],
        kind: str = "srun",
        *,
        mpi: str | None = None,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        options: Sequence[str] = (),
        timeout: float = JOB_TIMEOUT,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` (an argv) in a job of this cluster and return what it printed.

        ``kind``: ``srun`` (a job step, with ``--mpi=<mpi>`` if given), ``salloc`` (an
        allocation; the command runs where salloc runs, as an interactive ``salloc`` shell
        does) or ``sbatch`` (a batch job; waits, then returns the job's stdout/stderr).
        ``user``: run as this user (root only). ``env`` is the caller's environment before
        the cluster's client settings are added; ``options`` go to the Slurm command."""
        if kind not in ("srun", "salloc", "sbatch"):
            raise ValueError(f"kind must be srun, salloc or sbatch, not {kind!r}")
        if mpi is not None and kind != "srun":
            raise ValueError("--mpi is an srun option (a job step)")
        run_env = self.client_env(env)
        account = pwd.getpwnam(user) if user else None
        if kind == "srun":
            argv = ["srun", "--quiet", "-N1", "-n1", *([f"--mpi={mpi}"] if mpi else [])]
            argv += [*options, *cmd]
        elif kind == "salloc":
            argv = ["salloc", "--quiet", "-N1", "-n1", *options, *cmd]
        else:
            return self._sbatch(cmd, run_env, account, cwd, options, timeout, check)
        return subprocess.run(
            argv,
            env=run_env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            **_as_user(account),
        )

    def _sbatch(self, cmd, env, account, cwd, options, timeout, check):
        out_dir = Path(tempfile.mkdtemp(prefix="sbatch-", dir=self.work / "outputs"))
        if account:
            os.chown(out_dir, account.pw_uid, account.pw_gid)
        argv = [
            "sbatch", "--parsable", "--wait", "-N1", "-n1",
            f"--output={out_dir}/out", f"--error={out_dir}/err",
            *options, f"--wrap={shlex.join(cmd)}",
        ]  # fmt: skip
        submitted = subprocess.run(
            argv,
            env=env,
            cwd=cwd or out_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            **_as_user(account),
        )
        out = out_dir / "out"
        err = out_dir / "err"
        done = subprocess.CompletedProcess(
            argv,
            submitted.returncode,
            out.read_text() if out.exists() else "",
            (err.read_text() if err.exists() else "") + submitted.stderr,
        )
        shutil.rmtree(out_dir, ignore_errors=True)
        if check:
            done.check_returncode()
        return done

    def require_mpi(self, mpi: str) -> None:
        """Skip (or, in CI, fail) naming the package when ``srun --mpi=<mpi>`` cannot start
        a step here: Debian's Slurm opens PMIx through libpmix-dev's unversioned libpmix.so."""
        if mpi not in self._mpi_checked:
            tried = self.run_in_job(["true"], "srun", mpi=mpi, timeout=60)
            self._mpi_checked[mpi] = tried.returncode == 0
        package = "libpmix-dev" if mpi == "pmix" else "slurm-wlm-basic-plugins"
        require_system_package(self._mpi_checked[mpi], f"srun --mpi={mpi}", package)

    def squeue(self) -> list[str]:
        listed = subprocess.run(
            ["squeue", "--noheader", "--format=%i"],
            env=self.client_env(),
            capture_output=True,
            text=True,
        )
        return listed.stdout.split()

    def stop(self) -> None:
        for job in self.squeue():
            subprocess.run(["scancel", job], env=self.client_env(), capture_output=True)
        # slurmd first (it ends its steps), then the controller, then munge.
        for daemon in reversed(self.daemons):
            end_process(daemon, 10)
        shutil.rmtree(self.work, ignore_errors=True)


def _as_user(account: pwd.struct_passwd | None) -> dict:
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _ensure_test_user() -> str | None:
    """An unprivileged account for jobs (made when root and missing)."""
    try:
        pwd.getpwnam(TEST_USER)
        return TEST_USER
    except KeyError:
        pass
    made = subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/bin/sh", TEST_USER], capture_output=True
    )
    return TEST_USER if made.returncode == 0 else None


def _slurm_conf(work: Path, node: str, munge_socket: Path) -> str:
    ctld_port, slurmd_port = _free_port(), _free_port()
    # Job ids start at a random point so that two clusters on one machine (two test runs)
    # do not share the names that depend on them (PMIx's per-step directories, job TMPDIRs).
    first_job = random.randrange(1000, 9_000_000)
    return f"""\
ClusterName=kmtest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={work}/state
SlurmdSpoolDir={work}/spool
SlurmctldPidFile={work}/slurmctld.pid
SlurmdPidFile={work}/slurmd.pid
SlurmctldLogFile={work}/slurmctld.log
SlurmdLogFile={work}/slurmd.log
TmpFS={work}/tmpfs
PlugStackConfig={work}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
FirstJobId={first_job}
Prolog={work}/prolog
Epilog={work}/epilog
PrologFlags=Alloc
TaskProlog={work}/task_prolog
MailProg=/bin/true
KillWait=2
MinJobAge=5
NodeName={node} NodeAddr=127.0.0.1 NodeHostname={node} CPUs=2 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName=closed Nodes={node} MaxTime=INFINITE State=DOWN
"""


def _write_scripts(work: Path, jobtmp: Path) -> None:
    for name, text in (("prolog", PROLOG), ("epilog", EPILOG), ("task_prolog", TASK_PROLOG)):
        script = work / name
        script.write_text(text.format(jobtmp=jobtmp))
        script.chmod(0o755)


def _wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _cannot_start(what: str, log: Path | None = None) -> None:
    tail = ""
    if log is not None and log.exists():
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        tail = f": {lines[-1]}" if lines else ""
    message = f"the private Slurm cluster could not start ({what}{tail})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def start_cluster() -> SlurmCluster:
    """Start munged, slurmctld and slurmd; return once the node takes jobs."""
    for program in ("slurmctld", "slurmd", "srun", "munged"):
        found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
        require_system_package(found is not None, program, PACKAGES)
    if os.geteuid() != 0:
        pytest.skip("the private Slurm cluster needs root (slurmd starts jobs as their users)")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="kernelmagic-slurm-"))
    work.chmod(0o755)  # jobs of the unprivileged user read the config and run the prologs
    for sub in ("state", "spool", "tmpfs", "munge", "outputs"):
        (work / sub).mkdir()
    (work / "jobtmp").mkdir(mode=0o755)
    (work / "outputs").chmod(0o1777)
    (work / "plugstack.conf").write_text("")
    node = socket.gethostname().split(".")[0]
    cluster = SlurmCluster(work=work, node=node, user=_ensure_test_user())
    try:
        _start_daemons(cluster)
    except BaseException:
        cluster.stop()
        raise
    cluster.startup_seconds = time.monotonic() - started
    return cluster


def _start_daemons(cluster: SlurmCluster) -> None:
    work = cluster.work
    munge_dir = work / "munge"
    munge_dir.chmod(0o755)
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o400)
    munge_socket = munge_dir / "munge.socket"
    munged = shutil.which("munged") or "/usr/sbin/munged"
    cluster.daemons.append(
        subprocess.Popen(
            [
                munged, "--foreground", "--force",
                f"--socket={munge_socket}", f"--key-file={key}",
                f"--pid-file={munge_dir / 'munged.pid'}", f"--log-file={munge_dir / 'munged.log'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_the_tests,
        )
    )  # fmt: skip
    if not _wait_for(munge_socket.exists, 10):
        _cannot_start("munged", munge_dir / "munged.log")

    cluster.conf.write_text(_slurm_conf(work, cluster.node, munge_socket))
    _write_scripts(work, cluster.jobtmp)
    env = cluster.client_env()
    for daemon, log in (("slurmctld", "slurmctld.log"), ("slurmd", "slurmd.log")):
        program = shutil.which(daemon, path="/usr/sbin:/sbin") or daemon
        argv = [program, "-D", "-f", str(cluster.conf)]
        if daemon == "slurmd":
            argv += ["-N", cluster.node]
        else:
            argv += ["-i"]
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_the_tests,
        )
        cluster.daemons.append(proc)
        if daemon == "slurmctld" and not _wait_for(lambda: _answers(env), 20):
            _cannot_start("slurmctld", work / log)
    if not _wait_for(lambda: _node_idle(env, cluster.node), 30):
        _cannot_start("slurmd never reported idle", work / "slurmd.log")


def _die_with_the_tests() -> None:
    """In the daemon's child before exec: a test run killed before its teardown (a timeout,
    ^C twice) takes its daemons with it instead of leaving them on the machine."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _answers(env: dict[str, str]) -> bool:
    return subprocess.run(["scontrol", "ping"], env=env, capture_output=True).returncode == 0


def _node_idle(env: dict[str, str], node: str) -> bool:
    state = subprocess.run(
        ["sinfo", "--noheader", "--partition=debug", "--format=%t"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return state == "idle"


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A private single-node Slurm cluster for the whole session (see the module docstring)."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
