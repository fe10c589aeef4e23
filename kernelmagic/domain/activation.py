"""Activate an environment in a running process: run ``module load``, a conda activation or a
snippet in a shell that starts from the process's own environment, and keep what changed.

The capture rules decide as they do for a spec (secrets are skipped unless named, values
are masked when shown), with one difference: a live process keeps the module system's and
conda's bookkeeping (LOADEDMODULES, CONDA_SHLVL, ...), so that a later ``module load`` or
deactivation in it works. Nothing here imports IPython; ``restart.inplace`` restarts a kernel.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field

from kernelmagic.domain import shells, sources
from kernelmagic.domain.envcapture import (
    is_path_like,
    login_shell_environment,
    matches_any,
    unchanged,
    unique_entries,
)
from kernelmagic.domain.policy import EnvPolicy
from kernelmagic.domain.provenance import Source
from kernelmagic.errors import SourceFailed

# Read once, when the interpreter or a shared library starts: changing them in os.environ
# reaches new child processes, not this interpreter.
NEEDS_RESTART = (
    "LD_*", "DYLD_*", "PYTHON*", "OMP_*", "MKL_*", "OPENBLAS_*", "CUDA_VISIBLE_DEVICES",
    "MALLOC_*",
)  # fmt: skip

# The shell's own state: it differs between any two shells and means nothing to a kernel.
_SHELL_STATE = "shell state"


@dataclass
class Activation:
    """What a source changed in an environment: new values (real values, no templates),
    names it unset, and what was left out."""

    source: Source
    changed: dict[str, str] = field(default_factory=dict, repr=False)
    previous: dict[str, str] = field(default_factory=dict, repr=False)  # values before
    removed: list[str] = field(default_factory=list)
    secrets_skipped: list[str] = field(default_factory=list)

    def environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """``environ`` with the changes applied."""
        new = {k: v for k, v in environ.items() if k not in self.removed}
        new.update(self.changed)
        return new

    def apply(self, environ: MutableMapping[str, str]) -> None:
        for name in self.removed:
            environ.pop(name, None)
        environ.update(self.changed)

    def only_bookkeeping(self, policy: EnvPolicy) -> bool:
        """Only the module system's or conda's own records changed (a module that was
        loaded already): nothing a restart would give the kernel."""
        names = [*self.changed, *self.removed]
        return bool(names) and all(policy.noise_category(n) for n in names)

    def needs_restart(self) -> list[str]:
        """The changed names this interpreter only reads when it starts."""
        names = sorted({*self.changed, *self.removed})
        return [n for n in names if matches_any(n, NEEDS_RESTART)]

    def report_lines(self, policy: EnvPolicy) -> list[str]:
        """One line per change, secret-like values masked."""
        lines: list[str] = []
        bookkeeping: dict[str, int] = {}
        for name in sorted(self.changed):
            new, old = self.changed[name], self.previous.get(name)
            category = policy.noise_category(name)  # LOADEDMODULES, _ModuleTable001_, ...
            if category:
                bookkeeping[category] = bookkeeping.get(category, 0) + 1
            elif old is None:
                lines.append(f"  + {name}={_shown(policy.mask_env({name: new})[name])}")
            elif is_path_like(name):
                lines.append(f"  ~ {name}: {_shown(_entries_changed(old, new))}")
            else:
                old, new = policy.mask_env({name: old})[name], policy.mask_env({name: new})[name]
                lines.append(f"  ~ {name}: {_shown(old)} -> {_shown(new)}")
        if bookkeeping:
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(bookkeeping.items()))
            lines.append(f"  (and {kinds} variable(s))")
        lines += [f"  - {name} (unset)" for name in sorted(self.removed)]
        if self.secrets_skipped:
            names = ", ".join(sorted(self.secrets_skipped))
            lines.append(f"  Skipped secret-like: {names} (keep one with --include NAME)")
        return lines


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _shown(value: str) -> str:
    """A value as text that cannot drive the terminal (an escape sequence shown escaped)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], value)


def _entries_changed(old: str, new: str) -> str:
    """The entries added and dropped; a trailing slash is no change (Lmod strips it)."""
    before = [e.rstrip("/") or e for e in old.split(os.pathsep)]
    after = [e.rstrip("/") or e for e in new.split(os.pathsep)]
    added = [e for e in after if e not in before]
    dropped = [e for e in before if e not in after]
    parts = [f"+ {e}" for e in added] + [f"- {e}" for e in dropped]
    return ", ".join(parts) if parts else "entries reordered"


