"""One clean login shell (or, for a running kernel, a shell started from its own
environment): run a snippet in it and read the environment before and after.

The baseline of ``--from-current`` (an empty snippet) and the sources (a snippet, ``module
load``, a conda activation) both go through here, so they see the same kind of shell.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shlex
import shutil
import signal
import tempfile
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from kernelmagic.errors import SourceFailed
from kernelmagic.reading import read_regular_file, read_regular_head

if TYPE_CHECKING:
    # Imported by each function that starts a process (here, sources, languages,
    # install_container): ~4 ms of an install that starts none (--from-current, its
    # interpreter's answers cached).
    import subprocess

# What a clean login shell keeps of the environment it starts from (the profile sets the rest).
LOGIN_SHELL_KEEP = ("HOME", "USER", "LOGNAME", "SHELL", "LANG", "TERM", "TZ", "MAIL")

# $1, $2: where to dump the environment before and after; $3: the snippet file. Dumping to
# files rather than stdout keeps banners printed by a profile out of the result.
_TAKE_ARGS = '__km_before="$1"; __km_after="$2"; __km_snippet="$3"; set --\n'
# The snippet runs with errexit: a line that fails (a `module load` of a module that is not
# there, a `source` of a missing file) ends it, and the shell says which line, quoting it, so
# that nothing half-made is captured. Only the snippet: the user's profile runs as always.
# (`|| true` after a line that may fail on purpose.)
_FAILED_LINE = (
    "__km_failed() { __km_s=$?; printf 'kernelmagic: line %s failed (exit status %s): %s\\n' "
    '"$1" "$__km_s" "$(sed -n "$1p" "$__km_snippet")" >&2; }\n'
    'if [ -n "${BASH_VERSION:-}${ZSH_VERSION:-}" ]; then trap \'__km_failed "$LINENO"\' ERR; fi\n'
)
_DUMP_AROUND_SNIPPET = (
    'env -0 > "$__km_before" || exit 97\n' + _FAILED_LINE + "set -e\n"
    '. "$__km_snippet"\n'
    "set +e\n"
    "trap - ERR 2>/dev/null\n"
    'env -0 > "$__km_after"\n'
    "exit 0\n"
)
_DRIVER = _TAKE_ARGS + _DUMP_AROUND_SNIPPET


def run_probe(
    command: list[str] | tuple[str, ...], env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[bytes]:
    """Run an interpreter to ask it something (can it import ipykernel, where is IRkernel),
    from an empty directory of its own: a Python ``-c`` puts the working directory first on
    ``sys.path``, R reads ``./.Rprofile`` and ``./.Renviron``, Julia ``./Project.toml``, so
    whoever can write the directory kernelmagic is run from could otherwise run code as the
    user. Output is captured; stdin is empty. Raises what ``subprocess.run`` raises."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="kernelmagic-probe-") as empty:
        return subprocess.run(
            list(command),
            env=dict(env),
            cwd=empty,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )


def clean_environment(environ: Mapping[str, str], also_keep: Iterable[str] = ()) -> dict[str, str]:
    """What a clean login shell starts from: the session's identity and locale (``env -i``
    keeping HOME, USER, LANG, LC_*, ...), plus the names in ``also_keep``."""
    keep = (*LOGIN_SHELL_KEEP, *also_keep)
    return {k: v for k, v in environ.items() if k in keep or k.startswith("LC_")}


def run_in_login_shell(
    snippet: str,
    *,
    environ: Mapping[str, str],
    also_keep: Iterable[str] = (),
    shell: str | None = None,
    timeout: float,
    what: str = "the snippet",
) -> tuple[dict[str, str], dict[str, str]]:
    """Run ``snippet`` in one clean login shell; return its environment before and after.

    Raises ``SourceFailed`` (naming ``what`` ran, the shell's telling lines as details) if
    there is no shell, it times out, or the snippet exits non-zero.
    """
    env = clean_environment(environ, also_keep)
    return _run_driver(
        snippet, ["-l", "-c", _DRIVER], env, shell, timeout, what, "nothing was written"
    )


# A shell that starts from a running process's own environment is no login shell (a
# profile would reset PATH), so `module` is defined from the module system's init script.
_MODULE_INIT = (
    "if ! type module >/dev/null 2>&1; then\n"
    '  for __km_init in "${LMOD_PKG:+$LMOD_PKG/init/bash}" '
    '"${MODULESHOME:+$MODULESHOME/init/bash}" /etc/profile.d/lmod.sh '
    "/etc/profile.d/modules.sh; do\n"
    '    if [ -n "$__km_init" ] && [ -r "$__km_init" ]; then . "$__km_init"; break; fi\n'
    "  done\n"
    "fi\n"
)


def run_from_environment(
    snippet: str,
    *,
    environ: Mapping[str, str],
    shell: str | None = None,
    timeout: float,
    what: str = "the snippet",
) -> tuple[dict[str, str], dict[str, str]]:
    """Run ``snippet`` in a shell that starts from ``environ`` itself (a running kernel's
    environment, modules already loaded included); return its environment before and after.
    A failure changes nothing in the running process.
    """
    return _run_driver(
        snippet,
        ["-c", _TAKE_ARGS + _MODULE_INIT + _DUMP_AROUND_SNIPPET],
        dict(environ),
        shell,
        timeout,
        what,
        "this process is unchanged",
    )


