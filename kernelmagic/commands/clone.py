"""``clone``: copy every file and JSON key of a spec under a new name, then edit it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import ClassVar

from kernelmagic.commands.render import Shown, group_note, shown_change
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.shell_syntax import env_changes
from kernelmagic.errors import flags, kernels_dir_path, of_type
from kernelmagic.operations.edit import SpecEdit, copy_spec
from kernelmagic.options import (
    DISPLAY_NAME,
    DRY_RUN,
    ENV,
    GROUP,
    LITERAL,
    LOCATION_OPTIONS,
    NEW_NAME,
    REPLACE,
    SOURCE_SPEC,
    UNSET,
    Option,
    kernels_dir_from_args,
    user_kernels_dir,
)
from kernelmagic.settings import Settings
from kernelmagic.storage import transactions
from kernelmagic.storage.discovery import validate_name
from kernelmagic.storage.transactions import Change

SUMMARY = "Copy a kernel spec (every file and every JSON key) under a new name."


@dataclass(frozen=True)
class CloneRequest:
    """``clone``: copy every file and JSON key of ``source`` as ``new_name``, then edit it."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (
        SOURCE_SPEC, NEW_NAME, DISPLAY_NAME, ENV, UNSET, LITERAL, *LOCATION_OPTIONS, GROUP,
        REPLACE, DRY_RUN,
    )  # fmt: skip

    source: str
    new_name: str
    edit: SpecEdit = field(default_factory=SpecEdit)
    kernels_dir: str = field(default_factory=user_kernels_dir)
    group: str | None = None
    replace: bool = False
    dry_run: bool = False
    policy: EnvPolicy = DEFAULT_POLICY

    def __post_init__(self) -> None:
        flags(self)
        of_type(self.source, str, "source", "spec name")
        of_type(self.edit, SpecEdit, "edit")
        object.__setattr__(self, "new_name", validate_name(self.new_name))
        object.__setattr__(self, "kernels_dir", kernels_dir_path(self.kernels_dir))
        if self.group is not None:
            transactions.group_id(self.group)

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> CloneRequest:
        edit = SpecEdit(
            display_name=ns.display_name, env=env_changes(ns.env, ns.unset, literal=ns.literal)
        )
        return cls(
            ns.source,
            ns.new_name,
            edit,
            kernels_dir_from_args(ns, settings.default_location),
            ns.group,
            ns.replace,
            ns.dry_run,
            settings.policy,
        )


@dataclass
class Cloned:
    """What ``clone`` wrote, and the group it shared it with."""

    change: Change
    group: str | None = None  # the Unix group it was shared with


Request = CloneRequest  # the name the front ends look up


def run(request: CloneRequest) -> Cloned:
    return Cloned(clone(request), request.group)


def clone(request: CloneRequest) -> Change:
    """Copy the source spec under the new name; a display name kernelmagic generated (still
    unchanged) follows the new name, one the user chose stays."""
    return copy_spec(
        request.source,
        request.new_name,
        request.edit,
        request.kernels_dir,
        replace=request.replace,
        dry_run=request.dry_run,
        policy=request.policy,
        group=request.group,
    )


def show(result: Cloned, style: str) -> Shown:
    return shown_change(result.change, diff=False, after=group_note(result.change, result.group))
