"""Parse what users type: magic argument lines and ``KEY=VALUE`` assignments.

One parser serves the line magic, the cell magic and ``kernelmagic env --file``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from .errors import InvalidInput

ENV_NAME_RULE = "letters, digits and '_', not starting with a digit"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class AssignmentError(InvalidInput):
    """Malformed user input: a bad assignment, variable name or quoting."""


def strip_comment(line: str) -> str:
    """Cut ``line`` at the first unquoted word that starts with ``#``.

    IPython hands line magics a trailing ``# comment``; like a shell, ``a#b`` is one word
    and ``'# x'`` is quoted text, neither starts a comment.
    """
    quote = None
    escaped = False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def split_args(line: str) -> list[str]:
    """Split a magic's argument line like a POSIX shell, dropping a trailing comment."""
    try:
        return shlex.split(strip_comment(line))
    except ValueError as exc:
        raise AssignmentError(f"cannot parse {line.strip()!r}: {exc} (check the quotes)") from exc


def check_env_name(name: str) -> str:
    if not _ENV_NAME.match(name):
        raise AssignmentError(f"invalid variable name {name!r}: use {ENV_NAME_RULE}")
    return name


def parse_assignment(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> ``(KEY, VALUE)``; the value is kept exactly as given."""
    name, sep, value = text.partition("=")
    if not sep:
        raise AssignmentError(f"expected KEY=VALUE, got {text!r}")
    return check_env_name(name), value


@dataclass
class EnvChanges:
    """Variables to set (in order) and to unset."""

    set: dict[str, str] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)

    def add(self, name: str, value: str) -> None:
        self.set[name] = value
        if name in self.unset:
            self.unset.remove(name)

    def remove(self, name: str) -> None:
        self.set.pop(name, None)
        if name not in self.unset:
            self.unset.append(name)

    def __bool__(self) -> bool:
        return bool(self.set or self.unset)

    def __repr__(self) -> str:
        # Names only: the values may be secrets.
        return f"EnvChanges(set={sorted(self.set)}, unset={self.unset})"


def _logical_lines(text: str):
    """Yield (line number, words) with quoted values allowed to span lines."""
    pending = ""
    start = 0
    for number, line in enumerate(text.split("\n"), 1):
        if not pending:
            start = number
        pending = f"{pending}\n{line}" if pending else line
        try:
            words = shlex.split(strip_comment(pending))
        except ValueError:
            continue  # an open quote: the value goes on on the next line
        pending = ""
        if words:
            yield start, words
    if pending:
        raise AssignmentError(f"line {start}: no closing quotation")


def parse_env_lines(text: str) -> EnvChanges:
    """Parse a block of ``KEY=VALUE`` lines as written in a shell script.

    Accepts ``export KEY=VALUE``, shell quotes (a quoted value may span lines), ``# comments``,
    blank lines and ``unset KEY``. Values are kept as typed: ``${PATH}`` is not expanded here.
    """
    changes = EnvChanges()
    for number, words in _logical_lines(text):
        try:
            if words[0] == "unset":
                if len(words) == 1:
                    raise AssignmentError("'unset' needs a variable name")
                for name in words[1:]:
                    changes.remove(check_env_name(name))
                continue
            if words[0] == "export":
                words = words[1:]
                if not words:
                    raise AssignmentError("'export' needs KEY=VALUE")
            for word in words:
                changes.add(*parse_assignment(word))
        except AssignmentError as exc:
            raise AssignmentError(f"line {number}: {exc}") from None
    return changes


def parse_json_assignments(items: list[str], option: str) -> dict[str, object]:
    """``KEY=JSON`` items of ``option`` (``--metadata``, ``--provisioner-config``) -> dict."""
    import json

    parsed = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise AssignmentError(f"expected {option} KEY=JSON, got {item!r}")
        try:
            parsed[key] = json.loads(raw)
        except ValueError:
            raise AssignmentError(
                f"{option} {key}: {raw!r} is not JSON; quote strings: {key}='\"text\"'"
            ) from None
    return parsed