def _run_driver(
    snippet: str,
    shell_args: list[str],
    env: dict[str, str],
    shell: str | None,
    timeout: float,
    what: str,
    unchanged: str,
) -> tuple[dict[str, str], dict[str, str]]:
    """Run the driver script; ``what`` names the source in errors (``module load gdal/3.8``)
    and ``unchanged`` says what its failure left alone."""
    shell_path = shell or shutil.which("bash")
    if not shell_path or not shutil.which(shell_path):
        raise SourceFailed(f"no shell to run the snippet: {shell or 'bash'} was not found")
    with tempfile.TemporaryDirectory(prefix="kernelmagic-") as work:
        before_file, after_file = os.path.join(work, "before"), os.path.join(work, "after")
        snippet_file = os.path.join(work, "snippet.sh")
        with open(snippet_file, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(snippet if snippet.endswith("\n") else snippet + "\n")
        command = [shell_path, *shell_args, "kernelmagic", before_file, after_file, snippet_file]
        status, stderr = _run_in_own_group(command, env, work, timeout, what)
        if status != 0 or not os.path.exists(after_file):
            said = failure_lines(stderr.replace(snippet_file, "snippet"))  # not our temp path
            said[:0] = _line_bash_ended_at(stderr, snippet_file, snippet, said)
            if status == 0:
                raise SourceFailed(
                    f"{what} exited the shell before it finished (remove 'exit'); {unchanged}",
                    details=said,
                )
            raise SourceFailed(
                f"{what} failed with exit status {status}; {unchanged}", details=said
            )
        return _read_dump(before_file), _read_dump(after_file)


def _run_in_own_group(
    command: list[str], env: dict[str, str], work: str, timeout: float, what: str
) -> tuple[int, str]:
    """Run ``command`` in a process group of its own; return (exit status, stderr).

    Output goes to files, not pipes: a background job the snippet starts (``sleep 25 &``)
    would hold a pipe open and keep us waiting after the shell is done. When the shell is
    done, times out or we are interrupted (Ctrl-C), the whole group is killed, so nothing
    the snippet started is left behind.
    """
    import subprocess

    out_path, err_path = os.path.join(work, "stdout"), os.path.join(work, "stderr")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        except OSError as exc:
            raise SourceFailed(f"cannot run {command[0]}: {exc.strerror}") from None
    try:
        status = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SourceFailed(
            f"{what} did not finish within {timeout:g} s; it was stopped (give more time "
            "with --timeout SECONDS)"
        ) from None
    finally:
        _kill_group(process)
    with open(err_path, "rb") as f:
        return status, f.read(_STDERR_KEPT).decode("utf-8", "replace")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    import subprocess

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


_STDERR_KEPT = 64 * 1024
_FAILURE_WORDS = re.compile(r"error|unknown|not found|no such|cannot|failed|denied|fatal", re.I)
_DETAIL_LINES = 12


def _line_bash_ended_at(stderr: str, snippet_file: str, snippet: str, said: list[str]) -> list[str]:
    """The snippet's line that ended the shell, quoted, where the ERR trap did not say it:
    bash exits on a `source` of a missing file without running the trap."""
    if any(line.startswith("kernelmagic: line ") for line in said):
        return []
    found = re.search(rf"^{re.escape(snippet_file)}: line (\d+): ", stderr, re.M)
    lines = snippet.splitlines()
    if found is None or not 0 < int(found.group(1)) <= len(lines):
        return []
    number = int(found.group(1))
    return [f"kernelmagic: line {number} failed: {lines[number - 1].strip()}"]


def failure_lines(stderr: str) -> list[str]:
    """A program's stderr, up to a dozen lines: as it said them where they fit (a message
    over two lines stays whole), else the lines that say what failed first, then its last
    lines (Lmod's reason before its advice about caches)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return ["no error output"]
    if len(lines) <= _DETAIL_LINES:
        return lines
    telling = [line for line in lines if _FAILURE_WORDS.search(line)]
    rest = [line for line in lines if line not in telling]
    return (telling + rest[-_DETAIL_LINES:])[:_DETAIL_LINES]


_MADE_BY_UV = re.compile(rb"^uv\s*=", re.M)  # the line uv writes into a venv's pyvenv.cfg


def made_by_uv(prefix: str) -> bool:
    """Whether the venv at ``prefix`` was made by uv (its pyvenv.cfg says so): it has no pip."""
    try:
        head = read_regular_head(os.path.join(prefix, "pyvenv.cfg"), 64 * 1024)
    except OSError:
        return False
    return bool(head and _MADE_BY_UV.search(head))


def pip_install(python: str, what: str) -> str:
    """The command that installs ``what`` for the interpreter ``python``: its own pip, or
    uv's for a venv that uv made (`python -m pip` would fail there)."""
    # ~/ left outside the quotes, so that the shell the user pastes it into expands it
    home, rest = ("~/", python[2:]) if python.startswith("~/") else ("", python)
    quoted = home + shlex.quote(rest)
    if made_by_uv(os.path.dirname(os.path.dirname(os.path.expanduser(python)))):
        return f"uv pip install --python {quoted} {what}"
    return f"{quoted} -m pip install {what}"


def failure_in_one_line(stderr: str) -> str:
    """``failure_lines`` for a table cell or a JSON field, where one line is all there is."""
    return " | ".join(failure_lines(stderr))


def _read_dump(path: str) -> dict[str, str]:
    return parse_environment_dump(read_environment_dump(path))


# An environment is a few kilobytes; a saved one given as --baseline may not be a file at all.
MAX_DUMP_BYTES = 16 * 1024 * 1024


def read_environment_dump(path: str) -> str:
    """A saved environment's text (any bytes kept, as ``env`` prints them); ``OSError`` when
    it is no regular file or larger than ``MAX_DUMP_BYTES``."""
    os.stat(path)  # a missing or unreadable file, said as the system says it
    data = read_regular_file(path, MAX_DUMP_BYTES)
    if data is None:
        raise OSError(errno.EINVAL, "not a regular file", path)
    return data.decode("utf-8", "surrogateescape")


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
