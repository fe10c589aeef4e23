"""``install``: a spec made from a ``Source``, one path for every language.

Whatever the source (this session, a snippet, modules, a conda env, another interpreter),
a Python spec is the one ``python -m ipykernel install`` writes for the chosen interpreter,
an R or Julia spec the one IRkernel or IJulia writes (``languages``); each gets the captured
variables in ``env`` and a ``Provenance`` record in ``metadata.kernelmagic``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from kernelmagic.commands import Body, render
from kernelmagic.commands.render import Shown, group_note, printable_lines, shown_change
from kernelmagic.domain import containers, envcapture, languages, sources
from kernelmagic.domain.provenance import (
    CAPTURE_MODES,
    SNIPPET_FILE,
    Provenance,
    Source,
    comparable,
)
from kernelmagic.domain.shell_syntax import EnvChanges, env_changes
from kernelmagic.errors import (
    InvalidInput,
    KernelmagicError,
    flags,
    kernels_dir_path,
    of_type,
)
from kernelmagic.operations import install_container
from kernelmagic.options import (
    DISPLAY_NAME,
    DRY_RUN,
    ENV,
    FROM_CONDA,
    GROUP,
    INCLUDE,
    LITERAL,
    LOCATION_OPTIONS,
    MODULES,
    REPLACE,
    SHELL,
    SHELL_TIMEOUT,
    SPEC_NAME,
    Option,
    kernels_dir_from_args,
    option,
    path,
    seconds,
    user_kernels_dir,
)
from kernelmagic.settings import Settings
from kernelmagic.storage import atomic, ipykernel_specs, transactions
from kernelmagic.storage.discovery import get_spec, read_spec_file, validate_name
from kernelmagic.version import __version__

if TYPE_CHECKING:  # a scan's modules load only for a scan (install's startup, issue 38)
    from kernelmagic.operations import project_scan

SUMMARY = (
    "Install a kernel spec with an environment captured into its env: this session's "
    "(--from-current, the default), or what a shell snippet, --modules, --from-conda or "
    "--python sets."
)

FROM_CURRENT = option(
    "--from-current",
    action="store_true",
    help="a spec for the running interpreter with its environment captured (the default source)",
)
PYTHON = option(
    "--python",
    metavar="PATH",
    type=path,
    help="the kernel's interpreter (it must import ipykernel); on its own, a spec for that "
    "interpreter (a venv gets VIRTUAL_ENV and its bin on PATH)",
)
KERNEL = option(
    "--kernel",
    choices=languages.KERNELS,
    default="python",
    help="the kernel's language: python (ipykernel, the default), ir (R with IRkernel) or "
    "julia (IJulia); R and julia are found on the captured environment's PATH",
)
LIKE = option(
    "--like",
    completes=SPEC_NAME,
    metavar="SPEC",
    help="a kernel like this installed spec (bash, xeus, Octave, a site's own): its argv, "
    "language, logos and metadata, its program found again in the captured environment",
)
PROGRAM = option(
    "--program",
    metavar="PATH",
    type=path,
    help="with --kernel ir|julia or --like: the program to run (R, julia, ...) instead of the "
    "one found on PATH",
)
CAPTURE = option(
    "--capture",
    choices=CAPTURE_MODES,
    default=None,
    help="which variables of this session to capture: those that differ from a clean login "
    "shell (changed, the default), all but noise and secrets, or none",
)
BASELINE = option(
    "--baseline",
    metavar="FILE",
    type=path,
    help="compare with this saved environment (JSON object, `env -0` or `env` output) "
    "instead of a clean login shell",
)
EXCLUDE = option(
    "--exclude",
    action="append",
    default=[],
    metavar="GLOB",
    help="never capture matching variables",
)
NO_TEMPLATES = option(
    "--no-templates",
    action="store_true",
    help="write PATH-like variables literally instead of as additions around ${PATH}",
)
INSTALL_NAME = option(
    "name",
    nargs="?",
    metavar="NAME",
    help="the new spec's name (stored lowercase; with --project, default: the project's name)",
)
PROJECT = option(
    "--project",
    nargs="?",
    const=".",
    metavar="DIR",
    type=path,
    help="the environment of the project at DIR (default: this dir or the nearest one above "
    "with a pyproject.toml, pixi.toml, environment.yml or .venv), found as its tool (uv, "
    "Poetry, PDM, Hatch, pixi, conda) finds it; NAME defaults to the project's name",
)
CWD = option(
    "--cwd",
    action="store_true",
    help="with --project: the kernel starts in the project's dir, whatever the client's "
    "working dir (relative paths in notebooks work from every client)",
)
SCAN = option(
    "--scan",
    metavar="DIR",
    type=path,
    help="with --project (no DIR): a spec for every environment of every project below DIR "
    "that can run ipykernel (one per pixi environment), named from the project; the others "
    "are listed with their tool's command; a spec a scan made is kept, or refreshed when its "
    "lockfile changed",
)
DEPTH = option(
    "--depth",
    type=int,
    default=None,
    metavar="N",
    help="with --scan: look for projects at most N dirs below DIR (default: 3)",
)
SNIPPET_FILE_OPTION = option(
    "--snippet-file",
    only="cli",
    metavar="FILE",
    type=path,
    help="a shell snippet to run (what the cell magic's body is), or - for stdin",
)


def source_from(
    *,
    snippet: str | None = None,
    modules: str | None = None,
    from_conda: str | None = None,
    python: str | None = None,
    shell: str | None = None,
    from_current: bool = False,
) -> Source:
    """The one ``Source`` the source options name (this session unless told otherwise);
    ``InvalidInput`` when they name more than one, or one of them is empty."""
    named = {"--modules": modules, "--from-conda": from_conda, "--python": python}
    for flag, value in named.items():
        if isinstance(value, str) and not value.strip():  # --modules "$MODS", MODS unset
            raise InvalidInput(f"{flag} is empty; name what it takes, or leave it out")
    given = (("a snippet", snippet is not None), ("--modules", modules))
    made_by = [flag for flag, on in (*given, ("--from-conda", from_conda)) if on]
    if len(made_by) > 1:
        raise InvalidInput(f"choose one source of the environment, not {' and '.join(made_by)}")
    if from_current and (made_by or python):
        other = made_by[0] if made_by else "--python"
        raise InvalidInput(f"--from-current captures this session; it cannot go with {other}")
    common = {"python": python, "shell": shell}
    if snippet is not None:
        return Source("snippet", snippet=snippet, **common)
    if modules:
        return Source("modules", modules=modules, **common)
    if from_conda:
        return Source("conda", conda_env=from_conda, **common)
    if python:
        return Source("python", **common)
    return Source("current", shell=shell)


def _strings_only(env: Mapping[str, str], what: str) -> None:
    of_type(env, Mapping, what, "dict of name to value")
    for name, value in env.items():
        of_type(name, str, f"{what}'s name {name!r}", "string")
        of_type(value, str, f"{what}'s {name} value", "string")


def _explicit_env(env: Mapping[str, str]) -> dict[str, str]:
    """Variables set by hand, checked as every writer checks them."""
    _strings_only(env, "env")
    return dict(EnvChanges(dict(env)).set)


@dataclass(frozen=True)
class InstallRequest:
    """``install``: a spec named ``name`` for the environment ``source`` makes."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (
        INSTALL_NAME, KERNEL, LIKE, PROGRAM, FROM_CURRENT, MODULES, FROM_CONDA, PYTHON, SHELL,
        SHELL_TIMEOUT, DISPLAY_NAME, *LOCATION_OPTIONS, GROUP, ENV, LITERAL, CAPTURE,
        BASELINE, INCLUDE, EXCLUDE, NO_TEMPLATES, REPLACE, DRY_RUN, SNIPPET_FILE_OPTION,
        *install_container.OPTIONS, PROJECT, CWD, SCAN, DEPTH,
    )  # fmt: skip

    name: str
    source: Source = field(default_factory=lambda: Source("current"))
    kernel: str = "python"  # python | ir | julia
    like: str | None = None  # an installed spec to copy the kernel of
    program: str | None = None  # R's, julia's or the template's program, instead of found
    display_name: str | None = None
    kernels_dir: str = field(default_factory=user_kernels_dir)
    group: str | None = None  # a Unix group to share the spec with
    # Set by hand, written as given; repr=False: a value may be a secret.
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    capture: envcapture.CaptureOptions = field(default_factory=envcapture.CaptureOptions)
    replace: bool = False
    dry_run: bool = False
    timeout: float = sources.SHELL_TIMEOUT  # bounds the shell that makes the environment
    keep_if_same: bool = False  # with replace: leave a spec that is already what it makes
    container: containers.Container | None = None  # --container: the kernel runs in it
    cwd: bool = False  # --cwd: a project kernel starts in the project's dir
    scan_root: str | None = None  # made by install --project --scan: its DIR, recorded

    def __post_init__(self) -> None:
        flags(self)
        object.__setattr__(self, "name", validate_name(self.name))
        of_type(self.source, Source, "source")
        of_type(self.capture, envcapture.CaptureOptions, "capture")
        of_type(self.group, (str, type(None)), "group", "group name")
        object.__setattr__(self, "kernels_dir", kernels_dir_path(self.kernels_dir))
        self.source.check_installable()
        if self.display_name is not None and not isinstance(self.display_name, str):
            raise InvalidInput(f"display_name must be text, not {type(self.display_name).__name__}")
        object.__setattr__(self, "env", _explicit_env(self.env))
        seconds(self.timeout)
        if self.kernel not in languages.KERNELS:
            raise InvalidInput(
                f"--kernel must be one of {', '.join(languages.KERNELS)}, not {self.kernel!r}"
            )
        of_type(self.like, (str, type(None)), "like", "spec name")
        if self.like is not None and not self.like.strip():
            raise InvalidInput("--like is empty; name the installed spec to copy")
        if self.like is not None and self.kernel != "python":
            raise InvalidInput("--like copies a spec of any language; it cannot go with --kernel")
        if self.other_language and self.source.python:
            raise InvalidInput(
                "--python names a Python interpreter; name R or julia with --program"
            )
        if self.cwd and (self.source.origin != "project" or self.other_language):
            raise InvalidInput("--cwd goes with --project, for a Python kernel")
        if self.container is not None and self.source.origin == "project":
            raise InvalidInput("--project uses the project's own environment, not a container")
        if self.container is not None:
            install_container.check_request(
                self.container, kernel=self.kernel, like=self.like, origin=self.source.origin
            )
        elif self.program and not self.other_language:
            raise InvalidInput("--program goes with --kernel ir, --kernel julia or --like SPEC")
        if self.capture.baseline_file and self.capture.mode == "none":
            raise InvalidInput("--baseline has nothing to compare with --capture none")
        if self.capture.baseline_file and self.source.origin != "current":
            raise InvalidInput(
                "--baseline applies to --from-current; a snippet is compared with the shell "
                "right before it"
            )
        if self.source.shell and self.source.origin == "current":
            raise InvalidInput(
                "--shell runs a snippet, --modules or --from-conda; give one of them"
            )
        if self.group is not None:
            transactions.group_id(self.group)  # an unknown group fails here, before any work

    @property
    def other_language(self) -> bool:
        return self.kernel != "python" or self.like is not None

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> InstallRequest | project_scan.ScanRequest:
        """``body``: the snippet (a cell magic's cell, or ``--snippet-file``'s text). With
        ``--scan DIR``, the request of a scan."""
        if ns.scan is not None:  # every project below a dir: one spec per environment
            from kernelmagic.operations import project_scan

            capture = _capture_from_args(ns, ns.capture or settings.default_capture, settings)
            return project_scan.ScanRequest.from_args(ns, settings, capture, body)
        container = install_container.container_from_args(ns)
        python, program = ns.python, ns.program
        if container is not None:  # --python and --program name what runs inside the image
            if ns.kernel == "python" and program:
                raise InvalidInput(
                    "with --container, --python names the Python inside the image; "
                    "--program is for --kernel ir and julia"
                )
            if ns.kernel != "python" and python:
                raise InvalidInput(
                    "--python names a Python interpreter; name R or julia with --program"
                )
            python, program = None, python or program
        project = _project_source(ns, ns.shell)
        if project is not None:
            if body is not None:
                raise InvalidInput(
                    "--project finds the environment itself; it cannot go with a snippet"
                )
            source, name = project
        else:
            source = source_from(
                snippet=body,
                modules=ns.modules,
                from_conda=ns.from_conda,
                python=python,
                shell=ns.shell,
                from_current=ns.from_current,
            )
            if not ns.name:
                raise InvalidInput("give the new spec's NAME (or --project, which names it)")
            name = str(ns.name)
        # This session's variables are the host's; a container kernel gets none unless asked.
        container_default = container is not None and source.origin == "current"
        mode = ns.capture or ("none" if container_default else settings.default_capture)
        return cls(
            name,
            source,
            kernel=ns.kernel,
            like=ns.like,
            program=program,
            display_name=ns.display_name,
            kernels_dir=kernels_dir_from_args(ns, settings.default_location),
            group=ns.group,
            env=env_changes(ns.env, literal=ns.literal).set,
            capture=_capture_from_args(ns, mode, settings, ns.baseline),
            replace=ns.replace,
            dry_run=ns.dry_run,
            timeout=ns.timeout,
            container=container,
            cwd=ns.cwd,
        )


