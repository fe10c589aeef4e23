"""Change specs that exist: clone, patch (fields, env, provisioner, undo), env, remove.

Every change goes through ``storage.transactions``: a read-modify-write of ``kernel.json``
under the spec's lock with a backup, or a new spec directory staged and swapped in whole.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.provenance import Provenance
from kernelmagic.domain.shell_syntax import EnvChanges, parse_json_assignments, split_words
from kernelmagic.errors import InvalidInput, KernelmagicError
from kernelmagic.operations import doctor, remote, spec_writes
from kernelmagic.operations.install import refuse_secrets_for_group
from kernelmagic.operations.options import (
    DISPLAY_NAME,
    DRY_RUN,
    ENV,
    GROUP,
    LITERAL,
    LOCATION_OPTIONS,
    NAME,
    NEW_NAME,
    REPLACE,
    SOURCE_SPEC,
    SPEC_NAME,
    UNSET,
    Option,
    env_changes,
    kernels_dir_from_args,
    option,
    path,
    user_kernels_dir,
)
from kernelmagic.settings import Settings
from kernelmagic.storage import history, transactions
from kernelmagic.storage.discovery import get_spec, validate_name
from kernelmagic.storage.transactions import Change


@dataclass(frozen=True)
class SpecEdit:
    """Changes to a spec's JSON; every field left at its default changes nothing."""

    display_name: str | None = None
    language: str | None = None
    interrupt_mode: str | None = None
    # repr=False: what the user typed may be a secret.
    argv_prefix: tuple[str, ...] = field(default=(), repr=False)
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)  # None removes a key
    env: EnvChanges = field(default_factory=EnvChanges, repr=False)
    replace_env: bool = False  # start from an empty env instead of the current one

    def __post_init__(self) -> None:
        object.__setattr__(self, "argv_prefix", tuple(self.argv_prefix))
        if any("\0" in word for word in self.argv_prefix):
            raise InvalidInput(
                "--argv-prefix holds a NUL character, which no command line can carry"
            )
        if self.interrupt_mode not in (None, "signal", "message"):
            raise InvalidInput(
                f"--interrupt-mode must be signal or message, not {self.interrupt_mode!r}"
            )

    def __bool__(self) -> bool:
        return self != SpecEdit()

    def apply(self, spec: dict[str, Any]) -> dict[str, Any]:
        spec = copy.deepcopy(spec)
        if self.display_name is not None:
            spec["display_name"] = self.display_name
        if self.language is not None:
            spec["language"] = self.language
        if self.interrupt_mode is not None:
            spec["interrupt_mode"] = self.interrupt_mode
        if self.argv_prefix:
            spec["argv"] = [*self.argv_prefix, *spec.get("argv", [])]
        if self.metadata:
            metadata = spec.setdefault("metadata", {})
            for key, value in self.metadata.items():
                if value is None:
                    metadata.pop(key, None)
                else:
                    metadata[key] = value
        if self.env or self.replace_env:
            env = {} if self.replace_env else dict(spec.get("env") or {})
            for key in self.env.unset:
                env.pop(key, None)
            env.update(self.env.set)
            if env:
                spec["env"] = env
            else:
                spec.pop("env", None)
        return spec


def patch_spec(
    name: str, edit: SpecEdit, *, dry_run: bool = False, policy: EnvPolicy = DEFAULT_POLICY
) -> Change:
    """Apply ``edit`` to the spec Jupyter would start for ``name``, under its lock."""
    return spec_writes.rewrite_spec(
        name, edit.apply, dry_run=dry_run, action="patched", policy=policy
    )


def install_directory(
    name: str,
    kernels_dir: str,
    source_dir: str,
    spec: dict[str, Any],
    *,
    replace: bool = False,
    dry_run: bool = False,
    action: str = "cloned",
    policy: EnvPolicy = DEFAULT_POLICY,
    group: str | None = None,
) -> Change:
    """Install a copy of ``source_dir`` (its files: logos, launcher scripts) as ``name``, with
    ``spec`` as its kernel.json; atomic like every install."""
    name = validate_name(name)
    gid = transactions.group_id(group) if group is not None else None
    if group is not None:
        refuse_secrets_for_group(spec, group)
    slot = transactions.reserve(kernels_dir, name, replace=replace, dry_run=dry_run)
    return spec_writes.write_spec(
        slot, action, spec, transactions.copy_files(source_dir), policy, gid
    )


# --- clone -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CloneRequest:
    """``clone``: copy every file and JSON key of ``source`` as ``new_name``, then edit it."""

    COMMAND: ClassVar[str] = "clone"
    SUMMARY: ClassVar[str] = "Copy a kernel spec (every file and every JSON key) under a new name."
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
        object.__setattr__(self, "new_name", validate_name(self.new_name))
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


def clone(request: CloneRequest) -> Change:
    """Copy the source spec under the new name; a display name kernelmagic generated (still
    unchanged) follows the new name, one the user chose stays."""
    src = get_spec(request.source)
    if not src.spec and src.problems:
        raise KernelmagicError(f"cannot clone '{src.name}': {src.problems[0]}")
    spec = request.edit.apply(src.spec)
    record = Provenance.of_spec(spec)
    if record is not None and request.edit.display_name is None:
        renamed = record.display_name_for(spec, src.name, request.new_name)
        if renamed is not None:
            spec["display_name"] = record.generated_display_name = renamed
            record.write_into(spec)
    return install_directory(
        request.new_name,
        request.kernels_dir,
        src.resource_dir,
        spec,
        replace=request.replace,
        dry_run=request.dry_run,
        policy=request.policy,
        group=request.group,
    )


