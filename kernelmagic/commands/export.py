"""Kernel sets that travel: export specs as one reviewable document (``domain.documents``
holds its format), to be made again elsewhere with ``apply``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from kernelmagic.commands.render import Shown
from kernelmagic.domain import documents, envcapture
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.provenance import now
from kernelmagic.domain.spec_info import SpecInfo
from kernelmagic.errors import KernelmagicError, LocationError, NoSuchKernelSpec
from kernelmagic.options import (
    SPEC_NAME,
    Option,
    option,
    path,
)
from kernelmagic.reading import dump_spec
from kernelmagic.settings import Settings
from kernelmagic.storage import atomic
from kernelmagic.storage.discovery import (
    list_specs,
    location_dir,
)
from kernelmagic.version import __version__

_KERNELS_TAIL = os.path.join("share", "jupyter", "kernels")


# --- export ----------------------------------------------------------------------------------


def _location(resource_dir: str) -> Any:
    kernels_dir = os.path.dirname(resource_dir)
    if kernels_dir == location_dir(user=True):
        return "user"
    if kernels_dir == location_dir(sys_prefix=True):
        return "sys-prefix"
    if kernels_dir.endswith(os.sep + _KERNELS_TAIL):
        return {"prefix": kernels_dir[: -len(_KERNELS_TAIL) - 1]}
    return {"dir": kernels_dir}


def export(patterns: Iterable[str] = (), policy: EnvPolicy = DEFAULT_POLICY) -> dict[str, Any]:
    """The document describing every spec (or those matching the globs ``patterns``)."""
    globs = [p.lower() for p in patterns]
    infos = [
        info
        for info in list_specs()
        if not info.native and (not globs or envcapture.matches_any(info.name, globs))
    ]
    if globs and not infos:
        raise NoSuchKernelSpec(" ".join(patterns), [i.name for i in list_specs()])
    doc = {
        "format": documents.FORMAT,
        "format_version": documents.FORMAT_VERSION,
        "exported": now(),
        "kernelmagic": __version__,
        "specs": [
            documents.entry_of(i.name, i.spec, _location(i.resource_dir), policy) for i in infos
        ],
    }
    _refuse_what_apply_refuses(infos, doc)
    return doc


def _refuse_what_apply_refuses(infos: list[SpecInfo], doc: dict[str, Any]) -> None:
    """A spec that cannot be read, or that the document cannot carry, fails the export
    naming it: the document would fail every spec's apply, on the other machine."""
    left_out = "export the others by name or pattern"
    for info, entry in zip(infos, doc["specs"], strict=True):
        if not info.read or not info.spec:  # unreadable, or no JSON object in it
            why = info.problems[0] if info.problems else "it was not read"
            raise KernelmagicError(f"cannot export '{info.name}': {why}; {left_out}")
        try:
            dump_spec(entry)
        except KernelmagicError as exc:
            raise KernelmagicError(f"cannot export '{info.name}': {exc}; {left_out}") from None
    problems = documents.validate(doc)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise KernelmagicError(
            f"cannot export: {problems[0]}{more}; apply would refuse the document; {left_out}"
        )


SUMMARY = (
    "Describe specs as one JSON document (how each was made, the variables set by hand; "
    "secrets masked) to recreate them elsewhere with apply."
)


PATTERNS = option(
    "patterns",
    nargs="*",
    metavar="PATTERN",
    completes=SPEC_NAME,
    help="only specs whose names match these globs",
)
OUTPUT = option(
    "-o", "--output", metavar="FILE", type=path, help="write the document to FILE (any name)"
)


@dataclass(frozen=True)
class ExportRequest:
    """``export``: describe specs as one document, written to ``output`` or returned."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (PATTERNS, OUTPUT)

    patterns: tuple[str, ...] = ()
    output: str | None = None
    policy: EnvPolicy = DEFAULT_POLICY

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> ExportRequest:
        return cls(tuple(ns.patterns), ns.output, settings.policy)


def export_to(request: ExportRequest) -> dict[str, Any]:
    """The document; with ``output`` also written there (atomically)."""
    doc = export(request.patterns, request.policy)
    if request.output is not None:
        text = dump_spec(doc)  # Jupyter's own JSON style; strict (no NaN)
        try:
            atomic.write_bytes_atomic(
                request.output, text.encode("utf-8"), mode=atomic.default_file_mode()
            )
        except OSError as exc:
            raise LocationError(f"cannot write {request.output}: {exc.strerror}") from None
    return doc


Request = ExportRequest


@dataclass
class Exported:
    """The export document, and the file it was written to."""

    document: dict[str, Any]
    written: str | None = None  # the file it went to (-o), else it is returned


def run(request: ExportRequest) -> Exported:
    return Exported(export_to(request), request.output)


def show(result: Exported, style: str) -> Shown:
    if result.written:
        count = len(result.document["specs"])
        return Shown(f"Exported {count} kernel spec(s) to {result.written}")
    return Shown("", value=result.document, plain=True)
