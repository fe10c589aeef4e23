"""Explain every problem a kernel spec has, and remove the dead ones on request.

Beyond the cheap checks listing runs, the doctor starts each distinct Python interpreter once
(in parallel, with a timeout) to see whether it can import its launcher module, and looks for
shadowed names, env paths that do not exist and templates naming unset variables.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kernelmagic.domain import checks, clients, containers, env_checks, probes
from kernelmagic.domain.checks import PROBLEM, Problem
from kernelmagic.domain.ownership import TrustWalk
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.provenance import scan_root_of
from kernelmagic.domain.trust import TRUST_ADVICE, untrusted
from kernelmagic.errors import InvalidInput, KernelmagicError
from kernelmagic.operations import remote, remote_batch, spec_writes
from kernelmagic.storage import atomic, discovery, history, ipykernel_specs, lookups

MAX_PARALLEL = 8  # interpreters checked at once; each is mostly waiting on its own startup


@dataclass
class Diagnosis:
    """One spec's problems, as the doctor found them."""

    name: str
    resource_dir: str
    problems: list[Problem] = field(default_factory=list)
    clients: list[clients.Verdict] = field(default_factory=list)  # will it work in each


@dataclass
class Report:
    """Every spec the doctor checked, with what is wrong, and the specs ``--fix`` removed."""

    diagnoses: list[Diagnosis]
    removed: list[str] = field(default_factory=list)  # with --fix: the specs removed ...
    dry_run: bool = False  # ... or, with --dry-run, that would be

    @property
    def healthy(self) -> bool:
        """No problems (notes are not problems)."""
        return not any(p.severity == PROBLEM for d in self.diagnoses for p in d.problems)

    def to_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "specs": {
                d.name: {
                    "resource_dir": d.resource_dir,
                    "problems": [p.to_json() for p in d.problems],
                    "clients": {v.client: v.to_json() for v in d.clients},
                }
                for d in self.diagnoses
            },
            "removed": list(self.removed),
            "dry_run": self.dry_run,
        }


_UNRUNNABLE = frozenset({"bad-argv", "bad-env", "structure"})


def _interpreter_problems(
    infos: list[discovery.SpecInfo],
    environ: Mapping[str, str],
    named: frozenset[str],
    trust: bool,
    facts: dict[str, dict[str, Any]],
    walk: TrustWalk,
    refused: Mapping[str, list[Problem]],
) -> dict[str, list[Problem]]:
    """Probe every distinct (program, packages' variables) once, in parallel; a spec others
    can change only when it is named and ``trust`` is given. What a probe learnt of its
    interpreter goes into ``facts``, by spec name. ``walk`` is the run's trust walk; a spec
    ``refused`` names a problem for (exec would refuse it) is not probed."""
    jobs: dict[probes.ProbeKey, probes.Probe] = {}
    wanted: dict[str, probes.ProbeKey] = {}
    found: dict[str, list[Problem]] = {}
    probed = []
    for info in infos:
        # Not a spec exec refuses (a lone surrogate, Argument list too long): its probe would
        # fail for that, and answer so for every spec sharing its interpreter (walk W).
        found_before = (*info.problems, *refused.get(info.name, ()))
        unrunnable = any(p.kind in _UNRUNNABLE for p in found_before)
        probe = probes.probe_for(info.spec, environ) if info.visible and not unrunnable else None
        if probe is not None:
            probed.append((info, probe))
    # On descriptors the walks open themselves, never on earlier stats; the directories
    # above many specs walked once, and the specs' own overlapped (a shared filesystem).
    whys = lookups.overlapped(lambda pair: untrusted(pair[0], walk), probed)
    for (info, probe), why in zip(probed, whys, strict=True):
        if why and not (trust and info.name in named):
            found[info.name] = [
                Problem(
                    "not-probed",
                    f"not probed: {why}; {TRUST_ADVICE}",
                    why,
                )
            ]
            continue
        jobs.setdefault(probe.key, probe)
        wanted[info.name] = probe.key
    if not jobs:
        return found
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(jobs))) as pool:
        futures = {key: pool.submit(probes.run, probe) for key, probe in jobs.items()}
        outcome = {key: future.result() for key, future in futures.items()}
    for name, key in wanted.items():
        failure, learnt = outcome[key]
        if failure is None:
            if facts is not None:
                facts[name] = learnt
            continue
        program = jobs[key].interpreter
        if failure.missing:
            found[name] = [
                Problem(
                    "launcher-import",
                    f"interpreter {program} {failure.detail}; install it there "
                    f"({jobs[key].fix}) or point argv at another interpreter",
                    program,
                )
            ]
        else:  # it never got to the import: the spec's env or the program itself is broken
            found[name] = [
                Problem(
                    "cannot-start",
                    f"interpreter {program} {failure.detail}; check what the spec's env "
                    "sets for it (PYTHONHOME, PYTHONPATH, LD_LIBRARY_PATH, R_HOME, ...)",
                    program,
                    fix=f"show {name}",
                )
            ]
    return found


