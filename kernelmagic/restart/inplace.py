"""Restart a running ipykernel in place: the same process (``os.execve`` with the same argv
and connection file, so the same PID) in a new environment, with no message lost.

In the old process, once the activating cell has run:

1. what ipykernel sends for that cell from then on (its ``execute_reply`` and the status
   messages) is held back, so the client sends nothing that waits on that cell yet;
2. the shell socket is no longer read; the requests ipykernel already received (Run All
   sends every cell at once) go on through ipykernel's own queue, in order, into a recorder
   instead of their handlers, followed by a marker;
3. when the marker comes out of the queue, what the shell socket still receives is taken
   while its connections are half-closed (``quiesce``); the activating request, its reply
   and the recorded requests are written to an anonymous file the new process inherits,
   ipykernel's sockets are closed (which sends what IOPub still had) and the process execs
   itself.

The new process takes over in ``resume``.

Nothing here imports IPython or ipykernel: the running kernel's objects are passed in.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kernelmagic.domain.ownership import others_can_change_above
from kernelmagic.restart import adapters, quiesce, resume

_MARKER = "kernelmagic_handoff_marker"
# ipykernel's own teardown waits for IOPub to send what it holds (its sockets linger 1 s).
_CLOSE_TIMEOUT = 5.0


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
    if kernel is None or adapters.adapter_for(kernel, app) is None:
        found = getattr(sys.modules.get("ipykernel"), "__version__", "unknown")
        return (
            f"ipykernel {found} is not one the in-place restart is tested with "
            f"({adapters.tested_range()})"
        )
    parent = (kernel.get_parent("shell") if hasattr(kernel, "get_parent") else {}) or {}
    if (parent.get("header") or {}).get("subshell_id"):
        return "this cell runs in a subshell; activate from the kernel's main shell"
    if (parent.get("content") or {}).get("silent"):
        # IPython runs no post_run_cell for a silent request: the restart would wait for
        # whatever cell comes next.
        return "this request is silent (no cell to restart after); run it as a cell"
    if not os.path.isfile(getattr(app, "connection_file", "") or ""):
        return "its connection file is gone"
    # The new process reads its key and ports from the file again: whoever could replace
    # the file, or rename a directory above it, would get a kernel of yours to run code in.
    path = getattr(app, "abs_connection_file", None) or os.path.abspath(app.connection_file)
    replaceable = others_can_change_above([path])
    if replaceable:
        return (
            f"another user could replace its connection file before the new process reads "
            f"it: {replaceable}; keep the runtime dir yours (JUPYTER_RUNTIME_DIR)"
        )
    idents = getattr(kernel, "_parent_ident", {}).get("shell")
    if isinstance(idents, list) and idents and bytes(idents[0])[:1] == b"\0":
        # libzmq made this identity up for one connection; after the restart the client
        # connects under another, and the cell's reply could not reach it.
        return "the client's socket has no identity of its own, so it cannot be answered again"
    return None


def unguarded_close(app: Any) -> str | None:
    """Why a request the client sends in the moment the old process closes its shell socket
    could still be lost here (``quiesce`` cannot half-close its connections), or None."""
    if getattr(app, "transport", "tcp") != "tcp":
        return f"the kernel uses the {app.transport} transport, not tcp"
    if not quiesce.can_see_connections():
        return "this system has no /proc to find the shell socket's connections in"
    return None


class Handoff:
    """The old process's side: arm it in the activating cell; the rest runs by itself.

    Every foreign object it changes (``session.send``, ``shell_handlers``, the shell
    stream's reading) is changed in ``_after_cell`` and put back by ``_unwind`` on any
    failure before the shell socket is closed: the kernel then answers the activating cell,
    with a line saying why it did not restart, and every request behind it.
    """

    def __init__(self, app: Any, environ: Mapping[str, str]) -> None:
        self.app, self.kernel = app, app.kernel
        self.session = self.kernel.session
        self.environ = dict(environ)
        adapter = adapters.adapter_for(self.kernel, app)
        if adapter is None:  # cannot_restart said so first
            raise RuntimeError("untested ipykernel")
        self.adapter = adapter
        self.reply: list[bytes] | None = None  # the activating cell's execute_reply
        self.request: list[bytes] | None = None  # ... and its execute_request
        self.held: list[tuple[tuple[Any, ...], dict[str, Any]]] = []  # sends held back
        self.queued: list[list[bytes]] = []
        self.recorded_ids: set[str] = set()  # the msg_ids of the requests in queued
        self.handoff_fd: int | None = None
        self._send = self.session.send
        self._handlers = self.kernel.shell_handlers

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
        try:
            # A place for the handoff that needs no disk (TMPDIR gone or full is no matter).
            self.handoff_fd = _handoff_file()
            self._hold_back_replies()
            self.kernel.shell_handlers = _EveryType(self._record)
            marker = self.session.msg(_MARKER, {})
            marker = self.session.serialize(marker, ident=[b"kernelmagic"])
            self.adapter.stop_reading_and_mark(marker, self._failed_elsewhere)
        except Exception as exc:
            self._unwind(exc)

    def _failed_elsewhere(self, exc: BaseException) -> None:
        """A failure in the shell channel's thread: unwind in the main thread."""
        self.kernel.io_loop.add_callback(lambda: self._unwind(exc))

    def _unwind(self, exc: BaseException) -> None:
        """Put back what ``_after_cell`` changed, say why, release what was held, and let
        the kernel answer every request it was handed (it keeps its environment)."""
        self.session.send, self.kernel.shell_handlers = self._send, self._handlers
        if self.handoff_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.handoff_fd)
        said = f"Not restarted: {type(exc).__name__}: {exc}; this kernel keeps its environment.\n"
        held, self.held = self.held, []
        if not held:  # still inside the activating cell: its output takes the line
            sys.stderr.write(said)
        bind = inspect.signature(self._send).bind
        for args, kwargs in held:
            kind, parent = _message_type(args, kwargs), None
            with contextlib.suppress(TypeError):  # not session.send's arguments
                parent = bind(*args, **kwargs).arguments.get("parent")
            if kind == "status" and _msg_id(parent) in self.recorded_ids:
                # A recorded request's busy and idle: it is dispatched again, and says so
                # again. Its idle sent now would come before its output, which a client
                # (nbclient, JupyterLab) stops reading at that idle.
                continue
            if kind == "execute_reply":
                content = {"name": "stderr", "text": said}
                with contextlib.suppress(Exception):
                    self._send(self.kernel.iopub_socket, "stream", content, parent)
            self._send(*args, **kwargs)
        # The recorded requests were read once already: their signatures are in the
        # session's replay guard, which would refuse them as duplicates the second time.
        history: set[bytes] = getattr(self.session, "digest_history", set())
        for frames in self.queued:
            with contextlib.suppress(ValueError, IndexError):  # not a message: no signature
                history.discard(self.session.feed_identities(frames)[1][0])
        with contextlib.suppress(Exception):
            self.adapter.requeue(self.queued)

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
                self.held.append((args, kwargs))
                return msg
            return send(*args, **kwargs)

        self.session.send = send_or_hold

    def _record(self, stream: Any, idents: list[bytes], msg: dict[str, Any]) -> None:
        if msg["header"]["msg_type"] == _MARKER:
            if self.adapter.failure is not None:  # a step in the socket's thread failed
                self._unwind(self.adapter.failure)
                return
            try:
                self._exec()  # does not return
            except Exception as exc:  # before the shell socket closed: nothing is lost
                self._unwind(exc)
            return
        buffers = [bytes(b) for b in msg.get("buffers") or ()]
        self.queued.append(self.session.serialize(msg, ident=idents) + buffers)
        if (msg_id := _msg_id(msg)) is not None:
            self.recorded_ids.add(msg_id)

    def _exec(self) -> None:
        fd = self.handoff_fd
        assert fd is not None
        # From here on the old process cannot go back: its shell socket is closed.
        self.queued += self.adapter.take_last()
        document = {
            "request": resume.frames_text(self.request or []),
            "reply": resume.frames_text(self.reply or []),
            "queued": [resume.frames_text(frames) for frames in self.queued],
            "children": _children(),  # the new process reaps them
            # Every client's IOPub connection, to be back before what was kept goes out:
            # jupyter_server has two per kernel (its activity watcher, the browser's).
            "iopub_clients": _iopub_clients(self.app),
        }
        _write_all(fd, json.dumps(document).encode())
        env = dict(self.environ)
        env[resume.SAVED_STARTUP] = env.get("PYTHONSTARTUP", "")
        env["PYTHONSTARTUP"] = resume.STARTUP_FILE
        env[resume.HANDOFF_FD] = str(fd)
        env[resume.SAVED_CWD] = os.getcwd()
        argv = _absolute_connection_file(list(sys.orig_argv), self.app)
        self._close_kernel()
        # The new interpreter puts its working directory first on sys.path while it imports
        # ipykernel: start it where no one can have left a module; resume() goes back.
        os.chdir("/")
        # An interrupt during the restart would kill the new process while it imports
        # ipykernel: ignored until ipykernel sets its own handling (an ignored signal stays
        # ignored across exec; ipykernel itself ignores SIGINT between cells).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            os.execve(sys.executable, argv, env)
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


