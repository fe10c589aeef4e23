"""What never goes into a spec's env (session noise) and what is a secret: one policy.

Every path that decides, writes or shows an environment asks the same ``EnvPolicy``:
capture and refresh (skip), the writer (owner-only file mode) and every display (masking in
text, HTML, JSON, diffs and dry runs). A policy is the built-in rules plus the user's extra
patterns; the extras are recorded in a spec's provenance so that later commands, the CLI
included, keep honouring them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import translate
from functools import cache, cached_property, lru_cache
from itertools import pairwise
from typing import Any

from kernelmagic.domain.provenance import recorded_patterns
from kernelmagic.errors import string_list

# Variables that describe the session, the terminal or the tool that started the process,
# never the software environment. Globs, matched case-sensitively. One list, by category.
# fmt: off
NOISE_PATTERNS: dict[str, tuple[str, ...]] = {
    "shell state": (
        "PWD", "OLDPWD", "SHLVL", "_", "PS1", "PS2", "PS4", "PROMPT_COMMAND", "HISTFILE",
        "HISTSIZE", "HISTFILESIZE", "HISTCONTROL", "BASH_FUNC_*", "LS_COLORS", "LSCOLORS",
        "VIRTUAL_ENV_PROMPT",  # the prompt a venv's activate script shows, nothing more
    ),
    "identity of the user": ("HOME", "USER", "LOGNAME", "USERNAME", "SHELL", "MAIL"),
    "terminal and desktop": (
        "TERM", "TERM_*", "TERMINFO", "COLUMNS", "LINES", "DISPLAY", "WINDOWID", "COLORTERM",
        "SSH_*", "XDG_SESSION_*", "XDG_RUNTIME_DIR", "DBUS_*", "TMUX", "TMUX_*", "STY",
        "WAYLAND_DISPLAY", "SESSION_MANAGER", "GNOME_TERMINAL_*", "KONSOLE_*",
        "KRB5CCNAME",  # this login's ticket cache: a kernel started later finds it gone
    ),
    "injected by Jupyter or an IDE": (
        "JPY_*", "MPLBACKEND", "PAGER", "GIT_PAGER", "CLICOLOR", "CLICOLOR_*", "FORCE_COLOR",
        "PYDEVD_*", "PYTHONEXECUTABLE", "JUPYTER_SERVER_*", "JPY_SESSION_NAME", "VSCODE_*",
        "ELECTRON_RUN_AS_NODE", "GIT_ASKPASS", "BROWSER",  # VS Code's helpers, this window's
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
    "temporary directory": ("TMPDIR",),
}

# Name patterns (case-insensitive) of variables that usually hold credentials.
SECRET_NAME_PATTERNS: tuple[str, ...] = (
    "*TOKEN*", "*SECRET*", "*PASSWORD*", "*PASSWD*", "*PASSPHRASE*", "*_PWD", "*_PASS",
    "*API_KEY*", "*APIKEY*", "*ACCESS_KEY*", "*PRIVATE_KEY*", "*CREDENTIAL*", "*AUTH_KEY*",
    "*SESSION_KEY*", "*CONNECTION_STRING*", "*_DSN",
)

# A tokenizer's settings are no credentials (TOKENIZERS_PARALLELISM, TIKTOKEN_CACHE_DIR):
# taken out of a name before the built-in patterns (*TOKEN*) look at it.
_TOKENIZER = re.compile(r"TIKTOKEN|TOKENI[SZ]")

# Values that are credentials whatever the variable is called. Regex sources: compiled at
# their first use (``_value_patterns``), as most commands mask nothing.
SECRET_VALUE_PATTERNS: tuple[str, ...] = (
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
    r"\bgithub_pat_[A-Za-z0-9_]{30,}",
    r"\bglpat-[A-Za-z0-9_-]{20,}",  # GitLab
    r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",  # AWS access key ids
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
    r"\bsk-(?:[A-Za-z0-9_-]*-)?[A-Za-z0-9_-]{20,}",  # OpenAI, Anthropic and alike
    r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"\bnpm_[A-Za-z0-9]{36,}",  # npm
    r"\bpypi-[A-Za-z0-9_-]{50,}",  # PyPI upload tokens
    r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe secret and restricted keys
    # PEM, OpenSSH and PGP key blocks: the whole block, BEGIN through END (or to the end
    # of the value when the END line is missing), not only the BEGIN line.
    r"-----BEGIN [A-Z ]*PRIVATE KEY[A-Z ]*-----(?s:.*?)"
    r"(?:-----END [A-Z ]*PRIVATE KEY[A-Z ]*-----|(?=[\"']|\Z))",
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
    # Google API keys: 39 characters, and one may end in '-', after which no \b can match
    r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])",
)
# Secret parts of otherwise harmless values, masked alone so that the rest stays readable:
# a URL's password (userinfo up to the last '@' before the host: p@ss@host has the password
# p@ss), a credential in a URL's query (libpq's and JDBC's password, OAuth's access_token,
# an api_key, a signed URL's sig), Azure's AccountKey in a connection string. Query names
# are the credentials' own, whole (sort_key=name, use_auth=false and pass_through=yes are
# none of them).
_URL_PASSWORD = r"\b([A-Za-z][A-Za-z0-9+.-]*://[^\s/?#:@]*:)([^\s/?#]*)@"
_SEP = r"(?:[_-]|%5[Ff])"  # a query name's _ as written, or URL-encoded
_QUERY_PASSWORD = (
    rf"((?:^|[?&;#])(?i:password|passwd|pwd|pass|token|(?:access|id|refresh|auth|session){_SEP}?"
    rf"token|x-amz-security-token|api{_SEP}?key|apikey|key|secret|client{_SEP}?secret|sig"
    r"|signature|x-amz-signature|x-goog-signature)=)([^&;#\s\"']+)"
)
_ACCOUNT_KEY = r"((?:^|;)\s*(?i:AccountKey)=)([^;\s]+)"
# libpq's "host=db password = s3cret" (spaces around =), an option's value after a space
# inside a value ("--password s3cret"), and a JSON key's string ({"password": "s3cret"}).
_SPACED_PASSWORD = r"((?:^|\s)(?i:password|passwd|pwd)\s*=\s*)([^\s;&'\"]+)"
_OPTION_SECRET = r"((?:^|\s)--?(?i:password|passwd|token|secret|api[_-]?key)\s+)([^\s-]\S*)"
_JSON_SECRET = (  # its quotes may be escaped, as in a shell snippet's "{\"auth\": ...}"
    r"(\\?\"(?i:password|passwd|secret|token|auth|api_?key|access_?token|client_?secret)\\?\""
    r"\s*:\s*\\?\")((?:[^\"\\]|\\[^\"])+)"
)
_SECRET_PARTS = (
    _URL_PASSWORD, _QUERY_PASSWORD, _ACCOUNT_KEY, _SPACED_PASSWORD, _OPTION_SECRET, _JSON_SECRET,
)  # fmt: skip

# NAME=VALUE in a shell snippet (VALUE quoted or one word), to mask secret-named assignments.
# NAME=VALUE, and an option's --NAME=VALUE (--api-key=..., --NotebookApp.token=...): the
# name is all of it, dashes and dots included, not the word after its last dash.
_ASSIGNMENT = re.compile(
    r"(?<![\w.-])(-{0,2}[A-Za-z_][\w.-]*)=(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s;&|]*)"
)
# fmt: on

MASK = "<hidden>"

# --- batch jobs ---------------------------------------------------------------------------

JOB_SCOPED = "job-scoped"

# What a batch scheduler, a job step's MPI launcher or a JupyterHub single-user server sets
# for the processes it starts: true of one job, one step, one server, never of a software
# environment (a step's PMIX_SERVER_URI names a server that is gone when the step ends, and
# MPI then writes to whatever the kernel has at PMI_FD). Globs, case-sensitive.
LAUNCHER_PATTERNS: dict[str, tuple[str, ...]] = {
    "batch scheduler": (
        "SLURM_*", "SLURMD_*", "SBATCH_*", "SRUN_*", "SALLOC_*", "PBS_*", "LSB_*", "LSF_*",
        "SGE_*", "JOB_ID", "JOB_NAME", "FLUX_*", "COBALT_*",
    ),
    "MPI job step": (
        "PMI_*", "PMIX_*", "PMI2_*", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_*",
        "OMPI_UNIVERSE_SIZE", "OMPI_FIRST_RANKS", "OMPI_APP_CTX_*", "OMPI_NUM_APP_CTX",
        "OMPI_ARGV", "OMPI_COMMAND", "OMPI_FILE_LOCATION", "OMPI_MCA_orte_*", "OMPI_MCA_ess*",
        "OMPI_MCA_pmix*", "OMPI_MCA_initial_wdir", "PRTE_*",
    ),
    "JupyterHub single-user server": ("JUPYTERHUB_*",),
}  # fmt: skip
# Open MPI's and Intel MPI's settings: a site's module sets them for good, a step's launcher
# for its own processes. Inside a step, what is not in the baseline came with the step.
STEP_SETTINGS = ("OMPI_*", "I_MPI_*")
STEP_MARKERS = ("SLURM_STEP_ID", "PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK")
# Names of no scheduler's prefix that Slurm's batch jobs export (ENVIRONMENT=BATCH, the
# node's HOSTNAME): the scheduler's inside a job, anyone's elsewhere.
JOB_SET_NAMES = ("ENVIRONMENT", "HOSTNAME")
# Names of no hub prefix that a JupyterHub spawner sets for the server it starts (its
# resource limits, KubeSpawner's image, the old name of its token): the hub's inside one
# of its servers (a JUPYTERHUB_ variable set), anyone's elsewhere.
HUB_SET_NAMES = (
    "MEM_LIMIT", "MEM_GUARANTEE", "CPU_LIMIT", "CPU_GUARANTEE", "JUPYTER_IMAGE",
    "JUPYTER_IMAGE_SPEC", "JPY_API_TOKEN",
)  # fmt: skip
HUB_MARKERS = ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_SERVICE_PREFIX", "JUPYTERHUB_USER")


def in_hub_server(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` is a process of a JupyterHub single-user server (or its kernel)."""
    return any(environ.get(marker) for marker in HUB_MARKERS)


