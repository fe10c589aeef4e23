"""One small adapter per ipykernel generation: where its shell requests wait, and which
thread may touch its shell socket. Chosen by ``ipykernel.version_info`` within the versions
CI tests; any other ipykernel is refused (``%kernel_activate`` says to use --no-restart)
rather than guessed at from the attributes it happens to have.

- ipykernel 6 reads the shell socket in the main thread and queues each request in
  ``msg_queue`` through ``schedule_dispatch``.
- ipykernel 7 reads it in a thread of its own (``shell_channel_thread``), which forwards
  each request to the main thread through a socket pair (``get_shell_channel_to_subshell_
  socket(None)``); only that thread may touch the shell socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable
from typing import Any

import zmq

from kernelmagic.restart import quiesce

# The generations CI runs the restart tests against (.ci/run): major -> lowest minor tested.
TESTED = {6: 6, 7: 0}
_WAIT = 5.0  # a call into the shell socket's thread that takes longer has failed
# How long requests wait unforwarded for a failed activation's to be put back first.
_HOLD = 30.0
# Characters a message's id and date can differ by from those of another one.
_SIZE_SLACK = 32
# What the restarted process publishes before a client subscribes again is kept, at most
# this many messages (libzmq's default high-water mark: what a connected client that does
# not read would have queued), for at most this long.
_HELD_MESSAGES = 1000
_HELD_SECONDS = 60.0


def _frames(frames: list[bytes]) -> list[zmq.Frame]:
    return [zmq.Frame(bytes(f)) for f in frames]


class Adapter:
    """What the restart does to a running ipykernel, in that ipykernel's own terms."""

    # Whether a client's subscription sends what IOPub kept: not while the restart waits for
    # every client to be back (the first one back would take it from the others).
    release_on_subscription = True

    def __init__(self, kernel: Any, app: Any) -> None:
        self.kernel, self.app = kernel, app
        self.stream = kernel.shell_stream
        self.receiver: Callable[..., Any] | None = getattr(self.stream, "_recv_callback", None)
        # Read off the socket but not yet in the kernel's queue when a step failed: put
        # back first by requeue, so that nothing read is dropped.
        self.undelivered: list[list[bytes]] = []
        # A failure in the shell socket's thread, told to the main thread by the marker, in
        # the marker's place among the requests (``ShellChannelThread``).
        self.failure: BaseException | None = None
        self._welcome: Callable[[str], None] | None = None  # IOPub's own greeting, unwrapped

    @property
    def shell_port(self) -> int | None:
        return getattr(self.app, "shell_port", None) if self.app.transport == "tcp" else None

    def in_socket_thread(self, work: Callable[[], None]) -> None:
        """Run ``work`` where the shell socket may be touched; wait for it; its exception
        is raised here."""
        work()

    def stop_reading_and_mark(
        self, marker: list[bytes], failed: Callable[[BaseException], None]
    ) -> None:
        """Stop reading the shell socket, queue what it holds, then ``marker``, behind the
        requests already queued; ``failed`` gets what goes wrong where this cannot raise."""
        raise NotImplementedError

    def requeue(self, requests: list[list[bytes]]) -> None:
        """Put ``requests`` back in the kernel's queue, in order, and read the socket again
        (an activation that could not finish)."""
        raise NotImplementedError

    def take_last(self) -> list[list[bytes]]:
        """Every request still on the shell socket, its connections closed without a loss
        where possible (``quiesce``; ``inplace.unguarded_close`` says where not), then the
        socket closed."""
        taken: list[list[bytes]] = []

        def take() -> None:
            taken.extend(quiesce.take_all(self.stream.socket, self.shell_port))
            self.stream.close(linger=0)

        self.in_socket_thread(take)
        return taken

    def queue_first(self, requests: list[list[bytes]]) -> None:
        """In the new process, before it reads its socket: queue ``requests`` first."""
        raise NotImplementedError

    def watch_subscriptions(self, seen: threading.Event) -> bool:
        """Set ``seen`` when a client subscribes to IOPub from now on; False where this
        ipykernel cannot tell (its IOPub socket is a PUB)."""
        return False

    def greet_subscribers(self) -> int | None:
        """Have IOPub send its subscribers ipykernel's own greeting (``iopub_welcome``, as
        it sends each new subscription); the fewest bytes that puts on each connection it
        reaches, or None where this ipykernel has no greeting."""
        return None

    def hold_iopub(self) -> bool:
        """Keep what the kernel publishes on IOPub, in order, until a client subscribes
        (``watch_subscriptions``, called first) or ``release_iopub``; False where this
        ipykernel cannot tell when a client subscribes, so nothing is kept."""
        return False

    def release_iopub(self) -> None:
        """Publish what ``hold_iopub`` kept, then publish as usual."""


