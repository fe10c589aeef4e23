"""A kernel spec as Jupyter finds it, and the names a spec may have: the plain record every
listing, check and display shares (storage reads it from disk; the rules judge it)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from kernelmagic.domain import checks
from kernelmagic.domain.jupyter_rules import is_valid_kernel_name, spec_schema
from kernelmagic.errors import InvalidInput

NAME_RULE = (
    "kernel names are what jupyter_client accepts: letters a-z in any case, digits and the "
    "separators '-', '.', '_' (not '.' or '..', at most 255 characters)"
)


def validate_name(name: str) -> str:
    """Return ``name`` lowercased, as Jupyter stores it, or raise ``InvalidInput``.

    The rule is jupyter_client's own (``install_kernel_spec`` lowercases, then matches
    ``^[a-z0-9._-]+$`` ignoring case, which lets the long s (U+017F) and the Kelvin sign through).
    Beyond it we refuse what would break the kernels directory itself: '.', '..', a final
    newline (which that pattern's ``$`` lets through) and names longer than a file name.
    """
    if not isinstance(name, str):
        raise InvalidInput(f"invalid kernel name {name!r}: {NAME_RULE}")
    stored = name.lower()
    if (
        not is_valid_kernel_name(stored)
        or stored.endswith("\n")
        or stored in (".", "..")
        or len(stored.encode("utf-8", "surrogateescape")) > 255
    ):
        raise InvalidInput(f"invalid kernel name {name!r}: {NAME_RULE}")
    return stored


@dataclass
class SpecInfo:
    """One kernel spec as Jupyter finds it, with the raw JSON and its problems."""

    name: str
    resource_dir: str
    spec: dict[str, Any] = field(repr=False)  # values may be secrets: never in a repr
    problems: list[checks.Problem] = field(default_factory=list)
    visible: bool = True  # False when Jupyter hides it (malformed, unknown provisioner)
    native: bool = False  # ipykernel's built-in spec, with no kernel.json of its own
    # False when kernelmagic did not read kernel.json (larger than MAX_SPEC_BYTES): what
    # Jupyter does with it is unknown here (it reads any size). Not usable by kernelmagic.
    read: bool = True

    @property
    def display_name(self) -> str:
        value = self.spec.get("display_name", "")
        return value if isinstance(value, str) else ""

    @property
    def language(self) -> str:
        value = self.spec.get("language", "")
        return value if isinstance(value, str) else ""

    @property
    def env(self) -> dict[str, Any]:
        value = self.spec.get("env", {})
        return value if isinstance(value, dict) else {}

    @property
    def kernel_json(self) -> str:
        return os.path.join(self.resource_dir, "kernel.json")

    def jupyter_view(self) -> dict[str, Any]:
        """The entry ``jupyter kernelspec list --json`` shows: ``KernelSpec.to_dict()`` of the
        installed jupyter_client (its keys, its defaults, its coercions)."""
        spec = self.spec
        argv = spec.get("argv", [])
        metadata = spec.get("metadata", {})
        if checks.provisioner_verdict(spec).adds_config:
            stanza = {**metadata["kernel_provisioner"], "config": {}}
            metadata = {**metadata, "kernel_provisioner": stanza}
        listed = {key: spec.get(key, "") for key in spec_schema().listed}
        for key, value in (
            ("argv", [argv] if isinstance(argv, str) else argv),  # traitlets' List takes a str
            ("env", spec.get("env", {})),
            ("interrupt_mode", spec.get("interrupt_mode", "signal").lower()),
            ("metadata", metadata),
        ):
            if key in listed:
                listed[key] = value
        return {"resource_dir": self.resource_dir, "spec": listed}
