"""The spec library: find, read, install, clone, patch and remove Jupyter kernel specs.

Discovery follows ``jupyter_client.kernelspec.KernelSpecManager`` exactly (same directories,
same precedence, case-insensitive names, the native ``python3`` fallback) without importing
jupyter_client, which costs about 0.3 s. Specs are read and written as raw JSON so that keys
jupyter_client does not know survive. Nothing here prints or imports IPython.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from jupyter_core.paths import jupyter_data_dir, jupyter_path

from . import __version__, checks, envcapture, files
from .assignments import EnvChanges
from .errors import (
    InvalidInput,
    KernelmagicError,
    LocationError,
    NoSuchKernelSpec,
    SpecExists,
)

NATIVE_KERNEL_NAME = "python3"
NAME_RULE = (
    "kernel names use ASCII letters, digits and the separators '-', '.', '_' "
    "(not '.' or '..', at most 255 characters)"
)
_NAME = re.compile(r"[a-zA-Z0-9._-]+\Z")
_WORK_PREFIX = ".kernelmagic-"  # staging and trash directories inside a kernels dir
_LOCK_SUFFIX = ".lock"


# --- names and locations ---------------------------------------------------------------


def validate_name(name: str) -> str:
    """Return ``name`` lowercased, as Jupyter stores it, or raise ``InvalidInput``."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", "..") or len(name) > 255:
        raise InvalidInput(f"invalid kernel name {name!r}: {NAME_RULE}")
    return name.lower()


def ipython_dir() -> str:
    """IPython's profile directory, as ``IPython.paths.get_ipython_dir`` finds it."""
    return os.path.expanduser(os.environ.get("IPYTHONDIR") or os.path.join("~", ".ipython"))


def kernel_dirs() -> list[str]:
    """The directories Jupyter searches for kernel specs, highest priority first."""
    return [*jupyter_path("kernels"), os.path.join(ipython_dir(), "kernels")]


def location_dir(user: bool = False, sys_prefix: bool = False, prefix: str | None = None) -> str:
    """The kernels directory for ``--user`` (the default), ``--sys-prefix`` or ``--prefix``."""
    if sum((bool(user), bool(sys_prefix), prefix is not None)) > 1:
        raise InvalidInput("choose one location: --user, --sys-prefix or --prefix DIR")
    if prefix is not None:
        return os.path.join(os.path.abspath(prefix), "share", "jupyter", "kernels")
    if sys_prefix:
        return os.path.join(sys.prefix, "share", "jupyter", "kernels")
    return os.path.join(jupyter_data_dir(), "kernels")


def _native_resource_dir() -> str | None:
    """ipykernel's bundled spec directory, found without importing ipykernel."""
    found = importlib.util.find_spec("ipykernel")
    if found is None or not found.origin:
        return None
    return os.path.join(os.path.dirname(found.origin), "resources")


def _native_spec() -> dict[str, Any]:
    from ipykernel.kernelspec import get_kernel_dict

    return get_kernel_dict()


# --- discovery -------------------------------------------------------------------------


def _specs_in(directory: str) -> dict[str, str]:
    """Lowercased name -> resource dir for the spec dirs of one kernels directory."""
    found = {}
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return found
    for entry in entries:
        if entry.is_dir() and os.path.isfile(os.path.join(entry.path, "kernel.json")):
            found[entry.name.lower()] = entry.path
    return found


def find_kernel_specs() -> dict[str, str]:
    """Name -> resource dir, equal to ``KernelSpecManager().find_kernel_specs()``."""
    found: dict[str, str] = {}
    for directory in kernel_dirs():
        for name, path in _specs_in(directory).items():
            found.setdefault(name, path)
    if NATIVE_KERNEL_NAME not in found:
        native = _native_resource_dir()
        if native is not None:
            found[NATIVE_KERNEL_NAME] = native
    return found


