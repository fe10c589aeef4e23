"""Many independent path lookups at once, where each one is a round trip.

Sites keep central kernels on NFS, Lustre or CVMFS (through ``JUPYTER_PATH``): there every
open or stat that misses the client's cache waits for a server, ~1 ms, and 10,000 specs read
one after another take over 10 s. The lookups are independent and the system calls release
the GIL, so threads overlap them, as a network filesystem's client keeps many requests in
flight. On a local disk a lookup takes microseconds and threads would only add their own
cost, so the first few calls are timed here and the rest are spread only when those were
slow. The answers are the same either way; only the time differs.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

THREADS = 32  # lookups in flight at once
PROBES = 8  # calls timed before choosing
SLOW_CALL = 100e-6  # seconds; a local disk's cached open + read + close takes ~10 us


def overlapped(func: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
    """``[func(item) for item in items]``, with the calls overlapped in threads when each one
    is slow (a network filesystem). ``func`` must be safe to call from several threads; an
    exception it raises is raised here (after the other calls have finished)."""
    probed = min(PROBES, len(items))
    results: list[Result] = []
    times = []
    for item in items[:probed]:
        start = time.perf_counter()
        results.append(func(item))
        times.append(time.perf_counter() - start)
    rest = len(items) - probed
    # The median, not the mean: a local call that lost the CPU to another process is slow
    # once, a remote one every time.
    if rest < 2 or _median(times) < SLOW_CALL:
        results.extend(func(item) for item in items[probed:])
        return results
    return results + _in_threads(func, items[probed:])


def _median(times: list[float]) -> float:
    # Not statistics.median: that module (and the fractions and decimal it loads) would be
    # the largest import of a plain listing, for the middle of at most 8 numbers.
    ordered = sorted(times)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


Opened = TypeVar("Opened")


def overlapped_opens(
    open_one: Callable[[Item], Opened],
    use: Callable[[Item, Opened], Result],
    items: Sequence[Item],
) -> list[Result]:
    """``[use(item, open_one(item)) for item in items]``, where ``open_one`` makes the path
    lookup (the round trip on a network filesystem) and returns what it opened, and ``use``
    works on that without a lookup (``fstat``, ``read``, ``close``: fast calls).

    Where the lookups are slow, they are overlapped in threads a batch at a time, and each
    batch is used in this thread while the threads wait for the next: every system call
    releases the GIL, and fast calls made while other threads come back from their lookups
    hand it over each time (a listing on a 1 ms filesystem took 2-3x the CPU). An ``int``
    that ``open_one`` returned is a descriptor that ``use`` owns from the moment it is called
    (it closes it, raising or not); if ``use`` or ``open_one`` raises, the descriptors of
    the batch not yet handed to ``use`` are closed here."""
    probed = min(PROBES, len(items))
    results: list[Result] = []
    times = []
    for item in items[:probed]:
        start = time.perf_counter()
        opened = open_one(item)
        times.append(time.perf_counter() - start)
        results.append(use(item, opened))
    rest = items[probed:]
    if len(rest) < 2 or _median(times) < SLOW_CALL:
        results.extend(use(item, open_one(item)) for item in rest)
        return results

    def guarded(item: Item) -> Opened | _Raised:
        try:
            return open_one(item)
        except BaseException as exc:  # raised in turn, once the batch's other opens are kept
            return _Raised(exc)

    size = _batch_size()
    with _Pool(min(THREADS, len(rest))) as pool:
        for first in range(0, len(rest), size):
            batch = rest[first : first + size]
            opened_batch: list[Any] = pool.map(guarded, batch)
            used = 0
            try:
                for i, (item, got) in enumerate(zip(batch, opened_batch, strict=True)):
                    used += 1
                    if _out_of_descriptors(got) or got is _AGAIN:
                        # The batch's other opens took the descriptors: those before this
                        # one are used (closed) by now, those after it are let go and made
                        # again in turn, one at a time.
                        for j in range(i + 1, len(batch)):
                            if isinstance(opened_batch[j], int):
                                os.close(opened_batch[j])
                                opened_batch[j] = _AGAIN
                        got = guarded(item)
                    if isinstance(got, _Raised):
                        raise got.exc
                    results.append(use(item, got))
            finally:
                for left in opened_batch[used:]:
                    if isinstance(left, int):
                        os.close(left)
    return results


_AGAIN = object()  # a descriptor of the batch let go, to be opened again in turn


def _out_of_descriptors(got: object) -> bool:
    """Whether an open failed for want of descriptors (EMFILE, ENFILE): in a process that
    holds many, a batch can take the rest, and the file itself is fine."""
    error = got.exc if isinstance(got, _Raised) else got
    return isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE)


def _batch_size() -> int:
    """Descriptors to hold open at once: a quarter of this process's limit (often 1,024),
    at most 1,024 (larger batches were no faster)."""
    try:
        import resource  # POSIX only

        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if limit == resource.RLIM_INFINITY:
            limit = 1 << 20
    except (ImportError, OSError, ValueError):
        limit = 1024
    return max(16, min(1024, limit // 4))


class _Pool:
    """Threads kept for several ``map`` calls (starting 32 threads for each batch costs
    more than the batch); between calls they wait, holding nothing."""

    def __init__(self, size: int) -> None:
        self._start = threading.Barrier(size + 1)
        self._done = threading.Barrier(size + 1)
        self._work: Callable[[], None] | None = None
        self._threads = [threading.Thread(target=self._serve, daemon=True) for _ in range(size)]
        for thread in self._threads:
            thread.start()

    def _serve(self) -> None:
        try:
            while True:
                self._start.wait()
                work = self._work
                if work is None:
                    return
                work()
                self._done.wait()
        except threading.BrokenBarrierError:  # the caller was interrupted: nothing to do
            return

    def map(self, func: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
        results: list[Result | None] = [None] * len(items)
        next_index = itertools.count()  # next() of a count is atomic under the GIL
        failures: list[BaseException] = []

        def work() -> None:
            try:
                for i in next_index:
                    if i >= len(items) or failures:
                        return
                    results[i] = func(items[i])
            except BaseException as exc:  # raised again in the caller's thread
                failures.append(exc)

        self._work = work
        self._start.wait()
        self._done.wait()
        if failures:
            raise failures[0]
        return results  # type: ignore[return-value]  # every slot was filled

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._work = None
        try:
            self._start.wait()
        except threading.BrokenBarrierError:  # interrupted inside map
            self._done.abort()
        for thread in self._threads:
            thread.join()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _in_threads(func: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
    with _Pool(min(THREADS, len(items))) as pool:
        return pool.map(func, items)


def stats_of(paths: Iterable[str]) -> Callable[[str], os.stat_result]:
    """An ``os.stat`` that answers for ``paths`` from one overlapped pass (each stat'ed once,
    however often it is asked) and asks the filesystem for any other path: for a command
    that checks the same few paths of thousands of specs."""
    wanted = list(dict.fromkeys(paths))
    known = dict(zip(wanted, overlapped(_stat_or_error, wanted), strict=True))

    def stat(path: str) -> os.stat_result:
        found = known[path] if path in known else _stat_or_error(path)
        if isinstance(found, OSError):
            raise found
        return found

    return stat


def _stat_or_error(path: str) -> os.stat_result | OSError:
    try:
        return os.stat(path)
    except OSError as exc:
        return exc
