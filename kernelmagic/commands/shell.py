"""``shell NAME [-- COMMAND ...]``: a command, or an interactive shell, with exactly the
environment the kernel gets when Jupyter starts it: the launcher's environment with the
spec's ``env`` over it, ``${VAR}`` templates expanded as jupyter_client expands them (and
``PYTHONEXECUTABLE`` dropped for a Python kernel, as jupyter_client drops it). A container
spec's command runs inside its container, through the spec's own wrapper."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kernelmagic.commands.render import Shown
from kernelmagic.domain import checks, containers, probes
from kernelmagic.domain.shells import pip_install
from kernelmagic.domain.trust import TRUST_ADVICE, untrusted
from kernelmagic.errors import InvalidInput, KernelmagicError
from kernelmagic.options import NAME, TRUST, Option, option
from kernelmagic.settings import Settings
from kernelmagic.storage.discovery import get_spec

SUMMARY = (
    "Run COMMAND, or an interactive shell, with exactly the environment the kernel gets "
    "when Jupyter starts it (inside its container for a container spec)."
)
# A magic has no terminal to give the command: it captures the output.
MAGIC_REQUEST = {"capture": True}

COMMAND_WORDS = option(
    "words",  # not "command": the CLI's parser keeps the subcommand's name there
    nargs=argparse.REMAINDER,
    metavar="COMMAND",
    help="what to run (after --, e.g. `-- pip install rasterio`); default: an interactive "
    "shell ($SHELL, or sh inside a container)",
)
# What jupyter_client adds to (or drops from) the environment of every kernel it starts.
ADDED_BY_JUPYTER_CLIENT = ("JPY_PARENT_PID",)
DROPPED_FOR_PYTHON = ("PYTHONEXECUTABLE",)
_PYTHON_TOOLS = ("pip", "pip3", "python", "python3")


@dataclass(frozen=True)
class Request:
    """``shell``: run a command with the environment the kernel gets."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (TRUST, NAME, COMMAND_WORDS)

    name: str
    command: tuple[str, ...] = field(default_factory=tuple)
    trust: bool = False  # run a spec others can change (its env runs as you)
    # Its output captured and shown after (a magic: no terminal); else the command has the
    # terminal, and without a command it is an interactive shell.
    capture: bool = False

    def __post_init__(self) -> None:
        if self.capture and not self.command:
            raise InvalidInput(
                "give a COMMAND (an interactive shell needs a terminal: kernelmagic shell NAME)"
            )

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> Request:
        words = list(ns.words)
        if words[:1] == ["--"]:
            words = words[1:]
        if words[:1] == ["--trust"]:
            # After NAME, argparse hands every word to the command, and it may drop a `--`
            # before them: `shell NAME --trust` could be `shell NAME -- --trust`. A trust must
            # be unmistakable, so here it is neither the option nor a program to run.
            raise InvalidInput(
                "--trust goes before NAME: kernelmagic shell --trust NAME -- COMMAND; "
                "nothing was run"
            )
        return cls(ns.name, tuple(words), ns.trust)


@dataclass
class Prepared:
    """The command to run, the environment to run it with, and a note for the user."""

    argv: list[str]
    env: dict[str, str] = field(repr=False)
    notes: list[str] = field(default_factory=list)


def kernel_environment(spec: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """The environment Jupyter gives the kernel, but for what jupyter_client's launcher adds
    (``ADDED_BY_JUPYTER_CLIENT``)."""
    env = probes.launch_env(dict(spec), environ)
    if str(spec.get("language", "")).lower().startswith("python"):
        for name in DROPPED_FOR_PYTHON:
            env.pop(name, None)
    return env


def prepare(request: Request, environ: Mapping[str, str] | None = None) -> Prepared:
    environ = os.environ if environ is None else environ
    info = get_spec(request.name)
    why = untrusted(info)
    if why and not request.trust:  # its env (LD_PRELOAD, PYTHONSTARTUP, ...) runs as you
        raise KernelmagicError(f"not run: {why}; {TRUST_ADVICE}")
    if not info.visible:
        raise KernelmagicError(f"Jupyter cannot start '{info.name}': {info.problems[0]}")
    env = kernel_environment(info.spec, environ)
    container = containers.of_spec(info.spec)
    if container is not None and containers.is_generated(info.spec.get("argv")):
        command = list(request.command) or ["sh"]
        spec_env = {k: v for k, v in info.env.items() if isinstance(v, str)}
        python = "ipykernel_launcher" in container.kernel
        return Prepared(containers.probe_command(container, spec_env, command, python), env)
    command = list(request.command) or [environ.get("SHELL") or "/bin/sh"]
    notes = _elsewhere_note(info.name, info.spec) + _python_tool_note(command, info.spec, env)
    return Prepared(command, env, notes)


def _elsewhere_note(name: str, spec: dict[str, Any]) -> list[str]:
    """A spec whose provisioner starts the kernel elsewhere (a Slurm job, over ssh): the
    command runs here, with the env the kernel gets there."""
    provisioner = checks.provisioner_name(spec)
    if provisioner in (None, "local-provisioner"):
        return []
    return [
        f"note: '{name}' starts its kernel through {provisioner}, elsewhere; this runs here, "
        "with the env the kernel gets there (on a shared filesystem, the same environment)"
    ]


def _python_tool_note(
    command: list[str], spec: Mapping[str, Any], env: Mapping[str, str]
) -> list[str]:
    """A `pip` or `python` that is not the kernel's interpreter's would install elsewhere."""
    argv = spec.get("argv")
    if not (command and command[0] in _PYTHON_TOOLS and isinstance(argv, list) and argv):
        return []
    kernel_python = str(argv[0])
    found = shutil.which(command[0], path=env.get("PATH", os.defpath))
    if found is not None and os.path.dirname(found) == os.path.dirname(kernel_python):
        return []
    where = "is not on the kernel's PATH" if found is None else f"here is {found}"
    return [
        f"note: {command[0]} {where}, not beside the kernel's interpreter {kernel_python}; "
        f"to install into the kernel's environment: {pip_install(kernel_python, '...')}"
    ]


@dataclass
class Ran:
    """What ran, its notes, and how it ended (with its output when captured)."""

    command: list[str]
    notes: list[str]
    done: subprocess.CompletedProcess[str]


def run(request: Request) -> Ran:
    prepared = prepare(request)
    ran = list(request.command) or prepared.argv
    return Ran(ran, prepared.notes, execute(prepared, capture=request.capture))


def show(result: Ran, style: str) -> Shown:
    status = result.done.returncode
    if status < 0:  # killed by a signal: as a shell says it
        status = 128 - status
    if result.done.stdout is None:  # it had the terminal: only the notes are left to say
        return Shown("", status=status, notes=tuple(result.notes))
    said = [*result.notes, (result.done.stdout or "") + (result.done.stderr or "")]
    if result.done.returncode:
        said.append(f"({result.command[0]} exited with status {result.done.returncode})")
    return Shown("\n".join(t.rstrip("\n") for t in said if t), status=status)


def execute(prepared: Prepared, *, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the command (its output captured with ``capture``); ``KernelmagicError`` when it
    cannot be started."""
    try:
        return subprocess.run(
            prepared.argv, env=prepared.env, capture_output=capture, text=capture, check=False
        )
    except OSError as exc:
        raise KernelmagicError(f"cannot run {prepared.argv[0]}: {exc.strerror}") from None
