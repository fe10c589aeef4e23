"""Apply an export document: make its specs here, review them, or check them.

``apply`` re-makes each spec from its recorded source on the machine at hand (so captured
values are that machine's), writes what it was given by hand, and copies the specs
kernelmagic did not make as written. It changes only what differs: a spec that is already
what it would make is not touched, and the files a document does not carry (logos) are
never deleted. Reviewing runs nothing: ``--dry-run`` shows each command ``apply`` would run
(quoted exactly) and what it would write; ``--check`` compares the installed specs with
what the document recorded. The document is checked whole before anything runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kernelmagic import reading
from kernelmagic.commands.install import InstallRequest, install, starts_in_its_project
from kernelmagic.commands.render import Shown, change_report, printable, printable_lines
from kernelmagic.domain import containers, documents, projects
from kernelmagic.domain.checks import argv_strings, provisioner_name
from kernelmagic.domain.ownership import TrustWalk
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.provenance import Provenance, comparable
from kernelmagic.domain.sources import conda_snippet, module_command
from kernelmagic.domain.trust import TRUST_ADVICE
from kernelmagic.errors import InvalidInput, KernelmagicError, LocationError, NoSuchKernelSpec
from kernelmagic.operations import spec_writes
from kernelmagic.operations.edit import install_directory
from kernelmagic.options import (
    DRY_RUN,
    LOCATION_OPTIONS,
    Option,
    kernels_dir_from_args,
    option,
    path,
)
from kernelmagic.reading import read_spec_object
from kernelmagic.settings import Settings
from kernelmagic.storage import ipykernel_specs, transactions
from kernelmagic.storage.discovery import (
    kernel_dirs,
    location_dir,
)

_SHELL_SYNTAX = re.compile(r"\$\(|`|;|&&|\|\||\|")
_KNOWN_PROGRAMS = re.compile(r"(python|pypy)[0-9.]*|R|Rscript|julia[0-9.-]*")


# --- apply -----------------------------------------------------------------------------------

SUMMARY = (
    "Make the specs of an exported document here: each re-made from its recorded source "
    "(captured values are this machine's), only where it differs; --dry-run and --check "
    "run nothing."
)


DOCUMENT = option("document", metavar="FILE", type=path, help="a document export wrote")
APPLY_NAMES = option("names", nargs="*", metavar="NAME", help="only these specs of the document")
CHECK = option(
    "--check",
    action="store_true",
    help="run nothing, write nothing; exit 1 naming each spec, field and variable where "
    "what is installed differs from what the document recorded",
)
VERBOSE = option(
    "--verbose", action="store_true", help="with --dry-run: the whole JSON of each spec too"
)
MAP = option(
    "--map",
    action="append",
    default=[],
    metavar="OLD=NEW",
    help="paths that start with OLD start with NEW on this machine (interpreters, prefixes, "
    "values; repeatable)",
)
APPLY_PYTHON = option(
    "--python",
    metavar="PATH",
    type=path,
    help="the interpreter of the document's Python kernels on this machine",
)
ALLOW_REMOTE = option(
    "--allow-remote",
    action="store_true",
    help="also write specs that start through a kernel provisioner (other hosts, pods)",
)
APPLY_TRUST = option(
    "--trust",
    action="store_true",
    help="run what a document other users can change says to run (snippets, modules, "
    "activations run as you): only once you have reviewed it with --dry-run",
)


@dataclass(frozen=True)
class ApplyRequest:
    """``apply``: make the document's specs (or the named ones) here."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (
        DOCUMENT, APPLY_NAMES, CHECK, DRY_RUN, VERBOSE, MAP, APPLY_PYTHON, ALLOW_REMOTE,
        APPLY_TRUST, *LOCATION_OPTIONS,
    )  # fmt: skip

    document: str  # its path (``-``: stdin)
    names: tuple[str, ...] = ()
    check: bool = False
    dry_run: bool = False
    verbose: bool = False
    maps: tuple[tuple[str, str], ...] = ()  # (OLD, NEW) path prefixes
    python: str | None = None
    allow_remote: bool = False
    kernels_dir: str | None = None  # every spec here, instead of the document's locations
    policy: EnvPolicy = DEFAULT_POLICY
    trust: bool = False  # run what the document says to run even if others can change it

    def __post_init__(self) -> None:
        if self.check and self.dry_run:
            raise InvalidInput("--check and --dry-run both only review; choose one")
        for old, new in self.maps:
            if not (os.path.isabs(old) and os.path.isabs(new)):
                raise InvalidInput(f"--map {old}={new}: both must be absolute paths")

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> ApplyRequest:
        maps = []
        for text in ns.map:
            old, sep, new = text.partition("=")
            if not sep:
                raise InvalidInput(f"--map takes OLD=NEW, not {text!r}")
            maps.append((os.path.expanduser(old), os.path.expanduser(new)))
        given = ns.user or ns.sys_prefix or ns.prefix is not None
        return cls(
            ns.document,
            tuple(ns.names),
            ns.check,
            ns.dry_run,
            ns.verbose,
            tuple(maps),
            ns.python,
            ns.allow_remote,
            kernels_dir_from_args(ns) if given else None,
            settings.policy,
            ns.trust,
        )


