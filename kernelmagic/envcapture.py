"""Decide what goes into a spec's ``env``: baseline diff, noise and secret filters, templates.

The goal is to keep what the user's activation (``conda activate``, ``module load``, a venv)
set, and nothing else: no session state of the terminal, no credentials, no job-scoped
scheduler variables.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

# Variables that describe the session, the terminal or the tool that started the process,
# never the software environment. Globs, matched case-sensitively. One list, by category.
# fmt: off
NOISE_PATTERNS: dict[str, tuple[str, ...]] = {
    "shell state": (
        "PWD", "OLDPWD", "SHLVL", "_", "PS1", "PS2", "PS4", "PROMPT_COMMAND", "HISTFILE",
        "HISTSIZE", "HISTFILESIZE", "HISTCONTROL", "BASH_FUNC_*", "LS_COLORS", "LSCOLORS",
    ),
    "terminal and desktop": (
        "TERM", "TERM_*", "TERMINFO", "COLUMNS", "LINES", "DISPLAY", "WINDOWID", "COLORTERM",
        "SSH_*", "XDG_SESSION_*", "XDG_RUNTIME_DIR", "DBUS_*", "TMUX", "TMUX_*", "STY",
        "WAYLAND_DISPLAY",
    ),
    "injected by Jupyter or an IDE": (
        "JPY_*", "MPLBACKEND", "PAGER", "GIT_PAGER", "CLICOLOR", "CLICOLOR_*", "FORCE_COLOR",
        "PYDEVD_*", "PYTHONEXECUTABLE", "JUPYTER_SERVER_*", "JPY_SESSION_NAME", "VSCODE_*",
        "ELECTRON_RUN_AS_NODE",
    ),
    "Jupyter's own locations": (
        "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_PATH",
        "JUPYTER_PLATFORM_DIRS", "IPYTHONDIR",
    ),
    "conda shell state": ("CONDA_SHLVL", "CONDA_PROMPT_MODIFIER", "CONDA_PREFIX_[0-9]*"),
    "module-system bookkeeping": (
        "_ModuleTable*", "__LMOD_REF_COUNT_*", "_LMFILES_", "LOADEDMODULES", "__MODULES_*",
        "__LMOD_*", "LMOD_*_SHELL_*",
    ),
    "job-scoped scheduler variables": ("SLURM_*", "PBS_*", "LSB_*", "SGE_*", "JOB_ID"),
    "temporary directory": ("TMPDIR",),
}

# Name patterns (case-insensitive) of variables that usually hold credentials.
SECRET_NAME_PATTERNS: tuple[str, ...] = (
    "*TOKEN*", "*SECRET*", "*PASSWORD*", "*PASSWD*", "*API_KEY*", "*APIKEY*", "*ACCESS_KEY*",
    "*PRIVATE_KEY*", "*CREDENTIAL*", "*AUTH_KEY*", "*SESSION_KEY*",
)

# Values that are credentials whatever the variable is called.
SECRET_VALUE_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p)
    for p in (
        r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
        r"\bgithub_pat_[A-Za-z0-9_]{30,}",
        r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",  # AWS access key ids
        r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
        r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API keys
    )
)

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

MASK = "<hidden>"


def _matches(name: str, patterns: Iterable[str], *, ignore_case: bool = False) -> bool:
    if ignore_case:
        name = name.upper()
        return any(fnmatchcase(name, p.upper()) for p in patterns)
    return any(fnmatchcase(name, p) for p in patterns)


def noise_category(name: str, extra: Iterable[str] = ()) -> str | None:
    """The category that makes ``name`` session noise, or None if it is not noise."""
    for category, patterns in NOISE_PATTERNS.items():
        if _matches(name, patterns):
            return category
    if _matches(name, extra):
        return "configured noise"
    return None


def looks_secret(name: str, value: str | None = None, extra: Iterable[str] = ()) -> bool:
    """True if the name or the value looks like a credential."""
    if _matches(name, (*SECRET_NAME_PATTERNS, *extra), ignore_case=True):
        return True
    return value is not None and any(p.search(value) for p in SECRET_VALUE_PATTERNS)


def mask_secrets(env: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """A copy of ``env`` with secret-like values replaced by ``<hidden>``."""
    extra = tuple(extra)
    return {
        k: MASK if looks_secret(k, v if isinstance(v, str) else None, extra) else v
        for k, v in env.items()
    }


def is_path_like(name: str) -> bool:
    return name in PATH_LIKE_NAMES or name.endswith("PATH")


def escape_dollars(value: str) -> str:
    """Escape ``$`` so that Jupyter's ``string.Template`` substitution leaves it as typed."""
    return value.replace("$", "$$")


