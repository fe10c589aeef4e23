"""``kernelmagic`` command line: the magics' commands for shells and scripts.

One loop for every command: parse, build the command's request, run it, print what it shows,
exit with its status. Only the command being run is imported.

Exit status: 0 on success, 1 when a command fails (no such kernel, permission denied, name
taken), 2 for bad arguments. Errors are one line on stderr: ``kernelmagic: error: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from kernelmagic import settings
from kernelmagic.commands import BY_NAME, COMMANDS, Command
from kernelmagic.commands.render import CLI, Shown, error_text, os_error_text
from kernelmagic.errors import InvalidInput, KernelmagicError
from kernelmagic.options import add_options, check_option_count, old_spellings, parse_words
from kernelmagic.reading import read_text_input
from kernelmagic.version import __version__

PROG = "kernelmagic"
ON_COMMAND_LINE = [command for command in COMMANDS if command.cli]


class UsageFailure(Exception):
    """Bad arguments: exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageFailure(message)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, for words that name none (``--help``, a wrong name, which
    is told the choices); a named command's words go to its own parser alone (``_parse``): the
    others are neither imported nor named (14 empty subparsers took ~3 ms of every start)."""
    parser = _Parser(prog=PROG, description="Manage Jupyter kernel specs and their environment.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for command in ON_COMMAND_LINE:
        module = command.load()
        sub = commands.add_parser(command.name, help=module.SUMMARY, description=module.SUMMARY)
        add_options(sub, module.Request.OPTIONS, CLI)
    return parser


def _parse(words: list[str], chosen: Command | None) -> argparse.Namespace:
    """The namespace of the words: a named command's by its own parser, which takes its
    options between its names (``parse_words``); a subparser cannot."""
    if chosen is None:
        return build_parser().parse_args(words)
    module = chosen.load()
    parser = _Parser(prog=f"{PROG} {chosen.name}", description=module.SUMMARY)
    add_options(parser, module.Request.OPTIONS, CLI)
    ns = parse_words(parser, words[1:])
    ns.command = chosen.name
    return ns


def _chosen(words: list[str]) -> Command | None:
    """The command the words name, if they start with one (``--help`` and the like do not)."""
    command = BY_NAME.get(words[0]) if words else None
    return command if command is not None and command.cli else None


def _refuse_unknown_global_option(words: list[str]) -> None:
    """argparse, asked ``kernelmagic --bogus``, says a COMMAND is missing; name the option."""
    first = words[0] if words else ""
    if not first.startswith("-") or first == "-h":
        return
    if not any(own.startswith(first) for own in ("--help", "--version")) or first == "--":
        raise UsageFailure(f"unrecognized arguments: {first} (see {PROG} --help)")


def _body(module: ModuleType, ns: argparse.Namespace) -> str | None:
    """The command's body, read from the file its option names (``-`` for stdin)."""
    body = getattr(module, "BODY", None)
    given = getattr(ns, body.option, None) if body is not None else None
    return read_text_input(given) if given else None


def _print(shown: Shown) -> None:
    for note in shown.notes:
        print(note, file=sys.stderr)
    if shown.plain:
        # Indented for people, compact for programs: json's C encoder only runs without
        # indent, which makes `list --json` of 1,000 specs ~90 ms faster.
        print(json.dumps(shown.value, indent=2 if sys.stdout.isatty() else None))
    elif shown.text:
        print(shown.text)


def _fail(error: BaseException | str, status: int) -> int:
    # Control characters (a name with a newline or a terminal escape) are shown escaped, so
    # the message stays one line and cannot drive the terminal; a tool's lines go below it.
    print(f"{PROG}: error: {error_text(error)}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status instead of exiting."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        check_option_count(words)
        chosen = _chosen(words)
        _refuse_unknown_global_option(words)
        ns = _parse(words, chosen)
        module = BY_NAME[ns.command].load()
        for line in old_spellings(module.Request.OPTIONS, words[1:]):
            print(f"{PROG}: {line}", file=sys.stderr)
        request = module.Request.from_args(ns, settings.load(), _body(module, ns))
        shown: Shown = module.show(module.run(request), CLI)
        _print(shown)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return shown.status
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
        return _fail(os_error_text(exc), 1)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:  # Ctrl-C: what ran stopped and cleaned up; no traceback
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 128 + 2
