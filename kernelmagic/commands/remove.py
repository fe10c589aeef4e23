"""``remove``: the named specs, and with ``--missing`` every spec whose program is gone."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from kernelmagic.commands.render import Shown, removal_lines
from kernelmagic.errors import InvalidInput, KernelmagicError, flags, string_list
from kernelmagic.operations import doctor
from kernelmagic.options import DRY_RUN, SPEC_NAME, Option, option
from kernelmagic.settings import Settings
from kernelmagic.storage import history

SUMMARY = "Remove kernel specs."

NAMES = option("names", nargs="*", metavar="NAME", completes=SPEC_NAME, help="kernel spec names")
MISSING = option(
    "--missing",
    action="store_true",
    help="also remove every spec whose program (an absolute path) or project no longer exists",
)
PROJECT_GONE = option(
    "--project-gone",
    action="store_true",
    help="also remove every spec install --project --scan made whose project is gone",
)


@dataclass(frozen=True)
class RemoveRequest:
    """``remove``: the named specs, and with ``missing`` every spec whose program is gone."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (NAMES, MISSING, PROJECT_GONE, DRY_RUN)

    names: Sequence[str] = ()
    missing: bool = False
    dry_run: bool = False
    project_gone: bool = False  # the specs a scan made whose project is gone

    def __post_init__(self) -> None:
        flags(self)
        object.__setattr__(self, "names", string_list(self.names, "names"))
        if not (self.names or self.missing or self.project_gone):
            raise InvalidInput("name the specs to remove, or pass --missing or --project-gone")

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> RemoveRequest:
        return cls(ns.names, ns.missing, ns.dry_run, ns.project_gone)


@dataclass
class Removed:
    """The spec dirs ``remove`` removed (with ``dry_run``: would remove)."""

    paths: list[str]  # the spec dirs removed, or with dry_run that would be
    dry_run: bool = False
    failed: list[str] = field(default_factory=list)  # why each dead spec not removed was not


Request = RemoveRequest  # the name the front ends look up


def run(request: RemoveRequest) -> Removed:
    """Remove the named specs (all checked before any goes), then the dead ones: each that
    can be, the others said."""
    dry_run = request.dry_run
    removed = history.remove_specs(request.names, dry_run=dry_run) if request.names else []
    failed: list[str] = []
    if request.missing or request.project_gone:  # --missing prunes every --project-gone one
        dead, failed = doctor.remove_missing(dry_run=dry_run, scanned_only=not request.missing)
        removed += dead
    return Removed(removed, dry_run, failed)


def remove(request: RemoveRequest) -> list[str]:
    """``run`` for the library: the paths removed; ``KernelmagicError`` naming each dead spec
    that could not be removed (the others are)."""
    result = run(request)
    if result.failed:
        raise KernelmagicError(f"could not remove {'; '.join(result.failed)}")
    return result.paths


def show(result: Removed, style: str) -> Shown:
    kept = [(path, history.removed_copy(path)) for path in result.paths]
    text = "\n".join(removal_lines(kept, dry_run=result.dry_run))
    notes = tuple(f"kernelmagic: error: could not remove {why}" for why in result.failed)
    return Shown(
        text,
        status=1 if result.failed else 0,
        notes=notes,
        removed_dirs=() if result.dry_run else tuple(result.paths),
    )
