"""Make the environment a ``Source`` describes: this session's, or what a shell snippet,
``module load``, a conda activation or a venv sets; and the interpreter that runs in it.

A snippet runs in one clean login shell; the environment is recorded right before and right
after it in that same shell, and the difference goes through the capture rules of
``envcapture`` (noise, secrets, PATH templates, ``$`` escaping). Nothing here imports IPython.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from string import Template
from typing import Any

from kernelmagic.domain import envcapture, shells
from kernelmagic.domain.provenance import Source
from kernelmagic.domain.shell_syntax import escape_dollars
from kernelmagic.errors import InvalidInput, SourceFailed
from kernelmagic.jobs import batch_job, in_job_temporary

SHELL_TIMEOUT = 300.0  # conda activation on a busy shared filesystem can take a while
PROBE_TIMEOUT = 60.0
# Passed from the session into the clean login shell besides identity and locale: without
# it Lmod and Environment Modules would not find the user's own modulefiles.
_KEEP_FROM_SESSION = ("MODULEPATH",)
_CONDA_TOOLS = ("conda", "mamba", "micromamba")


# --- running a snippet -----------------------------------------------------------------


def run_snippet(
    snippet: str,
    *,
    shell: str | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float = SHELL_TIMEOUT,
    what: str = "the snippet",
) -> tuple[dict[str, str], dict[str, str]]:
    """Run ``snippet`` in one clean login shell that keeps the session's MODULEPATH; return
    its environment before and after. Raises ``SourceFailed`` if the snippet fails."""
    return shells.run_in_login_shell(
        snippet,
        environ=os.environ if environ is None else environ,
        also_keep=_KEEP_FROM_SESSION,
        shell=shell,
        timeout=timeout,
        what=what,
    )


# --- conda -----------------------------------------------------------------------------


def find_conda(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(executable, flavour) of the installed conda, mamba or micromamba."""
    environ = os.environ if environ is None else environ
    candidates = [environ.get("CONDA_EXE"), environ.get("MAMBA_EXE")]
    candidates += [shutil.which(tool, path=environ.get("PATH")) for tool in _CONDA_TOOLS]
    for exe in candidates:
        if exe and os.path.isfile(exe) and os.access(exe, os.X_OK):
            name = os.path.basename(exe)
            return exe, "micromamba" if name.startswith("micromamba") else "conda"
    raise SourceFailed(
        "no conda found: looked at $CONDA_EXE, $MAMBA_EXE and for conda, mamba, micromamba "
        "on PATH; activate conda in this session or install it"
    )


def conda_snippet(env: str, environ: Mapping[str, str] | None = None) -> str:
    """The activation conda's own shell hook performs, so activate.d scripts and
    ``conda env config vars`` are honoured."""
    exe, flavour = find_conda(environ)
    quoted_exe, quoted_env = _quote(exe), _quote(env)
    if flavour == "micromamba":
        return f'eval "$({quoted_exe} shell activate -s posix {quoted_env})"'
    return f'eval "$({quoted_exe} shell.posix activate {quoted_env})"'


def _quote(text: str) -> str:
    return shlex.quote(text)


# --- interpreters ----------------------------------------------------------------------


@dataclass
class Interpreter:
    """A Python interpreter as probed: where it is, its version, whether it has ipykernel."""

    path: str
    prefix: str
    version: tuple[int, int]
    has_ipykernel: bool
    has_kernelmagic: bool = True  # so that %load_ext kernelmagic works in its kernels
    # What its ipykernel's spec depends on, for another interpreter than this one: its
    # sys.version, whether it can import debugpy, its ipykernel's package dir.
    ipykernel_facts: tuple[str, bool, str] | None = None


_PROBE = (
    "import importlib.util as u, json, sys\n"
    "k = u.find_spec('ipykernel')\n"
    "print(json.dumps({'prefix': sys.prefix, 'version': sys.version_info[:2],"
    " 'ipykernel': k is not None,"
    " 'kernelmagic': u.find_spec('kernelmagic') is not None,"
    " 'facts': [sys.version, u.find_spec('debugpy') is not None,"
    " (k.submodule_search_locations or [''])[0] if k else '']}))"
)


