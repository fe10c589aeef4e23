"""Tab completion for the magics, from the same option data the parsers use.

After ``%kernel_show``, ``--like``, ``-k``, ``clone`` and the other places that take an
installed spec, Tab offers spec names; after ``-`` the magic's own options; after
``--modules`` the module system's modules (``module -t avail``, asked once a session); after
an option with choices, its choices; where a path goes, IPython's own file completion.
Nothing else is offered on a kernelmagic line: no Python names. No IPython import:
``ipython_extension`` hands this to IPython's completer.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess

from kernelmagic.commands import BY_MAGIC
from kernelmagic.domain.shells import clean_environment, run_probe
from kernelmagic.options import MAGICS, MODULE_NAME, SPEC_NAME, Option, for_front_end, path
from kernelmagic.storage.discovery import spec_names

_MAGIC_LINE = re.compile(r"\s*(?:[A-Za-z_][\w.]*\s*=\s*)?%%?(kernel_\w+)\b")  # extension's


def complete(text: str, token: str) -> list[str] | None:
    """What may stand at the cursor of a kernelmagic magic line: ``text`` is the line up to
    the cursor, ``token`` the fragment being completed (what IPython replaces). None where a
    path goes (``--prefix``, ``%kernel_apply FILE``): IPython's own file completion."""
    found = _MAGIC_LINE.match(text)
    command = BY_MAGIC.get(found.group(1)) if found else None
    if command is None or found is None:
        return []
    options = for_front_end(command.load().Request.OPTIONS, MAGICS)
    words, typing = _words(text[found.end() :])
    if typing.startswith("-") and '"' not in typing:
        # An earlier release's spelling still works but is not offered.
        flags = {f for opt in options for f in opt.flags if f.startswith("-") and f not in opt.old}
        return sorted(f for f in flags if f.startswith(typing))
    by_flag = {flag: opt for opt in options for flag in opt.flags if flag.startswith("-")}
    previous = by_flag.get(words[-1]) if words else None
    wanted = previous if previous is not None and previous.takes_value else None
    if wanted is None:
        wanted = _positional(options, by_flag, words)
    if wanted is not None and wanted.kwargs.get("type") is path:
        return None
    return sorted(v for v in _values(wanted) if v.startswith(token))


def _words(rest: str) -> tuple[list[str], str]:
    """The finished words of the arguments, and the one being typed (an open double quote
    belongs to it: ``--modules "gcc/12 gd``)."""
    if rest.count('"') % 2:
        head, _, typing = rest.rpartition('"')
        return head.split(), '"' + typing
    words = rest.split()
    if rest and not rest[-1].isspace() and words:
        return words[:-1], words[-1]
    return words, ""


def _positional(
    options: list[Option], by_flag: dict[str, Option], words: list[str]
) -> Option | None:
    """The positional option the word at the cursor fills."""
    positionals = [opt for opt in options if not opt.flags[0].startswith("-")]
    index, skip = 0, False
    for word in words:
        if skip:
            skip = False
        elif word in by_flag:
            skip = by_flag[word].takes_value
        elif not word.startswith("-"):
            index += 1
    for opt in positionals:
        many = opt.kwargs.get("nargs") in ("*", "+")
        if index == 0 or many:
            return opt
        index -= 1
    return None


def _values(opt: Option | None) -> list[str]:
    if opt is None:
        return []
    if opt.completes == SPEC_NAME:
        return spec_names()
    if opt.completes == MODULE_NAME:
        return list(module_names())
    return [str(choice) for choice in opt.kwargs.get("choices") or ()]


@functools.cache
def module_names() -> tuple[str, ...]:
    """The modules ``module -t avail`` lists in a login shell with this session's
    MODULEPATH; asked once a session (Lmod walks every modulefile), none without one."""
    env = clean_environment(os.environ, ("MODULEPATH",))
    try:
        done = run_probe(["bash", "-l", "-c", "module -t avail 2>&1"], env, 15)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    names = []
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line or line.endswith(":") or " " in line:
            continue  # a modulefile dir's heading, or a message
        name = re.sub(r"\((default|D|L)\)$", "", line).rstrip("/")
        if name and name not in names:
            names.append(name)
    return tuple(names)