def _globs(patterns: Iterable[str]) -> re.Pattern[str]:
    """One regex matching a name exactly when ``fnmatchcase`` matches one of the globs (a
    listing asks about every variable of thousands of specs)."""
    alternatives = [translate(p) for p in patterns] or [r"(?!)"]
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


# The combined patterns are compiled at their first use, not at import: compiling them is
# most of this module's import time, and a plain listing asks none of these questions.
@cache
def _any_secret_shape() -> re.Pattern[str]:
    """Any credential shape at all: one search instead of one per pattern, for the common
    text that holds none."""
    return re.compile("|".join(f"(?:{p})" for p in (*SECRET_VALUE_PATTERNS, *_SECRET_PARTS)))


@cache
def _value_patterns() -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in SECRET_VALUE_PATTERNS)


@cache
def _secret_parts() -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in _SECRET_PARTS)


@cache
def _noise() -> dict[str, re.Pattern[str]]:
    return {category: _globs(patterns) for category, patterns in NOISE_PATTERNS.items()}


@cache
def _launcher() -> dict[str, re.Pattern[str]]:
    return {kind: _globs(patterns) for kind, patterns in LAUNCHER_PATTERNS.items()}


@cache
def _step_settings() -> re.Pattern[str]:
    return _globs(STEP_SETTINGS)


