"""Every option, defined once, and the conversion of parsed options into library requests.

The magics feed these definitions to IPython's ``magic_arguments`` and the CLI to
``argparse``; both then call the same ``*_request`` helpers, so a flag means the same thing
everywhere. Nothing here imports IPython.
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import dataclass
from typing import Any

from . import envcapture, specs
from .assignments import AssignmentError, EnvChanges, check_env_name, parse_assignment


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    kwargs: dict[str, Any]


def _option(*flags: str, **kwargs: Any) -> Option:
    return Option(flags, kwargs)


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
    help="the kernel's interpreter (it must import ipykernel); on its own, a spec for that "
    "interpreter (a venv gets VIRTUAL_ENV and its bin on PATH)",
)
SHELL = _option(
    "--shell", metavar="PATH", help="the login shell that runs snippets (default: bash)"
)
SOURCES = (FROM_CURRENT, MODULES, FROM_CONDA, PYTHON, SHELL)
DISPLAY_NAME = _option("--display-name", metavar="TEXT", help="the name the Jupyter UI shows")
USER = _option("--user", action="store_true", help="install for this user (the default)")
SYS_PREFIX = _option(
    "--sys-prefix", action="store_true", help="install into this environment's share/jupyter"
)
PREFIX = _option("--prefix", metavar="DIR", help="install into DIR/share/jupyter/kernels")
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
DOCTOR_JSON = _option("--json", action="store_true", help="the report as JSON")


@dataclass(frozen=True)
class Command:
    summary: str
    options: tuple[Option, ...]


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
            *SOURCES,
            DISPLAY_NAME,
            *LOCATION,
            ENV,
            LITERAL,
            *CAPTURE_OPTIONS,
            REPLACE,
            DRY_RUN,
        ),
    ),
    "clone": Command(
        "Copy a kernel spec (every file and every JSON key) under a new name.",
        (SOURCE, NEW_NAME, DISPLAY_NAME, ENV, UNSET, LITERAL, *LOCATION, REPLACE, DRY_RUN),
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
            UNDO,
            DRY_RUN,
        ),
    ),
    "env": Command(
        "Show or change a kernel spec's env. Values are written as typed; secret-like "
        "values are masked when shown.",
        (KERNEL, ASSIGNMENTS, UNSET, LITERAL, REPLACE_ENV, DRY_RUN),
    ),
    "refresh": Command(
        "Re-run the source a spec was captured from and update its env (and argv if the "
        "interpreter moved); variables set by hand since are kept.",
        (NAME, DRY_RUN),
    ),
    "remove": Command("Remove kernel specs.", (NAMES, MISSING)),
    "doctor": Command(
        "Check kernel specs (all, or the named ones) and say what to do about each problem: "
        "unreadable JSON, invalid names, missing programs, interpreters that cannot import "
        "their launcher, no {connection_file}, uninstalled provisioners, shadowed names, "
        "env paths that do not exist, templates naming unset variables.",
        (NAMES, FIX, DOCTOR_JSON),
    ),
}


def add_options(parser: argparse.ArgumentParser, command: str) -> None:
    for option in COMMANDS[command].options:
        parser.add_argument(*option.flags, **option.kwargs)


# --- from parsed options to library requests -------------------------------------------


@dataclass
class Defaults:
    """Settings the magics take from traitlets config (the CLI uses these defaults)."""

    location: str = "user"  # user | sys-prefix
    capture: str = "changed"
    extra_noise: tuple[str, ...] = ()
    extra_secrets: tuple[str, ...] = ()


def _bad(message: str) -> specs.InvalidInput:
    return specs.InvalidInput(message)


def location_request(ns: argparse.Namespace, defaults: Defaults) -> str:
    user, sys_prefix, prefix = ns.user, ns.sys_prefix, ns.prefix
    if not (user or sys_prefix or prefix is not None):
        sys_prefix = defaults.location == "sys-prefix"
    return specs.location_dir(user=user, sys_prefix=sys_prefix, prefix=prefix)


def _dollars(value: str, literal: bool) -> str:
    return envcapture.escape_dollars(value) if literal else value


def env_changes(ns: argparse.Namespace, extra: EnvChanges | None = None) -> EnvChanges:
    """``--env``/positional assignments, ``--unset`` and ``extra`` (a cell or file) merged."""
    changes = EnvChanges()
    literal = getattr(ns, "literal", False)
    try:
        if extra is not None:
            for key in extra.unset:
                changes.remove(key)
            for key, value in extra.set.items():
                changes.add(key, _dollars(value, literal))
        for text in [*getattr(ns, "env", []), *getattr(ns, "assignments", [])]:
            key, value = parse_assignment(text)
            changes.add(key, _dollars(value, literal))
        for key in getattr(ns, "unset", []):
            changes.remove(check_env_name(key))
    except AssignmentError as exc:
        raise _bad(str(exc)) from None
    return changes


def capture_request(ns: argparse.Namespace, defaults: Defaults) -> envcapture.CaptureOptions:
    return envcapture.CaptureOptions(
        mode=ns.capture or defaults.capture,
        baseline_file=ns.baseline,
        include=tuple(ns.include),
        exclude=tuple(ns.exclude),
        templates=not ns.no_templates,
        extra_noise=tuple(defaults.extra_noise),
        extra_secrets=tuple(defaults.extra_secrets),
    )


def _metadata(items: list[str]) -> dict[str, Any]:
    metadata = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise _bad(f"expected --metadata KEY=JSON, got {item!r}")
        try:
            metadata[key] = json.loads(raw)
        except ValueError as exc:
            raise _bad(
                f"--metadata {key}: {raw!r} is not JSON ({exc}); quote strings: {key}='\"text\"'"
            ) from None
    return metadata


def _argv_prefix(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise _bad(f"--argv-prefix {text!r}: {exc}") from None


def edit_request(ns: argparse.Namespace, extra_env: EnvChanges | None = None) -> specs.SpecEdit:
    return specs.SpecEdit(
        display_name=getattr(ns, "display_name", None),
        language=getattr(ns, "language", None),
        interrupt_mode=getattr(ns, "interrupt_mode", None),
        argv_prefix=_argv_prefix(getattr(ns, "argv_prefix", None)),
        metadata=_metadata(getattr(ns, "metadata", [])),
        env=env_changes(ns, extra_env),
        replace_env=getattr(ns, "replace_env", False),
    )


def install(
    ns: argparse.Namespace, defaults: Defaults, snippet: str | None = None
) -> tuple[specs.Change, envcapture.CaptureResult]:
    """Install from the source the options name; ``snippet`` is a cell body or snippet file."""
    name = specs.validate_name(ns.name)  # before the capture, which runs a login shell
    source = source_request(ns, snippet)
    common = {
        "display_name": ns.display_name,
        "capture_options": capture_request(ns, defaults),
        "explicit_env": env_changes(ns).set,
        "replace": ns.replace,
        "dry_run": ns.dry_run,
    }
    kernels_dir = location_request(ns, defaults)
    if source is None:
        return specs.install_current_python(name, kernels_dir, **common)
    from . import sources

    return sources.install_from_source(name, kernels_dir, source, **common)


def source_request(ns: argparse.Namespace, snippet: str | None):
    """The ``sources.Source`` the options describe, or None for the running session."""
    made_by = [
        flag
        for flag, given in (
            ("a snippet", snippet is not None),
            ("--modules", ns.modules),
            ("--from-conda", ns.from_conda),
        )
        if given
    ]
    if len(made_by) > 1:
        raise _bad(f"choose one source of the environment, not {' and '.join(made_by)}")
    if ns.from_current and (made_by or ns.python):
        other = made_by[0] if made_by else "--python"
        raise _bad(f"--from-current captures this session; it cannot go with {other}")
    if ns.baseline and (made_by or ns.python):
        raise _bad(
            "--baseline applies to --from-current; a snippet is compared with the shell "
            "right before it"
        )
    if not made_by and not ns.python:
        if ns.shell:
            raise _bad("--shell runs a snippet, --modules or --from-conda; give one of them")
        return None
    from .sources import Source

    common = {"python": ns.python, "shell": ns.shell}
    if snippet is not None:
        return Source("snippet", snippet=snippet, **common)
    if ns.modules:
        return Source("modules", modules=ns.modules, **common)
    if ns.from_conda:
        return Source("conda", conda_env=ns.from_conda, **common)
    return Source("python", **common)


def refresh(ns: argparse.Namespace) -> specs.Change:
    from . import sources

    return sources.refresh_spec(ns.name, dry_run=ns.dry_run)


def remove(ns: argparse.Namespace) -> list[str]:
    """Remove the named specs, and with ``--missing`` every dead one; returns the paths."""
    if not ns.names and not ns.missing:
        raise _bad("name the specs to remove, or pass --missing")
    removed = specs.remove_specs(ns.names) if ns.names else []
    if ns.missing:
        from . import doctor

        removed += doctor.remove_dead(doctor.diagnose()).removed
    return removed


def run_doctor(ns: argparse.Namespace):
    from . import doctor

    report = doctor.diagnose(ns.names)
    return doctor.remove_dead(report) if ns.fix else report


def clone(ns: argparse.Namespace, defaults: Defaults) -> specs.Change:
    specs.validate_name(ns.new_name)
    return specs.clone_spec(
        ns.source,
        ns.new_name,
        location_request(ns, defaults),
        edit=edit_request(ns),
        replace=ns.replace,
        dry_run=ns.dry_run,
    )


def patch(ns: argparse.Namespace, name: str, extra_env: EnvChanges | None = None) -> specs.Change:
    edit = edit_request(ns, extra_env)
    if getattr(ns, "undo", False):
        if edit != specs.SpecEdit() or ns.dry_run:
            raise _bad("--undo restores the previous kernel.json; give it no other change")
        return specs.undo_last_write(name)
    return specs.patch_spec(name, edit, dry_run=ns.dry_run)