def _capture_from_args(
    ns: argparse.Namespace, mode: str, settings: Settings, baseline_file: str | None = None
) -> envcapture.CaptureOptions:
    """The capture options install's flags give (``--include``, ``--exclude``,
    ``--no-templates``), in ``mode``: one spec's, or each spec's of a scan."""
    return envcapture.CaptureOptions(
        mode=mode,
        baseline_file=baseline_file,
        include=tuple(ns.include),
        exclude=tuple(ns.exclude),
        templates=not ns.no_templates,
        policy=settings.policy,
    )


def _project_source(ns: argparse.Namespace, shell: str | None) -> tuple[Source, str] | None:
    """The project source --project names and the spec's name (NAME as given, else the
    project's, made a valid spec name); None without --project. Refuses another source."""
    if ns.depth is not None:
        raise InvalidInput("--depth goes with --project --scan DIR")
    if ns.project is None:
        if ns.cwd:
            raise InvalidInput("--cwd goes with --project")
        return None
    given = [flag for flag, on in (("--modules", ns.modules), ("--from-conda", ns.from_conda),
                                   ("--python", ns.python), ("--from-current", ns.from_current))
             if on]  # fmt: skip
    if given:
        raise InvalidInput(f"--project finds the environment itself; it cannot go with {given[0]}")
    from kernelmagic.domain import projects  # --project's alone (install's startup, issue 38)

    root = projects.find_root(ns.project)
    name = str(ns.name) if ns.name else projects.valid_name(projects.name_of(root))
    return Source("project", project=root, shell=shell), name


