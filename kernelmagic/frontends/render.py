"""Plain-text and HTML renderings of specs and tables, with secrets masked by a policy."""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any

from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.storage import atomic

if TYPE_CHECKING:
    from kernelmagic.storage.discovery import SpecInfo

_COLUMNS = ("name", "display name", "language", "resource dir", "problems")
# C0 and C1 control characters and DEL: a name or path holding them must not drive the
# terminal (escape sequences) or break a line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``, ``\\n``)."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def problem_text(problem: str, session: bool = False) -> str:
    """A problem's text, its fix written as a magic in an IPython session."""
    in_session = getattr(problem, "in_session", None)
    return in_session() if session and in_session else str(problem)


def _row(info: SpecInfo, session: bool = False) -> tuple[str, ...]:
    if not info.problems:
        status = "ok"
    else:
        texts = [problem_text(p, session) for p in info.problems]
        status = ("hidden by Jupyter: " if not info.visible else "") + "; ".join(texts)
    return (info.name, info.display_name, info.language, info.resource_dir, status)


def text_table(rows: list[tuple[str, ...]], columns: tuple[str, ...] = _COLUMNS) -> str:
    if not rows:
        return "(no kernel specs)"
    rows = [tuple(printable(str(c)) for c in r) for r in rows]
    widths = [max(len(str(r[i])) for r in [columns, *rows]) for i in range(len(columns))]
    # The last column is free text; do not pad it.
    widths[-1] = 0
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return "\n".join(lines)


def html_table(rows: list[tuple[str, ...]], columns: tuple[str, ...] = _COLUMNS) -> str:
    import html

    # Left-aligned: notebook front ends right-align table cells, which suits numbers only.
    cell = 'style="text-align:left;vertical-align:top"'
    head = "".join(f"<th {cell}>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td {cell}>{html.escape(str(c))}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Table:
    """A value shown as a table: text in a terminal, HTML in a notebook.

    Subclasses give ``columns`` and ``rows()``.
    """

    columns: tuple[str, ...] = _COLUMNS

    def rows(self) -> list[tuple[str, ...]]:
        raise NotImplementedError

    def as_text(self) -> str:
        return text_table(self.rows(), self.columns)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.as_text())

    def _repr_html_(self) -> str:
        return html_table(self.rows(), self.columns)


class SpecList(Table, list):
    """The value of ``%kernel_list``: a list of ``SpecInfo`` shown as a table."""

    pattern: str | None = None  # the pattern the list was filtered by
    session = False  # shown in IPython: fixes are written as magics

    def names(self) -> list[str]:
        return [info.name for info in self]

    def rows(self) -> list[tuple[str, ...]]:
        return [_row(i, self.session) for i in self]

    def as_text(self) -> str:
        if not self and self.pattern:
            return f"(no kernel spec matches {self.pattern!r})"
        return super().as_text()


class EnvListing(dict):
    """The value of ``%kernel_env -k NAME``: a dict shown as ``KEY=VALUE`` lines that
    ``%%kernel_env`` and ``kernelmagic env --file`` read back exactly (secrets masked)."""

    def as_text(self) -> str:
        return env_lines(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.as_text())


def env_lines(env: dict[str, Any]) -> str:
    """``KEY=VALUE`` lines, values quoted as a shell would need them (spaces, quotes, ``$``,
    ``#``, tabs, newlines, empty values all round-trip)."""
    import shlex

    return "\n".join(
        f"{key}={shlex.quote(value if isinstance(value, str) else json.dumps(value))}"
        for key, value in env.items()
    )


def spec_json_text(spec: dict[str, Any] | None, policy: EnvPolicy = DEFAULT_POLICY) -> str:
    return atomic.dump_spec(policy.mask_spec(spec or {})).rstrip("\n")


def spec_detail_text(
    info: SpecInfo, policy: EnvPolicy = DEFAULT_POLICY, session: bool = False
) -> str:
    """What ``%kernel_show`` prints: location, problems, then the JSON (secrets masked)."""
    where = info.resource_dir + (" (ipykernel's built-in spec)" if info.native else "")
    lines = [printable(f"Kernel spec '{info.name}' in {where}")]
    if info.problems:
        if not info.visible:
            lines.append("Jupyter hides this spec.")
        lines += [printable(f"problem: {problem_text(p, session)}") for p in info.problems]
    else:
        lines.append("No problems found.")
    lines.append(spec_json_text(info.spec, policy))
    return "\n".join(lines)


def change_message(change: Any) -> str:
    """One line saying what a ``specs.Change`` did, or would do with ``--dry-run``."""
    where = printable(f"kernel spec '{change.name}' in {change.resource_dir}")
    if change.written:
        return f"{change.action.capitalize()} {where}"
    if change.before is not None and not change.changed:
        return f"No change to kernel spec '{change.name}'."
    return f"Dry run: would have {change.action} {where}"


def change_report(change: Any, *, diff: bool) -> str:
    """What both front ends print after an operation: the diff of an edited spec (``diff``),
    or for a new spec the JSON a dry run would write; then the one-line message."""
    parts = []
    if diff:
        text = change.diff()
        if text:
            parts.append(text.rstrip("\n"))
    elif not change.written and change.after is not None:
        parts.append(spec_json_text(change.after, change.policy))
    parts.append(change_message(change))
    if change.action in ("installed", "replaced", "cloned") and change.after is not None:
        parts += visibility_note(os.path.dirname(change.resource_dir))
    return "\n".join(parts)


def visibility_note(kernels_dir: str) -> list[str]:
    """What to do when a new spec went where Jupyter does not look (``--prefix DIR``)."""
    from kernelmagic.storage.discovery import searched_by_jupyter

    if searched_by_jupyter(kernels_dir):
        return []
    data_dir = os.path.dirname(kernels_dir.rstrip(os.sep))
    return [
        printable(
            f"Jupyter does not look in {kernels_dir}, so it will not show this kernel; to make "
            f"it visible, run: export JUPYTER_PATH={data_dir}"
        )
    ]


def group_note(change: Any, group: str | None) -> list[str]:
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


def exported(doc: dict[str, Any], written: str | None) -> str:
    """What ``export`` says: where it wrote the document, or the document itself."""
    if written:
        return f"Exported {len(doc['specs'])} kernel spec(s) to {written}"
    return atomic.dump_spec(doc).rstrip("\n")


def apply_report(outcomes: list[Any], *, check: bool) -> str:
    """What ``apply`` did, per spec (with ``--check``: what differs)."""
    lines = []
    for outcome in outcomes:
        if outcome.problem:
            lines.append(printable(f"{outcome.name}: not made here: {outcome.problem}"))
        elif check:
            differs = ", ".join(outcome.differences)
            state = f"differs in {differs}" if differs else "as applied"
            lines.append(f"{outcome.name}: {state}")
        else:
            lines.append(change_report(outcome.change, diff=not outcome.change.written))
        lines += [printable(f"{outcome.name}: {note}") for note in outcome.notes]
    return "\n".join(lines) or "(no specs in the document)"


def apply_failed(outcomes: list[Any], *, check: bool) -> bool:
    return any(o.problem or (check and o.differences) for o in outcomes)