def spec_locations() -> dict[str, list[str]]:
    """Every resource dir of every name (lowercased), the winning one first, from one scan."""
    places: dict[str, list[str]] = {}
    for directory in kernel_dirs():
        for name, path in _specs_in(directory).items():
            places.setdefault(name, []).append(path)
    return places


@dataclass
class SpecInfo:
    """One kernel spec as Jupyter finds it, with the raw JSON and its problems."""

    name: str
    resource_dir: str
    spec: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    visible: bool = True  # False when Jupyter hides it (malformed, unknown provisioner)
    native: bool = False  # ipykernel's built-in spec, with no kernel.json of its own

    @property
    def display_name(self) -> str:
        value = self.spec.get("display_name", "")
        return value if isinstance(value, str) else ""

    @property
    def language(self) -> str:
        value = self.spec.get("language", "")
        return value if isinstance(value, str) else ""

    @property
    def env(self) -> dict[str, Any]:
        value = self.spec.get("env", {})
        return value if isinstance(value, dict) else {}

    @property
    def kernel_json(self) -> str:
        return os.path.join(self.resource_dir, "kernel.json")

    def jupyter_view(self) -> dict[str, Any]:
        """The entry ``jupyter kernelspec list --json`` shows (``KernelSpec.to_dict()``)."""
        spec = self.spec
        return {
            "resource_dir": self.resource_dir,
            "spec": {
                "argv": spec.get("argv", []),
                "env": spec.get("env", {}),
                "display_name": spec.get("display_name", ""),
                "language": spec.get("language", ""),
                "interrupt_mode": spec.get("interrupt_mode", "signal").lower(),
                "metadata": spec.get("metadata", {}),
                "kernel_protocol_version": spec.get("kernel_protocol_version", ""),
            },
        }

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        from .render import spec_detail_text

        p.text(spec_detail_text(self))


def read_spec_file(path: str) -> Any:
    """Parse a ``kernel.json``; raises ``OSError`` or ``ValueError``."""
    with open(path, "rb") as f:
        return json.loads(f.read())