@dataclass
class Outcome:
    """What applying one spec did (``action``), would do (``--dry-run``) or found
    (``--check``), in lines a reviewer reads."""

    name: str
    action: str = ""  # unchanged | installed | updated | would ... | as recorded | differs
    resource_dir: str = ""
    runs: list[str] = field(default_factory=list)  # what apply runs, quoted exactly
    changes: list[str] = field(default_factory=list)  # field by field, values masked
    flags: list[str] = field(default_factory=list)  # what a reviewer should read twice
    notes: list[str] = field(default_factory=list)
    problem: str | None = None  # why it is not made here
    problem_details: tuple[str, ...] = ()  # what the tool said, below that line
    spec: dict[str, Any] | None = None  # written or to be (masked), for --verbose
    change: transactions.Change | None = None  # what apply wrote

    @property
    def failed(self) -> bool:
        return self.problem is not None or self.action in ("differs", "not installed")


def apply_document(request: ApplyRequest) -> list[Outcome]:
    """Check the whole document, then apply, review (``dry_run``) or compare (``check``)
    each of its specs (or the named ones)."""
    doc = documents.parse(reading.read_text_input(request.document), request.document)
    wanted = {n.lower() for n in request.names}
    entries = [e for e in doc["specs"] if not wanted or e["name"].lower() in wanted]
    missing = wanted - {e["name"].lower() for e in entries}
    if missing:
        raise NoSuchKernelSpec(sorted(missing)[0], [e["name"] for e in doc["specs"]])
    # What it runs (a snippet, modules, an activation) runs as you: not from a document that
    # others could have changed since it was reviewed, unless the user says so.
    refused = None
    if not (request.check or request.dry_run or request.trust or request.document == "-"):
        with TrustWalk() as walk:
            why = walk.why([request.document])
        refused = f"not run: {why}; {TRUST_ADVICE}" if why else None
    outcomes = []
    for entry in entries:
        entry = documents.map_paths(entry, request.maps) if request.maps else entry
        outcome = Outcome(entry["name"])
        try:
            _plan(entry, request, outcome)
            if outcome.problem is None:
                if request.check:
                    _check(entry, outcome, request)
                elif request.dry_run:
                    _review(entry, outcome, request)
                else:
                    _apply(entry, outcome, request, refused)
        except KernelmagicError as exc:
            outcome.problem, outcome.problem_details = str(exc), exc.details
        outcomes.append(outcome)
    return outcomes


