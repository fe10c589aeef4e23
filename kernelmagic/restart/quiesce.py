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

_TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_ESTABLISHED = "01"
# struct tcp_info's tcpi_bytes_sent, a u64 (Linux 4.19 and later).
_BYTES_SENT_AT = 200


def _sockets_on(port: int) -> dict[str, str]:
    """inode -> TCP state of each socket whose local port is ``port``."""
    wanted = f":{port:04X}"
    found = {}
    for table in _TCP_TABLES:
        try:
            with open(table, encoding="ascii") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 9 and fields[1].endswith(wanted):
                        found[fields[9]] = fields[3]
        except OSError:
            continue
    return found


def can_see_connections() -> bool:
    """Whether this system shows a process's sockets and the TCP table (Linux's /proc)."""
    return os.path.isdir("/proc/self/fd") and tcp_table_readable()


def tcp_table_readable() -> bool:
    return os.access(_TCP_TABLES[0], os.R_OK)


def connected_to(port: int) -> bool:
    """Whether this machine has an established TCP connection whose local port is
    ``port``: one a process accepted on the socket bound there."""
    return _ESTABLISHED in _sockets_on(port).values()


def established_on(port: int) -> dict[str, int]:
    """inode -> this process's file descriptor for each established connection it accepted
    on ``port``."""
    states = _sockets_on(port)
    return {
        inode: fd for inode, fd in _own_socket_fds().items() if states.get(inode) == _ESTABLISHED
    }


def bytes_sent(fd: int, inode: str) -> int | None:
    """Bytes sent so far on the TCP connection ``fd`` (still socket ``inode``); None where
    that cannot be read (not Linux 4.19+, or the descriptor is another socket now)."""
    tcp_info = getattr(sockets, "TCP_INFO", None)
    if tcp_info is None:
        return None
    try:
        with sockets.socket(fileno=os.dup(fd)) as handle:
            info = handle.getsockopt(sockets.IPPROTO_TCP, tcp_info, 256)
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
        states = _sockets_on(port)
        for inode, fd in _own_socket_fds().items():
            if states.get(inode) == _ESTABLISHED and inode not in closing:
                _shutdown(fd, sockets.SHUT_WR)  # the client reads the end of the stream
                closing[inode] = fd
        received += drain_frames(socket)
        if not any(_still_open(fd, inode) for inode, fd in closing.items()):
            break
        if time.monotonic() > deadline:  # a client that does not answer: stop waiting
            break
        time.sleep(0.001)
    return received + drain_frames(socket)
