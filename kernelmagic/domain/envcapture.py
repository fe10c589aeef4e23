"""Decide what goes into a spec's ``env``: baseline diff, noise and secret filters, templates.

The goal is to keep what the user's activation (``conda activate``, ``module load``, a venv)
set, and nothing else: no session state of the terminal, no credentials, no job-scoped
scheduler variables.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from kernelmagic.domain import shells
from kernelmagic.domain.policy import (
    DEFAULT_POLICY,
    EnvPolicy,
    in_hub_server,
    in_job_step,
    launcher_variable,
)
from kernelmagic.domain.provenance import CAPTURE_MODES
from kernelmagic.domain.shell_syntax import escape_dollars
from kernelmagic.errors import InvalidInput, SourceFailed, flags, of_type, path_text, string_list
from kernelmagic.jobs import batch_job, is_job_scoped

# fmt: off
# Variables holding os.pathsep-separated directory lists. Names ending in PATH count too.
PATH_LIKE_NAMES = frozenset(
    {
        "PATH", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "LIBRARY_PATH", "PYTHONPATH", "MANPATH",
        "INFOPATH", "CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH", "PKG_CONFIG_PATH",
        "CMAKE_PREFIX_PATH", "XDG_DATA_DIRS", "XDG_CONFIG_DIRS", "MODULEPATH", "PERL5LIB",
        "CLASSPATH", "R_LIBS", "R_LIBS_USER", "GI_TYPELIB_PATH", "JULIA_LOAD_PATH",
    }
)
# fmt: on


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches one of the globs (case-sensitive, as ``fnmatchcase``)."""
    return any(fnmatchcase(name, p) for p in patterns)


def included(name: str, options: CaptureOptions) -> bool:
    """Whether ``--include`` names this variable."""
    return matches_any(name, options.include)


def is_path_like(name: str) -> bool:
    return name in PATH_LIKE_NAMES or name.endswith("PATH")


def unique_entries(entries: list[str]) -> list[str]:
    """``entries`` without repeats, the first of each kept (its place decides precedence),
    and without empty ones: ``X=/new:$X`` with ``X`` unset leaves an empty entry, which
    means the current directory to the dynamic loader and the shell."""
    return [e for e in dict.fromkeys(entries) if e]


def path_value(name: str, value: str, baseline: str | None, templates: bool) -> str:
    """What to write for a PATH-like variable: its entries once each, and where it only adds
    to the baseline's, those additions around ``${NAME}`` (see ``template_path_value``)."""
    if templates and baseline:
        templated = template_path_value(name, value, baseline)
        if templated is not None:
            return templated
    entries = unique_entries(value.split(os.pathsep))
    return escape_dollars(os.pathsep.join(entries)) if entries else escape_dollars(value)


def template_path_value(name: str, value: str, baseline: str) -> str | None:
    """Write ``value`` as additions around ``${NAME}`` if it only adds entries to ``baseline``.

    ``/env/bin:/usr/bin:/bin:/more`` against a baseline ``/usr/bin:/bin`` becomes
    ``/env/bin:${PATH}:/more``, so the kernel keeps the launcher's own PATH. No entry is
    written twice: a repeated addition (a notebook's PATH often holds its venv twice) and an
    addition behind that the baseline already has are dropped. Returns None when entries were
    removed or reordered (the literal value is then the honest answer).
    """
    entries = value.split(os.pathsep)
    base = baseline.split(os.pathsep)
    if not baseline or len(base) > len(entries):
        return None
    for start in range(len(entries) - len(base) + 1):
        if entries[start : start + len(base)] == base:
            front = unique_entries(entries[:start])
            seen = {*front, *base}
            back = [e for e in unique_entries(entries[start + len(base) :]) if e not in seen]
            parts = [*map(escape_dollars, front), f"${{{name}}}", *map(escape_dollars, back)]
            return os.pathsep.join(parts)
    return None


def secret_free_digests(env: Mapping[str, str], policy: EnvPolicy) -> dict[str, str]:
    """``digests`` of the values that are not secrets: a short hash of a short secret (a
    PIN) can be reversed."""
    return digests({k: v for k, v in env.items() if not policy.is_secret(k, v)})