def _plan(entry: dict[str, Any], request: ApplyRequest, outcome: Outcome) -> None:
    """Where the spec goes, what apply would run, what a reviewer must read: all without
    running anything."""
    outcome.resource_dir = os.path.join(_kernels_dir(entry, request), entry["name"].lower())
    if documents.is_remote(entry):
        outcome.problem = "a remote spec is remade with `kernelmagic remote` on the new machine"
        return
    record = documents.record_of(entry)
    if record is not None and record.snippet_file:
        outcome.problem = (
            "its snippet held a secret, so the document has it masked; install it again by hand"
        )
        return
    if record is None:
        spec = entry["spec"]
        container = containers.of_spec(spec)
        if container is not None and containers.is_generated(spec.get("argv")):
            # Written from the record, not from the argv the document holds: show the record.
            outcome.flags.append(containers.described(container))
        else:
            outcome.flags += _argv_flags(spec)
        provisioner = provisioner_name(spec)
        if provisioner not in (None, "local-provisioner"):
            stanza = spec["metadata"]["kernel_provisioner"]
            outcome.flags.append(f"starts through the provisioner {provisioner}: {stanza}")
            if not request.allow_remote:
                outcome.problem = (
                    f"it starts through the kernel provisioner {provisioner} (other hosts or "
                    "pods, as its config says); apply it with --allow-remote after reading it"
                )
                return
        return
    outcome.runs = _runs(record, request)


def _kernels_dir(entry: dict[str, Any], request: ApplyRequest) -> str:
    """The kernels dir for the entry: --user/--prefix, else the document's location, which
    must be one of Jupyter's kernel dirs (user, sys-prefix, a prefix, a JUPYTER_PATH dir)."""
    if request.kernels_dir is not None:
        return request.kernels_dir
    location = entry.get("location", "user")
    if location == "user":
        return location_dir(user=True)
    if location == "sys-prefix":
        return location_dir(sys_prefix=True)
    ((key, value),) = location.items()
    value = os.path.expanduser(str(value))  # a str: the document was checked
    if key == "prefix":
        return location_dir(prefix=value)
    searched = {os.path.realpath(d) for d in kernel_dirs()}
    if os.path.realpath(value) not in searched:
        raise LocationError(
            f"its location {value} is not a directory Jupyter searches; apply it with --user "
            "or --prefix DIR"
        )
    return value


def _argv_flags(spec: dict[str, Any]) -> list[str]:
    argv = argv_strings(spec) or []
    flags = [f"argv runs a shell command: {word}" for word in argv if _SHELL_SYNTAX.search(word)]
    if argv and not _KNOWN_PROGRAMS.fullmatch(os.path.basename(argv[0])):
        flags.append(f"argv starts {argv[0]}, not a Python, R or Julia interpreter")
    return flags


def _runs(record: Provenance, request: ApplyRequest) -> list[str]:
    """What apply runs to make the entry's environment and spec, as it will run it."""
    source = record.source
    shell = shlex.quote(source.shell or "bash")  # one program's path, run as such
    runs = []
    if source.origin == "current":
        if record.capture != "none":  # nothing captured: no baseline to take
            runs.append(f"{shell} -l (your own login shell, for the baseline of this session)")
    elif source.origin == "snippet":
        runs.append(f"{shell} -l, running this snippet:\n" + _indented(source.snippet or ""))
    elif source.origin == "modules":
        runs.append(f"{shell} -l: {module_command(source.modules or '')}")
    elif source.origin == "conda":
        try:
            runs.append(f"{shell} -l: {conda_snippet(source.conda_env or '')}")
        except KernelmagicError as exc:
            raise KernelmagicError(f"activating {source.conda_env}: {exc}") from None
    elif source.origin == "project":
        root, tool, command = projects.finding_runs(source.project or ".")
        if tool == "conda":
            runs.append(
                f"{shell} -l: the conda activation of the env {root}'s environment.yml names"
            )
        elif command:
            if tool == "pixi" and source.project_env:
                command += f" -e {shlex.quote(source.project_env)}"
            runs.append(f"{command} (in {root}: asks {tool} for the project's environment)")
        if tool != "conda":
            runs.append(
                f"the {tool} environment's python -c (asks its prefix, version and whether it "
                "has ipykernel)"
            )
    python = request.python or source.python
    kind = record.kernel
    if kind == "python":
        if python:
            if not os.path.exists(python):
                raise KernelmagicError(
                    f"the interpreter {python} is not on this machine; map its prefix "
                    "(--map OLD=NEW) or name one (--python PATH)"
                )
            runs.append(f"{python} -c (asks its prefix, version and whether it has ipykernel)")
        elif source.origin in ("snippet", "modules"):
            runs.append("the python the source puts first on PATH, if it changes which one")
    elif kind in ("ir", "julia"):
        program = record.program_requested or ("R" if kind == "ir" else "julia")
        runs.append(f"{program} (asks where its kernel package keeps its spec)")
    return runs


