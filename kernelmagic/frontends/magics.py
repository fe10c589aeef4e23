"""The magics: parse, call the operation, then display or return.

Each magic takes its command's options through IPython's ``magic_arguments`` (so
``%kernel_install?`` shows argparse's help and a bad argument is a plain ``UsageError``),
builds the command's request and calls its operation. Values are returned through
``render.shown`` so that IPython shows them as tables and ``print()`` as the terminal text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Enum, List, Unicode, default

from kernelmagic import settings as configuration
from kernelmagic.domain.shell_syntax import parse_env_lines, split_args
from kernelmagic.domain.this_kernel import in_kernel, own_spec
from kernelmagic.errors import KernelmagicError
from kernelmagic.frontends import render
from kernelmagic.operations import (
    activate,
    apply,
    doctor,
    edit,
    install,
    kernel_sets,
    kernel_shell,
    listing,
    notebooks,
    project_scan,
    refresh,
    remote,
)
from kernelmagic.operations.options import MAGICS, check_option_count, for_front_end
from kernelmagic.settings import Settings
from kernelmagic.storage.discovery import find_kernel_specs


def takes(request: type, more_help: str = "") -> Callable[[Callable], Callable]:
    """Give a magic the options of ``request``'s command (the same definitions the CLI
    uses) through IPython's ``magic_arguments``, which builds its parser and help."""

    def decorate(func: Callable) -> Callable:
        func.__doc__ = request.SUMMARY + more_help  # type: ignore[attr-defined]
        for opt in reversed(for_front_end(request.OPTIONS, MAGICS)):  # type: ignore[attr-defined]
            func = argument(*opt.flags, **opt.kwargs)(func)
        func = magic_arguments()(func)
        func.request = request  # type: ignore[attr-defined]
        return func

    return decorate


@contextlib.contextmanager
def _as_usage_errors() -> Iterator[None]:
    """Report library failures as one line, the IPython way (a plain UsageError)."""
    try:
        yield
    except KernelmagicError as exc:
        raise UsageError(render.error_text(exc)) from None
    except OSError as exc:  # a failure no check foresaw (a full disk): still one line
        raise UsageError(render.printable(f"{exc.strerror or exc}: {exc.filename or ''}")) from None


