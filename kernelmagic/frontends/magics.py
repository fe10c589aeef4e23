"""The magics: one per command, made from the command table by one factory.

Each ``%kernel_NAME`` takes its command's options through IPython's ``magic_arguments`` (so
``%kernel_install?`` shows argparse's help and a bad argument is a plain ``UsageError``),
builds the command's request, runs it and shows it: a command that changes things prints
what it did and returns nothing; one that reports returns its ``Shown``, which a notebook
shows as a table, ``print()`` as the terminal text, and which reads as its data.

What only a magic does lives here: the cell is the command's body; ``%kernel_env`` without
``-k`` changes the spec last changed in this session (else its own kernel's); a note when a
cell holding a secret enters IPython's history, and when JupyterLab will list a new kernel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    line_magic,
    magics_class,
    no_var_expand,
)
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Enum, List, Unicode, default

from kernelmagic import settings as configuration
from kernelmagic.commands import COMMANDS, Command
from kernelmagic.commands.render import (
    MAGICS,
    Shown,
    error_text,
    history_note,
    os_error_text,
)
from kernelmagic.domain.shell_syntax import split_args
from kernelmagic.domain.this_kernel import in_kernel, own_spec
from kernelmagic.errors import KernelmagicError
from kernelmagic.options import MAGICS as MAGIC_OPTIONS
from kernelmagic.options import check_option_count, for_front_end, old_spellings
from kernelmagic.settings import SECTION, Settings
from kernelmagic.storage.discovery import list_specs

NEW_SPEC_NOTE = (
    "JupyterLab lists a new kernel at its next refresh (about a minute); reload the page to "
    "see it now."
)


@contextlib.contextmanager
def _as_usage_errors() -> Iterator[None]:
    """Report library failures as one line, the IPython way (a plain UsageError)."""
    try:
        yield
    except KernelmagicError as exc:
        raise UsageError(error_text(exc)) from None
    except OSError as exc:  # a failure no check foresaw (a full disk): still one line
        raise UsageError(os_error_text(exc)) from None


def _magic(command: Command) -> Callable[..., Any]:
    """``%kernel_NAME`` (and ``%%kernel_NAME`` for a command with a body), with the
    command's options and help."""
    module = command.load()

    def run(self: _Magics, line: str = "", cell: str | None = None) -> Any:
        return self.run_command(module, run, line, cell)

    run.__name__ = command.magic
    body = getattr(module, "BODY", None)
    run.__doc__ = module.SUMMARY + (f"\n\n{body.help}" if body is not None else "")
    for opt in reversed(for_front_end(module.Request.OPTIONS, MAGIC_OPTIONS)):
        run = argument(*opt.flags, **opt.kwargs)(run)
    run = magic_arguments()(run)
    register: Any = line_cell_magic if command.cell else line_magic
    magic: Callable[..., Any] = no_var_expand(register(run))
    return magic


def _trait(setting: dataclasses.Field[Any]) -> Any:
    """The configurable trait of one of ``Settings``' fields (declared there, once)."""
    choices, helps = setting.metadata.get("choices"), setting.metadata["help"]
    if choices is not None:
        return Enum(list(choices), config=True, help=helps)
    return List(Unicode(), config=True, help=helps)


def _file_default(name: str) -> Any:
    """A trait's default: what jupyter_kernelmagic_config sets (IPython's config wins)."""

    def configured(self: _Magics) -> Any:
        value = getattr(self.configured, name)
        return list(value) if isinstance(value, tuple) else value

    configured.__name__ = f"_configured_{name}"
    return default(name)(configured)


# IPython 8.0 (the oldest supported) has no types: the base class is Any there.
class _Magics(Magics):  # type: ignore[misc, unused-ignore]
    """What every magic shares; ``KernelMagics`` adds one method per command, and a trait
    per setting."""

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.last_spec: str | None = None  # the target of %kernel_env without -k

    @functools.cached_property
    def configured(self) -> Settings:
        """The config files' settings, read when a magic first needs one."""
        return configuration.load()

    def _settings(self) -> Settings:
        """The settings in force: the config file's, overridden by IPython's config."""
        values: dict[str, Any] = {}
        with _as_usage_errors():  # a broken config file: one line, naming it
            for setting in dataclasses.fields(Settings):
                value = getattr(self, setting.name)
                values[setting.name] = tuple(value) if isinstance(value, list) else value
        return Settings(**values)

    def run_command(self, module: ModuleType, magic: Any, line: str, cell: str | None) -> Any:
        """Parse, build the request, run, show: print what a change did, return a report."""
        with _as_usage_errors():
            words = split_args(line)
            check_option_count(words)
        ns = magic.parser.parse_args(words)  # a bad option: IPython's UsageError
        for text in old_spellings(module.Request.OPTIONS, words):
            print(text)
        config = self._settings()
        with _as_usage_errors():  # a replaced request is checked again: the same one line
            request = module.Request.from_args(ns, config, cell)
            request = dataclasses.replace(request, **getattr(module, "MAGIC_REQUEST", {}))
        body = getattr(module, "BODY", None)
        if body is not None:
            for text in history_note(cell, config.policy, body.instead):
                print(text)
        target = getattr(module, "SESSION_SPEC", None)
        if target is not None and getattr(request, target) is None:
            session_spec = self._session_spec()
            with _as_usage_errors():
                request = dataclasses.replace(request, **{target: session_spec})
        with _as_usage_errors():
            shown = module.show(module.run(request), MAGICS)
        self._remember(shown)
        for note in shown.notes:
            print(note)
        if shown.value is None:
            if shown.text:
                print(shown.text)
            if shown.change is not None and shown.change.written and _new(shown) and in_kernel():
                print(NEW_SPEC_NOTE)
            return None
        return shown.value if shown.plain else shown

    def _remember(self, shown: Shown) -> None:
        if shown.change is not None and shown.change.written:
            self.last_spec = shown.change.name
        gone = {path.rstrip("/").rsplit("/", 1)[-1] for path in shown.removed_dirs}
        if self.last_spec in gone:
            self.last_spec = None

    def _session_spec(self) -> str:
        """The spec ``%kernel_env`` changes without ``-k``; says which, and why."""
        found = (self.last_spec, "the spec last changed here") if self.last_spec else None
        if found is None:
            with _as_usage_errors():
                found = own_spec(list_specs)
        if found is None:
            raise UsageError(
                "no kernel spec chosen: pass -k NAME (no spec was installed, cloned or patched "
                "in this session, and this session is not running in a Jupyter kernel)"
            )
        name, how = found
        print(f"Kernel spec '{name}' ({how}):")
        return name


def _new(shown: Shown) -> bool:
    change = shown.change
    return change is not None and change.action in ("installed", "replaced", "cloned")


KernelMagics = magics_class(
    type(
        SECTION,  # the config section: c.KernelMagics, %config KernelMagics
        (_Magics,),
        {
            "__doc__": "Magics to list, show, install, clone, patch and remove Jupyter kernel "
            "specs.",
            "__module__": __name__,
            **{setting.name: _trait(setting) for setting in dataclasses.fields(Settings)},
            **{
                f"_configured_{setting.name}": _file_default(setting.name)
                for setting in dataclasses.fields(Settings)
            },
            **{command.magic: _magic(command) for command in COMMANDS},
        },
    )
)
