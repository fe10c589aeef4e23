"""The spec library's public face: find, read, install, clone, patch and remove kernel specs.

Like ``jupyter_client.kernelspec``, this is the module to import from plain Python; it never
prints or imports IPython. Finding and reading follow Jupyter exactly
(``storage.discovery``), every write is atomic and locked (``storage.transactions``), and
each command takes a typed request (``InstallRequest``, ``CloneRequest``, ...) that refuses
the same combinations the command line and the magics refuse.
"""

from __future__ import annotations

from collections.abc import Mapping

from kernelmagic.commands.clone import CloneRequest
from kernelmagic.commands.clone import clone as clone
from kernelmagic.commands.env import EnvRequest
from kernelmagic.commands.install import InstallRequest
from kernelmagic.commands.install import install as install
from kernelmagic.commands.patch import PatchRequest
from kernelmagic.commands.patch import patch as patch
from kernelmagic.commands.refresh import RefreshRequest
from kernelmagic.commands.refresh import refresh as refresh
from kernelmagic.commands.remove import RemoveRequest
from kernelmagic.commands.remove import remove as remove
from kernelmagic.domain.envcapture import CaptureOptions, CaptureResult
from kernelmagic.domain.policy import EnvPolicy
from kernelmagic.domain.provenance import Source
from kernelmagic.domain.shell_syntax import EnvChanges
from kernelmagic.errors import (
    InvalidInput,
    KernelmagicError,
    LocationError,
    NoSuchKernelSpec,
    SourceFailed,
    SpecExists,
)
from kernelmagic.operations.edit import SpecEdit, install_directory, patch_spec
from kernelmagic.operations.spec_writes import rewrite_spec
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
from kernelmagic.storage.history import redo_last_undo, remove_specs, undo_last_write
from kernelmagic.storage.transactions import Change

__all__ = [
    "NAME_RULE",
    "NATIVE_KERNEL_NAME",
    "CaptureOptions",
    "CaptureResult",
    "Change",
    "CloneRequest",
    "EnvChanges",
    "EnvPolicy",
    "EnvRequest",
    "InstallRequest",
    "InvalidInput",
    "KernelmagicError",
    "LocationError",
    "NoSuchKernelSpec",
    "PatchRequest",
    "RefreshRequest",
    "RemoveRequest",
    "Source",
    "SourceFailed",
    "SpecEdit",
    "SpecExists",
    "SpecInfo",
    "clone",
    "clone_spec",
    "find_kernel_specs",
    "get_spec",
    "install",
    "install_current_python",
    "install_directory",
    "ipython_dir",
    "jupyter_listing",
    "kernel_dirs",
    "list_specs",
    "location_dir",
    "patch",
    "patch_spec",
    "read_spec_file",
    "redo_last_undo",
    "refresh",
    "remove",
    "remove_specs",
    "rewrite_spec",
    "spec_locations",
    "spec_names",
    "undo_last_write",
    "validate_name",
]


def clone_spec(
    source: str,
    new_name: str,
    kernels_dir: str,
    *,
    edit: SpecEdit | None = None,
    replace: bool = False,
    dry_run: bool = False,
    policy: EnvPolicy | None = None,
    group: str | None = None,
) -> Change:
    """Copy every file and every JSON key of ``source`` to ``new_name``, then apply ``edit``;
    ``group`` shares the copy with that Unix group (``clone(CloneRequest(...))``)."""
    request = CloneRequest(
        source,
        new_name,
        edit or SpecEdit(),
        kernels_dir,
        group,
        replace,
        dry_run,
        policy or EnvPolicy(),
    )
    return clone(request)


def install_current_python(
    name: str,
    kernels_dir: str,
    *,
    display_name: str | None = None,
    capture_options: CaptureOptions | None = None,
    explicit_env: Mapping[str, str] | None = None,
    replace: bool = False,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
) -> tuple[Change, CaptureResult]:
    """Install a spec for ``sys.executable`` with the environment captured from ``environ``
    (default ``os.environ``); ``explicit_env`` (``--env``) is written as given and wins
    (``install(InstallRequest(...))``)."""
    request = InstallRequest(
        name,
        display_name=display_name,
        kernels_dir=kernels_dir,
        env=explicit_env or {},
        capture=capture_options or CaptureOptions(),
        replace=replace,
        dry_run=dry_run,
    )
    return install(request, environ)
