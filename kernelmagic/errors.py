"""Errors a user sees as one line; ``str(exc)`` is the message.

``InvalidInput`` means the request itself was wrong (exit status 2 on the command line);
every other ``KernelmagicError`` is a failed operation (exit status 1).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any


class KernelmagicError(Exception):
    """A failure to report to the user as one line (``str(exc)``); ``details`` are the lines a
    tool printed about it (a shell, Lmod, R), which the front ends show below that line."""

    def __init__(self, *args: object, details: Iterable[str] = ()) -> None:
        super().__init__(*args)
        self.details = tuple(details)


class InvalidInput(KernelmagicError, ValueError):
    """The request itself is wrong (bad name, bad option value); nothing was changed."""


class EnvironmentNotReady(InvalidInput):
    """A project's environment does not exist yet, or has no ipykernel; ``command`` is the
    project tool's own command that makes it ready."""

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message, command)  # both in args: pickled and unpickled whole
        self.command = command

    def __str__(self) -> str:
        return str(self.args[0])


class NoSuchKernelSpec(KernelmagicError, KeyError):
    """No spec of that name; the message lists the available ones."""

    def __init__(self, name: str, available: Iterable[str] = ()) -> None:
        super().__init__(name)
        self.name = name
        self.available = sorted(available)

    def __str__(self) -> str:
        available = ", ".join(self.available) or "none"
        return f"No kernel spec '{self.name}'. Available: {available}."


class SpecExists(KernelmagicError, FileExistsError):
    """The name is taken at the destination and ``replace`` was not asked for."""


class LocationError(KernelmagicError):
    """A kernels directory or spec cannot be written (permissions, missing directory)."""


class SourceFailed(KernelmagicError):
    """Making the environment failed (a snippet, an activation, no shell); nothing was written."""


def string_list(value: Any, what: str) -> tuple[str, ...]:
    """``value`` as a tuple of strings; ``InvalidInput`` for anything else. A library caller's
    single string would otherwise be taken letter by letter (``unset="PROJ_LIB"`` removing
    ``P``), a caller's None for nothing at all."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidInput(f"{what} is a list of strings, not {type(value).__name__}")
    found = tuple(value)
    for item in found:
        if not isinstance(item, str):
            raise InvalidInput(f"{what} is a list of strings; it holds a {type(item).__name__}")
    return found


def path_text(value: Any, what: str) -> str:
    """A path argument as text: a ``str`` or an ``os.PathLike`` (``pathlib.Path``);
    ``InvalidInput`` for anything else (bytes, None)."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str):
        raise InvalidInput(f"{what} is a path, not {type(value).__name__}")
    if "\0" in text:
        raise InvalidInput(f"{what} holds a NUL character, which no path can")
    return text


def kernels_dir_path(value: Any) -> str:
    """A request's ``kernels_dir`` as an absolute path: relative to the dir the caller is in
    now, as the command line takes ``--prefix``."""
    kernels_dir = path_text(value, "kernels_dir")
    if not kernels_dir:
        raise InvalidInput("kernels_dir is empty; name the kernels dir, or leave it out")
    return os.path.abspath(kernels_dir)


def flags(request: Any) -> None:
    """``InvalidInput`` unless every ``bool`` field of the dataclass ``request`` is True or
    False (``true_or_false``)."""
    for field in dataclasses.fields(request):
        if field.type in ("bool", bool):
            true_or_false(getattr(request, field.name), field.name)


def true_or_false(value: Any, what: str) -> None:
    """``InvalidInput`` unless ``value`` is True or False: a library caller's
    ``replace_env="no"`` would otherwise wipe the env, as any non-empty string is true."""
    of_type(value, bool, what, "True or False")


def of_type(value: Any, kind: type | tuple[type, ...], what: str, named: str | None = None) -> None:
    """``InvalidInput`` unless ``value`` is a ``kind`` (``named`` so in the message)."""
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        named = named or " or ".join(k.__name__ for k in kinds)
        given = type(value)  # numpy's bool is "numpy.bool", not "bool"
        shown = (
            given.__name__
            if given.__module__ == "builtins"
            else f"{given.__module__}.{given.__qualname__}"
        )
        raise InvalidInput(f"{what} is a {named}, not {shown}")
