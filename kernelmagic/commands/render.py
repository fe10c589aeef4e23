"""What both front ends show: ``Shown``, and the pieces every command's view is made of.

A command's ``show(result, style)`` returns a ``Shown``: the terminal text, a notebook's HTML
where a table reads better, the exit status, and the data a magic returns. ``style`` says how
a fix is spelled: ``"cli"`` (``kernelmagic env -k geo ...``) or ``"magics"``
(``%kernel_env -k geo ...``). Names and paths are shown with control characters escaped, and
secrets masked by a policy.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kernelmagic.commands import BY_NAME
from kernelmagic.domain.checks import Problem
from kernelmagic.domain.policy import DEFAULT_POLICY, MASK, EnvPolicy
from kernelmagic.errors import KernelmagicError
from kernelmagic.options import CLI as CLI  # the two styles: the front ends' own names
from kernelmagic.options import MAGICS as MAGICS
from kernelmagic.storage.discovery import SpecInfo, locate, searched_by_jupyter

if TYPE_CHECKING:  # a listing has no change to show: it need not import the writers
    from kernelmagic.storage.transactions import Change

# What a listing verified of a spec with no problem: its JSON and its program, not its start.
FOUND = "found"


@dataclass(frozen=True, eq=False, repr=False)
class Shown:
    """What a command shows. ``text`` is the terminal's; ``html`` a notebook's table, where
    one reads better; ``status`` the command line's exit status. ``value`` is the data behind
    it, which a magic returns (``None``: a command that changes things, whose magic prints
    ``text`` and returns nothing): the ``Shown`` itself, which reads as that data (its
    attributes, items, ``len``), or with ``plain`` the value as is (a JSON document).
    A plain value is a JSON document: the command line prints it as JSON (indented for a
    terminal, compact for a program), so its ``text`` is left empty. ``notes`` are said apart
    from the output (the command line's stderr); ``change`` is what was written, and
    ``removed_dirs`` the spec dirs removed, which the magics forget (named so as not to hide
    a ``removed`` of the data)."""

    text: str
    html: str | None = None
    status: int = 0
    value: Any = None
    plain: bool = False
    notes: tuple[str, ...] = ()
    change: Change | None = None
    removed_dirs: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__  # what the terminal shows, secrets masked as there

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text)

    def _repr_html_(self) -> str | None:
        return self.html

    # The data's own face: `specs = %kernel_list; specs[0].name`, `report.healthy`.
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # IPython's probes for _repr_*_ and the like: not the data's
            raise AttributeError(name)
        return getattr(self.__dict__.get("value"), name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.value)

    def __len__(self) -> int:
        return len(self.value)

    def __getitem__(self, key: Any) -> Any:
        return self.value[key]

    def __contains__(self, item: Any) -> bool:
        return item in self.value

    def __bool__(self) -> bool:
        return bool(self.value)

    def __eq__(self, other: object) -> bool:
        return bool(self.value == (other.value if isinstance(other, Shown) else other))

    __hash__ = None  # type: ignore[assignment]  # equal to its data, which may change


class ShownData:
    """A command's data that its magic returns as itself, as 0.2's magics did: a list or a
    dict (`specs + []`, `json.dumps(env)`, `isinstance(env, dict)` work), shown as the
    command shows it, a table in a notebook, the terminal's text in IPython and print()."""

    _shown: Shown | None = None

    def as_shown(self, shown: Shown) -> Any:
        self._shown = shown
        return self

    def __str__(self) -> str:
        return self._shown.text if self._shown is not None else super().__str__()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str | None:
        return self._shown.html if self._shown is not None else None


def lines(*parts: str | Iterable[str]) -> str:
    """Text from strings and lists of lines, empty ones left out."""
    out: list[str] = []
    for part in parts:
        out.extend([part] if isinstance(part, str) else part)
    return "\n".join(line for line in out if line)


# C0 and C1 control characters and DEL: a name or path holding them must not drive the
# terminal (escape sequences) or break a line.
# Control characters, and lone surrogates (JSON's "\ud800"), which no terminal can be sent.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with control characters and lone surrogates shown as escapes (``\\x1b``,
    ``\\n``, ``\\ud800``)."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def os_error_text(error: OSError) -> str:
    """An OSError no check foresaw (a full disk), as one line: why, and where if known."""
    where = f": {error.filename}" if error.filename else ""
    return printable(f"{error.strerror or error}{where}")


