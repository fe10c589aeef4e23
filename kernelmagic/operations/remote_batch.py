"""``remote SRC NEW --engine slurm``: kernels that run as batch jobs, through kernelmagic's own
provisioner (``kernelmagic.batch``), with the scheduler's own words as options.

No installer runs: the job runs SRC's own command, and the options become the provisioner's
config. PBS, LSF and Flux would each be a ``kernelmagic.batch.provisioner.BatchScheduler``
and an entry of ``checks.BATCH_PROVISIONERS``.
"""

from __future__ import annotations

import functools
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from kernelmagic.domain import checks
from kernelmagic.domain.policy import EnvPolicy, recorded_policy
from kernelmagic.domain.provenance import Provenance, Source
from kernelmagic.domain.shells import failure_in_one_line
from kernelmagic.errors import InvalidInput
from kernelmagic.jobs import batch_job
from kernelmagic.operations import spec_writes
from kernelmagic.options import option
from kernelmagic.storage import discovery, transactions
from kernelmagic.version import __version__

# engine -> the provisioner that starts kernels as jobs of that scheduler
BATCH_ENGINES = {engine: name for name, engine in checks.BATCH_PROVISIONERS.items()}
BATCH_FIELDS = ("partition", "time", "cpus", "mem", "gres", "account", "qos", "nodes")
JOB_OPTIONS = (*BATCH_FIELDS, "sbatch_options", "allocation", "launch_timeout")
PREREQUISITES = {
    "slurm": (
        "srun, squeue, scancel and sinfo on PATH wherever Jupyter runs (the login node or "
        "the hub's host); on the compute nodes the same program path ({python}) with its "
        "kernel (ipykernel, IRkernel, IJulia) and, for R or Julia, a python3 on PATH (it runs "
        "the launcher). "
        "Nodes must reach this host's address (the job's SLURM_SUBMIT_HOST) on the ports the "
        "kernel picks; a job that waits in the queue longer than launch_timeout (300 s; "
        "--provisioner-config launch_timeout=N) is cancelled with its state and reason."
    ),
}

BATCH_OPTIONS = (
    option("--partition", metavar="PARTITION", help="slurm: the partition to submit to"),
    option("--time", metavar="LIMIT", help="slurm: the job's time limit, e.g. 04:00:00"),
    option("--cpus", type=int, metavar="N", help="slurm: CPUs for the kernel (--cpus-per-task)"),
    option("--mem", metavar="SIZE", help="slurm: memory for the job, e.g. 8G"),
    option("--gres", metavar="LIST", help="slurm: generic resources, e.g. gpu:1"),
    option("--account", metavar="ACCOUNT", help="slurm: the account charged"),
    option("--qos", metavar="QOS", help="slurm: the quality of service"),
    option("--nodes", type=int, metavar="1", help="slurm: nodes (a kernel is one process: 1)"),
    option(
        "--sbatch-option",
        dest="sbatch_options",
        action="append",
        default=[],
        metavar="OPTION",
        help="slurm: any other option of srun/sbatch, e.g. --sbatch-option=--constraint=a100 "
        "(repeatable)",
    ),
    option(
        "--allocation",
        metavar="JOBID",
        help="slurm: run the kernel as a step of this allocation (salloc --no-shell)",
    ),
)

# Slurm's --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds, or no limit.
_SLURM_TIME = re.compile(
    r"\d+(:\d{1,2}){0,2}|\d+-\d{1,2}(:\d{1,2}){0,2}|UNLIMITED|INFINITE", re.IGNORECASE
)


_SLURM_MEM = re.compile(r"\d+[KMGT]?", re.IGNORECASE)  # srun refuses 8GB, and lots


def slurm_time_problem(value: str) -> str | None:
    """Why ``value`` is not a Slurm time limit, or None if it is one."""
    if _SLURM_TIME.fullmatch(value.strip()):
        return None
    return (
        f"--time {value!r} is not a Slurm time limit (minutes, MM:SS, HH:MM:SS, D-HH, "
        "D-HH:MM or D-HH:MM:SS)"
    )