class MainThreadQueue(Adapter):
    """ipykernel 6."""

    def stop_reading_and_mark(
        self, marker: list[bytes], failed: Callable[[BaseException], None]
    ) -> None:
        self.stream.stop_on_recv()
        self.undelivered = quiesce.drain_frames(self.stream.socket)
        while self.undelivered:
            self.kernel.schedule_dispatch(self.kernel.dispatch_shell, _frames(self.undelivered[0]))
            self.undelivered.pop(0)
        self.kernel.schedule_dispatch(self.kernel.dispatch_shell, _frames(marker))

    def requeue(self, requests: list[list[bytes]]) -> None:
        # ipykernel's own method, whatever was put on the instance since.
        schedule = type(self.kernel).schedule_dispatch.__get__(self.kernel)
        for frames in [*self.undelivered, *requests]:
            schedule(self.kernel.dispatch_shell, _frames(frames))
        self.undelivered = []
        if self.receiver is not None and not self.stream.closed():
            self.stream.on_recv(self.receiver, copy=False)

    def queue_first(self, requests: list[list[bytes]]) -> None:
        for frames in requests:
            self.kernel.schedule_dispatch(self.kernel.dispatch_shell, _frames(frames))


class ShellChannelThread(Adapter):
    """ipykernel 7."""

    _put_back: asyncio.Event | None = None  # set once requeue put the recorded requests back
    # What IOPub publishes while hold_iopub keeps it: (frames, args, kwargs) of each send.
    _held: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] | None = None

    def watch_subscriptions(self, seen: threading.Event) -> bool:
        # Since 7.2 IOPub is an XPUB socket: its thread greets each new subscription (the
        # first to a topic: the socket is not verbose) with an iopub_welcome message.
        thread = getattr(self.app, "iopub_thread", None)
        if _version() < (7, 2) or thread is None:
            return False
        welcome = self._welcome = thread._send_welcome_message

        def welcome_and_tell(subscription: str) -> None:
            try:
                welcome(subscription)
                if self.release_on_subscription:
                    self._release_held()  # what was kept goes first, to this subscriber too
            finally:
                seen.set()

        thread._send_welcome_message = welcome_and_tell  # looked up at each subscription
        return True

    def greet_subscribers(self) -> int | None:
        thread = getattr(self.app, "iopub_thread", None)
        welcome = self._welcome
        session = getattr(thread, "session", None)
        if thread is None or welcome is None or session is None:
            return None
        # The greeting's own frames (its id and date may differ by a few characters).
        greeting = {
            "header": session.msg_header("iopub_welcome"),
            "parent_header": {},
            "metadata": {},
            "content": {"subscription": ""},
            "buffers": [],
        }
        size = sum(len(frame) for frame in session.serialize(greeting)) - _SIZE_SLACK
        thread.io_loop.add_callback(welcome, "")  # only IOPub's thread sends on its socket
        return size

    def hold_iopub(self) -> bool:
        # An XPUB socket drops what no subscriber wants. A client whose socket is not read
        # while the process restarts (a script that reads every reply first, then the
        # output) subscribes again only when it reads: its IOPub waits for it here.
        thread = getattr(self.app, "iopub_thread", None)
        if self._welcome is None or thread is None:
            return False
        held = self._held = []

        def keep(msg: Any, *args: Any, **kwargs: Any) -> None:  # in IOPub's thread
            if len(held) < _HELD_MESSAGES:
                held.append((msg, args, kwargs))

        thread._really_send = keep  # what IOPub's thread calls to send each message
        thread.io_loop.add_callback(
            lambda: thread.io_loop.call_later(_HELD_SECONDS, self._release_held)
        )
        return True

    def release_iopub(self) -> None:
        thread = getattr(self.app, "iopub_thread", None)
        if thread is not None and self._held is not None:
            thread.io_loop.add_callback(self._release_held)  # only IOPub's thread sends

    def _release_held(self) -> None:
        """In IOPub's thread: send what was kept, then send as ipykernel does."""
        thread, held = getattr(self.app, "iopub_thread", None), self._held
        if thread is None or held is None:
            return
        self._held = None
        thread.__dict__.pop("_really_send", None)  # ipykernel's own method again
        for msg, args, kwargs in held:
            thread._really_send(msg, *args, **kwargs)

    def in_socket_thread(self, work: Callable[[], None]) -> None:
        done, failure = threading.Event(), []

        def run() -> None:
            try:
                work()
            except BaseException as exc:  # handed to the caller's thread
                failure.append(exc)
            finally:
                done.set()

        self.kernel.shell_channel_thread.io_loop.add_callback(run)
        if not done.wait(_WAIT):
            raise TimeoutError("the shell channel's thread did not answer")
        if failure:
            raise failure[0]

    def _manager(self) -> Any:
        """The subshell manager: ipykernel hands it out in the main thread only."""
        return self.kernel.shell_channel_thread.manager

    def stop_reading_and_mark(
        self, marker: list[bytes], failed: Callable[[BaseException], None]
    ) -> None:
        channel, manager = self.kernel.shell_channel_thread, self._manager()

        async def stop_and_mark() -> None:
            # No more reads first. Each request the stream has read already is a task of its
            # own (pyzmq runs an async callback with ensure_future) whose first step may be
            # queued after ours: yield once so that every such step runs (and forwards its
            # request, or waits for the lock ahead of us: asyncio's lock is first come, first
            # served) before the marker goes.
            try:
                self.stream.stop_on_recv()
                await asyncio.sleep(0)
            except BaseException as exc:  # nothing would see it in this callback
                self.failure = exc
            lock = getattr(channel, "asyncio_lock", None)
            async with lock if lock is not None else contextlib.nullcontext():
                if self.failure is None:
                    try:
                        self._mark(manager, marker)
                        return
                    except BaseException as exc:
                        self.failure = exc
                await self._fail_in_order(manager, marker, failed)

        channel.io_loop.add_callback(stop_and_mark)

    async def _fail_in_order(
        self, manager: Any, marker: list[bytes], failed: Callable[[BaseException], None]
    ) -> None:
        """Tell the main thread of ``self.failure`` with the marker, behind every request
        forwarded before it, and forward no other request until ``requeue`` has put those
        back: where the stream still reads, they are answered before any that came later."""
        self._put_back = asyncio.Event()
        try:
            self._forward(manager, marker)
        except BaseException:  # the main thread cannot see it in place: tell it directly
            assert self.failure is not None
            failed(self.failure)
            return
        # Holding the channel's lock, which each request's forwarding takes first.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._put_back.wait(), _HOLD)

    def _mark(self, manager: Any, marker: list[bytes]) -> None:
        self.undelivered = quiesce.drain_frames(self.stream.socket)
        self._forward(manager, marker)

    def _forward(self, manager: Any, marker: list[bytes]) -> None:
        """Send the main thread what was read off the socket, then ``marker``; what could
        not be sent stays in ``undelivered``."""
        to_main = manager.get_shell_channel_to_subshell_socket(None)
        while self.undelivered:
            to_main.send_multipart(self.undelivered[0])
            self.undelivered.pop(0)
        to_main.send_multipart(marker)

    def requeue(self, requests: list[list[bytes]]) -> None:
        manager = self._manager()

        def put_back() -> None:
            try:
                to_main = manager.get_shell_channel_to_subshell_socket(None)
                # Read from the socket after the recorded requests were forwarded: behind them.
                for frames in [*requests, *self.undelivered]:
                    to_main.send_multipart(frames)
                self.undelivered = []
                if self.receiver is not None and not self.stream.closed():
                    self.stream.on_recv(self.receiver, copy=False)
            finally:
                if self._put_back is not None:
                    self._put_back.set()  # the requests behind them may be forwarded now

        self.in_socket_thread(put_back)

    def queue_first(self, requests: list[list[bytes]]) -> None:
        manager = self._manager()

        def queue() -> None:
            to_main = manager.get_shell_channel_to_subshell_socket(None)
            for frames in requests:
                to_main.send_multipart(frames)

        self.in_socket_thread(queue)


def adapter_for(kernel: Any, app: Any) -> Adapter | None:
    """The adapter for the running ipykernel; None when its version was not tested."""
    version = _version()
    if len(version) < 2 or TESTED.get(version[0]) is None or version[1] < TESTED[version[0]]:
        return None
    if version[0] == 6:
        return MainThreadQueue(kernel, app)
    return ShellChannelThread(kernel, app)


def _version() -> tuple[int, ...]:
    """The running ipykernel's (major, minor); () where there is none."""
    found = getattr(sys.modules.get("ipykernel"), "version_info", ())
    return tuple(int(part) for part in found[:2] if isinstance(part, int))


def tested_range() -> str:
    lowest = min(TESTED)
    return f"{lowest}.{TESTED[lowest]} to {max(TESTED)}.x"
