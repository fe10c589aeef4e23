"""``list``: the specs Jupyter finds (hidden ones included), with their problems."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kernelmagic.commands.render import (
    FOUND,
    Shown,
    ShownData,
    command,
    escape_html,
    problem_text,
    table,
)
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.provenance import project_of, scan_root_of
from kernelmagic.options import Option, option
from kernelmagic.settings import Settings
from kernelmagic.storage.discovery import SpecInfo, jupyter_listing, list_specs

SUMMARY = "List the kernel specs Jupyter finds, with their problems (hidden specs included)."

PATTERN = option(
    "pattern",
    nargs="?",
    metavar="PATTERN",
    help="only names matching this glob (a plain word matches anywhere in the name)",
)
JSON = option(
    "--json", action="store_true", help="output shaped like `jupyter kernelspec list --json`"
)


@dataclass(frozen=True)
class Request:
    """``list``: every spec Jupyter finds, or those whose name matches ``pattern``."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (PATTERN, JSON)

    pattern: str | None = None
    json: bool = False  # show what `jupyter kernelspec list --json` prints, plus "problems"
    policy: EnvPolicy = DEFAULT_POLICY  # masks secrets in the JSON

    @classmethod
    def from_args(cls, ns: argparse.Namespace, settings: Settings, body: Any = None) -> Request:
        return cls(ns.pattern, ns.json, settings.policy)


class SpecList(ShownData, list[SpecInfo]):
    """The specs a listing found (``SpecInfo`` items, sorted by name)."""

    def __init__(self, specs: Iterable[SpecInfo] = (), pattern: str | None = None) -> None:
        super().__init__(specs)
        self.pattern = pattern  # what the list was filtered by

    def names(self) -> list[str]:
        return [info.name for info in self]


@dataclass
class Listing:
    """What ``run`` found, and how it is to be shown (``json``, masked by ``policy``)."""

    specs: SpecList
    json: bool = False
    policy: EnvPolicy = field(default=DEFAULT_POLICY, repr=False)

    def to_json(self) -> dict[str, Any]:
        """What ``jupyter kernelspec list --json`` prints, plus ``"problems"``, masked."""
        listed = jupyter_listing(self.specs)
        for entry in listed["kernelspecs"].values():
            entry["spec"] = self.policy.mask_spec(entry["spec"])
        return listed


def run(request: Request) -> Listing:
    return Listing(SpecList(list_specs(request.pattern), request.pattern), request.json,
                   request.policy)  # fmt: skip


COLUMNS = ("name", "display name", "language", "resource dir", "status")


def rows(specs: list[SpecInfo], style: str) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for info in specs:
        status = FOUND
        if info.problems:
            texts = "; ".join(problem_text(p, style) for p in info.problems)
            hidden = not info.visible and info.read  # one not read: we cannot say
            status = ("hidden by Jupyter: " if hidden else "") + texts
        project = project_of(info.spec)
        if project is not None:  # a project's kernel: say which; the doctor says if it drifted
            made = f"; scan of {scan}" if (scan := scan_root_of(info.spec)) else ""
            status += f" (project: {project.get('tool')}, {project.get('root')}{made})"
        found.append((info.name, info.display_name, info.language, info.resource_dir, status))
    return found


def footer(style: str) -> str:
    return (
        f"{FOUND}: the kernel.json reads as Jupyter reads it and its program exists; "
        f"`{command('doctor', style)}` checks more, `{command('doctor --launch', style)}` "
        "starts them."
    )


def show(result: Listing, style: str) -> Shown:
    specs = result.specs
    if result.json:
        return Shown("", value=result.to_json(), plain=True)
    if not specs and specs.pattern:
        return Shown(f"(no kernel spec matches {specs.pattern!r})", value=specs)
    text, html = table(rows(specs, style), COLUMNS)
    if specs:
        text += f"\n{footer(style)}"
        html += f"<p>{escape_html(footer(style))}</p>"
    return Shown(text, html, value=specs)