_START_IN = "--IPKernelApp.exec_lines=__import__('os').chdir("


def _start_in(root: str) -> str:
    """The argv word that makes ipykernel change to ``root`` once it has started (after it
    read its connection file, which may be a relative path): ipykernel's own exec_lines, so
    no wrapper process; it binds no name in the user's namespace and stays out of history."""
    return f"{_START_IN}{os.path.abspath(root)!r})"


def starts_in_its_project(spec: Mapping[str, Any]) -> bool:
    """Whether ``spec`` was made with ``--cwd`` (its argv holds ``_start_in``'s word)."""
    argv = spec.get("argv")
    return isinstance(argv, list) and any(
        isinstance(word, str) and word.startswith(_START_IN) for word in argv
    )


def _check_project_language(kernel: str, made_project: dict[str, Any] | None) -> None:
    """R and Julia come from a project only where its tool manages them (pixi, conda)."""
    tool = (made_project or {}).get("tool")
    if tool and kernel != "python" and tool not in ("pixi", "conda"):
        raise InvalidInput(
            f"{tool} manages Python environments; --kernel {kernel} needs a pixi or conda project"
        )


def _record(request: InstallRequest, made: sources.MadeEnvironment) -> Provenance:
    source, options = request.source, request.capture
    recorded_source = source
    snippet_file = None
    if source.snippet is not None:
        masked = options.policy.mask_text(source.snippet)
        if masked != source.snippet:
            recorded_source = Source(**{**vars(source), "snippet": masked})
            snippet_file = SNIPPET_FILE
    return Provenance(
        recorded_source,
        python=made.interpreter.path if made.interpreter and not request.container else None,
        kernel=("like" if request.like else request.kernel),
        like=request.like,
        program_requested=request.program,
        capture=options.mode,
        include=options.include,
        exclude=options.exclude,
        templates=options.templates,
        extra_secrets=options.policy.extra_secrets,
        extra_noise=options.policy.extra_noise,
        baseline=made.result.baseline,
        captured_digests=envcapture.secret_free_digests(made.result.env, options.policy),
        explicit=tuple(sorted(request.env)),
        job=" ".join(made.result.job) if made.result.job else None,
        loaded_modules=made.loaded_modules,
        modulefiles=made.modulefiles,
        version=__version__,
        snippet_file=snippet_file,
        scan_root=request.scan_root,
    )


