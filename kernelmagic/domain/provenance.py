"""How a spec was made: the ``metadata.kernelmagic`` record, with one codec.

``Source`` says how the environment is made (this session, a snippet, modules, a conda env,
another interpreter); ``Provenance`` is everything recorded about a spec kernelmagic wrote,
so that refresh can make it again and later commands keep the user's secret rules. Only
``Provenance.to_metadata`` writes the record and only ``Provenance.from_metadata`` reads it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kernelmagic.domain.jupyter_rules import is_valid_kernel_name
from kernelmagic.errors import InvalidInput

METADATA_KEY = "kernelmagic"
# A snippet that holds a secret is recorded masked in kernel.json; the full text, which
# refresh runs, stays in this owner-only file beside it.
SNIPPET_FILE = "kernelmagic-snippet.sh"
# Sources that can be made again on refresh; "current" (a running session) and "remote" (a
# copy of another spec) cannot.
REPEATABLE = ("snippet", "modules", "conda", "python", "project")
_NEEDS = {"snippet": "snippet", "modules": "modules", "conda": "conda_env", "python": "python",
          "project": "project"}  # fmt: skip
_SOURCE_FIELDS = (
    "snippet", "modules", "conda_env", "python", "shell", "project", "project_env",
)  # fmt: skip

# to_metadata's fields that say what this machine found or when: an export document leaves
# them out, since apply makes them again wherever it runs.
_OF_THIS_MACHINE = ("baseline", "captured", "captured_digests", "created")
# The fields of a record in an export document (to_document's), by the type they hold.
_DOCUMENT_FIELDS: dict[str, type] = {
    **dict.fromkeys(
        ("source", "kernel_kind", "like", "program_requested", "snippet", "snippet_file",
         "modules", "conda_env", "python", "python_requested", "shell", "project_dir",
         "project_env", "capture", "generated_display_name", "from", "engine"),
        str,
    ),
    **dict.fromkeys(("include", "exclude", "explicit", "extra_secrets", "extra_noise"), list),
    "templates": bool,
}  # fmt: skip
# Which variables of a session install captures (--capture): one spelling for every reader.
CAPTURE_MODES = ("changed", "all", "none")
_DOCUMENT_CHOICES = {
    "source": (*REPEATABLE, "current", "remote"),
    "kernel_kind": ("python", "ir", "julia", "like"),
    "capture": CAPTURE_MODES,
}


def now() -> str:
    # What datetime.now(timezone.utc).isoformat(timespec="seconds") says, without
    # importing datetime for it.
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


@dataclass(frozen=True)
class Source:
    """How the environment is made."""

    origin: str  # current | snippet | modules | conda | python | project | remote
    snippet: str | None = field(default=None, repr=False)  # may hold a secret
    modules: str | None = None
    conda_env: str | None = None
    python: str | None = None  # the interpreter the user asked for
    shell: str | None = None
    project: str | None = None  # the project's dir (--project)
    project_env: str | None = None  # the project's environment, where it has several (pixi)

    @property
    def repeatable(self) -> bool:
        return self.origin in REPEATABLE

    def check_installable(self) -> None:
        """``InvalidInput`` unless an install can make this source: a known origin with what
        it needs (a snippet's text, the modules, ...), every field text."""
        if self.origin not in ("current", *REPEATABLE):
            raise InvalidInput(
                f"a Source's origin is one of current, {', '.join(REPEATABLE)}; not {self.origin!r}"
            )
        for name in _SOURCE_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"Source.{name} must be text, not {type(value).__name__}")
        needed = _NEEDS.get(self.origin)
        if needed is not None and getattr(self, needed) is None:
            raise InvalidInput(f"Source({self.origin!r}) needs {needed}=...")
        for name in ("modules", "conda_env", "python"):  # `--modules "$MODS"`, MODS unset
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise InvalidInput(f"Source.{name} is empty; name what it takes, or leave it out")

    @classmethod
    def from_fields(cls, fields: Any) -> Source:
        """The source as an export document of format 1 or 2 recorded it (``{"kind": origin,
        "project": DIR, ...}``, read only to migrate it); ``ValueError`` saying what is wrong
        (an unknown key, a value that is not a string, an origin that cannot be made again)."""
        if not isinstance(fields, Mapping):
            raise ValueError(f"must be an object, not {type(fields).__name__}")
        unknown = sorted(set(fields) - {"kind", *_SOURCE_FIELDS})
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))}")
        wrong = sorted(k for k, v in fields.items() if not isinstance(v, str))
        if wrong:
            raise ValueError(f"{', '.join(map(repr, wrong))} must be text")
        origin = fields.get("kind", "current")
        if origin not in (*REPEATABLE, "current"):
            raise ValueError(f"kind {origin!r} is not one of {', '.join((*REPEATABLE, 'current'))}")
        return cls(origin, **{k: fields[k] for k in _SOURCE_FIELDS if k in fields})

    def action(self) -> str:
        """What runs to make the environment, for messages: ``module load gdal/3.8``,
        ``activating the conda env geo``, ``the snippet`` (never quoted: it may hold a
        secret)."""
        if self.origin == "conda":
            return f"activating the conda env {self.conda_env}"
        return self.described()

    def described(self) -> str:
        """The source in a few words, for messages (a snippet is not quoted: it may hold a
        secret)."""
        if self.origin == "modules":
            return f"module load {self.modules}"
        if self.origin == "conda":
            return f"the conda env {self.conda_env}"
        if self.origin == "project":
            env = f" (environment {self.project_env})" if self.project_env else ""
            return f"the project at {self.project}{env}"
        return {"snippet": "the snippet", "current": "this session"}.get(self.origin, self.origin)


