"""Whether another user can change a path: the test behind ``trust`` (which specs may run).

Each path and every directory above it, up to ``/``, must be owned by root or you and be
writable by nobody else (a sticky directory such as ``/tmp`` excepted, where others cannot
replace what is yours; a private group of your own excepted): OpenSSH's ``StrictModes``.
Standard library only, so that listing, which asks it of ipykernel's own spec cache, loads
nothing of the spec rules.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from kernelmagic.reading import can_name_a_file

try:
    import pwd  # POSIX only, like the owners it names
except ImportError:  # pragma: no cover - Windows
    pwd = None  # type: ignore[assignment]


def program_paths(argv0: str) -> list[str]:
    """A spec's program (found on ``PATH`` when relative), where its links lead, and the
    environment around it."""
    if not can_name_a_file(argv0):  # no program is so named: nothing to walk
        return []
    program = argv0 if os.path.isabs(argv0) else shutil.which(argv0)
    if not program:
        return []
    return [program, _real_path(program), *_environment_of(program)]


def _real_path(path: str) -> str:
    """``os.path.realpath``, or the path itself where a link on the way went between
    realpath's ``lstat`` and its ``readlink`` (CPython issue 97566: a job's epilog removing
    the venv while the doctor looks); a walk then finds the path missing."""
    try:
        return os.path.realpath(path)
    except OSError:
        return path


def _environment_of(program: str) -> list[str]:
    """A program's environment root (``PREFIX`` of ``PREFIX/bin/python``) and the
    site-packages directories in it, whose ``.pth`` files an interpreter runs at start."""
    bin_dir = os.path.dirname(program)
    if os.path.basename(bin_dir) not in ("bin", "Scripts"):
        return []
    prefix = os.path.dirname(bin_dir)
    if prefix in ("/", "/usr", "/usr/local"):
        return []  # the system's own: root's directories, found above anyway
    return [
        prefix,
        *sorted(glob.glob(os.path.join(glob.escape(prefix), "lib*/python*/site-packages"))),
    ]


def others_can_change_above(paths: Iterable[str]) -> str | None:
    """``others_can_change`` for each path and every directory above it, up to ``/``: on
    Linux each one as it is opened on the way down (``O_PATH|O_NOFOLLOW`` beside the one
    above, ``fstat``), every link on the way checked and followed the same way; elsewhere
    each path and its ancestors looked at by name (``lstat``), its real path too."""
    with TrustWalk() as walk:
        return walk.why(paths)


_MAX_LINKS = 40  # as the kernel's own limit on links in one lookup
_KEPT_OPEN = 64  # descriptors of recently walked directories kept for the next walks
_WALK_FLAGS = getattr(os, "O_PATH", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class TrustWalk:
    """``others_can_change_above`` for the many paths of one command (the doctor's specs),
    sharing the walks: a directory above thousands of specs (the kernels dir, everything
    above it) is opened and judged once, not once a spec, and a path asked about twice (one
    interpreter behind every spec) is walked once. On a network filesystem, where each
    lookup is a round trip, this is the difference between minutes and seconds.

    What it keeps lives as long as the object, one command; never longer. That is sound
    because the rule is stable against the users it guards against: a directory that, with
    every directory above it, is owned by root or you and writable by nobody else (or
    sticky) cannot be renamed, replaced or written by another user, so what a walk found
    there stays true while the command runs. What is kept is only what a walk opened and
    ``fstat``-ed: a path found missing is asked again (another user may create it in a
    sticky ``/tmp``), and a kept directory is reopened from a descriptor kept open or by its
    name checked against the device and inode the walk saw. Safe to use from several
    threads; use it as a context manager (it holds descriptors)."""

    def __init__(self) -> None:
        # a directory or file the walks opened (never a link) -> why others can change it or
        # one above it (or None), and its fstat
        self._judged: dict[str, tuple[str | None, os.stat_result]] = {}
        self._answers: dict[str, str | None] = {}  # a path asked about, walked to its end
        self._programs: dict[str, list[str]] = {}
        self._kept: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def __enter__(self) -> TrustWalk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            while self._kept:
                os.close(self._kept.popitem()[1])

    def why(self, paths: Iterable[str]) -> str | None:
        """Why another user could change one of ``paths`` or a directory above it, or None."""
        if not hasattr(os, "O_PATH"):
            return others_can_change(_with_ancestors(paths), follow_links=False)
        for path in paths:
            path = os.path.abspath(path)
            found = self._answers[path] if path in self._answers else self._walk_down(path)
            if found:
                return found
        return None

    def seen(self, path: str) -> os.stat_result | None:
        """What a walk's ``fstat`` found at ``path`` (no link on the way, so what ``os.stat``
        would have said then), or None where no walk opened it."""
        judged = self._judged.get(os.path.abspath(path))
        return judged[1] if judged is not None else None

    def program_paths(self, argv0: str) -> list[str]:
        """``program_paths``, found once for each program however many specs run it."""
        if argv0 not in self._programs:
            self._programs[argv0] = program_paths(argv0)
        return self._programs[argv0]

    def _walk_down(self, path: str) -> str | None:
        """Why another user could change ``path`` or a directory on the way to it, found on
        the descriptors the walk opens (what was looked at is what is there); None where
        nobody can, or where the path ends before it is found."""
        fd = os.open("/", _WALK_FLAGS | os.O_DIRECTORY)
        where, links = "/", 0
        todo = [part for part in path.split("/") if part]
        try:
            found = _changeable(os.fstat(fd), where)
            skip = True  # whether what comes next may have been judged by an earlier walk
            while todo and not found:
                if skip:
                    skip = False
                    fd, where, todo, found = self._skip_judged(fd, where, todo)
                    continue
                name = todo.pop(0)
                if name == ".":
                    continue
                try:
                    child = os.open(name, _WALK_FLAGS, dir_fd=fd)
                except OSError:
                    return None  # the rest is not there (or not a directory): nothing to run
                info = os.fstat(child)
                here = os.path.normpath(os.path.join(where, name))
                found = _changeable(info, here)
                if stat.S_ISLNK(info.st_mode) and not found:
                    links += 1
                    # The link the walk opened and judged, read through its own descriptor
                    # (readlinkat's empty path): by its name it may be gone already (a
                    # job's epilog removing the venv) or be another link.
                    target = os.readlink("", dir_fd=child)
                    os.close(child)
                    if links > _MAX_LINKS:
                        return None  # no lookup gets through: nothing to run
                    todo[:0] = [part for part in target.split("/") if part]
                    if target.startswith("/"):
                        os.close(fd)
                        fd, where = os.open("/", _WALK_FLAGS | os.O_DIRECTORY), "/"
                    skip = True
                    continue
                if not stat.S_ISLNK(info.st_mode):
                    self._judge(here, found, info, child)
                os.close(fd)
                fd, where = child, here
            self._answers[path] = found
            return found
        finally:
            os.close(fd)

    def _judge(self, here: str, found: str | None, info: os.stat_result, fd: int) -> None:
        self._judged[here] = (found, info)
        if stat.S_ISDIR(info.st_mode) and not found:
            with self._lock:
                if here not in self._kept:
                    self._kept[here] = os.dup(fd)
                    if len(self._kept) > _KEPT_OPEN:
                        os.close(self._kept.popitem(last=False)[1])

    def _skip_judged(
        self, fd: int, where: str, todo: list[str]
    ) -> tuple[int, str, list[str], str | None]:
        """Past the leading parts of ``todo`` that earlier walks judged: the descriptor, its
        path, what is left to walk, and why others can change what was passed, if they can.
        Parts with ``..`` are walked, not skipped (a link may come before them)."""
        count, below, found = 0, where, None
        for part in todo:
            if part in (".", ".."):
                break
            judged = self._judged.get(os.path.normpath(os.path.join(below, part)))
            if judged is None:
                break
            count, below, found = count + 1, os.path.normpath(os.path.join(below, part)), judged[0]
            if found or count == len(todo):
                return fd, where, [], found  # judged to its end, or a reason on the way
        if count == 0:
            return fd, where, todo, None
        reopened = self._reopen(below)
        if reopened is None:
            return fd, where, todo, None  # it changed since: walk it again
        os.close(fd)
        return reopened, below, todo[count:], None

    def _reopen(self, directory: str) -> int | None:
        """A descriptor of a directory an earlier walk judged, if it is still that one."""
        with self._lock:
            if directory in self._kept:
                self._kept.move_to_end(directory)
                return os.dup(self._kept[directory])
        seen = self._judged[directory][1]
        try:
            fd = os.open(directory, _WALK_FLAGS | os.O_DIRECTORY)
        except OSError:
            return None
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino):
            os.close(fd)
            return None
        return fd


def _with_ancestors(paths: Iterable[str]) -> Iterator[str]:
    seen: set[str] = set()
    for path in paths:
        path = os.path.abspath(path)
        for candidate in (path, _real_path(path)):
            while candidate not in seen:
                seen.add(candidate)
                yield candidate
                candidate = os.path.dirname(candidate)


def others_can_change(paths: Iterable[str], *, follow_links: bool = True) -> str | None:
    """Why another user could change what these paths hold, or None: one is owned by
    another user who is not root, or writable by group or others (a private group of the
    user's own excepted, and a sticky dir such as ``/tmp``, where others cannot replace
    what is ours). A path that does not exist is skipped. The reason names the path, its
    owner and mode."""
    for path in paths:
        try:
            found = os.stat(path) if follow_links else os.lstat(path)
        except OSError:
            continue
        why = _changeable(found, path)
        if why:
            return why
    return None


def owned_by_others(paths: Iterable[str]) -> str | None:
    """Why one of these paths is another user's (not root's), or None: each judged as it is,
    a link as the link (who made it), not where it leads. What another user put into a dir
    of yours that they can write to (a group's, a sticky one)."""
    me = os.getuid() if hasattr(os, "getuid") else None
    for path in paths:
        try:
            found = os.lstat(path)
        except OSError:
            continue
        if me is not None and found.st_uid not in (0, me):
            return f"{path} is owned by another user ({_described(found)})"
    return None


def _changeable(found: os.stat_result, path: str) -> str | None:
    me = os.getuid() if hasattr(os, "getuid") else None  # no owners to compare on Windows
    if me is not None and found.st_uid not in (0, me):
        return f"{path} is owned by another user ({_described(found)})"
    if stat.S_ISLNK(found.st_mode) or (
        stat.S_ISDIR(found.st_mode) and found.st_mode & stat.S_ISVTX
    ):
        return None  # a link cannot be changed, only replaced; a sticky dir keeps ours ours
    if found.st_mode & 0o002 or (found.st_mode & 0o020 and not _private_group(found.st_gid)):
        return f"{path} is writable by others ({_described(found)})"
    return None


def _described(found: os.stat_result) -> str:
    try:
        owner = pwd.getpwuid(found.st_uid).pw_name if pwd is not None else str(found.st_uid)
    except KeyError:
        owner = str(found.st_uid)
    return f"owner {owner}, mode {stat.filemode(found.st_mode)}"


def _private_group(gid: int) -> bool:
    """The user's own group with no other members (the umask 002 convention)."""
    try:
        import grp  # POSIX only, like the group bits it is asked about

        return gid == os.getgid() and not grp.getgrgid(gid).gr_mem
    except (ImportError, KeyError):
        return False