def _withheld(
    names: Iterable[str], installed: dict[str, Any] | None
) -> tuple[dict[str, str], list[str]]:
    """(the values of the secrets the document masked that the spec installed here holds,
    kept: made again it would lose them; a note for each of the others, to set by hand)."""
    here = installed.get("env") if installed is not None else None
    here = here if isinstance(here, dict) else {}
    kept = {n: here[n] for n in names if isinstance(here.get(n), str)}
    notes = [
        f"{name} was a secret and is not in the document: "
        + ("kept as set here" if name in kept else "set it by hand")
        for name in names
    ]
    return kept, notes


def _indented(text: str) -> str:
    return "\n".join(f"      {line}" for line in text.rstrip("\n").split("\n"))


def _copied_spec(
    entry: dict[str, Any],
    request: ApplyRequest,
    outcome: Outcome,
    installed: dict[str, Any] | None,
) -> dict[str, Any]:
    """The spec a copy entry writes: as recorded, without the values the document masked
    (but those the spec ``installed`` here holds)."""
    if documents.from_a_session(entry):
        outcome.notes.append(
            "captured from a running session, which no machine can make again: written as the "
            "document records it"
        )
    spec = dict(entry["spec"])
    env, held = documents.withheld(spec.get("env") or {})
    kept, notes = _withheld(held, installed)
    if "env" in spec:
        spec["env"] = {k: kept.get(k, v) for k, v in spec["env"].items() if k in env or k in kept}
    outcome.notes += notes
    return _with_python(spec, request.python)


def _with_python(spec: dict[str, Any], python: str | None) -> dict[str, Any]:
    """A copied spec run by ``python`` (``--python``) where it runs an interpreter."""
    argv = list(spec.get("argv") or [])
    if not python or not argv or not _KNOWN_PROGRAMS.fullmatch(os.path.basename(argv[0])):
        return spec
    spec = {**spec, "argv": [python, *argv[1:]]}
    record = Provenance.of_spec(spec)
    if record is not None and record.python:  # the record says what argv runs
        record.python = python
        spec = record.write_into(spec)
    return spec


def _ipykernels_files(entry: dict[str, Any]) -> str | None:
    """The logos ipykernel ships, for the Python spec of a session that install gave them
    (a document carries no files); None for any other spec."""
    record = Provenance.from_metadata(entry.get(documents.RECORD_KEY))
    if not documents.from_a_session(entry) or record is None or record.kernel != "python":
        return None
    return ipykernel_specs.resources_dir()


def _installed(outcome: Outcome) -> dict[str, Any] | None:
    """The spec now at the entry's location, if there is one."""
    try:
        return read_spec_object(os.path.join(outcome.resource_dir, "kernel.json"))
    except (OSError, ValueError):
        return None


