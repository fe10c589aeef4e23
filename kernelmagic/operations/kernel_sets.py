"""Kernel sets that travel: export specs as one reviewable document, apply it elsewhere.

The document says *how* each spec was made (its source: this session, a snippet, modules, a
conda env, an interpreter; its kind; its capture rules) and which variables the user set by
hand; the captured values come along for reference only. Applying re-runs each source on the
machine at hand, so captured values are that machine's. The format is JSON: the standard
library reads and writes it (no TOML writer ships with Python), Jupyter's own files are JSON,
and a reviewer can diff it. Secrets are never in it: masked, with their names listed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kernelmagic.domain import envcapture
from kernelmagic.domain.languages import KERNELS
from kernelmagic.domain.policy import DEFAULT_POLICY, MASK, EnvPolicy
from kernelmagic.domain.provenance import REPEATABLE, Provenance, Source, now
from kernelmagic.errors import InvalidInput, KernelmagicError, LocationError, NoSuchKernelSpec
from kernelmagic.operations.edit import install_directory
from kernelmagic.operations.install import InstallRequest, install
from kernelmagic.operations.options import DRY_RUN, SPEC_NAME, Option, option, path
from kernelmagic.settings import Settings
from kernelmagic.storage import atomic, transactions
from kernelmagic.storage.discovery import SpecInfo, get_spec, list_specs, location_dir
from kernelmagic.version import __version__

FORMAT = "kernelmagic-export"
FORMAT_VERSION = 1
COMPARED = ("argv", "env", "display_name", "language")  # what --check compares
# The variables the user set by hand (``--env``, ``%kernel_env``): the document's word for them.
EXPLICIT_KEY = "set_by_hand"
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


def _entry(info: SpecInfo, policy: EnvPolicy) -> dict[str, Any]:
    spec = info.spec
    policy = policy.with_recorded(spec)
    record = Provenance.of_spec(spec)
    env = info.env
    shown_env = policy.mask_env(env)
    entry: dict[str, Any] = {
        "name": info.name,
        "display_name": info.display_name,
        "language": info.language,
        "location": _location(info.resource_dir),
    }
    origin = record.source.origin if record is not None else None
    if record is None or origin not in (*REPEATABLE, "current"):
        entry["kind"] = "remote" if origin == "remote" else "copy"
        entry["spec"] = policy.mask_spec(spec)
    else:
        # Captured and unchanged since; whatever else is in env was set by hand.
        digests_now = envcapture.digests({k: v for k, v in env.items() if isinstance(v, str)})
        captured = {k for k, d in record.captured_digests.items() if digests_now.get(k) == d}
        entry["kind"] = record.kernel
        entry["source"] = record.source.to_fields()
        if record.snippet_file:
            entry["source"]["snippet_held_secrets"] = True
        for key, value in (("like", record.like), ("program", record.program_requested)):
            if value is not None:
                entry[key] = value
        entry["capture"] = {
            "mode": record.capture,
            "include": list(record.include),
            "exclude": list(record.exclude),
            "templates": record.templates,
            "extra_secrets": list(record.extra_secrets),
            "extra_noise": list(record.extra_noise),
        }
        entry["display_name_made_up"] = record.generated_display_name == info.display_name
        entry[EXPLICIT_KEY] = {k: v for k, v in shown_env.items() if k not in captured}
        entry["captured"] = {k: v for k, v in shown_env.items() if k in captured}
    entry["secrets"] = sorted(k for k, v in env.items() if policy.is_secret(k, v))
    return entry


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
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported": now(),
        "kernelmagic": __version__,
        "specs": [_entry(info, policy) for info in infos],
    }


# --- apply -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What applying one spec did, would do (``--dry-run``) or would change (``--check``)."""

    name: str
    change: transactions.Change | None = None
    problem: str | None = None  # why it was not made here
    notes: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)  # --check: fields that differ


