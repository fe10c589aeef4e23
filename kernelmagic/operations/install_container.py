"""``install --container IMAGE``: a kernel that runs inside a container image.

The options and the one step that differs from any other install: the runtime is found in
the environment the source made (a ``module load apptainer`` works), and the image's own
interpreter is asked, through the wrapper the spec will run, for its version and kernel
package. Everything else (the source, capture, env, location, locks) is install's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from kernelmagic.domain import containers, languages, shells
from kernelmagic.errors import InvalidInput, SourceFailed
from kernelmagic.options import option

CONTAINER = option(
    "--container",
    metavar="IMAGE",
    help="run the kernel inside this container image: a .sif file or sandbox dir "
    "(Apptainer), a directory or SquashFS image (Charliecloud), a docker:// or registry "
    "reference; --python (or --program for R and julia) then names the interpreter inside "
    "(default: python3, R, julia)",
)
RUNTIME = option(
    "--runtime",
    choices=containers.RUNTIMES,
    help="with --container: the runtime that runs it (default: guessed from the image)",
)
BIND = option(
    "--bind",
    action="append",
    default=[],
    metavar="SRC[:DST]",
    help="with --container: also bind SRC at DST inside (repeatable); the connection "
    "file's directory is always bound",
)
CONTAINER_OPTION = option(
    "--container-option",
    action="append",
    default=[],
    metavar="ARG",
    help="with --container: give the runtime ARG as it is, e.g. "
    "--container-option=--cleanenv or --container-option=--nv (repeatable)",
)
OPTIONS = (CONTAINER, RUNTIME, BIND, CONTAINER_OPTION)


def container_from_args(
    ns: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> containers.Container | None:
    """The container the options name (its runtime guessed when not given; its program
    and kernel command are found at install); None without --container."""
    if ns.container is None:
        for flag, given in (("--runtime", ns.runtime), ("--bind", ns.bind)):
            if given:
                raise InvalidInput(f"{flag} goes with --container IMAGE")
        if ns.container_option:
            raise InvalidInput("--container-option goes with --container IMAGE")
        return None
    environ = os.environ if environ is None else environ
    image = containers.image_reference(ns.container)
    runtime = ns.runtime or containers.guess_runtime(image, environ)
    for bind in ns.bind:
        if not bind or bind.startswith(":"):
            raise InvalidInput(f"--bind {bind!r}: give SRC or SRC:DST")
    return containers.Container(
        image, runtime, (), binds=tuple(ns.bind), options=tuple(ns.container_option)
    )


def check_request(
    container: containers.Container, *, kernel: str, like: str | None, origin: str
) -> None:
    """The install options that cannot go with --container, refused before any work."""
    if like is not None:
        raise InvalidInput("--like copies an installed spec; it cannot go with --container")
    if origin == "conda":
        raise InvalidInput(
            "--from-conda runs the env's python on this machine; a container kernel runs "
            "the image's (use --python PATH for the one inside)"
        )
    if origin == "python":
        raise InvalidInput("with --container, the interpreter inside goes in program, not source")
    if kernel not in DEFAULT_PROGRAMS:
        raise InvalidInput(f"--kernel {kernel} cannot run in a container")


def build(
    container: containers.Container,
    *,
    kernel: str,
    program: str | None,
    env: Mapping[str, str],
    environment: Mapping[str, str],
    timeout: float,
) -> tuple[dict[str, Any], containers.Container, str]:
    """(spec, container as recorded, version): the runtime found on ``environment``'s PATH
    (what the source made), the image asked through the wrapper with the spec's ``env``."""
    from kernelmagic.domain import probes  # a container's alone; every install loads this module

    found = dataclasses.replace(
        container, program=containers.find_runtime(container.runtime, environment)
    )
    launch = probes.launch_env({"env": dict(env)}, environment)
    return _build_spec(found, kernel, program, env, launch, timeout)


def populate_for(kernel: str, ipykernel_files: Callable[[str], None]) -> Callable[[str], None]:
    """A Python kernel gets ipykernel's logos (the host's copy); R and Julia in an image
    have no files here to copy."""
    return ipykernel_files if kernel == "python" else os.makedirs


