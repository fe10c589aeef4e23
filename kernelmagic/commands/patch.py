"""``patch``: change fields of a spec in place, point it at a provisioner, or undo a change."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kernelmagic.commands.render import Shown, shown_change
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.shell_syntax import env_changes, parse_json_assignments, split_words
from kernelmagic.errors import InvalidInput, flags, of_type
from kernelmagic.operations import remote, spec_writes
from kernelmagic.operations.edit import SpecEdit
from kernelmagic.options import (
    DISPLAY_NAME,
    DRY_RUN,
    ENV,
    LITERAL,
    NAME,
    UNSET,
    Option,
    option,
)
from kernelmagic.settings import Settings
from kernelmagic.storage import history
from kernelmagic.storage.transactions import Change

SUMMARY = (
    "Change fields of a kernel spec in place; prints a unified diff. Every change keeps "
    "the previous kernel.json, which --undo restores."
)

LANGUAGE = option("--language", metavar="NAME", help="the language the UI shows")
INTERRUPT_MODE = option(
    "--interrupt-mode", choices=("signal", "message"), help="how Jupyter interrupts the kernel"
)
ARGV_PREFIX = option(
    "--argv-prefix",
    metavar='"CMD ARGS"',
    help='prepend a command to argv, e.g. "nice -n 10" (shell quoting)',
)
METADATA = option(
    "--metadata",
    action="append",
    default=[],
    metavar="KEY=JSON",
    help="set metadata[KEY] to a JSON value; null removes it (repeatable)",
)
UNDO = option(
    "--undo",
    action="store_true",
    help="restore kernel.json as it was before the last change (repeat to go further back); "
    "what it replaces is kept for --redo",
)
REDO = option(
    "--redo",
    action="store_true",
    help="bring back what the last --undo replaced (repeat to go forward again)",
)
PROVISIONER = option(
    "--provisioner",
    metavar="NAME",
    help="start the kernel through this installed kernel provisioner; 'none' removes it",
)


def _argv_prefix(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    try:
        return tuple(split_words(text))
    except ValueError as exc:
        raise InvalidInput(f"--argv-prefix {text!r}: {exc}") from None


@dataclass(frozen=True)
class PatchRequest:
    """``patch``: change fields of a spec in place, point it at a provisioner, or undo."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (
        NAME, DISPLAY_NAME, ENV, UNSET, LITERAL, LANGUAGE, INTERRUPT_MODE, ARGV_PREFIX,
        METADATA, PROVISIONER, remote.PROVISIONER_CONFIG, UNDO, REDO, DRY_RUN,
    )  # fmt: skip

    name: str
    edit: SpecEdit = field(default_factory=SpecEdit)
    provisioner: str | None = None  # an installed provisioner's name, or "none"
    provisioner_config: dict[str, Any] = field(default_factory=dict, repr=False)  # a password?
    undo: bool = False
    dry_run: bool = False
    policy: EnvPolicy = DEFAULT_POLICY
    redo: bool = False

    def __post_init__(self) -> None:
        flags(self)
        of_type(self.name, str, "name", "spec name")
        of_type(self.edit, SpecEdit, "edit")
        for flag, on in (("--undo", self.undo), ("--redo", self.redo)):
            others = self.edit or self.dry_run or self.provisioner or self.provisioner_config
            if on and (others or (self.undo and self.redo)):
                raise InvalidInput(f"{flag} restores a kept kernel.json; give it no other change")
        if self.provisioner_config and not self.provisioner:
            raise InvalidInput("--provisioner-config goes with --provisioner NAME")
        if self.provisioner_config and self.provisioner == "none":
            raise InvalidInput("--provisioner-config needs a provisioner, not 'none'")

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> PatchRequest:
        edit = SpecEdit(
            display_name=ns.display_name,
            language=ns.language,
            interrupt_mode=ns.interrupt_mode,
            argv_prefix=_argv_prefix(ns.argv_prefix),
            metadata=parse_json_assignments(ns.metadata, "--metadata"),
            env=env_changes(ns.env, ns.unset, literal=ns.literal),
        )
        config = parse_json_assignments(ns.provisioner_config, "--provisioner-config")
        return cls(
            ns.name, edit, ns.provisioner, config, ns.undo, ns.dry_run, settings.policy, ns.redo
        )


Request = PatchRequest  # the name the front ends look up


def run(request: PatchRequest) -> Change:
    return patch(request)


def patch(request: PatchRequest) -> Change:
    """Change the spec: its fields and env, its provisioner, or ``undo`` the last change."""
    if request.undo:
        return history.undo_last_write(request.name, request.policy)
    if request.redo:
        return history.redo_last_undo(request.name, request.policy)
    point = (
        remote.provisioner_edit(request.provisioner, request.provisioner_config)
        if request.provisioner
        else None
    )

    def transform(spec: dict[str, Any]) -> dict[str, Any]:
        edited = request.edit.apply(spec, request.policy)
        return point(edited) if point is not None else edited

    return spec_writes.rewrite_spec(
        request.name, transform, dry_run=request.dry_run, policy=request.policy
    )


def show(result: Change, style: str) -> Shown:
    return shown_change(result, diff=True)