# --- patch and env -----------------------------------------------------------------------

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

    COMMAND: ClassVar[str] = "patch"
    SUMMARY: ClassVar[str] = (
        "Change fields of a kernel spec in place; prints a unified diff. Every change keeps "
        "the previous kernel.json, which --undo restores."
    )
    OPTIONS: ClassVar[tuple[Option, ...]] = (
        NAME, DISPLAY_NAME, ENV, UNSET, LITERAL, LANGUAGE, INTERRUPT_MODE, ARGV_PREFIX,
        METADATA, PROVISIONER, remote.PROVISIONER_CONFIG, UNDO, REDO, DRY_RUN,
    )  # fmt: skip

    name: str
    edit: SpecEdit = field(default_factory=SpecEdit)
    provisioner: str | None = None  # an installed provisioner's name, or "none"
    provisioner_config: dict[str, Any] = field(default_factory=dict)
    undo: bool = False
    dry_run: bool = False
    policy: EnvPolicy = DEFAULT_POLICY
    redo: bool = False

    def __post_init__(self) -> None:
        for flag, on in (("--undo", self.undo), ("--redo", self.redo)):
            others = self.edit or self.dry_run or self.provisioner or self.provisioner_config
            if on and (others or (self.undo and self.redo)):
                raise InvalidInput(f"{flag} restores a kept kernel.json; give it no other change")
        if self.provisioner_config and not self.provisioner:
            raise InvalidInput("--provisioner-config goes with --provisioner NAME")

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


def patch(request: PatchRequest) -> Change:
    """Change the spec: its fields and env, its provisioner, or ``undo`` the last change."""
    if request.undo:
        return history.undo_last_write(request.name, request.policy)
    if request.redo:
        return history.redo_last_undo(request.name, request.policy)
    transform: Callable[[dict[str, Any]], dict[str, Any]] = request.edit.apply
    if request.provisioner:
        point = remote.provisioner_edit(request.provisioner, request.provisioner_config)

        def transform(spec: dict[str, Any]) -> dict[str, Any]:
            return point(request.edit.apply(spec))

    return spec_writes.rewrite_spec(
        request.name, transform, dry_run=request.dry_run, policy=request.policy
    )


SPEC = option(
    "-k",
    "--spec",
    "--kernel",  # the spelling of 0.1, where --kernel also named a language
    completes=SPEC_NAME,
    dest="spec",
    metavar="NAME",
    help="the spec to change (default: the last one changed in this session, else this "
    "session's own kernel); --kernel is the old spelling",
)
ASSIGNMENTS = option("assignments", nargs="*", metavar="KEY=VALUE", help="variables to set")
REPLACE_ENV = option(
    "--replace-env",
    "--replace",  # the spelling of 0.1, where --replace also meant overwriting a spec
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


class SpecEnv(dict):
    """A spec's env with secret-like values masked, as ``env`` shows it."""


@dataclass(frozen=True)
class EnvRequest:
    """``env``: show a spec's env (no change asked for), or change it."""

    COMMAND: ClassVar[str] = "env"
    SUMMARY: ClassVar[str] = (
        "Show or change a kernel spec's env. Values are written as typed; secret-like "
        "values are masked when shown."
    )
    OPTIONS: ClassVar[tuple[Option, ...]] = (
        SPEC, ASSIGNMENTS, UNSET, LITERAL, REPLACE_ENV, DRY_RUN, ENV_FILE,
    )  # fmt: skip

    spec: str | None  # None: the front end chooses (the magics: the last spec changed)
    edit: SpecEdit = field(default_factory=SpecEdit)
    dry_run: bool = False
    policy: EnvPolicy = DEFAULT_POLICY

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: EnvChanges | None = None
    ) -> EnvRequest:
        """``body``: assignment lines from a cell or ``--file``, parsed."""
        changes = env_changes(ns.assignments, ns.unset, literal=ns.literal, body=body)
        edit = SpecEdit(env=changes, replace_env=ns.replace_env)
        return cls(ns.spec, edit, ns.dry_run, settings.policy)


def env(request: EnvRequest) -> SpecEnv | Change:
    """The spec's env (masked) when no change is asked for; else the change made."""
    if request.spec is None:
        raise InvalidInput("env needs -k NAME")
    if not request.edit:
        shown = request.policy.mask_spec(get_spec(request.spec).spec).get("env", {})
        return SpecEnv(shown if isinstance(shown, dict) else {})
    return patch_spec(request.spec, request.edit, dry_run=request.dry_run, policy=request.policy)


# --- remove --------------------------------------------------------------------------------

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

    COMMAND: ClassVar[str] = "remove"
    SUMMARY: ClassVar[str] = "Remove kernel specs."
    OPTIONS: ClassVar[tuple[Option, ...]] = (NAMES, MISSING, PROJECT_GONE, DRY_RUN)

    names: Sequence[str] = ()
    missing: bool = False
    dry_run: bool = False
    project_gone: bool = False  # the specs a scan made whose project is gone

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        if not (self.names or self.missing or self.project_gone):
            raise InvalidInput("name the specs to remove, or pass --missing or --project-gone")

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> RemoveRequest:
        return cls(ns.names, ns.missing, ns.dry_run, ns.project_gone)


def remove(request: RemoveRequest) -> list[str]:
    """Remove the named specs (all checked before any goes), then the dead ones; returns
    the paths removed."""
    dry_run = request.dry_run
    removed = history.remove_specs(request.names, dry_run=dry_run) if request.names else []
    if request.missing or request.project_gone:  # --missing prunes every --project-gone one
        removed += doctor.remove_missing(dry_run=dry_run, scanned_only=not request.missing)
    return removed
