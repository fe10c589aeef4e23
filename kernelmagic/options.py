"""Options as data, each defined once for both front ends.

The CLI feeds these definitions to ``argparse``, the magics to IPython's ``magic_arguments``;
each command's request (the ``Request`` of ``kernelmagic/commands/NAME.py``) lists the options
of its command beside its fields and is built from what they parsed (``from_args``). The few options
that exist in one front end only carry a tag: the CLI reads a snippet or an env file from a
file (``--snippet-file``, ``--file``) where a cell magic has its cell.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from kernelmagic.errors import InvalidInput
from kernelmagic.storage.discovery import location_dir

CLI = "cli"
MAGICS = "magics"


# What an option's value is, for Tab completion.
SPEC_NAME = "spec name"  # an installed spec
MODULE_NAME = "module name"  # a module of the module system


class Option(NamedTuple):  # not a frozen dataclass: made in a third of the time (issue 38)
    """One option: ``argparse.add_argument``'s flags and keywords, ``only`` when it exists in
    one front end (``CLI`` or ``MAGICS``), ``completes``: what its value is (``SPEC_NAME``,
    ``MODULE_NAME``), so that Tab can offer the names, and ``old``: flags of an earlier
    release that still work, with a line saying so."""

    flags: tuple[str, ...]
    kwargs: Mapping[str, Any] = MappingProxyType({})
    only: str | None = None
    completes: str | None = None
    old: tuple[str, ...] = ()

    @property
    def takes_value(self) -> bool:
        return self.kwargs.get("action") not in ("store_true", "store_false")


def option(
    *flags: str,
    only: str | None = None,
    completes: str | None = None,
    old: tuple[str, ...] = (),
    **kwargs: Any,
) -> Option:
    return Option((*flags, *old), MappingProxyType(kwargs), only, completes, old)


# The release in which the spellings ``Option.old`` names stop working.
OLD_SPELLINGS_END = "0.4"


def old_spellings(options: Iterable[Option], words: Iterable[str]) -> list[str]:
    """A line for each flag of an earlier release among ``words`` (a command line, split)."""
    options = list(options)
    by_flag = {flag: opt for opt in options for flag in opt.old}
    flags = [flag for opt in options for flag in opt.flags if flag.startswith("--")]
    said: list[str] = []
    for word in words:
        if word == "--":  # the rest are not options
            break
        flag = word.split("=", 1)[0]
        if flag not in by_flag and flag.startswith("--") and flag not in flags:
            # argparse takes a unique prefix of a flag for it (`--kern` for `--kernel`).
            matches = [f for f in flags if f.startswith(flag)]
            flag = matches[0] if len(matches) == 1 else flag
        opt = by_flag.get(flag)
        if opt is not None:
            new = "/".join(f for f in opt.flags if f not in opt.old)
            ends = f"it stops working in {OLD_SPELLINGS_END}"
            line = f"note: {flag} is the old spelling of {new}; {ends}"
            if line not in said:
                said.append(line)
    return said


def for_front_end(options: Iterable[Option], front_end: str) -> list[Option]:
    return [o for o in options if o.only in (None, front_end)]


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option], front_end: str) -> None:
    """Add the options this front end has to ``parser``."""
    for opt in for_front_end(options, front_end):
        parser.add_argument(*opt.flags, **opt.kwargs)


def parse_words(parser: argparse.ArgumentParser, words: Sequence[str]) -> argparse.Namespace:
    """The namespace of a command's words, with its options allowed between its names
    (``apply FILE --check NAME``, ``remove a --dry-run b``), as ``jupyter kernelspec`` allows:
    argparse's plain parse ends a ``NAME ...`` list at the first option and refuses the names
    after it. Parsed plainly: a command that hands its rest on (``shell -- CMD``), and words
    with ``--``, which the intermixed parse drops when it comes before any name, so that
    what follows it became options again (walk U: ``remove -- --missing`` removed every dead
    spec). A line the intermixed parse refuses is refused with the plain parse's words,
    which name every missing argument."""
    plain = "--" in words or any(a.nargs == argparse.REMAINDER for a in parser._actions)
    if plain:
        return parser.parse_args(words)
    try:
        return parser.parse_intermixed_args(words)
    except Exception:  # the parser's own error (UsageError, UsageFailure): said below
        return parser.parse_args(words)


def path(text: str) -> str:
    """A path option's value with ``~`` and ``~user`` expanded (a magic line has no shell to
    do it, and ``--opt=~/x`` is left alone by shells too)."""
    return os.path.expanduser(text)


# argparse's handling of option strings is quadratic in their number (30,000 `-u` flags take
# 17 s): more than this many is refused at once. Many variables go in a file (`env --file`).
MAX_OPTION_WORDS = 1000


def check_option_count(words: Sequence[str]) -> None:
    """Refuse a command line with more option words than argparse handles quickly."""
    count = sum(1 for word in words if word.startswith("-"))
    if count > MAX_OPTION_WORDS:
        raise InvalidInput(
            f"{count} options given, at most {MAX_OPTION_WORDS}; put many variables in a "
            "file instead (env --file PATH, or the cell of %%kernel_env)"
        )


def seconds(value: float, flag: str = "--timeout") -> float:
    """A duration option: a positive, finite number of seconds."""
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise InvalidInput(f"{flag} must be a positive number of seconds, not {value!r}")
    return float(value)


# --- where a spec goes -------------------------------------------------------------------

USER = option("--user", action="store_true", help="install for this user (the default)")
SYS_PREFIX = option(
    "--sys-prefix", action="store_true", help="install into this environment's share/jupyter"
)
PREFIX = option("--prefix", metavar="DIR", type=path, help="install into DIR/share/jupyter/kernels")
GROUP = option(
    "--group",
    metavar="GROUP",
    help="share the spec with a Unix group: its dir group-owned and setgid, its files "
    "group-readable (a spec holding a secret is refused; install's --include names one to "
    "share on purpose)",
)
LOCATION_OPTIONS = (USER, SYS_PREFIX, PREFIX)


def kernels_dir_from_args(ns: argparse.Namespace, default_location: str = "user") -> str:
    """The kernels dir ``--user``, ``--sys-prefix`` or ``--prefix DIR`` name (one at most),
    else the configured default location's."""
    given = [flag for flag, on in (("--user", ns.user), ("--sys-prefix", ns.sys_prefix)) if on]
    if ns.prefix is not None:
        given.append("--prefix")
    if len(given) > 1:
        raise InvalidInput("choose one location: --user, --sys-prefix or --prefix DIR")
    if not given:
        return location_dir(sys_prefix=default_location == "sys-prefix")
    return location_dir(user=ns.user, sys_prefix=ns.sys_prefix, prefix=ns.prefix)


