"""storage.lookups: overlapped path lookups give what one-at-a-time lookups give, and leave
no descriptor open whatever happens."""

from __future__ import annotations

import gc
import os

import pytest

from kernelmagic import reading
from kernelmagic.storage import lookups


@pytest.fixture
def taken_for_slow(monkeypatch):
    monkeypatch.setattr(lookups, "PROBES", 1)
    monkeypatch.setattr(lookups, "SLOW_CALL", 0.0)
    monkeypatch.setattr(lookups, "_batch_size", lambda: 4)


def _open_fds() -> set[str]:
    # Objects an earlier test left to the collector close their descriptors when it runs,
    # which may be in the middle of this test: collect them first.
    gc.collect()
    return set(os.listdir("/proc/self/fd"))


def _opened_since(before: set[str]) -> set[str]:
    """Descriptors open now that were not before (one closed meanwhile elsewhere in this
    process is not this test's concern)."""
    return _open_fds() - before


@pytest.fixture
def files(tmp_path):
    paths = []
    for i in range(11):
        path = tmp_path / f"f{i}"
        path.write_bytes(b"x" * i)
        paths.append(str(path))
    paths.insert(5, str(tmp_path / "missing"))
    return paths


def _read(path, fd):
    return None if fd is None else reading.read_opened(fd, path, 100)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_overlapped_opens_read_what_one_at_a_time_reads(files, taken_for_slow):
    before = _open_fds()
    expected = [reading.read_regular_file(p, 100) for p in files]
    assert lookups.overlapped_opens(reading.open_for_reading, _read, files) == expected
    assert expected[5] is None and expected[10] == b"x" * 9
    assert _opened_since(before) == set()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.parametrize("fails_in", ["use", "open"])
def test_a_failure_leaves_no_descriptor_open(files, taken_for_slow, fails_in):
    before = _open_fds()
    failing = files[6]

    def open_one(path):
        if fails_in == "open" and path == failing:
            raise RuntimeError("the lookup failed")
        return reading.open_for_reading(path)

    def use(path, fd):
        if fails_in == "use" and path == failing:
            os.close(fd)  # what it was given is its own, as in read_opened
            raise RuntimeError("the read failed")
        return _read(path, fd)

    with pytest.raises(RuntimeError, match="failed"):
        lookups.overlapped_opens(open_one, use, files)
    assert _opened_since(before) == set()


def test_overlapped_calls_give_what_one_at_a_time_calls_give(files, taken_for_slow):
    assert lookups.overlapped(os.path.isfile, files) == [os.path.isfile(p) for p in files]


def test_an_overlapped_call_that_raises_is_raised_in_the_caller(files, taken_for_slow):
    def stat(path):
        return os.stat(path).st_size

    with pytest.raises(FileNotFoundError):
        lookups.overlapped(stat, files)
    assert lookups.overlapped(stat, files[:5]) == [0, 1, 2, 3, 4]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_process_holding_most_descriptors_still_lists_every_spec(user_kernels):
    """Walk M: the batch is a quarter of the descriptor limit, whatever the process already
    holds; in a long-running process with 900 of 1,024 open, 249 of 505 healthy specs were
    listed as "cannot read kernel.json: Too many open files (fix or remove ...)"."""
    import subprocess
    import sys
    import textwrap

    from helpers import write_spec

    for i in range(120):
        write_spec(user_kernels, f"s{i:03d}")
    script = textwrap.dedent(
        """
        import os, resource
        from kernelmagic.storage import discovery, lookups
        lookups.PROBES, lookups.SLOW_CALL = 1, 0.0  # as on a slow filesystem
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        held = []
        while len(os.listdir("/proc/self/fd")) < 236:  # 20 free, a batch of 64
            held.append(os.open(os.devnull, os.O_RDONLY))
        infos = [i for i in discovery.list_specs() if i.name.startswith("s")]
        print(len(infos), sum(1 for i in infos if i.problems))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert done.stdout.split() == ["120", "0"], done.stdout + done.stderr


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_an_open_short_of_descriptors_is_made_again_with_the_batch_let_go(files, taken_for_slow):
    """Walk M, again as nobody: the first open of a batch failed for want of descriptors
    while the batch's later opens held them all, so opening it again failed too, and a
    healthy spec was listed as "Too many open files". Here the first open of each batch
    fails so, and its second try finds no descriptor of the batch still open."""
    import errno

    tried: set[str] = set()
    held_at_retry = []
    before = _open_fds()

    def open_one(path):
        first_of_batch = files.index(path) % 4 == 1  # PROBES=1: batches start at index 1
        if first_of_batch and path not in tried:
            tried.add(path)
            return OSError(errno.EMFILE, "Too many open files")
        if path in tried:
            held_at_retry.append(len(_opened_since(before)))
        return reading.open_for_reading(path)

    def use(path, opened):
        if isinstance(opened, OSError):
            return opened
        return _read(path, opened)

    got = lookups.overlapped_opens(open_one, use, files)
    assert got == [reading.read_regular_file(p, 100) for p in files]
    assert held_at_retry and set(held_at_retry) == {0}, held_at_retry
    assert _opened_since(before) == set()