def _read_kernel_json(path: str) -> bytes | None:
    """The bytes of a ``kernel.json``, or None if there is none (so no spec here)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _unreadable(name: str, resource_dir: str, reason: str) -> SpecInfo:
    kernel_json = os.path.join(resource_dir, "kernel.json")
    problem = checks.Problem(
        "unreadable", f"cannot read kernel.json: {reason} (fix or remove {kernel_json})"
    )
    return SpecInfo(name, resource_dir, {}, [problem], visible=False)


def _from_bytes(
    name: str, resource_dir: str, raw: bytes, program_exists: Callable[[str], bool] | None = None
) -> SpecInfo:
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        return _unreadable(name, resource_dir, f"malformed JSON: {exc}")
    hiding = checks.structure_problems(spec)
    if hiding:
        return SpecInfo(name, resource_dir, spec if isinstance(spec, dict) else {}, hiding, False)
    hiding = checks.provisioner_problems(spec)
    problems = hiding + checks.launch_problems(spec, program_exists)
    return SpecInfo(name, resource_dir, spec, problems, visible=not hiding)


def _load(
    name: str, resource_dir: str, program_exists: Callable[[str], bool] | None = None
) -> SpecInfo:
    try:
        raw = _read_kernel_json(os.path.join(resource_dir, "kernel.json"))
    except OSError as exc:
        return _unreadable(name, resource_dir, exc.strerror or str(exc))
    if raw is None:
        if name == NATIVE_KERNEL_NAME:
            return SpecInfo(name, resource_dir, _native_spec(), native=True)
        return _unreadable(name, resource_dir, "the file is gone")
    return _from_bytes(name, resource_dir, raw, program_exists)


def _cached(check: Callable[[str], bool]) -> Callable[[str], bool]:
    seen: dict[str, bool] = {}

    def cached(program: str) -> bool:
        if program not in seen:
            seen[program] = check(program)
        return seen[program]

    return cached


def list_specs(pattern: str | None = None) -> list[SpecInfo]:
    """Every spec Jupyter finds (hidden ones included), sorted by name.

    ``pattern`` is a case-insensitive glob; a pattern without wildcards matches substrings.
    Each ``kernel.json`` is read once: opening it is also the test that the directory is a
    spec (what ``find_kernel_specs`` checks with a separate stat), which halves the system
    calls on large kernel directories.
    """
    glob = None
    if pattern:
        glob = pattern.lower() if any(c in pattern for c in "*?[") else f"*{pattern.lower()}*"
    program_exists = _cached(checks.find_program)  # most specs share an interpreter
    checks.installed_provisioners.cache_clear()  # a provisioner may have been installed since
    found: dict[str, SpecInfo] = {}
    for directory in kernel_dirs():
        try:
            entries = [e for e in os.scandir(directory) if e.is_dir()]
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        in_this_dir: set[str] = set()
        # Within one directory the last entry of a name wins, as in jupyter_client.
        for entry in reversed(entries):
            name = entry.name.lower()
            if name in found or name in in_this_dir or (glob and not fnmatchcase(name, glob)):
                continue
            try:
                raw = _read_kernel_json(entry.path + os.sep + "kernel.json")
            except OSError as exc:
                info = _unreadable(name, entry.path, exc.strerror or str(exc))
            else:
                if raw is None:
                    continue  # not a spec directory
                info = _from_bytes(name, entry.path, raw, program_exists)
            in_this_dir.add(name)
            found[name] = info
    if NATIVE_KERNEL_NAME not in found and (not glob or fnmatchcase(NATIVE_KERNEL_NAME, glob)):
        native = _native_resource_dir()
        if native is not None:
            found[NATIVE_KERNEL_NAME] = SpecInfo(
                NATIVE_KERNEL_NAME, native, _native_spec(), native=True
            )
    return [found[name] for name in sorted(found)]


def jupyter_listing(specs: Iterable[SpecInfo]) -> dict[str, Any]:
    """``{"kernelspecs": ..., "problems": ...}`` shaped like ``jupyter kernelspec list --json``."""
    specs = list(specs)
    return {
        "kernelspecs": {s.name: s.jupyter_view() for s in specs if s.visible},
        "problems": {s.name: list(s.problems) for s in specs if s.problems},
    }


def get_spec(name: str) -> SpecInfo:
    """The spec Jupyter would start for ``name`` (case-insensitive); ``NoSuchKernelSpec``."""
    found = find_kernel_specs()
    key = name.lower() if isinstance(name, str) else name
    if key not in found:
        raise NoSuchKernelSpec(name, found)
    return _load(key, found[key])


def spec_names() -> list[str]:
    """Sorted names, cheap enough for tab completion."""
    return sorted(find_kernel_specs())


# --- changes ---------------------------------------------------------------------------


@dataclass
class Change:
    """What an operation did (or, with ``dry_run``, would do) to one spec."""

    action: str  # installed | replaced | cloned | patched | removed
    name: str
    resource_dir: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    written: bool

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        """A unified diff of ``kernel.json``, with secret-like env values masked."""
        import difflib

        path = os.path.join(self.resource_dir, "kernel.json")
        old = _masked_text(self.before).splitlines(keepends=True)
        new = _masked_text(self.after).splitlines(keepends=True)
        return "".join(difflib.unified_diff(old, new, f"{path} (before)", f"{path} (after)"))


def _masked_text(spec: dict[str, Any] | None) -> str:
    from .render import masked_spec

    return "" if spec is None else files.dump_spec(masked_spec(spec))


def holds_secrets(spec: dict[str, Any]) -> bool:
    env = spec.get("env")
    if not isinstance(env, dict):
        return False
    return any(
        envcapture.looks_secret(k, v if isinstance(v, str) else None) for k, v in env.items()
    )


def _file_mode(spec: dict[str, Any], existing: str | None = None) -> int:
    """Owner-only for specs holding secrets; otherwise keep the existing file's mode."""
    if holds_secrets(spec):
        return 0o600
    if existing:
        with contextlib.suppress(OSError):
            return os.stat(existing).st_mode & 0o777
    return files.default_file_mode()


