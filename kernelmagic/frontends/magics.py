"""The magics: one per command, made from the command table by one factory.

Each ``%kernel_NAME`` takes its command's options through IPython's ``magic_arguments`` (so
``%kernel_install?`` shows argparse's help and a bad argument is a plain ``UsageError``),
builds the command's request, runs it and shows it: a command that changes things prints
what it did and returns nothing; one that reports returns its ``Shown``, which a notebook
shows as a table, ``print()`` as the terminal text, and which reads as its data.

What only a magic does lives here: the cell is the command's body; ``%kernel_env`` without
``-k`` changes the spec last changed in this session (else its own kernel's); a note when a
cell holding a secret enters IPython's history, and when JupyterLab will list a new kernel.

A magic's command module is imported, and its parser built, when the magic first runs or its
help is asked for: the first magic of a session (``%kernel_activate`` in the cell that
restarts) imports one command, not all sixteen (~50 ms).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    line_magic,
    magics_class,
)
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Enum, List, TraitError, Unicode, default
from traitlets.config import Config, Configurable

from kernelmagic import settings as configuration
from kernelmagic.commands import COMMANDS, Command
from kernelmagic.commands.render import (
    MAGICS,
    Shown,
    ShownData,
    error_text,
    history_note,
    os_error_text,
    printable,
)
from kernelmagic.domain.shell_syntax import split_args
from kernelmagic.domain.this_kernel import in_kernel, own_spec
from kernelmagic.errors import KernelmagicError
from kernelmagic.options import MAGICS as MAGIC_OPTIONS
from kernelmagic.options import check_option_count, for_front_end, old_spellings, parse_words
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


_DOLLAR_NAME = re.compile(r"\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)")


def _unexpanded_said(error: str, line: str) -> str | None:
    """The error with a note when it quotes a ``$NAME`` of the line as written: IPython
    expands ``$name`` in most magics, and these pass it on unexpanded (a spec's env takes
    ``${PATH}``), so ``--python $CONDA_PREFIX/bin/python`` failed with no word of why."""
    for match in _DOLLAR_NAME.finditer(line):
        if match.group(0) in error:
            return (
                f"{error} (%kernel_ magics take {match.group(0)} as written, for a spec's "
                "${NAME} templates: write the value itself)"
            )
    return None


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
    made: Callable[..., Any] = magic_arguments()(run)
    return made


class _LazyMagic:
    """A command's magic method as the class holds it, made by ``_magic`` on first use.
    Looked up on an instance it is a ``_Bound``, which makes it only when called or asked
    for its help: IPython binds every magic of the class when it registers them, and
    traitlets looks at every attribute of the class when it is made."""

    def __init__(self, command: Command) -> None:
        self.command, self.__name__ = command, command.magic
        self._made: Callable[..., Any] | None = None

    def made(self) -> Callable[..., Any]:
        if self._made is None:
            self._made = _magic(self.command)
        return self._made

    @property
    def parser(self) -> Any:
        """The magic's argparse parser (``magic_arguments``')."""
        made: Any = self.made()  # magic_arguments set it on the function
        return made.parser

    def __get__(self, magics: Any, owner: type | None = None) -> Any:
        return self if magics is None else _Bound(self, magics)


class _Bound:
    """A lazy magic bound to the magics instance: what IPython calls, and reads help from."""

    _ipython_magic_no_var_expand = True  # IPython's no_var_expand: `$` reaches the command

    def __init__(self, lazy: _LazyMagic, magics: Any) -> None:
        self._lazy, self.__self__, self.__name__ = lazy, magics, lazy.__name__

    def __call__(self, line: str = "", cell: str | None = None) -> Any:
        return self._lazy.made()(self.__self__, line, cell)

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]  # `%kernel_NAME?`: its help
        return self._lazy.made().__doc__


def _declared(command: Command) -> Any:
    """The class attribute for ``command``'s magic, registered as IPython's decorators do."""
    register: Any = line_cell_magic if command.cell else line_magic
    return register(command.magic)(_LazyMagic(command))  # by name: it is not a function


def _trait(setting: dataclasses.Field[Any]) -> Any:
    """The configurable trait of one of ``Settings``' fields (declared there, once)."""
    choices, helps = setting.metadata.get("choices"), setting.metadata["help"]
    if choices is not None:
        return Enum(list(choices), config=True, help=helps)
    return List(Unicode(), config=True, help=helps)


