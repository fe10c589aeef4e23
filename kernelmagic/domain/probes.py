"""What to run to see whether a spec's kernel can start, for each language: does its Python
import the launcher module, does its R load IRkernel, does its Julia import IJulia.

A probe runs the spec's own program with the spec's own env (so it sees what the kernel
would); it never runs a program that is not that language's interpreter on this machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from string import Template
from typing import Any

from kernelmagic.domain import checks, containers
from kernelmagic.domain.shells import failure_in_one_line, pip_install, run_probe

TIMEOUT = 20.0

# A probe's command, then the variables that decide how it starts and what it imports.
ProbeKey = tuple[tuple[str, ...], tuple[tuple[str, str], ...]]
# Those variables: every one an interpreter or the loader reads at its start (walk W: keyed
# by the import paths alone, a spec whose PYTHONIOENCODING kills Python answered for its
# healthy twin, or the twin for it, by the order of their names), and HOME (the user site).
_STARTUP_PREFIXES = ("PYTHON", "R_", "JULIA_", "LD_", "LC_")
_STARTUP_NAMES = frozenset({"HOME", "LANG", "LANGUAGE"})
_PYTHON_PROGRAM = re.compile(r"(python|pypy)[0-9.]*t?\Z")  # python3.13t: free-threaded
# The interpreter's options that take the next word as their value.
_OPTIONS_WITH_VALUES = frozenset({"-X", "-W", "--check-hash-based-pycs"})
# Wrappers that run the command inside a container: the interpreter lives in the image, not
# on this machine, so there is nothing here to probe.
_CONTAINER_RUNNERS = frozenset(
    {"apptainer", "singularity", "docker", "podman", "ch-run", "shifter", "enroot"}
)
_MISSING = 3  # the exit status our probes use for "the package is not there"


@dataclass(frozen=True)
class Probe:
    """One command that says whether a kernel's package can be loaded."""

    command: tuple[str, ...]
    env: dict[str, str] = field(compare=False, hash=False, repr=False)
    missing: str  # what a failure means: "cannot import ipykernel_launcher", ...
    fix: str  # the command that installs it
    label: str = ""  # what the doctor calls the interpreter (default: the program run)

    @property
    def interpreter(self) -> str:
        return self.label or self.command[0]

    @property
    def key(self) -> ProbeKey:
        """Equal for probes that must give the same answer: each runs once."""
        startup = sorted(
            (name, value)
            for name, value in self.env.items()
            if name.startswith(_STARTUP_PREFIXES) or name in _STARTUP_NAMES
        )
        return (self.command, tuple(startup))


