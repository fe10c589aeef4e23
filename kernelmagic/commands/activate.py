"""``%kernel_activate``: activate an environment in the kernel this session runs in.

The source (``--modules``, ``--from-conda`` or a snippet) runs in a shell that starts from
the kernel's own environment (``domain.activation``); what it changes is shown, and the
kernel restarts in place with it (``restart.inplace``), or, with ``--no-restart`` or
outside a kernel, ``os.environ`` is updated.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kernelmagic.commands import Body
from kernelmagic.commands.install import InstallRequest, install, source_from
from kernelmagic.commands.render import Shown, lines, shown_change
from kernelmagic.domain import activation, envcapture, languages, sources
from kernelmagic.domain.checks import argv_strings, launch_program
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.provenance import Source
from kernelmagic.domain.spec_info import validate_name
from kernelmagic.domain.this_kernel import kernel_app, own_spec
from kernelmagic.errors import InvalidInput, SourceFailed
from kernelmagic.options import (
    FROM_CONDA,
    INCLUDE,
    MODULES,
    REPLACE,
    SHELL,
    SHELL_TIMEOUT,
    Option,
    option,
    seconds,
    user_kernels_dir,
)
from kernelmagic.settings import Settings
from kernelmagic.storage import started_environments
from kernelmagic.storage.discovery import get_spec, list_specs, location_dir

PREFLIGHT_TIMEOUT = 60.0

NO_RESTART = option(
    "--no-restart",
    action="store_true",
    help="only update os.environ of this process (no restart); says which variables this "
    "interpreter reads only when it starts",
)
SAVE = option(
    "--save",
    metavar="NAME",
    help="also install a spec NAME like this kernel's, carrying what the source sets, so "
    "the next start from Jupyter has it (%%kernel_refresh works on it)",
)


SUMMARY = (
    "Activate an environment in this running kernel: run --modules, --from-conda or the "
    "cell's snippet in a shell started from the kernel's own environment, show what "
    "changed, and restart the kernel in place with it (same process, same connection; "
    "variables in memory are lost) once the cell has run."
)


@dataclass(frozen=True)
class ActivateRequest:
    """``%kernel_activate``: what to activate in this process, and whether to restart."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (
        MODULES, FROM_CONDA, SHELL, SHELL_TIMEOUT, INCLUDE, NO_RESTART, SAVE, REPLACE,
    )  # fmt: skip

    source: Source
    timeout: float = sources.SHELL_TIMEOUT
    include: tuple[str, ...] = ()  # keep these even if secret-like
    no_restart: bool = False
    save: str | None = None  # also install a spec of this name
    replace: bool = False  # ... over an existing one
    kernels_dir: str = field(default_factory=user_kernels_dir)  # where --save writes
    capture_mode: str = "changed"  # how --save captures
    policy: EnvPolicy = DEFAULT_POLICY

    def __post_init__(self) -> None:
        object.__setattr__(self, "include", tuple(self.include))
        seconds(self.timeout)
        if self.source.origin not in ("snippet", "modules", "conda"):
            raise InvalidInput(
                'name what to activate: --modules "A B", --from-conda ENV, or a shell snippet '
                "as the cell of %%kernel_activate"
            )
        # Before the source runs (a snippet or a module load can take seconds).
        if self.save is not None:
            validate_name(self.save)
        elif self.replace:
            raise InvalidInput("--replace goes with --save NAME (the spec it replaces)")

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> ActivateRequest:
        source = source_from(
            snippet=body, modules=ns.modules, from_conda=ns.from_conda, shell=ns.shell
        )
        return cls(
            source,
            ns.timeout,
            tuple(ns.include),
            ns.no_restart,
            ns.save,
            ns.replace,
            location_dir(sys_prefix=settings.default_location == "sys-prefix"),
            settings.default_capture,
            settings.policy,
        )


@dataclass
class ActivationReport:
    """What ``%kernel_activate`` did, in the order to say it."""

    lines: list[str]
    saved: Any = None  # (Change, CaptureResult) of --save
    closing: list[str] = field(default_factory=list)


