"""List and show specs, exactly as Jupyter finds them, with their problems."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, ClassVar

from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.operations.options import NAME, Option, option
from kernelmagic.settings import Settings
from kernelmagic.storage.discovery import SpecInfo, get_spec, jupyter_listing, list_specs

PATTERN = option(
    "pattern",
    nargs="?",
    metavar="PATTERN",
    help="only names matching this glob (a plain word matches anywhere in the name)",
)
JSON = option(
    "--json", action="store_true", help="output shaped like `jupyter kernelspec list --json`"
)


class SpecList(list):
    """The specs a listing found (``SpecInfo`` items, sorted by name)."""

    def __init__(self, specs: Any = (), pattern: str | None = None) -> None:
        super().__init__(specs)
        self.pattern = pattern  # what the list was filtered by

    def names(self) -> list[str]:
        return [info.name for info in self]


@dataclass(frozen=True)
class ListRequest:
    """``list``: every spec Jupyter finds (hidden ones included), or those matching."""

    COMMAND: ClassVar[str] = "list"
    SUMMARY: ClassVar[str] = (
        "List the kernel specs Jupyter finds, with their problems (hidden specs included)."
    )
    OPTIONS: ClassVar[tuple[Option, ...]] = (PATTERN, JSON)

    pattern: str | None = None
    json: bool = False  # what `jupyter kernelspec list --json` prints, plus "problems"
    policy: EnvPolicy = DEFAULT_POLICY  # masks secrets in the JSON

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> ListRequest:
        return cls(ns.pattern, ns.json, settings.policy)


def listing(request: ListRequest) -> SpecList | dict[str, Any]:
    """The specs, or with ``json`` what ``jupyter kernelspec list --json`` prints (plus
    ``"problems"``), secrets masked."""
    found = list_specs(request.pattern)
    if not request.json:
        return SpecList(found, request.pattern)
    listed = jupyter_listing(found)
    for entry in listed["kernelspecs"].values():
        entry["spec"] = request.policy.mask_spec(entry["spec"])
    return listed


@dataclass(frozen=True)
class ShowRequest:
    """``show``: one spec, its location, problems and JSON."""

    COMMAND: ClassVar[str] = "show"
    SUMMARY: ClassVar[str] = "Show one kernel spec: its location, its problems and its JSON."
    OPTIONS: ClassVar[tuple[Option, ...]] = (NAME,)

    name: str

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> ShowRequest:
        return cls(ns.name)


def show(request: ShowRequest) -> SpecInfo:
    return get_spec(request.name)