def install(
    request: InstallRequest, environ: Mapping[str, str] | None = None
) -> tuple[transactions.Change, envcapture.CaptureResult]:
    """Make the environment the request's source describes (from ``environ``, default
    ``os.environ``) and install a spec that carries it: a Python kernel, R, Julia, or one
    like an installed spec. Variables set by hand win over captured ones.

    The name is checked free (and the ``like`` spec found) before the source runs, and the
    name again under its lock when the spec is written.
    """
    if environ is not None:  # a library caller's: strings (any name: BASH_FUNC_module%%)
        _strings_only(environ, "environ")
    options = request.capture
    gid = transactions.group_id(request.group) if request.group is not None else None
    slot = transactions.reserve(
        request.kernels_dir, request.name, replace=request.replace, dry_run=request.dry_run
    )
    like = get_spec(request.like) if request.like else None
    python = not request.other_language and request.container is None
    made = sources.make_environment(
        request.source, options, environ, timeout=request.timeout, python=python
    )
    record = _record(request, made)
    record.project = made.project
    if made.project:  # found at the dir given or above it: which one, said first
        made.result.notes.insert(
            0, f"The {made.project['tool']} project at {made.project['root']}:"
        )
    _check_project_language(request.kernel, made.project)
    env = {**made.result.env, **request.env}
    if request.container is not None:
        spec, container, version = install_container.build(
            request.container,
            kernel=request.kernel,
            program=request.program,
            env=env,
            environment=made.environment,
            timeout=request.timeout,
        )
        record.container = container.to_fields()
        if pitfall := containers.tmp_bind_pitfall(container, made.environment):
            made.result.notes.append(f"Note: {pitfall[0]}.")  # the probe had this TMPDIR
        files_of = install_container.populate_for(request.kernel, _ipykernel_files)
        generated = languages.generated_display_name(request.kernel, version, request.name)
    elif request.other_language:
        built = languages.build(
            request.kernel, made.environment, program=request.program, like=like
        )
        spec = built.spec
        files_of = transactions.copy_files(built.files_from, built.leave_out, built.files)
        record.program = built.program
        generated = (
            f"{spec.get('display_name') or request.like} ({request.name})"
            if request.like
            else languages.generated_display_name(request.kernel, built.version, request.name)
        )
    else:
        interpreter = made.interpreter
        assert interpreter is not None  # a Python kernel always gets one
        where = os.environ if environ is None else environ
        made.result.notes += sources.job_temporary_notes(interpreter.path, where)
        sources.refuse_broken_start(interpreter, env, where, partial(_start_advice, request))
        spec = ipykernel_specs.install_spec(
            interpreter.path,
            interpreter.ipykernel_facts,
            lambda: sources.run_ipykernel_installer(
                interpreter.path, made.environment, request.timeout
            ),
        )
        spec["argv"][0] = interpreter.path
        version = "{}.{}".format(*interpreter.version)
        generated = languages.generated_display_name("python", version, request.name)
        files_of = _ipykernel_files
    if request.cwd and made.project:
        spec["argv"].append(_start_in(made.project["root"]))
    spec["display_name"] = request.display_name or generated
    if env:
        spec["env"] = env
    if not request.display_name:
        record.generated_display_name = spec["display_name"]
    record.write_into(spec)
    if request.group is not None:
        from kernelmagic.operations.edit import refuse_secrets_for_group  # a group's alone

        refuse_secrets_for_group(spec, request.group, options.policy, options.include)

    def populate(path: str) -> None:
        files_of(path)
        if record.snippet_file:
            full = (request.source.snippet or "").encode("utf-8", "surrogateescape")
            atomic.write_bytes_atomic(os.path.join(path, SNIPPET_FILE), full, mode=0o600)

    if request.keep_if_same and slot.existing:
        existing = read_spec_file(os.path.join(slot.existing, "kernel.json"))
        if comparable(existing) == comparable(spec):  # not a byte, not a date is changed
            target = os.path.join(request.kernels_dir, request.name)
            return transactions.Change(
                "unchanged", request.name, target, existing, existing, False, options.policy
            ), made.result
    # A snippet that held a secret: its record in kernel.json is masked, the file owner-only.
    # (A container's wrapper was made above for exactly this env.)
    owner_only = record.snippet_file is not None or options.policy.holds_secrets(spec)
    change = slot.write("installed", spec, populate, options.policy, gid, owner_only=owner_only)
    return change, made.result


