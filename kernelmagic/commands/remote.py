"""``remote``: a spec like SRC that runs where an engine starts kernels (SSH hosts, Kubernetes
pods, Docker containers through gateway_provisioners; Slurm jobs through ``batch``), carrying
over SRC's interpreter, env and display name."""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from getpass import getuser
from typing import Any, ClassVar

from kernelmagic.commands.render import Shown, shown_change
from kernelmagic.domain import jupyter_rules
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy, recorded_policy
from kernelmagic.domain.provenance import Provenance, Source
from kernelmagic.domain.shell_syntax import parse_json_assignments
from kernelmagic.domain.shells import failure_lines
from kernelmagic.errors import InvalidInput, KernelmagicError
from kernelmagic.operations import remote_batch, spec_writes
from kernelmagic.operations.remote import (
    ENGINES,
    PREREQUISITES,
    PROVISIONER_CONFIG,
    check_config,
    check_remote_env,
    installer,
    job_of,
)
from kernelmagic.options import (
    DRY_RUN,
    LOCATION_OPTIONS,
    NEW_NAME,
    REPLACE,
    SOURCE_SPEC,
    Option,
    kernels_dir_from_args,
    option,
    user_kernels_dir,
)
from kernelmagic.settings import Settings
from kernelmagic.storage import discovery, transactions
from kernelmagic.version import __version__

SUMMARY = (
    "Make a spec that runs on other hosts, pods or containers (gateway_provisioners), "
    "carrying over SRC's interpreter, env and display name."
)

ENGINE = option(
    "--engine",
    choices=(*ENGINES, *remote_batch.BATCH_ENGINES),
    required=True,
    help="where the kernel runs: SSH hosts, Kubernetes pods, Docker containers, or a Slurm job",
)
HOST = option(
    "--host",
    dest="hosts",
    action="append",
    default=[],
    metavar="HOST",
    help="an SSH host to start kernels on (repeatable; hosts are used in turn)",
)
IMAGE = option("--image", metavar="IMAGE", help="the kernel image (kubernetes, docker)")


