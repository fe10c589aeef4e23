"""Close a ROUTER socket's TCP connections without losing a message the client sent.

A client's DEALER socket considers a message sent once it is written to TCP: if the kernel
closes the connection while a request is in flight, that request is gone, and the client
never knows. Closing cleanly takes three steps, on Linux, at the level of the file
descriptors libzmq uses:

1. each established connection is half-closed (``shutdown(SHUT_WR)``): the client reads the
   end of the stream, and its libzmq drops the connection and keeps whatever it has not yet
   written queued for the reconnection. What it wrote before it saw the end still arrives,
   since this side still reads;
2. every message libzmq received is read until libzmq has closed each connection (it closes
   one when the client has closed its side), then once more; a client that connected again
   meanwhile (libzmq waits 0.1 s before it does) is half-closed the same way.

The listening socket is left to libzmq (it aborts when its listener fails), and closed with
the socket right after.

Where that cannot be done (not Linux, not TCP), ``take_all`` reads what is there and the
caller closes as before (``inplace.unguarded_close`` tells the user so up front).
"""

from __future__ import annotations

import contextlib
import os
import socket as sockets
import struct
import time
from typing import Any

import zmq

_TCP_INFO = getattr(sockets, "TCP_INFO", None)  # Linux
_ESTABLISHED = 1  # TCP_ESTABLISHED, the first byte of struct tcp_info
# struct tcp_info's tcpi_bytes_sent, a u64 (Linux 4.19 and later).
_BYTES_SENT_AT = 200


def _sockets_on(port: int) -> dict[str, tuple[int, int]]:
    """inode -> (file descriptor, TCP state) of each TCP socket of this process whose local
    port is ``port``: asked of each socket itself, not of the machine's TCP table, which
    takes milliseconds to read for a few hundred connections."""
    found: dict[str, tuple[int, int]] = {}
    if _TCP_INFO is None:
        return found
    for inode, fd in _own_socket_fds().items():
        with contextlib.suppress(OSError), sockets.socket(fileno=os.dup(fd)) as handle:
            if handle.family not in (sockets.AF_INET, sockets.AF_INET6):
                continue
            if handle.type != sockets.SOCK_STREAM or handle.getsockname()[1] != port:
                continue
            found[inode] = (fd, handle.getsockopt(sockets.IPPROTO_TCP, _TCP_INFO, 256)[0])
    return found


def can_see_connections() -> bool:
    """Whether this system shows a process's sockets and their TCP state (Linux)."""
    return _TCP_INFO is not None and os.path.isdir("/proc/self/fd")


def connected_to(port: int) -> bool:
    """Whether this process has an established TCP connection whose local port is
    ``port``: one it accepted on the socket bound there."""
    return any(state == _ESTABLISHED for _, state in _sockets_on(port).values())


def established_on(port: int) -> dict[str, int]:
    """inode -> this process's file descriptor for each established connection it accepted
    on ``port``."""
    return {inode: fd for inode, (fd, state) in _sockets_on(port).items() if state == _ESTABLISHED}


def bytes_sent(fd: int, inode: str) -> int | None:
    """Bytes sent so far on the TCP connection ``fd`` (still socket ``inode``); None where
    that cannot be read (not Linux 4.19+, or the descriptor is another socket now)."""
    if _TCP_INFO is None:
        return None
    try:
        with sockets.socket(fileno=os.dup(fd)) as handle:
            info = handle.getsockopt(sockets.IPPROTO_TCP, _TCP_INFO, 256)
    except OSError:
        return None
    if len(info) < _BYTES_SENT_AT + 8 or not _still_open(fd, inode):
        return None
    sent: int = struct.unpack_from("=Q", info, _BYTES_SENT_AT)[0]
    return sent


def _own_socket_fds() -> dict[str, int]:
    """inode -> this process's file descriptor for each socket it holds."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{name}")
            if target.startswith("socket:["):
                found[target[8:-1]] = int(name)
    return found


def _shutdown(fd: int, how: int) -> None:
    with contextlib.suppress(OSError), sockets.socket(fileno=os.dup(fd)) as handle:
        handle.shutdown(how)


def _still_open(fd: int, inode: str) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == f"socket:[{inode}]"
    except OSError:
        return False


def drain_frames(socket: Any) -> list[list[bytes]]:
    """What the socket received and nobody read yet, as bytes."""
    received = []
    while True:
        try:
            received.append([bytes(f) for f in socket.recv_multipart(zmq.NOBLOCK, copy=False)])
        except zmq.Again:
            return received


def take_all(socket: Any, port: int | None, timeout: float = 1.0) -> list[list[bytes]]:
    """Every message the clients sent to ``socket`` (bound to TCP ``port``), its
    connections closed as described above where that can be done (elsewhere only what had
    arrived is read, and a request in flight at the close can still be lost)."""
    if port is None or not can_see_connections() or not _sockets_on(port):
        return drain_frames(socket)
    received: list[list[bytes]] = []
    closing: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while True:
        for inode, (fd, state) in _sockets_on(port).items():
            if state == _ESTABLISHED and inode not in closing:
                _shutdown(fd, sockets.SHUT_WR)  # the client reads the end of the stream
                closing[inode] = fd
        received += drain_frames(socket)
        if not any(_still_open(fd, inode) for inode, fd in closing.items()):
            break
        if time.monotonic() > deadline:  # a client that does not answer: stop waiting
            break
        time.sleep(0.001)
    return received + drain_frames(socket)
