"""One clean login shell: run a snippet in it and read the environment before and after.

The baseline of ``--from-current`` (an empty snippet) and the sources (a snippet, ``module
load``, a conda activation) both go through here, so they see the same kind of shell.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping

from .errors import SourceFailed

# What a clean login shell keeps from the session (everything else comes from the profile).
LOGIN_SHELL_KEEP = ("HOME", "USER", "LOGNAME", "SHELL", "LANG", "TERM", "TZ", "MAIL")

# $1, $2: where to dump the environment before and after; $3: the snippet file. Dumping to
# files rather than stdout keeps banners printed by a profile out of the result.
_DRIVER = (
    '__km_before="$1"; __km_after="$2"; __km_snippet="$3"; set --\n'
    'env -0 > "$__km_before" || exit 97\n'
    '. "$__km_snippet"\n'
    "__km_status=$?\n"
    'env -0 > "$__km_after"\n'
    "exit $__km_status\n"
)


def clean_environment(session: Mapping[str, str], also_keep: Iterable[str] = ()) -> dict[str, str]:
    """What a clean login shell starts from: the session's identity and locale (``env -i``
    keeping HOME, USER, LANG, LC_*, ...), plus the names in ``also_keep``."""
    keep = (*LOGIN_SHELL_KEEP, *also_keep)
    return {k: v for k, v in session.items() if k in keep or k.startswith("LC_")}


def run_in_login_shell(
    snippet: str,
    *,
    session: Mapping[str, str],
    also_keep: Iterable[str] = (),
    shell: str | None = None,
    timeout: float,
) -> tuple[dict[str, str], dict[str, str]]:
    """Run ``snippet`` in one clean login shell; return its environment before and after.

    Raises ``SourceFailed`` (with the shell's stderr) if there is no shell, it times out, or
    the snippet exits non-zero.
    """
    shell_path = shell or shutil.which("bash")
    if not shell_path or not shutil.which(shell_path):
        raise SourceFailed(f"no shell to run the snippet: {shell or 'bash'} was not found")
    with tempfile.TemporaryDirectory(prefix="kernelmagic-") as work:
        before_file, after_file = os.path.join(work, "before"), os.path.join(work, "after")
        snippet_file = os.path.join(work, "snippet.sh")
        with open(snippet_file, "w", encoding="utf-8") as f:
            f.write(snippet if snippet.endswith("\n") else snippet + "\n")
        command = [shell_path, "-l", "-c", _DRIVER, "kernelmagic", before_file, after_file]
        try:
            done = subprocess.run(
                [*command, snippet_file],
                env=clean_environment(session, also_keep),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SourceFailed(f"the snippet did not finish within {timeout:.0f} s") from None
        except OSError as exc:
            raise SourceFailed(f"cannot run {shell_path}: {exc.strerror}") from None
        stderr = done.stderr.decode("utf-8", "replace").strip()
        if done.returncode != 0 or not os.path.exists(after_file):
            detail = " | ".join(stderr.splitlines()[-5:]) or "no error output"
            if done.returncode == 0:
                raise SourceFailed(
                    f"the snippet exited the shell before it finished (remove 'exit'): {detail}"
                )
            raise SourceFailed(
                f"the snippet failed with exit status {done.returncode}; nothing was written. "
                f"{shell_path} said: {detail}"
            )
        return _read_dump(before_file), _read_dump(after_file)


def _read_dump(path: str) -> dict[str, str]:
    with open(path, "rb") as f:
        return parse_environment_dump(f.read().decode("utf-8", "surrogateescape"))


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
