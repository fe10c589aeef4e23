"""Changes to specs that several commands make: an edit of a spec's JSON (``SpecEdit``), a
spec dir copied whole (clone, the notebook alias, apply), and the rule for group sharing.

Every change goes through ``storage.transactions``: a read-modify-write of ``kernel.json``
under the spec's lock with a backup, or a new spec directory staged and swapped in whole.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kernelmagic.domain.envcapture import matches_any
from kernelmagic.domain.policy import DEFAULT_POLICY, MASK, EnvPolicy
from kernelmagic.domain.provenance import Provenance
from kernelmagic.domain.shell_syntax import MAX_JSON_DEPTH, EnvChanges, nesting_depth
from kernelmagic.errors import (
    InvalidInput,
    KernelmagicError,
    flags,
    of_type,
    path_text,
    string_list,
    true_or_false,
)
from kernelmagic.operations import spec_writes
from kernelmagic.reading import dump_spec, parse_spec
from kernelmagic.storage import transactions
from kernelmagic.storage.discovery import get_spec, location_dir, validate_name
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
        flags(self)
        for flag, value in (("--display-name", self.display_name), ("--language", self.language)):
            of_type(value, (str, type(None)), flag, "string")
            if value is not None and not value.strip():
                raise InvalidInput(f"{flag} is empty; give it a value, or leave it out")
        # A library caller's str would be a prefix of its letters, and a dict its env.
        string_list(self.argv_prefix, "argv_prefix")  # shlex.split("nice -n 5")
        if isinstance(self.env, Mapping):
            object.__setattr__(self, "env", EnvChanges(dict(self.env)))
        elif not isinstance(self.env, EnvChanges):
            raise InvalidInput(f"env is an EnvChanges or a dict, not {type(self.env).__name__}")
        if not isinstance(self.metadata, Mapping):
            raise InvalidInput(f"metadata is a dict, not {type(self.metadata).__name__}")
        try:  # what JSON cannot hold, or too deep for export and apply: as --metadata says
            dump_spec({"metadata": dict(self.metadata)})
        except KernelmagicError as exc:
            raise InvalidInput(f"metadata: {exc}") from None
        if nesting_depth(dict(self.metadata)) > MAX_JSON_DEPTH:
            raise InvalidInput(f"metadata nests deeper than {MAX_JSON_DEPTH} levels")
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

    def apply(self, spec: dict[str, Any], policy: EnvPolicy = DEFAULT_POLICY) -> dict[str, Any]:
        """The spec with the edit made; ``policy`` is how its env was shown to the user
        (whose listing may come back with ``<hidden>`` in place of a secret)."""
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
            current = spec.get("env") or {}
            env = {} if self.replace_env else dict(current)
            for key in self.env.unset:
                env.pop(key, None)
            env.update(_unmasked(self.env.set, current, policy.with_recorded(spec)))
            if env:
                spec["env"] = env
            else:
                spec.pop("env", None)
        return spec


def _unmasked(
    assigned: Mapping[str, str], current: Mapping[str, Any], policy: EnvPolicy
) -> dict[str, str]:
    """The values to write for ``assigned``. ``env`` shows a secret as ``<hidden>`` (or only
    its secret part so), and its listing is meant to be read back: a value that reads
    exactly as the spec's current one was shown keeps the current one. Any other
    ``<hidden>`` would be written over a secret as text, so it is refused."""
    values = dict(assigned)
    for key in [k for k, v in values.items() if MASK in v]:
        if key in current and policy.mask_env({key: current[key]})[key] == values[key]:
            values[key] = current[key]
        else:
            raise InvalidInput(
                f"{key}: {MASK} is how kernelmagic shows a secret, not a value; give {key}'s "
                f"own value, or leave {key} out to keep the spec's; nothing was changed"
            )
    return values


def patch_spec(
    name: str,
    edit: SpecEdit,
    *,
    dry_run: bool = False,
    policy: EnvPolicy = DEFAULT_POLICY,
    resource_dir: str | None = None,
) -> Change:
    """Apply ``edit`` to the spec Jupyter would start for ``name`` (or the one in
    ``resource_dir``), under its lock."""
    of_type(name, str, "name", "spec name")
    of_type(edit, SpecEdit, "edit")
    true_or_false(dry_run, "dry_run")
    return spec_writes.rewrite_spec(
        name,
        lambda spec: edit.apply(spec, policy),
        dry_run=dry_run,
        action="patched",
        policy=policy,
        resource_dir=resource_dir,
    )


def install_directory(
    name: str,
    kernels_dir: str,
    source_dir: str | None,
    spec: dict[str, Any],
    *,
    replace: bool = False,
    dry_run: bool = False,
    action: str = "cloned",
    policy: EnvPolicy = DEFAULT_POLICY,
    group: str | None = None,
    owner_only: bool = False,
) -> Change:
    """Install a copy of ``source_dir`` (its files: logos, launcher scripts) as ``name``, with
    ``spec`` as its kernel.json; atomic like every install. The file is owner-only when
    ``spec`` holds a secret, or when ``owner_only``."""
    name = validate_name(name)
    of_type(spec, Mapping, "spec", "dict (a kernel.json)")
    if source_dir is not None:  # None: no files but kernel.json
        source_dir = path_text(source_dir, "source_dir")  # an int would be a descriptor
        if not os.path.isdir(source_dir):  # said as itself, not as a dir it cannot write
            raise InvalidInput(f"source_dir {source_dir!r} is not a directory")
    for what, value in (("replace", replace), ("dry_run", dry_run), ("owner_only", owner_only)):
        true_or_false(value, what)
    spec = dict(spec)
    gid = transactions.group_id(group) if group is not None else None
    if group is not None:
        refuse_secrets_for_group(spec, group, policy)
    slot = transactions.reserve(kernels_dir, name, replace=replace, dry_run=dry_run)
    return spec_writes.write_spec(
        slot, action, spec, transactions.copy_files(source_dir), policy, gid, owner_only
    )


def _read_spec(spec_dir: str) -> tuple[Any, bool]:
    """The spec in ``spec_dir``, and whether it is owner-only for a secret it does not show:
    its snippet held one (recorded masked). A file made 0600 by a umask of 077 alone is
    not copied so (a clone into a site's prefix is for others to read)."""
    raw, mode = transactions.read_kernel_json(os.path.join(spec_dir, "kernel.json"))
    spec = parse_spec(raw)
    record = Provenance.of_spec(spec) if isinstance(spec, dict) else None
    return spec, not mode & 0o077 and record is not None and record.snippet_file is not None


def refuse_secrets_for_group(
    spec: dict[str, Any],
    group: str,
    policy: EnvPolicy = DEFAULT_POLICY,
    include: tuple[str, ...] | None = None,
) -> None:
    """A spec shared with a group shows its env to every member: refuse one holding a secret
    (by ``policy`` and the patterns the spec records). ``include``: the ``--include`` globs
    of a command that has that option (install), whose variables are shared on purpose;
    None where the command has none (clone, a notebook's alias)."""
    policy = policy.with_recorded(spec)
    env = spec.get("env") or {}
    secrets = sorted(
        k for k, v in env.items() if policy.is_secret(k, v) and not matches_any(k, include or ())
    )
    if secrets or (not env and policy.holds_secrets(spec)):
        names = ", ".join(secrets) or "argv or metadata"
        share = (
            "name it with --include to share it anyway"
            if include is not None
            else "leave it out (--unset NAME)"
        )
        raise InvalidInput(
            f"a spec shared with group {group} shows its env to every member, and {names} "
            f"looks secret; {share}, or leave out --group"
        )


def copy_spec(
    source: str,
    new_name: str,
    edit: SpecEdit,
    kernels_dir: str | None = None,
    *,
    replace: bool = False,
    dry_run: bool = False,
    policy: EnvPolicy = DEFAULT_POLICY,
    group: str | None = None,
) -> Change:
    """Copy the source spec under the new name; a display name kernelmagic generated (still
    unchanged) follows the new name, one the user chose stays."""
    src = get_spec(source)
    if not src.spec and src.problems:
        raise KernelmagicError(f"cannot clone '{src.name}': {src.problems[0]}")
    # Read and copied through the dir as opened, never through another user's link (to a
    # third user's private spec), not even one swapped in while the copy is made.
    with transactions.pinned(src.resource_dir) as source_dir:
        try:
            # ipykernel's native spec has no file; an owner-only source (its snippet held a
            # secret) gives an owner-only copy.
            read, owner_only = (src.spec, False) if src.native else _read_spec(source_dir)
        except (OSError, ValueError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise KernelmagicError(f"cannot clone '{src.name}': {why}") from None
        if not isinstance(read, dict):  # changed since it was listed
            raise KernelmagicError(f"cannot clone '{src.name}': its kernel.json is no object")
        spec = edit.apply(read, policy)
        record = Provenance.of_spec(spec)
        if record is not None and edit.display_name is None:
            renamed = record.display_name_for(spec, src.name, new_name)
            if renamed is not None:
                spec["display_name"] = record.generated_display_name = renamed
                record.write_into(spec)
        return install_directory(
            new_name,
            kernels_dir or location_dir(user=True),
            source_dir,
            spec,
            replace=replace,
            dry_run=dry_run,
            policy=policy,
            group=group,
            owner_only=owner_only,
        )