def launch_env(spec: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """The environment Jupyter would give the kernel: ours plus the spec's, substituted."""
    env = dict(environ)
    unusable = set(checks.unusable_env(spec.get("env")))  # reported as bad-env instead
    for key, value in (spec.get("env") or {}).items():
        if isinstance(value, str) and key not in unusable:
            env[key] = Template(value).safe_substitute(environ)
    return env


def _python_launcher(argv: list[str]) -> tuple[int, str, tuple[str, ...]] | None:
    """(index of the interpreter, module, the interpreter's own options) of a Python
    kernel's argv, through prefixes.

    The interpreter is the program before ``-m MODULE`` (skipping its own options such as
    ``-Xfrozen_modules=off``, which the probe passes on: ``-I``, ``-S``, ``-E`` change what
    it imports), whatever runs in front of it: ``nice -n 10``, ``env``, ``numactl``,
    ``taskset``, ``srun``. None when that is not a Python.
    """
    for i, arg in enumerate(argv):
        if arg == "-m" and i + 1 < len(argv):
            module = argv[i + 1]
        elif arg.startswith("-m") and len(arg) > 2 and not arg.startswith("--"):
            module = arg[2:]  # -mipykernel_launcher, one word
        else:
            continue
        at = i - 1  # back over the interpreter's options, -X and -W with their values
        while at > 0 and (argv[at].startswith("-") or argv[at - 1] in _OPTIONS_WITH_VALUES):
            at -= 1
        if at < 0 or not _PYTHON_PROGRAM.match(os.path.basename(argv[at])):
            continue  # a prefix's own -m (numactl -m 0): the interpreter's comes later
        return at, module, tuple(argv[at + 1 : i])
    return None


def _word_at(argv: list[str], is_it: Callable[[str], bool]) -> int | None:
    """Where the first word whose program name ``is_it`` stands (None: none does)."""
    return next((i for i, word in enumerate(argv) if is_it(os.path.basename(word))), None)


def _program(argv: list[str], at: int, env: Mapping[str, str]) -> str | None:
    if at == 0:  # Jupyter starts argv[0] itself (a bare python is its own interpreter)
        program = checks.launch_program(argv[0], env=dict(env))  # on the kernel's PATH
        if os.sep not in program or checks.program_state(program) != checks.PROGRAM_OK:
            return None  # reported as missing-program already
        return program
    # A prefix finds it on the PATH it gives (after `env -i`, none: the system's default).
    return shutil.which(argv[at], path=env.get("PATH", os.defpath))


def probe_for(spec: dict[str, Any], environ: Mapping[str, str]) -> Probe | None:
    """The probe for this spec's kernel, or None when there is nothing to run here."""
    argv = checks.argv_strings(spec) or []
    env = launch_env(spec, environ)
    if not argv:
        return None
    container = containers.of_spec(spec)
    if container is not None and containers.is_generated(argv):
        return _container_probe(spec, container, env)
    python = _python_launcher(argv)
    module = "ipykernel_launcher"
    options: tuple[str, ...] = ()
    if python is not None:
        at, module, options = python
        kind = "python"
    elif "IRkernel::main()" in argv:
        # R itself, after any prefix (nice -n 3, env A=1, setsid -w): the prefix's program
        # run with R's arguments failed ("unrecognized option '--slave'") where R starts.
        found = _word_at(argv, lambda name: re.fullmatch(r"R(-[0-9.]+)?", name) is not None)
        if found is None:
            return None
        at, kind = found, "r"
    elif (found := _word_at(argv, lambda name: name.startswith("julia"))) is not None:
        at, kind = found, "julia"
    else:
        return None
    if any(os.path.basename(word) in _CONTAINER_RUNNERS for word in argv[:at]):
        return None  # it runs in the container's interpreter, not one of ours
    env = _through_env(argv[:at], env)
    program = _program(argv, at, env)
    if program is None:
        return None
    return _package_probe(kind, program, module, env, options)


def _through_env(prefix: list[str], env: dict[str, str]) -> dict[str, str]:
    """The environment the kernel gets where ``env`` runs it (``env -u PYTHONPATH python``,
    ``env PYTHONPATH=DIR python``): ``env``'s ``-i``, ``-u NAME`` and ``NAME=VALUE``
    applied. ``env`` unchanged for another prefix, or options this does not read."""
    if not prefix or os.path.basename(prefix[0]) != "env":
        return env
    given = dict(env)
    words = iter(prefix[1:])
    options = True  # GNU env reads options until `--` or its first NAME=VALUE
    for word in words:
        if options and word in ("-i", "--ignore-environment", "-"):
            given.clear()
        elif options and word in ("-u", "--unset"):
            given.pop(next(words, ""), None)
        elif options and word.startswith(("--unset=", "-u")):
            given.pop(word.split("=", 1)[1] if word.startswith("--") else word[2:], None)
        elif options and word in ("-C", "--chdir"):
            next(words, None)  # its dir: where the kernel starts, not what it imports
        elif options and (word.startswith(("--chdir=", "-C")) or word in _ENV_FLAGS):
            continue
        elif options and word == "--":
            options = False
        elif "=" in word and not word.startswith("-"):
            options = False
            name, value = word.split("=", 1)
            given[name] = value
        else:  # -S "...", or a word env would take for the program: not read here
            return env
    return given


_ENV_FLAGS = frozenset({"-0", "--null", "-v", "--debug"})


def _package_probe(
    kind: str, program: str, module: str, env: dict[str, str], options: tuple[str, ...] = ()
) -> Probe:
    """``program`` (a Python run with its ``options``) asked whether it can load its
    kernel's package (``module`` for Python)."""
    if kind == "python":
        # Found: what the clients' checks need (ipykernel's version, debugpy), read from
        # package metadata: importing ipykernel would take a second.
        code = (
            "import importlib.util as u, json, sys\n"
            f"u.find_spec({module!r}) or sys.exit({_MISSING})\n"
            "try:\n from importlib.metadata import version; v = version('ipykernel')\n"
            "except Exception:\n v = None\n"
            "print(json.dumps({'ipykernel': v, 'debugpy': u.find_spec('debugpy') is not None}))"
        )
        # Another kernel's module (bash_kernel, ...) is its own package's, usually so named.
        package = "ipykernel" if module == "ipykernel_launcher" else module.split(".")[0]
        fix = pip_install(program, package)
        return Probe((program, *options, "-c", code), env, f"cannot import {module}", fix)
    if kind == "r":
        code = f"if (!requireNamespace('IRkernel', quietly = TRUE)) quit(status = {_MISSING})"
        fix = f"{program} -e 'install.packages(\"IRkernel\")'"
        return Probe((program, "--slave", "-e", code), env, "cannot load IRkernel", fix)
    code = f"try; import IJulia; catch; exit({_MISSING}); end"
    fix = f"{program} -e 'using Pkg; Pkg.add(\"IJulia\")'"
    return Probe((program, "--startup-file=no", "-e", code), env, "cannot import IJulia", fix)


@dataclass(frozen=True)
class Failure:
    """Why a probe failed: its package is missing (``missing``: what ``Probe.fix``
    installs), or the interpreter did not get that far (``detail``: what it said)."""

    missing: bool
    detail: str


def run(probe: Probe) -> tuple[Failure | None, dict[str, Any]]:
    """(None, what it learnt) if the package loads; else (what went wrong, {})."""
    try:
        done = run_probe(probe.command, probe.env, TIMEOUT)
    except subprocess.TimeoutExpired:
        return Failure(False, f"did not answer within {TIMEOUT:.0f} s"), {}
    except OSError as exc:
        return Failure(False, f"cannot be run ({exc.strerror})"), {}
    except (UnicodeEncodeError, ValueError):  # reported as bad-argv or bad-env already
        return Failure(False, "cannot be run (its command or env cannot be given to it)"), {}
    if done.returncode == 0:
        return None, _facts(done.stdout)
    if done.returncode == _MISSING:
        return Failure(True, probe.missing), {}
    said = failure_in_one_line(done.stderr.decode(errors="replace"))
    return Failure(False, f"could not start (exit status {done.returncode}): {said}"), {}


def _facts(stdout: bytes) -> dict[str, Any]:
    """The JSON object a Python probe printed last (other languages print none)."""
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        found = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _container_probe(
    spec: dict[str, Any], container: containers.Container, env: dict[str, str]
) -> Probe | None:
    """The image's interpreter asked through the spec's own wrapper (the same runtime,
    binds, options and variables): a failure to start the container shows here too. None
    when the runtime or the image is not there (the doctor names which)."""
    if not os.access(container.program, os.X_OK) or (
        container.is_path and not os.path.exists(container.image)
    ):
        return None
    language = str(spec.get("language", "python")).lower()
    kind = {"r": "r", "julia": "julia"}.get(language, "python")
    inner = _package_probe(kind, container.kernel[0], "ipykernel_launcher", env)
    spec_env = {k: v for k, v in (spec.get("env") or {}).items() if isinstance(v, str)}
    command = containers.probe_command(container, spec_env, list(inner.command), kind == "python")
    package = {"python": "ipykernel", "r": "IRkernel", "julia": "IJulia"}[kind]
    label = f"{container.kernel[0]} in the image {container.image}"
    return Probe(tuple(command), env, inner.missing, f"install {package} in the image", label)
