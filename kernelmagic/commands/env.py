"""``env``: show a spec's env (secret-like values masked), or change it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kernelmagic.commands import Body
from kernelmagic.commands.render import Shown, ShownData, env_lines, shown_change
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.shell_syntax import env_changes, parse_env_lines
from kernelmagic.errors import InvalidInput, KernelmagicError, flags
from kernelmagic.operations.edit import SpecEdit, patch_spec
from kernelmagic.options import (
    DRY_RUN,
    LITERAL,
    SPEC_NAME,
    UNSET,
    Option,
    option,
    path,
)
from kernelmagic.settings import Settings
from kernelmagic.storage.discovery import get_spec, spec_at
from kernelmagic.storage.transactions import Change

SUMMARY = (
    "Show or change a kernel spec's env. Values are written as typed; secret-like "
    "values are masked when shown."
)
# Without -k, a magic changes the spec it last changed (that dir, where Jupyter may start
# another of its name), else its own kernel's (magics.py): the fields it fills.
SESSION_SPEC = ("spec", "resource_dir")

SPEC = option(
    "-k",
    "--spec",
    old=("--kernel",),  # 0.1's, where --kernel also named install's language
    completes=SPEC_NAME,
    dest="spec",
    metavar="NAME",
    help="the spec to change (default: the last one changed in this session, else this "
    "session's own kernel); --kernel is the old spelling",
)
ASSIGNMENTS = option("assignments", nargs="*", metavar="KEY=VALUE", help="variables to set")
REPLACE_ENV = option(
    "--replace-env",
    old=("--replace",),  # 0.1's, where --replace also means overwriting a spec
    dest="replace_env",
    action="store_true",
    help="replace the whole env with the given variables (--replace is the old spelling)",
)
ENV_FILE = option(
    "--file",
    only="cli",
    metavar="PATH",
    type=path,
    help="read KEY=VALUE lines (shell syntax, `unset KEY`) from PATH, or - for stdin",
)


class SpecEnv(ShownData, dict[str, Any]):
    """A spec's env with secret-like values masked, as ``env`` shows it."""


@dataclass(frozen=True)
class EnvRequest:
    """``env``: show a spec's env (no change asked for), or change it."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (
        SPEC, ASSIGNMENTS, UNSET, LITERAL, REPLACE_ENV, DRY_RUN, ENV_FILE,
    )  # fmt: skip

    spec: str | None  # None: the front end chooses (the magics: the last spec changed)
    edit: SpecEdit = field(default_factory=SpecEdit)
    dry_run: bool = False
    policy: EnvPolicy = DEFAULT_POLICY
    resource_dir: str | None = None  # this dir's spec, not the one Jupyter starts for ``spec``

    def __post_init__(self) -> None:
        flags(self)

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> EnvRequest:
        """``body``: assignment lines, from a cell or ``--file``."""
        lines = parse_env_lines(body) if body is not None else None
        changes = env_changes(ns.assignments, ns.unset, literal=ns.literal, body=lines)
        edit = SpecEdit(env=changes, replace_env=ns.replace_env)
        return cls(ns.spec, edit, ns.dry_run, settings.policy)


Request = EnvRequest  # the name the front ends look up


def run(request: EnvRequest) -> SpecEnv | Change:
    """The spec's env (masked) when no change is asked for; else the change made."""
    if request.spec is None:
        raise InvalidInput("env needs -k NAME")
    if not request.edit:
        where = request.resource_dir
        info = get_spec(request.spec) if where is None else spec_at(request.spec, where)
        if not info.spec and info.problems:  # not an empty env: one nobody could read
            raise KernelmagicError(f"cannot show the env of '{info.name}': {info.problems[0]}")
        shown = request.policy.mask_spec(info.spec).get("env", {})
        return SpecEnv(shown if isinstance(shown, dict) else {})
    return patch_spec(
        request.spec,
        request.edit,
        dry_run=request.dry_run,
        policy=request.policy,
        resource_dir=request.resource_dir,
    )


BODY = Body(
    option="file",
    instead="kernelmagic env -k NAME --file FILE",
    help="As a cell magic, each line of the cell is `KEY=VALUE`, `export KEY=VALUE` or "
    "`unset KEY` (shell quotes and # comments allowed).",
)


def show(result: SpecEnv | Change, style: str) -> Shown:
    if isinstance(result, SpecEnv):
        return Shown(env_lines(result), value=result)
    return shown_change(result, diff=True)
