"""The export document: a kernel set as one JSON file a reviewer can read and diff.

Each entry holds the spec as it was (for ``apply --check`` and for specs kernelmagic did not
make), its variables (masked) and, for a spec apply makes again from its source, the record
of how it was made: ``metadata.kernelmagic``'s own fields under their own names, written by
``Provenance.to_document`` and read by ``Provenance.from_metadata`` (its ``explicit`` names
the variables set by hand; the others were captured, kept for reference). This module owns
the format: ``validate`` checks a whole document before anything runs or is written (one
line per problem, with its path in the document), ``migrated`` reads a document of format 1
or 2 (which spelled the record its own way), ``entry_of`` writes an entry, ``map_paths``
moves paths between machines, ``changes`` says field by field how two specs differ.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from kernelmagic.domain import checks, envcapture
from kernelmagic.domain.policy import MASK, EnvPolicy
from kernelmagic.domain.provenance import (
    CAPTURE_MODES,
    METADATA_KEY,
    REPEATABLE,
    SNIPPET_FILE,
    Provenance,
    Source,
    document_problems,
)
from kernelmagic.domain.shell_syntax import MAX_JSON_DEPTH, check_env_name, nesting_depth
from kernelmagic.domain.spec_info import validate_name
from kernelmagic.errors import InvalidInput
from kernelmagic.jobs import JOB_SCOPED_NAMES, batch_job
from kernelmagic.reading import json_kind

FORMAT = "kernelmagic-export"
# 3: the record under provenance's own names; 2 records every entry's spec; 1 only that of
# specs kernelmagic did not make.
FORMAT_VERSION = 3
RECORD_KEY = METADATA_KEY  # an entry's record, as the spec's metadata.kernelmagic is one

_TOP_KEYS = {"format", "format_version", "exported", "kernelmagic", "specs"}
_ENTRY_KEYS = {"name", "location", "display_name", "language", RECORD_KEY, "env", "spec", "secrets"}

# Formats 1 and 2, read only to migrate them.
_V2_SOURCED = ("python", "ir", "julia", "like")  # kinds re-made from their source
_V2_KINDS = (*_V2_SOURCED, "copy", "remote")
_V2_ENTRY_KEYS = {
    "name", "kind", "location", "display_name", "language", "source", "like", "program",
    "capture", "display_name_made_up", "set_by_hand", "captured", "spec", "secrets",
}  # fmt: skip
_V2_CAPTURE_KEYS = {"mode", "include", "exclude", "templates", "extra_secrets", "extra_noise"}
_V2_HELD_SECRETS = "snippet_held_secrets"  # its snippet is masked in the document


# --- export ----------------------------------------------------------------------------------


def entry_of(name: str, spec: dict[str, Any], location: Any, policy: EnvPolicy) -> dict[str, Any]:
    """The document's entry for the spec ``name`` (secrets masked, their names listed)."""
    policy = policy.with_recorded(spec)
    record = Provenance.of_spec(spec)
    found = spec.get("env")
    env: dict[str, Any] = found if isinstance(found, dict) else {}
    shown_env = policy.mask_env(env)
    entry: dict[str, Any] = {
        "name": name,
        "display_name": spec.get("display_name", ""),
        "language": spec.get("language", ""),
        "location": location,
    }
    origin = record.source.origin if record is not None else None
    if origin == "remote":  # said, so that apply points to `kernelmagic remote`
        assert record is not None
        entry[RECORD_KEY] = record.to_document()
    # A container spec is carried as it is (no record to re-make it from): its image and
    # runtime are paths of its machine.
    elif record is not None and origin in (*REPEATABLE, "current") and not record.container:
        # Captured and unchanged since; whatever else is in env was set by hand.
        digests_now = envcapture.digests({k: v for k, v in env.items() if isinstance(v, str)})
        captured = {k for k, d in record.captured_digests.items() if digests_now.get(k) == d}
        by_hand = tuple(k for k in shown_env if k not in captured)
        entry[RECORD_KEY] = dataclasses.replace(record, explicit=by_hand).to_document()
        entry["env"] = shown_env
    entry["spec"] = policy.mask_spec(spec)
    entry["secrets"] = sorted(k for k, v in env.items() if policy.is_secret(k, v))
    return entry


