"""``kernelmagic`` command line: the magics' operations for shells and scripts.

Exit status: 0 on success, 1 when an operation fails (no such kernel, permission denied,
name taken), 2 for bad arguments. Errors are one line on stderr: ``kernelmagic: error: ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import NoReturn

from kernelmagic import __version__, specs
from kernelmagic.domain.shell_syntax import EnvChanges, parse_env_lines
from kernelmagic.errors import InvalidInput, KernelmagicError
from kernelmagic.frontends import render
from kernelmagic.operations import commands, options

PROG = "kernelmagic"


class UsageFailure(Exception):
    """Bad arguments: exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageFailure(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Manage Jupyter kernel specs and their environment.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for name, command in options.COMMANDS.items():
        if not command.cli:
            continue
        sub = commands.add_parser(name, help=command.summary, description=command.summary)
        options.add_options(sub, name)
    commands.choices["install"].add_argument(
        "--snippet-file",
        metavar="FILE",
        type=options.path,
        help="a shell snippet to run (what the cell magic's body is), or - for stdin",
    )
    commands.choices["env"].add_argument(
        "--file",
        metavar="PATH",
        type=options.path,
        help="read KEY=VALUE lines (shell syntax, `unset KEY`) from PATH, or - for stdin",
    )
    return parser


def _print_json(data: object) -> None:
    # Indented for people, compact for programs: json's C encoder only runs without indent,
    # which makes `list --json` of 1,000 specs ~90 ms faster.
    print(json.dumps(data, indent=2 if sys.stdout.isatty() else None))


def _list(ns: argparse.Namespace, defaults: commands.Defaults) -> int:
    if ns.json and not sys.stdout.isatty():  # for programs, over thousands of specs: fan out
        from kernelmagic.storage import parallel_listing

        text = parallel_listing.listing_text(ns.pattern, defaults.policy)
        if text is not None:
            print(text)
            return 0
    listing = commands.listing(ns, defaults)
    if ns.json:
        _print_json(listing)
    else:
        print(listing.as_text())
    return 0


def _show(ns: argparse.Namespace, defaults: commands.Defaults) -> int:
    print(commands.show(ns, defaults))
    return 0


def _report(change: specs.Change, diff: bool = False) -> None:
    print(render.change_report(change, diff=diff))


def _install(ns: argparse.Namespace, defaults: commands.Defaults) -> int:
    snippet = commands.read_input_file(ns.snippet_file) if ns.snippet_file else None
    change, captured = commands.install(ns, defaults, snippet=snippet)
    for line in captured.summary_lines():
        print(line)
    _report(change)
    for line in render.group_note(change, ns.group):
        print(line)
    return 0


def _clone(ns: argparse.Namespace, defaults: commands.Defaults) -> int:
    change = commands.clone(ns, defaults)
    _report(change)
    for line in render.group_note(change, ns.group):
        print(line)
    return 0


def _export(ns: argparse.Namespace, defaults: commands.Defaults) -> int:
    doc, written = commands.export(ns, defaults)
    print(render.exported(doc, written))
    return 0


def _apply(ns: argparse.Namespace, defaults: commands.Defaults) -> int:
    outcomes = commands.apply(ns, defaults)
    print(render.apply_report(outcomes, check=ns.check))
    return 1 if render.apply_failed(outcomes, check=ns.check) else 0


def _patch(ns: argparse.Namespace, defaults: commands.Defaults) -> int:
    _report(commands.patch(ns, defaults), diff=True)
    return 0


def _read_env_file(path: str) -> EnvChanges:
    return parse_env_lines(commands.read_input_file(path))


def _provisioners(ns: argparse.Namespace, defaults: commands.Defaults) -> int:
    print(commands.provisioners(ns, defaults).as_text())
    return 0


def _remote(ns: argparse.Namespace, defaults: commands.Defaults) -> int:
    change, prerequisites = commands.make_remote(ns, defaults)
    _report(change)
    print(f"Remote prerequisites: {prerequisites}")
    return 0


def _refresh(ns: argparse.Namespace, defaults: commands.Defaults) -> int:
    _report(commands.refresh(ns, defaults), diff=True)
    return 0


def _env(ns: argparse.Namespace, defaults: commands.Defaults) -> int:
    if not ns.kernel:
        raise UsageFailure("env needs -k NAME")
    from_file = _read_env_file(ns.file) if ns.file else None
    outcome = commands.env(ns, defaults, ns.kernel, from_file)
    if isinstance(outcome, dict):
        if outcome:
            print(outcome.as_text())
        return 0
    _report(outcome, diff=True)
    return 0


def _remove(ns: argparse.Namespace, defaults: commands.Defaults) -> int:
    for path in commands.remove(ns, defaults):
        print(f"Removed kernel spec {path}")
    return 0


def _doctor(ns: argparse.Namespace, defaults: commands.Defaults) -> int:
    report = commands.run_doctor(ns, defaults)
    for path in report.removed:
        print(f"Removed kernel spec {path}", file=sys.stderr if ns.json else sys.stdout)
    if ns.json:
        _print_json(report.to_json())
    else:
        print(report.as_text())
    return 0 if report.healthy else 1


_HANDLERS = {
    "list": _list,
    "show": _show,
    "install": _install,
    "clone": _clone,
    "patch": _patch,
    "env": _env,
    "remove": _remove,
    "doctor": _doctor,
    "export": _export,
    "apply": _apply,
    "refresh": _refresh,
    "provisioners": _provisioners,
    "remote": _remote,
}


def _fail(message: str, status: int) -> int:
    # Control characters (a name with a newline or a terminal escape) are shown escaped, so
    # the message stays one line and cannot drive the terminal.
    print(f"{PROG}: error: {render.printable(message)}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status instead of exiting."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        options.check_option_count(words)
        ns = parser.parse_args(words)
        return _HANDLERS[ns.command](ns, commands.Defaults())
    except UsageFailure as exc:
        return _fail(str(exc), 2)
    except InvalidInput as exc:
        return _fail(str(exc), 2)
    except KernelmagicError as exc:
        return _fail(str(exc), 1)
    except OSError as exc:  # a failure no check foresaw (a full disk): still one line
        return _fail(f"{exc.strerror or exc}: {exc.filename or ''}", 1)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
