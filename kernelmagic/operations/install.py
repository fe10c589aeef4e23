"""Kernel specs made from a ``Source``: one install path for every language, and refresh.

Whatever the source (this session, a snippet, modules, a conda env, another interpreter),
a Python spec is the one ``python -m ipykernel install`` writes for the chosen interpreter,
an R or Julia spec the one IRkernel or IJulia writes (``languages``); each gets the captured
variables in ``env`` and a ``Provenance`` record in ``metadata.kernelmagic``.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from typing import Any

from kernelmagic import __version__
from kernelmagic.domain import envcapture, languages, sources
from kernelmagic.domain.policy import EnvPolicy
from kernelmagic.domain.provenance import SNIPPET_FILE, Provenance, Source, now
from kernelmagic.errors import InvalidInput, KernelmagicError
from kernelmagic.storage import atomic, ipykernel_specs, transactions
from kernelmagic.storage.discovery import get_spec, validate_name


def python_kernel_dict() -> dict[str, Any]:
    """The spec ``python -m ipykernel install`` writes for this interpreter."""
    return ipykernel_specs.install_spec()


def _digests(env: Mapping[str, str], policy: EnvPolicy) -> dict[str, str]:
    # No fingerprint of a secret: a short hash of a short secret (a PIN) can be reversed.
    return envcapture.digests({k: v for k, v in env.items() if not policy.is_secret(k, v)})


def _record(
    source: Source,
    made: sources.Captured,
    options: envcapture.CaptureOptions,
    explicit: Mapping[str, str],
) -> Provenance:
    recorded_source = source
    snippet_file = None
    if source.snippet is not None:
        masked = options.policy.mask_text(source.snippet)
        if masked != source.snippet:
            recorded_source = Source(**{**vars(source), "snippet": masked})
            snippet_file = SNIPPET_FILE
    return Provenance(
        recorded_source,
        python=made.interpreter.path if made.interpreter else None,
        capture=options.mode,
        include=options.include,
        exclude=options.exclude,
        templates=options.templates,
        policy=options.policy,
        baseline=made.result.baseline,
        captured_digests=_digests(made.result.env, options.policy),
        explicit=tuple(sorted(explicit)),
        loaded_modules=made.loaded_modules,
        version=__version__,
        snippet_file=snippet_file,
    )


def install(
    name: str,
    kernels_dir: str,
    source: Source,
    *,
    kernel: str = "python",
    program: str | None = None,
    like: str | None = None,
    capture_options: envcapture.CaptureOptions | None = None,
    display_name: str | None = None,
    explicit_env: Mapping[str, str] | None = None,
    replace: bool = False,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
    timeout: float = sources.SHELL_TIMEOUT,
    group: str | None = None,
) -> tuple[transactions.Change, envcapture.CaptureResult]:
    """Make the environment ``source`` describes and install a spec that carries it: a Python
    kernel (``kernel="python"``), R (``"ir"``), Julia (``"julia"``), or one like the
    installed spec ``like``; ``program`` names R's or Julia's program instead of finding it.

    ``explicit_env`` (``--env``) is written as given and wins over captured values. The name
    is checked before the source runs, and again under its lock when the spec is written.
    """
    name = validate_name(name)
    options = capture_options or envcapture.CaptureOptions()
    explicit = dict(explicit_env or {})
    gid = transactions.group_id(group) if group is not None else None
    slot = transactions.reserve(kernels_dir, name, replace=replace, dry_run=dry_run)
    other = kernel != "python" or like is not None
    made = sources.make_environment(source, options, environ, timeout=timeout, python=not other)
    record = _record(source, made, options, explicit)
    if other:
        built = languages.build(kernel, made.environment, program=program, like=like)
        spec, files_of = built.spec, built.populate
        record.kernel_kind, record.like = ("like" if like else kernel), like
        record.program, record.program_requested = built.program, program
        made_up = (
            f"{spec.get('display_name') or like} ({name})"
            if like
            else languages.made_up_display_name(kernel, built.version, name)
        )
    else:
        spec = python_kernel_dict()
        spec["argv"][0] = made.interpreter.path
        version = "{}.{}".format(*made.interpreter.version)
        made_up = languages.made_up_display_name("python", version, name)
        files_of = _ipykernel_files
    spec["display_name"] = display_name or made_up
    env = {**made.result.env, **explicit}
    if env:
        spec["env"] = env
    if not display_name:
        record.generated_display_name = spec["display_name"]
    record.write_into(spec)
    if group is not None:
        refuse_secrets_for_group(spec, group, options)

    def populate(path: str) -> None:
        files_of(path)
        if record.snippet_file:
            full = (source.snippet or "").encode("utf-8", "surrogateescape")
            atomic.write_bytes_atomic(os.path.join(path, SNIPPET_FILE), full, mode=0o600)

    change = slot.write("installed", spec, populate, options.policy, gid)
    return change, made.result


def refuse_secrets_for_group(
    spec: dict[str, Any], group: str, options: envcapture.CaptureOptions | None = None
) -> None:
    """A spec shared with a group shows its env to every member: refuse one holding a secret
    the user did not name with ``--include``."""
    options = options or envcapture.CaptureOptions()
    policy = options.policy.with_recorded(spec)
    env = spec.get("env") or {}
    secrets = sorted(
        k for k, v in env.items() if policy.is_secret(k, v) and not envcapture.included(k, options)
    )
    if secrets or (not env and policy.holds_secrets(spec)):
        names = ", ".join(secrets) or "argv or metadata"
        raise InvalidInput(
            f"a spec shared with group {group} shows its env to every member, and {names} "
            "looks secret; name it with --include to share it anyway, or leave out --group"
        )


def _ipykernel_files(path: str) -> None:
    """The logos and any other resources ipykernel ships, copied as its installer does."""
    resources = ipykernel_specs.resources_dir()
    if resources is None:
        raise KernelmagicError("ipykernel is not installed: python -m pip install ipykernel")
    shutil.copytree(resources, path, dirs_exist_ok=True)
    mode = os.stat(path).st_mode  # a read-only site-packages gives a read-only copy
    if not mode & stat.S_IWUSR:
        os.chmod(path, mode | stat.S_IWUSR)


def _recorded_snippet(resource_dir: str, record: Provenance) -> str | None:
    if not record.snippet_file:
        return record.source.snippet
    path = os.path.join(resource_dir, os.path.basename(record.snippet_file))
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as exc:
        raise KernelmagicError(
            f"cannot read the recorded snippet {path}: {exc.strerror}; reinstall the spec "
            "with --replace"
        ) from None


def refresh_spec(
    name: str,
    *,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
    policy: EnvPolicy | None = None,
    timeout: float = sources.SHELL_TIMEOUT,
) -> transactions.Change:
    """Re-run the recorded source and update env (and argv[0] if the interpreter moved).

    Variables set by hand since the capture (their value no longer matches what capture
    wrote, or they were never captured) are kept. ``policy`` adds to the recorded one.
    """
    info = get_spec(name)
    record = Provenance.of_spec(info.spec)
    if record is None or not record.source.repeatable:
        reason = (
            "it was captured from a running session; reinstall it with --replace from the "
            "activated environment"
            if record is not None and record.source.kind == "current"
            else "it has no recorded source (it was not made by kernelmagic install with a "
            "snippet, --modules, --from-conda or --python)"
        )
        raise KernelmagicError(f"cannot refresh '{info.name}': {reason}")
    policy = (policy or EnvPolicy()).joined(record.policy)
    source = record.source
    if source.kind == "snippet":
        source = Source(**{**vars(source), "snippet": _recorded_snippet(info.resource_dir, record)})
    options = envcapture.CaptureOptions(
        mode=record.capture,
        include=record.include,
        exclude=record.exclude,
        templates=record.templates,
        policy=policy,
    )
    python = record.kernel_kind == "python"
    made = sources.make_environment(source, options, environ, timeout=timeout, python=python)
    if python:
        program = made.interpreter.path
    else:  # find R, julia or the template's program again in the new environment
        program = languages.build(
            record.kernel_kind, made.environment, program=record.program_requested, like=record.like
        ).program

    def update(spec: dict[str, Any]) -> dict[str, Any]:
        env = dict(spec.get("env") or {})
        current = Provenance.of_spec(spec) or record
        fingerprints = current.captured_digests
        now_digests = envcapture.digests(env)
        for key in fingerprints:
            if key in env and now_digests.get(key) == fingerprints[key]:
                del env[key]  # still as captured: the new capture decides
        kept_by_hand = set(env)
        written = {k: v for k, v in made.result.env.items() if k not in kept_by_hand}
        env.update(written)
        spec = dict(spec)
        if env:
            spec["env"] = env
        else:
            spec.pop("env", None)
        argv = list(spec.get("argv") or [])
        if argv and argv[0] != program:
            argv[0] = program
            spec["argv"] = argv
        if python:
            current.python = program
        else:
            current.program = program
        current.loaded_modules = made.loaded_modules or current.loaded_modules
        current.policy = policy
        current.captured_digests = _digests(written, policy)
        current.refreshed = now()
        return current.write_into(spec)

    return transactions.rewrite_spec(
        info.name, update, dry_run=dry_run, action="refreshed", policy=policy
    )