def _start_advice(request: InstallRequest, name: str) -> str:
    """What to do about ``name``, a variable that stops the kernel's Python starting."""
    if name in request.env:
        return f"give --env {name} a value that works, or leave it out"
    return f"leave it out (--exclude {name}) or set it right (--env {name}=...)"


def _ipykernel_files(path: str) -> None:
    """The logos and any other resources ipykernel ships, copied as its installer does."""
    resources = ipykernel_specs.resources_dir()
    if resources is None:
        raise KernelmagicError("ipykernel is not installed: python -m pip install ipykernel")
    shutil.copytree(resources, path, dirs_exist_ok=True)
    mode = os.stat(path).st_mode  # a read-only site-packages gives a read-only copy
    if not mode & stat.S_IWUSR:
        os.chmod(path, mode | stat.S_IWUSR)


Request = InstallRequest
# A cell magic's cell is the snippet; the command line reads it from a file.
BODY = Body(
    option="snippet_file",
    instead="kernelmagic install NAME --snippet-file FILE",
    help="As a cell magic, the cell is a shell snippet (e.g. `module load gdal` or `source "
    "setup.sh`): it runs in a clean login shell and what it changes is captured.",
)


@dataclass
class Installed:
    """What ``install`` wrote (or would write), what it captured, and for whom."""

    change: transactions.Change
    captured: envcapture.CaptureResult
    group: str | None = None
    by_hand: tuple[str, ...] = ()  # the variables set with --env, written as given