def probe_interpreter(path: str, environ: Mapping[str, str] | None = None) -> Interpreter | None:
    """Run ``path`` once to learn its prefix, version and whether it has ipykernel."""
    import subprocess  # only here, where a process runs (see shells)

    try:
        done = shells.run_probe(
            [path, "-c", _PROBE], os.environ if environ is None else environ, PROBE_TIMEOUT
        )
        found = json.loads(done.stdout.decode().strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    if done.returncode != 0:
        return None
    return Interpreter(
        path,
        found["prefix"],
        tuple(found["version"]),
        found["ipykernel"],
        found["kernelmagic"],
        (str(facts[0]), bool(facts[1]), str(facts[2])) if (facts := found["facts"])[2] else None,
    )


# What decides whether a Python starts at all and where it finds ipykernel: a module that
# sets them for its own Python (PYTHONHOME) can make another interpreter fail to start.
PYTHON_STARTUP = (
    "PYTHONHOME", "PYTHONPATH", "PYTHONPLATLIBDIR", "PYTHONUSERBASE", "PYTHONNOUSERSITE",
)  # fmt: skip


def refuse_broken_start(
    interpreter: Interpreter,
    env: Mapping[str, str],
    environ: Mapping[str, str],
    advice: Callable[[str], str],
) -> None:
    """``InvalidInput`` when ``env`` (a spec's, ``${NAME}`` filled from ``environ`` as
    Jupyter fills it) sets what decides how Python starts otherwise than ``environ`` does,
    and the interpreter, run with it, cannot import ipykernel: the kernel would never start.
    Asked only then (one short run), as ``environ`` is the one the interpreter was known to
    work in. ``advice(name)``: what the caller's user can do about the variable ``name``."""
    launch = {**environ, **{k: Template(v).safe_substitute(environ) for k, v in env.items()}}
    changed = [name for name in PYTHON_STARTUP if launch.get(name) != environ.get(name)]
    if not changed:
        return
    found = probe_interpreter(interpreter.path, launch)
    if found is not None and found.has_ipykernel:
        return
    fails = "cannot import ipykernel" if found is not None else "does not start"
    names = ", ".join(f"{name}={launch[name]}" for name in changed)
    raise InvalidInput(
        f"the kernel's interpreter {interpreter.path} {fails} with this env ({names}); "
        f"{advice(changed[0])}"
    )


def run_ipykernel_installer(python: str, environ: Mapping[str, str], timeout: float) -> Any:
    """The kernel.json ``python -m ipykernel install`` writes, parsed: run with that
    interpreter's own ipykernel, into a throw-away prefix; ``SourceFailed`` when it cannot."""
    import subprocess  # only here, where a process runs (see shells)

    with tempfile.TemporaryDirectory(prefix="kernelmagic-ipykernel-") as prefix:
        argv = [python, "-m", "ipykernel", "install", "--prefix", prefix, "--name", "asked"]
        try:
            done = shells.run_probe(argv, environ, timeout)
        except subprocess.TimeoutExpired:
            raise SourceFailed(f"{python}'s ipykernel installer ran over {timeout:g} s") from None
        except OSError as exc:
            raise SourceFailed(f"cannot run {python}: {exc.strerror or exc}") from None
        written = os.path.join(prefix, "share", "jupyter", "kernels", "asked", "kernel.json")
        try:
            with open(written, "rb") as file:
                return json.loads(file.read().decode("utf-8"))
        except (OSError, ValueError):
            said = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no spec"]
            raise SourceFailed(f"{python} -m ipykernel install failed: {said[0]}") from None


def first_python(environ: Mapping[str, str]) -> str | None:
    """The python3 or python a shell with ``environ`` runs (the first one on its PATH)."""
    for directory in environ.get("PATH", "").split(os.pathsep):
        for program in ("python3", "python"):
            candidate = os.path.join(directory, program)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    return None


def this_interpreter() -> Interpreter:
    """The interpreter running kernelmagic (it has ipykernel: a dependency)."""
    has = importlib.util.find_spec("ipykernel") is not None
    return Interpreter(sys.executable, sys.prefix, sys.version_info[:2], has)


def _require_ipykernel(path: str, environ: Mapping[str, str]) -> Interpreter:
    found = probe_interpreter(path, environ)
    if found is None:
        raise InvalidInput(f"{path} is not a Python interpreter that can be run")
    if not found.has_ipykernel:
        raise InvalidInput(
            f"{path} cannot import ipykernel; install it there: "
            f"{shells.pip_install(path, 'ipykernel')}"
        )
    return found


def _is_conda_prefix(prefix: str) -> bool:
    return os.path.isdir(os.path.join(prefix, "conda-meta"))


def _is_venv(prefix: str) -> bool:
    return os.path.isfile(os.path.join(prefix, "pyvenv.cfg"))


# --- from a source to an environment ---------------------------------------------------


@dataclass
class MadeEnvironment:
    """The outcome of making an environment: the interpreter and the chosen variables."""

    interpreter: Interpreter | None  # None when no Python kernel was asked for
    result: envcapture.CaptureResult
    loaded_modules: str | None = None  # LOADEDMODULES after the source ran
    modulefiles: dict[str, str] = field(default_factory=dict)  # module -> its modulefile
    environment: dict[str, str] = field(default_factory=dict, repr=False)  # all of it
    project: dict[str, Any] | None = None  # --project: what the spec records for drift


def module_command(modules: str) -> str:
    """``module load`` of these space-separated modules, each quoted: a module name is one
    word of the command, never shell syntax."""
    return " ".join(["module", "load", *(_quote(word) for word in modules.split())])


def script_for(source: Source, environ: Mapping[str, str]) -> str | None:
    """The shell text that makes the environment ``source`` describes (None: no shell)."""
    if source.origin == "snippet":
        return source.snippet or ""
    if source.origin == "modules":
        return module_command(source.modules or "")
    if source.origin == "conda":
        return conda_snippet(source.conda_env or "", environ)
    return None


def make_environment(
    source: Source,
    options: envcapture.CaptureOptions,
    environ: Mapping[str, str] | None = None,
    *,
    timeout: float = SHELL_TIMEOUT,
    python: bool = True,
) -> MadeEnvironment:
    """Run the source and choose the variables; raises ``SourceFailed``/``InvalidInput``.

    ``timeout`` bounds the login shell that runs a snippet, modules or an activation;
    ``python`` False means the kernel is another language's: no interpreter is chosen.
    """
    environ = dict(os.environ if environ is None else environ)
    if source.origin == "project":
        return _from_project(source, options, environ, timeout, python)
    if source.origin == "current":
        made = _from_current(options, environ, timeout)
        made.environment = environ
        return made
    if source.origin == "python" and source.python:
        return _from_interpreter(source, options, environ, timeout)
    script = script_for(source, environ)
    try:
        before, after = run_snippet(
            script or "", shell=source.shell, environ=environ, timeout=timeout, what=source.action()
        )
    except SourceFailed as exc:
        raise gone_modules(source, exc) from None
    # The job is the session's: a clean login shell does not carry the job's variables, so
    # whatever differs after the snippet is what it (its exports, modules, activation) set.
    result = envcapture.capture(
        after, options, baseline=before, job=batch_job(environ), on_purpose=True
    )
    result.baseline = "the shell right before the snippet"
    result.notes += scheduler_references(script or "")
    loaded = after.get("LOADEDMODULES") or None
    modulefiles = modules_loaded(after)
    if not python:
        return MadeEnvironment(None, result, loaded, modulefiles, environment=after)
    interpreter = _choose_interpreter(source, before, after, result.notes)
    result.notes += _without_kernelmagic(interpreter)
    return MadeEnvironment(interpreter, result, loaded, modulefiles, environment=after)


# ``$SLURM_JOB_ID``, ``${PBS_JOBID}``, ``$SLURM_TMPDIR``: a job's own variables in a snippet.
_SCHEDULER_REFERENCE = re.compile(
    r"\$\{?((?:SLURM|SLURMD|PBS|LSB|FLUX|COBALT|SGE|PMI|PMIX)_[A-Za-z0-9_]*|JOB_ID)\b"
)


def scheduler_references(script: str) -> list[str]:
    """A note for each job variable a snippet uses: the snippet runs in a clean login shell
    that has no job, and the spec is made once for every later kernel, so it is empty."""
    names = sorted(set(_SCHEDULER_REFERENCE.findall(script)))
    if not names:
        return []
    shown = ", ".join(f"${{{name}}}" for name in names)
    return [
        f"Warning: the snippet uses {shown}, a batch job's own variable(s): the snippet runs "
        "in a clean login shell with no job, so it came out empty, and a spec holds one value "
        "for every later kernel; use a directory that does not depend on the job, or set it "
        "in the kernel's own code"
    ]


def job_temporary_notes(interpreter: str, environ: Mapping[str, str]) -> list[str]:
    """A warning when the kernel's interpreter is in this job's TMPDIR (gone with the job)."""
    temporary = in_job_temporary(interpreter, environ)
    if temporary is None:
        return []
    return [
        f"Warning: the interpreter {interpreter} is in this job's temporary directory "
        f"{temporary}, which goes when the job ends, and the kernel with it; make the "
        "environment somewhere that stays (home or project directory)"
    ]


# What Lmod and Environment Modules say of a module they cannot find.
_UNKNOWN_MODULE = re.compile(r"unknown|unable to locate a modulefile", re.IGNORECASE)


# Where a `module use` lives that neither the kernel nor a login shell reads (below the
# interactive check of Debian's ~/.bashrc), a snippet can say it before the load.
MODULE_USE_ADVICE = (
    "a `module use DIR` that only interactive shells run is not read here: put it above the "
    "`module load` in a snippet (%%kernel_install NAME or %%kernel_activate, or --snippet-file)"
)


def module_not_found(source: Source, failure: SourceFailed) -> bool:
    """Whether ``failure`` is a ``module load`` that failed because a module is not there."""
    return source.origin == "modules" and any(_UNKNOWN_MODULE.search(d) for d in failure.details)


def gone_modules(
    source: Source,
    failure: SourceFailed,
    unchanged: str = "nothing was written",
    *,
    searched: str | None = None,
) -> SourceFailed:
    """A ``module load`` that failed because a module is not there says so first, and after
    the tool's lines, the MODULEPATH ``searched`` (when known) and how to widen it."""
    if not module_not_found(source, failure):
        return failure
    where = (f"MODULEPATH searched: {searched}",) if searched else ()
    return SourceFailed(
        f"module load {source.modules}: a module is not available here (the module system "
        f"does not know it; `module spider NAME` shows what there is); {unchanged}",
        details=(*failure.details, *where, MODULE_USE_ADVICE),
    )


def modules_loaded(environ: Mapping[str, str]) -> dict[str, str]:
    """Module name -> its modulefile, of the modules loaded in ``environ`` (``LOADEDMODULES``
    and ``_LMFILES_``, which Lmod and Environment Modules both keep, in the same order)."""
    names = [n for n in environ.get("LOADEDMODULES", "").split(os.pathsep) if n]
    paths = [p for p in environ.get("_LMFILES_", "").split(os.pathsep) if p]
    return dict(zip(names, paths, strict=False)) if len(names) == len(paths) else {}


def _without_kernelmagic(interpreter: Interpreter) -> list[str]:
    """The note for a kernel whose interpreter cannot load the magics."""
    if interpreter.has_kernelmagic:
        return []
    return [
        f"{interpreter.path} cannot import kernelmagic, so %load_ext kernelmagic will fail in "
        f"this kernel; to use the magics there: "
        f"{shells.pip_install(interpreter.path, installed_from())}"
    ]


def installed_from() -> str:
    """What ``pip install`` needs to install this kernelmagic again (in another
    interpreter): the source checkout, wheel or repository it came from, as pip recorded
    (PEP 610 ``direct_url.json``), else its name on an index."""
    import importlib.metadata  # here: only a kernel without the magics needs it, and it is slow

    try:
        recorded = importlib.metadata.distribution("kernelmagic").read_text("direct_url.json")
        found = json.loads(recorded or "null")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        found = None
    if not isinstance(found, dict) or not isinstance(found.get("url"), str):
        return "kernelmagic"
    url = found["url"]
    vcs = found.get("vcs_info")
    if isinstance(vcs, dict) and isinstance(vcs.get("vcs"), str):
        return shlex.quote(f"{vcs['vcs']}+{url}")
    path = url.removeprefix("file://") if url.startswith("file://") else url
    return shlex.quote(urllib.parse.unquote(path))


def _from_project(
    source: Source,
    options: envcapture.CaptureOptions,
    environ: dict[str, str],
    timeout: float,
    python: bool,
) -> MadeEnvironment:
    """The environment the project's own tool made for it: found as that tool finds it,
    then made like the concrete source it amounts to (an interpreter, conda's activation,
    pixi's variables)."""
    from kernelmagic.domain import projects  # --project's alone: every install loads this module

    project = projects.detect(source.project or ".", environ, source.project_env)
    found = None
    if python and project.interpreter:
        found = probe_interpreter(project.interpreter, environ)
        if found is None:
            raise projects.interpreter_broken(project)
        if not found.has_ipykernel:
            raise projects.ipykernel_missing(project)
    concrete = project.source(source.shell)
    if found is not None and concrete.origin == "python":  # probed once, not again
        made = _from_interpreter(concrete, options, environ, timeout, found)
    else:
        made = make_environment(concrete, options, environ, timeout=timeout, python=python)
    made.project = project.record()
    made.project["name"] = project.name
    return made


def _from_current(
    options: envcapture.CaptureOptions, environ: dict[str, str], timeout: float
) -> MadeEnvironment:
    """This interpreter, with the variables of this session that its activation set."""
    try:
        result = envcapture.capture(environ, options, shell_timeout=timeout)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise InvalidInput(f"cannot use baseline {options.baseline_file}: {why}") from exc
    except ValueError as exc:
        raise InvalidInput(f"cannot use baseline {options.baseline_file}: {exc}") from exc
    loaded = environ.get("LOADEDMODULES") or None
    return MadeEnvironment(this_interpreter(), result, loaded, modulefiles=modules_loaded(environ))


def _choose_interpreter(
    source: Source, before: Mapping[str, str], after: Mapping[str, str], notes: list[str]
) -> Interpreter:
    """The kernel's interpreter: ``--python``; a conda env's own; else the python the snippet
    put first on PATH, when it changed that and the new one imports ipykernel; else this
    session's interpreter (the usual cluster case: modules bring GDAL or CUDA, not Python)."""
    if source.python:
        return _require_ipykernel(source.python, after)
    if source.origin == "conda":
        prefix = after.get("CONDA_PREFIX")
        if not prefix:
            raise SourceFailed(f"activating {source.conda_env!r} did not set CONDA_PREFIX")
        return _require_ipykernel(os.path.join(prefix, "bin", "python"), after)
    tried = []
    snippet_python = first_python(after)
    if snippet_python and snippet_python != first_python(before):
        found = probe_interpreter(snippet_python, after)
        if found and found.has_ipykernel:
            return found
        tried.append(f"{snippet_python} (first on the snippet's PATH)")
    own = this_interpreter()
    if own.has_ipykernel:
        if tried and snippet_python:
            notes.append(
                f"{snippet_python} cannot import ipykernel, so the kernel runs this session's "
                f"{own.path}; to run the snippet's Python instead: "
                f"{shells.pip_install(snippet_python, 'ipykernel')}"
            )
        return own
    tried.append(f"{own.path} (this session's)")
    fix = shells.pip_install(snippet_python or own.path, "ipykernel")
    raise InvalidInput(f"no interpreter that can import ipykernel: tried {', '.join(tried)}; {fix}")


def _from_interpreter(
    source: Source,
    options: envcapture.CaptureOptions,
    environ: dict[str, str],
    timeout: float,
    probed: Interpreter | None = None,
) -> MadeEnvironment:
    """A spec for another interpreter (``probed``: already run, with ipykernel): a venv gets
    VIRTUAL_ENV and its bin on PATH, a conda prefix is activated like --from-conda, any other
    interpreter gets no env."""
    path = os.path.abspath(source.python or "")
    interpreter = probed or _require_ipykernel(path, environ)
    if _is_conda_prefix(interpreter.prefix):
        conda = Source("conda", conda_env=interpreter.prefix, python=path, shell=source.shell)
        return make_environment(conda, options, environ, timeout=timeout)
    # The job it was made in is recorded as a capture's is: a venv made in the job's own
    # directory goes with the job, which the doctor says after the job too.
    result = envcapture.CaptureResult(
        baseline="the interpreter's environment", job=batch_job(environ)
    )
    result.notes += _without_kernelmagic(interpreter)
    if _is_venv(interpreter.prefix) and options.mode != "none":
        bin_dir = escape_dollars(os.path.dirname(path))
        result.env = {
            "VIRTUAL_ENV": escape_dollars(interpreter.prefix),
            "PATH": f"{bin_dir}{os.pathsep}${{PATH}}",
        }
    return MadeEnvironment(interpreter, result, environment=environ)