def read_document(text: str, where: str) -> dict[str, Any]:
    """A document written by ``export``, recognised by its content (any file name)."""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InvalidInput(f'{where} is not a kernelmagic export (no "format": "{FORMAT}")')
    if not isinstance(doc.get("specs"), list):
        raise InvalidInput(f'{where}: "specs" must be a list')
    return doc


def _kernels_dir(location: Any) -> str:
    if location == "user" or location is None:
        return location_dir(user=True)
    if location == "sys-prefix":
        return location_dir(sys_prefix=True)
    if isinstance(location, dict) and isinstance(location.get("prefix"), str):
        return location_dir(prefix=location["prefix"])
    if isinstance(location, dict) and isinstance(location.get("dir"), str):
        return location["dir"]
    raise InvalidInput(f"unknown location {location!r}")


def _without_secrets(env: Mapping[str, Any], notes: list[str]) -> dict[str, str]:
    kept = {k: v for k, v in env.items() if isinstance(v, str) and v != MASK}
    for name in sorted(set(env) - set(kept)):
        notes.append(f"{name} was a secret and is not in the document: set it by hand")
    return kept


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{where} must be a list of strings")
    return tuple(value)


def _capture_options(capture: Any, name: str) -> envcapture.CaptureOptions:
    """The capture rules an entry records (``{"mode": ..., "include": [...], ...}``)."""
    if not isinstance(capture, dict):
        raise InvalidInput(f"{name}: capture must be an object")
    mode = capture.get("mode", "changed")
    if mode not in ("changed", "all", "none"):
        raise InvalidInput(f"{name}: capture.mode must be changed, all or none")
    templates = capture.get("templates", True)
    if not isinstance(templates, bool):
        raise InvalidInput(f"{name}: capture.templates must be true or false")
    lists = {
        key: _strings(capture.get(key, []), f"{name}: capture.{key}")
        for key in ("include", "exclude", "extra_secrets", "extra_noise")
    }
    return envcapture.CaptureOptions(
        mode=mode,
        include=lists["include"],
        exclude=lists["exclude"],
        templates=templates,
        policy=EnvPolicy(lists["extra_secrets"], lists["extra_noise"]),
    )


