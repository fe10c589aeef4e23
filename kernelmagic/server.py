"""A drop-in ``KernelSpecManager`` for jupyter_server, answering from kernelmagic's listing.

    c.ServerApp.kernel_spec_manager_class = "kernelmagic.server.KernelSpecManager"

It returns exactly what jupyter_client's ``KernelSpecManager`` returns (the differential
tests compare them call by call, the tree changing between calls), and is configured by the
same options (``kernel_dirs``, ``allowed_kernelspecs``, ``ensure_native_kernel``,
``kernel_spec_class``). What differs is the cost on a shared filesystem, where JupyterLab
asks for the list every 10 s: jupyter_client stats each spec dir, stats its kernel.json, then
opens it, one after another (~5 lookups a spec, each a round trip on NFS); this reads each
kernel.json once, the reads overlapped (``storage.lookups``). Building a ``KernelSpec`` costs
~0.3 ms (traitlets), so each one is kept, keyed by the bytes just read: a spec is never
served stale, because its file is read on every call; only unchanged bytes skip the build.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_client import kernelspec
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpec, NoSuchKernel
from jupyter_client.provisioning.factory import KernelProvisionerFactory

from kernelmagic.storage import discovery

__all__ = ["KernelSpecManager"]


# jupyter_client 7.0 (the oldest supported) has no types: the base class is Any there.
class KernelSpecManager(kernelspec.KernelSpecManager):  # type: ignore[misc, unused-ignore]
    """jupyter_client's KernelSpecManager, each kernel.json read once a call, in parallel."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._built: dict[tuple[Any, ...], KernelSpec] = {}

    def find_kernel_specs(self) -> dict[str, str]:
        """Returns a dict mapping kernel names to resource directories."""
        return {name: path for name, (path, _) in self._spec_files().items()}

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        """Returns a :class:`KernelSpec` instance for the given kernel_name.

        Raises :exc:`NoSuchKernel` if the given kernel name is not found.
        """
        if not kernelspec._is_valid_kernel_name(kernel_name):
            self.log.warning(
                f"Kernelspec name {kernel_name} is invalid: {kernelspec._kernel_name_description}"
            )
        key = kernel_name.lower()
        # jupyter_client takes the first entry of a name here, the last when listing.
        found = discovery.spec_files(
            self._existing_kernel_dirs(), lambda name: name == key, first_entry_wins=True
        )
        if key in found:
            resource_dir, read = found[key]
            return self._spec_of(kernel_name, resource_dir, read, keep=False)
        native = _native_resources() if key == NATIVE_KERNEL_NAME else None
        if native is None:
            raise NoSuchKernel(kernel_name)
        return self._spec_of(kernel_name, native, None, keep=False)

    def get_all_specs(self) -> dict[str, Any]:
        """Returns a dict mapping kernel names to kernelspecs, as jupyter_client's does::

        {'kernel_name': {'resource_dir': '/path/to/kernel_name', 'spec': {...}}, ...}
        """
        found = self._spec_files()
        built, self._built = self._built, {}  # what this call did not see is dropped
        specs = {}
        for name, (resource_dir, read) in found.items():
            try:
                spec = self._spec_of(name, resource_dir, read, keep=True, kept=built)
                # A fresh copy each call: the caller may change what it is given.
                specs[name] = {"resource_dir": resource_dir, "spec": _copy(spec.to_dict())}
            except NoSuchKernel:
                pass
            except Exception:
                self.log.warning("Error loading kernelspec %r", name, exc_info=True)
        return specs

    def _spec_files(self) -> dict[str, tuple[str, bytes | OSError | None]]:
        """find_kernel_specs' names and dirs, with what was read of each kernel.json."""
        found: dict[str, tuple[str, bytes | OSError | None]] = dict(
            discovery.spec_files(self._existing_kernel_dirs())
        )
        if self.ensure_native_kernel and NATIVE_KERNEL_NAME not in found:
            native = _native_resources()
            if native is None:
                self.log.warning("Native kernel (%s) is not available", NATIVE_KERNEL_NAME)
            else:
                found[NATIVE_KERNEL_NAME] = (native, None)
        if self.allowed_kernelspecs:
            found = {k: v for k, v in found.items() if k in self.allowed_kernelspecs}
        return found

    def _existing_kernel_dirs(self) -> list[str]:
        # jupyter_client skips a kernel dir that is None (a trait allows it)
        return [d for d in self.kernel_dirs if d is not None]

    def _spec_of(
        self,
        kernel_name: str,
        resource_dir: str,
        read: bytes | OSError | None,
        *,
        keep: bool,
        kept: dict[tuple[Any, ...], KernelSpec] | None = None,
    ) -> KernelSpec:
        """``_get_kernel_spec_by_name`` from the bytes already read: the same spec or the
        same exception. With ``keep``, a spec built from the same bytes before (``kept``)
        is reused and this one is kept for the next call."""
        spec_class = self.kernel_spec_class
        spec = None
        if kernel_name == NATIVE_KERNEL_NAME and resource_dir == _native_resources():
            from ipykernel.kernelspec import get_kernel_dict

            spec = spec_class(resource_dir=resource_dir, **get_kernel_dict())
        elif (
            not isinstance(read, bytes)
            # A classmethod bound to its class has __func__; typeshed does not say so
            # (jupyter_client 7.0 has no types: nothing to ignore there).
            or spec_class.from_resource_dir.__func__ is not KernelSpec.from_resource_dir.__func__  # type: ignore[attr-defined, unused-ignore]
        ):
            # Unreadable, gone since the scan, or a kernel_spec_class reading files its
            # own way: jupyter_client's own read gives its own answer or error.
            spec = spec_class.from_resource_dir(resource_dir)
        else:
            key = (spec_class, kernel_name, resource_dir, read)
            spec = kept.get(key) if kept is not None else None
            if spec is None:
                spec = spec_class(resource_dir=resource_dir, **json.loads(read.decode("utf-8")))
            if keep:
                self._built[key] = spec
        if not KernelProvisionerFactory.instance(parent=self.parent).is_provisioner_available(spec):
            raise NoSuchKernel(kernel_name)
        return spec


def _native_resources() -> str | None:
    """ipykernel's RESOURCES (the built-in python3's dir), as jupyter_client finds it."""
    try:
        from ipykernel.kernelspec import RESOURCES
    except ImportError:
        return None
    resources: str = RESOURCES  # untyped in ipykernel 6.x
    return resources


def _copy(value: Any) -> Any:
    """A copy of JSON-shaped data (dicts, lists, scalars), faster than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
