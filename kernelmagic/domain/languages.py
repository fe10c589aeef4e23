"""Kernels for other languages: R (IRkernel), Julia (IJulia), and any installed spec used as
a template (``--like SPEC``), each with its program found through the captured environment.

Each kind asks its own program the questions its installer would (where R keeps IRkernel's
spec files, where Julia finds IJulia) and writes the spec that installer writes, directly:
no ``jupyter`` needs to be on R's or Julia's PATH.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kernelmagic.domain.provenance import SNIPPET_FILE, without_record
from kernelmagic.domain.shells import failure_lines, run_probe
from kernelmagic.domain.spec_info import SpecInfo
from kernelmagic.errors import InvalidInput, KernelmagicError, SourceFailed
from kernelmagic.reading import read_spec_file

KERNELS = ("python", "ir", "julia")  # --kernel
PROBE_TIMEOUT = 120.0  # R and Julia start slowly on a busy shared filesystem

# A probe prints its facts, one a line, after this line of its own: what an .Rprofile, a
# site's startup file or a wrapper prints before is no fact (``facts_of``).
FACTS_MARKER = "kernelmagic-facts:"
# Printed by R: the R to run, its version, IRkernel's spec files.
_R_PROBE = (
    f'cat("", "{FACTS_MARKER}", file.path(R.home("bin"), "R"), '
    'paste(R.version$major, sub("[.].*", "", R.version$minor), sep = "."), '
    'system.file("kernelspec", package = "IRkernel"), sep = "\\n")'
)
# Printed by Julia: the julia to run, its version, IJulia's dir, the active project, and
# whether IJulia has run_kernel (newer IJulia) or is started through src/kernel.jl.
JULIA_PROBE = (
    f'import IJulia; println(); println("{FACTS_MARKER}"); '
    "println(joinpath(Sys.BINDIR, Base.julia_exename())); "
    'println(VERSION.major, ".", VERSION.minor); println(pkgdir(IJulia)); '
    'println(something(Base.active_project(), "")); println(isdefined(IJulia, :run_kernel))'
)

_JULIA_LOGOS = ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg")  # as IJulia installs them


@dataclass
class Built:
    """A spec made for another language: its JSON, what was found, and the files that go
    beside it (those of ``files_from`` but ``leave_out``, and each of ``files``), which the
    caller copies when it writes the spec."""

    spec: dict[str, Any] = field(repr=False)
    program: str
    version: str
    files_from: str | None = None
    leave_out: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


def resolve_program(program: str, environ: Mapping[str, str]) -> str | None:
    """``program`` made absolute through ``environ``'s PATH (kept when already absolute)."""
    if os.path.isabs(program):
        return program if os.access(program, os.X_OK) else None
    return shutil.which(program, path=environ.get("PATH", ""))