def _lock_path(kernels_dir: str, name: str) -> str:
    return os.path.join(kernels_dir, f".{name.lower()}{_LOCK_SUFFIX}")


@contextlib.contextmanager
def _writing(path: str, hint: str):
    """Turn permission and missing-directory errors into advice naming ``path``.

    The failing file is often a lock or temp file inside ``path``; the user needs the
    directory. A failure outside it (an ancestor that cannot be entered) names that instead.
    """

    def where(exc: OSError) -> str:
        failed = os.fspath(exc.filename) if exc.filename else path
        return path if failed.startswith(path.rstrip(os.sep) + os.sep) else failed

    try:
        yield
    except PermissionError as exc:
        raise LocationError(f"cannot write {where(exc)}: permission denied; {hint}") from exc
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise LocationError(f"cannot write {where(exc)}: {exc.strerror}; {hint}") from exc


_LOCATION_HINT = "use --user, or --prefix DIR for a directory you can write"


def _find_in_dir(kernels_dir: str, name: str) -> str | None:
    return _specs_in(kernels_dir).get(name.lower())


def _recover(kernels_dir: str, name: str) -> None:
    """Finish or undo a replace that crashed between its two renames (call under the lock)."""
    target = os.path.join(kernels_dir, name)
    prefix = f"{_WORK_PREFIX}{name}."
    for entry in os.scandir(kernels_dir):
        if not entry.name.startswith(prefix):
            continue
        old = os.path.join(entry.path, "old")
        if os.path.isdir(old) and _find_in_dir(kernels_dir, name) is None:
            os.rename(old, target)
        shutil.rmtree(entry.path, ignore_errors=True)


def _install_dir(
    kernels_dir: str, name: str, populate: Callable[[str], dict[str, Any]], replace: bool
) -> tuple[str, dict[str, Any] | None, dict[str, Any]]:
    """Build a spec dir beside the target and swap it in; returns (path, old spec, new spec).

    ``populate(path)`` creates ``path`` with the spec's files and returns the spec dict, which
    is then written atomically; the directory only appears under its name once complete.
    """
    target = os.path.join(kernels_dir, name)
    with _writing(kernels_dir, _LOCATION_HINT):
        os.makedirs(kernels_dir, exist_ok=True)
        with files.exclusive_lock(_lock_path(kernels_dir, name)):
            _recover(kernels_dir, name)
            existing, before = _existing(kernels_dir, name, replace)
            work = tempfile.mkdtemp(prefix=f"{_WORK_PREFIX}{name}.", dir=kernels_dir)
            try:
                staged = os.path.join(work, "new")
                spec = populate(staged)
                os.chmod(staged, files.default_dir_mode())
                if existing:
                    _carry_backups(existing, staged)
                files.write_json_atomic(
                    os.path.join(staged, "kernel.json"), spec, mode=_file_mode(spec)
                )
                if not existing:
                    os.rename(staged, target)
                elif files.exchange(staged, existing):
                    # One atomic step: readers and crashes see the old spec or the new one.
                    if existing != target:
                        os.rename(existing, target)  # the name is stored lowercase
                else:
                    # No atomic exchange here (not Linux, or the filesystem refuses it):
                    # two renames; a crash in between is undone by _recover on the next write.
                    os.rename(existing, os.path.join(work, "old"))
                    os.rename(staged, target)
                files.fsync_dir(kernels_dir)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return target, before, spec


def _carry_backups(old_dir: str, new_dir: str) -> None:
    """Give a replacing spec the history of the one it replaces, so --undo still works."""
    for backup in files.backups(old_dir):
        shutil.copy2(backup, new_dir)
    old_json = os.path.join(old_dir, "kernel.json")
    if os.path.isfile(old_json):
        files.keep_backup(old_json, into=new_dir)