def _remote_problems(info: discovery.SpecInfo) -> list[Problem]:
    """A remote engine's launcher script that is gone; config keys its provisioner ignores."""
    name = checks.provisioner_name(info.spec)
    if not info.visible or not name or name == "local-provisioner":
        return []
    problems = []
    for arg in (info.spec.get("argv") or [])[1:]:
        script = os.path.isabs(arg) and arg.endswith((".py", ".sh", ".R", ".r", ".scala"))
        if script and not os.path.exists(arg):
            problems.append(
                Problem(
                    "missing-launcher",
                    f"launcher script {arg} does not exist; remake the spec",
                    arg,
                    fix=f"remote SRC {info.name} --engine ... --replace",
                )
            )
    stanza = info.spec["metadata"]["kernel_provisioner"]
    config = stanza.get("config") if isinstance(stanza.get("config"), dict) else {}
    if name in checks.BATCH_PROVISIONERS:
        # The one option to change, the others kept (the spec it was made from may be gone);
        # the scheduler's side has no command here to fix it.
        change = f"patch {info.name} --provisioner {name} --provisioner-config"
        fixes = {
            "unknown-partition": f"""{change} 'partition="PARTITION"'""",
            "partition-down": f"""{change} 'partition="PARTITION"'""",
            "bad-time-limit": f"""{change} 'time="HH:MM:SS"'""",
            "too-many-cpus": f"{change} 'cpus=N'",
            "too-much-memory": f"""{change} 'mem="SIZE"'""",
            "unknown-gres": f"""{change} 'gres="GRES"'""",
            "allocation-gone": f"""{change} 'allocation="JOBID"'""",
            "allocation-not-yours": f"""{change} 'allocation="JOBID"'""",
        }
        problems += [
            Problem(kind, message, value, fix=fixes.get(kind))
            for kind, message, value in remote_batch.spec_batch_problems(info.spec)
        ]
    if config:
        try:
            unknown, known = remote.unknown_options(name, config)
        except KernelmagicError:
            return problems  # cannot load the provisioner: its own problem says so
        problems += [
            Problem(
                "unknown-config",
                f"provisioner '{name}' has no option '{key}', so Jupyter ignores it "
                f"(options: {', '.join(known)})",
                key,
            )
            for key in unknown
        ]
    return problems


def _stats_of(paths: list[str], walk: TrustWalk) -> Callable[[str], os.stat_result]:
    """An ``os.stat`` for the dirs and files _unshared looks at: what the trust walk's fstat
    found where it opened them, the rest stat'ed overlapped (a slow shared filesystem)."""
    others = lookups.stats_of(p for p in paths if walk.seen(p) is None)

    def stat_path(path: str) -> os.stat_result:
        return walk.seen(path) or others(path)

    return stat_path


