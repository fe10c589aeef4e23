"""Errors a user sees as one line; ``str(exc)`` is the message.

``InvalidInput`` means the request itself was wrong (exit status 2 on the command line);
every other ``KernelmagicError`` is a failed operation (exit status 1).
"""

from __future__ import annotations

from collections.abc import Iterable


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
        super().__init__(message)
        self.command = command


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
