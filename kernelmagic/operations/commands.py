"""The operations both front ends run: parsed options in, library calls out.

The magics and the CLI parse with the same option definitions (``options``) and then call
these, so a flag means the same thing everywhere. Nothing here prints or imports IPython.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from kernelmagic import specs
from kernelmagic.domain import envcapture
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.shell_syntax import (
    EnvChanges,
    check_env_name,
    parse_assignment,
    parse_json_assignments,
    split_words,
)


@dataclass
class Defaults:
    """Settings the magics take from traitlets config (the CLI uses these defaults)."""

    location: str = "user"  # user | sys-prefix
    capture: str = "changed"
    policy: EnvPolicy = DEFAULT_POLICY  # the built-in noise and secret rules plus the user's
    session: bool = False  # an IPython session: advice is written as magics


def _bad(message: str) -> specs.InvalidInput:
    return specs.InvalidInput(message)


def location_request(ns: argparse.Namespace, defaults: Defaults) -> str:
    user, sys_prefix, prefix = ns.user, ns.sys_prefix, ns.prefix
    if not (user or sys_prefix or prefix is not None):
        sys_prefix = defaults.location == "sys-prefix"
    return specs.location_dir(user=user, sys_prefix=sys_prefix, prefix=prefix)


def _dollars(value: str, literal: bool) -> str:
    return envcapture.escape_dollars(value) if literal else value


def env_changes(ns: argparse.Namespace, extra: EnvChanges | None = None) -> EnvChanges:
    """``--env``/positional assignments, ``--unset`` and ``extra`` (a cell or file) merged."""
    changes = EnvChanges()
    literal = ns.literal
    if extra is not None:
        for key in extra.unset:
            changes.remove(key)
        for key, value in extra.set.items():
            changes.add(key, _dollars(value, literal))
    for text in [*ns.env, *ns.assignments]:
        key, value = parse_assignment(text)
        changes.add(key, _dollars(value, literal))
    for key in ns.unset:
        changes.remove(check_env_name(key))
    return changes


def capture_request(ns: argparse.Namespace, defaults: Defaults) -> envcapture.CaptureOptions:
    return envcapture.CaptureOptions(
        mode=ns.capture or defaults.capture,
        baseline_file=ns.baseline,
        include=tuple(ns.include),
        exclude=tuple(ns.exclude),
        templates=not ns.no_templates,
        policy=defaults.policy,
    )


def _argv_prefix(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        words = split_words(text)
    except ValueError as exc:
        raise _bad(f"--argv-prefix {text!r}: {exc}") from None
    if any("\0" in word for word in words):
        raise _bad("--argv-prefix holds a NUL character, which no command line can carry")
    return words


def edit_request(ns: argparse.Namespace, extra_env: EnvChanges | None = None) -> specs.SpecEdit:
    return specs.SpecEdit(
        display_name=ns.display_name,
        language=ns.language,
        interrupt_mode=ns.interrupt_mode,
        argv_prefix=_argv_prefix(ns.argv_prefix),
        metadata=parse_json_assignments(ns.metadata, "--metadata"),
        env=env_changes(ns, extra_env),
        replace_env=ns.replace_env,
    )


def install(
    ns: argparse.Namespace, defaults: Defaults, snippet: str | None = None
) -> tuple[specs.Change, envcapture.CaptureResult]:
    """Install from the source the options name; ``snippet`` is a cell body or snippet file."""
    from kernelmagic.operations import install as installing

    other_language = ns.kernel_kind != "python" or ns.like is not None
    if ns.like is not None and ns.kernel_kind != "python":
        raise _bad("--like copies a spec of any language; it cannot go with --kernel")
    if other_language and ns.python:
        raise _bad("--python names a Python interpreter; name R or julia with --program")
    if ns.program and not other_language:
        raise _bad("--program goes with --kernel ir, --kernel julia or --like SPEC")
    return installing.install(
        ns.name,
        location_request(ns, defaults),
        source_request(ns, snippet),
        kernel=ns.kernel_kind,
        program=ns.program,
        like=ns.like,
        group=ns.group,
        display_name=ns.display_name,
        capture_options=capture_request(ns, defaults),
        explicit_env=env_changes(ns).set,
        replace=ns.replace,
        dry_run=ns.dry_run,
        timeout=_seconds(ns.timeout),
    )


def _seconds(value: float) -> float:
    """A ``--timeout`` value: a positive, finite number of seconds."""
    if not 0 < value < float("inf"):
        raise _bad(f"--timeout must be a positive number of seconds, not {value:g}")
    return value


def source_request(ns: argparse.Namespace, snippet: str | None):
    """The ``Source`` the options describe (the running session unless told otherwise)."""
    from kernelmagic.domain.provenance import Source

    made_by = [
        flag
        for flag, given in (
            ("a snippet", snippet is not None),
            ("--modules", ns.modules),
            ("--from-conda", ns.from_conda),
        )
        if given
    ]
    if len(made_by) > 1:
        raise _bad(f"choose one source of the environment, not {' and '.join(made_by)}")
    if ns.from_current and (made_by or ns.python):
        other = made_by[0] if made_by else "--python"
        raise _bad(f"--from-current captures this session; it cannot go with {other}")
    if ns.baseline and (made_by or ns.python):
        raise _bad(
            "--baseline applies to --from-current; a snippet is compared with the shell "
            "right before it"
        )
    if not made_by and not ns.python:
        if ns.shell:
            raise _bad("--shell runs a snippet, --modules or --from-conda; give one of them")
        return Source("current")
    common = {"python": ns.python, "shell": ns.shell}
    if snippet is not None:
        return Source("snippet", snippet=snippet, **common)
    if ns.modules:
        return Source("modules", modules=ns.modules, **common)
    if ns.from_conda:
        return Source("conda", conda_env=ns.from_conda, **common)
    return Source("python", **common)


def activate(ns: argparse.Namespace, defaults: Defaults, snippet: str | None, environ: Any):
    """What the source the options name changes in ``environ`` (``%kernel_activate``)."""
    from kernelmagic.domain import activation

    source = source_request(ns, snippet)
    if source.kind not in ("snippet", "modules", "conda"):
        raise _bad(
            'name what to activate: --modules "A B", --from-conda ENV, or a shell snippet '
            "as the cell of %%kernel_activate"
        )
    return activation.activate(
        source, environ, policy=defaults.policy, include=ns.include, timeout=_seconds(ns.timeout)
    )


def save_activated(
    ns: argparse.Namespace,
    defaults: Defaults,
    source: Any,
    like: str | None,
    kept_env: dict[str, str],
    program: str | None,
) -> tuple[specs.Change, envcapture.CaptureResult]:
    """``--save NAME``: install a spec like ``like`` (a Python spec when None) from
    ``source``, with ``kept_env`` (the template's own env) written as set by hand and
    ``program`` as its argv[0] when given."""
    from kernelmagic.operations import install as installing

    return installing.install(
        ns.save,
        location_request(ns, defaults),
        source,
        like=like,
        program=program,
        capture_options=capture_request(ns, defaults),
        explicit_env=kept_env,
        replace=ns.replace,
        timeout=_seconds(ns.timeout),
    )


def listing(ns: argparse.Namespace, defaults: Defaults) -> Any:
    """The table of specs, or with ``--json`` what ``jupyter kernelspec list --json`` prints
    (plus ``"problems"``), secrets masked."""
    from kernelmagic.frontends import render

    found = specs.list_specs(ns.pattern)
    if not ns.json:
        table = render.SpecList(found)
        table.pattern, table.session = ns.pattern, defaults.session
        return table
    listing = specs.jupyter_listing(found)
    for entry in listing["kernelspecs"].values():
        entry["spec"] = defaults.policy.mask_spec(entry["spec"])
    return listing


def show(ns: argparse.Namespace, defaults: Defaults) -> str:
    from kernelmagic.frontends import render

    return render.spec_detail_text(specs.get_spec(ns.name), defaults.policy, defaults.session)


def refresh(ns: argparse.Namespace, defaults: Defaults) -> specs.Change:
    from kernelmagic.operations import install as installing

    return installing.refresh_spec(
        ns.name, dry_run=ns.dry_run, policy=defaults.policy, timeout=_seconds(ns.timeout)
    )


def remove(ns: argparse.Namespace, defaults: Defaults) -> list[str]:
    """Remove the named specs, and with ``--missing`` every dead one; returns the paths."""
    if not ns.names and not ns.missing:
        raise _bad("name the specs to remove, or pass --missing")
    removed = specs.remove_specs(ns.names) if ns.names else []
    if ns.missing:
        from kernelmagic.operations import doctor

        removed += doctor.remove_missing()
    return removed


def run_doctor(ns: argparse.Namespace, defaults: Defaults):
    if ns.launch:
        from kernelmagic.operations import launching

        if ns.fix:
            raise _bad("--fix removes dead specs; run it without --launch")
        report = launching.launch_all(ns.names, _seconds(ns.launch_timeout))
        report.session = defaults.session
        return report
    from kernelmagic.operations import doctor

    report = doctor.diagnose(ns.names)
    report = doctor.remove_dead(report) if ns.fix else report
    report.session = defaults.session
    return report


def clone(ns: argparse.Namespace, defaults: Defaults) -> specs.Change:
    return specs.clone_spec(
        ns.source,
        ns.new_name,
        location_request(ns, defaults),
        edit=edit_request(ns),
        replace=ns.replace,
        dry_run=ns.dry_run,
        policy=defaults.policy,
        group=ns.group,
    )


def patch(
    ns: argparse.Namespace, defaults: Defaults, extra_env: EnvChanges | None = None
) -> specs.Change:
    """Change the spec ``ns.name``: fields, env, provisioner, or ``--undo``."""
    edit = edit_request(ns, extra_env)
    if ns.undo:
        if edit != specs.SpecEdit() or ns.dry_run or ns.provisioner or ns.provisioner_config:
            raise _bad("--undo restores the previous kernel.json; give it no other change")
        return specs.undo_last_write(ns.name, defaults.policy)
    if ns.provisioner_config and not ns.provisioner:
        raise _bad("--provisioner-config goes with --provisioner NAME")
    transform = edit.apply
    if ns.provisioner:
        from kernelmagic.operations import remote

        point = remote.provisioner_edit(
            ns.provisioner, parse_json_assignments(ns.provisioner_config, "--provisioner-config")
        )

        def transform(spec):
            return point(edit.apply(spec))

    return specs.rewrite_spec(ns.name, transform, dry_run=ns.dry_run, policy=defaults.policy)


def env(
    ns: argparse.Namespace, defaults: Defaults, target: str, extra_env: EnvChanges | None = None
) -> dict[str, Any] | specs.Change:
    """Show the env of ``target`` (masked) when no change is asked for; else change it."""
    edit = edit_request(ns, extra_env)
    if not edit.env and not edit.replace_env:
        from kernelmagic.frontends import render

        shown = defaults.policy.mask_spec(specs.get_spec(target).spec).get("env", {})
        return render.EnvListing(shown if isinstance(shown, dict) else {})
    return specs.patch_spec(target, edit, dry_run=ns.dry_run, policy=defaults.policy)


# An env file, snippet or document is small; /dev/zero must not fill memory.
MAX_INPUT_BYTES = 16 * 1024 * 1024


def read_input_file(path: str) -> str:
    """The UTF-8 text of ``path`` (``-``: stdin), at most ``MAX_INPUT_BYTES``."""
    import sys

    try:
        if path == "-":
            stream = getattr(sys.stdin, "buffer", None)  # a text-only stdin in tests, IDEs
            data = (
                stream.read(MAX_INPUT_BYTES + 1)
                if stream is not None
                else sys.stdin.read(MAX_INPUT_BYTES + 1).encode("utf-8")
            )
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise _bad(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise _bad(f"{path} is larger than {MAX_INPUT_BYTES // 2**20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(
            f"{path} is not UTF-8 text (byte {exc.start}: {data[exc.start : exc.end]!r})"
        ) from None


def export(ns: argparse.Namespace, defaults: Defaults) -> tuple[dict[str, Any], str | None]:
    """The export document, and the file it was written to (``-o``), if any."""

    from kernelmagic.operations import kernel_sets
    from kernelmagic.storage import atomic

    doc = kernel_sets.export(ns.patterns, defaults.policy)
    if ns.output is None:
        return doc, None
    text = atomic.dump_spec(doc)  # Jupyter's own JSON style; strict (no NaN)
    try:
        atomic.write_bytes_atomic(ns.output, text.encode("utf-8"), mode=atomic.default_file_mode())
    except OSError as exc:
        raise specs.LocationError(f"cannot write {ns.output}: {exc.strerror}") from None
    return doc, ns.output


def apply(ns: argparse.Namespace, defaults: Defaults):
    from kernelmagic.operations import kernel_sets

    doc = kernel_sets.read_document(read_input_file(ns.document), ns.document)
    return kernel_sets.apply(doc, ns.names, dry_run=ns.dry_run, check=ns.check)


def make_remote(ns: argparse.Namespace, defaults: Defaults):
    from kernelmagic.operations import remote

    request = remote.RemoteRequest(
        source=ns.source,
        name=ns.new_name,
        engine=ns.engine,
        kernels_dir=location_request(ns, defaults),
        hosts=list(ns.hosts),
        image=ns.image,
        config=parse_json_assignments(ns.provisioner_config, "--provisioner-config"),
        replace=ns.replace,
        dry_run=ns.dry_run,
        policy=defaults.policy,
    )
    return remote.make_remote_spec(request)


def provisioners(ns: argparse.Namespace, defaults: Defaults):
    from kernelmagic.operations import remote

    return remote.list_provisioners()
