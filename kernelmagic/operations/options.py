"""Every option, defined once, for both front ends.

The magics feed these definitions to IPython's ``magic_arguments`` and the CLI to
``argparse``; both then hand the parsed options to ``operations``, so a flag means the same
thing everywhere. This module is pure data: ``%load_ext`` imports it, and it must stay cheap.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    kwargs: dict[str, Any]


def _option(*flags: str, **kwargs: Any) -> Option:
    return Option(flags, kwargs)


def path(text: str) -> str:
    """A path option's value with ``~`` and ``~user`` expanded (a magic line has no shell to
    do it, and ``--opt=~/x`` is left alone by shells too)."""
    return os.path.expanduser(text)


NAME = _option("name", metavar="NAME", help="kernel spec name (stored lowercase)")
PATTERN = _option(
    "pattern",
    nargs="?",
    metavar="PATTERN",
    help="only names matching this glob (a plain word matches anywhere in the name)",
)
JSON = _option(
    "--json", action="store_true", help="output shaped like `jupyter kernelspec list --json`"
)
FROM_CURRENT = _option(
    "--from-current",
    action="store_true",
    help="a spec for the running interpreter with its environment captured (the default source)",
)
MODULES = _option(
    "--modules",
    metavar='"A B"',
    help="capture what `module load A B` sets (Lmod or Environment Modules)",
)
FROM_CONDA = _option(
    "--from-conda",
    metavar="ENV",
    help="capture what activating this conda env (name or prefix) sets, activate.d scripts "
    "included; the kernel runs ENV/bin/python",
)
PYTHON = _option(
    "--python",
    metavar="PATH",
    type=path,
    help="the kernel's interpreter (it must import ipykernel); on its own, a spec for that "
    "interpreter (a venv gets VIRTUAL_ENV and its bin on PATH)",
)
SHELL = _option(
    "--shell", metavar="PATH", type=path, help="the login shell that runs snippets (default: bash)"
)
TIMEOUT = _option(
    "--timeout",
    metavar="SECONDS",
    type=float,
    default=300.0,
    help="stop the login shell that runs the snippet, modules or activation after this "
    "long, with everything it started (default: 300)",
)
KERNEL_KIND = _option(
    "--kernel",
    dest="kernel_kind",
    choices=("python", "ir", "julia"),
    default="python",
    help="the kernel's language: python (ipykernel, the default), ir (R with IRkernel) or "
    "julia (IJulia); R and julia are found on the captured environment's PATH",
)
LIKE = _option(
    "--like",
    metavar="SPEC",
    help="a kernel like this installed spec (bash, xeus, Octave, a site's own): its argv, "
    "language, logos and metadata, its program found again in the captured environment",
)
PROGRAM = _option(
    "--program",
    metavar="PATH",
    type=path,
    help="with --kernel ir|julia or --like: the program to run (R, julia, ...) instead of the "
    "one found on PATH",
)
SOURCES = (FROM_CURRENT, MODULES, FROM_CONDA, PYTHON, SHELL, TIMEOUT)
DISPLAY_NAME = _option("--display-name", metavar="TEXT", help="the name the Jupyter UI shows")
USER = _option("--user", action="store_true", help="install for this user (the default)")
SYS_PREFIX = _option(
    "--sys-prefix", action="store_true", help="install into this environment's share/jupyter"
)
PREFIX = _option(
    "--prefix", metavar="DIR", type=path, help="install into DIR/share/jupyter/kernels"
)
LOCATION = (USER, SYS_PREFIX, PREFIX)
ENV = _option(
    "--env",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="set a variable, written as typed (repeatable; `${PATH}` stays a launch-time template)",
)
UNSET = _option(
    "-u",
    "--unset",
    action="append",
    default=[],
    metavar="KEY",
    help="remove a variable from env (repeatable)",
)
LITERAL = _option(
    "--literal",
    action="store_true",
    help="escape `$` in given values so they reach the kernel literally, not as templates",
)
CAPTURE = _option(
    "--capture",
    choices=("changed", "all", "none"),
    default=None,
    help="which variables of this session to capture: those that differ from a clean login "
    "shell (changed, the default), all but noise and secrets, or none",
)
BASELINE = _option(
    "--baseline",
    metavar="FILE",
    type=path,
    help="compare with this saved environment (JSON object, `env -0` or `env` output) "
    "instead of a clean login shell",
)
INCLUDE = _option(
    "--include",
    action="append",
    default=[],
    metavar="GLOB",
    help="always capture matching variables, even unchanged or secret-like",
)
EXCLUDE = _option(
    "--exclude",
    action="append",
    default=[],
    metavar="GLOB",
    help="never capture matching variables",
)
NO_TEMPLATES = _option(
    "--no-templates",
    action="store_true",
    help="write PATH-like variables literally instead of as additions around ${PATH}",
)
CAPTURE_OPTIONS = (CAPTURE, BASELINE, INCLUDE, EXCLUDE, NO_TEMPLATES)
REPLACE = _option(
    "--replace", action="store_true", help="overwrite an existing spec of the same name"
)
DRY_RUN = _option("--dry-run", action="store_true", help="show what would change; write nothing")
SOURCE = _option("source", metavar="SRC", help="the spec to copy")
NEW_NAME = _option("new_name", metavar="DST", help="the new spec's name")
LANGUAGE = _option("--language", metavar="NAME", help="the language the UI shows")
INTERRUPT_MODE = _option(
    "--interrupt-mode", choices=("signal", "message"), help="how Jupyter interrupts the kernel"
)
ARGV_PREFIX = _option(
    "--argv-prefix",
    metavar='"CMD ARGS"',
    help='prepend a command to argv, e.g. "nice -n 10" (shell quoting)',
)
METADATA = _option(
    "--metadata",
    action="append",
    default=[],
    metavar="KEY=JSON",
    help="set metadata[KEY] to a JSON value; null removes it (repeatable)",
)
UNDO = _option(
    "--undo",
    action="store_true",
    help="restore kernel.json as it was before the last change (repeat to go further back)",
)
PROVISIONER = _option(
    "--provisioner",
    metavar="NAME",
    help="start the kernel through this installed kernel provisioner; 'none' removes it",
)
PROVISIONER_CONFIG = _option(
    "--provisioner-config",
    action="append",
    default=[],
    metavar="KEY=JSON",
    help="an option of the provisioner (one of its configurable traits; repeatable)",
)
ENGINE = _option(
    "--engine",
    choices=("ssh", "kubernetes", "docker"),
    required=True,
    help="where the kernel runs: SSH hosts, Kubernetes pods or Docker containers",
)
HOST = _option(
    "--host",
    dest="hosts",
    action="append",
    default=[],
    metavar="HOST",
    help="an SSH host to start kernels on (repeatable; hosts are used in turn)",
)
IMAGE = _option("--image", metavar="IMAGE", help="the kernel image (kubernetes, docker)")
KERNEL = _option(
    "-k",
    "--kernel",
    metavar="NAME",
    help="the spec to change (default: the last one changed in this session, else this "
    "session's own kernel)",
)
ASSIGNMENTS = _option("assignments", nargs="*", metavar="KEY=VALUE", help="variables to set")
REPLACE_ENV = _option(
    "--replace",
    dest="replace_env",
    action="store_true",
    help="replace the whole env with the given variables",
)
NAMES = _option("names", nargs="*", metavar="NAME", help="kernel spec names")
FIX = _option(
    "--fix",
    action="store_true",
    help="remove the specs that cannot start because their program is gone; leave the rest",
)
MISSING = _option(
    "--missing",
    action="store_true",
    help="also remove every spec whose program (an absolute path) no longer exists",
)
PATTERNS = _option(
    "patterns", nargs="*", metavar="PATTERN", help="only specs whose names match these globs"
)
OUTPUT = _option(
    "-o", "--output", metavar="FILE", type=path, help="write the document to FILE (any name)"
)
DOCUMENT = _option("document", metavar="FILE", type=path, help="a document export wrote")
APPLY_NAMES = _option("names", nargs="*", metavar="NAME", help="only these specs of the document")
CHECK = _option(
    "--check",
    action="store_true",
    help="write nothing; exit 1 naming each spec and field where what is installed differs",
)
GROUP = _option(
    "--group",
    metavar="GROUP",
    help="share the spec with a Unix group: its dir group-owned and setgid, its files "
    "group-readable (a spec holding a secret is refused unless --include names it)",
)
LAUNCH = _option(
    "--launch",
    action="store_true",
    help="start each spec for real through jupyter_client and wait for its kernel_info "
    "reply; a failure shows the lines of the kernel's stderr that say why",
)
LAUNCH_TIMEOUT = _option(
    "--timeout",
    dest="launch_timeout",
    type=float,
    default=60.0,
    metavar="SECONDS",
    help="with --launch: how long to wait for each kernel (default: 60)",
)
DOCTOR_JSON = _option("--json", action="store_true", help="the report as JSON")
NO_RESTART = _option(
    "--no-restart",
    action="store_true",
    help="only update os.environ of this process (no restart); says which variables this "
    "interpreter reads only when it starts",
)
SAVE = _option(
    "--save",
    metavar="NAME",
    help="also install a spec NAME like this kernel's, carrying what the source sets, so "
    "the next start from Jupyter has it (%%kernel_refresh works on it)",
)


@dataclass(frozen=True)
class Command:
    summary: str
    options: tuple[Option, ...]
    cli: bool = True  # False: only a magic (it acts on the process it runs in)


COMMANDS: dict[str, Command] = {
    "list": Command(
        "List the kernel specs Jupyter finds, with their problems (hidden specs included).",
        (PATTERN, JSON),
    ),
    "show": Command("Show one kernel spec: its location, its problems and its JSON.", (NAME,)),
    "install": Command(
        "Install a kernel spec with an environment captured into its env: this session's "
        "(--from-current, the default), or what a shell snippet, --modules, --from-conda or "
        "--python sets.",
        (
            NAME,
            KERNEL_KIND,
            LIKE,
            PROGRAM,
            *SOURCES,
            DISPLAY_NAME,
            *LOCATION,
            GROUP,
            ENV,
            LITERAL,
            *CAPTURE_OPTIONS,
            REPLACE,
            DRY_RUN,
        ),
    ),
    "clone": Command(
        "Copy a kernel spec (every file and every JSON key) under a new name.",
        (SOURCE, NEW_NAME, DISPLAY_NAME, ENV, UNSET, LITERAL, *LOCATION, GROUP, REPLACE, DRY_RUN),
    ),
    "patch": Command(
        "Change fields of a kernel spec in place; prints a unified diff. Every change keeps "
        "the previous kernel.json, which --undo restores.",
        (
            NAME,
            DISPLAY_NAME,
            ENV,
            UNSET,
            LITERAL,
            LANGUAGE,
            INTERRUPT_MODE,
            ARGV_PREFIX,
            METADATA,
            PROVISIONER,
            PROVISIONER_CONFIG,
            UNDO,
            DRY_RUN,
        ),
    ),
    "env": Command(
        "Show or change a kernel spec's env. Values are written as typed; secret-like "
        "values are masked when shown.",
        (KERNEL, ASSIGNMENTS, UNSET, LITERAL, REPLACE_ENV, DRY_RUN),
    ),
    "provisioners": Command(
        "List the installed kernel provisioners, their package and their options.", ()
    ),
    "remote": Command(
        "Make a spec that runs on other hosts, pods or containers (gateway_provisioners), "
        "carrying over SRC's interpreter, env and display name.",
        (SOURCE, NEW_NAME, ENGINE, HOST, IMAGE, PROVISIONER_CONFIG, *LOCATION, REPLACE, DRY_RUN),
    ),
    "refresh": Command(
        "Re-run the source a spec was captured from and update its env (and argv if the "
        "interpreter moved); variables set by hand since are kept.",
        (NAME, TIMEOUT, DRY_RUN),
    ),
    "remove": Command("Remove kernel specs.", (NAMES, MISSING)),
    "export": Command(
        "Describe specs as one JSON document (how each was made, the variables set by hand; "
        "secrets masked) to recreate them elsewhere with apply.",
        (PATTERNS, OUTPUT),
    ),
    "apply": Command(
        "Recreate the specs of an exported document here, re-running each one's source so the "
        "captured values are this machine's; atomic, with backups.",
        (DOCUMENT, APPLY_NAMES, CHECK, DRY_RUN),
    ),
    "doctor": Command(
        "Check kernel specs (all, or the named ones) and say what to do about each problem: "
        "unreadable JSON, invalid names, missing programs, interpreters that cannot import "
        "their launcher, no {connection_file}, uninstalled provisioners, shadowed names, "
        "env paths that do not exist, templates naming unset variables.",
        (NAMES, FIX, LAUNCH, LAUNCH_TIMEOUT, DOCTOR_JSON),
    ),
    "activate": Command(
        "Activate an environment in this running kernel: run --modules, --from-conda or the "
        "cell's snippet in a shell started from the kernel's own environment, show what "
        "changed, and restart the kernel in place with it (same process, same connection; "
        "variables in memory are lost) once the cell has run.",
        (MODULES, FROM_CONDA, SHELL, TIMEOUT, INCLUDE, NO_RESTART, SAVE, REPLACE),
        cli=False,
    ),
}


# argparse's handling of option strings is quadratic in their number (30,000 `-u` flags take
# 17 s): more than this many is refused at once. Many variables go in a file (`env --file`).
MAX_OPTION_WORDS = 1000


def check_option_count(words: list[str]) -> None:
    """Refuse a command line with more option words than argparse handles quickly."""
    count = sum(1 for word in words if word.startswith("-"))
    if count > MAX_OPTION_WORDS:
        from kernelmagic.errors import InvalidInput

        raise InvalidInput(
            f"{count} options given, at most {MAX_OPTION_WORDS}; put many variables in a "
            "file instead (env --file PATH, or the cell of %%kernel_env)"
        )


def _dest(option: Option) -> str:
    if "dest" in option.kwargs:
        return option.kwargs["dest"]
    flag = next((f for f in option.flags if f.startswith("--")), option.flags[0])
    return flag.lstrip("-").replace("-", "_")


def _default(option: Option) -> Any:
    kwargs = option.kwargs
    if "default" in kwargs:
        return kwargs["default"]
    if kwargs.get("nargs") == "*":
        return []
    return False if kwargs.get("action") == "store_true" else None


def add_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Add ``command``'s options, and give every other option of any command its default,
    so that the shared operations read any attribute of any namespace."""
    own = set()
    for option in COMMANDS[command].options:
        parser.add_argument(*option.flags, **option.kwargs)
        own.add(_dest(option))
    parser.set_defaults(**{k: v for k, v in _ALL_DEFAULTS.items() if k not in own})


_ALL_DEFAULTS = {
    _dest(option): _default(option) for command in COMMANDS.values() for option in command.options
}