def _unshared(
    info: discovery.SpecInfo, stat_path: Callable[[str], os.stat_result] = os.stat
) -> list[Problem]:
    """A spec shared with a group (setgid dir) whose files its members cannot read, or
    reach; one in a group's kernels dir whose own dir is not the group's."""
    kernels_dir = os.path.dirname(info.resource_dir)
    try:
        found = stat_path(info.resource_dir)
        parent = stat_path(kernels_dir)
    except OSError:
        return []
    if info.native:
        return []
    group_kernels = parent.st_mode & stat.S_ISGID and parent.st_mode & 0o050 == 0o050
    if group_kernels and not found.st_mode & stat.S_ISGID:  # 0.2's clone lost the bit
        return [
            Problem(
                "not-shared",
                "in a group's kernels dir (setgid) but its own dir is not setgid, so what is "
                "written in it later gets the writer's own group; run: chgrp -R "
                f"{spec_writes.group_name(parent.st_gid)} {info.resource_dir} && chmod g+s "
                f"{info.resource_dir}",
                info.resource_dir,
            )
        ]
    if not found.st_mode & stat.S_ISGID:
        return []
    unreadable = []
    for path, needed in (
        (kernels_dir, 0o050),
        (info.resource_dir, 0o050),
        (info.kernel_json, 0o040),
    ):
        try:
            if stat_path(path).st_mode & needed != needed:
                unreadable.append(path)
        except OSError:
            continue
    if not unreadable:
        return []
    return [
        Problem(
            "not-shared",
            f"shared with a group (its dir is setgid) but members cannot read {unreadable[0]}; "
            f"run: chmod g+rX {kernels_dir} && chmod -R g+rX {info.resource_dir}",
            unreadable[0],
        )
    ]


def _exposed_secret(
    info: discovery.SpecInfo,
    policy: EnvPolicy,
    stat_path: Callable[[str], os.stat_result] = os.stat,
) -> list[Problem]:
    """A spec holding a secret whose kernel.json, or a backup of it, other users can read:
    written by hand or by another tool, or by a kernelmagic older than the rule that calls
    that value secret. A group's spec (setgid dir) shares its secrets with the group on
    purpose (install --include), never with everyone."""
    if info.native or not info.spec or not policy.holds_secrets(info.spec):
        return []
    try:
        shared = stat_path(info.resource_dir).st_mode & stat.S_ISGID
        mode = stat_path(info.kernel_json).st_mode
    except OSError:
        return []
    readers = 0o004 if shared else 0o044
    exposed = [info.kernel_json] if mode & readers else []
    with contextlib.suppress(OSError):
        exposed += sorted(
            entry.path
            for entry in os.scandir(info.resource_dir)
            if entry.name.startswith((atomic.BACKUP_PREFIX, atomic.UNDONE_PREFIX))
            and entry.is_file(follow_symlinks=False)
            and entry.stat(follow_symlinks=False).st_mode & readers
        )
    if not exposed:
        return []
    masked = policy.masked(info.spec)
    env, shown = info.spec.get("env"), masked.get("env")
    where = (
        [f"env {k}" for k in env if shown.get(k) != env[k]]
        if isinstance(env, dict) and isinstance(shown, dict)
        else []
    )
    where += ["argv"] if masked.get("argv") != info.spec.get("argv") else []
    return [
        Problem(
            "secret-readable",
            f"it holds a secret ({', '.join(where) or 'in its metadata'}) that other users "
            f"can read; run: chmod go-rw {' '.join(shlex.quote(p) for p in exposed)}",
            exposed[0],
        )
    ]


def _container_problems(info: discovery.SpecInfo) -> list[Problem]:
    """A container spec whose runtime or image is not on this machine."""
    container = containers.of_spec(info.spec) if info.visible else None
    if container is None:
        return []
    found = []
    if not (os.path.isfile(container.program) and os.access(container.program, os.X_OK)):
        found.append(
            Problem(
                "missing-runtime",
                f"its container runtime {container.program} is not there; install "
                f"{container.runtime}, or reinstall the spec where it is on PATH",
                container.program,
            )
        )
    pitfall = containers.tmp_bind_pitfall(container, os.environ)
    if pitfall is not None:
        message, fails_here = pitfall
        severity = checks.PROBLEM if fails_here else checks.NOTE
        found.append(Problem("tmp-bind", message, container.kernel[0], severity=severity))
    if container.is_path and not os.path.exists(container.image):
        found.append(
            Problem(
                "missing-image",
                f"its container image {container.image} is not there; put it back, or "
                "reinstall the spec with --container for the image now in use",
                container.image,
            )
        )
    return found


