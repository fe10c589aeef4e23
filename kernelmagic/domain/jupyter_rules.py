"""The rules of the installed Jupyter, mirrored exactly without importing jupyter_client.

- which fields of ``kernel.json`` the installed ``jupyter_client.kernelspec.KernelSpec``
  types as strings and which ``to_dict()`` lists (they differ between 7.0 and 8.x), read from
  its source once;
- the kernel provisioner stanza, as ``KernelProvisionerFactory`` judges it;
- the name rule of ``jupyter_client.kernelspec._is_valid_kernel_name``;
- IPython's profile directory, as ``IPython.paths.get_ipython_dir`` finds it (without
  creating it);
- the Jupyter config that changes ``jupyter kernelspec list`` (``jupyter_config.json`` or
  ``.py`` setting ``KernelSpecManager.allowed_kernelspecs``, the deprecated ``whitelist``, or
  ``ensure_native_kernel``), read only when such a file exists.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re
import warnings
from typing import Any, NamedTuple

from kernelmagic.errors import InvalidInput

# What jupyter_client 8.x declares; used when its source cannot be read.
_DEFAULT_STRING_FIELDS = ("name", "mimetype", "display_name", "language", "kernel_protocol_version")
_DEFAULT_LISTED = (
    "argv",
    "env",
    "display_name",
    "language",
    "interrupt_mode",
    "metadata",
    "kernel_protocol_version",
)

# jupyter_client.kernelspec._kernel_name_pat, with its flags: under IGNORECASE, Python also
# matches the long s (U+017F) and the Kelvin sign (U+212A) to ASCII letters.
JUPYTER_NAME = re.compile(r"^[a-z0-9._\-]+$", re.IGNORECASE)


# The answers below are NamedTuples, not frozen dataclasses: every command imports this
# module, and Python 3.11 makes a frozen dataclass in ~0.7 ms, a NamedTuple in ~0.2 ms.
class SpecSchema(NamedTuple):
    """What jupyter_client's ``KernelSpec`` requires of a spec and lists of it."""

    string_fields: tuple[str, ...]  # a non-string value makes KernelSpec(...) fail: hidden
    listed: tuple[str, ...]  # the keys of KernelSpec.to_dict(), in order


@functools.cache
def spec_schema() -> SpecSchema:
    """The installed jupyter_client's KernelSpec fields, read from its source (no import)."""
    found = importlib.util.find_spec("jupyter_client")
    if found is None or found.origin is None:
        return SpecSchema(_DEFAULT_STRING_FIELDS, _DEFAULT_LISTED)
    try:
        origin = os.path.join(os.path.dirname(found.origin), "kernelspec.py")
        with open(origin, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        return _schema_of(tree)
    except (AttributeError, TypeError, OSError, SyntaxError, ValueError, StopIteration):
        return SpecSchema(_DEFAULT_STRING_FIELDS, _DEFAULT_LISTED)


def _schema_of(tree: ast.Module) -> SpecSchema:
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "KernelSpec")
    strings = []
    listed: list[str] = []
    for node in cls.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and isinstance(value, ast.Call):
            func = value.func
            kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if kind == "Unicode" and target.id != "resource_dir":
                strings.append(target.id)
        if isinstance(node, ast.FunctionDef) and node.name == "to_dict":
            for inner in ast.walk(node):
                if isinstance(inner, ast.Dict):
                    listed += [
                        k.value
                        for k in inner.keys
                        if isinstance(k, ast.Constant) and isinstance(k.value, str)
                    ]
                elif isinstance(inner, ast.Call) and getattr(inner.func, "id", "") == "dict":
                    listed += [k.arg for k in inner.keywords if k.arg]
    if not listed:
        raise ValueError("no to_dict keys found")
    return SpecSchema(tuple(strings), tuple(listed))


def is_valid_kernel_name(name: str) -> bool:
    """``jupyter_client.kernelspec._is_valid_kernel_name``, exactly (``$`` included, which
    also matches before a final newline)."""
    return JUPYTER_NAME.match(name) is not None


# --- kernel provisioners ---------------------------------------------------------------


class ProvisionerVerdict(NamedTuple):
    """What Jupyter does with a spec's ``kernel_provisioner`` stanza."""

    hidden_because: str | None  # why Jupyter hides the spec, or None
    name: str | None  # the provisioner named (None: the default, local-provisioner)
    adds_config: bool  # Jupyter adds "config": {} to a stanza that has none


def judge_provisioner(metadata: dict[str, Any], installed: frozenset[str]) -> ProvisionerVerdict:
    """What ``KernelProvisionerFactory.is_provisioner_available`` makes of a spec's
    ``metadata.kernel_provisioner``: ``"provisioner_name" in stanza`` decides whether there is
    one (a null or a number makes that test fail, so Jupyter hides the spec; a string or a
    list without that word means the default), and ``str(name)`` must be an installed
    entry point."""
    stanza = metadata.get("kernel_provisioner", {})
    try:
        named = "provisioner_name" in stanza
    except TypeError:
        return ProvisionerVerdict(
            f"metadata.kernel_provisioner is a {type(stanza).__name__}, not an object", None, False
        )
    if not named:
        return ProvisionerVerdict(None, None, False)
    if not isinstance(stanza, dict):
        return ProvisionerVerdict(
            f"metadata.kernel_provisioner is a {type(stanza).__name__}, not an object", None, False
        )
    name = str(stanza.get("provisioner_name"))
    adds_config = "config" not in stanza
    if name not in installed:
        available = ", ".join(sorted(installed)) or "none"
        return ProvisionerVerdict(
            f"provisioner '{name}' is not installed, so Jupyter hides this spec "
            f"(installed: {available}); install its package or remove "
            "metadata.kernel_provisioner",
            name,
            adds_config,
        )
    return ProvisionerVerdict(None, name, adds_config)


