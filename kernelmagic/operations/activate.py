"""The kernel this session runs in: whether it is one, which spec started it, and activating
an environment in it (``%kernel_activate``).

ipykernel is imported only when it is already loaded; nothing here imports IPython.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from kernelmagic.domain import activation
from kernelmagic.errors import InvalidInput, SourceFailed
from kernelmagic.operations import commands

PREFLIGHT_TIMEOUT = 60.0


def kernel_app() -> Any | None:
    """The running ``IPKernelApp`` when this session is a Jupyter kernel, else None."""
    if "ipykernel" not in sys.modules:
        return None
    from ipykernel.kernelapp import IPKernelApp

    # initialized() alone is not enough: a terminal IPython's app is a singleton of a common
    # base class, and IPKernelApp inherits its _instance.
    if IPKernelApp.initialized() and isinstance(IPKernelApp._instance, IPKernelApp):
        return IPKernelApp._instance
    return None


def in_kernel() -> bool:
    """Whether this session runs in a Jupyter kernel (a notebook, not a terminal)."""
    return kernel_app() is not None


def session_spec() -> tuple[str, str] | None:
    """(name, how it was found) of the spec this session's kernel was started from, if it
    runs in ipykernel; ``InvalidInput`` when several specs could have started it."""
    if not in_kernel():
        return None
    try:
        from ipykernel.connect import get_connection_file

        with open(get_connection_file(), encoding="utf-8") as f:
            recorded = json.load(f).get("kernel_name")
    except (OSError, ValueError, ImportError):
        return None
    if recorded:
        return recorded, "this kernel's spec"
    # Launchers before jupyter_client 8.3 leave the name out: find the spec that matches
    # this process's command line and environment.
    from kernelmagic.domain.spec_of_process import specs_matching_process

    matches = specs_matching_process(list(sys.orig_argv), os.environ)
    if len(matches) > 1:
        raise InvalidInput(
            f"this kernel could have been started from any of {', '.join(matches)} (its "
            "launcher did not record which); pass -k NAME"
        )
    if matches:
        return matches[0], "this kernel's spec, found by its command line and env"
    return None


@dataclass
class Activated:
    """What ``%kernel_activate`` did, in the order to say it."""

    report: list[str]
    saved: Any = None  # (Change, CaptureResult) of --save
    closing: list[str] = field(default_factory=list)


def activate_here(
    ns: argparse.Namespace, defaults: commands.Defaults, snippet: str | None
) -> Activated:
    """Activate the source the options name in this process: restart this kernel in place
    with it, or (``--no-restart``, or outside a kernel) update ``os.environ``."""
    from kernelmagic.restart import inplace

    made = commands.activate(ns, defaults, snippet, os.environ)
    done = Activated([f"Activating {made.source.described()} from this process's environment:"])
    changed = bool(made.changed or made.removed)
    done.report += made.report_lines(defaults.policy) if changed else ["  (nothing changed)"]
    app = kernel_app()
    restart = changed and app is not None and not ns.no_restart
    new_env = made.environment(os.environ)
    if restart:
        reason = inplace.cannot_restart(app)
        if reason:
            raise SourceFailed(f"cannot restart this kernel in place: {reason}; use --no-restart")
        activation.check_interpreter_starts(sys.executable, new_env, PREFLIGHT_TIMEOUT)
    if ns.save:
        done.saved = _save(ns, defaults, made)
    if restart:
        inplace.Handoff(app, new_env).arm()
        done.closing.append(
            f"Restarting this kernel in place when this cell has run (same process, PID "
            f"{os.getpid()}): variables in memory are lost, as with a restart."
        )
        return done
    made.apply(os.environ)
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


def _save(ns: argparse.Namespace, defaults: commands.Defaults, made: Any) -> Any:
    """A spec like this kernel's (its env kept where the activation does not change it) that
    carries the source's variables, recorded so that ``%kernel_refresh`` works on it."""
    found = session_spec()
    like, kept, program = None, {}, None
    if found is not None:
        from kernelmagic.domain.checks import argv_strings, launch_program
        from kernelmagic.specs import get_spec

        like = found[0]
        spec = get_spec(like).spec
        kept = {k: v for k, v in (spec.get("env") or {}).items() if k not in made.changed}
        kept = {k: v for k, v in kept.items() if k not in made.removed}
        first = (argv_strings(spec) or [""])[0]
        if launch_program(first) != first:
            # A bare `python` (ipykernel's own spec): Jupyter ran its interpreter, this one.
            program = sys.executable
    return commands.save_activated(ns, defaults, made.source, like, kept, program)
