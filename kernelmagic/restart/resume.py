"""The new process's side of the in-place restart (``inplace`` is the old one's): at
IPython's startup (``PYTHONSTARTUP`` points at ``resume_startup.py`` for that one start) it
reads the handoff, queues the activating request and the recorded ones before ipykernel reads
its socket, answers the activating cell once the client is back, and reaps the children the
old process started.

Nothing here imports IPython or ipykernel: the running kernel's objects are passed in.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from kernelmagic.restart import adapters, quiesce

# What the old process passes through its environment across the exec.
HANDOFF_FD = "KERNELMAGIC_HANDOFF_FD"
SAVED_STARTUP = "KERNELMAGIC_SAVED_PYTHONSTARTUP"
SAVED_CWD = "KERNELMAGIC_SAVED_CWD"
STARTUP_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resume_startup.py")
# How long the new process waits for the client to connect again before it goes on: a
# client that never comes back delays the others (and the requests behind) no longer.
_RECONNECT_TIMEOUT = 2.0
# What IOPub publishes before the client has subscribed again is lost. Since ipykernel 7.2
# its XPUB socket says when a client subscribes (adapters.watch_subscriptions); before, a
# PUB socket cannot. On Linux the kernel's TCP table helps: once a connection to the IOPub
# port is established, the client's subscription follows within milliseconds when it reads
# IOPub (_IOPUB_SETTLE). Elsewhere: jupyter_client retries every 0.1 s plus up to 0.1 s of
# jitter (libzmq's defaults), so 0.3 s after the new process started it is back.
_IOPUB_SETTLE = 0.1
_IOPUB_GRACE = 0.3
_REGREET = 0.02  # a new greeting for clients that subscribed after the last one was sent


def resume(shell: Any) -> None:
    """Called at IPython's startup in the new process: take over the handed-off messages."""
    fd = os.environ.pop(HANDOFF_FD, None)
    saved = os.environ.pop(SAVED_STARTUP, None)
    cwd = os.environ.pop(SAVED_CWD, None)
    if fd is None:
        return
    if cwd:
        with contextlib.suppress(OSError):
            os.chdir(cwd)
        if sys.path and sys.path[0] == "/":
            sys.path[0] = cwd  # where a start from that directory would have put it
    if saved:
        os.environ["PYTHONSTARTUP"] = saved
    else:
        os.environ.pop("PYTHONSTARTUP", None)
    with os.fdopen(int(fd), "rb") as f:
        document = json.load(f)
    _Resumption(shell.kernel, document).install()
    _reap_in_background(document.get("children", []))
    if saved:  # the user's own startup file, which IPython would have run
        shell.safe_execfile(saved, shell.user_ns)


