"""Which specs others can change: the rule every path that runs a spec's program follows.

A spec whose ``kernel.json``, directory or kernels directory another user can write (or owns)
could make kernelmagic run anything as you: its argv, or a ``sitecustomize.py`` on a
``PYTHONPATH`` it sets. So could whatever the spec runs: its program and the environment
around it (a ``.pth`` file in a group-writable venv runs at every interpreter start), the
directories it puts on ``PYTHONPATH``, a container image given as a path, the project it was
made from; and so could any directory above one of these, since whoever can rename an
ancestor can put another tree in its place. The rule is OpenSSH's ``StrictModes``: each path
and every directory above it, up to ``/``, is owned by root or you and writable by nobody
else (a sticky directory such as ``/tmp`` excepted, where others cannot replace what is
yours; a private group of your own excepted). The doctor's probes, ``doctor --launch``,
``shell`` and ``refresh`` run such a spec only when it is named and the user says
``--trust`` (having read it).
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from typing import Any

try:
    import pwd  # POSIX only, like the owners it names
except ImportError:  # pragma: no cover - Windows
    pwd = None  # type: ignore[assignment]

from kernelmagic.domain import containers
from kernelmagic.domain.provenance import Provenance

TRUST_ADVICE = (
    "kernelmagic runs no program or env that others can change (make it yours and not "
    "group/world-writable, or name it with --trust once you have read it)"
)


def untrusted(info: Any) -> str | None:
    """Why a spec (a ``SpecInfo``) is not to be run as this user, or None: another user can
    change its kernel.json, its directory, the kernels dir, what it runs, or a directory
    above any of them."""
    if info.native:
        return None
    spec = info.spec if isinstance(info.spec, dict) else {}
    paths = [info.kernel_json, info.resource_dir, *executed(spec)]
    return others_can_change_above(paths)


def executed(spec: dict[str, Any]) -> list[str]:
    """What running ``spec`` executes or imports from, as paths: its program (and where a
    link takes it), the environment around the program (its prefix and site-packages, where
    ``.pth`` files run), absolute ``PYTHONPATH`` and ``PATH`` entries its env sets, a container
    image given as a path, and the project it was made from."""
    found: list[str] = []
    argv = spec.get("argv")
    env = spec.get("env") if isinstance(spec.get("env"), dict) else {}
    if isinstance(argv, list) and argv and isinstance(argv[0], str):
        program = argv[0] if os.path.isabs(argv[0]) else shutil.which(argv[0])
        if program:
            found += [program, os.path.realpath(program)]
            found += _environment_of(program)
    for name in ("PYTHONPATH", "PATH"):
        value = env.get(name) if isinstance(env, dict) else None
        if isinstance(value, str):
            found += [p for p in value.split(os.pathsep) if os.path.isabs(p) and "$" not in p]
    container = containers.of_spec(spec)
    if container is not None and container.is_path:
        found += [container.program, container.image]
    record = Provenance.of_spec(spec)
    root = (record.project or {}).get("root") if record is not None else None
    if isinstance(root, str) and os.path.isabs(root):
        found.append(root)
    return found


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
    if not hasattr(os, "O_PATH"):
        return others_can_change(_with_ancestors(paths), follow_links=False)
    for path in paths:
        found = _walk_down(os.path.abspath(path))
        if found:
            return found
    return None


_MAX_LINKS = 40  # as the kernel's own limit on links in one lookup


def _walk_down(path: str) -> str | None:
    """Why another user could change ``path`` or a directory on the way to it, found on the
    descriptors the walk opens (what was looked at is what is there); None where nobody
    can, or where the path ends before it is found."""
    flags = os.O_PATH | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open("/", flags | os.O_DIRECTORY)
    where, links = "/", 0
    todo = [part for part in path.split("/") if part]
    try:
        found = _changeable(os.fstat(fd), where)
        while todo and not found:
            name = todo.pop(0)
            if name == ".":
                continue
            try:
                child = os.open(name, flags, dir_fd=fd)
            except OSError:
                return None  # the rest is not there (or not a directory): nothing to run
            info = os.fstat(child)
            here = os.path.normpath(os.path.join(where, name))
            found = _changeable(info, here)
            if stat.S_ISLNK(info.st_mode) and not found:
                links += 1
                target = os.readlink(name, dir_fd=fd)
                os.close(child)
                if links > _MAX_LINKS:
                    return None  # no lookup gets through: nothing to run
                todo[:0] = [part for part in target.split("/") if part]
                if target.startswith("/"):
                    os.close(fd)
                    fd, where = os.open("/", flags | os.O_DIRECTORY), "/"
                continue
            os.close(fd)
            fd, where = child, here
        return found
    finally:
        os.close(fd)


def _with_ancestors(paths: Iterable[str]) -> Iterator[str]:
    seen: set[str] = set()
    for path in paths:
        path = os.path.abspath(path)
        for candidate in (path, os.path.realpath(path)):
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