def _python_kernel_dict() -> dict[str, Any]:
    """The spec ``python -m ipykernel install`` writes for this interpreter."""
    import inspect
    import platform

    from ipykernel.kernelspec import get_kernel_dict

    # ipykernel's installer turns frozen modules off for the debugger; match it where the
    # installed ipykernel knows the option (ipykernel >= 6.20).
    if platform.python_implementation() == "CPython" and (
        "python_arguments" in inspect.signature(get_kernel_dict).parameters
    ):
        return get_kernel_dict(python_arguments=["-Xfrozen_modules=off"])
    return get_kernel_dict()


def now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def install_current_python(
    name: str,
    kernels_dir: str,
    *,
    display_name: str | None = None,
    capture_options: envcapture.CaptureOptions | None = None,
    explicit_env: Mapping[str, str] | None = None,
    replace: bool = False,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
) -> tuple[Change, envcapture.CaptureResult]:
    """Install a spec for ``sys.executable`` with the environment captured from ``environ``.

    ``explicit_env`` (``--env``) is written as given and wins over captured values.
    """
    name = validate_name(name)
    check_name_free(kernels_dir, name, replace)  # fail before running a login shell
    capture_options = capture_options or envcapture.CaptureOptions()
    try:
        captured = envcapture.capture(environ, capture_options)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot use baseline {capture_options.baseline_file}: {exc}") from exc
    change = install_python_spec(
        name,
        kernels_dir,
        source={"source": "current", "python": sys.executable},
        captured=captured,
        capture_options=capture_options,
        display_name=display_name,
        explicit_env=explicit_env,
        replace=replace,
        dry_run=dry_run,
    )
    return change, captured


def check_name_free(kernels_dir: str, name: str, replace: bool) -> None:
    """``SpecExists`` if ``name`` is taken in ``kernels_dir`` and ``replace`` is not set."""
    _existing(kernels_dir, name, replace)


def install_python_spec(
    name: str,
    kernels_dir: str,
    *,
    source: dict[str, Any],
    captured: envcapture.CaptureResult,
    capture_options: envcapture.CaptureOptions,
    python: str | None = None,
    python_version: tuple[int, int] | None = None,
    display_name: str | None = None,
    explicit_env: Mapping[str, str] | None = None,
    replace: bool = False,
    dry_run: bool = False,
) -> Change:
    """Write the spec ipykernel would write for ``python`` (default: this interpreter).

    ``captured.env`` and ``explicit_env`` make up its env (explicit values win);
    ``source`` describes where the environment came from, for provenance and refresh.
    """
    name = validate_name(name)
    explicit = dict(explicit_env or {})
    spec = _python_kernel_dict()
    if python is not None:
        spec["argv"][0] = python
    major, minor = python_version or sys.version_info[:2]
    spec["display_name"] = display_name or f"Python {major}.{minor} ({name})"
    env = {**captured.env, **explicit}
    if env:
        spec["env"] = env
    spec.setdefault("metadata", {})["kernelmagic"] = {
        **source,
        "capture": capture_options.mode,
        "include": list(capture_options.include),
        "exclude": list(capture_options.exclude),
        "templates": capture_options.templates,
        "baseline": captured.baseline,
        "captured": sorted(captured.env),
        "captured_digests": envcapture.digests(captured.env),
        "explicit": sorted(explicit),
        "created": now(),
        "version": __version__,
    }

    def populate(path: str) -> dict[str, Any]:
        from ipykernel.kernelspec import write_kernel_spec

        write_kernel_spec(path)  # the logos and any resources ipykernel ships
        return spec

    return _finish_install("installed", name, kernels_dir, spec, populate, replace, dry_run)


def _existing(kernels_dir: str, name: str, replace: bool) -> tuple[str | None, Any]:
    """The spec dir already holding ``name`` and its JSON; ``SpecExists`` unless replacing."""
    existing = _find_in_dir(kernels_dir, name)
    if existing and not replace:
        raise SpecExists(
            f"a kernel spec named '{name}' already exists in {kernels_dir}; "
            "pass --replace to overwrite it"
        )
    before = None
    if existing:
        with contextlib.suppress(OSError, ValueError):
            before = read_spec_file(os.path.join(existing, "kernel.json"))
    return existing, before


