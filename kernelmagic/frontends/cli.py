"""``kernelmagic`` command line: the magics' operations for shells and scripts.

Exit status: 0 on success, 1 when an operation fails (no such kernel, permission denied,
name taken), 2 for bad arguments. Errors are one line on stderr: ``kernelmagic: error: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from kernelmagic import settings
from kernelmagic.domain.shell_syntax import parse_env_lines
from kernelmagic.errors import InvalidInput, KernelmagicError
from kernelmagic.frontends import render
from kernelmagic.operations import (
    apply,
    doctor,
    edit,
    install,
    kernel_sets,
    kernel_shell,
    listing,
    notebooks,
    project_scan,
    refresh,
    remote,
)
from kernelmagic.operations.commands import REQUESTS, on_command_line
from kernelmagic.operations.options import CLI, add_options, check_option_count
from kernelmagic.settings import Settings
from kernelmagic.storage import parallel_listing
from kernelmagic.storage.atomic import read_text_input
from kernelmagic.version import __version__

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
    for request in REQUESTS:
        if on_command_line(request):
            sub = commands.add_parser(
                request.COMMAND, help=request.SUMMARY, description=request.SUMMARY
            )
            add_options(sub, request.OPTIONS, CLI)
    return parser


def _print_json(data: object) -> None:
    # Indented for people, compact for programs: json's C encoder only runs without indent,
    # which makes `list --json` of 1,000 specs ~90 ms faster.
    print(json.dumps(data, indent=2 if sys.stdout.isatty() else None))


def _say(change: object, diff: bool = False) -> None:
    print(render.change_report(change, diff=diff))  # type: ignore[arg-type]


def _list(ns: argparse.Namespace, config: Settings) -> int:
    request = listing.ListRequest.from_args(ns, config)
    if request.json and not sys.stdout.isatty():  # for programs, over thousands of specs
        text = parallel_listing.listing_text(request.pattern, request.policy)
        if text is not None:
            print(text)
            return 0
    found = listing.listing(request)
    if isinstance(found, dict):
        _print_json(found)
    else:
        print(render.text(found))
    return 0


def _show(ns: argparse.Namespace, config: Settings) -> int:
    info = listing.show(listing.ShowRequest.from_args(ns, config))
    print(render.spec_detail_text(info, config.policy))
    return 0


def _install(ns: argparse.Namespace, config: Settings) -> int:
    if ns.scan is not None:
        result = project_scan.scan(project_scan.ScanRequest.from_args(ns, config))
        print(render.text(result))
        return 1 if result.failed else 0
    snippet = read_text_input(ns.snippet_file) if ns.snippet_file else None
    request = install.InstallRequest.from_args(ns, config, snippet)
    change, captured = install.install(request)
    for line in captured.summary_lines():
        print(line)
    _say(change)
    for line in render.group_note(change, request.group):
        print(line)
    return 0


def _clone(ns: argparse.Namespace, config: Settings) -> int:
    request = edit.CloneRequest.from_args(ns, config)
    change = edit.clone(request)
    _say(change)
    for line in render.group_note(change, request.group):
        print(line)
    return 0


def _patch(ns: argparse.Namespace, config: Settings) -> int:
    _say(edit.patch(edit.PatchRequest.from_args(ns, config)), diff=True)
    return 0


def _env(ns: argparse.Namespace, config: Settings) -> int:
    if not ns.spec:
        raise UsageFailure("env needs -k NAME")
    body = parse_env_lines(read_text_input(ns.file)) if ns.file else None
    outcome = edit.env(edit.EnvRequest.from_args(ns, config, body))
    if isinstance(outcome, edit.SpecEnv):
        if outcome:
            print(render.text(outcome))
        return 0
    _say(outcome, diff=True)
    return 0


def _remove(ns: argparse.Namespace, config: Settings) -> int:
    request = edit.RemoveRequest.from_args(ns, config)
    for line in render.removal_lines(edit.remove(request), dry_run=request.dry_run):
        print(line)
    return 0


def _refresh(ns: argparse.Namespace, config: Settings) -> int:
    _say(refresh.refresh(refresh.RefreshRequest.from_args(ns, config)), diff=True)
    return 0


def _doctor(ns: argparse.Namespace, config: Settings) -> int:
    request = doctor.DoctorRequest.from_args(ns, config)
    report = doctor.run(request)
    for line in render.removal_lines(report.removed, dry_run=request.dry_run):
        print(line, file=sys.stderr if request.json else sys.stdout)
    if request.json:
        _print_json(report.to_json())
    else:
        print(render.text(report))
    return 0 if report.healthy else 1


def _export(ns: argparse.Namespace, config: Settings) -> int:
    request = kernel_sets.ExportRequest.from_args(ns, config)
    print(render.exported(kernel_sets.export_to(request), request.output))
    return 0


def _apply(ns: argparse.Namespace, config: Settings) -> int:
    request = apply.ApplyRequest.from_args(ns, config)
    outcomes = apply.apply_document(request)
    print(render.apply_report(outcomes, verbose=request.verbose))
    return 1 if render.apply_failed(outcomes) else 0


def _provisioners(ns: argparse.Namespace, config: Settings) -> int:
    print(render.text(remote.list_provisioners()))
    return 0


def _remote(ns: argparse.Namespace, config: Settings) -> int:
    change, prerequisites = remote.make_remote_spec(remote.RemoteRequest.from_args(ns, config))
    _say(change)
    print(f"Remote prerequisites: {prerequisites}")
    return 0


def _shell(ns: argparse.Namespace, config: Settings) -> int:
    prepared = kernel_shell.prepare(kernel_shell.ShellRequest.from_args(ns, config))
    for note in prepared.notes:
        print(note, file=sys.stderr)
    sys.stdout.flush()
    status = kernel_shell.run(prepared).returncode
    return 128 - status if status < 0 else status  # killed by a signal: as a shell says it


def _notebook(ns: argparse.Namespace, config: Settings) -> int:
    reports = notebooks.run(notebooks.NotebookRequest.from_args(ns, config))
    print(render.text(reports))
    return 0 if reports.healthy else 1


_HANDLERS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
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
    "shell": _shell,
    "notebook": _notebook,
}


def _fail(error: BaseException | str, status: int) -> int:
    # Control characters (a name with a newline or a terminal escape) are shown escaped, so
    # the message stays one line and cannot drive the terminal; a tool's lines go below it.
    print(f"{PROG}: error: {render.error_text(error)}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status instead of exiting."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        check_option_count(words)
        ns = parser.parse_args(words)
        status = _HANDLERS[ns.command](ns, settings.load())
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except BrokenPipeError:
        # The reader went away (`kernelmagic list | head`): stop quietly, as other Unix
        # tools do, with the status of a process ended by SIGPIPE; nothing more to flush.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13
    except (UsageFailure, InvalidInput) as exc:
        return _fail(exc, 2)
    except KernelmagicError as exc:
        return _fail(exc, 1)
    except OSError as exc:  # a failure no check foresaw (a full disk): still one line
        return _fail(f"{exc.strerror or exc}: {exc.filename or ''}", 1)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
