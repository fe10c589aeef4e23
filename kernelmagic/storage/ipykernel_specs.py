"""ipykernel's own spec, without importing ipykernel on every call.

Asking ipykernel (``get_kernel_dict``) imports it and with it jupyter_client, ~0.2 s: most of
an install, and of a listing without a ``python3`` spec dir (Jupyter's built-in entry).
Another interpreter's spec is its own ipykernel's, which only running its installer tells.
The answers are kept in the user's cache directory, keyed by the interpreter and the files
of its ipykernel, and asked again whenever one of those changes.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import io
import json
import os
import re
import stat
import sys
import zlib
from collections.abc import Callable
from typing import Any, TypeGuard

from kernelmagic.domain.ownership import others_can_change
from kernelmagic.errors import SourceFailed
from kernelmagic.storage import atomic


def package_dir() -> str | None:
    """The directory of the installed ipykernel package, found without importing it."""
    found = importlib.util.find_spec("ipykernel")
    locations = found.submodule_search_locations if found else None
    return locations[0] if locations else None


def resources_dir() -> str | None:
    """The spec files ipykernel ships (its logos)."""
    package = package_dir()
    return os.path.join(package, "resources") if package else None


def native_spec() -> dict[str, Any]:
    """Jupyter's built-in ``python3`` entry: ``get_kernel_dict()`` as jupyter_client calls it
    (in this process, as jupyter_client would here; not kept where that is another
    ipykernel than the one installed)."""
    if _runs_another_ipykernel():
        return _ask_native()
    return _cached("native", _ask_native, _own_key())


def install_spec(
    python: str | None = None,
    facts: tuple[str, bool, str] | None = None,
    ask_installer: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """The spec ``python -m ipykernel install`` writes for this interpreter, or for another
    one, ``python``, whose probe found ``facts`` (its ``sys.version``, whether it can import
    debugpy, its ipykernel's dir): what ``ask_installer()`` reads back from running that
    installer, as this ipykernel would not say what that one does (ipykernel >= 7.3
    declares Curve encryption, which jupyter_client then gives a kernel that may not know
    it). ``SourceFailed`` when its answer is not such a spec."""
    own = python is None or facts is None or python == sys.executable
    if own and not _runs_another_ipykernel():
        return _cached("install", _ask_install, _own_key())
    if ask_installer is None:  # only this process's ipykernel to ask: not kept for others
        return _ask_install()
    program = python or sys.executable

    def ask() -> dict[str, Any]:
        answer = ask_installer()
        if not is_ipykernel_spec(answer, executable=None):
            raise SourceFailed(f"{program} -m ipykernel install wrote a spec of another shape")
        answer["argv"][0] = program  # as the probe ran it (sys.executable may name a link)
        return answer

    # This interpreter's ipykernel was changed under this process (`pip install ipykernel==`
    # in a running kernel): the installed one is asked, as for another interpreter.
    key = _own_key() if own or facts is None else _cache_key(program, *facts)
    return _cached("install", ask, key, program)


def _runs_another_ipykernel() -> bool:
    """Whether this process imported another ipykernel than the one installed now: its
    answers are the imported one's (metadata that the installed one no longer writes)."""
    loaded = sys.modules.get("ipykernel")
    if loaded is None:
        return False
    package = package_dir()
    if package is None or os.path.dirname(getattr(loaded, "__file__", None) or "") != package:
        return True
    try:
        with open(os.path.join(package, "_version.py"), encoding="utf-8") as file:
            text = file.read(64 * 1024)
    except OSError as exc:
        # Gone: changed under this process. Unreadable to this user (a process that dropped
        # root after importing it): no other answer to be had, its installer is as unreadable.
        return exc.errno in (errno.ENOENT, errno.ENOTDIR)
    version = getattr(loaded, "__version__", None)
    said = rf"""__version__\s*=\s*["']{re.escape(str(version))}["']"""
    return not isinstance(version, str) or re.search(said, text) is None


def _spec_function() -> Callable[..., dict[str, Any]]:
    """ipykernel's get_kernel_dict. ipykernel 6.x imports debugpy to see whether it is there,
    and debugpy on Python >= 3.11 writes four lines about frozen modules to stderr: noise in
    the user's terminal (and in a one-line error), so it is not shown."""
    with contextlib.redirect_stderr(io.StringIO()):
        from ipykernel.kernelspec import get_kernel_dict
    spec_function: Callable[..., dict[str, Any]] = get_kernel_dict  # untyped in ipykernel 6.x
    return spec_function


def _ask_native() -> dict[str, Any]:
    return _spec_function()()


def _ask_install() -> dict[str, Any]:
    import inspect
    import platform

    get_kernel_dict = _spec_function()

    # ipykernel's installer turns frozen modules off for the debugger on CPython >= 3.11 (no
    # frozen modules before); match it where the installed ipykernel knows the option
    # (ipykernel >= 6.20).
    if (
        sys.version_info >= (3, 11)
        and platform.python_implementation() == "CPython"
        and "python_arguments" in inspect.signature(get_kernel_dict).parameters
    ):
        return get_kernel_dict(python_arguments=["-Xfrozen_modules=off"])
    return get_kernel_dict()


def _cached(
    kind: str,
    ask: Callable[[], dict[str, Any]],
    key: str | None,
    executable: str = sys.executable,
) -> dict[str, Any]:
    """``ask()``'s answer, from the cache when a trusted entry holds it, else asked and kept.

    The answer decides the argv, env and metadata of every spec installed, so a cache entry
    is believed only when nobody else could have written it (it, its dir and the dir above
    are this user's and not writable by others: ``XDG_CACHE_HOME`` may point at shared
    scratch), it is a regular file (a FIFO must not hang us) and it has exactly the shape
    ipykernel gives. Anything else is asked again, and nothing is written where others could
    replace it.
    """
    directory = cache_dir()
    trusted = (
        key is not None
        and os.path.isabs(directory)
        and not others_can_change((directory, os.path.dirname(directory)))
    )
    path = os.path.join(directory, f"ipykernel-{kind}-{key}.json")
    if trusted:
        cached = _read_trusted(path)
        if is_ipykernel_spec(cached, executable=executable):
            return cached
    answer = ask()
    if key is not None and _make_own_dir(directory):
        with contextlib.suppress(OSError):  # a read-only home: no cache, the same answer
            atomic.write_bytes_atomic(path, json.dumps(answer).encode(), mode=0o600)
    return answer


def _make_own_dir(directory: str) -> bool:
    """Create the cache dir (owner-only); whether it is one that only this user can change.
    Nothing is made in a dir of another user's (root run with another user's HOME, `sudo
    -E`: a root-owned ~/.cache would keep that user from making ~/.cache/pip)."""
    existing = directory
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    try:
        if existing != directory and os.stat(existing).st_uid != os.geteuid():
            return False
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError:
        return False
    parent = os.path.dirname(directory)
    return os.path.isabs(directory) and others_can_change((directory, parent)) is None


_MAX_CACHE_BYTES = 64 * 1024  # an answer is a few hundred bytes


def _read_trusted(path: str) -> Any:
    """The JSON in ``path`` if it is a regular file of this user's that others cannot write,
    read without blocking; else None."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_CACHE_BYTES:
            return None
        if others_can_change((path,)) is not None:
            return None
        return json.loads(os.read(fd, _MAX_CACHE_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


_INTERPRETER_OPTION = re.compile(r"-X[A-Za-z_]+(=[A-Za-z0-9_]+)?\Z")
_SPEC_KEYS = {"argv", "display_name", "language", "metadata", "kernel_protocol_version"}


def is_ipykernel_spec(
    spec: Any, *, executable: str | None = sys.executable
) -> TypeGuard[dict[str, Any]]:
    """Whether ``spec`` has exactly the shape ``get_kernel_dict()`` gives for the
    interpreter ``executable`` (None: for any): that interpreter running ``-m
    ipykernel_launcher -f {connection_file}`` (with ``-X`` options only), Python, and
    metadata of flags and words (no provisioner, no env)."""
    if not isinstance(spec, dict) or not set(spec) <= _SPEC_KEYS:
        return False
    argv = spec.get("argv")
    if not isinstance(argv, list) or len(argv) < 5:
        return False
    if executable is not None and argv[0] != executable:
        return False
    if argv[-4:] != ["-m", "ipykernel_launcher", "-f", "{connection_file}"]:
        return False
    if not all(isinstance(a, str) and _INTERPRETER_OPTION.match(a) for a in argv[1:-4]):
        return False
    if not isinstance(spec.get("display_name"), str) or spec.get("language") != "python":
        return False
    if not isinstance(spec.get("kernel_protocol_version", ""), str):
        return False
    metadata = spec.get("metadata", {})
    return isinstance(metadata, dict) and all(
        isinstance(k, str)
        and k != "kernel_provisioner"
        and (
            isinstance(v, (bool, str))
            or (isinstance(v, list) and all(isinstance(w, str) for w in v))
        )
        for k, v in metadata.items()
    )


def _own_key() -> str | None:
    has_debugpy = importlib.util.find_spec("debugpy") is not None
    return _cache_key(sys.executable, sys.version, has_debugpy, package_dir() or "")


def _cache_key(python: str, version: str, has_debugpy: bool, package: str) -> str | None:
    """What ipykernel's answer depends on: the interpreter and its version, ipykernel's spec
    writer, version and package files, and (ipykernel 6) whether its debugger can be
    imported. None without an ipykernel."""
    if not package:
        return None
    parts: list[Any] = [python, version, not has_debugpy]
    for name in ("kernelspec.py", "_version.py", "__init__.py"):
        try:
            stat = os.stat(os.path.join(package, name))
        except OSError:
            continue
        parts += [name, stat.st_ino, stat.st_size, stat.st_mtime_ns]
    # Two checksums, not a cryptographic hash: the key only tells apart states of one user's
    # files (an entry is believed only when this user alone could have written it), and
    # loading hashlib's OpenSSL would add ~4 ms to every install.
    data = repr(parts).encode()
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def cache_dir() -> str:
    """kernelmagic's directory in the user's cache (platformdirs, as jupyter_core uses)."""
    try:
        import platformdirs
    except ImportError:  # jupyter_core < 5 did not bring it
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        return os.path.join(base, "kernelmagic")
    return platformdirs.user_cache_dir("kernelmagic", appauthor=False)
