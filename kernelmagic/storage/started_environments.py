"""Environments this interpreter was seen to start a kernel in, kept for the next activation.

``%kernel_activate`` starts the interpreter once in the new environment before it restarts
the kernel in place (a module that sets ``PYTHONHOME`` or shadows libzmq must be refused, not
leave a dead kernel); that check is ~0.2 s of an activation. Switching back and forth between
the same module sets is common, so a check that passed is remembered under a fingerprint of
the interpreter file, every variable of the environment, the files and directories named by
the variables the interpreter and its loader read at start (``PYTHON*``, ``LD_*``,
``DYLD_*``) and the files the check imports. The entry holds what the checked interpreter
itself read: every module file it imported, every shared object it mapped, every directory on
its ``sys.path`` and the ``.pth`` files in them, its ``pyvenv.cfg``; each is looked at again
(one ``stat``) before the entry is believed, so a file rewritten in place, a package installed
or removed, a ``.pth`` dropped into site-packages means a new check. Only passes are kept; a
failure is always checked again. Entries live in an owner-only directory in the user's cache;
one that others could have written is not believed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib.util
import json
import os
import stat
from collections.abc import Mapping

from kernelmagic.domain.ownership import others_can_change
from kernelmagic.storage import files_read
from kernelmagic.storage.atomic import write_bytes_atomic
from kernelmagic.storage.ipykernel_specs import cache_dir

# What the interpreter and the dynamic loader read when they start.
_READ_AT_START = ("PYTHON*", "LD_*", "DYLD_*")
# What the check imports: an upgrade of one of them is a new fingerprint.
_IMPORTED = ("ipykernel.kernelapp", "zmq", "IPython", "kernelmagic.restart.inplace")
_KEPT = 256  # entries; past this the oldest half goes
_FORMAT = 2  # entries hold the state of what the check read


def passed(python: str, environ: Mapping[str, str]) -> bool:
    """Whether ``python`` was seen to start a kernel in exactly this environment, and
    nothing it read then has changed since."""
    directory = _directory()
    if directory is None:
        return False
    path = os.path.join(directory, fingerprint(python, environ))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        found = os.fstat(f.fileno())
        if not stat.S_ISREG(found.st_mode) or found.st_uid != os.getuid():
            return False
        try:
            read = json.loads(f.read())
        except ValueError:
            return False
    if not isinstance(read, list) or not read:
        return False
    return all(
        isinstance(item, list) and len(item) == 2 and files_read.unchanged(item[0], item[1])
        for item in read
    )


def remember(python: str, environ: Mapping[str, str], report: str) -> None:
    """Keep that ``python`` started a kernel in ``environ``, with what it read (the check's
    output, ``files_read.report``); nothing if there is no private dir or no report."""
    read = files_read.parse(report)
    directory = _directory(create=True) if read else None
    if directory is None:
        return
    path = os.path.join(directory, fingerprint(python, environ))
    with contextlib.suppress(OSError):
        write_bytes_atomic(path, json.dumps(read).encode("utf-8", "surrogateescape"), mode=0o600)
        _prune(directory)


def fingerprint(python: str, environ: Mapping[str, str]) -> str:
    """A digest of everything a start of ``python`` in ``environ`` depends on."""
    parts: list[object] = [
        _FORMAT,
        os.path.realpath(python),
        files_read.state(python),
        sorted(environ.items()),
    ]
    for name, value in sorted(environ.items()):
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in _READ_AT_START):
            for entry in value.replace(" ", os.pathsep).split(os.pathsep):
                if os.path.isabs(entry):
                    parts.append((entry, files_read.state(entry)))
    for module in _IMPORTED:
        with contextlib.suppress(ImportError, ValueError):
            found = importlib.util.find_spec(module)
            origin = found.origin if found else None
            parts.append((module, origin, files_read.state(origin) if origin else None))
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogateescape")).hexdigest()


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