def _as_started(listed: discovery.SpecInfo, started: str) -> discovery.SpecInfo:
    """The spec a start takes, with what the listing shows instead said as a problem."""
    info = discovery.spec_at(listed.name, started)
    info.problems.append(
        Problem(
            "case-twin",
            f"two entries of '{listed.name}' differ in case in {os.path.dirname(started)}: "
            f"Jupyter lists {listed.resource_dir} but starts {started}; rename or remove one",
            started,
        )
    )
    return info


def _twins(shown: str, started: str) -> bool:
    """Whether the listing shows another entry of a kernels dir than a start takes."""
    return shown != started and os.path.dirname(shown) == os.path.dirname(started)


def _shadowing(info: discovery.SpecInfo, locations: Mapping[str, list[str]]) -> list[Problem]:
    if info.native:
        return []
    places = locations.get(info.name, [])
    if len(places) < 2:
        return []
    others = ", ".join(places[1:])
    this_env = os.path.join(discovery.location_dir(sys_prefix=True), "python3")
    if places[0] == this_env and all(_ipykernels_own(place) for place in places):
        # ipykernel puts a python3 spec in each environment it is installed in, and Jupyter
        # run from an environment takes that environment's (a venv's over Debian's
        # python3-ipykernel). A user-level python3 in front of it stays a problem: it pins
        # every environment to one interpreter.
        return [
            Problem(
                "shadowed",
                f"'python3' is ipykernel's own spec in {len(places)} environments; Jupyter uses "
                f"this environment's ({places[0]}), as it should",
                places[0],
                severity=checks.NOTE,
            )
        ]
    return [
        Problem(
            "shadowed",
            f"'{info.name}' exists in {len(places)} places; Jupyter uses {places[0]} and ignores "
            f"{others}; remove or rename the copy you do not want",
            places[0],
        )
    ]


def _ipykernels_own(resource_dir: str) -> bool:
    """Whether a spec dir holds the python3 spec ipykernel writes (for its interpreter)."""
    try:
        spec = discovery.read_spec_file(os.path.join(resource_dir, "kernel.json"))
    except (OSError, ValueError):
        return False
    return ipykernel_specs.is_ipykernel_spec(spec, executable=None)


def _invalid_name(info: discovery.SpecInfo) -> list[Problem]:
    dirname = os.path.basename(info.resource_dir)
    if info.native:
        return []
    try:
        discovery.validate_name(dirname)
    except InvalidInput:
        return [
            Problem(
                "invalid-name",
                f"directory name {dirname!r} breaks Jupyter's rule ({discovery.NAME_RULE}); "
                "rename the directory",
                dirname,
            )
        ]
    return []


