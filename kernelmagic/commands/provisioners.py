"""``provisioners``: the installed kernel provisioners, their package and their options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, ClassVar

from kernelmagic.commands.render import Shown, table
from kernelmagic.operations.remote import ProvisionerList, list_provisioners
from kernelmagic.options import Option
from kernelmagic.settings import Settings

SUMMARY = "List the installed kernel provisioners, their package and their options."
COLUMNS = ("provisioner", "package", "class", "options")


@dataclass(frozen=True)
class Request:
    """``provisioners``: the kernel provisioners installed here (no options)."""

    OPTIONS: ClassVar[tuple[Option, ...]] = ()

    @classmethod
    def from_args(cls, ns: argparse.Namespace, settings: Settings, body: Any = None) -> Request:
        return cls()


def run(request: Request) -> ProvisionerList:
    return list_provisioners()


def show(result: ProvisionerList, style: str) -> Shown:
    rows: list[tuple[str, ...]] = []
    for info in result:
        options = ", ".join(info.options) or (f"(cannot load: {info.error})" if info.error else "")
        rows.append((info.name, info.package, info.target, options))
    text, html = table(rows, COLUMNS)
    return Shown(text, html, value=result)