def digests(env: Mapping[str, str]) -> dict[str, str]:
    """Short digests of written values, so a refresh can tell which ones a user edited
    since (without storing the values twice)."""
    if not env:  # --capture none: nothing to load OpenSSL for (~4 ms of an install)
        return {}
    import hashlib  # imported here: `kernelmagic list` never needs it

    return {
        k: hashlib.sha256(v.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        for k, v in env.items()
    }


def login_shell_environment(
    environ: Mapping[str, str] | None = None, *, shell: str | None = None, timeout: float = 30
) -> dict[str, str] | None:
    """The environment of a clean login shell, or None when no shell can be run.

    The shell starts from ``env -i`` with only the session's identity and locale (HOME, USER,
    LANG, LC_*, ...), so what it prints is what the user's profile sets without activation.
    """

    environ = os.environ if environ is None else environ
    try:
        before, _ = shells.run_in_login_shell("", environ=environ, shell=shell, timeout=timeout)
    except SourceFailed:
        return None
    return before


@dataclass(frozen=True)
class CaptureOptions:
    """How to choose variables; built from ``--capture``, ``--baseline``, ``--include`` ..."""

    mode: str = "changed"  # changed | all | none
    baseline_file: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    templates: bool = True
    policy: EnvPolicy = DEFAULT_POLICY  # what is noise, what is a secret

    def __post_init__(self) -> None:
        flags(self)
        if self.mode not in CAPTURE_MODES:
            modes = ", ".join(CAPTURE_MODES)
            raise InvalidInput(f"capture mode is one of {modes}, not {self.mode!r}")
        if self.baseline_file is not None:
            object.__setattr__(
                self, "baseline_file", path_text(self.baseline_file, "baseline_file")
            )
        object.__setattr__(self, "include", string_list(self.include, "include"))
        object.__setattr__(self, "exclude", string_list(self.exclude, "exclude"))
        of_type(self.policy, EnvPolicy, "policy")


@dataclass
class CaptureResult:
    """What was captured, what was skipped and why; ``env`` is ready for ``kernel.json``."""

    env: dict[str, str] = field(default_factory=dict, repr=False)  # values never in a repr
    secrets_skipped: list[str] = field(default_factory=list)
    job_scoped: list[str] = field(default_factory=list)  # inside a batch job: left out
    job: tuple[str, str] | None = None  # (scheduler, job id) of that job
    # What the scheduler, a job step's MPI launcher or the hub set for this process alone.
    launcher: list[str] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)  # TMPDIR: the session's (or job's)
    fixed_paths: list[str] = field(default_factory=list)  # PATH-like, not written as additions
    # What the snippet or module unset: a spec's env can only set (Jupyter merges it over
    # its launcher's environment), so the kernel gets these from its launcher.
    unset: list[str] = field(default_factory=list)
    noise_count: int = 0
    baseline: str = ""
    notes: list[str] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        lines = list(self.notes)
        if self.env:
            shown = []
            for name in sorted(self.env):
                value = self.env[name]
                placeholder = f"${{{name}}}"
                if placeholder in value:
                    added = value.replace(placeholder, "...")
                    shown.append(f"{name} ({added})")
                else:
                    shown.append(name)
            lines.append(f"Captured {len(self.env)} variable(s): {', '.join(shown)}")
        else:
            lines.append("Captured no variables.")
        if self.secrets_skipped:
            names = ", ".join(sorted(self.secrets_skipped))
            lines.append(
                f"Skipped secret-like: {names} (keep one with --include NAME or --env NAME=VALUE)"
            )
        if self.job_scoped and self.job:
            scheduler, job = self.job
            lines.append(
                f"Job-scoped (left out; the kernel inherits its launcher's): "
                f"{', '.join(sorted(self.job_scoped))} (this is {scheduler} job {job}; keep one "
                "with --include NAME)"
            )
        if self.launcher:
            where = f" (this is {self.job[0]} job {self.job[1]})" if self.job else ""
            lines.append(
                "Left out what the scheduler, the job step's MPI launcher or the hub set for "
                f"this process alone{where}; each kernel gets its own launcher's: "
                f"{named_by_family(self.launcher)} (keep one with --include NAME)"
            )
        if self.unset:
            lines.append(
                "Unset by the snippet or modules, which a kernel spec cannot do (its env only "
                f"sets; the kernel gets these from its launcher): {', '.join(self.unset)} "
                "(set one empty with --env NAME=)"
            )
        if self.temporary:
            lines.append(
                f"Left out {', '.join(self.temporary)}, this session's temporary directory "
                "(it goes when the session or job ends; the kernel uses its launcher's; keep "
                "it with --include TMPDIR or --env TMPDIR=DIR)"
            )
        if self.fixed_paths:
            lines.append(
                f"Written as a fixed value: {', '.join(self.fixed_paths)} (it does not extend "
                "the login shell's, so what a kernel's launcher puts there, a `module load` "
                "for one, is replaced; use --env NAME=DIR:${NAME} to extend it instead)"
            )
        if self.noise_count:
            lines.append(f"Ignored {self.noise_count} session variable(s) (terminal, shell, ...).")
        return lines


