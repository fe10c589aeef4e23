"""Durable file operations: atomic JSON writes and per-spec exclusive locks.

``kernel.json`` files are shared state (several notebooks, cron jobs and admin scripts may
touch the same spec), so every write goes through a temporary file in the same directory,
``fsync`` and ``os.replace``, and every read-modify-write happens under an OS file lock.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shlex
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from kernelmagic.errors import KernelmagicError

TEMP_PREFIX = ".kernel.json."
TEMP_SUFFIX = ".tmp"
BACKUP_PREFIX = ".kernel.json.backup-"
# What --undo replaced, which --redo restores.
UNDONE_PREFIX = ".kernel.json.undone-"
BACKUPS_KEPT = 5


class UnsafeLock(OSError):
    """The lock path is a symlink or not a regular file: someone planted it."""


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_fd(fd: int) -> None:
        # msvcrt locks a byte range; LK_LOCK retries for 10 s, so loop until it succeeds.
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue

    def _unlock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def exclusive_lock(lock_path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive OS lock on ``lock_path`` (created if missing) for the block.

    The lock file itself is never deleted: removing it while another process waits on it
    would let two writers in at once.
    """
    try:
        fd = _open_lock_file(os.fspath(lock_path))
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise UnsafeLock(f"lock file {lock_path} is a symbolic link; remove it") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeLock(f"lock file {lock_path} is not a regular file; remove it")
    try:
        _lock_fd(fd)
        try:
            yield
        finally:
            _unlock_fd(fd)
    finally:
        os.close(fd)


# O_NOFOLLOW: a planted symlink must not make us create or lock a file elsewhere.
# O_NONBLOCK: nor a planted FIFO make the open wait forever for a writer (flock and a
# regular file do not heed it).
_LOCK_FLAGS = (
    getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
)
# flock needs no write access, so a lock file another member of a group made is as good as
# one's own; Windows' byte-range locks do.
_LOCK_ACCESS = os.O_RDWR if sys.platform == "win32" else os.O_RDONLY


def _open_lock_file(lock_path: str) -> int:
    """The lock file opened for locking: made readable by all if this call creates it
    (an empty file tells nobody anything, and every member of a group must open it)."""
    try:
        fd = os.open(lock_path, _LOCK_ACCESS | os.O_CREAT | os.O_EXCL | _LOCK_FLAGS, 0o600)
    except FileExistsError:
        try:
            return os.open(lock_path, _LOCK_ACCESS | _LOCK_FLAGS)
        except PermissionError:  # another member's, from an older kernelmagic: say whose
            raise kept_from_others(lock_path, "lock", 0o644) from None
    try:
        if hasattr(os, "fchmod"):  # POSIX
            os.fchmod(fd, 0o644)
    except BaseException:
        os.close(fd)
        raise
    return fd


def owner_name(uid: int) -> str:
    """A user's name, for a message about a file they own (``user N`` where none is known)."""
    try:
        import pwd  # POSIX only, as owners are

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"user {uid}"


def kept_from_others(path: str, what: str, wanted: int) -> KernelmagicError:
    """The error for kernelmagic's own file or dir of a group's kernels dir that another
    member owns and this user cannot use (kernelmagic 0.2 made some owner-only; a later one
    gives them the group's access at their owner's next write): whose it is, and the chmod
    to ask them for."""
    try:
        info = os.lstat(path)
    except OSError:
        return KernelmagicError(f"cannot use the {what} {path}: permission denied")
    return KernelmagicError(
        f"cannot use the {what} {path}: it is {owner_name(info.st_uid)}'s and only they can "
        f"use it (mode "
        f"{stat.S_IMODE(info.st_mode):o}, from an older kernelmagic); ask them to run "
        f"chmod {wanted:o} {shlex.quote(path)}"
    )


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False, having changed nothing, where the system or filesystem cannot do it.
    """
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only writers need it; listing stays free of the import

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    if os.name == "nt":  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def remove_stale_temps(directory: str | os.PathLike[str]) -> int:
    """Delete temp files left by writers that died; call only while holding the spec's lock."""
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def _umask() -> int:
    # os.umask can only be read by setting it; restore it immediately.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def default_file_mode() -> int:
    """The mode a new file gets under the current umask (0o644 with the usual 022)."""
    return 0o666 & ~_umask()


def default_dir_mode() -> int:
    """The mode a new directory gets under the current umask (0o755 with the usual 022)."""
    return 0o777 & ~_umask()


def backups(directory: str | os.PathLike[str], prefix: str = BACKUP_PREFIX) -> list[Path]:
    """Backups of a spec's ``kernel.json`` (or, with ``UNDONE_PREFIX``, the versions undo
    replaced), oldest first."""
    found = [
        p
        for p in Path(directory).glob(prefix + "*")
        if p.name[len(prefix) :].isdigit() and _is_regular(p)  # a link or a dir: not ours
    ]
    return sorted(found, key=lambda p: int(p.name[len(prefix) :]))


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def keep_backup(
    kernel_json: str | os.PathLike[str],
    into: str | os.PathLike[str] | None = None,
    prefix: str = BACKUP_PREFIX,
    *,
    prune: bool = True,
    data: bytes | None = None,
    mode: int | None = None,
) -> Path:
    """Save the current bytes and mode of ``kernel_json`` as its newest backup (``prefix``
    names the series).

    ``into`` is the directory for the backup (default: beside the file). Only the newest
    ``BACKUPS_KEPT`` of a series are kept (with ``prune=False``, once the caller calls
    ``prune_backups``). ``data`` and ``mode``: what the caller read of it (not read again).
    Call under the spec's lock.
    """
    source = Path(kernel_json)
    directory = Path(into) if into is not None else source.parent
    existing = backups(directory, prefix)
    number = int(existing[-1].name[len(prefix) :]) + 1 if existing else 1
    target = directory / f"{prefix}{number}"
    if data is None:
        data, mode = source.read_bytes(), source.stat().st_mode
    write_bytes_atomic(target, data, mode=(source.stat().st_mode if mode is None else mode) & 0o775)
    if prune:
        prune_backups(directory, prefix)
    return target


def prune_backups(directory: str | os.PathLike[str], prefix: str = BACKUP_PREFIX) -> None:
    """Keep only the newest ``BACKUPS_KEPT`` of a series of backups."""
    for old in backups(directory, prefix)[:-BACKUPS_KEPT]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
