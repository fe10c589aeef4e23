"""``install --project --scan DIR``: a plain spec for every environment of every project in a
tree, each made exactly as ``install --project`` makes one, and recorded as the scan's.

A second scan writes nothing: a spec a scan made is kept as long as its project has not
drifted (lockfile, interpreter), and refreshed when it has. Projects whose environment does not
exist yet, or has no ipykernel, are listed with their tool's command; none is installed.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kernelmagic.domain import envcapture, project_tree, projects, sources
from kernelmagic.domain.ownership import TrustWalk
from kernelmagic.domain.provenance import Provenance, Source
from kernelmagic.errors import EnvironmentNotReady, InvalidInput, KernelmagicError
from kernelmagic.options import kernels_dir_from_args, seconds, user_kernels_dir
from kernelmagic.settings import Settings
from kernelmagic.storage import discovery

MAX_PARALLEL = 8  # environments made at once: each mostly waits on its interpreter's start

# What each outcome is called, in the order a report lists them.
INSTALLED, REFRESHED, UNCHANGED, REGISTERED = "installed", "refreshed", "unchanged", "registered"
NEEDS, SKIPPED, FAILED = "needs", "skipped", "failed"
WOULD = {INSTALLED: "would install", REFRESHED: "would refresh"}

# Options that name one spec, or a source: a scan names its specs and finds their sources.
_ONE_SPEC_OPTIONS = (
    ("name", "NAME (each spec is named from its project)"), ("python", "--python"),
    ("modules", "--modules"), ("from_conda", "--from-conda"), ("from_current", "--from-current"),
    ("like", "--like"), ("program", "--program"), ("display_name", "--display-name"),
    ("group", "--group"), ("env", "--env"), ("replace", "--replace"), ("shell", "--shell"),
    ("container", "--container"), ("runtime", "--runtime"), ("bind", "--bind"),
    ("container_option", "--container-option"), ("baseline", "--baseline"),
    ("snippet_file", "--snippet-file"),
)  # fmt: skip


@dataclass(frozen=True)
class ScanRequest:
    """Every project environment below ``top``, at most ``depth`` dirs down."""

    top: str
    depth: int = project_tree.DEFAULT_DEPTH
    kernels_dir: str = field(default_factory=user_kernels_dir)
    capture: envcapture.CaptureOptions = field(default_factory=envcapture.CaptureOptions)
    cwd: bool = False  # each kernel starts in its project's dir
    dry_run: bool = False
    timeout: float = sources.SHELL_TIMEOUT

    def __post_init__(self) -> None:
        # The real path: a tree scanned through a link finds the specs of its projects.
        object.__setattr__(self, "top", os.path.realpath(self.top))
        if not os.path.isdir(self.top):
            raise InvalidInput(f"--scan {self.top}: no such directory")
        if not isinstance(self.depth, int) or self.depth < 0:
            raise InvalidInput(f"--depth must be 0 or more, not {self.depth!r}")
        seconds(self.timeout)

    @classmethod
    def from_args(
        cls,
        ns: argparse.Namespace,
        settings: Settings,
        capture: envcapture.CaptureOptions,
        body: str | None = None,
    ) -> ScanRequest:
        """``capture``: install's capture options, for each spec of the scan."""
        if ns.project is None:
            raise InvalidInput("--scan DIR goes with --project: install --project --scan DIR")
        if ns.project != ".":
            raise InvalidInput("--scan DIR names the tree; give --project without a DIR")
        given = [flag for dest, flag in _ONE_SPEC_OPTIONS if getattr(ns, dest, None)]
        if body is not None:
            given.insert(0, "a snippet")
        if ns.kernel != "python":
            given.append("--kernel")
        if given:
            raise InvalidInput(f"--scan makes one spec per project; it cannot go with {given[0]}")
        return cls(
            ns.scan,
            project_tree.DEFAULT_DEPTH if ns.depth is None else ns.depth,
            kernels_dir=kernels_dir_from_args(ns, settings.default_location),
            capture=capture,
            cwd=ns.cwd,
            dry_run=ns.dry_run,
            timeout=ns.timeout,
        )