def _ask(command: list[str], environ: Mapping[str, str], fix: str) -> list[str]:
    import subprocess  # only here, where a process runs (see shells)

    try:
        done = run_probe(command, environ, PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise SourceFailed(f"{command[0]} did not answer within {PROBE_TIMEOUT:g} s") from None
    except OSError as exc:
        raise SourceFailed(f"cannot run {command[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        said = failure_lines(done.stderr.decode("utf-8", "replace"))
        raise InvalidInput(f"{command[0]} failed; {fix}", details=said)
    return facts_of(done.stdout)


def facts_of(stdout: bytes) -> list[str]:
    """The lines a probe printed after its ``FACTS_MARKER`` (none without it)."""
    lines = stdout.decode("utf-8", "replace").splitlines()
    marked = [i for i, line in enumerate(lines) if line.endswith(FACTS_MARKER)]
    return lines[marked[-1] + 1 :] if marked else []


def _find(name: str, requested: str | None, environ: Mapping[str, str], what: str) -> str:
    program = resolve_program(requested or name, environ)
    if program is None and requested:  # a --program that names nothing: a bad argument
        where = "there (no executable file)" if os.sep in requested else "on the PATH"
        raise InvalidInput(f"--program {requested}: no {what} {where}")
    if program is None:  # an environment that lacks it: a failure, as "no conda found" is
        raise SourceFailed(
            f"no {what} found ({name} on the environment's PATH); load it first (--modules, "
            f"a snippet, --from-conda) or name it with --program PATH"
        )
    return program


def ir_spec(program: str | None, environ: Mapping[str, str]) -> Built:
    """The spec IRkernel's ``installspec()`` writes, for the R found in ``environ``."""
    r = _find("R", program, environ, "R")
    fix = f"install IRkernel for that R: {r} -e 'install.packages(\"IRkernel\")'"
    facts = _ask([r, "--slave", "-e", _R_PROBE], environ, fix)
    if len(facts) < 3 or not facts[2].strip():
        raise InvalidInput(f"{r} cannot load IRkernel; {fix}")
    r_exe, version, spec_dir = facts[0], facts[1], facts[2].strip()
    spec = read_spec_file(os.path.join(spec_dir, "kernel.json"))
    spec["argv"][0] = r_exe  # what installspec() does: R.home("bin")/R
    return Built(spec, r_exe, version, files_from=spec_dir, leave_out=("kernel.json",))


def julia_argv(facts: list[str]) -> list[str]:
    """The argv IJulia's installer writes, from what ``JULIA_PROBE`` printed."""
    exe, _, ijulia, project, has_run_kernel = (f.strip() for f in facts[:5])
    argv = [exe, "-i", "--color=yes"]
    if project:
        argv.append(f"--project={os.path.dirname(project)}")
    if has_run_kernel == "true":
        return [*argv, "-e", "import IJulia; IJulia.run_kernel()", "{connection_file}"]
    return [*argv, os.path.join(ijulia, "src", "kernel.jl"), "{connection_file}"]


def julia_spec(program: str | None, environ: Mapping[str, str]) -> Built:
    """The spec IJulia's ``installkernel`` writes, for the julia found in ``environ``."""
    julia = _find("julia", program, environ, "julia")
    fix = f"add IJulia to that julia: {julia} -e 'using Pkg; Pkg.add(\"IJulia\")'"
    facts = _ask([julia, "--startup-file=no", "-e", JULIA_PROBE], environ, fix)
    if len(facts) < 5:
        raise InvalidInput(f"{julia} did not say where IJulia is; {fix}")
    exe, version, ijulia = (f.strip() for f in facts[:3])
    spec = {
        "argv": julia_argv(facts),
        "display_name": f"Julia {version}",
        "language": "julia",
        "interrupt_mode": "message" if os.name == "nt" else "signal",
    }
    logos = (os.path.join(ijulia, "deps", logo) for logo in _JULIA_LOGOS)
    return Built(spec, exe, version, files=tuple(logo for logo in logos if os.path.isfile(logo)))


def like_spec(info: SpecInfo, program: str | None, environ: Mapping[str, str]) -> Built:
    """A copy of the installed spec ``info`` (argv, language, logos, metadata), its program
    found again through ``environ`` unless it is absolute."""
    argv = info.spec.get("argv")
    if not info.visible or not argv:
        why = info.problems[0] if info.problems else "it has no argv"
        raise KernelmagicError(f"cannot use '{info.name}' as a template: {why}")
    if not isinstance(argv, list) or not all(isinstance(word, str) for word in argv):
        raise KernelmagicError(
            f"cannot use '{info.name}' as a template: its argv is not a list of text (Jupyter "
            "lists it, but no client can start it)"
        )
    spec = without_record(copy.deepcopy(info.spec))
    spec.pop("env", None)
    first = spec["argv"][0]
    found = _find(first, program, environ, first)
    spec["argv"][0] = found
    # Not the template's own record of how it was made: its snippet file is not ours.
    leave_out: tuple[str, ...] = ("kernel.json", SNIPPET_FILE)
    if info.native:  # ipykernel's resources dir sits among its modules
        leave_out += ("*.py", "__pycache__")
    return Built(spec, found, "", files_from=info.resource_dir, leave_out=leave_out)


def build(
    kernel: str,
    environ: Mapping[str, str],
    *,
    program: str | None = None,
    like: SpecInfo | None = None,
) -> Built:
    """The spec of ``kernel`` (``ir``, ``julia``) or like the installed spec ``like``."""
    if like is not None:
        return like_spec(like, program, environ)
    if kernel == "ir":
        return ir_spec(program, environ)
    if kernel == "julia":
        return julia_spec(program, environ)
    raise InvalidInput(f"--kernel must be one of {', '.join(KERNELS)}, not {kernel!r}")


def generated_display_name(kernel: str, version: str, name: str) -> str:
    """The display name kernelmagic generates when none is given: ``Python 3.11 (geo)``."""
    label = {"python": "Python", "ir": "R", "julia": "Julia"}.get(kernel, kernel)
    return f"{label} {version} ({name})" if version else name