def error_text(error: BaseException | str) -> str:
    """An error as the user sees it: its one line, then what a tool said about it (the
    error's ``details``), indented, each line escaped like the first. A credential in it
    (an error that quotes the argument it refuses) is masked, as every display masks it:
    a notebook keeps its errors."""
    mask = DEFAULT_POLICY.mask_text
    lines = [printable(mask(str(error)))]
    lines += [f"  {printable(mask(line))}" for line in getattr(error, "details", ())]
    return "\n".join(lines)


def command(fix: str, style: str) -> str:
    """A command as the user types it in this front end: ``env -k geo`` becomes
    ``kernelmagic env -k geo`` or ``%kernel_env -k geo``; a shell's (``chmod +x ...``) stays."""
    if fix.split(" ", 1)[0] not in BY_NAME:
        return fix
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


# html.escape's table, without importing html (which loads every named entity, the largest
# import of a plain listing).
_HTML_SPECIAL = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}
)


def escape_html(text: str) -> str:
    return text.translate(_HTML_SPECIAL)


def html_table(rows: list[tuple[str, ...]], columns: tuple[str, ...]) -> str:
    # Left-aligned: notebook front ends right-align table cells, which suits numbers only.
    cell = 'style="text-align:left;vertical-align:top"'
    head = "".join(f"<th {cell}>{escape_html(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td {cell}>{escape_html(str(c))}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table(rows: list[tuple[str, ...]], columns: tuple[str, ...]) -> tuple[str, str]:
    """The same rows as terminal text and as a notebook's HTML table."""
    return text_table(rows, columns), html_table(rows, columns)


# --- specs and changes -----------------------------------------------------------------


def env_lines(env: dict[str, Any]) -> str:
    """``KEY=VALUE`` lines, values quoted as a shell would need them (spaces, quotes, ``$``,
    ``#``, tabs, newlines, empty values all round-trip): ``%%kernel_env`` and
    ``kernelmagic env --file`` read them back exactly. A value holding a control character
    that could drive a terminal is written ``$'...'``, the character as its C escape."""
    return "\n".join(
        f"{key}={_shell_quoted(value if isinstance(value, str) else json.dumps(value))}"
        for key, value in env.items()
    )


_TERMINAL_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # tab and newline: as typed
_C_NAMES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", "'": "\\'"}


def _shell_quoted(value: str) -> str:
    if not _TERMINAL_CONTROL.search(value):
        return shlex.quote(value)
    escaped = (
        _C_NAMES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x80 else f"\\u{ord(char):04x}")
        if char in _C_NAMES or _CONTROL.match(char)
        else char
        for char in value
    )
    return "$'" + "".join(escaped) + "'"


def spec_json_text(spec: dict[str, Any] | None, policy: EnvPolicy = DEFAULT_POLICY) -> str:
    """The spec as its file reads (Jupyter's JSON style, secrets masked); a NaN a file
    holds is shown as it is, not refused as a write refuses it."""
    return json.dumps(policy.mask_spec(spec or {}), indent=1)


def spec_detail_text(info: SpecInfo, policy: EnvPolicy = DEFAULT_POLICY, style: str = CLI) -> str:
    """What ``show`` prints: location, problems, then the JSON (secrets masked)."""
    where = info.resource_dir + (" (ipykernel's built-in spec)" if info.native else "")
    lines = [printable(f"Kernel spec '{info.name}' in {where}")]
    if info.problems:
        if not info.visible and info.read:  # one kernelmagic did not read: Jupyter may not
            lines.append("Jupyter hides this spec.")
        lines += [printable(f"problem: {problem_text(p, style)}") for p in info.problems]
    else:  # the listing's checks: the doctor runs the rest (walk S: "No problems" beside them)
        doctor = command(f"doctor {shlex.quote(info.name)}", style)
        lines.append(printable(f"No problems found in the file ({doctor} checks what it runs)."))
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
        parts.append(spec_json_text(change.after, change.shown_policy))
    parts.append(change_message(change))
    if change.action in ("installed", "replaced", "cloned") and change.after is not None:
        parts += visibility_note(change.name, change.resource_dir)
    return "\n".join(parts)


