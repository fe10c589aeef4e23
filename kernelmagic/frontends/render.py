"""Text and HTML views of what the operations return; each front end chooses one.

The operations return plain data (``SpecList``, ``doctor.Report``, ``Change``, ...) and know
nothing of terminals or notebooks. ``style`` says how a fix is spelled in the view:
``"cli"`` (``kernelmagic env -k geo ...``) or ``"magics"`` (``%kernel_env -k geo ...``).
``shown(value)`` hands a value back to IPython with its views attached: ``print()`` and the
terminal show the text, a notebook the HTML table. Secrets are masked by a policy.
"""

from __future__ import annotations

import copy
import html as html_escaping
import json
import os
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kernelmagic.domain.checks import NOTE, Problem
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.provenance import project_of, scan_root_of
from kernelmagic.operations.apply import Outcome
from kernelmagic.operations.doctor import Report
from kernelmagic.operations.edit import SpecEnv
from kernelmagic.operations.launching import FAILED, NOT_LAUNCHED, STARTED, LaunchReport
from kernelmagic.operations.listing import SpecList
from kernelmagic.operations.notebooks import NotebookReports
from kernelmagic.operations.project_scan import ScanResult
from kernelmagic.operations.remote import ProvisionerList
from kernelmagic.storage import atomic
from kernelmagic.storage.discovery import SpecInfo, searched_by_jupyter
from kernelmagic.storage.history import removed_copy
from kernelmagic.storage.transactions import Change

CLI = "cli"
MAGICS = "magics"

# C0 and C1 control characters and DEL: a name or path holding them must not drive the
# terminal (escape sequences) or break a line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``, ``\\n``)."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def error_text(error: BaseException | str) -> str:
    """An error as the user sees it: its one line, then what a tool said about it (the
    error's ``details``), indented, each line escaped like the first."""
    lines = [printable(str(error))]
    lines += [f"  {printable(line)}" for line in getattr(error, "details", ())]
    return "\n".join(lines)


def command(fix: str, style: str) -> str:
    """A command as the user types it in this front end: ``env -k geo`` becomes
    ``kernelmagic env -k geo`` or ``%kernel_env -k geo``."""
    return f"%kernel_{fix}" if style == MAGICS else f"kernelmagic {fix}"


def problem_text(problem: Problem | str, style: str = CLI) -> str:
    """A problem's message, its fix written as this front end's command."""
    if not isinstance(problem, Problem):
        return str(problem)
    fix = f"; fix: {command(problem.fix, style)}" if problem.fix else ""
    return problem.message + fix


# --- tables ----------------------------------------------------------------------------


