"""Kernel sets that travel: export specs as one reviewable document, apply it elsewhere.

The document says *how* each spec was made (its source: this session, a snippet, modules, a
conda env, an interpreter; its kind; its capture rules) and which variables the user set by
hand; the captured values come along for reference only. Applying re-runs each source on the
machine at hand, so captured values are that machine's. The format is JSON: the standard
library reads and writes it (no TOML writer ships with Python), Jupyter's own files are JSON,
and a reviewer can diff it. Secrets are never in it: masked, with their names listed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kernelmagic import __version__
from kernelmagic.domain import envcapture
from kernelmagic.domain.policy import DEFAULT_POLICY, MASK, EnvPolicy
from kernelmagic.domain.provenance import REPEATABLE, Provenance, Source, now
from kernelmagic.errors import InvalidInput, KernelmagicError, NoSuchKernelSpec
from kernelmagic.storage import transactions
from kernelmagic.storage.discovery import SpecInfo, get_spec, list_specs, location_dir

FORMAT = "kernelmagic-export"
FORMAT_VERSION = 1
COMPARED = ("argv", "env", "display_name", "language")  # what --check compares
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


def _source_fields(record: Provenance) -> dict[str, Any]:
    source = record.source
    fields = {
        "kind": source.kind,
        "snippet": source.snippet,
        "modules": source.modules,
        "conda_env": source.conda_env,
        "python": source.python,
        "shell": source.shell,
    }
    return {k: v for k, v in fields.items() if v is not None}


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
    kind = record.source.kind if record is not None else None
    if kind not in (*REPEATABLE, "current"):
        entry["kind"] = "remote" if kind == "remote" else "copy"
        entry["spec"] = policy.mask_spec(spec)
    else:
        # Captured and unchanged since; whatever else is in env was set by hand.
        now_digests = envcapture.digests({k: v for k, v in env.items() if isinstance(v, str)})
        captured = {k for k, d in record.captured_digests.items() if now_digests.get(k) == d}
        entry["kind"] = record.kernel_kind
        entry["source"] = _source_fields(record)
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
            **record.policy.to_metadata(),
        }
        entry["display_name_made_up"] = record.generated_display_name == info.display_name
        entry["set_by_hand"] = {k: v for k, v in shown_env.items() if k not in captured}
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


def _remake(entry: dict[str, Any], kernels_dir: str, dry_run: bool, notes: list[str]):
    from kernelmagic.operations.install import install

    source_fields = dict(entry.get("source") or {})
    if source_fields.pop("snippet_held_secrets", False):
        raise KernelmagicError(
            "its snippet held a secret, so the document has it masked; install it again by hand"
        )
    kind = source_fields.pop("kind", "current")
    source = Source(kind, **{k: v for k, v in source_fields.items() if isinstance(v, str)})
    capture = entry.get("capture") or {}
    options = envcapture.CaptureOptions(
        mode=capture.get("mode", "changed"),
        include=tuple(capture.get("include", ())),
        exclude=tuple(capture.get("exclude", ())),
        templates=capture.get("templates", True),
        policy=EnvPolicy(
            tuple(capture.get("extra_secrets", ())), tuple(capture.get("extra_noise", ()))
        ),
    )
    kernel = entry.get("kind", "python")
    change, _ = install(
        entry["name"],
        kernels_dir,
        source,
        kernel="python" if kernel == "like" else kernel,
        program=entry.get("program"),
        like=entry.get("like"),
        capture_options=options,
        display_name=None if entry.get("display_name_made_up") else entry.get("display_name"),
        explicit_env=_without_secrets(entry.get("set_by_hand") or {}, notes),
        replace=True,
        dry_run=dry_run,
    )
    return change


def _copy(entry: dict[str, Any], kernels_dir: str, dry_run: bool, notes: list[str]):
    from kernelmagic.specs import install_directory

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
