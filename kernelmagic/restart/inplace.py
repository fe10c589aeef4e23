"""Restart a running ipykernel in place: the same process (``os.execve`` with the same argv
and connection file, so the same PID) in a new environment, with no message lost.

In the old process, once the activating cell has run:

1. what ipykernel sends for that cell from then on (its ``execute_reply`` and the status
   messages) is held back, so the client sends nothing that waits on that cell yet;
2. the shell socket is no longer read; the requests ipykernel already received (Run All
   sends every cell at once) go on through ipykernel's own queue, in order, into a recorder
   instead of their handlers, followed by a marker;
3. when the marker comes out of the queue, the activating request, its reply and the
   recorded requests are written to an unlinked file the new process inherits, ipykernel's
   sockets are closed (which sends what IOPub still had) and the process execs itself.

The new process finds the file at IPython's startup (``PYTHONSTARTUP`` points at
``resume_startup.py`` for that one start). Before it reads its socket it queues the
activating request, answered by sending the held reply once the client's shell socket is
connected again (and, before ipykernel publishes the cell's idle status, once its IOPub
socket is), then the recorded requests: they run in order, in the new environment, and
whatever the client sends later comes after them.

Nothing here imports IPython or ipykernel: the running kernel's objects are passed in.
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import zmq

HANDOFF_FD = "KERNELMAGIC_HANDOFF_FD"
SAVED_STARTUP = "KERNELMAGIC_SAVED_PYTHONSTARTUP"
STARTUP_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resume_startup.py")
_MARKER = "kernelmagic_handoff_marker"
# ipykernel's own teardown waits for IOPub to send what it holds (its sockets linger 1 s).
_CLOSE_TIMEOUT = 5.0
# How long the new process waits for the client to connect again before it answers anyway.
_RECONNECT_TIMEOUT = 30.0
# IOPub is a PUB socket: what it publishes before the client has subscribed again is lost,
# and it cannot say when a subscriber is back. On Linux the kernel's TCP table can: once a
# connection to the IOPub port is established, the client's greeting and subscription follow
# within milliseconds (_IOPUB_SETTLE). Elsewhere: jupyter_client retries every 0.1 s plus up
# to 0.1 s of jitter (libzmq's defaults), so 0.3 s after the new process started it is back.
_IOPUB_SETTLE = 0.1
_IOPUB_GRACE = 0.3
_TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_ESTABLISHED = "01"


def _threaded(kernel: Any) -> bool:
    """ipykernel >= 7 reads the shell socket in a thread of its own."""
    return getattr(kernel, "shell_channel_thread", None) is not None


_armed: list[Handoff] = []  # at most one restart waits for the current cell


def cannot_restart(app: Any) -> str | None:
    """Why this kernel cannot be restarted in place, or None."""
    if _armed:
        return "a restart already waits for this cell to finish"
    if not getattr(app, "exec_PYTHONSTARTUP", False):
        return "this kernel's config sets exec_PYTHONSTARTUP off, and the restart resumes there"
    if getattr(app, "code_to_run", "") or getattr(app, "file_to_run", ""):
        return "this kernel runs code given on its command line, so IPython skips PYTHONSTARTUP"
    kernel = getattr(app, "kernel", None)
    if kernel is None or not (_threaded(kernel) or hasattr(kernel, "schedule_dispatch")):
        return "this ipykernel queues its messages in a way kernelmagic does not know"
    if not os.path.isfile(getattr(app, "connection_file", "") or ""):
        return "its connection file is gone"
    idents = getattr(kernel, "_parent_ident", {}).get("shell")
    if isinstance(idents, list) and idents and bytes(idents[0])[:1] == b"\0":
        # libzmq made this identity up for one connection; after the restart the client
        # connects under another, and the cell's reply could not reach it.
        return "the client's socket has no identity of its own, so it cannot be answered again"
    return None


class Handoff:
    """The old process's side: arm it in the activating cell; the rest runs by itself."""

    def __init__(self, app: Any, environ: Mapping[str, str]) -> None:
        self.app, self.kernel = app, app.kernel
        self.session = self.kernel.session
        self.environ = dict(environ)
        self.reply: list[bytes] | None = None  # the activating cell's execute_reply
        self.request: list[bytes] | None = None  # ... and its execute_request
        self.queued: list[list[bytes]] = []

    def arm(self) -> None:
        """Restart once the current cell has finished (IPython's post_run_cell)."""
        _armed.append(self)
        self.kernel.shell.events.register("post_run_cell", self._after_cell)

    def _after_cell(self, result: Any = None) -> None:
        self.kernel.shell.events.unregister("post_run_cell", self._after_cell)
        _armed.remove(self)
        if result is not None and not result.success:
            print("Not restarted: the cell failed; this kernel keeps its environment.")
            return
        send, handlers = self.session.send, self.kernel.shell_handlers
        try:
            self._hold_back_replies()
            self.kernel.shell_handlers = _EveryType(self._record)
            marker = self.session.msg(_MARKER, {})
            marker = self.session.serialize(marker, ident=[b"kernelmagic"])
            if _threaded(self.kernel):
                self._mark_from_channel_thread(marker)
            else:
                self._mark_in_main_thread(marker)
        except Exception as exc:  # nothing was handed over yet: carry on as before
            self.session.send, self.kernel.shell_handlers = send, handlers
            print(f"Not restarted: {exc}; this kernel keeps its environment.")

    def _hold_back_replies(self) -> None:
        send, bind = self.session.send, inspect.signature(self.session.send).bind

        def send_or_hold(*args: Any, **kwargs: Any) -> Any:
            call = bind(*args, **kwargs).arguments
            msg = call["msg_or_type"]
            if isinstance(msg, str):
                fields = ("content", "parent", "header", "metadata")
                msg = self.session.msg(msg, **{k: call.get(k) for k in fields})
            kind = msg["msg_type"]
            if kind == "status" or (kind == "execute_reply" and self.reply is None):
                if kind == "execute_reply":
                    ident = call.get("ident")
                    self.reply = self.session.serialize(msg, ident=ident)
                    self.request = self.session.serialize(call["parent"], ident=ident)
                return msg
            return send(*args, **kwargs)

        self.session.send = send_or_hold

    def _mark_in_main_thread(self, marker: list[bytes]) -> None:
        """ipykernel 6: the main thread reads the shell socket into ``msg_queue``."""
        stream = self.kernel.shell_stream
        stream.stop_on_recv()
        for frames in _drain(stream.socket):
            self.kernel.schedule_dispatch(self.kernel.dispatch_shell, frames)
        self.kernel.schedule_dispatch(self.kernel.dispatch_shell, _frames(marker))

    def _mark_from_channel_thread(self, marker: list[bytes]) -> None:
        """ipykernel 7: a thread reads the shell socket and forwards to the main thread."""
        channel = self.kernel.shell_channel_thread
        stream = self.kernel.shell_stream

        async def stop_and_mark() -> None:
            lock = getattr(channel, "asyncio_lock", None) or contextlib.nullcontext()
            async with lock:  # after the forwards already under way
                stream.stop_on_recv()
                to_main = channel.manager.get_shell_channel_to_subshell_socket(None)
                for frames in _drain(stream.socket):
                    to_main.send_multipart(frames, copy=False)
                to_main.send_multipart(marker)

        channel.io_loop.add_callback(stop_and_mark)

    def _record(self, stream: Any, idents: list[bytes], msg: dict[str, Any]) -> None:
        if msg["header"]["msg_type"] == _MARKER:
            self._exec()  # does not return
        buffers = [bytes(b) for b in msg.get("buffers") or ()]
        self.queued.append(self.session.serialize(msg, ident=idents) + buffers)

    def _exec(self) -> None:
        document = {
            "request": _text(self.request or []),
            "reply": _text(self.reply or []),
            "queued": [_text(frames) for frames in self.queued],
        }
        fd = _inherited_file(json.dumps(document).encode())
        env = dict(self.environ)
        env[SAVED_STARTUP] = env.get("PYTHONSTARTUP", "")
        env["PYTHONSTARTUP"] = STARTUP_FILE
        env[HANDOFF_FD] = str(fd)
        self._close_kernel()
        try:
            os.execve(sys.executable, sys.orig_argv, env)
        except OSError as exc:  # the interpreter was started in this environment moments ago
            os.write(2, f"kernelmagic: the in-place restart failed: {exc}\n".encode())
            os._exit(1)

    def _close_kernel(self) -> None:
        """What an exit does, then ipykernel's own teardown, which sends what IOPub holds."""
        with contextlib.suppress(Exception):
            self.kernel.shell.atexit_operations()  # history, temp files, user finalizers
        for name, fd in (("stdout", 1), ("stderr", 2)):
            stream = getattr(sys, name)
            with contextlib.suppress(Exception):
                stream.flush()
            # ipykernel points fds 1 and 2 at pipes its threads read; the new process needs
            # the kernel's real output back, not pipes nobody reads.
            copy = getattr(stream, "_original_stdstream_copy", None)
            if isinstance(copy, int):
                os.dup2(copy, getattr(stream, "_original_stdstream_fd", fd))
        closer = threading.Thread(target=self.app.close, daemon=True)
        closer.start()
        closer.join(_CLOSE_TIMEOUT)