def _absolute_connection_file(argv: list[str], app: Any) -> list[str]:
    """argv with the connection file's path made absolute: the kernel may have changed its
    working directory (``%cd``) since it read a relative one."""
    path = getattr(app, "abs_connection_file", None)
    if not isinstance(path, str):
        return argv
    for at, word in enumerate(argv):
        if word in ("-f", "--f", "--IPKernelApp.connection_file") and at + 1 < len(argv):
            argv[at + 1] = path
        elif word.startswith(("--f=", "-f=", "--IPKernelApp.connection_file=")):
            argv[at] = word.split("=", 1)[0] + "=" + path
    return argv


def _msg_id(msg: Any) -> str | None:
    """The msg_id of a message, or of a header (a parent may be given as either)."""
    header = msg.get("header", msg) if isinstance(msg, dict) else None
    found = header.get("msg_id") if isinstance(header, dict) else None
    return found if isinstance(found, str) else None


def _message_type(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    msg = args[1] if len(args) > 1 else kwargs.get("msg_or_type")
    return msg if isinstance(msg, str) else (msg or {}).get("msg_type", "")


class _EveryType(dict[str, Callable[..., Any]]):
    """A ``shell_handlers`` that sends every message type to one handler."""

    def __init__(self, handler: Callable[..., Any]) -> None:
        super().__init__()
        self.handler = handler

    def get(self, key: Any, default: Any = None) -> Callable[..., Any]:
        return self.handler

    def __getitem__(self, key: Any) -> Callable[..., Any]:
        return self.handler

    def __contains__(self, key: Any) -> bool:
        return True


def _handoff_file() -> int:
    """A file the exec'd process inherits and nobody else can read, leaving nothing behind:
    an anonymous memory file where Linux has them, else an unlinked temporary file."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("kernelmagic-handoff", 0)  # not close-on-exec
    else:
        fd, path = tempfile.mkstemp(prefix="kernelmagic-handoff-")
        os.unlink(path)
    os.set_inheritable(fd, True)
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)


def _iopub_clients(app: Any) -> int | None:
    """How many connections the IOPub port has; None where that cannot be seen."""
    port = getattr(app, "iopub_port", None)
    if getattr(app, "transport", "tcp") != "tcp" or not port or not quiesce.can_see_connections():
        return None
    return len(quiesce.established_on(port))


def _children() -> list[int]:
    """This process's children (Linux: /proc/self/task/*/children; elsewhere none found)."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/children") as f:
                found.update(int(pid) for pid in f.read().split())
    return sorted(found)