@dataclass
class Provenance:
    """What ``metadata.kernelmagic`` records about a spec kernelmagic made."""

    source: Source
    python: str | None = None  # the interpreter the spec runs (Python kernels)
    kernel: str = "python"  # python | ir | julia (--kernel), or like (--like)
    like: str | None = None  # --like: the installed spec used as a template
    program: str | None = None  # other languages: the program found (R, julia, argv[0])
    program_requested: str | None = None  # --program as given
    capture: str = "changed"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    templates: bool = True
    extra_secrets: tuple[str, ...] = ()  # the user's secret patterns when it was made
    extra_noise: tuple[str, ...] = ()  # ... and noise patterns: later commands honour them
    baseline: str = ""
    captured_digests: dict[str, str] = field(default_factory=dict)  # name -> digest of its value
    explicit: tuple[str, ...] = ()  # names the user set with --env
    job: str | None = None  # "Slurm 4242": the batch job it was captured in
    loaded_modules: str | None = None
    modulefiles: dict[str, str] = field(default_factory=dict)  # module -> modulefile loaded
    remote_from: str | None = None  # remote specs: the spec they were made from
    engine: str | None = None
    created: str = field(default_factory=now)
    refreshed: str | None = None
    version: str = ""
    snippet_file: str | None = None  # the full snippet, kept owner-only beside kernel.json
    generated_display_name: str | None = None  # the display name kernelmagic made up
    container: dict[str, Any] | None = None  # containers.Container's fields
    project: dict[str, Any] | None = None  # projects.Project.record(): for drift
    scan_root: str | None = None  # install --project --scan DIR: the DIR that found it

    @property
    def captured(self) -> list[str]:
        return sorted(self.captured_digests)

    def to_metadata(self) -> dict[str, Any]:
        source = self.source
        record: dict[str, Any] = {"source": source.origin}
        if self.kernel != "python":
            record["kernel_kind"] = self.kernel  # the key's name since 0.1
        optional = {
            "like": self.like,
            "program": self.program,
            "program_requested": self.program_requested,
            "snippet": source.snippet,
            "snippet_file": self.snippet_file,
            "modules": source.modules,
            "conda_env": source.conda_env,
            "python": self.python,
            # For the origin "python" the interpreter asked for is the one found.
            "python_requested": source.python if source.origin != "python" else None,
            "shell": source.shell,
            "project_dir": source.project,
            "project_env": source.project_env,
            "loaded_modules": self.loaded_modules,
            "modulefiles": dict(self.modulefiles) or None,
            "from": self.remote_from,
            "engine": self.engine,
            "generated_display_name": self.generated_display_name,
            "container": self.container,
            "project": self.project,
            "scan_root": self.scan_root,
            "job": self.job,
        }
        record.update({k: v for k, v in optional.items() if v is not None})
        if source.origin != "remote":
            record.update(
                capture=self.capture,
                include=list(self.include),
                exclude=list(self.exclude),
                templates=self.templates,
                baseline=self.baseline,
                captured=self.captured,
                captured_digests=dict(self.captured_digests),
                explicit=list(self.explicit),
            )
        for key, patterns in (
            ("extra_secrets", self.extra_secrets),
            ("extra_noise", self.extra_noise),
        ):
            if patterns:
                record[key] = list(patterns)
        record["created"] = self.created
        if self.refreshed:
            record["refreshed"] = self.refreshed
        if self.version:
            record["version"] = self.version
        return record

    def to_document(self) -> dict[str, Any]:
        """The record as an export document carries it: ``to_metadata``'s fields, under the
        same names, less what belongs to this machine and this moment (what was found and
        loaded, the baseline, digests, dates). ``from_metadata`` reads it back."""
        source = self.source
        portable = Provenance(
            source,
            python=source.python if source.origin == "python" else None,
            kernel=self.kernel,
            like=self.like,
            program_requested=self.program_requested,
            capture=self.capture,
            include=self.include,
            exclude=self.exclude,
            templates=self.templates,
            extra_secrets=self.extra_secrets,
            extra_noise=self.extra_noise,
            explicit=self.explicit,
            remote_from=self.remote_from,
            engine=self.engine,
            snippet_file=self.snippet_file,
            generated_display_name=self.generated_display_name,
        )
        record = portable.to_metadata()
        for key in _OF_THIS_MACHINE:
            record.pop(key, None)
        return record

    @classmethod
    def from_metadata(cls, record: Any) -> Provenance | None:
        """The record of a spec's ``metadata.kernelmagic``; None when it is not an object.

        Values of the wrong type are read as absent, never trusted.
        """
        if not isinstance(record, Mapping):
            return None

        def text(key: str) -> str | None:
            value = record.get(key)
            return value if isinstance(value, str) else None

        def words(key: str) -> tuple[str, ...]:
            value = record.get(key)
            return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()

        origin = text("source") or "unknown"
        python = text("python") if origin == "python" else text("python_requested")
        source = Source(
            origin,
            snippet=text("snippet"),
            modules=text("modules"),
            conda_env=text("conda_env"),
            python=python,
            shell=text("shell"),
            project=text("project_dir"),
            project_env=text("project_env"),
        )
        digests = record.get("captured_digests")
        digests = (
            {k: v for k, v in digests.items() if isinstance(v, str)}
            if isinstance(digests, dict)
            else {}
        )
        templates = record.get("templates", True)
        return cls(
            source,
            python=text("python"),
            kernel=text("kernel_kind") or "python",
            like=text("like"),
            program=text("program"),
            program_requested=text("program_requested"),
            capture=text("capture") or "changed",
            include=words("include"),
            exclude=words("exclude"),
            templates=templates if isinstance(templates, bool) else True,
            extra_secrets=words("extra_secrets"),
            extra_noise=words("extra_noise"),
            baseline=text("baseline") or "",
            captured_digests=digests,
            explicit=words("explicit"),
            job=text("job"),
            loaded_modules=text("loaded_modules"),
            modulefiles=_text_map(record.get("modulefiles")),
            remote_from=text("from"),
            engine=text("engine"),
            created=text("created") or "",
            refreshed=text("refreshed"),
            version=text("version") or "",
            snippet_file=text("snippet_file"),
            generated_display_name=text("generated_display_name"),
            container=_object(record.get("container")),
            project=_object(record.get("project")),
            scan_root=text("scan_root"),
        )

    @classmethod
    def of_spec(cls, spec: Mapping[str, Any]) -> Provenance | None:
        metadata = spec.get("metadata")
        return cls.from_metadata(metadata.get(METADATA_KEY)) if isinstance(metadata, dict) else None

    def display_name_for(self, spec: Mapping[str, Any], old: str, new: str) -> str | None:
        """The display name ``spec`` gets under the name ``new``: kernelmagic's own made-up
        one (still unchanged) follows the name; None when the user chose it."""
        made_up = self.generated_display_name
        if not made_up or spec.get("display_name") != made_up:
            return None
        suffix = f" ({old})"
        if not made_up.endswith(suffix):
            return None
        return made_up[: -len(suffix)] + f" ({new})"

    def write_into(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Set ``spec``'s ``metadata.kernelmagic`` to this record; returns ``spec``."""
        metadata = spec.get("metadata")
        spec["metadata"] = {**(metadata if isinstance(metadata, dict) else {})}
        spec["metadata"][METADATA_KEY] = self.to_metadata()
        return spec


def document_problems(record: Any) -> list[str]:
    """What is wrong with a record as an export document carries it (``to_document``'s
    shape), one ``key: problem`` line each: ``from_metadata`` reads a wrong value as absent,
    and a document is refused instead, before anything runs."""
    if not isinstance(record, Mapping):
        return [": must be an object"]
    problems = [f"{k}: not a field of the record" for k in record if k not in _DOCUMENT_FIELDS]
    for key, value in record.items():
        expected = _DOCUMENT_FIELDS.get(key)
        if expected is str and not isinstance(value, str):
            problems.append(f"{key}: must be text")
        elif expected is bool and not isinstance(value, bool):
            problems.append(f"{key}: must be true or false")
        elif expected is list and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            problems.append(f"{key}: must be a list of text")
    for key, allowed in _DOCUMENT_CHOICES.items():
        if isinstance(record.get(key), str) and record[key] not in allowed:
            problems.append(f"{key}: {record[key]!r} is not one of {', '.join(allowed)}")
    if "source" not in record:
        problems.append(f"source: missing (one of {', '.join(_DOCUMENT_CHOICES['source'])})")
    like = record.get("like")
    if isinstance(like, str) and not is_valid_kernel_name(like):  # apply looks it up by name
        problems.append(f"like: {like!r} is not a kernel spec name")
    # For the origin "python" the interpreter asked for is the one recorded as "python".
    wrong_python = "python_requested" if record.get("source") == "python" else "python"
    if wrong_python in record:
        other = "python" if wrong_python == "python_requested" else "python_requested"
        problems.append(f"{wrong_python}: a source {record.get('source')!r} records {other}")
    return problems


def _object(value: Any) -> dict[str, Any] | None:
    """A JSON object as a dict of its own (its reader checks each field); else None."""
    return dict(value) if isinstance(value, dict) else None


def _text_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def project_of(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The project a spec was made for (``--project``), read without the rest of the record:
    a listing of thousands of specs asks it of each."""
    metadata = spec.get("metadata")
    record = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    project = record.get("project") if isinstance(record, dict) else None
    return project if isinstance(project, dict) else None


def scan_root_of(spec: Mapping[str, Any]) -> str | None:
    """The DIR of the ``install --project --scan DIR`` that made a spec (None: not a scan's),
    read without the rest of the record, as ``project_of`` is."""
    metadata = spec.get("metadata")
    record = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    root = record.get("scan_root") if isinstance(record, dict) else None
    return root if isinstance(root, str) else None


def recorded_patterns(spec: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(extra secret patterns, extra noise patterns) a spec's record holds, without decoding
    the rest of it: every display of every spec asks, a listing thousands of times."""
    metadata = spec.get("metadata")
    record = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if not isinstance(record, dict):
        return (), ()
    return _strings(record.get("extra_secrets")), _strings(record.get("extra_noise"))


def without_record(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with its ``metadata.kernelmagic`` left out (a template's record of how it was
    made is not the new spec's)."""
    metadata = spec.get("metadata")
    if isinstance(metadata, dict) and METADATA_KEY in metadata:
        spec["metadata"] = {k: v for k, v in metadata.items() if k != METADATA_KEY}
    return spec


def comparable(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` as Jupyter and the kernel read it: without kernelmagic's record of how and
    when it was made (two specs that start the same kernel compare equal, however and
    whenever they were made)."""
    shown = dict(spec)
    metadata = shown.get("metadata")
    if isinstance(metadata, dict) and METADATA_KEY in metadata:
        rest = {k: v for k, v in metadata.items() if k != METADATA_KEY}
        if rest:
            shown["metadata"] = rest
        else:
            del shown["metadata"]
    return shown