def _review(entry: dict[str, Any], outcome: Outcome, request: ApplyRequest) -> None:
    installed = _installed(outcome)
    record = documents.record_of(entry)
    if record is None:
        if _as_recorded(entry, installed, request):
            outcome.action = "unchanged"
            return
        spec = _copied_spec(entry, request, outcome, installed)
        outcome.spec = request.policy.mask_spec(spec)
        if installed is not None and comparable(installed) == comparable(spec):
            outcome.action = "unchanged"
            return
        outcome.action = "would update" if installed is not None else "would install"
        outcome.changes = documents.changes(installed, spec, request.policy)
        return
    if installed is not None and not _drift(entry, installed, request.policy):
        outcome.action, outcome.runs = "unchanged", []  # as _apply leaves it
        return
    by_hand, captured = documents.split_env(entry, record)
    explicit, held = documents.withheld(by_hand)
    outcome.action = "would re-make, writing only what differs"
    shown = request.policy.mask_env(explicit)
    outcome.changes = [f"env.{k}={v} (set by hand)" for k, v in sorted(shown.items())]
    if captured:
        outcome.changes.append(
            f"env as the source sets it here (the document recorded {', '.join(sorted(captured))})"
        )
    outcome.notes += (
        _withheld(held, installed)[1] + documents.kept_in_a_job(captured, os.environ)[1]
    )
    outcome.spec = request.policy.mask_spec(entry.get("spec"))


def _check(entry: dict[str, Any], outcome: Outcome, request: ApplyRequest) -> None:
    outcome.runs = []  # a comparison runs nothing
    installed = _installed(outcome)
    if installed is None:
        outcome.action = "not installed"
        return
    found = _drift(entry, installed, request.policy, request.python)
    outcome.action = "differs" if found else "as recorded"
    outcome.changes = found


def _as_recorded(
    entry: dict[str, Any], installed: dict[str, Any] | None, request: ApplyRequest
) -> bool:
    """A copied spec installed as the document records it: left alone, as a spec made again
    is (copied, it would lose a secret the document masked)."""
    return installed is not None and not _drift(entry, installed, request.policy, request.python)


def _drift(
    entry: dict[str, Any], installed: dict[str, Any], policy: EnvPolicy, python: str | None = None
) -> list[str]:
    """From what the document recorded to what is installed: the changes since, values
    masked; [] for a spec as recorded (a copied one run by ``python``, as --python asks)."""
    recorded = entry.get("spec")
    if recorded is not None and documents.record_of(entry) is None:
        recorded = _with_python(recorded, python)
    if recorded is None:  # a version-1 document: what it recorded of a spec it re-makes
        recorded = {k: installed.get(k) for k in installed}
        recorded.update(display_name=entry.get("display_name"), language=entry.get("language"))
        recorded["env"] = dict(entry.get("env") or {})
    return documents.changes(comparable(recorded), comparable(policy.mask_spec(installed)), policy)