def in_job_step(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` is a process of a job step or an MPI launch (``srun``, ``mpirun``)."""
    return any(environ.get(marker) for marker in STEP_MARKERS)


def launcher_variable(
    name: str, in_step: bool = False, in_job: bool = False, in_hub: bool = False
) -> str | None:
    """What set ``name`` for one process tree ("batch scheduler", "MPI job step", "JupyterHub
    single-user server"), or None when it can be part of a software environment.
    ``in_step``/``in_job``/``in_hub``: the environment is a job step's / a batch job's / a
    hub server's."""
    for kind, pattern in _launcher().items():
        if pattern.match(name):
            return kind
    if in_step and _step_settings().match(name):
        return "MPI job step"
    if in_job and name in JOB_SET_NAMES:
        return "batch scheduler"
    if in_hub and name in HUB_SET_NAMES:
        return "JupyterHub single-user server"
    return None


def secret_in_text(text: str) -> bool:
    """True if ``text`` holds a credential by its shape (a token, a key, a URL password)."""
    if len(text) <= 256:  # argv words and env values repeat across specs: remember those
        return _short_secret_in_text(text)
    return _any_secret_shape().search(text) is not None


@lru_cache(maxsize=4096)
def _short_secret_in_text(text: str) -> bool:
    return _any_secret_shape().search(text) is not None


@dataclass(frozen=True)
class EnvPolicy:
    """The built-in noise and secret rules plus a user's extra patterns.

    ``extra_secrets`` are case-insensitive name globs of variables that hold secrets;
    ``extra_noise`` are case-sensitive name globs of variables never to capture.
    """

    extra_secrets: tuple[str, ...] = ()
    extra_noise: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A library caller's single string would be taken letter by letter (walk X:
        # extra_secrets="GEO_CODE" made G, E, O... the secrets, and GEO_CODE written
        # readable by all), a list kept as one that can change.
        for field_name in ("extra_secrets", "extra_noise"):
            patterns = string_list(getattr(self, field_name), field_name)
            object.__setattr__(self, field_name, patterns)

    @cached_property
    def _secret_names(self) -> re.Pattern[str]:
        # Case-insensitive as str.upper() on both sides, the way the globs are documented.
        return _globs(p.upper() for p in SECRET_NAME_PATTERNS)

    @cached_property
    def _extra_secret_names(self) -> re.Pattern[str]:
        return _globs(p.upper() for p in self.extra_secrets)

    @cached_property
    def _extra_noise(self) -> re.Pattern[str]:
        return _globs(self.extra_noise)

    def noise_category(self, name: str) -> str | None:
        """The category that makes ``name`` session noise, or None if it is not noise."""
        for category, pattern in _noise().items():
            if pattern.match(name):
                return category
        if self._extra_noise.match(name):
            return "configured noise"
        return None

    @cached_property
    def _secret_name_seen(self) -> dict[str, bool]:
        return {}  # names repeat across specs (PATH, GDAL_DATA): match each name once

    def is_secret(self, name: str, value: Any = None) -> bool:
        """True if the variable's name or its (string) value looks like a credential."""
        secret = self._secret_name_seen.get(name)
        if secret is None:
            upper = name.upper()
            secret = self._secret_name_seen[name] = bool(
                self._secret_names.match(_TOKENIZER.sub("", upper))
                or self._extra_secret_names.match(upper)
            )
        # A value that sets a secret-named key inside it (`host=db password=...`) is no
        # secret here: whole option strings hold harmless ones too (`ssh -o
        # PasswordAuthentication=no`). Displays mask that part (``mask_text``), and the file
        # holding it is owner-only (``holds_secrets``).
        return secret or (isinstance(value, str) and secret_in_text(value))

    def _secret_option(self, word: Any) -> bool:
        """Whether an argv word is an option that names a secret and takes its value as the
        next word (``--password VALUE``, ``--NotebookApp.token VALUE``)."""
        if not isinstance(word, str) or not word.startswith("-") or "=" in word:
            return False
        name = word.lstrip("-").replace("-", "_")
        return bool(name) and self.is_secret(name)

    def mask_env(self, env: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``env`` safe to show: the value of a secret-named variable replaced by
        ``<hidden>``, and in any other value the secret part only (a proxy's password, a
        token), so that the rest still says where it points."""
        return {k: self._mask_value(k, v) for k, v in env.items()}

    def mask_text(self, text: str) -> str:
        """``text`` (a snippet, an argv word) with every credential in it replaced."""
        if secret_in_text(text):  # a credential's shape somewhere: mask each one
            for pattern in _value_patterns():
                text = pattern.sub(MASK, text)
            url_password, *other_parts = _secret_parts()
            text = url_password.sub(lambda m: f"{m.group(1)}{MASK}@", text)
            for part in other_parts:
                text = part.sub(lambda m: f"{m.group(1)}{MASK}", text)
        if "=" not in text:
            return text  # the usual argv word or path: no NAME=VALUE to look at

        def assignment(match: re.Match[str]) -> str:
            name, value = match.groups()
            if self.is_secret(name.lstrip("-").replace("-", "_")):
                return f"{name}={MASK}"
            quote = value[:1] if value[:1] in ("'", '"') and value[-1:] == value[:1] else ""
            inner = value[1:-1] if quote else value
            if "=" not in inner:
                return match.group(0)
            # A value that itself sets one (PG="host=db password=..."): masked inside.
            return f"{name}={quote}{self.mask_text(inner)}{quote}"

        return _ASSIGNMENT.sub(assignment, text)

    def _mask_value(self, key: str, value: Any) -> Any:
        if isinstance(value, str):
            return MASK if self.is_secret(key) else self.mask_text(value)
        if isinstance(value, dict):
            return {k: self._mask_value(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._mask_value("", v) for v in value]
        return value

    def mask_spec(self, spec: Any) -> Any:
        """A copy of a spec safe to show: env, argv and metadata with secrets masked.

        Uses this policy together with the extra patterns the spec itself recorded.
        """
        if not isinstance(spec, dict):
            return spec
        return self.with_recorded(spec).masked(spec)

    def masked(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``spec`` with what this policy alone calls secret masked (``mask_spec``
        also applies the patterns the spec records)."""
        shown = dict(spec)
        if isinstance(shown.get("env"), dict):
            shown["env"] = self.mask_env(shown["env"])
        argv = shown.get("argv")
        if isinstance(argv, list):
            words = [a for a in argv if isinstance(a, str)]
            joined = "\0".join(words)
            follows_secret = [False] + [
                self._secret_option(a) and isinstance(b, str) and not b.startswith("-")
                for a, b in pairwise(argv)
            ]
            if len(words) != len(argv) or "=" in joined or secret_in_text(joined):
                shown["argv"] = [self.mask_text(a) if isinstance(a, str) else a for a in argv]
            else:  # the usual argv: nothing to mask, one check for all its words
                shown["argv"] = list(argv)
            if any(follows_secret):  # --password VALUE: the value is the next word
                shown["argv"] = [
                    MASK if hidden else word
                    for word, hidden in zip(shown["argv"], follows_secret, strict=True)
                ]
        if isinstance(shown.get("metadata"), dict):
            shown["metadata"] = self._mask_value("", shown["metadata"])
        return shown

    def holds_secrets(self, spec: Any) -> bool:
        """True if writing ``spec`` puts a credential on disk (so it must be owner-only), by
        this policy alone: for a spec read from disk, join what it records first
        (``with_recorded``)."""
        return isinstance(spec, dict) and self.masked(spec) != spec

    def with_recorded(self, spec: Mapping[str, Any]) -> EnvPolicy:
        """This policy joined with the extra patterns recorded in ``spec``'s provenance."""
        recorded = recorded_policy(spec)
        if not recorded.extra_secrets and not recorded.extra_noise:
            return self
        return self.joined(recorded)

    def joined(self, other: EnvPolicy) -> EnvPolicy:
        def union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(dict.fromkeys((*a, *b)))

        return EnvPolicy(
            union(self.extra_secrets, other.extra_secrets),
            union(self.extra_noise, other.extra_noise),
        )


def recorded_policy(spec: Mapping[str, Any]) -> EnvPolicy:
    """The extra patterns a spec's provenance recorded (none if malformed)."""
    return EnvPolicy(*recorded_patterns(spec))


DEFAULT_POLICY = EnvPolicy()