def _without_wrong_values(section: str, config: Any) -> tuple[Any, str | None]:
    """``config`` less a value of ``section`` its trait refuses, and what is wrong with it;
    (None, None) when every value is right."""
    settings = dict(config or {}).get(section)  # plain lookups: indexing creates sections
    if not settings:
        return None, None
    fields = {setting.name: setting for setting in dataclasses.fields(Settings)}
    wrong = []
    for name, value in dict(settings).items():
        if name not in fields:
            continue  # traitlets warns of a name it does not know, itself
        # Loaded as traitlets loads it: it casts what the trait alone would refuse (a str
        # for a list, `ipython --KernelMagics.x=...`, `c.KernelMagics.x.append(...)`).
        trait = _trait(fields[name])
        holder = type(section, (Configurable,), {name: trait})
        try:
            holder(config=Config({section: {name: value}}))
        except TraitError:
            wrong.append(f"c.{section}.{name} = {value!r}: expected {trait.info()}")
            settings = {k: v for k, v in dict(settings).items() if k != name}
    if not wrong:
        return None, None
    checked = config.copy()
    checked[section] = type(config)(settings)
    return checked, f"IPython config: {'; '.join(wrong)}"


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
        # A wrong value of ours in IPython's config (ipython_config.py, a %config IPython
        # refused but kept): traitlets would stop the registration with a long traceback.
        # The magics load without it, and each says so in one line, as they say a wrong
        # jupyter_kernelmagic_config.
        config = kwargs.get("config", getattr(shell, "config", None))
        checked, _ = _without_wrong_values(type(self).__name__, config)
        if checked is not None:
            kwargs["config"] = checked
        super().__init__(shell=shell, **kwargs)
        # The target of %kernel_env without -k: (name, dir) of the spec last changed here.
        self.last_spec: tuple[str, str] | None = None

    @functools.cached_property
    def configured(self) -> Settings:
        """The config files' settings, read when a magic first needs one."""
        return configuration.load()

    def _settings(self) -> Settings:
        """The settings in force: the config file's, overridden by IPython's config."""
        # IPython's config as it is now: a %config may have set the value right since.
        _, wrong = _without_wrong_values(type(self).__name__, getattr(self.shell, "config", None))
        if wrong is not None:
            raise UsageError(wrong)
        values: dict[str, Any] = {}
        with _as_usage_errors():  # a broken config file: one line, naming it
            for setting in dataclasses.fields(Settings):
                value = getattr(self, setting.name)
                values[setting.name] = tuple(value) if isinstance(value, list) else value
        return Settings(**values)

    def run_command(self, module: ModuleType, magic: Any, line: str, cell: str | None) -> Any:
        """Parse, build the request, run, show: print what a change did, return a report."""
        try:
            return self._run_command(module, magic, line, cell)
        except UsageError as exc:
            said = _unexpanded_said(str(exc), line)
            if said is None:
                raise
            raise UsageError(said) from None

    def _run_command(self, module: ModuleType, magic: Any, line: str, cell: str | None) -> Any:
        with _as_usage_errors():
            words = split_args(line)
            check_option_count(words)
        try:
            ns = parse_words(magic.parser, words)  # a bad option: IPython's UsageError
        except UsageError as exc:  # which may quote a word holding a secret
            raise UsageError(error_text(str(exc))) from None
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
        targets = getattr(module, "SESSION_SPEC", None)
        if targets is not None and getattr(request, targets[0]) is None:
            session_spec = self._session_spec()
            with _as_usage_errors():
                request = dataclasses.replace(
                    request, **dict(zip(targets, session_spec, strict=True))
                )
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
        if shown.plain:
            return shown.value
        if isinstance(shown.value, ShownData):  # a list, a dict: returned as itself
            return shown.value.as_shown(shown)
        return shown

    def _remember(self, shown: Shown) -> None:
        change = shown.change
        if change is not None and change.written:
            self.last_spec = (change.name, os.path.normpath(change.resource_dir))
        gone = {os.path.normpath(path) for path in shown.removed_dirs}
        if self.last_spec is not None and self.last_spec[1] in gone:
            self.last_spec = None

    def _session_spec(self) -> tuple[str, str | None]:
        """The spec ``%kernel_env`` changes without ``-k`` (its name, and its dir where it is
        the one last changed here: Jupyter may start another of its name); says which."""
        if self.last_spec is not None and not os.path.isdir(self.last_spec[1]):
            self.last_spec = None  # removed since, by hand or by another process
        if self.last_spec is not None:
            name, where = self.last_spec
            print(printable(f"Kernel spec '{name}' in {where} (the spec last changed here):"))
            return name, where
        with _as_usage_errors():
            found = own_spec(list_specs)
        if found is None:
            raise UsageError(
                "no kernel spec chosen: pass -k NAME (no spec was installed, cloned or patched "
                "in this session, and this session is not running in a Jupyter kernel)"
            )
        name, how = found
        print(f"Kernel spec '{name}' ({how}):")
        return name, None


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
            **{command.magic: _declared(command) for command in COMMANDS},
        },
    )
)