def _apply(
    entry: dict[str, Any], outcome: Outcome, request: ApplyRequest, refused: str | None = None
) -> None:
    """Make the entry's spec here; ``refused`` says why what it runs may not run."""
    kernels_dir, name = os.path.split(outcome.resource_dir)
    record = documents.record_of(entry)
    if record is None:
        installed = _installed(outcome)
        if _as_recorded(entry, installed, request):
            outcome.action = "unchanged"
            return
        spec = _copied_spec(entry, request, outcome, installed)
        if installed is not None and comparable(installed) == comparable(spec):
            outcome.action = "unchanged"
            return
        if installed is not None:  # kernel.json only: the files beside it stay
            change = spec_writes.rewrite_spec(
                name, lambda _: spec, action="applied", policy=request.policy,
                hint="apply it with --user or --prefix DIR", resource_dir=outcome.resource_dir,
            )  # fmt: skip
        elif (logos := _ipykernels_files(entry)) is not None:  # a session's ipykernel spec
            change = install_directory(
                name, kernels_dir, logos, spec, action="applied", policy=request.policy
            )
        else:
            outcome.notes.append("new: a document carries no logos or other files of a spec")
            with tempfile.TemporaryDirectory(prefix="kernelmagic-apply-") as empty:
                change = install_directory(
                    name, kernels_dir, empty, spec, action="applied", policy=request.policy
                )
        outcome.change, outcome.action = change, change.action
        return
    installed = _installed(outcome)
    if installed is not None and not _drift(entry, installed, request.policy):
        # Already what the document records: made again, it would lose what the document
        # keeps but its source cannot make (a hand-set metadata key, a secret it masked).
        outcome.action, outcome.runs = "unchanged", []
        return
    if refused and outcome.runs:
        outcome.problem = refused
        return
    by_hand, captured = documents.split_env(entry, record)
    explicit, held = documents.withheld(by_hand)
    secrets_here, notes = _withheld(held, installed)
    outcome.notes += notes
    kept, said = documents.kept_in_a_job(captured, os.environ)
    explicit = {**kept, **explicit, **secrets_here}
    outcome.notes += said
    source = record.source
    if request.python and record.kernel == "python":
        source = dataclasses.replace(source, python=request.python)
    display_name = entry.get("display_name")
    made_up = display_name is not None and display_name == record.generated_display_name
    change, _ = install(
        InstallRequest(
            name,
            source,
            kernel="python" if record.kernel == "like" else record.kernel,
            like=record.like,
            program=record.program_requested,
            display_name=None if made_up else display_name,
            kernels_dir=kernels_dir,
            # A group's spec stays the group's (made again, its directory is new).
            group=spec_writes.sharing_group(outcome.resource_dir) if installed else None,
            env=explicit,
            capture=documents.capture_options(record),
            replace=True,
            keep_if_same=True,
            # --cwd is not in the record, only in the argv of the spec the document holds.
            cwd=source.origin == "project" and starts_in_its_project(entry.get("spec") or {}),
        )
    )
    outcome.change, outcome.action = change, change.action


Request = ApplyRequest


@dataclass
class Applied:
    """What ``apply`` did with each entry of the document."""

    outcomes: list[Outcome]
    verbose: bool = False  # show each spec's JSON


def run(request: ApplyRequest) -> Applied:
    return Applied(apply_document(request), request.verbose)


def show(result: Applied, style: str) -> Shown:
    failed = any(outcome.failed for outcome in result.outcomes)
    return Shown(apply_report(result.outcomes, verbose=result.verbose), status=int(failed))


def apply_report(outcomes: Iterable[Outcome], *, verbose: bool = False) -> str:
    """What ``apply`` did, would do (``--dry-run``) or found (``--check``), per spec: the
    commands it runs, quoted exactly, then what it writes or what differs, values masked."""
    lines = []
    for outcome in outcomes:
        where = outcome.resource_dir or outcome.name
        if outcome.problem:
            lines.append(printable(f"{outcome.name}: not made here: {outcome.problem}"))
            lines += [printable(f"    {detail}") for detail in outcome.problem_details]
        elif outcome.change is not None and outcome.change.written:
            lines.append(change_report(outcome.change, diff=outcome.change.before is not None))
        else:
            lines.append(printable(f"{outcome.name} ({where}): {outcome.action}"))
        if outcome.runs:
            lines.append("  runs:")
            lines += [f"    {printable_lines(run)}" for run in outcome.runs]
        if outcome.changes and not (outcome.change and outcome.change.written):
            lines += [f"  {printable(change)}" for change in outcome.changes]
        lines += [printable(f"  look: {flag}") for flag in outcome.flags]
        lines += [printable(f"  note: {note}") for note in outcome.notes]
        if verbose and outcome.spec is not None:
            lines.append(reading.dump_spec(outcome.spec).rstrip("\n"))
    return "\n".join(lines) or "(no specs in the document)"
