"""How every command that changes a spec writes it: what storage is handed.

Storage writes what it is given; deciding what that is belongs here, once. A container
spec's argv is a wrapper script that passes the names in ``env``, so whatever changes ``env``
(clone, patch, env, refresh, apply) makes the wrapper again in the same write
(``containers.keep_in_step``). ``kernel.json`` is owner-only when it holds a secret by the
policy in force joined with the patterns the spec records (a spec read from disk may record
``--secret`` patterns this session does not know).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

from kernelmagic.domain import containers
from kernelmagic.domain.envcapture import matches_any
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.provenance import Provenance
from kernelmagic.errors import InvalidInput, of_type, true_or_false
from kernelmagic.storage import transactions
from kernelmagic.storage.transactions import Change, Reservation


def holds_secrets(spec: dict[str, Any], policy: EnvPolicy) -> bool:
    """Whether ``spec`` puts a credential on disk, by ``policy`` and what ``spec`` records."""
    return policy.with_recorded(spec).holds_secrets(spec)


def sharing_group(resource_dir: str) -> str | None:
    """The group a spec dir is shared with (``install --group`` makes it setgid and the
    group's to read), or None."""
    try:
        found = os.stat(resource_dir)
    except OSError:
        return None
    if not found.st_mode & stat.S_ISGID or found.st_mode & 0o050 != 0o050:
        return None
    return group_name(found.st_gid)


def group_name(gid: int) -> str:
    """A group's name (its number where none is known)."""
    try:
        import grp  # POSIX only, as groups are

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


def _refuse_new_secrets(
    name: str, group: str, before: dict[str, Any], after: dict[str, Any], policy: EnvPolicy
) -> None:
    """``InvalidInput`` when ``after`` holds a secret ``before`` did not: every member of
    ``group`` would read it. A variable the spec was shared with on purpose (its install's
    ``--include``, as recorded) may change."""
    policy = policy.with_recorded(before).with_recorded(after)
    record = Provenance.of_spec(before)
    on_purpose = record.include if record is not None else ()
    old_env, new_env = before.get("env") or {}, after.get("env") or {}
    added = [
        k
        for k, v in sorted(new_env.items())
        if old_env.get(k) != v and policy.is_secret(k, v) and not matches_any(k, on_purpose)
    ]

    def outside_env(spec: dict[str, Any]) -> bool:
        return policy.holds_secrets({k: v for k, v in spec.items() if k != "env"})

    if not added and outside_env(after) and not outside_env(before):
        added = ["a value in its argv or metadata"]
    if added:
        raise InvalidInput(
            f"'{name}' is shared with group {group} (its directory is setgid), whose members "
            f"read its env and metadata, and {', '.join(added)} looks secret; keep it in a "
            f"spec of your own (clone {name} NEW_NAME --user), not the group's"
        )


def write_spec(
    slot: Reservation,
    action: str,
    spec: dict[str, Any],
    populate: Callable[[str], None],
    policy: EnvPolicy = DEFAULT_POLICY,
    group: int | None = None,
    owner_only: bool = False,
) -> Change:
    """Write ``spec`` (made from another spec: a clone, a document's, a remote one) into
    ``slot``, its container wrapper in step with its ``env``; owner-only when it holds a
    secret, or when ``owner_only`` (a copy of an owner-only spec)."""
    spec = containers.keep_in_step(spec)
    owner_only = owner_only or holds_secrets(spec, policy)
    return slot.write(action, spec, populate, policy, group, owner_only=owner_only)


def rewrite_spec(
    name: str,
    transform: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    dry_run: bool = False,
    action: str = "patched",
    policy: EnvPolicy = DEFAULT_POLICY,
    hint: str | None = None,
    resource_dir: str | None = None,
) -> Change:
    """Read-modify-write ``kernel.json`` under the spec's lock, keeping a backup for undo
    (``storage.transactions.rewrite_spec``), a container spec's wrapper made again for the
    new ``env``, the file owner-only when the new version holds a secret. A spec shared with
    a group gets no new secret (``InvalidInput``) and keeps its mode.

    ``transform`` gets the current JSON (read once, under the lock, so concurrent writers each
    see the others' changes) and returns the new one; nothing is written when it returns
    the same. ``resource_dir`` names the spec dir to change (default: the one Jupyter
    starts for ``name``); ``hint`` says what to do where it cannot be written.
    """
    of_type(name, str, "name", "spec name")
    if not callable(transform):
        raise InvalidInput(f"transform is a function of a spec, not {type(transform).__name__}")
    true_or_false(dry_run, "dry_run")
    if resource_dir is None:
        key, spec_dir = transactions.writable(name)
    else:
        spec_dir = transactions.spec_dir_given(resource_dir)
        key = os.path.basename(spec_dir)
    group = sharing_group(spec_dir)

    def in_step(spec: dict[str, Any]) -> dict[str, Any]:
        after = transform(spec)
        if not isinstance(after, dict):
            return after  # not a spec: storage refuses it, saying why
        after = containers.keep_in_step(after)
        if group is not None:
            _refuse_new_secrets(key, group, spec, after, policy)
        return after

    def owner_only(before: dict[str, Any], after: dict[str, Any]) -> bool:
        # Owner-only would take a group's spec from its members (and from the owner of its
        # dir, who could not even undo it); a secret in it was shared on purpose (install
        # --include), and a new one is refused above.
        return group is None and holds_secrets(after, policy.with_recorded(before))

    return transactions.rewrite_spec(
        name,
        in_step,
        owner_only=owner_only,
        dry_run=dry_run,
        action=action,
        policy=policy,
        hint=hint,
        resource_dir=spec_dir,  # located once, above
        key=key,
    )