@magics_class
class KernelMagics(Magics):
    """Magics to list, show, install, clone, patch and remove Jupyter kernel specs."""

    default_location = Enum(
        list(configuration.LOCATIONS),
        config=True,
        help="Where new specs go when no --user/--sys-prefix/--prefix is given.",
    )
    default_capture = Enum(
        list(configuration.CAPTURE_MODES),
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

    # What jupyter_kernelmagic_config sets is the default; IPython's config overrides it.
    @functools.cached_property
    def _configured(self) -> Settings:
        return configuration.load()

    @default("default_location")
    def _configured_location(self) -> str:
        return self._configured.default_location

    @default("default_capture")
    def _configured_capture(self) -> str:
        return self._configured.default_capture

    @default("extra_noise")
    def _configured_noise(self) -> list[str]:
        return list(self._configured.extra_noise)

    @default("extra_secrets")
    def _configured_secrets(self) -> list[str]:
        return list(self._configured.extra_secrets)

    def _settings(self) -> Settings:
        """The settings in force: the config file's, overridden by IPython's config."""
        return Settings(
            self.default_location,
            self.default_capture,
            tuple(self.extra_secrets),
            tuple(self.extra_noise),
        )

    def _request(self, magic: Any, line: str, body: Any = None) -> Any:
        """The magic's request, built from its argument line (and cell)."""
        ns = self._parsed(magic, line)
        with _as_usage_errors():
            return magic.request.from_args(ns, self._settings(), body)

    def _parsed(self, magic: Any, line: str) -> Any:
        with _as_usage_errors():
            words = split_args(line)
            check_option_count(words)
        return magic.parser.parse_args(words)  # a bad option: IPython's UsageError

    def _say_new(self, change: Any, before: Iterable[str] = (), after: Iterable[str] = ()):
        """Say what an install, clone or remote did; a dry run shows the JSON it would write."""
        for text in before:
            print(text)
        print(render.change_report(change, diff=False))
        for text in after:
            print(text)
        if change.written and in_kernel():
            print(
                "JupyterLab lists a new kernel at its next refresh (about a minute); reload "
                "the page to see it now."
            )
        self._remember(change)

    def _say_changed(self, change: Any) -> None:
        print(render.change_report(change, diff=True))
        self._remember(change)

    def _warn_of_history(self, cell: str | None, from_a_file: str) -> None:
        for text in render.history_note(cell, self._settings().policy, from_a_file):
            print(text)

    def _remember(self, change: Any) -> None:
        if change.written:
            self.last_spec = change.name

    @no_var_expand
    @takes(listing.ListRequest)
    @line_magic
    def kernel_list(self, line: str = "") -> Any:
        request = self._request(self.kernel_list, line)
        with _as_usage_errors():
            return render.shown(listing.listing(request))

    @no_var_expand
    @takes(listing.ShowRequest)
    @line_magic
    def kernel_show(self, line: str = "") -> None:
        request = self._request(self.kernel_show, line)
        with _as_usage_errors():
            info = listing.show(request)
            print(render.spec_detail_text(info, self._settings().policy, render.MAGICS))

    @no_var_expand
    @takes(
        install.InstallRequest,
        "\n\nAs a cell magic, the cell is a shell snippet (e.g. `module load gdal` or "
        "`source setup.sh`): it runs in a clean login shell and what it changes is captured.",
    )
    @line_cell_magic
    def kernel_install(self, line: str = "", cell: str | None = None) -> Any:
        ns = self._parsed(self.kernel_install, line)
        if ns.scan is not None:  # every project below a dir: a report, not one spec
            with _as_usage_errors():
                scan = project_scan.ScanRequest.from_args(ns, self._settings(), cell)
                return render.shown(project_scan.scan(scan))
        with _as_usage_errors():
            request = install.InstallRequest.from_args(ns, self._settings(), cell)
        self._warn_of_history(cell, "kernelmagic install NAME --snippet-file FILE")
        with _as_usage_errors():
            change, captured = install.install(request)
        self._say_new(change, captured.summary_lines(), render.group_note(change, request.group))
        return None

    @no_var_expand
    @takes(edit.CloneRequest)
    @line_magic
    def kernel_clone(self, line: str = "") -> None:
        request = self._request(self.kernel_clone, line)
        with _as_usage_errors():
            change = edit.clone(request)
        self._say_new(change, after=render.group_note(change, request.group))

    @no_var_expand
    @takes(edit.PatchRequest)
    @line_magic
    def kernel_patch(self, line: str = "") -> None:
        request = self._request(self.kernel_patch, line)
        with _as_usage_errors():
            change = edit.patch(request)
        self._say_changed(change)

    @no_var_expand
    @takes(remote.ProvisionersRequest)
    @line_magic
    def kernel_provisioners(self, line: str = "") -> Any:
        self._request(self.kernel_provisioners, line)
        return render.shown(remote.list_provisioners())

    @no_var_expand
    @takes(remote.RemoteRequest)
    @line_magic
    def kernel_remote(self, line: str = "") -> None:
        request = self._request(self.kernel_remote, line)
        with _as_usage_errors():
            change, prerequisites = remote.make_remote_spec(request)
        self._say_new(change, after=[f"Remote prerequisites: {prerequisites}"])

    @no_var_expand
    @takes(refresh.RefreshRequest)
    @line_magic
    def kernel_refresh(self, line: str = "") -> None:
        request = self._request(self.kernel_refresh, line)
        with _as_usage_errors():
            change = refresh.refresh(request)
        self._say_changed(change)

    @no_var_expand
    @takes(
        edit.EnvRequest,
        "\n\nAs a cell magic, each line of the cell is `KEY=VALUE`, `export KEY=VALUE` or "
        "`unset KEY` (shell quotes and # comments allowed).",
    )
    @line_cell_magic
    def kernel_env(self, line: str = "", cell: str | None = None) -> Any:
        with _as_usage_errors():
            body = parse_env_lines(cell) if cell is not None else None
        request = self._request(self.kernel_env, line, body)
        self._warn_of_history(cell, "kernelmagic env -k NAME --file FILE")
        if request.spec is None:
            request = dataclasses.replace(request, spec=self._default_target())
        with _as_usage_errors():
            outcome = edit.env(request)
        if isinstance(outcome, edit.SpecEnv):
            return render.shown(outcome)
        self._say_changed(outcome)
        return None

    def _default_target(self) -> str:
        """The spec ``%kernel_env`` changes without ``-k``; says which, and why."""
        found = (self.last_spec, "the spec last changed here") if self.last_spec else None
        if found is None:
            with _as_usage_errors():
                found = own_spec()
        if found is None:
            raise UsageError(
                "no kernel spec chosen: pass -k NAME (no spec was installed, cloned or patched "
                "in this session, and this session is not running in a Jupyter kernel)"
            )
        name, how = found
        print(f"Kernel spec '{name}' ({how}):")
        return name

    @no_var_expand
    @takes(
        activate.ActivateRequest,
        "\n\nAs a cell magic, the cell is a shell snippet (`module load gdal`, `source "
        "setup.sh`). Outside a kernel (terminal IPython) it works as with --no-restart.",
    )
    @line_cell_magic
    def kernel_activate(self, line: str = "", cell: str | None = None) -> None:
        request = self._request(self.kernel_activate, line, cell)
        self._warn_of_history(cell, "kernelmagic install NAME --snippet-file FILE")
        with _as_usage_errors():
            done = activate.activate_here(request)
        for text in done.lines:
            print(text)
        if done.saved is not None:
            change, captured = done.saved
            self._say_new(change, captured.summary_lines())
        for text in done.closing:
            print(text)

    @no_var_expand
    @takes(kernel_sets.ExportRequest)
    @line_magic
    def kernel_export(self, line: str = "") -> Any:
        """Returns the document (a dict) unless -o writes it to a file."""
        request = self._request(self.kernel_export, line)
        with _as_usage_errors():
            doc = kernel_sets.export_to(request)
        if request.output:
            print(render.exported(doc, request.output))
            return None
        return doc

    @no_var_expand
    @takes(apply.ApplyRequest)
    @line_magic
    def kernel_apply(self, line: str = "") -> None:
        request = self._request(self.kernel_apply, line)
        with _as_usage_errors():
            outcomes = apply.apply_document(request)
        print(render.apply_report(outcomes, verbose=request.verbose))

    @no_var_expand
    @takes(edit.RemoveRequest)
    @line_magic
    def kernel_remove(self, line: str = "") -> None:
        request = self._request(self.kernel_remove, line)
        with _as_usage_errors():
            removed = edit.remove(request)
        for text in render.removal_lines(removed, dry_run=request.dry_run):
            print(text)
        if self.last_spec and self.last_spec not in find_kernel_specs():
            self.last_spec = None

    @no_var_expand
    @takes(doctor.DoctorRequest)
    @line_magic
    def kernel_doctor(self, line: str = "") -> Any:
        request = self._request(self.kernel_doctor, line)
        with _as_usage_errors():
            report = doctor.run(request)
        for text in render.removal_lines(report.removed, dry_run=request.dry_run):
            print(text)
        return report.to_json() if request.json else render.shown(report)

    @no_var_expand
    @takes(kernel_shell.ShellRequest)
    @line_magic
    def kernel_shell(self, line: str = "") -> None:
        """Prints what COMMAND printed (no interactive shell here: that needs a terminal)."""
        request = self._request(self.kernel_shell, line)
        if not request.command:
            raise UsageError(
                "give a COMMAND (an interactive shell needs a terminal: kernelmagic shell NAME)"
            )
        with _as_usage_errors():
            prepared = kernel_shell.prepare(request)
            for note in prepared.notes:
                print(note)
            done = kernel_shell.run(prepared, capture=True)
        print(done.stdout, end="")
        print(done.stderr, end="")
        if done.returncode:
            print(f"({request.command[0]} exited with status {done.returncode})")

    @no_var_expand
    @takes(notebooks.NotebookRequest)
    @line_magic
    def kernel_notebook(self, line: str = "") -> Any:
        request = self._request(self.kernel_notebook, line)
        with _as_usage_errors():
            return render.shown(notebooks.run(request))