def activate(
    source: Source,
    environ: Mapping[str, str],
    *,
    policy: EnvPolicy,
    include: Iterable[str] = (),
    timeout: float = sources.SHELL_TIMEOUT,
) -> Activation:
    """Run ``source`` in a shell started from ``environ``; what it changed. Raises
    ``SourceFailed`` when the source fails (nothing is changed then)."""
    script = sources.script_for(source, environ) or ""

    def run(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        return shells.run_from_environment(
            script, environ=env, shell=source.shell, timeout=timeout, what=source.action()
        )

    kept = "this process is unchanged"
    try:
        before, after = run(environ)
    except SourceFailed as exc:
        if not sources.module_not_found(source, exc):
            raise
        # A module this kernel's MODULEPATH does not reach: the login shell's may (only
        # then is a login shell run, so an activation that works pays nothing for it).
        wider = with_login_module_paths(environ, source, timeout)
        if wider is environ:
            searched = environ.get("MODULEPATH") or "(empty)"
            raise sources.gone_modules(source, exc, kept, searched=searched) from None
        try:
            before, after = run(wider)
        except SourceFailed as again:
            searched = f"(with the login shell's) {wider.get('MODULEPATH') or '(empty)'}"
            raise sources.gone_modules(source, again, kept, searched=searched) from None
    include = tuple(include)
    made = Activation(source)
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new or policy.noise_category(name) == _SHELL_STATE:
            continue
        if new is not None and unchanged(name, new, old):  # Lmod's own tidying
            continue
        named = matches_any(name, include)
        if new is not None and not named and policy.is_secret(name, new):
            made.secrets_skipped.append(name)
            continue
        if new is None:
            made.removed.append(name)
        else:
            if is_path_like(name):  # an empty entry means the current directory: dropped
                new = os.pathsep.join(unique_entries(new.split(os.pathsep)))
            made.changed[name] = new
        if old is not None:
            made.previous[name] = old
    return made


def with_login_module_paths(
    environ: Mapping[str, str], source: Source, timeout: float
) -> Mapping[str, str]:
    """``environ`` with the module directories a login shell has and it lacks (``module use``
    in a login profile, the usual cluster setup: a kernel started by JupyterHub never read
    it), as install finds them. Only for ``--modules`` and snippets; the kernel's own come first."""
    if source.origin not in ("modules", "snippet"):
        return environ
    login = login_shell_environment(environ, shell=source.shell, timeout=timeout) or {}
    theirs = [d for d in login.get("MODULEPATH", "").split(os.pathsep) if d]
    ours = [d for d in environ.get("MODULEPATH", "").split(os.pathsep) if d]
    missing = [d for d in theirs if d not in ours]
    if not missing:
        return environ
    return {**environ, "MODULEPATH": os.pathsep.join(ours + missing)}


# The check imports what the restarted kernel imports first, then says what its start read
# (storage.started_environments keeps that with a pass).
_CHECK = (
    "import ipykernel.kernelapp, kernelmagic.restart.inplace\n"
    "from kernelmagic.storage import files_read\n"
    "files_read.report()"
)


def check_interpreter_starts(python: str, environ: Mapping[str, str], timeout: float) -> str:
    """Start ``python`` in ``environ`` and import the kernel machinery, so that a restart
    into an environment that breaks the interpreter (a module setting PYTHONHOME, a library
    path shadowing libzmq) is refused instead of leaving a dead kernel. Returns what it
    printed: what its start read."""
    check = [python, "-c", _CHECK]
    try:
        done = shells.run_probe(check, environ, timeout)
    except subprocess.TimeoutExpired:
        raise SourceFailed(
            f"{python} did not start within {timeout:g} s in the new environment"
        ) from None
    except OSError as exc:
        raise SourceFailed(f"cannot run {python}: {exc.strerror}") from None
    if done.returncode != 0:
        raise SourceFailed(
            f"{python} cannot start a kernel in the new environment; this kernel keeps its own",
            details=shells.failure_lines(done.stderr.decode("utf-8", "replace")),
        )
    return done.stdout.decode("utf-8", "surrogateescape")