# --- what runs inside -------------------------------------------------------------------

DEFAULT_PROGRAMS = {"python": "python3", "ir": "R", "julia": "julia"}
_MISSING = 3  # the probe's exit status for "the kernel's package is not there"
_MARKER = languages.FACTS_MARKER  # an image's .Rprofile or banner prints before it
_PROBES = {
    "python": (
        f"import importlib.util as u, sys\nprint(); print('{_MARKER}')\n"
        "print('%d.%d' % sys.version_info[:2]); print(bool(u.find_spec('debugpy')))\n"
        f"sys.exit(0 if u.find_spec('ipykernel_launcher') else {_MISSING})"
    ),
    "ir": (
        f'cat("\\n{_MARKER}\\n", paste(R.version$major, sub("[.].*", "", R.version$minor), '
        'sep = "."), "\\n", sep = ""); '
        f'if (!requireNamespace("IRkernel", quietly = TRUE)) quit(status = {_MISSING})'
    ),
}
_PACKAGES = {"python": "ipykernel", "ir": "IRkernel", "julia": "IJulia"}


def probe_argv(kernel: str, program: str) -> list[str]:
    """The command that asks the interpreter inside the image for its version and whether
    it has the kernel's package (exit status 3 when not)."""
    if kernel == "python":
        return [program, "-c", _PROBES["python"]]
    if kernel == "ir":
        return [program, "--slave", "-e", _PROBES["ir"]]
    return [program, "--startup-file=no", "-e", languages.JULIA_PROBE]


def kernel_command(kernel: str, program: str, facts: list[str]) -> tuple[str, ...]:
    """The kernel's command inside the image: what ipykernel's, IRkernel's or IJulia's own
    installer would write there."""
    if kernel == "python":
        return (program, "-m", "ipykernel_launcher", "-f", "{connection_file}")
    if kernel == "ir":
        return (program, "--slave", "-e", "IRkernel::main()", "--args", "{connection_file}")
    return tuple(languages.julia_argv(facts))


def _build_spec(
    container: containers.Container,
    kernel: str,
    program: str | None,
    env: Mapping[str, str],
    launch_environ: Mapping[str, str],
    timeout: float,
) -> tuple[dict[str, Any], containers.Container, str]:
    """Ask the image's interpreter (through the wrapper, as the kernel will start) for its
    version and package, and make the spec: (spec without display name, the container with
    its kernel command, the version)."""
    program = program or DEFAULT_PROGRAMS[kernel]
    command = containers.probe_command(
        container, env, probe_argv(kernel, program), kernel == "python"
    )
    where = f"{program} in {container.image}"
    import subprocess  # only here, where a process runs (see shells)

    try:
        done = shells.run_probe(command, launch_environ, timeout)
    except subprocess.TimeoutExpired:
        raise SourceFailed(
            f"{container.runtime} did not run {where} within {timeout:g} s"
        ) from None
    stderr = done.stderr.decode("utf-8", "replace")
    facts = languages.facts_of(done.stdout)
    if done.returncode == _MISSING:
        raise InvalidInput(
            f"{where} cannot load {_PACKAGES[kernel]}; install it in the image, or name the "
            "interpreter that has it (--python or --program, a path inside the image)"
        )
    if done.returncode != 0 or not facts:
        said = shells.failure_lines(stderr)
        if container.binds and "can't mkdir" in stderr:  # ch-run: no mount point in the image
            said.append(
                "a --bind target must already exist in the image (a read-only image cannot "
                "get the directory): make it there, or bind to a directory it has"
            )
        raise InvalidInput(f"{container.runtime} could not run {where}", details=said)
    version = (
        facts[0].strip() if kernel != "julia" else (facts[1].strip() if len(facts) > 1 else "")
    )
    made = dataclasses.replace(container, kernel=kernel_command(kernel, program, facts))
    spec: dict[str, Any] = {
        "argv": containers.argv(made, env),
        "language": {"python": "python", "ir": "R", "julia": "julia"}[kernel],
        "interrupt_mode": "signal",
    }
    if kernel == "python":
        spec["metadata"] = {"debugger": len(facts) > 1 and facts[1].strip() == "True"}
    return spec, made, version