def _finish_install(action, name, kernels_dir, spec, populate, replace, dry_run) -> Change:
    # Checked before anything is created (no lock file either); checked again under the lock.
    _, before = _existing(kernels_dir, name, replace)
    if dry_run:
        return Change(action, name, os.path.join(kernels_dir, name), before, spec, written=False)
    path, before, after = _install_dir(kernels_dir, name, populate, replace)
    if before is not None and action == "installed":
        action = "replaced"
    return Change(action, name, path, before, after, written=True)


_NOT_COPIED = (
    f"*{_LOCK_SUFFIX}",
    f"{files.TEMP_PREFIX}*",
    f"{files.BACKUP_PREFIX}*",
    f"{_WORK_PREFIX}*",
)


def clone_spec(
    source: str,
    new_name: str,
    kernels_dir: str,
    *,
    edit: SpecEdit | None = None,
    replace: bool = False,
    dry_run: bool = False,
) -> Change:
    """Copy every file and every JSON key of ``source`` to ``new_name``, then apply ``edit``."""
    new_name = validate_name(new_name)
    src = get_spec(source)
    if not src.spec and src.problems:
        raise KernelmagicError(f"cannot clone '{src.name}': {src.problems[0]}")
    spec = copy.deepcopy(src.spec)
    if edit is not None:
        spec = edit.apply(spec)
    if edit is None or edit.display_name is None:
        spec["display_name"] = f"{src.display_name or src.name} ({new_name})"
    return install_directory(
        new_name, kernels_dir, src.resource_dir, spec, replace=replace, dry_run=dry_run
    )


def install_directory(
    name: str,
    kernels_dir: str,
    source_dir: str,
    spec: dict[str, Any],
    *,
    replace: bool = False,
    dry_run: bool = False,
    action: str = "cloned",
) -> Change:
    """Install a copy of ``source_dir`` (its files: logos, launcher scripts) as ``name``, with
    ``spec`` as its kernel.json; atomic like every install."""
    name = validate_name(name)

    def populate(path: str) -> dict[str, Any]:
        shutil.copytree(source_dir, path, ignore=shutil.ignore_patterns(*_NOT_COPIED))
        return spec

    return _finish_install(action, name, kernels_dir, spec, populate, replace, dry_run)


@dataclass
class SpecEdit:
    """Changes to a spec's JSON; every field left at its default changes nothing."""

    display_name: str | None = None
    language: str | None = None
    interrupt_mode: str | None = None
    argv_prefix: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # a None value removes the key
    env: EnvChanges = field(default_factory=EnvChanges)
    replace_env: bool = False  # start from an empty env instead of the current one

    def apply(self, spec: dict[str, Any]) -> dict[str, Any]:
        spec = copy.deepcopy(spec)
        if self.display_name is not None:
            spec["display_name"] = self.display_name
        if self.language is not None:
            spec["language"] = self.language
        if self.interrupt_mode is not None:
            spec["interrupt_mode"] = self.interrupt_mode
        if self.argv_prefix:
            spec["argv"] = [*self.argv_prefix, *spec.get("argv", [])]
        if self.metadata:
            metadata = spec.setdefault("metadata", {})
            for key, value in self.metadata.items():
                if value is None:
                    metadata.pop(key, None)
                else:
                    metadata[key] = value
        if self.env or self.replace_env:
            env = {} if self.replace_env else dict(spec.get("env") or {})
            for key in self.env.unset:
                env.pop(key, None)
            env.update(self.env.set)
            if env:
                spec["env"] = env
            else:
                spec.pop("env", None)
        return spec


def patch_spec(name: str, edit: SpecEdit, *, dry_run: bool = False) -> Change:
    """Apply ``edit`` to the spec Jupyter would start for ``name``, under its lock."""
    return rewrite_spec(name, edit.apply, dry_run=dry_run, action="patched")