def check_job(engine: str, job: Mapping[str, Any]) -> None:
    """Refuse job options the scheduler would refuse or that cannot go together (the
    request's constructor calls this, so Python refuses what the CLI does)."""
    unknown = set(job) - set(JOB_OPTIONS)
    if unknown:
        raise InvalidInput(f"unknown job option(s): {', '.join(sorted(unknown))}")
    if job.get("nodes", 1) != 1:
        raise InvalidInput("--nodes must be 1: a kernel is one process on one node")
    # "" (and 0 CPUs) is the provisioner's default, the scheduler's own: how a patch drops
    # an option (walk S: `mem=""` was refused, `gres=""` taken).
    time_problem = slurm_time_problem(str(job["time"])) if job.get("time") else None
    if time_problem:
        raise InvalidInput(time_problem)
    if "cpus" in job and int(job["cpus"]) < 0:
        raise InvalidInput("--cpus must be at least 1 (0: the scheduler's default)")
    if job.get("mem") and not _SLURM_MEM.fullmatch(str(job["mem"]).strip()):
        raise InvalidInput(
            f"--mem {job['mem']!r} is not a Slurm memory size (a number of MB, or with K, M, "
            "G or T: 8G)"
        )
    if job.get("allocation"):
        if not re.fullmatch(r"\d+", str(job["allocation"])):
            raise InvalidInput(f"--allocation {job['allocation']!r} is not a job id")
        clash = sorted(set(job) & {"partition", "time", "account", "qos", "nodes"})
        if clash:
            raise InvalidInput(
                f"--allocation runs in that job's partition and time; drop "
                f"{', '.join('--' + key for key in clash)}"
            )
    for extra in job.get("sbatch_options", ()):
        if not str(extra).startswith("-"):
            raise InvalidInput(f"--sbatch-option {extra!r} is not an option (--name=value)")
        taken = _taken(str(extra))
        if taken:
            raise InvalidInput(f"--sbatch-option {extra!r}: {taken}")
    timeout = job.get("launch_timeout", 1)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise InvalidInput(f"launch_timeout must be a number of seconds above 0, not {timeout!r}")


def _taken(word: str) -> str | None:
    """Why an srun option is kernelmagic's own (None: it is not). srun takes any unambiguous
    start of a long option's name (``--jobi`` for ``--jobid``): each start is one."""
    if not word.startswith("--"):
        return _TAKEN_OPTIONS.get(word[:2])
    given = word.split("=", 1)[0]
    if len(given) < 3:
        return None
    found = [why for name, why in _TAKEN_OPTIONS.items() if name.startswith(given)]
    return found[0] if found else None


# srun's options that the provisioner sets or reads itself: another value would make it lose
# the job (it asks the queue about it by its name), cancel an allocation it does not own
# (with --jobid it takes the job as its own), read the connection from the wrong stream, or
# start the kernel without its env.
_NAMED = "kernelmagic names the job (kernel-ID-...) to find it in the queue"
_STREAMS = "the job's stdio carries the connection and the client's end: kernelmagic's own"
_TAKEN_OPTIONS = {
    "--job-name": _NAMED, "-J": _NAMED,
    "--jobid": "to run in an allocation you hold, use --allocation JOBID",
    "--input": _STREAMS, "-i": _STREAMS, "--output": _STREAMS, "-o": _STREAMS,
    "--error": _STREAMS, "-e": _STREAMS, "--pty": _STREAMS, "--label": _STREAMS, "-l": _STREAMS,
    "--ntasks": "a kernel is one task", "-n": "a kernel is one task",
    "--export": "the kernel gets the spec's env through the job's environment: kernelmagic's own",
    "--nodes": "use --nodes (a kernel is one process on one node)", "-N": "use --nodes",
}  # fmt: skip


def absolute_interpreter(info: discovery.SpecInfo) -> str:
    """The spec's program as an absolute path (a bare name looked up on PATH here)."""
    argv = info.spec.get("argv") or []
    if not argv:
        raise InvalidInput(f"'{info.name}' has an empty argv: no interpreter to carry over")
    program = argv[0]
    if not isinstance(program, str):
        raise InvalidInput(f"'{info.name}' starts its argv with {program!r}, not a program")
    if not os.path.isabs(program):
        found = shutil.which(program)
        if not found:
            raise InvalidInput(
                f"'{info.name}' starts '{program}', which is not on PATH here; give it an "
                "absolute interpreter path first (patch its argv)"
            )
        program = found
    return program


