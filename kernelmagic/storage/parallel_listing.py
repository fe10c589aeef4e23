"""``kernelmagic list --json`` over thousands of specs, spread over the machine's cores.

Reading, parsing, checking, masking and encoding one spec takes ~0.1 ms: at 10,000 specs that
is most of a listing. The command line (a process of its own, with no threads) forks a worker
per core; each runs the one listing code (``discovery.list_specs``) on its share of the names
and returns its entries already encoded, and the output is byte for byte what one process
prints (a test compares them). Magics never come here: a kernel has threads, and forking a
threaded process is unsafe.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import zlib
from collections.abc import Callable
from typing import Any

from kernelmagic.domain.policy import EnvPolicy
from kernelmagic.storage import discovery

# Fewer specs than this per worker, and forking costs more than it saves.
SPECS_PER_WORKER = 1500


def listing_text(pattern: str | None, policy: EnvPolicy) -> str | None:
    """The compact JSON of ``list --json``, made in several processes; None when one process
    is the better choice (few specs, one core, no fork)."""
    workers = min(_cores(), _entry_count() // SPECS_PER_WORKER)
    if workers < 2 or not hasattr(os, "fork"):
        return None
    parts = _in_processes(lambda k: _part(pattern, policy, k, workers), workers)
    if parts is None:
        return None
    entries = sorted(entry for found, _ in parts for entry in found)
    problems = dict(sorted(item for _, problems in parts for item in problems.items()))
    specs = ", ".join(f"{json.dumps(name)}: {encoded}" for name, encoded in entries)
    return f'{{"kernelspecs": {{{specs}}}, "problems": {json.dumps(problems)}}}'


def _part(pattern: str | None, policy: EnvPolicy, k: int, workers: int) -> Any:
    """Worker ``k``'s share: the names whose CRC falls to it, listed and encoded."""

    def mine(name: str) -> bool:
        return zlib.crc32(name.encode("utf-8", "surrogatepass")) % workers == k

    listing = discovery.jupyter_listing(discovery.list_specs(pattern, keep=mine))
    encoded = [
        (name, json.dumps({**entry, "spec": policy.mask_spec(entry["spec"])}))
        for name, entry in listing["kernelspecs"].items()
    ]
    problems = {name: [str(p) for p in found] for name, found in listing["problems"].items()}
    return encoded, problems  # plain strings: a Problem does not survive pickling


def _in_processes(work: Callable[[int], Any], workers: int) -> list[Any] | None:
    """``work(k)`` for every k: k = 0 here, the others in forked children. None if a child
    failed (the caller then does it all in one process)."""
    children = []
    for k in range(1, workers):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: compute, send, and leave without running any cleanup
            status = 1
            try:
                os.close(read_end)
                data = memoryview(pickle.dumps(work(k)))
                while data:
                    data = data[os.write(write_end, data) :]
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        children.append((pid, read_end))
    try:
        mine = work(0)
    finally:  # whatever happens here, no child is left behind
        theirs = [_collect(pid, read_end) for pid, read_end in children]
    if any(result is None for result in theirs):
        return None
    return [mine, *theirs]


def _collect(pid: int, read_end: int) -> Any | None:
    """A child's result, or None if it failed."""
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        return None
    try:
        return pickle.loads(data)  # our own child, through our own pipe
    except Exception:
        return None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _entry_count() -> int:
    """How many entries the kernels directories hold (no stat: cheap)."""
    count = 0
    for directory in discovery.kernel_dirs():
        with contextlib.suppress(OSError), os.scandir(directory) as entries:
            count += sum(1 for _ in entries)
    return count
