"""What is wrong with a spec's env, found without running anything: values that look like
paths and point nowhere (a directory made on demand is only a note), ``${VAR}`` templates
naming variables that are not set, and what a batch job gave its own processes."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from string import Template

from kernelmagic.domain import containers, envcapture, projects
from kernelmagic.domain.checks import NOTE, Problem
from kernelmagic.domain.policy import (
    DEFAULT_POLICY,
    JOB_SCOPED,
    MASK,
    EnvPolicy,
    launcher_variable,
)
from kernelmagic.domain.provenance import Provenance
from kernelmagic.domain.spec_info import SpecInfo
from kernelmagic.jobs import JOB_SCOPED_NAMES, batch_job, in_job_temporary, is_job_scoped

_PATH_SUFFIXES = ("_DIR", "HOME", "_PATH", "_DATA", "_LIB", "_ROOT", "_PREFIX")
# Paths by name that no suffix above says (their value may hold a space: `~/my proj/.venv`).
_PATH_NAMES = frozenset({"VIRTUAL_ENV", "CONDA_ENV_PATH", "PIXI_PROJECT_MANIFEST"})
# Caches, configuration and state dirs that their programs create when first needed.
_MADE_ON_DEMAND = (
    "XDG_*_HOME", "*CACHE*", "MPLCONFIGDIR", "IPYTHONDIR", "JUPYTER_*_DIR", "*_STATE_DIR",
    "PYTHONPYCACHEPREFIX", "PYTHONUSERBASE", "HF_HOME", "TORCH_HOME", "KERAS_HOME",
    "R_LIBS_USER", "JULIA_DEPOT_PATH", "CONDA_PKGS_DIRS", "TMPDIR",
)  # fmt: skip
_TEMPLATE_NAMES = re.compile(
    r"\$(?:\{(?P<braced>[_a-zA-Z][_a-zA-Z0-9]*)\}|(?P<named>[_a-zA-Z][_a-zA-Z0-9]*))"
)


def _looks_like_a_path(name: str, value: str) -> bool:
    """A variable whose value is a directory or file: by its name (``*_DIR``, ``*HOME``,
    ``PATH``-like, ...) or by a value that is one absolute path."""
    if name.endswith(_PATH_SUFFIXES) or name in _PATH_NAMES or envcapture.is_path_like(name):
        return True
    return os.path.isabs(value) and not any(c.isspace() for c in value) and "=" not in value


def _made_on_demand(name: str) -> bool:
    """A directory its program creates the first time it needs it: absent is normal."""
    return envcapture.matches_any(name, _MADE_ON_DEMAND)


def env_problems(
    info: SpecInfo, environ: Mapping[str, str], policy: EnvPolicy = DEFAULT_POLICY
) -> list[Problem]:
    problems = []
    # A container kernel's paths are inside its image: nothing here to look at.
    inside_image = containers.of_spec(info.spec) is not None
    for name, value in sorted(info.env.items()):
        if not isinstance(value, str):
            continue
        unset = sorted(
            {
                m.group("braced") or m.group("named")
                for m in _TEMPLATE_NAMES.finditer(value.replace("$$", ""))
            }
            - set(environ)
        )
        if unset:
            problems.append(
                Problem(
                    "undefined-template",
                    f"env {name} uses ${{{unset[0]}}}, which is not set here; Jupyter leaves it "
                    "as literal text unless the process that starts the kernel sets it",
                    unset[0],
                )
            )
        expanded = Template(value).safe_substitute(environ)
        # A hub's URL prefix (JUPYTERHUB_DEFAULT_URL=/lab) is no directory; the job check says
        # what is wrong with such a variable.
        if inside_image or launcher_variable(name) or not _looks_like_a_path(name, expanded):
            continue
        entries = expanded.split(os.pathsep) if envcapture.is_path_like(name) else [expanded]
        missing = [
            e for e in entries if os.path.isabs(e) and "$" not in e and not os.path.exists(e)
        ]
        if not missing:
            continue
        # The path is shown, so it is shown as `show` would: a secret variable's value (a
        # key that happens to start with "/") stays hidden.
        shown = MASK if policy.is_secret(name) else policy.mask_text(missing[0])
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        if _made_on_demand(name):
            problems.append(
                Problem(
                    "missing-dir",
                    f"env {name} points to {shown}{more}, which does not exist yet; "
                    "its program creates it when it first needs it",
                    shown,
                    severity=NOTE,
                )
            )
            continue
        problems.append(
            Problem(
                "missing-dir",
                f"env {name} points to {shown}{more}, which does not exist; reinstall "
                "the environment or set it right",
                shown,
                fix=f"env -k {info.name} {name}=...",
            )
        )
    return problems


def job_scoped(
    info: SpecInfo, policy: EnvPolicy, environ: Mapping[str, str] | None = None
) -> list[Problem]:
    """What a batch job, a job step's launcher or the hub gave one process, captured into the
    spec: devices, threads, scheduler and MPI wire-up variables, values holding the job's id.
    Every later kernel, in every later job, would use them. Only what kernelmagic captured
    and nobody changed since: a value set by hand (``--env``, ``patch --env``, ``env -k``, a
    document, a spec written by hand) or by a snippet, modules or an activation is a choice,
    left alone."""
    record = Provenance.of_spec(info.spec)
    if record is None:
        return []
    explicit = set(record.explicit)
    captured = {
        name: value
        for name, value in info.env.items()
        if isinstance(value, str)
        and name not in explicit
        and record.captured_digests.get(name) == envcapture.digests({name: value})[name]
    }
    jobs = _jobs_of(record, environ or {})
    # A program that lives in a job's directory goes with the job, and the variables that
    # point beside it with it: that is one problem, the program's (program_in_job_temporary),
    # not one `-u NAME` each, which would leave the spec as broken.
    program_job = _job_in(_program(info), jobs)
    # A snippet, modules or an activation ran in a clean login shell with no job: what it
    # set, it set on purpose, whatever the variable is called (docs/capture.md). Only this
    # session's own variables can be the job's by their names.
    by_name = record.source.origin == "current"
    problems = []
    for name, value in sorted(captured.items()):
        launcher = launcher_variable(name) if by_name else None
        holds_job = _job_in(value, jobs)
        if holds_job is not None and holds_job == program_job:
            continue
        if not ((by_name and name in JOB_SCOPED_NAMES) or launcher or holds_job):
            continue
        if launcher:
            what = f"what the {launcher} set for one process"
        elif holds_job:
            what = f"a value holding the id of batch job {holds_job}"
        else:
            what = "what a batch job gave its own processes (devices, threads)"
        problems.append(
            Problem(
                JOB_SCOPED,
                f"env {name}={policy.mask_env({name: value})[name]} is {what}; every kernel of "
                "this spec, in every later job, would use it: remove it so that each kernel "
                "inherits its launcher's",
                name,
                fix=f"env -k {info.name} -u {name}",
            )
        )
    return problems


def _program(info: SpecInfo) -> str:
    argv = info.spec.get("argv")
    return argv[0] if isinstance(argv, list) and argv and isinstance(argv[0], str) else ""


def _jobs_of(record: Provenance | None, environ: Mapping[str, str]) -> list[str]:
    """The ids of the job the spec was captured in and of the job this runs in."""
    jobs = [record.job.split()[-1]] if record is not None and record.job else []
    current = batch_job(environ)
    if current:
        jobs.append(current[1])
    return jobs


def _job_in(value: str, jobs: list[str]) -> str | None:
    """The first of ``jobs`` whose id ``value`` holds (a path in ``/tmp/slurm-4242``)."""
    return next((job for job in jobs if is_job_scoped("", value, ("", job))), None)


def program_in_job_temporary(info: SpecInfo, environ: Mapping[str, str]) -> list[Problem]:
    """A spec whose program lives in this job's TMPDIR, or in a directory named for the job
    it was made in: sites remove both when the job ends."""
    program = _program(info)
    temporary = in_job_temporary(program, environ)
    if temporary is not None:
        where = f"this job's temporary directory {temporary}, which goes when the job ends"
    else:
        job = _job_in(program, _jobs_of(Provenance.of_spec(info.spec), environ))
        if job is None:
            return []
        where = f"a directory of batch job {job} (its id is in the path), which goes with it"
    return [
        Problem(
            "job-temporary",
            f"program {program} is in {where}, and the spec with it; make the environment "
            "somewhere that stays (your home or project directory) and install the spec "
            "from there",
            program,
        )
    ]


def problems(info: SpecInfo, environ: Mapping[str, str], policy: EnvPolicy) -> list[Problem]:
    """Every problem of the spec's env: a module it was made with that is gone (named once,
    with the variables that point where it was), paths that point nowhere, templates naming
    unset variables, job-scoped values."""
    found = (
        env_problems(info, environ, policy)
        + job_scoped(info, policy, environ)
        + project_drift(info)
    )
    temporary = program_in_job_temporary(info, environ)
    if temporary:  # the variables that point into its environment go with it: one problem
        where = os.path.dirname(_program(info))
        where = os.path.dirname(where) if os.path.basename(where) == "bin" else where
        beside = where.rstrip(os.sep) + os.sep
        if beside != os.sep:
            found = [
                p for p in found
                if not (p.kind == "missing-dir" and f"{p.value}/".startswith(beside))
            ]  # fmt: skip
    found += temporary
    gone = _gone_modules(info)
    if not gone:
        return found
    nowhere = sorted({p.message.split()[1] for p in found if p.kind == "missing-dir"})
    where = f" ({', '.join(nowhere)} point where it was)" if nowhere else ""
    fix = f"refresh {info.name}"
    modules = [
        Problem(
            "module-gone",
            f"module {name} is gone: its modulefile {path} does not exist{where}; load what "
            "replaces it in the source, or refresh if the same name now loads it",
            name,
            fix=fix,
        )
        for name, path in gone.items()
    ]
    return modules + [p for p in found if p.kind != "missing-dir"]


def project_gone(info: SpecInfo) -> list[Problem]:
    """A project spec whose project's dir is gone (``remove --missing`` prunes it; a spec a
    scan made, ``remove --project-gone`` too)."""
    record = Provenance.of_spec(info.spec)
    if record is None or record.project is None or not projects.gone(record.project):
        return []
    root = str(record.project.get("root"))
    fix = "remove --project-gone" if record.scan_root else f"remove {info.name}"
    made = f" (made by a scan of {record.scan_root})" if record.scan_root else ""
    return [Problem("project-gone", f"its project {root} is gone{made}", root, fix=fix)]


def project_drift(info: SpecInfo) -> list[Problem]:
    """A project spec whose lockfile or interpreter changed since it was made."""
    record = Provenance.of_spec(info.spec)
    if record is None or record.project is None:
        return []
    gone = project_gone(info)
    if gone:  # its lockfile and perhaps its interpreter went with it: one problem says so
        return gone
    reasons = projects.drift(record.project)
    root = str(record.project.get("root", ""))
    found = []
    if reasons:
        found.append(
            Problem(
                "project-drift",
                f"{'; '.join(reasons)}: its env may no longer be the project's; refresh "
                "re-captures it",
                root,
                fix=f"refresh {info.name}",
            )
        )
    unknown = projects.drift_unknown(record.project)
    if unknown:
        found.append(Problem("project-drift-unknown", unknown, root, severity=NOTE))
    return found


def _gone_modules(info: SpecInfo) -> dict[str, str]:
    """The modules the spec was made with whose modulefile is not there any more."""
    record = Provenance.of_spec(info.spec)
    if record is None:
        return {}
    return {name: path for name, path in record.modulefiles.items() if not os.path.exists(path)}