def make_batch_spec(
    source: discovery.SpecInfo, *, engine: str, name: str, kernels_dir: str,
    config: Mapping[str, Any], policy: EnvPolicy, replace: bool, dry_run: bool,
) -> tuple[transactions.Change, str]:  # fmt: skip
    """NEW: SRC's argv, env and files, started by the batch provisioner with ``config`` (the
    job options and the provisioner's own). Returns the change and the prerequisites to say."""
    provisioner = BATCH_ENGINES[engine]
    if checks.provisioner_name(source.spec) not in (None, "local-provisioner"):
        raise InvalidInput(
            f"'{source.name}' already starts through {checks.provisioner_name(source.spec)}; "
            "give a local spec as SRC"
        )
    argv = list(source.spec.get("argv") or [])
    if not any("{connection_file}" in arg for arg in argv):
        raise InvalidInput(f"'{source.name}' has no {{connection_file}} in its argv")
    python = absolute_interpreter(source)
    argv[0] = python
    policy = policy.joined(recorded_policy(source.spec))
    spec = {key: value for key, value in source.spec.items() if key != "metadata"}
    spec["argv"] = argv
    metadata = {k: v for k, v in (source.spec.get("metadata") or {}).items() if k != "kernelmagic"}
    metadata["kernel_provisioner"] = {"provisioner_name": provisioner, "config": dict(config)}
    spec["metadata"] = metadata
    record = Provenance.of_spec(source.spec)
    renamed = record.display_name_for(source.spec, source.name, name) if record else None
    spec["display_name"] = renamed or f"{source.display_name or source.name} ({engine})"
    Provenance(
        Source("remote"),
        remote_from=source.name,
        engine=engine,
        extra_secrets=policy.extra_secrets,
        extra_noise=policy.extra_noise,
        version=__version__,
        generated_display_name=renamed,
    ).write_into(spec)
    slot = transactions.reserve(kernels_dir, name, replace=replace, dry_run=dry_run)
    populate = transactions.copy_files(source.resource_dir)
    change = spec_writes.write_spec(slot, "installed", spec, populate, policy)
    return change, PREREQUISITES[engine].format(python=python)


