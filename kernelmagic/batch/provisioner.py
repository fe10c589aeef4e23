"""A kernel provisioner that starts each kernel as a batch-scheduler job.

The extension point is :class:`BatchScheduler`: a scheduler that can start a command as a
job whose stdio stays attached to the submitting process (Slurm ``srun``; PBS/Torque
``qsub -I``, LSF ``bsub -I``, Flux ``flux run`` have the same shape) says how to start it,
how to read the queue, how to signal and cancel it. :class:`BatchProvisioner` does the rest
for every scheduler, :class:`SlurmProvisioner` binds it to :class:`Slurm`.

How a kernel lives (the launcher's side is ``kernelmagic.batch.launcher``):

- the job is submitted in the foreground (``srun``) with the client's environment (the
  spec's captured ``env`` included, the client's own job's variables removed), and runs the
  launcher with the kernel's interpreter; the launcher picks ports on the node, binds where
  the client can reach it, starts the kernel and writes the connection information on the
  job's stdout, which the scheduler carries back: no extra port, no shared file;
- while the job waits in the queue, its id, state and reason are logged when they change,
  and after ``launch_timeout`` seconds the job is cancelled and the error names them;
- interrupt and other signals go through the scheduler (``scancel --signal``) to the
  launcher, which forwards them to the kernel;
- the job's stdin is a pipe only this process holds: when the client ends in any way, the
  launcher sees end of file, stops the kernel and the job ends; ``cleanup`` cancels a job
  that did not end by itself. Until the kernel has started, the submit command runs under
  ``kernelmagic.batch.guard``, which cancels the queued job when the client is gone.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from tornado.web import HTTPError
from traitlets import Float, Integer, List, Unicode

from kernelmagic.batch import guard, launcher
from kernelmagic.jobs import batch_job, is_job_scoped

LAUNCHER_SOURCE = Path(launcher.__file__).read_text(encoding="utf-8")
GUARD_SOURCE = Path(guard.__file__).read_text(encoding="utf-8")
# Variables that would make the scheduler treat the new job as part of the client's own
# job (a Jupyter server that itself runs inside an allocation), or change its options.
CALLER_JOB_PREFIXES = ("SLURM_", "SLURMD_", "SBATCH_", "SALLOC_", "SRUN_", "PMI_", "PMIX_")
KEPT_CALLER_VARIABLES = ("SLURM_CONF",)  # which cluster to talk to
# What a job, a step or an MPI launch sets in the processes it runs: the client is in one.
CALLER_JOB_MARKERS = ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_STEP_ID", "PMI_RANK", "PMIX_RANK")
# srun's settings of what the provisioner relies on (the env the kernel gets, the stdio that
# carries the connection), as a user or a spec may set them for every srun: never passed.
SUBMIT_OWN_VARIABLES = frozenset(
    {"SLURM_EXPORT_ENV", "SLURM_LABELIO", "SLURM_STDINMODE", "SLURM_STDOUTMODE",
     "SLURM_STDERRMODE"}
)  # fmt: skip
QUEUE_ANSWER_SECONDS = 5.0  # a squeue that takes longer is not waited for (a busy controller)
QUEUE_POLL_SECONDS = 2.0
# The guard cancels a job not started this long after launch_timeout: the client's own
# timeout comes first, the guard's is for a client whose wait was interrupted.
GUARD_GRACE = 10.0


@dataclass(frozen=True)
class QueueState:
    """What the scheduler says of a queued job: its state and the reason it waits."""

    job: str
    state: str
    reason: str

    def __str__(self) -> str:
        reason = f" ({self.reason})" if self.reason and self.reason != "None" else ""
        return f"job {self.job} is {self.state}{reason}"


class BatchScheduler:
    """What a provisioner needs from a batch scheduler. Subclass it for PBS, LSF or Flux."""

    name: ClassVar[str] = ""
    commands: ClassVar[tuple[str, ...]] = ()  # programs that must be on PATH

    def submit_argv(self, options: dict[str, Any], job_name: str, command: list[str]) -> list[str]:
        """The command that starts ``command`` as a job, stdio attached, and waits for it."""
        raise NotImplementedError

    def queue_state(
        self, job_name: str, env: dict[str, str], allocation: str = ""
    ) -> QueueState | None:
        """The job's id, state and reason while the scheduler lists it (for a step, those of
        the ``allocation`` it runs in); None when it is not listed. ``OSError`` (or
        ``subprocess.TimeoutExpired``) when the scheduler does not answer."""
        raise NotImplementedError

    def signal_argv(self, job: str, step: str, signum: int) -> list[str]:
        raise NotImplementedError

    def cancel_argv(self, job: str, step: str, whole_job: bool) -> list[str]:
        raise NotImplementedError

    def submit_env(self, env: dict[str, str], own: Iterable[str] = ()) -> dict[str, str]:
        """The submit command's environment. In a job (a Jupyter server that batchspawner
        started), every scheduler variable of the client's is that job's, and would make the
        kernel's job a step of it, sized as it; so are its devices and thread counts and the
        values that name it (a TMPDIR of /tmp/slurm-4242, gone with it), which the kernel's
        own job would inherit. They are dropped, but the cluster's address and the names in
        ``own`` (the spec's env, set on purpose). Outside one, what the user set for every
        srun (SLURM_ACCOUNT, SLURM_QOS) applies to this one too."""
        env = {k: v for k, v in env.items() if k not in SUBMIT_OWN_VARIABLES}
        if not any(env.get(name) for name in CALLER_JOB_MARKERS):
            return env
        kept = {*KEPT_CALLER_VARIABLES, *own}
        job = batch_job(env)
        return {
            key: value
            for key, value in env.items()
            if key in kept
            or not (key.startswith(CALLER_JOB_PREFIXES) or is_job_scoped(key, value, job))
        }


class Slurm(BatchScheduler):
    name = "slurm"
    commands = ("srun", "squeue", "scancel", "sinfo")

    def submit_argv(self, options: dict[str, Any], job_name: str, command: list[str]) -> list[str]:
        argv = ["srun", "--quiet", "--ntasks=1", f"--job-name={job_name}", "--input=0"]
        if options.get("allocation"):
            # A step of an allocation the user holds; other steps may run beside it.
            argv += [f"--jobid={options['allocation']}", "--overlap"]
        else:
            argv.append(f"--nodes={options.get('nodes') or 1}")
        for key in ("partition", "time", "mem", "gres", "account", "qos"):
            if options.get(key):
                argv.append(f"--{key}={options[key]}")
        if options.get("cpus"):
            argv.append(f"--cpus-per-task={options['cpus']}")
        argv += list(options.get("sbatch_options") or ())
        return [*argv, *command]

    def queue_state(
        self, job_name: str, env: dict[str, str], allocation: str = ""
    ) -> QueueState | None:
        which = f"--jobs={allocation}" if allocation else f"--name={job_name}"
        done = subprocess.run(
            ["squeue", "--noheader", which, f"--user={os.getuid()}", "--format=%i|%T|%r"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=QUEUE_ANSWER_SECONDS,
        )
        if done.returncode != 0:  # "slurm_load_jobs error: Socket timed out ..."
            raise OSError(done.stderr.strip() or f"squeue: exit status {done.returncode}")
        for line in done.stdout.splitlines():
            job, state, reason = [*line.split("|"), "", ""][:3]
            return QueueState(job.strip(), state.strip(), reason.strip())
        return None

    def signal_argv(self, job: str, step: str, signum: int) -> list[str]:
        return ["scancel", f"--signal={signal.Signals(signum).name[3:]}", f"{job}.{step}"]

    def cancel_argv(self, job: str, step: str, whole_job: bool) -> list[str]:
        return ["scancel", job if whole_job else f"{job}.{step}"]


def launcher_python(argv: list[str], configured: str) -> str:
    """The interpreter that runs the launcher in the job: the configured one, else the
    kernel's own when it is a Python, else ``python3`` on the node's PATH."""
    if configured:
        return configured
    program = argv[0] if argv else ""
    if re.fullmatch(r"python[0-9.]*", os.path.basename(program)):
        return program
    return "python3"


class _ToldToServerClients(HTTPError):
    """Why a kernel did not start, in words a Jupyter server passes on. jupyter_server answers
    a start that raised anything but a tornado ``HTTPError`` with "Unhandled error" alone (its
    ``APIHandler.write_error``), so JupyterLab's "Error Starting Kernel" could not say that
    Slurm refused the partition (walk Q); other clients see the builtin error it also is."""

    def __init__(self, message: str) -> None:
        super().__init__(500, message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:  # HTTPError keeps its args for %-formatting: () here
        return f"{type(self).__name__}({self.message!r})"

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return type(self), (self.message,)


class JobEndedBeforeStart(_ToldToServerClients, RuntimeError):
    """The kernel's job ended (or was refused) before the kernel started."""


class JobDidNotStart(_ToldToServerClients, TimeoutError):
    """The kernel's job did not start within ``launch_timeout``; it was cancelled."""


# jupyter_client 7.0 (the oldest supported) has no types: the base class is Any there.
class BatchProvisioner(KernelProvisionerBase):  # type: ignore[misc, unused-ignore]
    """Starts the kernel as a job of ``scheduler`` (see the module docstring)."""

    scheduler: ClassVar[BatchScheduler]

    partition = Unicode("", config=True, help="the partition (queue) to submit to")
    time = Unicode("", config=True, help="the job's time limit, in the scheduler's format")
    cpus = Integer(0, config=True, help="CPUs for the kernel (0: the scheduler's default)")
    mem = Unicode("", config=True, help="memory for the job, e.g. 4G")
    gres = Unicode("", config=True, help="generic resources, e.g. gpu:1")
    account = Unicode("", config=True, help="the account charged")
    qos = Unicode("", config=True, help="the quality of service")
    nodes = Integer(1, config=True, help="nodes (a kernel is one process: 1)")
    sbatch_options = List(Unicode(), config=True, help="further options, e.g. --constraint=x")
    allocation = Unicode("", config=True, help="run as a step of this existing allocation")
    launch_timeout = Float(300.0, config=True, help="seconds to wait for the job to start")
    launcher_python = Unicode("", config=True, help="the interpreter that runs the launcher")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.process: subprocess.Popen[bytes] | None = None
        self.job = ""
        self.step = ""
        self.job_name = ""
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._report: dict[str, Any] | None = None
        self._env: dict[str, str] = {}
        self._restart_request: dict[str, Any] = {}
        self._lifeline = -1  # the guard's pipe (see guard.py), until the kernel has started

    def _options(self) -> dict[str, Any]:
        names = ("partition", "time", "cpus", "mem", "gres", "account", "qos", "nodes")
        options: dict[str, Any] = {name: getattr(self, name) for name in names}
        options["sbatch_options"] = list(self.sbatch_options)
        options["allocation"] = self.allocation
        return options

    @property
    def has_process(self) -> bool:
        return self.process is not None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs = await super().pre_launch(**kwargs)
        # {connection_file} stays for the launcher: the file is written on the node.
        names = {"resource_dir": self.kernel_spec.resource_dir, "prefix": sys.prefix}
        argv = [
            re.sub(r"\{(resource_dir|prefix)\}", lambda m: names[m.group(1)], arg)
            for arg in self.kernel_spec.argv
        ]
        argv += list(kwargs.pop("extra_arguments", None) or [])
        python = launcher_python(argv, self.launcher_python)
        # A name of this start alone: a restart's old job may still be COMPLETING under the
        # last one, and any user can name a job anything (squeue shows every name).
        self.job_name = f"kernel-{self.kernel_id}-{secrets.token_hex(3)}"
        job_command = [python, "-I", "-c", LAUNCHER_SOURCE, *argv]
        kwargs["cmd"] = self.scheduler.submit_argv(self._options(), self.job_name, job_command)
        return kwargs

    def _kernel_name(self) -> str:
        name = getattr(self.parent, "kernel_name", "")
        return name if isinstance(name, str) else ""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        self._env = self.scheduler.submit_env(
            dict(kwargs.get("env") or os.environ), own=self.kernel_spec.env or {}
        )
        self._report = None
        self._stderr_tail.clear()
        guarded, self._lifeline = os.pipe()
        guard = [sys.executable or "python3", "-I", "-c", GUARD_SOURCE, str(guarded)]
        guard.append(str(self.launch_timeout + GUARD_GRACE))  # it cancels a job not started
        try:
            self.process = subprocess.Popen(
                [*guard, *cmd],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                cwd=kwargs.get("cwd"),
                pass_fds=(guarded,),
                start_new_session=True,  # the client's Ctrl-C is not the kernel's
            )
        except BaseException:
            self._let_go()
            raise
        finally:
            os.close(guarded)
        assert self.process.stdin is not None
        # The spec's name goes into the kernel's connection file, as jupyter_client writes it
        # for a local kernel: the magics in the kernel tell its spec by it.
        request = {**self._restart_request, "kernel_name": self._kernel_name()}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        arrived = threading.Event()
        threading.Thread(target=self._read_stdout, args=(arrived,), daemon=True).start()
        # The client may close the stderr it gave once the kernel has started (the doctor's
        # launch does): the relay writes to a copy of its own.
        asked = kwargs.get("stderr")
        target = asked if isinstance(asked, int) else getattr(asked, "fileno", lambda: 2)()
        relay = os.dup(target)
        threading.Thread(target=self._relay_stderr, args=(relay,), daemon=True).start()
        self.log.info(
            "%s: submitted kernel %s as job '%s'",
            self.scheduler.name,
            self.kernel_id,
            self.job_name,
        )
        await self._wait_for_start(arrived)
        assert self._report is not None
        with contextlib.suppress(OSError):  # started: the guard lets the job's stdin end it
            os.write(self._lifeline, b"s")
        self._let_go()
        self.job = str(self._report.get("job") or "")
        self.step = str(self._report.get("step") or "0")
        info = dict(self._report["connection"])
        info["key"] = info["key"].encode()
        ports = ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")
        self._restart_request = {
            "ports": [int(info[name]) for name in ports],
            "key": self._report["connection"]["key"],
        }
        self.connection_info = info
        self.log.info(
            "%s: kernel %s runs in job %s on %s",
            self.scheduler.name,
            self.kernel_id,
            self.job,
            self._report.get("node"),
        )
        return info

    async def _wait_for_start(self, arrived: threading.Event) -> None:
        started = time.monotonic()
        next_look = started + QUEUE_POLL_SECONDS / 2
        last: QueueState | None = None
        loop = asyncio.get_running_loop()
        while not arrived.is_set():
            now = time.monotonic()
            assert self.process is not None
            if self.process.poll() is not None and not arrived.wait(0.2):
                tail = "; ".join(self._stderr_tail) or "no output"
                await self._forget()
                raise JobEndedBeforeStart(
                    f"the {self.scheduler.name} job for kernel {self.kernel_id} ended before the "
                    f"kernel started: {tail}"
                )
            if now >= next_look:
                next_look = now + QUEUE_POLL_SECONDS
                _, state = await loop.run_in_executor(None, self._asked_queue)
                if arrived.is_set():  # started while the queue was asked: not late
                    break
                now = time.monotonic()
                if state and state != last and state.state != "RUNNING":
                    self.log.info(
                        "%s: kernel %s waits: %s", self.scheduler.name, self.kernel_id, state
                    )
                last = state or last
                if now - started > self.launch_timeout:
                    ended = await self._cancel_queued()
                    await self._forget()
                    where = str(state or last or f"job '{self.job_name}' is not listed")
                    # srun ends when its cancel request times out too: the queue says (for a
                    # step, srun's end is the step's: the allocation stays listed).
                    answered, left = await loop.run_in_executor(None, self._asked_queue)
                    outcome = (
                        "it was cancelled"
                        if ended and (self.allocation or (answered and left is None))
                        else f"its cancelling was not confirmed (squeue --name={self.job_name})"
                    )
                    raise JobDidNotStart(
                        f"the {self.scheduler.name} job for kernel {self.kernel_id} did not start "
                        f"within {self.launch_timeout:g} s: {where}; {outcome}"
                    )
            await asyncio.sleep(0.01)

    def _asked_queue(self) -> tuple[bool, QueueState | None]:
        """Whether the scheduler answered, and ``queue_state`` of this start's job."""
        try:
            return True, self.scheduler.queue_state(self.job_name, self._env, self.allocation)
        except (OSError, subprocess.TimeoutExpired):
            return False, None

    def _read_stdout(self, arrived: threading.Event) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace")
            if line.startswith(launcher.MARKER):
                self._report = json.loads(line[len(launcher.MARKER) :])
                arrived.set()
                break

    def _relay_stderr(self, relay: int) -> None:
        process = self.process
        assert process is not None and process.stderr is not None
        try:
            for raw in process.stderr:
                self._stderr_tail.append(raw.decode("utf-8", "replace").rstrip())
                with contextlib.suppress(OSError):
                    os.write(relay, raw)
        except (OSError, ValueError):  # the stream was closed by _forget
            pass
        finally:
            os.close(relay)

    async def poll(self) -> int | None:
        return None if self.process is None else self.process.poll()

    async def wait(self) -> int | None:
        while self.process is not None and self.process.poll() is None:
            await asyncio.sleep(0.05)
        return None if self.process is None else self.process.returncode

    async def send_signal(self, signum: int) -> None:
        if signum == 0 or self.process is None:
            return
        if not self.job:  # not started yet: only the local submitter can be told
            self._signal_submitter(signum)
            return
        await self._run(self.scheduler.signal_argv(self.job, self.step, signum))

    async def kill(self, restart: bool = False) -> None:
        if self.process is None:
            return
        if self.job:
            await self._run(self.scheduler.cancel_argv(self.job, self.step, not self.allocation))
        else:
            await self._cancel_queued()
        self._signal_submitter(signal.SIGKILL)

    async def _cancel_queued(self, seconds: float = 10.0) -> bool:
        """Cancel the job still queued, as only its submit command knows it: on SIGTERM
        ``srun`` cancels the job it waits for and ends (no lookup by name, which another
        job can carry). Whether it ended within ``seconds`` (a scheduler that does not
        answer keeps it waiting)."""
        self._signal_submitter(signal.SIGTERM)
        deadline = time.monotonic() + seconds
        while self.process is not None and self.process.poll() is None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def terminate(self, restart: bool = False) -> None:
        if self.process is None:
            return
        self._close_stdin()  # the launcher stops the kernel and the job ends
        self._signal_submitter(signal.SIGTERM)

    def give_up_queued_start(self) -> None:
        """From another thread, while ``launch_kernel`` waits for the job (the caller's
        Ctrl-C): the submit command gets SIGTERM and cancels the job still queued, and the
        wait ends with it at once (not at ``launch_timeout``)."""
        if not self.job:
            self._signal_submitter(signal.SIGTERM)

    def _signal_submitter(self, signum: int) -> None:
        """Signal the submit command and its guard (their own process group)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def _let_go(self) -> None:
        """Close the guard's pipe: without the byte first, the guard cancels a queued job."""
        if self._lifeline >= 0:
            os.close(self._lifeline)
            self._lifeline = -1

    def _close_stdin(self) -> None:
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(OSError):  # a broken pipe: the job is gone already
                self.process.stdin.close()

    async def _run(self, argv: list[str]) -> None:
        loop = asyncio.get_running_loop()
        done = await loop.run_in_executor(
            None,
            lambda: subprocess.run(
                argv, env=self._env, capture_output=True, text=True, check=False
            ),
        )
        if done.returncode != 0:
            # A job that ended before it was signalled (scancel, its time limit): said for
            # the record, not as a warning on every restart after.
            gone = "Invalid job id" in done.stderr
            log = self.log.debug if gone else self.log.warning
            log("%s failed: %s", " ".join(argv[:2]), done.stderr.strip())

    async def cleanup(self, restart: bool = False) -> None:
        if self.process is None:
            return
        self._close_stdin()
        try:
            await asyncio.wait_for(self.wait(), 10)
        except asyncio.TimeoutError:
            await self.kill()
        await self._forget()

    async def _forget(self) -> None:
        self._let_go()
        if self.process is not None:
            self._close_stdin()
            self._signal_submitter(signal.SIGKILL)
            self.process.wait()
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
        self.process = None
        self.job = self.step = ""

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return max(recommended, 10.0)  # a job's step takes a moment to end


class SlurmProvisioner(BatchProvisioner):
    """Kernels as Slurm jobs (``srun``), or steps of an allocation (``allocation``)."""

    scheduler = Slurm()
