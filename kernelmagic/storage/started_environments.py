"""Environments this interpreter was seen to start a kernel in, kept for the next activation.

``%kernel_activate`` starts the interpreter once in the new environment before it restarts
the kernel in place (a module that sets ``PYTHONHOME`` or shadows libzmq must be refused, not
leave a dead kernel); that check is ~0.4 s of an activation. Switching back and forth between
the same module sets is common, so a check that passed is remembered under a fingerprint of
everything it depended on: the interpreter file, every variable of the environment, the
files and directories named by the variables the interpreter and its loader read at start
(``PYTHON*``, ``LD_*``, ``DYLD_*``) and the files the check imported. Any change to one of them
is a new fingerprint and a new check. Only passes are kept; a failure is always checked
again. Entries live in an owner-only directory in the user's cache; one that others could
have written is not believed. (Not seen: a library overwritten in place inside a directory
on ``LD_LIBRARY_PATH``, which changes neither the directory nor the environment.)
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib.util
import os
import stat
from collections.abc import Mapping

from kernelmagic.domain.trust import others_can_change
from kernelmagic.storage.ipykernel_specs import cache_dir

# What the interpreter and the dynamic loader read when they start.
_READ_AT_START = ("PYTHON*", "LD_*", "DYLD_*")
# What the check imports: an upgrade of one of them is a new fingerprint.
_IMPORTED = ("ipykernel.kernelapp", "zmq", "IPython", "kernelmagic.restart.inplace")
_KEPT = 256  # entries; past this the oldest half goes


def passed(python: str, environ: Mapping[str, str]) -> bool:
    """Whether ``python`` was seen to start a kernel in exactly this environment."""
    directory = _directory()
    if directory is None:
        return False
    try:
        found = os.lstat(os.path.join(directory, fingerprint(python, environ)))
    except OSError:
        return False
    return stat.S_ISREG(found.st_mode) and found.st_uid == os.getuid()


def remember(python: str, environ: Mapping[str, str]) -> None:
    """Keep that ``python`` started a kernel in ``environ`` (nothing if no private dir)."""
    directory = _directory(create=True)
    if directory is None:
        return
    path = os.path.join(directory, fingerprint(python, environ))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with contextlib.suppress(OSError):
        os.close(os.open(path, flags, 0o600))
        _prune(directory)


def fingerprint(python: str, environ: Mapping[str, str]) -> str:
    """A digest of everything a start of ``python`` in ``environ`` depends on."""
    parts: list[object] = [os.path.realpath(python), _state(python), sorted(environ.items())]
    for name, value in sorted(environ.items()):
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in _READ_AT_START):
            for entry in value.replace(" ", os.pathsep).split(os.pathsep):
                if os.path.isabs(entry):
                    parts.append((entry, _state(entry)))
    for module in _IMPORTED:
        with contextlib.suppress(ImportError, ValueError):
            found = importlib.util.find_spec(module)
            origin = found.origin if found else None
            parts.append((module, origin, _state(origin) if origin else None))
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogateescape")).hexdigest()


def _state(path: str) -> tuple[int, ...] | None:
    """What changes when a file or directory is replaced, rewritten or has entries added."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


def _directory(create: bool = False) -> str | None:
    """The entries' directory, if only this user can change it (and its parent)."""
    directory = os.path.join(cache_dir(), "started")
    if not os.path.isabs(directory):
        return None
    if create:
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError:
            return None
    if not os.path.isdir(directory):
        return None
    return directory if others_can_change((directory, os.path.dirname(directory))) is None else None


def _prune(directory: str) -> None:
    with os.scandir(directory) as listing:
        entries = [e for e in listing if e.is_file(follow_symlinks=False)]
    if len(entries) <= _KEPT:
        return
    entries.sort(key=lambda e: e.stat(follow_symlinks=False).st_mtime_ns)
    for entry in entries[: len(entries) // 2]:
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
