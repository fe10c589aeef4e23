"""Which kernel spec started a running process, for launchers that did not record it.

jupyter_client before 8.3 writes ``"kernel_name": ""`` into the connection file, so a kernel
cannot ask which spec it came from; the honest answer is the spec whose command line and
environment are this process's.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping

from kernelmagic.domain import checks
from kernelmagic.storage.discovery import list_specs

_PLACEHOLDER = re.compile(r"\\\{[A-Za-z0-9_]+\\\}")  # an escaped {name}, as re.escape writes it


def _same_program(spec_program: str, started: str) -> bool:
    if checks.launch_program(spec_program) != spec_program:
        return True  # a bare python: Jupyter starts whatever interpreter launched it
    found = spec_program if os.sep in spec_program else shutil.which(spec_program)
    return found is not None and os.path.realpath(found) == os.path.realpath(started)


def specs_matching_process(argv: list[str], environ: Mapping[str, str]) -> list[str]:
    """The names of the specs that could have started a process with this command line
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
    for info in list_specs():
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
