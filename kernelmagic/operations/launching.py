"""Start kernels for real (``doctor --launch``): what static checks cannot see, such as a
missing shared library, a broken module or a wrapper that fails, shows when Jupyter starts
the spec. Each spec is started through jupyter_client, asked for ``kernel_info``, and shut
down; a failure is reported with the lines of the kernel's stderr that say why.

Like the doctor's probes, it starts no spec that other users can change unless the user
named it and said ``--trust``; kernels start in an empty directory of their own, so that
nothing in the current directory is imported; only the last ``STDERR_KEPT`` bytes of a
kernel's stderr are kept, whatever it writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kernelmagic.domain import checks
from kernelmagic.domain.ownership import TrustWalk
from kernelmagic.domain.shells import failure_in_one_line
from kernelmagic.domain.trust import TRUST_ADVICE, untrusted
from kernelmagic.storage import discovery

DEFAULT_TIMEOUT = 60.0
INTERRUPT_WAIT = 5.0  # an interrupt that has not stopped the cell by then is lost
# A statement that runs for long, in each language's kernel, to interrupt. Each prints a line
# first: its stream message says the kernel is inside the cell. An interrupt that comes
# earlier, while the kernel still prepares the cell, can kill it (IRkernel on a cold disk,
# halted at the top level of its `R -e`), which says nothing of the wrapper we check.
_SAYS = "kernelmagic: interrupt check"
_SLEEPS = {
    "python": f"print({_SAYS!r}, flush=True); import time; time.sleep(30)",
    "r": f'cat("{_SAYS}\\n"); Sys.sleep(30)',
    "julia": f'println("{_SAYS}"); flush(stdout); sleep(30)',
    "bash": f"echo '{_SAYS}'; sleep 30",
}
STDERR_KEPT = 64 * 1024
STARTED, FAILED, NOT_LAUNCHED = "started", "failed", "not launched"


@dataclass
class Launch:
    """How one spec started (seconds to the ``kernel_info`` reply) or why it did not."""

    name: str
    result: str  # started | failed | not launched
    seconds: float | None = None
    language: str = ""
    implementation: str = ""
    reason: str = ""
    interrupt: str = ""  # "" (not checked), "arrived in 0.05 s", or why it was lost
    interrupted: bool | None = None  # None when not checked

    @property
    def started(self) -> bool:
        return self.result == STARTED

    def to_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "result": self.result,
            "seconds": self.seconds,
            "language": self.language,
            "implementation": self.implementation,
            "reason": self.reason,
            "interrupt": self.interrupt,
            "interrupted": self.interrupted,
        }


@dataclass
class LaunchReport:
    """How each spec ``doctor --launch`` was asked to start did."""

    launches: list[Launch]
    removed: list[str] = field(default_factory=list)  # as the static report: nothing here

    @property
    def healthy(self) -> bool:
        return all(launch.started and launch.interrupted is not False for launch in self.launches)

    def count(self, result: str) -> int:
        return sum(1 for launch in self.launches if launch.result == result)

    def to_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "specs": {launch.name: launch.to_json() for launch in self.launches},
        }


class _StderrTail:
    """A pipe for a kernel's stderr and a thread that keeps only its last bytes."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()
        self._kept = bytearray()
        self.written = 0  # bytes read from the pipe so far, kept or not
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with os.fdopen(self.read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                with self._lock:
                    self._kept += chunk
                    self.written += len(chunk)
                    del self._kept[:-STDERR_KEPT]

    def started(self) -> None:
        """The kernel has its copy of the write end: close ours, so EOF can come."""
        os.close(self.write_end)

    def text(self, wait: float = 0.0, since: int = 0) -> str:
        """What the kernel wrote (after ``since`` bytes, when that much was written)."""
        self._reader.join(wait)  # what a kernel that just exited wrote last
        with self._lock:
            new = self.written - since
            kept = self._kept[-new:] if 0 < new < len(self._kept) else self._kept
            return bytes(kept).decode("utf-8", "replace")


def _check_interrupt(manager: Any, client: Any, launched: Launch, stderr: _StderrTail) -> None:
    """Run a long sleep, interrupt it once the kernel has printed from inside the cell (an
    interrupt before that may be ignored, or kill a kernel), and see whether the cell ends
    within ``INTERRUPT_WAIT``: what a user's Interrupt button does, through the spec's own
    interrupt_mode."""
    code = _SLEEPS.get(launched.language.lower())
    if code is None:
        launched.interrupt = f"not checked: no long statement known for {launched.language!r}"
        return
    if not _iopub_connected(client):
        launched.interrupt = "not checked: the kernel published nothing on IOPub"
        return
    request = client.execute(code)
    deadline = time.perf_counter() + 10.0
    taken = False  # the kernel said it is busy with our cell
    while time.perf_counter() < deadline:  # the kernel starts running our cell
        try:
            message = client.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        if message["parent_header"].get("msg_id") != request:
            continue
        if message["msg_type"] == "status":
            taken = taken or message["content"].get("execution_state") == "busy"
        if message["msg_type"] == "stream":
            break
        if message["msg_type"] == "error":  # no long statement to interrupt: say so
            content = message["content"]
            said = f"{content.get('ename', '')}: {content.get('evalue', '')}"
            launched.interrupt = f"not checked: the long statement failed: {said}"
            return
    else:
        if not taken:  # an interrupt would press on an idle kernel and be said to be lost
            launched.interrupt = "not checked: the kernel did not take the check's cell in 10 s"
            return
    time.sleep(0.02)  # into the statement itself (a second press covers a miss)
    said_before = stderr.written  # the kernel's last words are what it writes after this
    sent = time.perf_counter()
    manager.interrupt_kernel()
    pressed = sent  # pressed again each second, as a user would, if one came before the cell
    while time.perf_counter() - sent < INTERRUPT_WAIT:
        if not manager.is_alive():
            launched.interrupted = False
            said = failure_in_one_line(stderr.text(wait=1.0, since=said_before))
            launched.interrupt = f"killed the kernel: it exited when interrupted: {said}"
            return
        if time.perf_counter() - pressed > 1.0:
            manager.interrupt_kernel()
            pressed = time.perf_counter()
        try:
            reply = client.get_shell_msg(timeout=0.1)
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") == request:
            launched.interrupted = True
            launched.interrupt = f"arrived in {time.perf_counter() - sent:.2f} s"
            return
    launched.interrupted = False
    launched.interrupt = (
        f"lost: the cell was still running {INTERRUPT_WAIT:g} s after the interrupt (a "
        "wrapper that does not exec the kernel gets the signal; see doctor)"
    )


def _iopub_connected(client: Any, timeout: float = 10.0) -> bool:
    """Whether our IOPub subscription is live: a kernel's status messages reach us (a PUB
    socket drops what it sends before the subscription arrives). Asks kernel_info, again
    every 0.2 s, until its status does, as jupyter_client's wait_for_ready does; then waits
    for the replies to what it asked, so that the next request does not arrive while the
    kernel replies: ipykernel 7.0-7.3 leave such a request unread (CI's ipykernel 7.0 leg:
    the check's cell never ran, and its interrupt was said to be lost)."""
    deadline = time.perf_counter() + timeout
    asked: set[str] = set()
    connected = False
    with contextlib.suppress(queue.Empty):  # the status of the kernel_info already asked
        client.get_iopub_msg(timeout=0.05)
        connected = True
    while not connected and time.perf_counter() < deadline:
        asked.add(client.kernel_info())
        try:
            client.get_iopub_msg(timeout=0.2)
            connected = True
        except queue.Empty:
            continue
    while asked and time.perf_counter() < deadline:
        with contextlib.suppress(queue.Empty):
            asked.discard(client.get_shell_msg(timeout=0.2)["parent_header"].get("msg_id"))
    return connected


_QUIET = logging.getLogger("kernelmagic.launch")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class _JupyterClientsLog(logging.Filter):
    """Keeps jupyter_client's launcher from logging a failed start through the application's
    logger (``[TerminalIPythonApp] ERROR | Failed to run command``) while launches run: the
    report says it, once. Counted, as launches overlap in threads."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._running = 0

    def filter(self, record: logging.LogRecord) -> bool:
        return f"{os.sep}jupyter_client{os.sep}" not in record.pathname

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        from traitlets.log import get_logger

        found = get_logger()  # an application's logger, or traitlets' own
        logger = found.logger if isinstance(found, logging.LoggerAdapter) else found
        with self._lock:
            self._running += 1
            logger.addFilter(self)
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if not self._running:
                    logger.removeFilter(self)


_JUPYTER_CLIENTS_LOG = _JupyterClientsLog()


def _wait_in_the_queue_at_most(spec: Any, timeout: float) -> None:
    """A batch spec waits in the queue inside start_kernel: no longer than the launch may.
    Its own ``launch_timeout`` reaches the provisioner as an argument, which wins over any
    Jupyter config, so the spec the manager starts (its copy, not the file) says it."""
    stanza = (getattr(spec, "metadata", None) or {}).get("kernel_provisioner")
    if not isinstance(stanza, dict):
        return
    if stanza.get("provisioner_name") not in checks.BATCH_PROVISIONERS:
        return
    config = stanza.get("config")
    config = config if isinstance(config, dict) else {}
    own = config.get("launch_timeout")
    if isinstance(own, (int, float)) and not isinstance(own, bool):
        timeout = min(float(own), timeout)
    stanza["config"] = {**config, "launch_timeout": timeout}


@contextlib.contextmanager
def _given_up_on(stop: threading.Event, manager: Any, batch: bool) -> Iterator[None]:
    """Ctrl-C (``stop``) ends a batch start still waiting in the scheduler's queue: the start
    blocks this thread, so another one tells the provisioner to give the job up."""
    if not batch:
        yield
        return
    started = threading.Event()

    def watch() -> None:
        while not started.wait(0.2):
            provisioner = getattr(manager, "provisioner", None)  # made inside start_kernel
            if stop.is_set() and provisioner is not None:
                provisioner.give_up_queued_start()
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        started.set()
        watcher.join()


def launch(
    name: str,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    interrupt: bool = True,
    stop: threading.Event | None = None,
) -> Launch:
    """Start the spec ``name`` as Jupyter would, wait for its ``kernel_info`` reply (at most
    ``timeout`` seconds, or until ``stop`` is set: the user pressed Ctrl-C), with
    ``interrupt`` interrupt a running cell, shut it down."""
    stop = stop or threading.Event()
    from jupyter_client.manager import KernelManager

    # What fails is this launch's result; jupyter_client's own log of it (a traceback, in
    # an IPython session through the app's logger) is not shown.
    manager = KernelManager(kernel_name=name, log=_QUIET)
    stderr = _StderrTail()
    with tempfile.TemporaryDirectory(prefix="kernelmagic-launch-") as cwd:
        began = time.perf_counter()
        try:
            # A remote provisioner sends its process's output where it chooses and refuses a
            # stderr of ours (gateway_provisioners passes its own): start it as Jupyter does.
            _wait_in_the_queue_at_most(manager.kernel_spec, timeout)
            metadata = getattr(manager.kernel_spec, "metadata", None) or {}
            # kernelmagic's batch provisioners relay the job's stderr where they are told.
            provisioner = checks.provisioner_name({"metadata": metadata})
            local = provisioner in (None, "local-provisioner", *checks.BATCH_PROVISIONERS)
            # A kernel's own stdout (a wrapper's "loading ...") is not the report's: it broke
            # `doctor --launch --json`.
            streams = {"stderr": stderr.write_end, "stdout": subprocess.DEVNULL} if local else {}
            batch = provisioner in checks.BATCH_PROVISIONERS
            with _JUPYTER_CLIENTS_LOG.quiet(), _given_up_on(stop, manager, batch):
                manager.start_kernel(**streams, cwd=cwd)
        except Exception as exc:  # whatever keeps the process from starting at all
            return Launch(name, FAILED, reason=f"cannot start: {exc}")
        finally:
            stderr.started()
        client = manager.client()
        # The shell channel is all a kernel_info request needs; a heartbeat thread still
        # starting when a kernel dies at once would race the client's teardown.
        client.start_channels(shell=True, iopub=interrupt, stdin=False, hb=False, control=False)
        try:
            request = client.kernel_info()
            while time.perf_counter() - began < timeout and not stop.is_set():
                if not manager.is_alive():
                    said = failure_in_one_line(stderr.text(wait=1.0))
                    return Launch(name, FAILED, reason=f"the kernel exited: {said}")
                try:
                    reply = client.get_shell_msg(timeout=0.2)
                except queue.Empty:
                    continue
                if reply["parent_header"].get("msg_id") == request:
                    content = reply["content"]
                    launched = Launch(
                        name,
                        STARTED,
                        round(time.perf_counter() - began, 3),
                        content.get("language_info", {}).get("name", ""),
                        content.get("implementation", ""),
                    )
                    if interrupt and not stop.is_set():
                        _check_interrupt(manager, client, launched, stderr)
                    return launched
            said = failure_in_one_line(stderr.text())
            return Launch(name, FAILED, reason=f"no kernel_info reply within {timeout:g} s: {said}")
        finally:
            client.stop_channels()
            with contextlib.suppress(Exception):
                manager.shutdown_kernel(now=True)
            _end_the_kernels_of(manager.connection_file)


def _end_the_kernels_of(connection_file: str) -> None:
    """Kill what still runs with this launch's connection file: a kernel a wrapper started
    in a session of its own (``setsid -w R ...``) outlives the process group that shutdown
    kills, and IRkernel does not watch its parent. Linux's /proc; elsewhere nothing."""
    if not connection_file or not os.path.isdir("/proc"):
        return
    wanted = os.fsencode(connection_file)
    for pid in (int(entry) for entry in os.listdir("/proc") if entry.isdigit()):
        try:
            if os.stat(f"/proc/{pid}").st_uid != os.getuid():
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                words = cmdline.read().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if wanted in words and pid != os.getpid():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _not_launched_because(
    info: discovery.SpecInfo, walk: TrustWalk, *, named: bool, trust: bool
) -> str:
    """Why ``doctor --launch`` does not start a spec ("" when it does): every spec it leaves
    out is named in its report with this reason."""
    if not info.read or not info.visible:
        return str(info.problems[0]) if info.problems else "Jupyter does not list it"
    provisioner = checks.provisioner_name(info.spec)
    if not named and provisioner not in (None, "local-provisioner"):
        return (
            f"it starts through the provisioner {provisioner}, which reaches other hosts; "
            "name it to start it"
        )
    why = untrusted(info, walk)
    if why and not (named and trust):
        return f"{why}; {TRUST_ADVICE}"
    return ""


def _launch_in_pool(
    loops: set[asyncio.AbstractEventLoop],
    name: str,
    timeout: float,
    interrupt: bool,
    stop: threading.Event,
) -> Launch:
    """``launch`` in a pool's thread, noting the event loop jupyter_client set for it."""
    try:
        return launch(name, timeout, interrupt=interrupt, stop=stop)
    finally:
        with contextlib.suppress(RuntimeError):  # none was made in this thread
            loops.add(asyncio.get_event_loop_policy().get_event_loop())


def launch_all(
    names: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
    *,
    trust: bool = False,
    interrupt: bool = True,
) -> LaunchReport:
    """Start every spec Jupyter lists, or the named ones, a few at a time (bounded by the
    cores). Remote (provisioner) specs are started only when named: they reach other hosts.
    A spec others can change is not launched, unless it is named and ``trust`` is given.
    Every spec left out is in the report as not launched, with why."""
    names = list(names)
    infos = discovery.get_specs(names) if names else discovery.list_specs()
    refused = {}
    with TrustWalk() as walk:  # the directories above many specs walked once
        for info in infos:
            why = _not_launched_because(info, walk, named=bool(names), trust=trust)
            if why:
                refused[info.name] = Launch(info.name, NOT_LAUNCHED, reason=f"not launched: {why}")
    wanted = [info.name for info in infos if info.name not in refused]
    launched: dict[str, Launch] = {}
    if wanted:
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, len(wanted)))
        loops: set[asyncio.AbstractEventLoop] = set()
        try:
            started = [pool.submit(_launch_in_pool, loops, n, timeout, interrupt, stop)
                       for n in wanted]  # fmt: skip
            launched = {n: future.result() for n, future in zip(wanted, started, strict=True)}
        except KeyboardInterrupt:  # the launches under way stop waiting and shut down
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            # The event loops jupyter_client made in the pool's threads go with it: left to
            # the interpreter's exit, Python 3.10 printed an error closing each after Ctrl-C.
            for loop in loops:
                if not loop.is_running() and not loop.is_closed():
                    loop.close()
    return LaunchReport([refused.get(i.name) or launched[i.name] for i in infos])