def migrated(doc: dict[str, Any]) -> dict[str, Any]:
    """A (validated) document of format 1 or 2 in the shape of the current format, applying
    exactly as it did: each entry's ``kind``, ``source``, ``like``, ``program``,
    ``capture``, ``display_name_made_up`` and ``set_by_hand`` become the record's
    ``kernel_kind``, ``source`` and its fields, ``like``, ``program_requested``, ``capture``
    and its lists, ``generated_display_name`` and ``explicit``; ``set_by_hand`` and
    ``captured`` become ``env``; ``copy`` entries carry no record."""
    if doc.get("format_version", 1) == FORMAT_VERSION:
        return doc
    entries = []
    for old in doc["specs"]:
        entry = {k: old[k] for k in ("name", "location", "display_name", "language") if k in old}
        kind = old.get("kind", "python")
        if kind == "remote":
            entry[RECORD_KEY] = Provenance(Source("remote")).to_document()
        elif kind != "copy":
            fields = old.get("source") or {}
            source = Source.from_fields({k: v for k, v in fields.items() if k != _V2_HELD_SECRETS})
            capture = old.get("capture") or {}
            by_hand = old.get("set_by_hand") or {}
            if source.origin == "current" and "spec" not in old:
                # Format 1 keeps no spec of a session's capture, only its variables: those
                # are written as recorded, not captured from the session that applies it.
                by_hand = {**(old.get("captured") or {}), **by_hand}
                capture = {**capture, "mode": "none"}
            made_up = old.get("display_name") if old.get("display_name_made_up") else None
            record = Provenance(
                source,
                kernel=kind,
                like=old.get("like"),
                program_requested=old.get("program"),
                capture=capture.get("mode", "changed"),
                include=tuple(capture.get("include", ())),
                exclude=tuple(capture.get("exclude", ())),
                templates=capture.get("templates", True),
                extra_secrets=tuple(capture.get("extra_secrets", ())),
                extra_noise=tuple(capture.get("extra_noise", ())),
                explicit=tuple(by_hand),
                snippet_file=SNIPPET_FILE if fields.get(_V2_HELD_SECRETS) else None,
                generated_display_name=made_up,
            )
            entry[RECORD_KEY] = record.to_document()
            entry["env"] = {**(old.get("captured") or {}), **by_hand}
        entry.update({k: old[k] for k in ("spec", "secrets") if k in old})
        entries.append(entry)
    return {**doc, "format_version": FORMAT_VERSION, "specs": entries}


# --- validation --------------------------------------------------------------------------------


class _NotJson(ValueError):
    """NaN, Infinity or a number too large for a float: Python reads them, JSON has none."""


def _not_json(constant: str) -> float:
    raise _NotJson(f"{constant}, which is not JSON")


def _finite(number: str) -> float:
    value = float(number)
    if value in (float("inf"), float("-inf")):
        raise _NotJson(f"the number {number[:20]}, too large for a float")
    return value


def parse(text: str, where: str) -> dict[str, Any]:
    """A document ``export`` wrote, recognised by its content (any file name), checked whole
    (``InvalidInput`` with one detail line per problem), in the current format's shape
    whichever format it was written in."""
    try:
        doc = json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except RecursionError:
        raise InvalidInput(f"{where} nests deeper than any export document does") from None
    except _NotJson as exc:
        raise InvalidInput(
            f"{where} holds {exc}: no kernel.json may hold it (strict readers, the server's "
            "listing among them, fail on it); nothing was run or written"
        ) from None
    except ValueError as exc:
        if f'"format": "{FORMAT}"' in text[:200]:  # one of ours, cut short or edited wrong
            raise InvalidInput(
                f"{where} is a kernelmagic export but not valid JSON ({exc}); nothing was run "
                "or written"
            ) from None
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InvalidInput(f'{where} is not a kernelmagic export (no "format": "{FORMAT}")')
    problems = validate(doc)
    if problems:
        raise InvalidInput(
            f"{where} has {len(problems)} problem(s); nothing was run or written",
            details=problems[:50],
        )
    return migrated(doc)