def template_path_value(name: str, value: str, baseline: str) -> str | None:
    """Write ``value`` as additions around ``${NAME}`` if it only adds entries to ``baseline``.

    ``/env/bin:/usr/bin:/bin:/more`` against a baseline ``/usr/bin:/bin`` becomes
    ``/env/bin:${PATH}:/more``, so the kernel keeps the launcher's own PATH. Returns None when
    entries were removed or reordered (the literal value is then the honest answer).
    """
    entries = value.split(os.pathsep)
    base = baseline.split(os.pathsep)
    if not baseline or len(base) > len(entries):
        return None
    for start in range(len(entries) - len(base) + 1):
        if entries[start : start + len(base)] == base:
            front = [escape_dollars(e) for e in entries[:start]]
            back = [escape_dollars(e) for e in entries[start + len(base) :]]
            return os.pathsep.join([*front, f"${{{name}}}", *back])
    return None


def digests(env: Mapping[str, str]) -> dict[str, str]:
    """Short fingerprints of written values, so a refresh can tell which ones a user edited
    since (without storing the values twice)."""
    import hashlib  # imported here: `kernelmagic list` never needs it

    return {
        k: hashlib.sha256(v.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        for k, v in env.items()
    }


def parse_environment_dump(text: str) -> dict[str, str]:
    """Parse a saved environment: a JSON object, ``env -0`` output or ``env`` output."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        data = json.loads(stripped)
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise ValueError("a JSON baseline must map names to string values")
        return data
    if "\0" in text:
        records = [r for r in text.split("\0") if r]
        return dict(r.split("=", 1) for r in records if "=" in r)
    # Plain `env` output: a line without NAME= continues the previous (multi-line) value.
    env: dict[str, str] = {}
    last = None
    # Split on "\n" only: "\r" and other line breaks belong to values.
    for line in text.removesuffix("\n").split("\n"):
        match = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        if match:
            last = match.group(1)
            env[last] = match.group(2)
        elif last is not None:
            env[last] += "\n" + line
    return env


def login_shell_environment(
    session: Mapping[str, str] | None = None, *, shell: str | None = None, timeout: float = 30
) -> dict[str, str] | None:
    """The environment of a clean login shell, or None when no shell can be run.

    The shell starts from ``env -i`` with only the session's identity and locale (HOME, USER,
    LANG, LC_*, ...), so what it prints is what the user's profile sets without activation.
    """
    from . import shells  # subprocess and tempfile only when a baseline is needed
    from .errors import SourceFailed

    session = os.environ if session is None else session
    try:
        before, _ = shells.run_in_login_shell("", session=session, shell=shell, timeout=timeout)
    except SourceFailed:
        return None
    return before


@dataclass
class CaptureOptions:
    """How to choose variables; built from ``--capture``, ``--baseline``, ``--include`` ..."""

    mode: str = "changed"  # changed | all | none
    baseline_file: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    templates: bool = True
    extra_noise: tuple[str, ...] = ()
    extra_secrets: tuple[str, ...] = ()


@dataclass
class CaptureResult:
    """What was captured, what was skipped and why; ``env`` is ready for ``kernel.json``."""

    env: dict[str, str] = field(default_factory=dict)
    secrets_skipped: list[str] = field(default_factory=list)
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
        if self.noise_count:
            lines.append(f"Ignored {self.noise_count} session variable(s) (terminal, shell, ...).")
        return lines


def _resolve_baseline(options: CaptureOptions, current: Mapping[str, str]):
    if options.baseline_file:
        with open(options.baseline_file, encoding="utf-8", errors="surrogateescape") as f:
            return parse_environment_dump(f.read()), f"baseline file {options.baseline_file}"
    return login_shell_environment(current), "a clean login shell"


def capture(
    current: Mapping[str, str] | None = None,
    options: CaptureOptions | None = None,
    *,
    baseline: Mapping[str, str] | None = None,
) -> CaptureResult:
    """Choose the variables of ``current`` (default ``os.environ``) that belong in a spec.

    ``baseline`` overrides the baseline source (used by callers that recorded it themselves).
    Raises ``OSError``/``ValueError`` for an unreadable or malformed baseline file.
    """
    current = dict(os.environ if current is None else current)
    options = options or CaptureOptions()
    result = CaptureResult()
    if options.mode == "none":
        return result
    if options.mode == "changed" and baseline is None:
        baseline, result.baseline = _resolve_baseline(options, current)
        if baseline is None:
            result.notes.append("No login shell could be run; capturing all variables instead.")
    elif baseline is not None:
        result.baseline = "the given baseline"
    base = dict(baseline) if options.mode == "changed" and baseline is not None else {}

    for name in sorted(current):
        value = current[name]
        if _matches(name, options.exclude):
            continue
        included = _matches(name, options.include)
        if not included:
            if base and base.get(name) == value:
                continue
            if noise_category(name, options.extra_noise):
                result.noise_count += 1
                continue
            if looks_secret(name, value, options.extra_secrets):
                result.secrets_skipped.append(name)
                continue
        templated = None
        if options.templates and is_path_like(name) and base.get(name):
            templated = template_path_value(name, value, base[name])
        result.env[name] = templated if templated is not None else escape_dollars(value)
    return result
