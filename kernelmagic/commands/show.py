"""``show``: one spec, its location, its problems and its JSON (secrets masked)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from kernelmagic.commands.render import Shown, spec_detail_text
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.operations.options import NAME, Option
from kernelmagic.settings import Settings
from kernelmagic.storage.discovery import SpecInfo, get_spec

SUMMARY = "Show one kernel spec: its location, its problems and its JSON."


@dataclass(frozen=True)
class Request:
    OPTIONS: ClassVar[tuple[Option, ...]] = (NAME,)

    name: str
    policy: EnvPolicy = DEFAULT_POLICY

    @classmethod
    def from_args(cls, ns: argparse.Namespace, settings: Settings, body: Any = None) -> Request:
        return cls(ns.name, settings.policy)


def run(request: Request) -> SpecInfo:
    """The spec Jupyter would start for the name, its secret-like values masked."""
    info = get_spec(request.name)
    return dataclasses.replace(info, spec=request.policy.mask_spec(info.spec))


def show(result: SpecInfo, style: str) -> Shown:
    return Shown(spec_detail_text(result, style=style))