class _Resumption:
    def __init__(self, kernel: Any, document: dict[str, Any]) -> None:
        self.kernel = kernel
        adapter = adapters.adapter_for(kernel, kernel.parent)
        assert adapter is not None  # the same ipykernel the old process had
        self.adapter = adapter
        self.started = time.monotonic()
        self.reply = _bytes(document["reply"])
        self.first = [_bytes(document["request"]), *map(_bytes, document["queued"])]
        # ipykernel 7.2 and later say when a client subscribes to IOPub again.
        self.subscribed = threading.Event()
        watching = self.adapter.watch_subscriptions(self.subscribed)
        # The IOPub connections the old process had, where subscriptions can be seen: each
        # client back before what was kept goes out (jupyter_server holds two per kernel, and
        # the first one back took it all).
        clients = document.get("iopub_clients")
        self.iopub_clients = clients if watching and isinstance(clients, int) else 0
        if self.iopub_clients > 1:
            self.adapter.release_on_subscription = False
        # Where it can tell when a client subscribes, IOPub keeps what it publishes until
        # then: a client that reads IOPub only later still gets every message.
        self.adapter.hold_iopub()

    def install(self) -> None:
        kernel, start = self.kernel, self.kernel.start
        reply_frames = self.kernel.session.feed_identities(self.reply)[1]
        count = self.kernel.session.deserialize(reply_frames)["content"]["execution_count"]
        kernel.shell.execution_count = count + 1
        handle = kernel.shell_handlers["execute_request"]

        def answer_activating_cell(stream: Any, idents: Any, msg: Any) -> None:
            kernel.shell_handlers["execute_request"] = handle
            self._send_reply()
            self._wait_for_iopub_subscriber()  # ipykernel publishes the idle status next

        def start_after_handed_off_requests() -> None:
            kernel.shell_handlers["execute_request"] = answer_activating_cell
            if isinstance(self.adapter, adapters.MainThreadQueue):
                start()  # ipykernel 6 makes its queue as it starts
                self.adapter.queue_first(self.first)
            else:
                self.adapter.queue_first(self.first)  # ahead of what the socket brings
                start()

        kernel.start = start_after_handed_off_requests

    def _send_reply(self) -> None:
        """Send the held reply on the shell socket once the client that asked is connected
        again (a ROUTER socket drops what it cannot route)."""
        stream = self.kernel.shell_stream
        socket = stream.socket
        deadline = time.monotonic() + _RECONNECT_TIMEOUT

        def send() -> None:
            socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
            try:
                while True:
                    try:
                        socket.send_multipart(self.reply)
                        return
                    except zmq.ZMQError as exc:
                        if exc.errno != zmq.EHOSTUNREACH or time.monotonic() > deadline:
                            os.write(2, b"kernelmagic: the client did not come back\n")
                            return
                        time.sleep(0.01)
            finally:
                socket.setsockopt(zmq.ROUTER_MANDATORY, 0)
                # A send straight on the socket consumes the wake-up of a request that
                # arrived meanwhile (libzmq's descriptor is edge-triggered), and the
                # stream, which did not send, would wait for it forever: read it now.
                if not stream.closed():
                    stream.flush(zmq.POLLIN)

        self.adapter.in_socket_thread(send)

    def _iopub_connected(self) -> bool | None:
        """Whether a client is connected to the IOPub port; None where that cannot be seen."""
        app = getattr(self.kernel, "parent", None)
        port = getattr(app, "iopub_port", None)
        if getattr(app, "transport", "tcp") != "tcp" or not port:
            return None
        return quiesce.connected_to(port) if quiesce.can_see_connections() else None

    def _wait_for_iopub_subscriber(self) -> None:
        """Until a client is subscribed to IOPub again, as far as this ipykernel and this
        system can tell, and at most _RECONNECT_TIMEOUT. What IOPub kept meanwhile
        (``hold_iopub``) goes out when a subscription is seen, or here, where none can be:
        a subscription that came before the watch began is told by nothing else."""
        if self.iopub_clients > 1:
            self._wait_for_every_iopub_client(self.iopub_clients)
            return
        if self.subscribed.is_set():
            return
        if self._iopub_connected() is None:
            self.subscribed.wait(max(0.0, self.started + _IOPUB_GRACE - time.monotonic()))
            self.adapter.release_iopub()
            return
        deadline = time.monotonic() + _RECONNECT_TIMEOUT
        while time.monotonic() < deadline:
            if self._iopub_connected():
                if self._settle() is not False:
                    self.adapter.release_iopub()
                return
            if self.subscribed.wait(0.01):
                return
        # No client back yet: its subscription, when it comes, releases what was kept.

    def _wait_for_every_iopub_client(self, clients: int) -> None:
        """Until as many IOPub connections as the old process had are back and subscribed
        (a greeting reached each), and at most _RECONNECT_TIMEOUT from the start; then what
        IOPub kept goes out, and from then on a client's subscription sends it."""
        app = getattr(self.kernel, "parent", None)
        port = getattr(app, "iopub_port", None)
        deadline = self.started + _RECONNECT_TIMEOUT
        reached, greeted = None, 0.0
        try:
            while port and time.monotonic() < deadline:
                if len(quiesce.established_on(port)) >= clients and self.subscribed.is_set():
                    if reached is not None and reached(every=True):
                        return
                    if time.monotonic() - greeted > _REGREET:  # one that subscribed since
                        reached, greeted = self._greet(), time.monotonic()
                        if reached is None:  # this system cannot tell: as before
                            return
                time.sleep(0.002)
        finally:
            self.adapter.release_on_subscription = True
            self.adapter.release_iopub()

    def _settle(self) -> bool | None:
        """Until a client subscribes, or IOPub is seen to reach every connection it has,
        and at most _IOPUB_SETTLE: the subscription follows the connection, and may have
        come before the watch began (the client is back within 0.1 s of ipykernel binding
        IOPub, and ipykernel comes here later). True when a client is seen subscribed (one
        that reads would lose what is kept for another), False when every connection is seen
        not subscribed (clients that do not read yet), None when unseen."""
        deadline = time.monotonic() + _IOPUB_SETTLE
        reached = self._greet()
        while not self.subscribed.wait(0.001):
            if reached is not None and reached(every=True):
                return True
            if time.monotonic() > deadline:
                return None if reached is None else reached(every=False)
        return True

    def _greet(self) -> Callable[..., bool] | None:
        """Send a greeting on IOPub; a test of whether its bytes left on every connection
        IOPub had when it was sent (``every=False``: on one of them). IOPub sends a client
        what it subscribed to and nothing else, so a connection the greeting left on is
        subscribed. None where this cannot be seen (no greeting in this ipykernel, no byte
        counts in this system)."""
        app = getattr(self.kernel, "parent", None)
        port = getattr(app, "iopub_port", None)
        if getattr(app, "transport", "tcp") != "tcp" or not port:
            return None
        connections = quiesce.established_on(port)
        before = {inode: quiesce.bytes_sent(fd, inode) for inode, fd in connections.items()}
        if not before or None in before.values():
            return None
        size = self.adapter.greet_subscribers()
        if size is None:
            return None

        def reached(every: bool = True) -> bool:
            return (all if every else any)(
                (quiesce.bytes_sent(fd, inode) or 0) - (before[inode] or 0) >= size
                for inode, fd in connections.items()
            )

        return reached


def _reap_in_background(pids: list[int]) -> None:
    """Wait for the children the old process started: nothing else in this process knows of
    them, and a child nobody waits for stays a zombie until the kernel exits."""

    def reap() -> None:
        waiting = set(pids)
        while waiting:
            for pid in list(waiting):
                try:
                    ended = os.waitpid(pid, os.WNOHANG)[0] == pid
                except ChildProcessError:
                    ended = True
                if ended:
                    waiting.discard(pid)
            time.sleep(1.0)

    if pids:
        threading.Thread(target=reap, name="kernelmagic-reaper", daemon=True).start()


def frames_text(frames: list[Any]) -> list[str]:
    """A message's frames as JSON can carry them across the exec (the handoff's codec)."""
    return [base64.b64encode(bytes(f)).decode("ascii") for f in frames]


def _bytes(frames: list[str]) -> list[bytes]:
    return [base64.b64decode(f) for f in frames]