def rewrite_spec(
    name: str,
    transform: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    dry_run: bool = False,
    action: str = "patched",
) -> Change:
    """Read-modify-write ``kernel.json`` under the spec's lock, keeping a backup for undo.

    ``transform`` gets the current JSON (read under the lock, so concurrent writers each see
    the others' changes) and returns the new one.
    """
    info = _writable_spec(name)
    kernels_dir = os.path.dirname(info.resource_dir)
    hint = f"clone it to a location you can write (clone {info.name} NEW_NAME --user)"
    with _writing(info.kernel_json, hint), files.exclusive_lock(_lock_path(kernels_dir, info.name)):
        try:
            before = read_spec_file(info.kernel_json)
        except (OSError, ValueError) as exc:
            raise KernelmagicError(f"cannot change '{info.name}': {exc}") from exc
        problems = checks.structure_problems(before)
        if problems:
            raise KernelmagicError(f"cannot change '{info.name}': {problems[0]}")
        after = transform(copy.deepcopy(before))
        written = not dry_run and after != before
        if written:
            files.remove_stale_temps(info.resource_dir)
            files.keep_backup(info.kernel_json)
            files.write_json_atomic(
                info.kernel_json, after, mode=_file_mode(after, info.kernel_json)
            )
    return Change(action, info.name, info.resource_dir, before, after, written)


def _writable_spec(name: str) -> SpecInfo:
    info = get_spec(name)
    if info.native:
        raise KernelmagicError(
            f"'{info.name}' is ipykernel's built-in spec and has no kernel.json to change; "
            f"clone it first (clone {info.name} NEW_NAME)"
        )
    return info


def undo_last_write(name: str) -> Change:
    """Restore ``kernel.json`` byte for byte from its newest backup (and drop that backup).

    Repeating it walks further back, as far as the kept backups go.
    """
    info = _writable_spec(name)
    kernels_dir = os.path.dirname(info.resource_dir)
    hint = "ask the owner of that directory"
    with _writing(info.kernel_json, hint), files.exclusive_lock(_lock_path(kernels_dir, info.name)):
        saved = files.backups(info.resource_dir)
        if not saved:
            raise KernelmagicError(f"no earlier version of '{info.name}' to restore")
        newest = saved[-1]
        data = newest.read_bytes()
        before = None
        with contextlib.suppress(OSError, ValueError):
            before = read_spec_file(info.kernel_json)
        files.write_bytes_atomic(info.kernel_json, data, mode=newest.stat().st_mode & 0o777)
        newest.unlink()
    try:
        after = json.loads(data)
    except ValueError:
        after = None
    return Change("restored", info.name, info.resource_dir, before, after, written=True)


def remove_specs(names: Iterable[str]) -> list[str]:
    """Remove the named specs (all are checked before any is removed); returns their paths."""
    found = find_kernel_specs()
    targets = []
    for name in names:
        key = name.lower()
        if key not in found:
            raise NoSuchKernelSpec(name, found)
        path = found[key]
        if key == NATIVE_KERNEL_NAME and not os.path.exists(os.path.join(path, "kernel.json")):
            raise KernelmagicError(
                "'python3' is ipykernel's built-in spec; it cannot be removed "
                "(uninstall ipykernel to drop it)"
            )
        if path not in targets:
            targets.append(path)
    removed = []
    for path in targets:
        kernels_dir, dirname = os.path.split(path)
        with _writing(path, "ask the owner of that directory to remove it"):
            with files.exclusive_lock(_lock_path(kernels_dir, dirname)):
                # Move it out of Jupyter's sight in one step, then delete at leisure.
                trash = tempfile.mkdtemp(
                    prefix=f"{_WORK_PREFIX}{dirname.lower()}.", dir=kernels_dir
                )
                os.rename(path, os.path.join(trash, "old-removed"))
            shutil.rmtree(trash, ignore_errors=True)
        removed.append(path)
    return removed