def visibility_note(name: str, resource_dir: str) -> list[str]:
    """What to do when a new spec went where Jupyter does not look (``--prefix DIR``), or
    where it finds another spec of that name first."""
    kernels_dir = os.path.dirname(resource_dir)
    if searched_by_jupyter(kernels_dir):
        try:
            first = locate(name)[1]
        except KernelmagicError:  # a dry run's, not there yet: nothing else is either
            return []
        if os.path.realpath(first) == os.path.realpath(resource_dir):
            return []
        return [
            printable(
                f"Jupyter starts the '{name}' in {first}, which it finds first: this one is "
                f"hidden while that one is there"
            )
        ]
    return [unsearched_dir_note(kernels_dir)]


def unsearched_dir_note(kernels_dir: str, kernels: int = 1) -> str:
    """How to make Jupyter show the ``kernels`` new specs in ``kernels_dir``, a dir it does
    not search (``--prefix DIR`` off its path)."""
    data_dir = os.path.dirname(kernels_dir.rstrip(os.sep))
    these, them = ("this kernel", "it") if kernels == 1 else ("these kernels", "them")
    return printable(
        f"Jupyter does not look in {kernels_dir}, so it will not show {these}; to make "
        f"{them} visible, run: export JUPYTER_PATH={data_dir}"
    )


def group_note(change: Change, group: str | None) -> list[str]:
    """How the members of ``group`` see a spec shared with them."""
    if group is None or not change.written:
        return []
    data_dir = os.path.dirname(os.path.dirname(change.resource_dir))
    said = [
        printable(
            f"Shared with group {group}: its members see it once Jupyter looks in "
            f"{data_dir} (export JUPYTER_PATH={data_dir})"
        )
    ]
    try:
        writable = os.stat(change.resource_dir).st_mode & 0o020
    except OSError:
        writable = True
    if not writable:  # the umask took the group's write bit: it is the group's to use only
        said.append(
            "Only you can change it: your umask left the group no write access; with umask "
            "002 (as group project spaces are used) every member maintains it"
        )
    return said


_QUOTED_MASK = re.compile(r"(['\"])" + re.escape(MASK) + r"\1")


def history_note(cell: str | None, policy: EnvPolicy, from_a_file: str) -> list[str]:
    """What to tell the user when a cell magic's cell holds a secret: IPython keeps every
    cell in its history, which the magic cannot change. ``from_a_file`` is the command line
    that reads the same text from a file instead."""
    if cell is None:
        return []
    # An env listing read back shows secrets as '<hidden>': a placeholder, not a secret.
    cell = _QUOTED_MASK.sub(MASK, cell)
    if policy.mask_text(cell) == cell:
        return []
    return [
        "Note: this cell holds what looks like a secret, and IPython keeps every cell in its "
        "history (history.sqlite in your IPython profile). Next time, put those lines in a "
        "file only you can read and write `source FILE` in the cell, or run "
        f"`{from_a_file}` in a terminal."
    ]


def removal_lines(removed: Iterable[tuple[str, str]], *, dry_run: bool) -> list[str]:
    """What a removal did (or with ``dry_run`` would do): each spec dir removed, with the
    copy it was kept as (``history.removed_copy``), which undoes it."""
    removed = list(removed)
    if dry_run:
        lines = [printable(f"Would remove kernel spec {path}") for path, _ in removed]
        return [*lines, f"Dry run: {len(removed)} spec(s) would be removed; nothing was."]
    return [
        printable(f"Removed kernel spec {path}; to bring it back: mv {kept} {path}")
        for path, kept in removed
    ]


def printable_lines(text: str) -> str:
    """``printable`` for text that is several lines on purpose (a snippet shown whole)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def shown_change(
    change: Change, *, diff: bool, before: Iterable[str] = (), after: Iterable[str] = ()
) -> Shown:
    """What a command that wrote (or would write) one spec shows: ``before``, the change
    (its diff with ``diff``, else for a new spec the JSON a dry run would write), ``after``."""
    return Shown(lines(before, change_report(change, diff=diff), after), change=change)
