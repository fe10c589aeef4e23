"""Kernels beyond one machine: kernel provisioners, and remote specs that carry a captured
environment (SSH hosts, Kubernetes pods, Docker containers; batch jobs: ``remote_batch``).

kernelmagic writes no launcher: Jupyter starts a spec through the provisioner named in
``metadata.kernel_provisioner``, and gateway_provisioners (optional: ``kernelmagic[remote]``)
provides the engines and their spec installers. This module checks what those engines
silently get wrong (unknown provisioners, unknown config keys, env values the remote shell
would rewrite) and carries an existing spec's interpreter and env onto a remote spec.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kernelmagic.domain import checks
from kernelmagic.errors import InvalidInput, KernelmagicError
from kernelmagic.operations import remote_batch
from kernelmagic.options import (
    option,
)

if TYPE_CHECKING:
    from importlib.metadata import (
        EntryPoint,  # annotations only: _entry_points imports it when used
    )

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


class ProvisionerList(list[ProvisionerInfo]):
    """The installed provisioners (``ProvisionerInfo`` items)."""


def _entry_points() -> dict[str, EntryPoint]:
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
def _quiet_root_logger() -> Iterator[None]:
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
    options = {}
    for trait_name, trait in sorted(_configurable_traits(name).items()):
        default = trait.default_value_repr() if hasattr(trait, "default_value_repr") else ""
        help_text = " ".join((trait.help or "").split())
        options[trait_name] = f"{type(trait).__name__} ({default}): {help_text}"
    return options


def _configurable_traits(name: str) -> dict[str, Any]:
    """The installed provisioner ``name``'s class's traits that its config sets, by name."""
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
    traits: dict[str, Any] = cls.class_traits(config=True)
    return traits


def list_provisioners() -> ProvisionerList:
    """Every installed provisioner with its package and options."""
    result = ProvisionerList()
    for name, ep in sorted(_entry_points().items()):
        package = ep.dist.name if ep.dist else "?"
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


def job_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """The job options of a batch provisioner's config (not its own: launch_timeout, ...)."""
    return {k: v for k, v in config.items() if k in remote_batch.JOB_OPTIONS}


def check_config(provisioner: str, config: Mapping[str, Any]) -> None:
    """Refuse config keys the provisioner would silently drop, and values its traits would
    refuse when Jupyter makes it (every start would fail)."""
    traits = _configurable_traits(provisioner)
    unknown = sorted(set(config) - set(traits))
    if unknown:
        raise InvalidInput(
            f"provisioner '{provisioner}' has no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(sorted(traits)) or 'none'}"
        )
    from traitlets import HasTraits, TraitError

    # The values checked as jupyter_client passes them (keyword arguments of the class),
    # by copies of its traits: making the provisioner itself may need a kernel.
    holder = type(provisioner, (HasTraits,), {k: copy.deepcopy(traits[k]) for k in config})
    try:
        holder(**config)
    except TraitError as exc:
        raise InvalidInput(f"--provisioner-config: {exc}") from None


def provisioner_edit(
    provisioner: str, config: Mapping[str, Any]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A spec transform pointing it at ``provisioner`` (``none`` removes the stanza).

    Refuses (``InvalidInput``) what Jupyter would silently ignore: a provisioner that is not
    installed, config keys it does not know.
    """
    if provisioner == "none":  # config for it: refused by patch's request

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
        if provisioner in checks.BATCH_PROVISIONERS:  # the job as the scheduler takes it
            remote_batch.check_job(checks.BATCH_PROVISIONERS[provisioner], job_of(merged))
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


def installer(engine: str) -> str:
    script, _ = ENGINES[engine]
    found = shutil.which(script, path=os.path.dirname(sys.executable)) or shutil.which(script)
    if not found or "distributed-provisioner" not in _entry_points():
        raise KernelmagicError(
            f"remote kernels need gateway_provisioners ({script} was not found): {REMOTE_EXTRA}"
        )
    return found


PROVISIONER_CONFIG = option(
    "--provisioner-config",
    action="append",
    default=[],
    metavar="KEY=JSON",
    help="an option of the provisioner (one of its configurable traits; repeatable)",
)
