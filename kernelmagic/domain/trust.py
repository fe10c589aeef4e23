"""Which specs others can change: the rule every path that runs a spec's program follows.

A spec whose ``kernel.json``, directory or kernels directory another user can write (or owns)
could make kernelmagic run anything as you: its argv, or a ``sitecustomize.py`` on a
``PYTHONPATH`` it sets. The doctor's probes, ``doctor --launch`` and ``refresh`` run such a
spec only when it is named and the user says ``--trust`` (having read it).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from typing import Any

TRUST_ADVICE = (
    "kernelmagic runs no program or env that others can change (make it yours and not "
    "group/world-writable, or name it with --trust once you have read it)"
)


def untrusted(info: Any, stat_path: Callable[[str], os.stat_result] = os.stat) -> str | None:
    """Why a spec (a ``SpecInfo``) is not to be run as this user, or None: another user can
    change its kernel.json, its directory or the kernels dir above it."""
    return None if info.native else others_can_change(checked_paths(info), stat_path)


def checked_paths(info: Any) -> tuple[str, ...]:
    """The paths ``untrusted`` looks at."""
    return (info.kernel_json, info.resource_dir, os.path.dirname(info.resource_dir))


def others_can_change(
    paths: Iterable[str], stat_path: Callable[[str], os.stat_result] = os.stat
) -> str | None:
    """Why another user could change what these paths hold (a file, its directory, the one
    above), or None: one is owned by another user who is not root, or writable by group or
    others (a private group of the user's own excepted, and a sticky dir such as ``/tmp``,
    where others cannot replace what is ours). A path that does not exist is skipped."""
    me = os.getuid() if hasattr(os, "getuid") else None  # no owners to compare on Windows
    for path in paths:
        try:
            found = stat_path(path)
        except OSError:
            continue
        if me is not None and found.st_uid not in (0, me):
            return f"{path} is owned by another user"
        if stat.S_ISDIR(found.st_mode) and found.st_mode & stat.S_ISVTX:
            continue
        if found.st_mode & 0o002 or (found.st_mode & 0o020 and not _private_group(found.st_gid)):
            return f"{path} is writable by others"
    return None


def _private_group(gid: int) -> bool:
    """The user's own group with no other members (the umask 002 convention)."""
    try:
        import grp  # POSIX only, like the group bits it is asked about

        return gid == os.getgid() and not grp.getgrgid(gid).gr_mem
    except (ImportError, KeyError):
        return False