def activate_here(request: ActivateRequest) -> ActivationReport:
    """Activate the request's source in this process: restart this kernel in place with
    it, or (``no_restart``, or outside a kernel) update ``os.environ``."""
    # zmq comes with the restart machinery: only an activation pays for importing it.
    from kernelmagic.restart import inplace

    made = activation.activate(
        request.source,
        os.environ,
        policy=request.policy,
        include=request.include,
        timeout=request.timeout,
    )
    done = ActivationReport(
        [f"Activating {made.source.described()} from this process's environment:"]
    )
    changed = bool(made.changed or made.removed)
    done.lines += made.report_lines(request.policy) if changed else ["  (nothing changed)"]
    app = kernel_app()
    bookkeeping = made.only_bookkeeping(request.policy)
    restart = changed and not bookkeeping and app is not None and not request.no_restart
    new_env = made.environment(os.environ)
    if restart:
        reason = inplace.cannot_restart(app)
        if reason:
            raise SourceFailed(f"cannot restart this kernel in place: {reason}; use --no-restart")
        # The check that refuses an environment the interpreter cannot start in: run once
        # per environment (fingerprinted with what it depends on), kept when it passes with
        # what it read, which must be unchanged for the pass to be believed again.
        if not started_environments.passed(sys.executable, new_env):
            read = activation.check_interpreter_starts(sys.executable, new_env, PREFLIGHT_TIMEOUT)
            started_environments.remember(sys.executable, new_env, read)
    if request.save:
        done.saved = _save(request, made)
    if restart:
        inplace.Handoff(app, new_env).arm()
        done.closing.append(
            f"Restarting this kernel in place when this cell has run (same process, PID "
            f"{os.getpid()}): variables in memory are lost, as with a restart."
        )
        unguarded = inplace.unguarded_close(app)
        if unguarded:
            done.closing.append(
                f"A request sent in the moment the old process closes can be lost here: "
                f"{unguarded}."
            )
        if not request.save:
            done.closing.append(
                "Jupyter's own restart (Kernel > Restart) starts the kernel from its spec "
                "again, without this activation; --save NAME keeps it in a spec."
            )
        if "kernelmagic" not in (getattr(app, "extensions", None) or ()):
            # Loaded with %load_ext in this process, not by the kernel's configuration.
            done.closing.append(
                "The restarted kernel starts without kernelmagic's magics: run "
                "%load_ext kernelmagic again to use them there."
            )
        return done
    made.apply(os.environ)
    if bookkeeping and app is not None and not request.no_restart:
        done.closing.append(
            "Only the module system's own records changed (already loaded?): nothing to "
            "restart for; os.environ is updated."
        )
        return done
    if changed:
        where = "this kernel" if app is not None else "this session (not a Jupyter kernel)"
        done.closing.append(f"Updated os.environ of {where}; nothing was restarted.")
        late = made.needs_restart()
        if late:
            how = "without --no-restart to restart in place" if app else "in a new session"
            done.closing.append(
                f"Processes started from here see them, but this interpreter reads these only "
                f"when it starts: {', '.join(late)} (run it {how})"
            )
    return done


def _save(request: ActivateRequest, made: activation.Activation) -> Any:
    """A spec like this kernel's (its env kept where the activation does not change it) that
    carries the source's variables, recorded so that ``%kernel_refresh`` works on it."""
    assert request.save is not None
    found = own_spec(list_specs)
    like, kept, program, display_name = None, {}, None, None
    if found is not None:
        like = found[0]
        spec = get_spec(like).spec
        kept = _kept_env(spec.get("env") or {}, made)
        first = (argv_strings(spec) or [""])[0]
        if launch_program(first) != first:
            # A bare `python` (ipykernel's own spec): Jupyter ran its interpreter, this one.
            program = sys.executable
        if str(spec.get("language", "")).lower() == "python":  # not "Python 3 (ipykernel) (x)"
            version = "{}.{}".format(*sys.version_info[:2])
            display_name = languages.generated_display_name("python", version, request.save)
    return install(
        InstallRequest(
            request.save,
            made.source,
            like=like,
            program=program,
            display_name=display_name,
            kernels_dir=request.kernels_dir,
            env=kept,
            capture=envcapture.CaptureOptions(
                mode=request.capture_mode, include=request.include, policy=request.policy
            ),
            replace=request.replace,
            timeout=request.timeout,
        )
    )


def _kept_env(env: Mapping[str, str], made: activation.Activation) -> dict[str, str]:
    """The template's own env where the activation neither changes nor unsets it; and a
    PATH-like one it only added to, with those additions around the template's value (walk
    Q: the spec's own `PATH=/gdal/bin:${PATH}` was dropped for the module's
    `/proj/bin:${PATH}`, and /gdal/bin with it)."""
    kept = {}
    for name, value in env.items():
        if name in made.removed:
            continue
        if name not in made.changed:
            kept[name] = value
            continue
        before = made.previous.get(name)
        if envcapture.is_path_like(name) and before and isinstance(value, str):
            # Each entry once, the first kept, as a lookup finds it (walk S: the spec's dir
            # was there twice, the launcher's value held it already, and Lmod kept it once,
            # which read as an entry removed: nothing was kept).
            once = [os.pathsep.join(envcapture.unique_entries(v.split(os.pathsep)))
                    for v in (made.changed[name], before)]  # fmt: skip
            added = envcapture.path_value(name, once[0], once[1], True)
            template = f"${{{name}}}"
            if template in added and added != template:
                kept[name] = added.replace(template, value, 1)
    return kept


Request = ActivateRequest
BODY = Body(
    option="snippet_file",  # none on the command line: a magic only
    instead="kernelmagic install NAME --snippet-file FILE",
    help="As a cell magic, the cell is a shell snippet (`module load gdal`, `source "
    "setup.sh`). Outside a kernel (terminal IPython) it works as with --no-restart.",
)


def run(request: ActivateRequest) -> ActivationReport:
    return activate_here(request)


def show(result: ActivationReport, style: str) -> Shown:
    if result.saved is None:
        return Shown(lines(result.lines, result.closing))
    change, captured = result.saved
    saved = shown_change(change, diff=False, before=captured.summary_lines())
    return Shown(lines(result.lines, saved.text, result.closing), change=change)