# --- IPython's directory ---------------------------------------------------------------


def _writable_dir(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK)


def ipython_dir() -> str | None:
    """``IPython.paths.get_ipython_dir()`` without its side effects, or None where IPython
    would fall back to a new, empty temporary directory (no specs there)."""
    env = os.environ
    ipdir = env.get("IPYTHONDIR")
    if ipdir is None:
        home = os.path.realpath(os.path.expanduser("~"))
        ipdir = os.path.join(home, ".ipython")
        xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        if os.name == "posix" and _writable_dir(xdg):
            xdg_ipdir = os.path.join(xdg, "ipython")
            usable = _writable_dir(xdg_ipdir)
            if usable and not os.path.exists(ipdir) and not os.path.islink(xdg_ipdir):
                ipdir = xdg_ipdir
    ipdir = os.path.normpath(os.path.expanduser(ipdir))
    if os.path.exists(ipdir):
        return ipdir if _writable_dir(ipdir) else None
    return ipdir if _writable_dir(os.path.dirname(ipdir)) else None


# --- Jupyter config ----------------------------------------------------------------------

# The config files each program loads, in order (a later file's setting wins). Every
# JupyterApp (`jupyter kernelspec list`, console) loads jupyter_config; jupyter_server's
# ServerApp (JupyterLab, Notebook 7, JupyterHub's single-user server) its own file after it.
# Voila's own app is no JupyterApp: it loads voila.py/.json only (and from its cwd first).
KERNELSPEC_CONFIG = ("jupyter_config",)
SERVER_CONFIG = ("jupyter_config", "jupyter_server_config")
VOILA_CONFIG = ("voila",)


class DiscoveryConfig(NamedTuple):
    """The ``KernelSpecManager`` settings of Jupyter's config files that change a listing."""

    allowed: frozenset[str] | None = None  # KernelSpecManager.allowed_kernelspecs
    ensure_native: bool = True  # KernelSpecManager.ensure_native_kernel
    source: str = ""  # the file(s) that set them

    def leaves_out(self, name: str) -> bool:
        """Whether a listing under these settings leaves out the spec ``name``."""
        return self.allowed is not None and name not in self.allowed


def config_dirs() -> list[str]:
    """Jupyter's config path, lowest priority last (``jupyter --paths``)."""
    from jupyter_core.paths import jupyter_config_dir, jupyter_config_path

    dirs = jupyter_config_path()
    if jupyter_config_dir() not in dirs:  # as JupyterApp.config_file_paths does
        dirs.insert(0, jupyter_config_dir())
    return dirs


def discovery_config(basenames: tuple[str, ...] = KERNELSPEC_CONFIG) -> DiscoveryConfig:
    """The settings of the Jupyter config files a program loads: by default those of
    ``jupyter kernelspec list`` (``jupyter_config.py`` then ``.json`` in each config dir,
    lowest priority first); ``SERVER_CONFIG``, ``VOILA_CONFIG`` for the others.

    Costs a few stat calls when there is no such file; traitlets' loaders only otherwise.
    """
    dirs = config_dirs()[::-1]
    found = [
        (directory, basename + ext)
        for basename in basenames
        for directory in dirs
        for ext in (".py", ".json")
        if os.path.isfile(os.path.join(directory, basename + ext))
    ]
    if not found:
        return DiscoveryConfig()
    from traitlets.config.loader import Config, JSONFileConfigLoader, PyFileConfigLoader

    merged = Config()
    sources = []
    for directory, filename in found:
        loader = PyFileConfigLoader if filename.endswith(".py") else JSONFileConfigLoader
        try:
            merged.merge(loader(filename, path=directory).load_config())
        except Exception:  # Jupyter logs a broken config file and goes on without it
            continue
        sources.append(os.path.join(directory, filename))
    # Plain dict lookups: indexing a traitlets Config creates the sections it looks up.
    if not dict(merged).get("KernelSpecManager"):
        return DiscoveryConfig(source=", ".join(sources))
    # Its settings as jupyter_client reads them: traitlets' casts (a str is a set of one
    # name), checks and the deprecated whitelist's observer, which runs last.
    from jupyter_client.kernelspec import KernelSpecManager
    from traitlets import TraitError

    try:
        with warnings.catch_warnings():  # whitelist's deprecation: Jupyter's to say
            warnings.simplefilter("ignore", DeprecationWarning)
            manager = KernelSpecManager(config=merged)
    except (TraitError, TypeError, ValueError) as exc:
        raise InvalidInput(f"Jupyter config {', '.join(sources)}: {exc}") from None
    allowed = frozenset(manager.allowed_kernelspecs) or None
    return DiscoveryConfig(allowed, bool(manager.ensure_native_kernel), ", ".join(sources))


def carry_protocol_fields(source: dict[str, Any], spec: dict[str, Any]) -> None:
    """The source kernel's protocol version and encryption support, which the remote kernel
    (the same interpreter, elsewhere) has too; the installer writes neither."""
    if "kernel_protocol_version" in source:
        spec["kernel_protocol_version"] = source["kernel_protocol_version"]
    metadata = source.get("metadata")
    if isinstance(metadata, dict) and "supported_encryption" in metadata:
        spec.setdefault("metadata", {})["supported_encryption"] = metadata["supported_encryption"]
