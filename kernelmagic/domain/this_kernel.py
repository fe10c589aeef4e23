"""The kernel this process runs in: whether it is a Jupyter kernel, and which spec started it.

jupyter_client before 8.3 writes ``"kernel_name": ""`` into the connection file, so a kernel
cannot always ask which spec it came from; then the honest answer is the spec whose command
line and environment are this process's. ipykernel is imported only when it is already
loaded; nothing here imports IPython.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kernelmagic.domain import checks
from kernelmagic.domain.spec_info import SpecInfo
from kernelmagic.errors import InvalidInput


def kernel_app() -> Any | None:
    """The running ``IPKernelApp`` when this session is a Jupyter kernel, else None."""
    if "ipykernel" not in sys.modules:
        return None
    from ipykernel.kernelapp import IPKernelApp

    # initialized() alone is not enough: a terminal IPython's app is a singleton of a common
    # base class, and IPKernelApp inherits its _instance.
    if IPKernelApp.initialized() and isinstance(IPKernelApp._instance, IPKernelApp):
        return IPKernelApp._instance
    return None


def in_kernel() -> bool:
    """Whether this session runs in a Jupyter kernel (a notebook, not a terminal)."""
    return kernel_app() is not None


def own_spec(listed: Callable[[], Iterable[SpecInfo]]) -> tuple[str, str] | None:
    """(name, how it was found) of the spec this session's kernel was started from, if it
    runs in ipykernel; ``InvalidInput`` when several specs could have started it.
    ``listed`` gives the installed specs (``storage.discovery.list_specs``), asked only
    where the kernel's launcher did not record its spec's name."""
    if not in_kernel():
        return None
    try:
        from ipykernel.connect import get_connection_file

        with open(get_connection_file(), encoding="utf-8") as f:
            recorded = json.load(f).get("kernel_name")
    except (OSError, ValueError, ImportError):
        return None
    if recorded:
        return recorded, "this kernel's spec"
    # Launchers before jupyter_client 8.3 leave the name out: find the spec that matches
    # this process's command line and environment.
    matches = specs_matching_process(list(sys.orig_argv), os.environ, listed())
    if len(matches) > 1:
        raise InvalidInput(
            f"this kernel could have been started from any of {', '.join(matches)} (its "
            "launcher did not record which); pass -k NAME"
        )
    if matches:
        return matches[0], "this kernel's spec, found by its command line and env"
    return None


_PLACEHOLDER = re.compile(r"\\\{[A-Za-z0-9_]+\\\}")  # an escaped {name}, as re.escape writes it


def _same_program(spec_program: str, started: str) -> bool:
    if checks.launch_program(spec_program) != spec_program:
        return True  # a bare python: Jupyter starts whatever interpreter launched it
    found = spec_program if os.sep in spec_program else shutil.which(spec_program)
    return found is not None and os.path.realpath(found) == os.path.realpath(started)


def specs_matching_process(
    argv: list[str], environ: Mapping[str, str], specs: Iterable[SpecInfo]
) -> list[str]:
    """The names of the ``specs`` that could have started a process with this command line
    (``sys.orig_argv``) and environment: argv equal with Jupyter's ``{placeholders}`` filled
    in any way (plus any arguments the launcher appends, as nbclient appends
    ``--HistoryManager.hist_file=:memory:``), the same program, and every literal ``env``
    value present.

    For a kernel whose launcher did not record its spec's name (jupyter_client < 8.3 writes
    ``"kernel_name": ""`` into the connection file). When several match, only those that
    explain the most (the longest argv, then the most ``env`` values matched) are returned:
    a spec with no ``env`` matches every kernel of its interpreter.
    """
    matches: dict[str, tuple[int, int]] = {}
    for info in specs:
        spec_argv = checks.argv_strings(info.spec) if info.visible else None
        if not spec_argv or len(spec_argv) > len(argv):
            continue
        if not _same_program(spec_argv[0], argv[0]):
            continue
        if not all(
            re.fullmatch(_PLACEHOLDER.sub(".*", re.escape(want)), got, re.DOTALL)
            for want, got in zip(spec_argv[1:], argv[1 : len(spec_argv)], strict=True)
        ):
            continue
        literal = {
            k: v.replace("$$", "$")
            for k, v in info.env.items()
            if isinstance(v, str) and "$" not in v.replace("$$", "")
        }
        if all(environ.get(k) == v for k, v in literal.items()):
            matches[info.name] = (len(spec_argv), len(literal))
    best = max(matches.values(), default=None)
    return [name for name, explained in matches.items() if explained == best]