@dataclass(frozen=True)
class Request:
    """``remote``: a spec like ``source`` that runs where ``engine`` starts kernels."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (
        SOURCE_SPEC, NEW_NAME, ENGINE, HOST, IMAGE, *remote_batch.BATCH_OPTIONS, PROVISIONER_CONFIG,
        *LOCATION_OPTIONS, REPLACE, DRY_RUN,
    )  # fmt: skip

    source: str
    name: str
    engine: str
    kernels_dir: str = field(default_factory=user_kernels_dir)
    hosts: tuple[str, ...] = ()
    image: str | None = None
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # may hold a password
    replace: bool = False
    dry_run: bool = False
    policy: EnvPolicy = DEFAULT_POLICY
    # the scheduler's options (engine slurm): partition, time, ..., sbatch_options, allocation
    job: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", discovery.validate_name(self.name))
        object.__setattr__(self, "hosts", tuple(self.hosts))
        job = {key: value for key, value in self.job.items() if value not in (None, "", [], ())}
        object.__setattr__(self, "job", job)
        engines = [*ENGINES, *remote_batch.BATCH_ENGINES]
        if self.engine not in engines:
            raise InvalidInput(f"--engine must be one of {', '.join(engines)}")
        if self.engine in remote_batch.BATCH_ENGINES:
            if self.hosts or self.image:
                raise InvalidInput(f"--engine {self.engine} takes no --host or --image")
            remote_batch.check_job(self.engine, job)
            return
        if job:
            flags = ", ".join(
                "--sbatch-option" if key == "sbatch_options" else f"--{key}" for key in sorted(job)
            )
            raise InvalidInput(f"{flags}: only with --engine slurm")
        if self.engine == "ssh" and not self.hosts:
            raise InvalidInput("--engine ssh needs at least one --host")
        if self.engine != "ssh" and not self.image:
            raise InvalidInput(f"--engine {self.engine} needs --image IMAGE")

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> Request:
        job = {key: getattr(ns, key, None) for key in (*remote_batch.BATCH_FIELDS, "allocation")}
        job["sbatch_options"] = list(getattr(ns, "sbatch_options", None) or [])
        return cls(
            ns.source,
            ns.new_name,
            ns.engine,
            kernels_dir_from_args(ns, settings.default_location),
            tuple(ns.hosts),
            ns.image,
            parse_json_assignments(ns.provisioner_config, "--provisioner-config"),
            ns.replace,
            ns.dry_run,
            settings.policy,
            job,
        )


@dataclass
class Made:
    """The remote spec written, and what its engine needs wherever Jupyter starts it."""

    change: transactions.Change
    prerequisites: str


def run(request: Request) -> Made:
    return Made(*make_remote_spec(request))


def show(result: Made, style: str) -> Shown:
    return shown_change(result.change, diff=False,
                        after=[f"Remote prerequisites: {result.prerequisites}"])  # fmt: skip


def make_remote_spec(request: Request) -> tuple[transactions.Change, str]:
    """Create ``request.name`` with gateway_provisioners' installer for the engine, then carry
    over the source's interpreter (SSH), env and display name. Returns the change and the
    remote prerequisites to tell the user."""
    name = request.name
    source = discovery.get_spec(request.source)
    if source.problems and not source.visible:
        raise KernelmagicError(f"cannot use '{source.name}': {source.problems[0]}")
    if request.engine in remote_batch.BATCH_ENGINES:
        config = {key: value for key, value in request.job.items() if key != "nodes"}
        config.update(request.config)
        check_config(remote_batch.BATCH_ENGINES[request.engine], config)
        remote_batch.check_job(request.engine, job_of(config))  # --provisioner-config's too
        return remote_batch.make_batch_spec(
            source, engine=request.engine, name=name, kernels_dir=request.kernels_dir,
            config=config, policy=request.policy, replace=request.replace,
            dry_run=request.dry_run,
        )  # fmt: skip
    env = dict(source.env)
    if request.engine == "ssh":
        check_remote_env(env)
    program = installer(request.engine)
    provisioner = ENGINES[request.engine][1]
    check_config(provisioner, request.config)
    python = remote_batch.absolute_interpreter(source) if request.engine == "ssh" else None
    policy = request.policy.joined(recorded_policy(source.spec))

    slot = transactions.reserve(
        request.kernels_dir, name, replace=request.replace, dry_run=request.dry_run
    )
    with tempfile.TemporaryDirectory(prefix="kernelmagic-remote-") as stage:
        command = [program, "install", f"--prefix={stage}", f"--kernel-name={name}"]
        command += [f"--remote-hosts={h}" for h in request.hosts]
        if request.image:
            command.append(f"--image-name={request.image}")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        staged = os.path.join(stage, "share", "jupyter", "kernels", name)
        if done.returncode != 0 or not os.path.isfile(os.path.join(staged, "kernel.json")):
            raise KernelmagicError(
                f"{os.path.basename(program)} failed", details=failure_lines(done.stderr)
            )
        spec = discovery.read_spec_file(os.path.join(staged, "kernel.json"))
        final_dir = os.path.join(request.kernels_dir, name)
        # The installer wrote paths of the staging directory into argv.
        spec["argv"] = [arg.replace(staged, final_dir) for arg in spec.get("argv", [])]
        if python is not None and spec["argv"]:
            spec["argv"][0] = python
        if env:
            spec["env"] = {**(spec.get("env") or {}), **env}
        record = Provenance.of_spec(source.spec)
        renamed = record.display_name_for(source.spec, source.name, name) if record else None
        spec["display_name"] = renamed or f"{source.display_name or source.name} ({request.engine})"
        jupyter_rules.carry_protocol_fields(source.spec, spec)
        stanza = spec.setdefault("metadata", {}).setdefault(
            "kernel_provisioner", {"provisioner_name": provisioner, "config": {}}
        )
        stanza.setdefault("config", {}).update(request.config)
        record = Provenance(
            Source("remote"),
            remote_from=source.name,
            engine=request.engine,
            extra_secrets=policy.extra_secrets,
            extra_noise=policy.extra_noise,
            version=__version__,
            generated_display_name=renamed,
        )
        record.write_into(spec)
        populate = transactions.copy_files(staged)
        change = spec_writes.write_spec(slot, "installed", spec, populate, policy)
    hint = PREREQUISITES[request.engine].format(
        python=python, image=request.image, user=os.environ.get("GP_REMOTE_USER") or getuser()
    )
    return change, hint