class _EveryType(dict):
    """A ``shell_handlers`` that sends every message type to one handler."""

    def __init__(self, handler: Callable[..., Any]) -> None:
        super().__init__()
        self.handler = handler

    def get(self, key: Any, default: Any = None) -> Any:
        return self.handler

    def __getitem__(self, key: Any) -> Any:
        return self.handler

    def __contains__(self, key: Any) -> bool:
        return True


def _inherited_file(data: bytes) -> int:
    """An unlinked file holding ``data`` that the exec'd process inherits: nobody else can
    read it, and nothing is left behind."""
    fd, path = tempfile.mkstemp(prefix="kernelmagic-handoff-")
    os.unlink(path)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    return fd


def _drain(socket: Any) -> list[list[Any]]:
    """What the socket received and nobody read yet."""
    received = []
    while True:
        try:
            received.append(socket.recv_multipart(zmq.NOBLOCK, copy=False))
        except zmq.Again:
            return received


def _frames(frames: list[bytes]) -> list[zmq.Frame]:
    return [zmq.Frame(bytes(f)) for f in frames]


def _text(frames: list[Any]) -> list[str]:
    return [base64.b64encode(bytes(f)).decode("ascii") for f in frames]


def _bytes(frames: list[str]) -> list[bytes]:
    return [base64.b64decode(f) for f in frames]