def _text(entry: dict[str, Any], key: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{entry['name']}: {key} must be text")
    return value


def _remake(entry: dict[str, Any], kernels_dir: str, dry_run: bool, notes: list[str]):
    name = entry["name"]
    fields = entry.get("source") or {}
    if isinstance(fields, dict) and fields.get("snippet_held_secrets"):
        raise KernelmagicError(
            "its snippet held a secret, so the document has it masked; install it again by hand"
        )
    try:
        source = Source.from_fields(
            {k: v for k, v in fields.items() if k != "snippet_held_secrets"}
        )
    except (ValueError, AttributeError) as exc:
        raise InvalidInput(f"{name}: source {exc}") from None
    kernel = entry.get("kind", "python")
    explicit = entry.get(EXPLICIT_KEY) or {}
    if not isinstance(explicit, dict):
        raise InvalidInput(f"{name}: {EXPLICIT_KEY} must be an object")
    request = InstallRequest(
        name,
        source,
        kernel="python" if kernel == "like" else kernel,
        like=_text(entry, "like"),
        program=_text(entry, "program"),
        display_name=None if entry.get("display_name_made_up") else _text(entry, "display_name"),
        kernels_dir=kernels_dir,
        env=_without_secrets(explicit, notes),
        capture=_capture_options(entry.get("capture") or {}, name),
        replace=True,
        dry_run=dry_run,
    )
    change, _ = install(request)
    return change


def _copy(entry: dict[str, Any], kernels_dir: str, dry_run: bool, notes: list[str]):
    spec = dict(entry.get("spec") or {})
    if isinstance(spec.get("env"), dict):
        spec["env"] = _without_secrets(spec["env"], notes)
    notes.append("copied as written: it records no source to re-run (logos are not carried)")
    with tempfile.TemporaryDirectory(prefix="kernelmagic-apply-") as empty:
        return install_directory(
            entry["name"], kernels_dir, empty, spec, replace=True, dry_run=dry_run, action="applied"
        )


def _differences(name: str, after: dict[str, Any] | None) -> list[str]:
    try:
        installed = get_spec(name).spec
    except KernelmagicError:
        return ["not installed"]
    after = after or {}
    return [key for key in COMPARED if installed.get(key) != after.get(key)]


def apply(
    doc: dict[str, Any],
    names: Iterable[str] = (),
    *,
    dry_run: bool = False,
    check: bool = False,
) -> list[Outcome]:
    """Make each spec of ``doc`` (or the named ones) here, atomically and with backups.

    ``dry_run`` writes nothing; ``check`` writes nothing and lists, per spec, the fields where
    the installed spec differs from what applying would make. A spec whose source cannot be
    made here is reported in its ``Outcome``, and nothing of it is written.
    """
    wanted = {n.lower() for n in names}
    outcomes = []
    for entry in doc["specs"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidInput('every entry of "specs" needs a "name"')
        if wanted and entry["name"].lower() not in wanted:
            continue
        outcome = Outcome(entry["name"])
        try:
            if entry.get("kind", "python") not in (*KERNELS, "like", "copy", "remote"):
                raise InvalidInput(f"{entry['name']}: unknown kind {entry.get('kind')!r}")
            kernels_dir = _kernels_dir(entry.get("location"))
            if entry.get("kind") == "remote":
                raise KernelmagicError(
                    "a remote spec is remade with `kernelmagic remote` on the new machine"
                )
            make = _copy if entry.get("kind") == "copy" else _remake
            outcome.change = make(entry, kernels_dir, dry_run or check, outcome.notes)
        except KernelmagicError as exc:
            outcome.problem = str(exc)
        if check:
            after = outcome.change.after if outcome.change else None
            outcome.differences = _differences(entry["name"], after) if after else []
        outcomes.append(outcome)
    missing = wanted - {o.name.lower() for o in outcomes}
    if missing:
        raise NoSuchKernelSpec(sorted(missing)[0], [e.get("name") for e in doc["specs"]])
    return outcomes


# --- the commands --------------------------------------------------------------------------

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
DOCUMENT = option("document", metavar="FILE", type=path, help="a document export wrote")
APPLY_NAMES = option("names", nargs="*", metavar="NAME", help="only these specs of the document")
CHECK = option(
    "--check",
    action="store_true",
    help="write nothing; exit 1 naming each spec and field where what is installed differs",
)


@dataclass(frozen=True)
class ExportRequest:
    """``export``: describe specs as one document, written to ``output`` or returned."""

    COMMAND: ClassVar[str] = "export"
    SUMMARY: ClassVar[str] = (
        "Describe specs as one JSON document (how each was made, the variables set by hand; "
        "secrets masked) to recreate them elsewhere with apply."
    )
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
        text = atomic.dump_spec(doc)  # Jupyter's own JSON style; strict (no NaN)
        try:
            atomic.write_bytes_atomic(
                request.output, text.encode("utf-8"), mode=atomic.default_file_mode()
            )
        except OSError as exc:
            raise LocationError(f"cannot write {request.output}: {exc.strerror}") from None
    return doc


@dataclass(frozen=True)
class ApplyRequest:
    """``apply``: make the document's specs (or the named ones) here."""

    COMMAND: ClassVar[str] = "apply"
    SUMMARY: ClassVar[str] = (
        "Recreate the specs of an exported document here, re-running each one's source so the "
        "captured values are this machine's; atomic, with backups."
    )
    OPTIONS: ClassVar[tuple[Option, ...]] = (DOCUMENT, APPLY_NAMES, CHECK, DRY_RUN)

    document: str  # its path (``-``: stdin)
    names: tuple[str, ...] = ()
    check: bool = False
    dry_run: bool = False

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> ApplyRequest:
        return cls(ns.document, tuple(ns.names), ns.check, ns.dry_run)


def apply_document(request: ApplyRequest) -> list[Outcome]:
    doc = read_document(atomic.read_text_input(request.document), request.document)
    return apply(doc, request.names, dry_run=request.dry_run, check=request.check)