def text_table(rows: list[tuple[str, ...]], columns: tuple[str, ...]) -> str:
    if not rows:
        return "(no kernel specs)"
    rows = [tuple(printable(str(c)) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    widths[-1] = 0  # the last column is free text; do not pad it
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [columns, *rows]
    )


def html_table(rows: list[tuple[str, ...]], columns: tuple[str, ...]) -> str:
    # Left-aligned: notebook front ends right-align table cells, which suits numbers only.
    cell = 'style="text-align:left;vertical-align:top"'
    head = "".join(f"<th {cell}>{html_escaping.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td {cell}>{html_escaping.escape(str(c))}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass(frozen=True)
class _TableView:
    columns: tuple[str, ...]
    rows: Callable[[Any, str], list[tuple[str, ...]]]
    text: Callable[[Any, str], str] | None = None  # the whole text, when more than the table


# What a listing verified of a spec with no problem: its JSON and its program, not its start.
FOUND = "found"


def _spec_rows(specs: SpecList, style: str) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for info in specs:
        status = FOUND
        if info.problems:
            texts = "; ".join(problem_text(p, style) for p in info.problems)
            hidden = not info.visible and info.read  # one not read: we cannot say
            status = ("hidden by Jupyter: " if hidden else "") + texts
        project = project_of(info.spec)
        if project is not None:  # a project's kernel: say which; the doctor says if it drifted
            made = f"; scan of {scan}" if (scan := scan_root_of(info.spec)) else ""
            status += f" (project: {project.get('tool')}, {project.get('root')}{made})"
        rows.append((info.name, info.display_name, info.language, info.resource_dir, status))
    return rows


def _spec_list_text(specs: SpecList, style: str) -> str:
    if not specs and specs.pattern:
        return f"(no kernel spec matches {specs.pattern!r})"
    table = text_table(_spec_rows(specs, style), _SPEC_COLUMNS)
    return f"{table}\n{_spec_list_footer(specs, style)}" if specs else table


def _spec_list_footer(specs: SpecList, style: str) -> str:
    return (
        f"{FOUND}: the kernel.json reads as Jupyter reads it and its program exists; "
        f"`{command('doctor', style)}` checks more, `{command('doctor --launch', style)}` "
        "starts them."
    )


def _diagnosis_rows(report: Report, style: str) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for d in report.diagnoses:
        if all(p.severity == NOTE for p in d.problems):
            rows.append((d.name, "ok", ""))
        rows += [
            (d.name, p.kind if p.severity != NOTE else f"{p.kind} (note)", problem_text(p, style))
            for p in d.problems
        ]
    return rows


def _report_text(report: Report, style: str) -> str:
    sick = sum(1 for d in report.diagnoses if any(p.severity != NOTE for p in d.problems))
    table = text_table(_diagnosis_rows(report, style), _VIEWS[Report].columns)
    return f"{table}\n{len(report.diagnoses)} spec(s) checked, {sick} with problems."


def _launch_rows(report: LaunchReport, style: str) -> list[tuple[str, ...]]:
    return [
        (
            launch.name,
            launch.result,
            f"{launch.seconds:.2f}" if launch.seconds is not None else "",
            f"{launch.language} ({launch.implementation})" if launch.started else "",
            "; ".join(
                t
                for t in (launch.reason, launch.interrupt and "interrupt " + launch.interrupt)
                if t
            ),
        )
        for launch in report.launches
    ]


def _launch_text(report: LaunchReport, style: str) -> str:
    table = text_table(_launch_rows(report, style), _VIEWS[LaunchReport].columns)
    counts = [f"{report.count(STARTED)} started", f"{report.count(FAILED)} failed"]
    if report.count(NOT_LAUNCHED):
        counts.append(f"{report.count(NOT_LAUNCHED)} not launched")
    return f"{table}\n{len(report.launches)} spec(s): {', '.join(counts)}."


def _provisioner_rows(found: ProvisionerList, style: str) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for info in found:
        options = ", ".join(info.options) or (f"(cannot load: {info.error})" if info.error else "")
        rows.append((info.name, info.package, info.target, options))
    return rows


def _notebook_rows(reports: NotebookReports, style: str) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for report in reports:
        details = report.fixed or report.reason
        if report.matches and not report.fixed:
            best = "; ".join(f"{m.name} ({m.why})" for m in report.matches[:3])
            fix = command(f"notebook {shlex.quote(report.path)} --fix", style)
            details += f"; matches, best first: {best}; fix: {fix}"
        rows.append((report.path, report.wanted.get("name", ""), report.now, details))
    return rows


def _scan_rows(result: ScanResult, style: str) -> list[tuple[str, ...]]:
    return [
        (e.name or "", e.state, e.tool, os.path.relpath(e.root, result.top), e.environment or "",
         e.detail)
        for e in result.entries
    ]  # fmt: skip


def _scan_text(result: ScanResult, style: str) -> str:
    table = text_table(_scan_rows(result, style), _VIEWS[ScanResult].columns)
    said = ", ".join(f"{n} {state}" for state, n in result.counts().items()) or "no project found"
    fix = f"`{command('remove --project-gone', style)}` prunes them"
    gone = f"\nMade by a scan, their project gone: {', '.join(result.gone)} ({fix})."
    found = f"{len(result.entries)} environment(s) below {result.top}: {said}."
    return printable_lines(f"{table}\n{found}{gone if result.gone else ''}")


_SPEC_COLUMNS = ("name", "display name", "language", "resource dir", "status")
_VIEWS: dict[type, _TableView] = {
    SpecList: _TableView(_SPEC_COLUMNS, _spec_rows, _spec_list_text),
    Report: _TableView(("name", "check", "details"), _diagnosis_rows, _report_text),
    LaunchReport: _TableView(
        ("name", "result", "seconds", "kernel", "details"), _launch_rows, _launch_text
    ),
    ProvisionerList: _TableView(("provisioner", "package", "class", "options"), _provisioner_rows),
    NotebookReports: _TableView(("notebook", "kernel", "state", "details"), _notebook_rows),
    ScanResult: _TableView(
        ("name", "state", "tool", "project", "environment", "details"), _scan_rows, _scan_text
    ),
}


def text(value: Any, style: str = CLI) -> str:
    """The terminal text of a value an operation returned."""
    if isinstance(value, SpecEnv):
        return env_lines(value)
    if isinstance(value, SpecInfo):
        return spec_detail_text(value, style=style)
    view = _view_of(value)
    if view is None:
        return str(value)
    return (
        view.text(value, style) if view.text else text_table(view.rows(value, style), view.columns)
    )


def html(value: Any, style: str = MAGICS) -> str | None:
    """The notebook view of a value (a table), or None where text reads better."""
    view = _view_of(value)
    if view is None:
        return None
    table = html_table(view.rows(value, style), view.columns)
    if isinstance(value, SpecList) and value:
        table += f"<p>{html_escaping.escape(_spec_list_footer(value, style))}</p>"
    return table


def _view_of(value: Any) -> _TableView | None:
    return next((v for cls, v in _VIEWS.items() if isinstance(value, cls)), None)


class _Shown:
    """Mixed into a result's own class by ``shown``."""

    _style = MAGICS

    def __str__(self) -> str:
        return text(self, self._style)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(text(self, self._style))

    def _repr_html_(self) -> str | None:
        return html(self, self._style)


_SHOWN_CLASSES: dict[type, type] = {}


def _shown_class(cls: type) -> type:
    if cls not in _SHOWN_CLASSES:
        namespace = {"__module__": cls.__module__, "__doc__": cls.__doc__}
        _SHOWN_CLASSES[cls] = type(cls.__name__, (_Shown, cls), namespace)
    return _SHOWN_CLASSES[cls]


def shown(value: Any, style: str = MAGICS) -> Any:
    """``value`` (a copy) as an instance of its own class with the views attached, so that
    IPython shows the table and ``print(value)`` the terminal text; it is still the same
    data (``isinstance``, attributes, ``to_json``)."""
    if not (isinstance(value, (SpecEnv, SpecInfo)) or _view_of(value)):
        return value
    view = copy.copy(value)
    view.__class__ = _shown_class(type(value))
    view._style = style
    return view


# --- specs and changes -----------------------------------------------------------------


def env_lines(env: dict[str, Any]) -> str:
    """``KEY=VALUE`` lines, values quoted as a shell would need them (spaces, quotes, ``$``,
    ``#``, tabs, newlines, empty values all round-trip): ``%%kernel_env`` and
    ``kernelmagic env --file`` read them back exactly."""
    return "\n".join(
        f"{key}={shlex.quote(value if isinstance(value, str) else json.dumps(value))}"
        for key, value in env.items()
    )


def spec_json_text(spec: dict[str, Any] | None, policy: EnvPolicy = DEFAULT_POLICY) -> str:
    return atomic.dump_spec(policy.mask_spec(spec or {})).rstrip("\n")


def spec_detail_text(info: SpecInfo, policy: EnvPolicy = DEFAULT_POLICY, style: str = CLI) -> str:
    """What ``show`` prints: location, problems, then the JSON (secrets masked)."""
    where = info.resource_dir + (" (ipykernel's built-in spec)" if info.native else "")
    lines = [printable(f"Kernel spec '{info.name}' in {where}")]
    if info.problems:
        if not info.visible:
            lines.append("Jupyter hides this spec.")
        lines += [printable(f"problem: {problem_text(p, style)}") for p in info.problems]
    else:
        lines.append("No problems found.")
    lines.append(spec_json_text(info.spec, policy))
    return "\n".join(lines)


def change_message(change: Change) -> str:
    """One line saying what a change did, or would do with ``--dry-run``."""
    where = printable(f"kernel spec '{change.name}' in {change.resource_dir}")
    if change.written:
        return f"{change.action.capitalize()} {where}"
    if change.before is not None and not change.changed:
        return f"No change to kernel spec '{change.name}'."
    return f"Dry run: would have {change.action} {where}"


def change_report(change: Change, *, diff: bool) -> str:
    """What both front ends print after an operation: the diff of an edited spec (``diff``),
    or for a new spec the JSON a dry run would write; then the one-line message."""
    parts = []
    if diff:
        shown_diff = change.diff()
        if shown_diff:
            parts.append(shown_diff.rstrip("\n"))
    elif not change.written and change.after is not None:
        parts.append(spec_json_text(change.after, change.policy))
    parts.append(change_message(change))
    if change.action in ("installed", "replaced", "cloned") and change.after is not None:
        parts += visibility_note(os.path.dirname(change.resource_dir))
    return "\n".join(parts)


def visibility_note(kernels_dir: str) -> list[str]:
    """What to do when a new spec went where Jupyter does not look (``--prefix DIR``)."""
    if searched_by_jupyter(kernels_dir):
        return []
    data_dir = os.path.dirname(kernels_dir.rstrip(os.sep))
    return [
        printable(
            f"Jupyter does not look in {kernels_dir}, so it will not show this kernel; to make "
            f"it visible, run: export JUPYTER_PATH={data_dir}"
        )
    ]


def group_note(change: Change, group: str | None) -> list[str]:
    """How the members of ``group`` see a spec shared with them."""
    if group is None or not change.written:
        return []
    data_dir = os.path.dirname(os.path.dirname(change.resource_dir))
    return [
        printable(
            f"Shared with group {group}: its members see it once Jupyter looks in "
            f"{data_dir} (export JUPYTER_PATH={data_dir})"
        )
    ]


def history_note(cell: str | None, policy: EnvPolicy, from_a_file: str) -> list[str]:
    """What to tell the user when a cell magic's cell holds a secret: IPython keeps every
    cell in its history, which the magic cannot change. ``from_a_file`` is the command line
    that reads the same text from a file instead."""
    if cell is None or policy.mask_text(cell) == cell:
        return []
    return [
        "Note: this cell holds what looks like a secret, and IPython keeps every cell in its "
        "history (history.sqlite in your IPython profile). Next time, put those lines in a "
        "file only you can read and write `source FILE` in the cell, or run "
        f"`{from_a_file}` in a terminal."
    ]


def removal_lines(removed: Iterable[str], *, dry_run: bool) -> list[str]:
    """What a removal did (or with ``dry_run`` would do), each spec with how to undo it."""
    removed = list(removed)
    if dry_run:
        lines = [printable(f"Would remove kernel spec {path}") for path in removed]
        return [*lines, f"Dry run: {len(removed)} spec(s) would be removed; nothing was."]
    return [
        printable(f"Removed kernel spec {path}; to bring it back: mv {removed_copy(path)} {path}")
        for path in removed
    ]


def exported(doc: dict[str, Any], written: str | None) -> str:
    """What ``export`` says: where it wrote the document, or the document itself."""
    if written:
        return f"Exported {len(doc['specs'])} kernel spec(s) to {written}"
    return atomic.dump_spec(doc).rstrip("\n")


def apply_report(outcomes: Iterable[Outcome], *, verbose: bool = False) -> str:
    """What ``apply`` did, would do (``--dry-run``) or found (``--check``), per spec: the
    commands it runs, quoted exactly, then what it writes or what differs, values masked."""
    lines = []
    for outcome in outcomes:
        where = outcome.resource_dir or outcome.name
        if outcome.problem:
            lines.append(printable(f"{outcome.name}: not made here: {outcome.problem}"))
            lines += [printable(f"    {detail}") for detail in outcome.problem_details]
        elif outcome.change is not None and outcome.change.written:
            lines.append(change_report(outcome.change, diff=outcome.change.before is not None))
        else:
            lines.append(printable(f"{outcome.name} ({where}): {outcome.action}"))
        if outcome.runs:
            lines.append("  runs:")
            lines += [f"    {printable_lines(run)}" for run in outcome.runs]
        if outcome.changes and not (outcome.change and outcome.change.written):
            lines += [f"  {printable(change)}" for change in outcome.changes]
        lines += [printable(f"  look: {flag}") for flag in outcome.flags]
        lines += [printable(f"  note: {note}") for note in outcome.notes]
        if verbose and outcome.spec is not None:
            lines.append(atomic.dump_spec(outcome.spec).rstrip("\n"))
    return "\n".join(lines) or "(no specs in the document)"


def printable_lines(text: str) -> str:
    """``printable`` for text that is several lines on purpose (a snippet shown whole)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def apply_failed(outcomes: Iterable[Outcome]) -> bool:
    return any(outcome.failed for outcome in outcomes)