def validate(doc: Any) -> list[str]:
    """Every problem of a document, one line each, starting with its path in the document
    and naming the field as the document spells it (formats 1 and 2 by their own names)."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        return ["the document must be a JSON object"]
    version = doc.get("format_version", 1)
    problems += _unknown_keys(doc, _TOP_KEYS, "", version)
    if type(version) is not int or version not in (1, 2, FORMAT_VERSION):  # true is no 1
        problems.append(f"format_version: {version!r} is not 1, 2 or {FORMAT_VERSION}")
        version = FORMAT_VERSION
    entry_problems = _entry_problems if version == FORMAT_VERSION else _v2_entry_problems
    specs = doc.get("specs")
    if not isinstance(specs, list):
        return [*problems, "specs: must be a list"]
    seen: set[str] = set()
    for i, entry in enumerate(specs):
        where = f"specs[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be an object, not {json_kind(entry)}")
            continue
        name = entry.get("name")
        if isinstance(name, str):
            where = f"specs[{i}] ({name})"
        problems += [f"{where}.{p}" for p in _common_problems(entry)]
        problems += [f"{where}.{p}" for p in entry_problems(entry, version)]
        if isinstance(name, str) and name.lower() in seen:
            problems.append(f"{where}.name: {name!r} appears twice")
        seen.add(name.lower() if isinstance(name, str) else "")
    return problems


def _common_problems(entry: dict[str, Any]) -> list[str]:
    """What every format checks the same way: the name, where it goes, the spec."""
    problems = []
    name = entry.get("name")
    if not isinstance(name, str):
        problems.append(f"name: must be text, not {json_kind(name)}")
    else:
        try:
            validate_name(name)
        except InvalidInput as exc:
            problems.append(f"name: {exc}")
    for key in ("display_name", "language"):
        if key in entry and not isinstance(entry[key], str):
            problems.append(f"{key}: must be text, not {json_kind(entry[key])}")
    problems += _location_problems(entry.get("location", "user"))
    secrets = entry.get("secrets", [])
    if not isinstance(secrets, list) or not all(isinstance(s, str) for s in secrets):
        problems.append("secrets: must be a list of names")
    if "spec" in entry:
        problems += [f"spec{p}" for p in _spec_problems(entry["spec"])]
    return problems


def _entry_problems(entry: dict[str, Any], version: int) -> list[str]:
    problems = _unknown_keys(entry, _ENTRY_KEYS, "", version)
    if "env" in entry:
        problems += [f"env{p}" for p in _env_problems(entry["env"])]
    record = entry.get(RECORD_KEY)
    if record is None:
        if "spec" not in entry:
            problems.append(
                f"spec: an entry without a {RECORD_KEY} record (to make it again) carries "
                "the spec it copies"
            )
        if "env" in entry:
            problems.append(f"env: only an entry made again from its {RECORD_KEY} record has it")
        return problems
    problems += [
        f"{RECORD_KEY}{'' if p.startswith(':') else '.'}{p}" for p in document_problems(record)
    ]
    if isinstance(record, dict) and record.get("source") == "remote" and "spec" not in entry:
        problems.append("spec: a remote entry carries the spec it copies")
    return problems


def _v2_entry_problems(entry: dict[str, Any], version: int) -> list[str]:
    problems = _unknown_keys(entry, _V2_ENTRY_KEYS, "", version)
    kind = entry.get("kind", "python")
    if kind not in _V2_KINDS:
        problems.append(f"kind: {kind!r} is not one of {', '.join(_V2_KINDS)}")
    for key in ("like", "program"):
        if key in entry and not isinstance(entry[key], str):
            problems.append(f"{key}: must be text, not {json_kind(entry[key])}")
    if "display_name_made_up" in entry and not isinstance(entry["display_name_made_up"], bool):
        problems.append("display_name_made_up: must be true or false")
    for key in ("set_by_hand", "captured"):
        if key in entry:
            problems += [f"{key}{p}" for p in _env_problems(entry[key])]
    if "spec" not in entry and kind in ("copy", "remote"):
        problems.append(f"spec: a {kind} entry carries the spec it copies")
    if kind in _V2_SOURCED:
        if "source" not in entry and "spec" not in entry:
            problems.append(f"source: an entry of kind {kind} records the source that makes it")
        if "source" in entry:
            problems += [f"source{p}" for p in _v2_source_problems(entry["source"])]
        if "capture" in entry:
            problems += [f"capture{p}" for p in _v2_capture_problems(entry["capture"], version)]
    return problems


def _location_problems(location: Any) -> list[str]:
    if location in ("user", "sys-prefix"):
        return []
    if isinstance(location, dict) and len(location) == 1:
        ((key, value),) = location.items()
        if key in ("prefix", "dir") and isinstance(value, str) and value:
            if value.startswith("~") and value != "~" and not value.startswith("~/"):
                return [f"location.{key}: {value!r}: only ~ (your own home) is expanded"]
            if not os.path.isabs(os.path.expanduser(value)):
                return [f"location.{key}: {value!r} must be an absolute path"]
            return []
    return [
        'location: must be "user", "sys-prefix", {"prefix": DIR} or {"dir": DIR} '
        f"(DIR absolute), not {json.dumps(location)[:80]}"
    ]


def _env_problems(env: Any) -> list[str]:
    if not isinstance(env, dict):
        return [f": must be an object of variables, not {json_kind(env)}"]
    problems = []
    for key, value in env.items():
        try:
            check_env_name(key)
        except InvalidInput:
            problems.append(f".{key!r}: not a variable name a process can take")
            continue
        if not isinstance(value, str):
            problems.append(f".{key}: must be text, not {json_kind(value)}")
        elif "\0" in value:
            problems.append(f".{key}: holds a NUL character, which no process can take")
    return problems


def _spec_problems(spec: Any) -> list[str]:
    if not isinstance(spec, dict):
        return [f": must be an object, not {json_kind(spec)}"]
    if nesting_depth(spec) > MAX_JSON_DEPTH:
        return [f": nests deeper than {MAX_JSON_DEPTH} levels"]
    problems = [f": {p}" for p in checks.structure_problems(spec)]
    argv = spec.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        problems.append(".argv: must be a list of text with the program first")
    elif any("\0" in a for a in argv):
        problems.append(".argv: holds a NUL character, which no command line can carry")
    if "env" in spec:
        problems += [f".env{p}" for p in _env_problems(spec["env"])]
    return problems


def _v2_source_problems(source: Any) -> list[str]:
    if not isinstance(source, dict):
        return [f": must be an object, not {json_kind(source)}"]
    held = source.get(_V2_HELD_SECRETS, False)
    problems = [] if isinstance(held, bool) else [f".{_V2_HELD_SECRETS}: must be true or false"]
    try:
        Source.from_fields({k: v for k, v in source.items() if k != _V2_HELD_SECRETS})
    except ValueError as exc:
        problems.append(f": {exc}")
    return problems


def _v2_capture_problems(capture: Any, version: int) -> list[str]:
    if not isinstance(capture, dict):
        return [f": must be an object, not {json_kind(capture)}"]
    problems = _unknown_keys(capture, _V2_CAPTURE_KEYS, ".", version)
    if capture.get("mode", "changed") not in CAPTURE_MODES:
        problems.append(".mode: must be changed, all or none")
    if not isinstance(capture.get("templates", True), bool):
        problems.append(".templates: must be true or false")
    for key in ("include", "exclude", "extra_secrets", "extra_noise"):
        value = capture.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(f".{key}: must be a list of text")
    return problems


def _unknown_keys(mapping: Mapping[str, Any], known: set[str], dot: str, version: Any) -> list[str]:
    # Named with the format, for a document that mixes the names of two of them.
    of = f"format_version {version}" if version in (1, 2, FORMAT_VERSION) else "this format"
    return [
        f"{dot}{key}: not a key of an export document of {of}"
        for key in mapping
        if key not in known
    ]


# --- reading entries --------------------------------------------------------------------------


def record_of(entry: Mapping[str, Any]) -> Provenance | None:
    """The record a (validated) entry is made again from; None: it is copied as written."""
    record = Provenance.from_metadata(entry.get(RECORD_KEY))
    if record is None or record.source.origin == "remote" or from_a_session(entry):
        return None
    return record


def from_a_session(entry: Mapping[str, Any]) -> bool:
    """Whether a (validated) entry was captured from a running session (``--from-current``,
    ``--baseline``): no machine can make that again (apply's own session is another one), so
    its spec is copied as recorded, record and all, where the document holds that (format 3;
    older ones leave the record out of the spec, and are made again as they were)."""
    record = entry.get(RECORD_KEY)
    spec = entry.get("spec")
    metadata = spec.get("metadata") if isinstance(spec, dict) else None
    return (
        isinstance(record, dict)
        and record.get("source") == "current"
        and isinstance(metadata, dict)
        and isinstance(metadata.get(METADATA_KEY), dict)
    )


def is_remote(entry: Mapping[str, Any]) -> bool:
    """Whether a (validated) entry is a remote spec (made again with ``kernelmagic remote``)."""
    record = entry.get(RECORD_KEY)
    return isinstance(record, dict) and record.get("source") == "remote"


def capture_options(record: Provenance) -> envcapture.CaptureOptions:
    """The capture rules a record holds."""
    return envcapture.CaptureOptions(
        mode=record.capture,
        include=record.include,
        exclude=record.exclude,
        templates=record.templates,
        policy=EnvPolicy(record.extra_secrets, record.extra_noise),
    )


def split_env(
    entry: Mapping[str, Any], record: Provenance
) -> tuple[dict[str, str], dict[str, str]]:
    """(the variables set by hand, the captured ones) of a (validated) entry."""
    env = entry.get("env") or {}
    by_hand = set(record.explicit)
    return (
        {k: v for k, v in env.items() if k in by_hand},
        {k: v for k, v in env.items() if k not in by_hand},
    )


def withheld(env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """(the variables the document can give, the names it masked): a value that holds
    ``<hidden>`` anywhere (``http://team:<hidden>@proxy``) is for the user to set."""
    kept = {k: v for k, v in env.items() if MASK not in v}
    return kept, sorted(set(env) - set(kept))


# --- moving between machines ------------------------------------------------------------------


def map_paths(entry: dict[str, Any], mappings: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``entry`` with every path that starts with an OLD prefix starting with NEW instead
    (interpreters, prefixes, values, argv; each entry of a PATH-like list), for a document
    made on another machine (``apply --map OLD=NEW``)."""
    patterns = [(_prefix(old), new.rstrip("/") or "/") for old, new in mappings]

    def mapped(value: Any, key: str = "") -> Any:
        if isinstance(value, str) and key != "name":
            for pattern, new in patterns:
                value = pattern.sub(new.replace("\\", "\\\\"), value)  # NEW as typed
            return value
        if isinstance(value, dict):
            return {k: mapped(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [mapped(v) for v in value]
        return value

    return {k: mapped(v, k) for k, v in copy.deepcopy(entry).items()}


def _prefix(old: str) -> re.Pattern[str]:
    # OLD at the start of a path: after the start, a ':' (PATH lists), '=' or a space, and
    # followed by a '/', the end, or one of those.
    return re.compile(
        r"(?:(?<=^)|(?<=[:=\s\"']))" + re.escape(old.rstrip("/")) + r"(?=/|$|[:\s\"'])"
    )


# --- comparing specs ------------------------------------------------------------------------------


def changes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any], policy: EnvPolicy
) -> list[str]:
    """How ``after`` differs from ``before``, field by field and variable by variable, as
    review lines (``env.X: 1 -> 2``, ``+ env.Y=...``), values masked; [] when equal."""
    if before is None:  # a new spec: everything it holds
        return ["(new spec)", *changes({}, after, policy)]
    policy = policy.with_recorded(after).with_recorded(before)
    lines = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if key == "env" and isinstance(old or {}, dict) and isinstance(new or {}, dict):
            lines += _env_changes(old or {}, new or {}, policy)
        elif key == "metadata" and isinstance(old or {}, dict) and isinstance(new or {}, dict):
            for sub in sorted(set(old or {}) | set(new or {})):
                a, b = (old or {}).get(sub), (new or {}).get(sub)
                if a != b:
                    lines.append(f"metadata.{sub}: {_shown(a, policy)} -> {_shown(b, policy)}")
        else:
            lines.append(f"{key}: {_shown(old, policy)} -> {_shown(new, policy)}")
    return lines


def _env_changes(old: Mapping[str, Any], new: Mapping[str, Any], policy: EnvPolicy) -> list[str]:
    lines = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if a is None:
            lines.append(f"+ env.{name}={_value(name, b, policy)}")
        elif b is None:
            lines.append(f"- env.{name}")
        else:
            lines.append(f"env.{name}: {_value(name, a, policy)} -> {_value(name, b, policy)}")
    return lines


def _value(name: str, value: Any, policy: EnvPolicy) -> str:
    return str(policy.mask_env({name: value})[name])


def _shown(value: Any, policy: EnvPolicy) -> str:
    if value is None:
        return "(none)"
    text = json.dumps(policy.mask_spec({"metadata": {"v": value}})["metadata"]["v"])
    return text if len(text) <= 200 else text[:197] + "..."


def kept_in_a_job(
    recorded: Mapping[str, str], environ: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Inside a batch job, the thread counts and devices the document recorded as captured
    (``recorded``): a capture here would take them for the job's own and leave them out,
    but the document says what the spec had. They are written as the document has them,
    and said."""
    job = batch_job(environ)
    if job is None:
        return {}, []
    kept = {
        name: value
        for name, value in recorded.items()
        if isinstance(value, str) and MASK not in value and name in JOB_SCOPED_NAMES
    }
    if not kept:
        return {}, []
    names = ", ".join(sorted(kept))
    return kept, [
        f"kept the document's {names} (inside {job[0]} job {job[1]}, whose own values a "
        "capture leaves out): nothing the document recorded was dropped"
    ]
