"""IPython magics over the spec library: parse, call the library, then display or return."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    line_magic,
    magics_class,
    no_var_expand,
)
from IPython.core.magic_arguments import MagicArgumentParser
from traitlets import Enum, List, Unicode

from kernelmagic.domain.shell_syntax import parse_env_lines, split_args
from kernelmagic.errors import KernelmagicError
from kernelmagic.frontends import helptext
from kernelmagic.operations import options

# The library (specs, operations, render) is imported inside the magics, when first used:
# `%load_ext kernelmagic` must stay cheap and must not import jupyter_client or ipykernel.


def _takes(command: str, extra_doc: str = "") -> Callable[[Callable], Callable]:
    """Give a magic the options of ``command`` (shared with the CLI) and its help text.

    The help is formatted from the option definitions; the argparse parser itself is built
    on first use (building nine of them cost ~15 ms of every ``%load_ext``).
    """

    def decorate(func: Callable) -> Callable:
        func.__doc__ = helptext.help_text(command, f"%{func.__name__}") + extra_doc
        func.command = command
        return func

    return decorate


@functools.cache
def _parser(command: str, prog: str) -> MagicArgumentParser:
    # IPython's parser: a bad argument raises a plain UsageError instead of exiting.
    parser = MagicArgumentParser(prog=prog, description=options.COMMANDS[command].summary)
    options.add_options(parser, command)
    return parser


@contextlib.contextmanager
def _as_usage_errors() -> Iterator[None]:
    """Report library failures as one line, the IPython way (a plain UsageError)."""
    try:
        yield
    except KernelmagicError as exc:
        raise UsageError(_one_line(str(exc))) from None
    except OSError as exc:  # a failure no check foresaw (a full disk): still one line
        raise UsageError(_one_line(f"{exc.strerror or exc}: {exc.filename or ''}")) from None


def _one_line(message: str) -> str:
    from kernelmagic.frontends.render import printable

    return printable(message)


@magics_class
class KernelMagics(Magics):
    """Magics to list, show, install, clone, patch and remove Jupyter kernel specs."""

    default_location = Enum(
        ["user", "sys-prefix"],
        "user",
        config=True,
        help="Where new specs go when no --user/--sys-prefix/--prefix is given.",
    )
    default_capture = Enum(
        ["changed", "all", "none"],
        "changed",
        config=True,
        help="The --capture mode used when none is given.",
    )
    extra_noise = List(
        Unicode(),
        config=True,
        help="More glob patterns of variables never to capture (e.g. site-specific session "
        "variables).",
    )
    extra_secrets = List(
        Unicode(),
        config=True,
        help="More glob patterns (case-insensitive) of variable names that hold secrets.",
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.last_spec: str | None = None  # the target of %kernel_env without -k

    def _defaults(self) -> Any:
        from kernelmagic.domain.policy import EnvPolicy
        from kernelmagic.operations import commands

        return commands.Defaults(
            location=self.default_location,
            capture=self.default_capture,
            policy=EnvPolicy(tuple(self.extra_secrets), tuple(self.extra_noise)),
            session=True,
        )

    @staticmethod
    def _parse(magic: Any, line: str) -> Any:
        with _as_usage_errors():
            words = split_args(line)
            options.check_option_count(words)
        return _parser(magic.command, f"%{magic.__name__}").parse_args(words)

    def _remember(self, change: Any) -> None:
        if change.written:
            self.last_spec = change.name

    @no_var_expand
    @_takes("list")
    @line_magic
    def kernel_list(self, line: str = "") -> Any:
        from kernelmagic.operations import commands

        ns = self._parse(self.kernel_list, line)
        return commands.listing(ns, self._defaults())

    @no_var_expand
    @_takes("show")
    @line_magic
    def kernel_show(self, line: str = "") -> None:
        from kernelmagic.operations import commands

        ns = self._parse(self.kernel_show, line)
        with _as_usage_errors():
            print(commands.show(ns, self._defaults()))

    @no_var_expand
    @_takes(
        "install",
        "\n\nAs a cell magic, the cell is a shell snippet (e.g. `module load gdal` or "
        "`source setup.sh`): it runs in a clean login shell and what it changes is captured.",
    )
    @line_cell_magic
    def kernel_install(self, line: str = "", cell: str | None = None) -> None:
        from kernelmagic.frontends import render
        from kernelmagic.operations import commands

        ns = self._parse(self.kernel_install, line)
        with _as_usage_errors():
            change, captured = commands.install(ns, self._defaults(), snippet=cell)
        self._report_new(change, captured.summary_lines(), render.group_note(change, ns.group))

    @no_var_expand
    @_takes("clone")
    @line_magic
    def kernel_clone(self, line: str = "") -> None:
        from kernelmagic.frontends import render
        from kernelmagic.operations import commands

        ns = self._parse(self.kernel_clone, line)
        with _as_usage_errors():
            change = commands.clone(ns, self._defaults())
        self._report_new(change, after=render.group_note(change, ns.group))

    @no_var_expand
    @_takes("patch")
    @line_magic
    def kernel_patch(self, line: str = "") -> None:
        from kernelmagic.operations import commands

        ns = self._parse(self.kernel_patch, line)
        with _as_usage_errors():
            change = commands.patch(ns, self._defaults())
        self._report_patch(change)

    @no_var_expand
    @_takes("provisioners")
    @line_magic
    def kernel_provisioners(self, line: str = "") -> Any:
        from kernelmagic.operations import commands

        ns = self._parse(self.kernel_provisioners, line)
        return commands.provisioners(ns, self._defaults())

    @no_var_expand
    @_takes("remote")
    @line_magic
    def kernel_remote(self, line: str = "") -> None:
        from kernelmagic.operations import commands

        ns = self._parse(self.kernel_remote, line)
        with _as_usage_errors():
            change, prerequisites = commands.make_remote(ns, self._defaults())
        self._report_new(change, after=[f"Remote prerequisites: {prerequisites}"])

    @no_var_expand
    @_takes("refresh")
    @line_magic
    def kernel_refresh(self, line: str = "") -> None:
        from kernelmagic.operations import commands

        ns = self._parse(self.kernel_refresh, line)
        with _as_usage_errors():
            change = commands.refresh(ns, self._defaults())
        self._report_patch(change)

    def _report_new(
        self, change: Any, before: Iterable[str] = (), after: Iterable[str] = ()
    ) -> None:
        """Say what an install, clone or remote did; a dry run shows the JSON it would write."""
        from kernelmagic.frontends import render
        from kernelmagic.operations.activate import in_kernel

        for line in before:
            print(line)
        print(render.change_report(change, diff=False))
        for line in after:
            print(line)
        if change.written and in_kernel():
            print(
                "JupyterLab lists a new kernel at its next refresh (about a minute); reload "
                "the page to see it now."
            )
        self._remember(change)

    def _report_patch(self, change: Any) -> None:
        from kernelmagic.frontends import render

        print(render.change_report(change, diff=True))
        self._remember(change)

    @no_var_expand
    @_takes(
        "env",
        "\n\nAs a cell magic, each line of the cell is `KEY=VALUE`, `export KEY=VALUE` or "
        "`unset KEY` (shell quotes and # comments allowed).",
    )
    @line_cell_magic
    def kernel_env(self, line: str = "", cell: str | None = None) -> Any:
        from kernelmagic.operations import commands

        ns = self._parse(self.kernel_env, line)
        with _as_usage_errors():
            from_cell = parse_env_lines(cell) if cell is not None else None
            target = ns.kernel or self._default_target()
            outcome = commands.env(ns, self._defaults(), target, from_cell)
        if isinstance(outcome, dict):
            return outcome
        self._report_patch(outcome)
        return None

    def _default_target(self) -> str:
        """The spec ``%kernel_env`` changes without ``-k``; says which, and why."""
        from kernelmagic.operations.activate import session_spec

        found = (self.last_spec, "the spec last changed here") if self.last_spec else None
        if found is None:
            with _as_usage_errors():
                found = session_spec()
        if found is None:
            raise UsageError(
                "no kernel spec chosen: pass -k NAME (no spec was installed, cloned or patched "
                "in this session, and this session is not running in a Jupyter kernel)"
            )
        name, how = found
        print(f"Kernel spec '{name}' ({how}):")
        return name

    @no_var_expand
    @_takes(
        "activate",
        "\n\nAs a cell magic, the cell is a shell snippet (`module load gdal`, `source "
        "setup.sh`). Outside a kernel (terminal IPython) it works as with --no-restart.",
    )
    @line_cell_magic
    def kernel_activate(self, line: str = "", cell: str | None = None) -> None:
        from kernelmagic.operations import activate

        ns = self._parse(self.kernel_activate, line)
        with _as_usage_errors():
            done = activate.activate_here(ns, self._defaults(), cell)
        for text in done.report:
            print(text)
        if done.saved is not None:
            change, captured = done.saved
            self._report_new(change, captured.summary_lines())
        for text in done.closing:
            print(text)

    @no_var_expand
    @_takes("export")
    @line_magic
    def kernel_export(self, line: str = "") -> Any:
        """Returns the document (a dict) unless -o writes it to a file."""
        from kernelmagic.frontends import render
        from kernelmagic.operations import commands

        ns = self._parse(self.kernel_export, line)
        with _as_usage_errors():
            doc, written = commands.export(ns, self._defaults())
        if written:
            print(render.exported(doc, written))
            return None
        return doc

    @no_var_expand
    @_takes("apply")
    @line_magic
    def kernel_apply(self, line: str = "") -> None:
        from kernelmagic.frontends import render
        from kernelmagic.operations import commands

        ns = self._parse(self.kernel_apply, line)
        with _as_usage_errors():
            outcomes = commands.apply(ns, self._defaults())
        print(render.apply_report(outcomes, check=ns.check))

    @no_var_expand
    @_takes("remove")
    @line_magic
    def kernel_remove(self, line: str = "") -> None:
        from kernelmagic import specs
        from kernelmagic.operations import commands

        ns = self._parse(self.kernel_remove, line)
        with _as_usage_errors():
            removed = commands.remove(ns, self._defaults())
        for path in removed:
            print(f"Removed kernel spec {path}")
        if self.last_spec and self.last_spec not in specs.find_kernel_specs():
            self.last_spec = None

    @no_var_expand
    @_takes("doctor")
    @line_magic
    def kernel_doctor(self, line: str = "") -> Any:
        from kernelmagic.operations import commands

        ns = self._parse(self.kernel_doctor, line)
        with _as_usage_errors():
            report = commands.run_doctor(ns, self._defaults())
        for path in report.removed:
            print(f"Removed kernel spec {path}")
        return report.to_json() if ns.json else report


# Magics whose arguments include an existing spec name, for tab completion.
_COMPLETED = (
    "kernel_show",
    "kernel_clone",
    "kernel_patch",
    "kernel_env",
    "kernel_remove",
    "kernel_doctor",
    "kernel_refresh",
    "kernel_remote",
)


def _complete_spec_names(self: Any, event: Any) -> list[str]:
    from kernelmagic import specs

    return specs.spec_names()


def _completer_keys() -> list[str]:
    return [prefix + name for name in _COMPLETED for prefix in ("%", "%%")]


# The library's values that IPython shows through our renderers (the library never imports
# the display layer): module, class name, text printer.
def _spec_info_text(info: Any, p: Any, cycle: bool) -> None:
    from kernelmagic.frontends import render

    p.text(render.spec_detail_text(info))


_PRINTERS = (("kernelmagic.storage.discovery", "SpecInfo", _spec_info_text),)


def _text_formatter(shell: Any) -> Any:
    formatter = getattr(shell, "display_formatter", None)
    return formatter.formatters["text/plain"] if formatter is not None else None


def register(shell: Any) -> KernelMagics:
    magics = KernelMagics(shell=shell)
    shell.register_magics(magics)
    text = _text_formatter(shell)
    if text is not None:
        for module, name, printer in _PRINTERS:
            text.for_type_by_name(module, name, printer)
    for key in _completer_keys():
        shell.set_hook("complete_command", _complete_spec_names, str_key=key)
    return magics


def unregister(shell: Any) -> None:
    """Remove exactly what ``register`` added: the magics, the completers, the configurable."""
    manager = shell.magics_manager
    magics = manager.registry.pop(KernelMagics.__name__, None)
    if magics is None:
        return
    for kind, table in magics.magics.items():
        for name in table:
            bound = manager.magics[kind].get(name)
            if getattr(bound, "__self__", None) is magics:
                del manager.magics[kind][name]
    with contextlib.suppress(ValueError):
        shell.configurables.remove(magics)
    text = _text_formatter(shell)
    if text is not None:
        for module, name, printer in _PRINTERS:
            if text.deferred_printers.get((module, name)) is printer:
                del text.deferred_printers[(module, name)]
    dispatcher = shell.strdispatchers.get("complete_command")
    if dispatcher is not None:
        for key in _completer_keys():
            chain = dispatcher.strs.get(key)
            if chain is None:
                continue
            chain.chain = [
                (p, f)
                for p, f in chain.chain
                if getattr(f, "__func__", f) is not _complete_spec_names
            ]
            if not chain.chain:
                del dispatcher.strs[key]
