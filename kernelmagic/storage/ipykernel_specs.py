"""ipykernel's own spec, without importing ipykernel on every call.

Asking ipykernel (``get_kernel_dict``) imports it and with it jupyter_client, ~0.2 s: most of
an install, and of a listing without a ``python3`` spec dir (Jupyter's built-in entry). The
answers are kept in the user's cache directory, keyed by this interpreter and the files of
the installed ipykernel, and asked again whenever one of those changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from typing import Any

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
    """Jupyter's built-in ``python3`` entry: ``get_kernel_dict()`` as jupyter_client calls it."""
    return _cached("native", _ask_native)


def install_spec() -> dict[str, Any]:
    """The spec ``python -m ipykernel install`` writes for this interpreter."""
    return _cached("install", _ask_install)


def _ask_native() -> dict[str, Any]:
    from ipykernel.kernelspec import get_kernel_dict

    return get_kernel_dict()


def _ask_install() -> dict[str, Any]:
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


def _cached(kind: str, ask: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    key = _cache_key()
    path = os.path.join(cache_dir(), f"ipykernel-{kind}-{key}.json") if key else None
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                cached = json.load(f)
            if isinstance(cached, dict) and isinstance(cached.get("argv"), list):
                return cached
        except (OSError, ValueError):
            pass
    answer = ask()
    if path:
        with contextlib.suppress(OSError):  # a read-only home: no cache, the same answer
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic.write_bytes_atomic(path, json.dumps(answer).encode(), mode=0o644)
    return answer


def _cache_key() -> str | None:
    """What ipykernel's answer depends on: this interpreter, ipykernel's spec writer, version
    and package files, and (ipykernel 6) whether its debugger can be imported."""
    package = package_dir()
    if package is None:
        return None
    parts: list[Any] = [sys.executable, sys.version, importlib.util.find_spec("debugpy") is None]
    for name in ("kernelspec.py", "_version.py", "__init__.py"):
        try:
            stat = os.stat(os.path.join(package, name))
        except OSError:
            continue
        parts += [name, stat.st_ino, stat.st_size, stat.st_mtime_ns]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def cache_dir() -> str:
    """kernelmagic's directory in the user's cache (platformdirs, as jupyter_core uses)."""
    try:
        import platformdirs
    except ImportError:  # jupyter_core < 5 did not bring it
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        return os.path.join(base, "kernelmagic")
    return platformdirs.user_cache_dir("kernelmagic", appauthor=False)