@dataclass(frozen=True)
class ScanEntry:
    """What the scan did (or, in a dry run, would do) with one environment of a project."""

    root: str
    tool: str
    environment: str | None
    state: str  # installed | refreshed | unchanged | registered | needs | skipped | failed
    name: str | None = None  # the spec's name (for registered: the spec it already has)
    detail: str = ""  # needs: the tool's command; failed: why

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v not in (None, "")}


@dataclass
class ScanResult:
    """Every environment found below ``top``, and the specs scans made whose project is gone."""

    top: str
    entries: list[ScanEntry]
    gone: list[str] = field(default_factory=list)
    dry_run: bool = False
    kernels_dir: str | None = None  # where its specs are written
    unseen: bool = False  # Jupyter does not look in kernels_dir (a --prefix off its path)

    def of(self, *states: str) -> list[ScanEntry]:
        return [e for e in self.entries if e.state in states]

    @property
    def made(self) -> list[ScanEntry]:
        """The environments that got a new spec (or would, in a dry run)."""
        return self.of(INSTALLED, WOULD[INSTALLED])

    def counts(self) -> dict[str, int]:
        """How many environments ended in each state, in the order first seen."""
        return dict(Counter(e.state for e in self.entries))

    @property
    def failed(self) -> bool:
        return bool(self.of(FAILED))

    def to_json(self) -> dict[str, Any]:
        return {
            "top": self.top,
            "entries": [e.to_json() for e in self.entries],
            "gone": list(self.gone),
            "dry_run": self.dry_run,
        }


def _key_of(record: dict[str, Any]) -> tuple[str, str | None] | None:
    root = record.get("root")
    if not isinstance(root, str):
        return None
    root = os.path.realpath(root)  # recorded through a link by an earlier release
    environment = record.get("environment")
    if not isinstance(environment, str):  # a pixi spec of one environment: pixi's default
        environment = "default" if record.get("tool") == "pixi" else None
    return root, environment


# How the install command makes a project's spec (its name, the project as a Source) and
# refreshes one a scan made: the scan decides, the command does.
Install = Callable[[str, Source, "ScanRequest"], None]
Refresh = Callable[[str, str, "ScanRequest"], None]  # name, resource dir, scan


def scan(request: ScanRequest, install: Install, refresh: Refresh) -> ScanResult:
    """Find every project environment below the request's DIR and give each that can run
    ipykernel a spec (``install``, or ``refresh`` where a scan's spec drifted); what the
    others need is in the result, with their tool's command."""
    found: list[project_tree.Candidate] = []
    entries: list[ScanEntry] = []
    for root in project_tree.project_dirs(request.top, request.depth):
        try:
            found += project_tree.candidates(root)
        except InvalidInput as exc:  # an environment.yml naming no environment
            tool = projects.tool_of(root) or "?"
            entries.append(ScanEntry(root, tool, None, FAILED, None, str(exc)))
    specs = discovery.list_specs()
    # What the scan has made is in the kernels dir it writes to (walk T: read from Jupyter's
    # path, a scan into --prefix P took the user's own scan's specs for done, and where P is
    # not on that path, its second scan failed on each name it had written); a spec of
    # `install --project` is the user's wherever Jupyter finds it. Where Jupyter looks in P,
    # every name it lists stays taken (a new spec of that name would hide it, or be hidden);
    # a P off its path (a team's share) has its own names.
    ours = [
        discovery.spec_at(name, path)
        for name, path in discovery.specs_in(request.kernels_dir).items()
    ]
    existing: dict[tuple[str, str | None], tuple[discovery.SpecInfo, Provenance]] = {}
    for info, in_ours in [*((i, True) for i in ours), *((i, False) for i in specs)]:
        record = Provenance.of_spec(info.spec) if info.visible else None
        key = _key_of(record.project) if record and record.project else None
        if record is None or key is None or (record.scan_root and not in_ours):
            continue
        existing.setdefault(key, (info, record))
    kept = {key: info.name for key, (info, record) in existing.items() if record.scan_root}
    unseen = not discovery.searched_by_jupyter(request.kernels_dir)
    taken = [info.name for info in (*ours, *(() if unseen else specs))]
    # A tree may hold others' projects, or others' files in yours (a sticky dir lets any
    # member add a pyproject.toml or a .venv link): their tools and interpreters would run
    # as you. Each project's dir, the dirs above it and the files that decide what runs,
    # judged before naming: another user's project takes no name from yours (walk T).
    with TrustWalk() as walk:
        whys = {c.key: walk.why((c.root, *projects.deciding_paths(c.root))) for c in found}
    named = [c for c in found if c.key in existing or whys[c.key] is None]
    names = project_tree.spec_names(named, request.top, kept, taken)

    def one(candidate: project_tree.Candidate) -> ScanEntry:
        made = existing.get(candidate.key)
        name, why = names.get(candidate.key), whys[candidate.key]
        return _make(request, candidate, name, why, made, install, refresh)

    # Imported here: concurrent.futures loads logging, and every install imports this module.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL, len(found)))) as pool:
        entries += pool.map(one, found)
    entries.sort(key=lambda e: (e.root, e.environment or ""))
    gone = sorted(info.name for info in gone_specs(specs))
    return ScanResult(request.top, entries, gone, request.dry_run, request.kernels_dir, unseen)