@checks.one_look_per_program()  # thousands of specs, a few shared interpreters
def diagnose(
    names: Iterable[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    trust: bool = False,
    policy: EnvPolicy = DEFAULT_POLICY,
) -> Report:
    """Check every spec, or the named ones (``NoSuchKernelSpec`` for an unknown name);
    ``policy`` says which values are secrets, never to be shown in a problem."""
    environ = dict(os.environ if environ is None else environ)
    names = list(names)
    remote_batch.ask_the_cluster_again()  # the cluster as it is now, asked once this run
    if names:  # judged as a start takes them: said where the listing shows another entry
        infos = discovery.get_specs(names)
        shown = discovery.list_specs(keep=frozenset(i.name for i in infos).__contains__)
        listed = {i.name: i for i in shown}
        infos = [
            _as_started(listed[i.name], i.resource_dir)
            if i.name in listed and _twins(listed[i.name].resource_dir, i.resource_dir)
            else i
            for i in infos
        ]
    else:  # a start takes another entry than the listing shows: judge that one
        infos = discovery.list_specs()
        twins = discovery.case_twins(infos)
        infos = [_as_started(i, twins[i.name]) if i.name in twins else i for i in infos]
    named = frozenset(i.name for i in infos) if names else frozenset()
    facts: dict[str, dict[str, Any]] = {}
    # What exec refuses, before the probes: such a spec is not probed.
    refused = {i.name: checks.exec_problems(i.spec) if i.visible else [] for i in infos}
    with TrustWalk() as walk:  # one for the run: directories above many specs walked once
        interpreter = _interpreter_problems(infos, environ, named, trust, facts, walk, refused)
    stat_path = _stats_of(
        [
            p
            for i in infos
            for p in (i.kernel_json, i.resource_dir, os.path.dirname(i.resource_dir))
        ],
        walk,
    )
    locations = discovery.spec_locations(infos)  # one scan of the kernel dirs
    listings = clients.client_listings()  # the clients' config files, read once
    diagnoses = []
    for info in infos:
        problems = [*_invalid_name(info), *info.problems, *refused.get(info.name, [])]
        problems += interpreter.get(info.name, [])
        problems += _shadowing(info, locations) + _unshared(info, stat_path)
        problems += _container_problems(info)
        spec_policy = policy.with_recorded(info.spec)
        problems += env_checks.problems(info, environ, spec_policy) + _remote_problems(info)
        problems += clients.shebang_problems(info)
        problems += checks.provisioner_start_problems(info.spec) if info.visible else []
        problems += clients.interrupt_problems(info) + clients.claim_problems(
            info, facts.get(info.name, {})
        )
        verdicts = clients.verdicts(info, problems, listings)
        problems += clients.client_problems(verdicts)
        problems += _exposed_secret(info, spec_policy, stat_path)
        diagnoses.append(Diagnosis(info.name, info.resource_dir, problems, verdicts))
    return Report(diagnoses)


def is_dead(diagnosis: Diagnosis) -> bool:
    """A spec that cannot start because its program (an absolute path) is gone, or whose
    project is gone (a Poetry env in Poetry's cache outlives its project)."""
    return any(
        (p.kind == "missing-program" and p.value and os.path.isabs(p.value))
        or p.kind == "project-gone"
        for p in diagnosis.problems
    )


def remove_dead(report: Report, *, dry_run: bool = False) -> Report:
    """Remove the specs whose program is gone; the returned report lists what was removed
    (with ``dry_run``: what would be, nothing is).

    A spec that cannot be removed (no permission) stays in the report with that problem.
    """
    kept, removed = [], list(report.removed)
    for diagnosis in report.diagnoses:
        if not is_dead(diagnosis):
            kept.append(diagnosis)
            continue
        try:
            removed += history.remove_specs([diagnosis.name], dry_run=dry_run)
        except KernelmagicError as exc:
            diagnosis.problems.append(Problem("not-removed", f"could not remove it: {exc}"))
            kept.append(diagnosis)
            continue
        if dry_run:
            kept.append(diagnosis)
    return Report(kept, removed=removed, dry_run=dry_run)


def remove_missing(
    *, dry_run: bool = False, scanned_only: bool = False
) -> tuple[list[str], list[str]]:
    """Remove every spec whose program or project is gone (``remove --missing``), or only the
    scan-made ones whose project is (``--project-gone``); nothing is started for this.
    Returns the spec dirs removed, and why each one that could not be was not."""
    listed = []
    for i in discovery.list_specs():
        gone = env_checks.project_gone(i) if i.visible else []
        if scanned_only:
            listed.append(Diagnosis(i.name, i.resource_dir, gone if scan_root_of(i.spec) else []))
        else:
            listed.append(Diagnosis(i.name, i.resource_dir, [*i.problems, *gone]))
    report = remove_dead(Report(listed), dry_run=dry_run)
    failed = [
        f"'{d.name}': {p.message.removeprefix('could not remove it: ')}"
        for d in report.diagnoses for p in d.problems
        if p.kind == "not-removed"
    ]  # fmt: skip
    return report.removed, failed


# --- the command -----------------------------------------------------------------------
