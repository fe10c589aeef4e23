"""How every command that changes a spec writes it: what storage is handed.

Storage writes what it is given; deciding what that is belongs here, once. A container
spec's argv is a wrapper script that passes the names in ``env``, so whatever changes ``env``
(clone, patch, env, refresh, apply) makes the wrapper again in the same write
(``containers.keep_in_step``). ``kernel.json`` is owner-only when it holds a secret by the
policy in force joined with the patterns the spec records (a spec read from disk may record
``--secret`` patterns this session does not know).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kernelmagic.domain import containers
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.storage import transactions
from kernelmagic.storage.transactions import Change, Reservation


def holds_secrets(spec: dict[str, Any], policy: EnvPolicy) -> bool:
    """Whether ``spec`` puts a credential on disk, by ``policy`` and what ``spec`` records."""
    return policy.with_recorded(spec).holds_secrets(spec)


def write_spec(
    slot: Reservation,
    action: str,
    spec: dict[str, Any],
    populate: Callable[[str], None],
    policy: EnvPolicy = DEFAULT_POLICY,
    group: int | None = None,
) -> Change:
    """Write ``spec`` (made from another spec: a clone, a document's, a remote one) into
    ``slot``, its container wrapper in step with its ``env``."""
    spec = containers.keep_in_step(spec)
    owner_only = holds_secrets(spec, policy)
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
    new ``env``, the file owner-only when the new version holds a secret.

    ``transform`` gets the current JSON (read once, under the lock, so concurrent writers each
    see the others' changes) and returns the new one; nothing is written when it returns
    the same. ``resource_dir`` names the spec dir to change (default: the one Jupyter
    starts for ``name``); ``hint`` says what to do where it cannot be written.
    """

    def in_step(spec: dict[str, Any]) -> dict[str, Any]:
        return containers.keep_in_step(transform(spec))

    def owner_only(before: dict[str, Any], after: dict[str, Any]) -> bool:
        return holds_secrets(after, policy.with_recorded(before))

    return transactions.rewrite_spec(
        name,
        in_step,
        owner_only=owner_only,
        dry_run=dry_run,
        action=action,
        policy=policy,
        hint=hint,
        resource_dir=resource_dir,
    )
