"""What is wrong with a kernel spec, said so that the user knows what to do.

Checks here are cheap (no process is started), so listing can run them on every spec.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from functools import cache
from typing import Any

PROVISIONER_GROUP = "jupyter_client.kernel_provisioners"


class Problem(str):
    """A problem message (what is wrong and what to do) that also knows its ``kind``.

    Being a ``str`` keeps ``SpecInfo.problems`` a plain list of messages for users, while the
    doctor can act on kinds (``--fix`` removes only ``missing-program`` specs).
    """

    kind: str
    value: str | None  # the offending value (a path, a variable name), when there is one

    def __new__(cls, kind: str, message: str, value: str | None = None) -> Problem:
        problem = super().__new__(cls, message)
        problem.kind = kind
        problem.value = value
        return problem

    def as_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind, "message": str(self), "value": self.value}


_INTERRUPT_MODES = ("message", "signal")
_ONLY_STR = frozenset({str})
_STRING_KEYS = ("display_name", "language", "kernel_protocol_version", "mimetype", "name")


@cache
def installed_provisioners() -> frozenset[str]:
    """Names registered under jupyter_client's provisioner entry-point group."""
    from importlib.metadata import entry_points  # 20 ms: only when a spec names a provisioner

    return frozenset(ep.name for ep in entry_points(group=PROVISIONER_GROUP))


def structure_problems(spec: Any) -> list[Problem]:
    """Problems that make jupyter_client refuse to load the spec (so Jupyter hides it)."""
    if not isinstance(spec, dict):
        return [Problem("structure", f"kernel.json holds a {type(spec).__name__}, not an object")]
    problems = []
    argv = spec.get("argv", [])
    # set(map(type, ...)) runs in C: listing checks every spec, so this is the hot path.
    if type(argv) is not list or not set(map(type, argv)) <= _ONLY_STR:
        problems.append(Problem("structure", "'argv' must be a list of strings"))
    for key in _STRING_KEYS:
        if key in spec and not isinstance(spec[key], str):
            problems.append(Problem("structure", f"'{key}' must be a string"))
    for key in ("env", "metadata"):
        if key in spec and not isinstance(spec[key], dict):
            problems.append(Problem("structure", f"'{key}' must be a JSON object"))
    mode = spec.get("interrupt_mode", "signal")
    if not isinstance(mode, str) or mode.lower() not in _INTERRUPT_MODES:
        problems.append(
            Problem("structure", f"'interrupt_mode' must be 'signal' or 'message', not {mode!r}")
        )
    if "resource_dir" in spec:
        problems.append(Problem("structure", "'resource_dir' must not be a key of kernel.json"))
    return problems


def provisioner_name(spec: dict[str, Any]) -> str | None:
    metadata = spec.get("metadata")
    if not isinstance(metadata, dict):
        return None
    stanza = metadata.get("kernel_provisioner")
    if not isinstance(stanza, dict):
        return None
    name = stanza.get("provisioner_name")
    return name if isinstance(name, str) else None


def provisioner_problems(spec: dict[str, Any]) -> list[Problem]:
    """A provisioner that is not installed makes Jupyter hide the spec."""
    name = provisioner_name(spec)
    if name is None or name in installed_provisioners():
        return []
    available = ", ".join(sorted(installed_provisioners())) or "none"
    return [
        Problem(
            "unknown-provisioner",
            f"provisioner '{name}' is not installed, so Jupyter hides this spec "
            f"(installed: {available}); install its package or remove "
            "metadata.kernel_provisioner",
            name,
        )
    ]


def launch_problems(
    spec: dict[str, Any], program_exists: Callable[[str], bool] | None = None
) -> list[Problem]:
    """Problems that keep a listed spec from starting."""
    program_exists = program_exists or find_program
    argv = spec.get("argv") or []
    problems = []
    if not argv:
        return [Problem("structure", "'argv' is empty: nothing to start")]
    # A remote provisioner runs argv on another host and has its own launch protocol
    # ({response_address} instead of {connection_file}): neither check applies here.
    local = provisioner_name(spec) in (None, "local-provisioner")
    if local and not program_exists(argv[0]):
        problems.append(
            Problem(
                "missing-program",
                f"program not found: {argv[0]} (reinstall the environment, or remove the spec)",
                argv[0],
            )
        )
    if local and "{connection_file}" not in "\0".join(argv):
        problems.append(
            Problem(
                "no-connection-file",
                "argv has no {connection_file}: the kernel cannot learn its ports "
                "(add e.g. '-f {connection_file}')",
            )
        )
    env = spec.get("env") or {}
    if env and not set(map(type, env.values())) <= _ONLY_STR:
        bad = sorted(k for k, v in env.items() if not isinstance(v, str))
        problems.append(Problem("structure", f"env values must be strings: {', '.join(bad)}"))
    return problems


# jupyter_client starts these argv[0] with the interpreter that launches the kernel.
_BARE_PYTHONS = frozenset(
    {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
)


def launch_program(program: str) -> str:
    """The program Jupyter really starts for ``argv[0]``.

    ``KernelManager.format_kernel_cmd`` replaces a bare ``python``, ``python3`` or
    ``python3.X`` with ``sys.executable``; checked from here, that is this process's
    interpreter, the best stand-in for the one that will launch the kernel.
    """
    return sys.executable if program in _BARE_PYTHONS else program


def find_program(program: str) -> bool:
    """Whether ``program`` (absolute, relative or a bare name on PATH) can be executed."""
    program = launch_program(program)
    if os.sep in program or (os.altsep and os.altsep in program):
        return os.path.isfile(program) and os.access(program, os.X_OK)
    return shutil.which(program) is not None
