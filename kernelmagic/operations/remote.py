"""Kernels beyond one machine: kernel provisioners, and remote specs that carry a captured
environment (SSH hosts, Kubernetes pods, Docker containers; batch jobs: ``remote_batch``).

kernelmagic writes no launcher: Jupyter starts a spec through the provisioner named in
``metadata.kernel_provisioner``, and gateway_provisioners (optional: ``kernelmagic[remote]``)
provides the engines and their spec installers. This module checks what those engines
silently get wrong (unknown provisioners, unknown config keys, env values the remote shell
would rewrite) and carries an existing spec's interpreter and env onto a remote spec.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from getpass import getuser
from typing import Any, ClassVar

from kernelmagic.domain import checks, jupyter_rules
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy, recorded_policy
from kernelmagic.domain.provenance import Provenance, Source
from kernelmagic.domain.shell_syntax import parse_json_assignments
from kernelmagic.domain.shells import failure_lines
from kernelmagic.errors import InvalidInput, KernelmagicError
from kernelmagic.operations import remote_batch, spec_writes
from kernelmagic.operations.options import (
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

# engine -> (gateway_provisioners' spec installer, the provisioner it configures)
ENGINES = {
    "ssh": ("jupyter-ssh-spec", "distributed-provisioner"),
    "kubernetes": ("jupyter-k8s-spec", "kubernetes-provisioner"),
    "docker": ("jupyter-docker-spec", "docker-provisioner"),
}
REMOTE_EXTRA = "pip install 'kernelmagic[remote]' (or: pip install gateway-provisioners)"
PREREQUISITES = {
    "ssh": (
        "On every host: the same interpreter path ({python}) with ipykernel and pycryptodomex "
        "installed; passwordless SSH from this machine as {user} (key in ~/.ssh, host in "
        "~/.ssh/known_hosts; port from GP_SSH_PORT, default 22); KERNEL_USERNAME must not be "
        "root unless the provisioner's unauthorized_users is changed; this machine reachable "
        "from the hosts for the connection reply (set GP_RESPONSE_IP if it has several "
        "addresses)."
    ),
    "kubernetes": (
        "A kernel image ({image}) with ipykernel and gateway_provisioners' launcher; "
        "a kubeconfig or in-cluster service account allowed to create pods."
    ),
    "docker": "A kernel image ({image}) and a Docker engine this machine can reach.",
    **remote_batch.PREREQUISITES,
}


@dataclass
class ProvisionerInfo:
    """One installed kernel provisioner and what its ``config`` may hold."""

    name: str
    package: str
    target: str  # module:Class
    options: dict[str, str] = field(default_factory=dict)  # option -> "type (default): help"
    error: str | None = None  # why its options could not be read


class ProvisionerList(list):
    """The installed provisioners (``ProvisionerInfo`` items)."""


def _entry_points():
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=checks.PROVISIONER_GROUP)}


# gateway_provisioners' module -> the extra (its own name for it) that brings its packages.
GATEWAY_EXTRAS = {
    "gateway_provisioners.k8s": "k8s",
    "gateway_provisioners.spark_operator": "k8s",
    "gateway_provisioners.docker_swarm": "docker",
    "gateway_provisioners.yarn": "yarn",
}


@contextlib.contextmanager
def _quiet_root_logger():
    """Keep a provisioner's import-time ``logging.warning`` calls (gateway_provisioners warns
    about each missing optional package) off the user's screen: with a handler of its own on
    the root logger for the moment, the logging module neither prints them nor configures
    the root logger for good."""
    import logging

    handler = logging.NullHandler()
    logging.root.addHandler(handler)
    try:
        yield
    finally:
        logging.root.removeHandler(handler)


def provisioner_options(name: str) -> dict[str, str]:
    """The configurable traits (``config=True``) of an installed provisioner's class.

    Raises ``KernelmagicError`` if it is not installed or cannot be imported.
    """
    found = _entry_points()
    if name not in found:
        installed = ", ".join(sorted(found)) or "none"
        hint = (
            "" if "gateway_provisioners" in sys.modules else f"; for remote engines: {REMOTE_EXTRA}"
        )
        raise KernelmagicError(
            f"provisioner '{name}' is not installed (installed: {installed}){hint}"
        )
    try:
        with _quiet_root_logger():
            cls = found[name].load()
    except Exception as exc:  # a broken third-party package must not break the listing
        hint = ""
        extra = GATEWAY_EXTRAS.get(found[name].value.split(":")[0])
        if isinstance(exc, ImportError) and extra:
            hint = f"; install its extra: pip install 'gateway_provisioners[{extra}]'"
        raise KernelmagicError(f"provisioner '{name}' cannot be loaded: {exc}{hint}") from exc
    options = {}
    for trait_name, trait in sorted(cls.class_traits(config=True).items()):
        default = trait.default_value_repr() if hasattr(trait, "default_value_repr") else ""
        help_text = " ".join((trait.help or "").split())
        options[trait_name] = f"{type(trait).__name__} ({default}): {help_text}"
    return options


def list_provisioners() -> ProvisionerList:
    """Every installed provisioner with its package and options."""
    result = ProvisionerList()
    for name, ep in sorted(_entry_points().items()):
        package = ep.dist.name if getattr(ep, "dist", None) else "?"
        info = ProvisionerInfo(name, package, ep.value)
        try:
            info.options = provisioner_options(name)
        except KernelmagicError as exc:
            info.error = str(exc)
        result.append(info)
    return result


def unknown_options(provisioner: str, config: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(config keys the provisioner does not know, the options it has)."""
    known = sorted(provisioner_options(provisioner))
    return sorted(set(config) - set(known)), known


