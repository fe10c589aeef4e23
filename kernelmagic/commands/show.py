"""``show``: one spec, its location, its problems and its JSON (secrets masked)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from kernelmagic.commands.render import Shown, spec_detail_text
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.options import NAME, Option, option
from kernelmagic.settings import Settings
from kernelmagic.storage.discovery import SpecInfo, get_spec

SUMMARY = "Show one kernel spec: its location, its problems and its JSON."

JSON = option(
    "--json",
    action="store_true",
    help="as one JSON object: name, resource_dir, hidden (by Jupyter), problems and spec",
)


@dataclass(frozen=True)
class Request:
    """``show``: one spec, with what Jupyter makes of it."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (NAME, JSON)

    name: str
    policy: EnvPolicy = DEFAULT_POLICY
    json: bool = False

    @classmethod
    def from_args(cls, ns: argparse.Namespace, settings: Settings, body: Any = None) -> Request:
        return cls(ns.name, settings.policy, ns.json)


@dataclass
class Shows:
    """The spec Jupyter would start for the name (secret-like values masked), and whether to
    show it as JSON."""

    info: SpecInfo
    json: bool = False

    def to_json(self) -> dict[str, Any]:
        info = self.info
        return {
            "name": info.name,
            "resource_dir": info.resource_dir,
            "hidden": not info.visible if info.read else None,  # None: not read, unknown
            "problems": [problem.to_json() for problem in info.problems],
            "spec": info.spec,
        }


def run(request: Request) -> Shows:
    info = get_spec(request.name)
    return Shows(dataclasses.replace(info, spec=request.policy.mask_spec(info.spec)), request.json)


def show(result: Shows, style: str) -> Shown:
    if result.json:
        return Shown("", value=result.to_json(), plain=True)
    return Shown(spec_detail_text(result.info, style=style))