class _EntryOf(Protocol):
    """``_make``'s ``entry``: the ``ScanEntry`` of this candidate in a state."""

    def __call__(self, state: str, detail: str = "", named: str | None = ...) -> ScanEntry: ...


def _make(
    request: ScanRequest,
    candidate: project_tree.Candidate,
    name: str | None,
    why: str | None,
    existing: tuple[discovery.SpecInfo, Provenance] | None,
    install: Install,
    refresh: Refresh,
) -> ScanEntry:
    root, tool, env = candidate.root, candidate.tool, candidate.environment

    def entry(state: str, detail: str = "", named: str | None = name) -> ScanEntry:
        shown = WOULD.get(state, state) if request.dry_run else state
        return ScanEntry(root, tool, env, shown, named, detail)

    try:
        if existing is not None:
            info, record = existing
            if not record.scan_root:  # made by install --project: the user's, left alone
                return entry(REGISTERED, named=info.name)
            if not projects.drift(record.project or {}):  # read from files: nothing runs
                return entry(UNCHANGED, named=info.name)
        if why:  # another user can change it (see scan)
            return entry(SKIPPED, f"{why}; install --project {root} once you have read it", None)
        if existing is not None:
            if not request.dry_run:
                refresh(existing[0].name, existing[0].resource_dir, request)
            return entry(REFRESHED, named=existing[0].name)
        if request.dry_run:  # a review runs nothing: what the files say, nothing more
            return _reviewed(candidate, entry)
        assert name is not None  # every candidate nobody else can change is named
        install(name, Source("project", project=root, project_env=env), request)
        return entry(INSTALLED)
    except EnvironmentNotReady as exc:
        return entry(NEEDS, exc.command, named=None)
    except KernelmagicError as exc:
        return entry(FAILED, "; ".join((str(exc), *exc.details)), named=None)


def _reviewed(candidate: project_tree.Candidate, entry: _EntryOf) -> ScanEntry:
    """A dry run's verdict: a uv, venv or pixi environment is a dir (there or not); Poetry,
    PDM, Hatch and conda are asked only when it is made, not in a review."""
    if candidate.tool in ("poetry", "pdm", "hatch", "conda"):
        return entry(INSTALLED, "if its tool finds an environment with ipykernel")
    project = projects.locate(candidate.root, {**os.environ}, candidate.environment)
    if not os.path.exists(project.interpreter or ""):
        return entry(NEEDS, project.create_command(), named=None)
    return entry(INSTALLED, "if its environment has ipykernel")


def gone_specs(infos: Iterable[discovery.SpecInfo]) -> list[discovery.SpecInfo]:
    """The specs a scan made whose project is gone (``remove --project-gone``)."""
    found = []
    for info in infos:
        record = Provenance.of_spec(info.spec) if info.visible else None
        if record and record.scan_root and projects.gone(record.project or {}):
            found.append(info)
    return found