def check_config(provisioner: str, config: Mapping[str, Any]) -> None:
    """Refuse config keys the provisioner would silently drop."""
    unknown, known = unknown_options(provisioner, config)
    if unknown:
        raise InvalidInput(
            f"provisioner '{provisioner}' has no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(known) or 'none'}"
        )


def provisioner_edit(
    provisioner: str, config: Mapping[str, Any]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A spec transform pointing it at ``provisioner`` (``none`` removes the stanza).

    Refuses (``InvalidInput``) what Jupyter would silently ignore: a provisioner that is not
    installed, config keys it does not know.
    """
    if provisioner == "none":
        if config:
            raise InvalidInput("--provisioner-config needs a provisioner, not 'none'")

        def drop(spec: dict[str, Any]) -> dict[str, Any]:
            metadata = spec.get("metadata") or {}
            metadata.pop("kernel_provisioner", None)
            if metadata:
                spec["metadata"] = metadata
            else:
                spec.pop("metadata", None)
            return spec

        return drop
    try:
        check_config(provisioner, config)
    except InvalidInput:
        raise
    except KernelmagicError as exc:
        raise InvalidInput(str(exc)) from None

    def point(spec: dict[str, Any]) -> dict[str, Any]:
        metadata = spec.setdefault("metadata", {})
        stanza = metadata.get("kernel_provisioner") or {}
        same = stanza.get("provisioner_name") == provisioner
        merged = dict(stanza.get("config") or {}) if same else {}
        merged.update(config)
        metadata["kernel_provisioner"] = {"provisioner_name": provisioner, "config": merged}
        return spec

    return point


# --- env values that survive a remote shell ----------------------------------------------

# distributed-provisioner sends each variable as `export K=<json.dumps(value)>` with every
# ' doubled: inside those double quotes the remote shell expands $ and `, json's \uXXXX and
# \n escapes arrive as text, and ' arrives twice. ${NAME} templates are left for the remote
# shell to fill in from the host's own environment.
_TEMPLATE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
_SAFE_TEXT = re.compile(r"[ !#%&()*+,\-./0-9:;<=>?@A-Z\[\]^_a-z{|}~\"\\]*")


def remote_env_problem(value: str) -> str | None:
    """Why ``value`` would not reach a kernel over SSH unchanged, or None if it would."""
    if "$$" in value:
        return "holds a literal '$' (written as $$), which the remote shell would expand"
    rest = _TEMPLATE.sub("", value)
    if "$" in rest:
        return "holds a '$' that is not a ${NAME} template; the remote shell would expand it"
    if "'" in rest:
        return "holds a single quote, which the provisioner doubles"
    if "`" in rest:
        return "holds a backquote, which the remote shell would run as a command"
    if any(ord(c) > 126 for c in rest):
        return "holds non-ASCII text, which arrives as \\uXXXX escapes"
    if any(ord(c) < 32 for c in rest):
        return "holds a newline or control character, which arrives as an escape sequence"
    if not _SAFE_TEXT.fullmatch(rest):  # pragma: no cover - covered by the checks above
        return "holds characters the remote shell would change"
    return None


def check_remote_env(env: Mapping[str, Any]) -> None:
    bad = []
    for key, value in sorted(env.items()):
        problem = remote_env_problem(value) if isinstance(value, str) else "is not a string"
        if problem:
            bad.append(f"{key} {problem}")
    if bad:
        raise InvalidInput(
            "these env values would not reach the remote kernel as written: "
            + "; ".join(bad)
            + " (change them with env -k SRC, or --exclude them when capturing)"
        )


# --- making a remote spec ----------------------------------------------------------------


def _installer(engine: str) -> str:
    script, _ = ENGINES[engine]
    found = shutil.which(script, path=os.path.dirname(sys.executable)) or shutil.which(script)
    if not found or "distributed-provisioner" not in _entry_points():
        raise KernelmagicError(
            f"remote kernels need gateway_provisioners ({script} was not found): {REMOTE_EXTRA}"
        )
    return found


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
PROVISIONER_CONFIG = option(
    "--provisioner-config",
    action="append",
    default=[],
    metavar="KEY=JSON",
    help="an option of the provisioner (one of its configurable traits; repeatable)",
)


@dataclass(frozen=True)
class RemoteRequest:
    """``remote``: a spec like ``source`` that runs where ``engine`` starts kernels."""

    COMMAND: ClassVar[str] = "remote"
    SUMMARY: ClassVar[str] = (
        "Make a spec that runs on other hosts, pods or containers (gateway_provisioners), "
        "carrying over SRC's interpreter, env and display name."
    )
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
    config: dict[str, Any] = field(default_factory=dict)
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
    ) -> RemoteRequest:
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


@dataclass(frozen=True)
class ProvisionersRequest:
    """``provisioners``: the installed kernel provisioners and their options."""

    COMMAND: ClassVar[str] = "provisioners"
    SUMMARY: ClassVar[str] = (
        "List the installed kernel provisioners, their package and their options."
    )
    OPTIONS: ClassVar[tuple[Option, ...]] = ()

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> ProvisionersRequest:
        return cls()


def make_remote_spec(request: RemoteRequest) -> tuple[transactions.Change, str]:
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
        return remote_batch.make_batch_spec(
            source, engine=request.engine, name=name, kernels_dir=request.kernels_dir,
            config=config, policy=request.policy, replace=request.replace,
            dry_run=request.dry_run,
        )  # fmt: skip
    env = dict(source.env)
    if request.engine == "ssh":
        check_remote_env(env)
    installer = _installer(request.engine)
    provisioner = ENGINES[request.engine][1]
    check_config(provisioner, request.config)
    python = remote_batch.absolute_interpreter(source) if request.engine == "ssh" else None
    policy = request.policy.joined(recorded_policy(source.spec))

    slot = transactions.reserve(
        request.kernels_dir, name, replace=request.replace, dry_run=request.dry_run
    )
    with tempfile.TemporaryDirectory(prefix="kernelmagic-remote-") as stage:
        command = [installer, "install", f"--prefix={stage}", f"--kernel-name={name}"]
        command += [f"--remote-hosts={h}" for h in request.hosts]
        if request.image:
            command.append(f"--image-name={request.image}")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        staged = os.path.join(stage, "share", "jupyter", "kernels", name)
        if done.returncode != 0 or not os.path.isfile(os.path.join(staged, "kernel.json")):
            raise KernelmagicError(
                f"{os.path.basename(installer)} failed", details=failure_lines(done.stderr)
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