def named_by_family(names: Iterable[str]) -> str:
    """The names, each family of four or more (``SLURM_*``, ``PMIX_*``) as its glob and count,
    so that forty of a scheduler's variables stay one readable line."""
    families: dict[str, list[str]] = {}
    for name in sorted(names):
        families.setdefault(name.split("_", 1)[0] + "_*" if "_" in name else name, []).append(name)
    shown = []
    for family, members in families.items():
        shown += [f"{family} ({len(members)})"] if len(members) >= 4 else members
    return ", ".join(shown)


def _resolve_baseline(
    options: CaptureOptions, current: Mapping[str, str], timeout: float
) -> tuple[dict[str, str] | None, str]:
    if options.baseline_file:
        text = shells.read_environment_dump(options.baseline_file)
        return shells.parse_environment_dump(text), f"baseline file {options.baseline_file}"
    return login_shell_environment(current, timeout=timeout), "a clean login shell"


# Lists that mean the same whatever their order: Lmod rewrites MODULEPATH on every `module
# load` (its own order, no trailing slashes), which changes nothing a kernel sees.
_ORDER_FREE = frozenset({"MODULEPATH"})


def unchanged(name: str, value: str, before: str | None) -> bool:
    """Whether ``value`` is ``before`` as far as its program is concerned (MODULEPATH in
    another order, or with a trailing slash Lmod strips, is the same)."""
    if before is None or name not in _ORDER_FREE:
        return value == before

    def dirs(text: str) -> set[str]:
        return {os.path.normpath(e) for e in unique_entries(text.split(os.pathsep))}

    return dirs(value) == dirs(before)


def capture(
    current: Mapping[str, str] | None = None,
    options: CaptureOptions | None = None,
    *,
    baseline: Mapping[str, str] | None = None,
    shell_timeout: float = 30,
    job: tuple[str, str] | None = None,
    on_purpose: bool = False,
) -> CaptureResult:
    """Choose the variables of ``current`` (default ``os.environ``) that belong in a spec.

    ``baseline`` overrides the baseline source (used by callers that recorded it themselves).
    ``job`` is the batch job the capture runs in (default: the one ``current`` is in): its
    devices, threads and job-id paths are left out. ``on_purpose``: what differs from the
    baseline was set by the user (a snippet's export, a module, an activation, run in a clean
    shell that has no job), so no job rule applies to it. Raises ``OSError``/``ValueError`` for an
    unreadable or malformed baseline file.
    """
    current = dict(os.environ if current is None else current)
    options = options or CaptureOptions()
    result = CaptureResult(job=job or batch_job(current))
    if options.mode == "none":
        return result
    # "all" needs the baseline too: PATH-like values are written as additions to it.
    if baseline is None and (options.mode == "changed" or options.templates):
        baseline, result.baseline = _resolve_baseline(options, current, shell_timeout)
        if baseline is None and options.mode == "changed":
            result.notes.append("No login shell could be run; capturing all variables instead.")
    elif baseline is not None:
        result.baseline = "the given baseline"
    known = dict(baseline or {})
    base = known if options.mode == "changed" else {}

    in_step, in_hub = in_job_step(current), in_hub_server(current)
    for name in sorted(current):
        value = current[name]
        if matches_any(name, options.exclude):
            continue
        included = matches_any(name, options.include)
        if not included:
            if base and unchanged(name, value, base.get(name)):
                continue
            if not on_purpose and launcher_variable(name, in_step, result.job is not None, in_hub):
                result.launcher.append(name)
                continue
            if name == "TMPDIR" and not on_purpose:
                result.temporary.append(name)
                continue
            if name != "TMPDIR" and options.policy.noise_category(name):
                result.noise_count += 1
                continue
            if not on_purpose and is_job_scoped(name, value, result.job):
                result.job_scoped.append(name)
                continue
            if options.policy.is_secret(name, value):
                result.secrets_skipped.append(name)
                continue
        if is_path_like(name):
            written = path_value(name, value, known.get(name), options.templates)
            if written == f"${{{name}}}":  # --capture all of a value as the baseline has it
                # adds nothing to whatever launches the kernel, and where that has no such
                # variable the kernel would get the text `${NAME}`: not written
                continue
            if options.templates and known.get(name) and f"${{{name}}}" not in written:
                result.fixed_paths.append(name)
            result.env[name] = written
        else:
            result.env[name] = escape_dollars(value)
    if on_purpose and base:
        result.unset = [
            name
            for name in sorted(base)
            if name not in current
            and not matches_any(name, options.exclude)
            and not options.policy.noise_category(name)
        ]
    return result
