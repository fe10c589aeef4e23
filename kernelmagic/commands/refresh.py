"""Refresh: make a spec's recorded source again and update its env (and argv if the
interpreter moved), keeping the variables the user set by hand since."""

from __future__ import annotations

import argparse
import errno
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from kernelmagic import reading
from kernelmagic.commands.render import Shown, shown_change
from kernelmagic.domain import envcapture, languages, sources
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.provenance import Provenance, Source, now
from kernelmagic.domain.trust import TRUST_ADVICE, untrusted
from kernelmagic.errors import KernelmagicError, flags, of_type
from kernelmagic.operations import spec_writes
from kernelmagic.options import DRY_RUN, NAME, SHELL_TIMEOUT, TRUST, Option, seconds
from kernelmagic.settings import Settings
from kernelmagic.storage import transactions
from kernelmagic.storage.discovery import get_spec, spec_at

SUMMARY = (
    "Re-run the source a spec was captured from and update its env (and argv if the "
    "interpreter moved); variables set by hand since are kept."
)


@dataclass(frozen=True)
class RefreshRequest:
    """``refresh``: make a spec's recorded source again and update its env."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (NAME, SHELL_TIMEOUT, TRUST, DRY_RUN)

    name: str
    dry_run: bool = False
    timeout: float = sources.SHELL_TIMEOUT
    policy: EnvPolicy = DEFAULT_POLICY  # added to the patterns the spec recorded
    trust: bool = False  # run its source even if others can change the spec
    resource_dir: str | None = None  # this spec dir (a scan's in its --prefix), not the name's

    def __post_init__(self) -> None:
        flags(self)
        of_type(self.name, str, "name", "spec name")
        seconds(self.timeout)

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> RefreshRequest:
        return cls(ns.name, ns.dry_run, ns.timeout, settings.policy, ns.trust)


def _recorded_snippet(resource_dir: str, record: Provenance) -> str | None:
    if not record.snippet_file:
        return record.source.snippet
    path = os.path.join(resource_dir, os.path.basename(record.snippet_file))
    try:
        data = reading.read_regular_file(path, reading.MAX_INPUT_BYTES)
        if data is None:
            raise FileNotFoundError(errno.ENOENT, "not a regular file", path)
        return data.decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise KernelmagicError(
            f"cannot read the recorded snippet {path}: {exc.strerror}; reinstall the spec "
            "with --replace"
        ) from None


def refresh(
    request: RefreshRequest, environ: Mapping[str, str] | None = None
) -> transactions.Change:
    """Re-run the recorded source and update env (and argv[0] if the interpreter moved).

    Variables set by hand since the capture (their value no longer matches what capture
    wrote, or they were never captured) are kept.
    """
    if request.resource_dir is None:
        info = get_spec(request.name)
    else:
        info = spec_at(request.name, request.resource_dir)
    why = untrusted(info)
    if why and not request.trust:  # its recorded snippet or shell would run as you
        raise KernelmagicError(f"not refreshed: {why}; {TRUST_ADVICE}")
    record = Provenance.of_spec(info.spec)
    if record is None or not record.source.repeatable:
        reason = (
            "it was captured from a running session; reinstall it with --replace from the "
            "activated environment"
            if record is not None and record.source.origin == "current"
            else "it has no recorded source (it was not made by kernelmagic install with a "
            "snippet, --modules, --from-conda or --python)"
        )
        raise KernelmagicError(f"cannot refresh '{info.name}': {reason}")
    policy = request.policy.joined(EnvPolicy(record.extra_secrets, record.extra_noise))
    source = record.source
    if source.origin == "snippet":
        source = Source(**{**vars(source), "snippet": _recorded_snippet(info.resource_dir, record)})
    options = envcapture.CaptureOptions(
        mode=record.capture,
        include=record.include,
        exclude=record.exclude,
        templates=record.templates,
        policy=policy,
    )
    in_container = record.container is not None  # its program is the image's: unchanged
    python = record.kernel == "python" and not in_container
    made = sources.make_environment(
        source, options, environ, timeout=request.timeout, python=python
    )
    program: str | None = None
    if made.interpreter is not None:
        program = made.interpreter.path
    elif not in_container:  # find R, julia or the template's program again in the new environment
        like = get_spec(record.like) if record.like else None
        program = languages.build(
            record.kernel, made.environment, program=record.program_requested, like=like
        ).program

    def update(spec: dict[str, Any]) -> dict[str, Any]:
        env = dict(spec.get("env") or {})
        current = Provenance.of_spec(spec) or record
        recorded = current.captured_digests
        digests_now = envcapture.digests(env)
        for key in recorded:
            if key in env and digests_now.get(key) == recorded[key]:
                del env[key]  # still as captured: the new capture decides
        kept_by_hand = set(env)
        written = {k: v for k, v in made.result.env.items() if k not in kept_by_hand}
        env.update(written)
        if made.interpreter is not None:  # a module that now sets PYTHONHOME: not written
            where = os.environ if environ is None else environ
            sources.refuse_broken_start(made.interpreter, env, where, _start_advice(info.name))
        spec = dict(spec)
        if env:
            spec["env"] = env
        else:
            spec.pop("env", None)
        argv = list(spec.get("argv") or [])
        # The interpreter is where it was recorded: after a prefix (patch --argv-prefix
        # nice -n 3) argv[0] is the prefix's program, and replacing it broke the spec.
        was = current.python if python else current.program
        at = argv.index(was) if was in argv else (0 if was is None else None)
        if program is not None and at is not None and at < len(argv) and argv[at] != program:
            argv[at] = program
            spec["argv"] = argv
        if python:
            current.python = program
        elif program is not None:
            current.program = program
        current.loaded_modules = made.loaded_modules or current.loaded_modules
        current.modulefiles = made.modulefiles or current.modulefiles
        current.project = made.project or current.project
        current.extra_secrets, current.extra_noise = policy.extra_secrets, policy.extra_noise
        current.captured_digests = envcapture.secret_free_digests(written, policy)
        current.refreshed = now()
        return current.write_into(spec)

    return spec_writes.rewrite_spec(
        info.name,
        update,
        dry_run=request.dry_run,
        action="refreshed",
        policy=policy,
        resource_dir=request.resource_dir,
    )


def _start_advice(name: str) -> Callable[[str], str]:
    def advice(variable: str) -> str:
        return (
            f"nothing was changed; the source now sets {variable}: change it back, or "
            f"reinstall '{name}' with --replace --exclude {variable}"
        )

    return advice


Request = RefreshRequest


def run(request: RefreshRequest) -> transactions.Change:
    return refresh(request)


def show(result: transactions.Change, style: str) -> Shown:
    return shown_change(result, diff=True)
