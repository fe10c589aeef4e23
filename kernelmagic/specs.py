"""The spec library's public face: find, read, install, clone, patch and remove kernel specs.

Like ``jupyter_client.kernelspec``, this is the module to import from plain Python; it never
prints or imports IPython. The work is done in ``discovery`` (finding and reading, exactly as
Jupyter does), ``store`` (atomic, locked writes, backups, undo, removal) and ``install``
(one install path for Python specs whatever the source); the names here stay importable.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kernelmagic.domain import envcapture
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.provenance import Provenance
from kernelmagic.domain.shell_syntax import EnvChanges
from kernelmagic.errors import (
    InvalidInput,
    KernelmagicError,
    LocationError,
    NoSuchKernelSpec,
    SpecExists,
)
from kernelmagic.storage.discovery import (
    NAME_RULE,
    NATIVE_KERNEL_NAME,
    SpecInfo,
    find_kernel_specs,
    get_spec,
    ipython_dir,
    jupyter_listing,
    kernel_dirs,
    list_specs,
    location_dir,
    read_spec_file,
    spec_locations,
    spec_names,
    validate_name,
)
from kernelmagic.storage.transactions import Change, remove_specs, rewrite_spec, undo_last_write

__all__ = [
    "NAME_RULE",
    "NATIVE_KERNEL_NAME",
    "Change",
    "EnvPolicy",
    "InvalidInput",
    "KernelmagicError",
    "LocationError",
    "NoSuchKernelSpec",
    "SpecEdit",
    "SpecExists",
    "SpecInfo",
    "clone_spec",
    "find_kernel_specs",
    "get_spec",
    "install_current_python",
    "install_directory",
    "ipython_dir",
    "jupyter_listing",
    "kernel_dirs",
    "list_specs",
    "location_dir",
    "patch_spec",
    "read_spec_file",
    "remove_specs",
    "rewrite_spec",
    "spec_locations",
    "spec_names",
    "undo_last_write",
    "validate_name",
]


@dataclass
class SpecEdit:
    """Changes to a spec's JSON; every field left at its default changes nothing."""

    display_name: str | None = None
    language: str | None = None
    interrupt_mode: str | None = None
    # repr=False: what the user typed may be a secret.
    argv_prefix: list[str] = field(default_factory=list, repr=False)
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)  # None removes a key
    env: EnvChanges = field(default_factory=EnvChanges, repr=False)
    replace_env: bool = False  # start from an empty env instead of the current one

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
    return rewrite_spec(name, edit.apply, dry_run=dry_run, action="patched", policy=policy)


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
    from kernelmagic.storage import transactions

    name = validate_name(name)
    gid = transactions.group_id(group) if group is not None else None
    if group is not None:
        from kernelmagic.operations.install import refuse_secrets_for_group

        refuse_secrets_for_group(spec, group)
    slot = transactions.reserve(kernels_dir, name, replace=replace, dry_run=dry_run)
    policy = policy.with_recorded(spec)
    return slot.write(action, spec, transactions.copy_files(source_dir), policy, gid)


def clone_spec(
    source: str,
    new_name: str,
    kernels_dir: str,
    *,
    edit: SpecEdit | None = None,
    replace: bool = False,
    dry_run: bool = False,
    policy: EnvPolicy = DEFAULT_POLICY,
    group: str | None = None,
) -> Change:
    """Copy every file and every JSON key of ``source`` to ``new_name``, then apply ``edit``;
    ``group`` shares the copy with that Unix group."""
    new_name = validate_name(new_name)
    src = get_spec(source)
    if not src.spec and src.problems:
        raise KernelmagicError(f"cannot clone '{src.name}': {src.problems[0]}")
    spec = copy.deepcopy(src.spec)
    if edit is not None:
        spec = edit.apply(spec)
    record = Provenance.of_spec(spec)
    if record is not None and (edit is None or edit.display_name is None):
        # A display name kernelmagic made up follows the new name; one the user chose stays.
        renamed = record.display_name_for(spec, src.name, new_name)
        if renamed is not None:
            spec["display_name"] = record.generated_display_name = renamed
            record.write_into(spec)
    return install_directory(
        new_name,
        kernels_dir,
        src.resource_dir,
        spec,
        replace=replace,
        dry_run=dry_run,
        policy=policy,
        group=group,
    )


def install_current_python(
    name: str,
    kernels_dir: str,
    *,
    display_name: str | None = None,
    capture_options: envcapture.CaptureOptions | None = None,
    explicit_env: Mapping[str, str] | None = None,
    replace: bool = False,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
) -> tuple[Change, envcapture.CaptureResult]:
    """Install a spec for ``sys.executable`` with the environment captured from ``environ``
    (default ``os.environ``); ``explicit_env`` (``--env``) is written as given and wins."""
    from kernelmagic.domain.provenance import Source
    from kernelmagic.operations.install import install

    return install(
        name,
        kernels_dir,
        Source("current"),
        capture_options=capture_options,
        display_name=display_name,
        explicit_env=explicit_env,
        replace=replace,
        dry_run=dry_run,
        environ=environ,
    )
