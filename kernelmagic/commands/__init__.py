"""Every command, one line each; the command itself is the module ``kernelmagic.commands.NAME``.

A command module holds everything about its command: ``SUMMARY`` (its help), ``Request`` (a
frozen dataclass: ``OPTIONS``, the options of both front ends; ``from_args``, which maps what
they parsed to its fields; every cross-option rule in its constructor, so Python refuses what
the command line refuses), ``run(request)``, which does the work and returns one result type,
and ``show(result, style)``, which returns the ``Shown`` both front ends print or return.
Optional: ``BODY`` (a cell magic's cell, read by the CLI from a file option).

The front ends are loops over this table: the CLI imports only the command it runs, the magics
declare ``%kernel_NAME`` for each without importing any.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NamedTuple


# NamedTuples, not frozen dataclasses: the front ends import this table for every command,
# and Python 3.11 makes a frozen dataclass in ~0.7 ms, a NamedTuple in ~0.2 ms.
class Body(NamedTuple):
    """A command's body: a cell magic's cell, or on the command line the text of the file
    ``option`` (a dest) names. ``instead`` is that command line, offered when a cell holds a
    secret (IPython keeps every cell in its history); ``help`` is added to the magic's."""

    option: str
    instead: str
    help: str


class Command(NamedTuple):
    """One line of the table: a command's name and which front ends have it."""

    name: str
    cell: bool = False  # also a cell magic: the cell is the command's body
    cli: bool = True  # False: a magic only (it acts on the process it runs in)

    @property
    def magic(self) -> str:
        return f"kernel_{self.name}"

    def load(self) -> ModuleType:
        return importlib.import_module(f"{__name__}.{self.name}")


COMMANDS = (
    Command("list"),
    Command("show"),
    Command("install", cell=True),
    Command("clone"),
    Command("patch"),
    Command("env", cell=True),
    Command("provisioners"),
    Command("remote"),
    Command("refresh"),
    Command("remove"),
    Command("export"),
    Command("apply"),
    Command("doctor"),
    Command("shell"),
    Command("notebook"),
    Command("activate", cell=True, cli=False),
)
BY_NAME = {command.name: command for command in COMMANDS}
BY_MAGIC = {command.magic: command for command in COMMANDS}