# --- the new process -------------------------------------------------------------------


def resume(shell: Any) -> None:
    """Called at IPython's startup in the new process: take over the handed-off messages."""
    fd = os.environ.pop(HANDOFF_FD, None)
    saved = os.environ.pop(SAVED_STARTUP, None)
    if fd is None:
        return
    if saved:
        os.environ["PYTHONSTARTUP"] = saved
    else:
        os.environ.pop("PYTHONSTARTUP", None)
    with os.fdopen(int(fd), "rb") as f:
        document = json.load(f)
    _Resumption(shell.kernel, document).install()
    if saved:  # the user's own startup file, which IPython would have run
        shell.safe_execfile(saved, shell.user_ns)


class _Resumption:
    def __init__(self, kernel: Any, document: dict[str, Any]) -> None:
        self.kernel = kernel
        self.started = time.monotonic()
        self.reply = _bytes(document["reply"])
        self.first = [_bytes(document["request"]), *map(_bytes, document["queued"])]

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
            if _threaded(kernel):
                self._queue_from_channel_thread()
                start()
            else:
                start()
                for frames in self.first:
                    kernel.schedule_dispatch(kernel.dispatch_shell, _frames(frames))

        kernel.start = start_after_handed_off_requests

    def _queue_from_channel_thread(self) -> None:
        manager = self.kernel.shell_channel_thread.manager  # made in the main thread

        def queue() -> None:
            to_main = manager.get_shell_channel_to_subshell_socket(None)
            for frames in self.first:
                to_main.send_multipart(frames)

        self._in_shell_socket_thread(queue)

    def _send_reply(self) -> None:
        """Send the held reply on the shell socket once the client that asked is connected
        again (a ROUTER socket drops what it cannot route)."""
        socket = self.kernel.shell_stream.socket
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

        self._in_shell_socket_thread(send)

    def _wait_for_iopub_subscriber(self) -> None:
        app = getattr(self.kernel, "parent", None)
        port = getattr(app, "iopub_port", None)
        if getattr(app, "transport", "tcp") != "tcp" or not port or not _tcp_table_readable():
            time.sleep(max(0.0, self.started + _IOPUB_GRACE - time.monotonic()))
            return
        deadline = time.monotonic() + _RECONNECT_TIMEOUT
        while not _connected_to(port) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(_IOPUB_SETTLE)

    def _in_shell_socket_thread(self, work: Callable[[], None]) -> None:
        """Run ``work`` in the thread that owns the shell socket; wait for it."""
        if not _threaded(self.kernel):
            work()
            return
        done = threading.Event()

        def run() -> None:
            try:
                work()
            finally:
                done.set()

        self.kernel.shell_channel_thread.io_loop.add_callback(run)
        done.wait(_RECONNECT_TIMEOUT + 5)


def _tcp_table_readable() -> bool:
    return os.access(_TCP_TABLES[0], os.R_OK)


def _connected_to(port: int) -> bool:
    """Whether an established TCP connection has ``port`` as its local port: one this
    process accepted on the socket bound there."""
    wanted = f":{port:04X}"
    for table in _TCP_TABLES:
        try:
            with open(table, encoding="ascii") as f:
                next(f, None)  # the header
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == _ESTABLISHED and fields[1].endswith(wanted):
                        return True
        except OSError:
            continue
    return False