def spec_batch_problems(spec: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``batch_problems`` of a spec started by a batch provisioner; none for any other."""
    provisioner = checks.provisioner_name(spec)
    if provisioner not in checks.BATCH_PROVISIONERS:
        return []
    config = spec["metadata"]["kernel_provisioner"].get("config")
    return batch_problems(provisioner, config if isinstance(config, dict) else {})


def batch_problems(provisioner: str, config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, message, value) for what keeps a batch spec from starting here: the
    scheduler's commands missing from PATH, a scheduler that does not answer, a partition
    the cluster does not have or that is not up, an allocation that is no longer running, a
    time limit the scheduler would refuse. ``sinfo`` is asked once for all specs (see
    ``partitions``), ``squeue`` only for an allocation."""
    engine = checks.BATCH_PROVISIONERS[provisioner]
    commands = ("srun", "squeue", "scancel", "sinfo")
    missing = [command for command in commands if shutil.which(command) is None]
    if missing:
        return [
            (
                "scheduler-missing",
                f"{engine}: {', '.join(missing)} not on PATH here, so Jupyter cannot submit "
                "this kernel (run Jupyter where the scheduler's commands are: a login node)",
                missing[0],
            )
        ]
    found = []
    # What srun takes where the spec names none: the user's SLURM_PARTITION and
    # SLURM_TIMELIMIT, passed to it outside a job (inside one, none are).
    defaults = {} if batch_job(os.environ) else os.environ
    limit = config.get("time") or defaults.get("SLURM_TIMELIMIT")
    if isinstance(limit, str) and slurm_time_problem(limit):
        found.append(("bad-time-limit", str(slurm_time_problem(limit)), limit))
    listed = partitions(os.environ.get("SLURM_CONF"), os.environ.get("PATH"))
    partition = config.get("partition") or defaults.get("SLURM_PARTITION")
    partition = partition if isinstance(partition, str) and partition else None
    if isinstance(listed, str):  # not a pass: the scheduler did not answer
        checked = (
            f"neither '{partition}' nor the kernel's submission"
            if partition
            else ("the kernel's submission")
        )
        found.append((
            "scheduler-unreachable",
            f"{engine}: sinfo could not list the partitions ({listed}), so {checked} can be "
            "checked here, and srun would fail the same way",
            partition or "",
        ))  # fmt: skip
        return found
    found += _partition_problems(engine, partition, listed, limit, config)
    allocation = config.get("allocation")
    if isinstance(allocation, str) and allocation:
        state, owner = _job_state(allocation)
        me = pwd.getpwuid(os.getuid()).pw_name
        if state == "RUNNING" and owner != me:
            found.append((
                "allocation-not-yours",
                f"{engine}: allocation {allocation} is {owner}'s, so Slurm refuses a step of "
                f"yours in it; hold one of your own (salloc --no-shell ...) and point the "
                "spec at it",
                allocation,
            ))  # fmt: skip
        elif state in ("PENDING", "CONFIGURING"):
            found.append((
                "allocation-pending",
                f"{engine}: allocation {allocation} is {state}, so no step can run in it "
                f"until it starts (squeue --jobs={allocation})",
                allocation,
            ))  # fmt: skip
        elif state != "RUNNING":
            found.append((
                "allocation-gone",
                f"{engine}: allocation {allocation} is "
                f"{state or 'not in the queue (it ended)'}, so no step can run in it; hold "
                "a new one (salloc --no-shell ...) and point the spec at it",
                allocation,
            ))  # fmt: skip
    return found


def _partition_problems(
    engine: str,
    asked: str | None,
    listed: Mapping[str, Partition],
    limit: Any,
    config: Mapping[str, Any],
) -> list[tuple[str, str, str]]:
    """What keeps a job of the partitions ``asked`` (a list, as srun takes it; None: the
    cluster's default) from ever starting: one the cluster lacks (srun refuses the job),
    or, in every one of them, the partition down, no node that takes jobs, a time limit
    over the partition's (the job waits in the queue for good), or no node with the CPUs,
    memory or generic resources the spec asks for (``_resource_problems``)."""
    if asked is None:
        default = [name for name, partition in listed.items() if partition.default]
        if not default:
            return []
        names, what = default, f"the default partition '{default[0]}'"
    else:
        names, what = [n for n in asked.split(",") if n], f"partition '{asked}'"
    unknown = [name for name in names if name not in listed]
    hidden = _listed_by_sinfo_all() if unknown else set()
    if any(name in hidden for name in unknown):
        return []  # hidden, or not open to your groups: only srun can tell which
    if unknown:
        return [(
            "unknown-partition",
            f"{engine}: no partition '{unknown[0]}' (sinfo lists: "
            f"{', '.join(sorted(listed)) or 'none'})",
            asked or "",
        )]  # fmt: skip
    chosen = [listed[name] for name in names]
    if all(p.availability != "up" for p in chosen):
        states = ", ".join(sorted({p.availability for p in chosen}))
        return [(
            "partition-down",
            f"{engine}: {what} is {states} (sinfo): a job there waits in the queue until an "
            "admin brings it up",
            asked or "",
        )]  # fmt: skip
    if not any(p.availability == "up" and p.takes_jobs for p in chosen):
        return [(
            "partition-down",
            f"{engine}: {what} has no node that takes jobs (sinfo: every node drained, down "
            "or not responding): a job there waits in the queue until one is back",
            asked or "",
        )]  # fmt: skip
    seconds = _seconds(limit) if isinstance(limit, str) else None
    limits = [p.max_seconds for p in chosen if p.availability == "up" and p.takes_jobs]
    if seconds is not None and all(m is not None and seconds > m for m in limits):
        return [(
            "bad-time-limit",
            f"{engine}: --time {limit} is over {what}'s limit (sinfo): srun refuses a job "
            "asking for it, or it waits in the queue for good (PartitionTimeLimit), as the "
            "cluster enforces partition limits",
            limit,
        )]  # fmt: skip
    return _resource_problems(engine, what, config, [p for p in chosen if p.availability == "up"])


def _resource_problems(
    engine: str, what: str, config: Mapping[str, Any], chosen: list[Partition]
) -> list[tuple[str, str, str]]:
    """What the spec asks of one node that no node of its partitions has (walk Q: only
    ``--launch`` found them): more CPUs (the job waits in the queue for good), more memory
    or a generic resource none has (srun refuses the job at once)."""
    shapes = [shape for partition in chosen for shape in partition.shapes]
    if not shapes:
        return []
    found = []
    asked = _asked_of_a_node(config)
    most = _most(shape.cpus for shape in shapes)
    if asked.cpus is not None and most is not None and asked.cpus[0] > most:
        found.append((
            "too-many-cpus",
            f"{engine}: {asked.cpus[1]} is more than any node of {what} has ({most}, sinfo): "
            "the job waits in the queue for good",
            str(asked.cpus[0]),
        ))  # fmt: skip
    most = _most(shape.memory_mb for shape in shapes)
    if asked.memory is not None and most is not None and asked.memory[0] > most:
        found.append((
            "too-much-memory",
            f"{engine}: {asked.memory[1]} is more than any node of {what} has ({most}M, "
            "sinfo): srun refuses the job",
            asked.memory[1],
        ))  # fmt: skip
    for item, said in asked.gres:
        kind, _, count = item.rpartition(":")
        kind, count = (kind, count) if count.isdigit() else (item, "1")
        if not kind or kind.lower() == "none":  # srun's --gres=none: none asked
            continue
        if max(_gres_count(shape.gres, kind) for shape in shapes) >= int(count):
            continue
        offered = sorted({shape.gres for shape in shapes if shape.gres})
        found.append((
            "unknown-gres",
            f"{engine}: no node of {what} has {said} (sinfo: "
            f"{'; '.join(offered) or 'no generic resources'}): srun refuses the job",
            said,
        ))  # fmt: skip
    return found


class _Asked(NamedTuple):
    """What a job asks of its node, each with the option that says it."""

    cpus: tuple[int, str] | None
    memory: tuple[int, str] | None  # MB
    gres: list[tuple[str, str]]


def _asked_of_a_node(config: Mapping[str, Any]) -> _Asked:
    """The spec's --cpus, --mem and --gres, then its --sbatch-option ones, which srun takes
    after them, so the last of each wins (walk S: `--sbatch-option=--gpus=3` passed)."""
    cpus = config.get("cpus")
    asked_cpus = (cpus, f"--cpus {cpus}") if type(cpus) is int and cpus > 0 else None
    mem = config.get("mem")
    size = _megabytes(mem) if isinstance(mem, str) else None
    memory = (size, f"--mem {mem}") if size else None
    gres = config.get("gres")
    items = [i.strip() for i in gres.split(",") if i.strip()] if isinstance(gres, str) else []
    asked_gres = [(item, f"--gres {item}") for item in items]
    for given in config.get("sbatch_options") or ():
        name, _, value = str(given).partition("=")
        if not name.startswith("--"):  # a short one: -c16, -c=16, -G2
            name, value = str(given)[:2], str(given)[2:].lstrip("=")
        if name in ("--cpus-per-task", "-c") and value.isdigit():
            asked_cpus = (int(value), str(given))
        elif name in ("--mem", "--mem-per-cpu") and _megabytes(value):
            # Only what one CPU's share alone rules out: whether srun multiplies it by the
            # CPUs depends on the cluster's select plugin (this one started 2 x 1 MB on 1 MB).
            memory = (_megabytes(value) or 0, str(given))
        elif name == "--gres":
            asked_gres = [(i.strip(), str(given)) for i in value.split(",") if i.strip()]
        elif name in ("--gpus", "-G", "--gpus-per-node", "--gpus-per-task") and value:
            asked_gres.append((f"gpu:{value}", str(given)))
    return _Asked(asked_cpus, memory, asked_gres)


def _most(values: Iterable[int | None]) -> int | None:
    """The largest, or None when any is unknown (then no limit is certain)."""
    values = list(values)
    return None if not values or None in values else max(v for v in values if v is not None)


def _megabytes(size: str) -> int | None:
    """A Slurm memory size (``8G``; a bare number is MB) in MB; None for 0 (all of it)."""
    match = re.fullmatch(r"(\d+)([KMGT]?)", size.strip(), re.IGNORECASE)
    if match is None or int(match[1]) == 0:
        return None
    scale = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[match[2].upper()]
    return max(1, int(int(match[1]) * scale))


def _gres_count(offered: str, kind: str) -> int:
    """How many of ``kind`` (``gpu`` or ``gpu:a100``) one node offering ``offered`` (sinfo's
    ``%G``: ``gpu:a100:4(S:0-1),mps:100``) has."""
    total = 0
    for name, _sockets in re.findall(r"([^,(]+)(\([^)]*\))?", offered):
        have, _, count = name.strip().rpartition(":")
        have, count = (have, count) if count.isdigit() else (name.strip(), "1")
        # `gpu` asks for any type of gpu: `gpu:a100:4` counts; `gpu:a100` asks for that one.
        if have == kind or have.startswith(kind + ":"):
            total += int(count)
    return total


def _seconds(limit: str) -> int | None:
    """A Slurm time limit in seconds (None: unlimited, or not one)."""
    text = limit.strip()
    if not _SLURM_TIME.fullmatch(text) or text.upper() in ("UNLIMITED", "INFINITE"):
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS: the clock starts at hours
        parts = [*parts, 0, 0][:3]
    elif len(parts) == 1:  # minutes
        parts = [0, parts[0], 0]
    elif len(parts) == 2:  # MM:SS
        parts = [0, *parts]
    hours, minutes, secs = parts
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + secs


def ask_the_cluster_again() -> None:
    """Forget what sinfo said: each doctor or notebook run asks once, the cluster as it is."""
    partitions.cache_clear()
    _listed_by_sinfo_all.cache_clear()


@functools.lru_cache(maxsize=1)
def _listed_by_sinfo_all() -> set[str]:
    """The partitions ``sinfo --all`` lists: with the hidden ones, and those not open to
    the user's groups (asked only for a name sinfo did not list)."""
    try:
        listed = subprocess.run(
            ["sinfo", "--all", "--noheader", "--format=%P"],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
    except (subprocess.TimeoutExpired, OSError):
        return set()
    return {line.strip().rstrip("*") for line in listed.stdout.splitlines() if line.strip()}


@dataclass(frozen=True)
class NodeShape:
    """What one kind of node of a partition has (sinfo ``--exact``: None where not a
    number): CPUs, memory in MB, generic resources (``%G``, "" for none)."""

    cpus: int | None
    memory_mb: int | None
    gres: str


@dataclass(frozen=True)
class Partition:
    """A partition as sinfo lists it: up/down/drain/inact, whether jobs go there without
    one named, whether any node takes jobs, its time limit (None: unlimited), and the
    kinds of node it has."""

    availability: str
    default: bool = False
    takes_jobs: bool = True
    max_seconds: int | None = None
    shapes: tuple[NodeShape, ...] = ()


# sinfo's short node states that take a job (not drained, down, failed, not responding *).
_TAKES_JOBS = frozenset({"idle", "mix", "mixed", "alloc", "allocated", "comp", "completing",
                         "resv", "reserved", "plnd", "planned"})  # fmt: skip


@functools.lru_cache(maxsize=4)
def partitions(conf: str | None, path: str | None) -> dict[str, Partition] | str:
    """Each partition as ``sinfo`` lists it (``Partition``), or why sinfo could not, for the
    cluster ``SLURM_CONF`` names and the ``sinfo`` on ``PATH`` (the key of the answer). One
    answer serves every spec of a run: a controller that does not answer costs its 20 s
    once; ``doctor.diagnose`` asks afresh each run."""
    try:
        listed = subprocess.run(
            # --exact: a line per kind of node, not "2+" for nodes of 2 CPUs and more.
            ["sinfo", "--noheader", "--exact", "--format=%P|%a|%l|%t|%c|%m|%G"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "no answer within 20 s"
    except OSError as exc:
        return exc.strerror or str(exc)
    if listed.returncode != 0:
        return failure_in_one_line(listed.stderr) or f"exit status {listed.returncode}"
    found: dict[str, Partition] = {}
    for line in listed.stdout.splitlines():
        name, availability, limit, state, cpus, memory, gres = [*line.strip().split("|", 6),
                                                                *[""] * 7][:7]  # fmt: skip
        default = name.endswith("*")
        name = name.rstrip("*")
        if not name:
            continue
        takes = state.rstrip("~#!%$@^-").lower() in _TAKES_JOBS and not state.endswith("*")
        seen = found.get(name)
        shape = NodeShape(
            int(cpus) if cpus.strip().isdigit() else None,
            int(memory) if memory.strip().isdigit() else None,
            "" if gres.strip() in ("", "(null)") else gres.strip(),
        )
        found[name] = Partition(
            availability.strip() or "up",
            default,
            takes or (seen is not None and seen.takes_jobs),  # a line per node state
            _seconds(limit) if limit.strip().lower() != "infinite" else None,
            (*(seen.shapes if seen is not None else ()), shape),
        )
    return found


def _job_state(job: str) -> tuple[str, str]:
    """The job's state and owner as squeue lists them (state "" when it is not listed:
    ended, or unknown)."""
    try:
        listed = subprocess.run(
            ["squeue", "--noheader", f"--jobs={job}", "--format=%T %u"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError):
        return "unknown (squeue did not answer)", ""
    if listed.returncode != 0 or not listed.stdout.strip():
        return "", ""
    state, _, owner = listed.stdout.strip().split("\n")[0].strip().partition(" ")
    return state, owner.strip()
