"""What a Python interpreter's start read: every module file it imported, every shared object
its loader mapped, every directory on its ``sys.path`` and the ``.pth`` files in them, its
``pyvenv.cfg``; and whether each is as it was.

``report`` runs in the interpreter that ``%kernel_activate`` checks (``python -c``, after the
kernel machinery is imported) and prints one line; ``storage.started_environments`` keeps it
with a pass. Only the standard library: a module of kernelmagic that the new environment
broke, and that the restarted kernel never imports, must not fail the check.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable

_REPORT = "kernelmagic-files-read:"  # the check's line of output starts so


def report() -> None:
    """Print what this interpreter's start read (its modules so far included)."""
    paths = {sys.executable, os.path.join(sys.prefix, "pyvenv.cfg")}
    for module in list(sys.modules.values()):
        origin = getattr(module, "__file__", None)
        if isinstance(origin, str):
            paths.add(origin)
    for entry in sys.path:
        if entry and os.path.isabs(entry) and os.path.isdir(entry):
            paths.add(entry)
            with contextlib.suppress(OSError):
                paths.update(
                    os.path.join(entry, n) for n in os.listdir(entry) if n.endswith(".pth")
                )
    with contextlib.suppress(OSError), open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:  # the shared objects its loader mapped
            fields = line.rstrip("\n").split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/"):
                paths.add(fields[5])
    print(report_line(paths))


def report_line(paths: Iterable[str]) -> str:
    """The line ``report`` prints: the state of each of ``paths`` now."""
    return _REPORT + json.dumps([[p, state(p)] for p in sorted(set(paths))])


def parse(output: str) -> list[list[object]] | None:
    """The paths and states of a report in ``output`` (its last), or None."""
    for line in reversed(output.splitlines()):
        if line.startswith(_REPORT):
            with contextlib.suppress(ValueError):
                read = json.loads(line[len(_REPORT) :])
                return read if isinstance(read, list) and read else None
    return None


def unchanged(path: object, recorded: object) -> bool:
    """Whether ``path`` is as a report recorded it."""
    if not isinstance(path, str):
        return False
    now = state(path)
    return (list(now) if now is not None else None) == recorded


def state(path: str) -> tuple[int, ...] | None:
    """What changes when a file or directory is replaced, rewritten or has entries added."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)