def run(request: InstallRequest | project_scan.ScanRequest) -> Installed | project_scan.ScanResult:
    if not isinstance(request, InstallRequest):
        return _scan(request)
    change, captured = install(request)
    return Installed(change, captured, request.group, tuple(sorted(request.env)))


def _scan(request: project_scan.ScanRequest) -> project_scan.ScanResult:
    from kernelmagic.operations import project_scan

    return project_scan.scan(request, _install_for_scan, _refresh_for_scan)


def _install_for_scan(name: str, source: Source, scan: project_scan.ScanRequest) -> None:
    install(
        InstallRequest(
            name,
            source,
            kernels_dir=scan.kernels_dir,
            capture=scan.capture,
            timeout=scan.timeout,
            cwd=scan.cwd,
            scan_root=scan.top,
        )
    )


def _refresh_for_scan(name: str, resource_dir: str, scan: project_scan.ScanRequest) -> None:
    from kernelmagic.commands import refresh  # a scan's alone: a drifted project's spec

    request = refresh.RefreshRequest(name, timeout=scan.timeout, resource_dir=resource_dir)
    refresh.refresh(request)


def show(result: Installed | project_scan.ScanResult, style: str) -> Shown:
    if not isinstance(result, Installed):
        return _show_scan(result, style)
    captured = result.captured.summary_lines()
    if result.by_hand:  # not "Captured no variables." alone, when --env wrote some
        captured.append(f"Set by hand (--env): {', '.join(result.by_hand)}")
    return shown_change(result.change, diff=False, before=captured,
                        after=group_note(result.change, result.group))  # fmt: skip


SCAN_COLUMNS = ("name", "state", "tool", "project", "environment", "details")


def _scan_rows(result: project_scan.ScanResult, style: str) -> list[tuple[str, ...]]:
    return [
        (e.name or "", e.state, e.tool, os.path.relpath(e.root, result.top), e.environment or "",
         e.detail)
        for e in result.entries
    ]  # fmt: skip


def _show_scan(result: project_scan.ScanResult, style: str) -> Shown:
    table, html = render.table(_scan_rows(result, style), SCAN_COLUMNS)
    said = ", ".join(f"{n} {state}" for state, n in result.counts().items()) or "no project found"
    fix = f"`{render.command('remove --project-gone', style)}` prunes them"
    gone = f"\nMade by a scan, their project gone: {', '.join(result.gone)} ({fix})."
    found = f"{len(result.entries)} environment(s) below {result.top}: {said}."
    text = printable_lines(f"{table}\n{found}{gone if result.gone else ''}")
    if result.unseen and result.made and result.kernels_dir:
        text += "\n" + render.unsearched_dir_note(result.kernels_dir, len(result.made))
    return Shown(text, html, status=1 if result.failed else 0, value=result)