def user_kernels_dir() -> str:
    """The default of a request's ``kernels_dir``: the user's, as Jupyter finds it now."""
    return location_dir(user=True)


# --- a spec's env ------------------------------------------------------------------------

ENV = option(
    "--env",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="set a variable, written as typed (repeatable; `${PATH}` stays a launch-time template)",
)
UNSET = option(
    "-u",
    "--unset",
    action="append",
    default=[],
    metavar="KEY",
    help="remove a variable from env (repeatable)",
)
LITERAL = option(
    "--literal",
    action="store_true",
    help="escape `$` in given values so they reach the kernel literally, not as templates",
)


# --- options several commands share -----------------------------------------------------

NAME = option("name", metavar="NAME", completes=SPEC_NAME, help="the kernel spec's name")
DISPLAY_NAME = option("--display-name", metavar="TEXT", help="the name the Jupyter UI shows")
REPLACE = option(
    "--replace", action="store_true", help="overwrite an existing spec of the same name"
)
DRY_RUN = option("--dry-run", action="store_true", help="show what would change; write nothing")
SOURCE_SPEC = option("source", metavar="SRC", completes=SPEC_NAME, help="the spec to copy")
NEW_NAME = option("new_name", metavar="DST", help="the new spec's name")
INCLUDE = option(
    "--include",
    action="append",
    default=[],
    metavar="GLOB",
    help="always capture matching variables, even unchanged or secret-like",
)
MODULES = option(
    "--modules",
    completes=MODULE_NAME,
    metavar='"A B"',
    help="capture what `module load A B` sets (Lmod or Environment Modules)",
)
FROM_CONDA = option(
    "--from-conda",
    metavar="ENV",
    help="capture what activating this conda env (name or prefix) sets, activate.d scripts "
    "included; the kernel runs ENV/bin/python",
)
SHELL = option(
    "--shell", metavar="PATH", type=path, help="the shell that runs snippets (default: bash)"
)
TRUST = option(
    "--trust",
    action="store_true",
    help="also run the named specs that other users can change (their argv and env run as "
    "you): only once you have read them",
)
SHELL_TIMEOUT = option(
    "--timeout",
    metavar="SECONDS",
    type=float,
    default=300.0,
    help="stop the shell that runs the snippet, modules or activation after this long, with "
    "everything it started (default: 300)",
)
