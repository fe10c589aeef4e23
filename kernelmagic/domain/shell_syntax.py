"""Parse what users type: magic argument lines and ``KEY=VALUE`` assignments.

One parser serves the line magic, the cell magic and ``kernelmagic env --file``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping

from kernelmagic.errors import InvalidInput, of_type, string_list

ENV_NAME_RULE = "letters, digits and '_', not starting with a digit"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class AssignmentError(InvalidInput):
    """Malformed user input: a bad assignment, variable name or quoting."""


class _Unclosed(ValueError):
    def __init__(self, line: int) -> None:
        super().__init__("no closing quotation")
        self.line = line


def _logical_lines(text: str, *, newline_ends_line: bool = True) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, words) of ``text``, split as a POSIX shell splits words.

    One pass, linear in the length of the text (``shlex`` builds each word by repeated
    string concatenation, which is quadratic for a long value, and re-splitting a growing
    line while a quote is open was quadratic too). The rules are ``shlex.split``'s in POSIX
    mode, but for a backslash inside double quotes, which escapes ``$``, a backquote, ``"``,
    ``\\`` and a newline, as a POSIX shell reads it; outside quotes it escapes any
    character; an unquoted word that starts with ``#`` begins a comment that runs to the end
    of the line. A quoted value may span lines. And
    POSIX's (and bash's) ``$'...'``, where C escapes stand for control characters: how an
    env listing shows a value that holds them.
    """
    words: list[str] = []
    word: list[str] = []
    in_word = False
    line = start = 1
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char == "\n" and newline_ends_line:
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            if words:
                yield start, words
                words = []
            line += 1
            start = line
            i += 1
        elif char in _BLANKS:
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            i += 1
        elif char == "#" and not in_word:
            newline = text.find("\n", i)
            i = end if newline < 0 or not newline_ends_line else newline
        elif char == "$" and text.startswith("$'", i):
            opened, i = i, _quoted(text, i + 2, word, start, "'", _c_escape)
            line += text.count("\n", opened, i)
            in_word = True
        elif char == "'":
            close = text.find("'", i + 1)
            if close < 0:
                raise _Unclosed(start)
            word.append(text[i + 1 : close])
            line += text.count("\n", i, close)
            in_word, i = True, close + 1
        elif char == '"':
            opened, i = i, _quoted(text, i + 1, word, start, '"', _in_double_quotes)
            line += text.count("\n", opened, i)
            in_word = True
        elif char == "\\":
            if i + 1 >= end:
                raise ValueError("no escaped character")
            word.append(text[i + 1])
            if text[i + 1] == "\n":
                line += 1
            in_word, i = True, i + 2
        else:
            stop = _WORD_END.search(text, i + 1)
            run = stop.start() if stop else end
            word.append(text[i:run])
            in_word, i = True, run
    if in_word:
        words.append("".join(word))
    if words:
        yield start, words


_BLANKS = frozenset(" \t\r\n")  # shlex's whitespace; other spaces belong to words
_WORD_END = re.compile(r"[ \t\r\n'\"\\#]|\$'")


# $'...': what each C escape stands for, and how many digits a numeric one reads at most.
_C_ESCAPES = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r",
              "t": "\t", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}  # fmt: skip
_C_NUMBERS = re.compile(r"x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{1,4})|U([0-9A-Fa-f]{1,8})|([0-7]{1,3})")


Escape = Callable[[str, int], tuple[str, int]]  # (what the backslash at i stands for, next i)


def _quoted(text: str, i: int, word: list[str], start: int, quote: str, escaped: Escape) -> int:
    """Append the contents of a part quoted by ``quote`` whose text starts at ``i``, each
    backslash read by ``escaped``; return the index after its closing quote."""
    end = len(text)
    while True:
        close = text.find(quote, i)
        escape = text.find("\\", i, close if close >= 0 else end)
        if escape < 0:
            if close < 0:
                raise _Unclosed(start)
            word.append(text[i:close])
            return close + 1
        word.append(text[i:escape])
        if escape + 1 >= end:
            raise _Unclosed(start)
        said, i = escaped(text, escape)
        word.append(said)


def _in_double_quotes(text: str, escape: int) -> tuple[str, int]:
    """Inside double quotes, as a POSIX shell reads them: a backslash escapes ``$``, a
    backquote, ``"`` and itself, and removes a newline; before anything else it is kept."""
    following = text[escape + 1]
    if following == "\n":  # a line continued
        return "", escape + 2
    return (following if following in '"\\$`' else "\\" + following), escape + 2


def _c_escape(text: str, escape: int) -> tuple[str, int]:
    """Inside ``$'...'``, as bash reads it: a C escape, a number, or the backslash kept."""
    code = text[escape + 1]
    if code in _C_ESCAPES:
        return _C_ESCAPES[code], escape + 2
    number = _C_NUMBERS.match(text, escape + 1)
    if number is None:  # not an escape: kept, backslash and all, as bash keeps it
        return "\\", escape + 1
    digits = next(group for group in number.groups() if group is not None)
    value = int(digits, 8 if number.group(4) else 16)
    unicode = value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF
    return (chr(value) if unicode else "\ufffd"), number.end()


def split_words(text: str) -> list[str]:
    """Split like ``shlex.split`` (POSIX), dropping comments; raises ``ValueError``."""
    return [
        w for _, line_words in _logical_lines(text, newline_ends_line=False) for w in line_words
    ]


def split_args(line: str) -> list[str]:
    """Split a magic's argument line like a POSIX shell, dropping a trailing comment."""
    try:
        return split_words(line)
    except ValueError as exc:
        raise AssignmentError(f"cannot parse {line.strip()!r}: {exc} (check the quotes)") from None


def check_env_name(name: str) -> str:
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        raise AssignmentError(f"invalid variable name {name!r}: use {ENV_NAME_RULE}")
    return name


def parse_assignment(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> ``(KEY, VALUE)``; the value is kept exactly as given."""
    name, sep, value = text.partition("=")
    if not sep:
        raise AssignmentError(f"expected KEY=VALUE, got {text!r}")
    return check_env_name(name), value


def check_env_value(name: str, value: str) -> str:
    if not isinstance(value, str):  # an environment holds text (a library caller's 1)
        raise AssignmentError(f"env values are text: {name} is set to a {type(value).__name__}")
    if "\0" in value:
        raise AssignmentError(
            f"the value of {name} holds a NUL character, which no environment can carry"
        )
    return value


class EnvChanges:
    """Variables to set (in order) and to unset; names and values checked as they come in."""

    def __init__(self, set: dict[str, str] | None = None, unset: Iterable[str] = ()) -> None:
        self.set: dict[str, str] = {}
        self._unset: dict[str, None] = {}  # ordered, with O(1) membership
        of_type(set or {}, Mapping, "EnvChanges' set", "dict of name to value")
        for name, value in (set or {}).items():
            self.add(name, value)
        for name in string_list(unset, "EnvChanges' unset"):
            self.remove(name)

    @property
    def unset(self) -> list[str]:
        return list(self._unset)

    def add(self, name: str, value: str) -> None:
        self.set[check_env_name(name)] = check_env_value(name, value)
        self._unset.pop(name, None)

    def remove(self, name: str) -> None:
        self.set.pop(check_env_name(name), None)
        self._unset[name] = None

    def __bool__(self) -> bool:
        return bool(self.set or self._unset)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EnvChanges):
            return NotImplemented
        return self.set == other.set and self.unset == other.unset

    def __repr__(self) -> str:
        # Names only: the values may be secrets.
        return f"EnvChanges(set={sorted(self.set)}, unset={self.unset})"


def parse_env_lines(text: str) -> EnvChanges:
    """Parse a block of ``KEY=VALUE`` lines as written in a shell script.

    Accepts ``export KEY=VALUE``, shell quotes (a quoted value may span lines), ``# comments``,
    blank lines and ``unset KEY``. Values are kept as typed: ``${PATH}`` is not expanded here.
    """
    changes = EnvChanges()
    try:
        lines = list(_logical_lines(text))
    except _Unclosed as exc:
        raise AssignmentError(f"line {exc.line}: no closing quotation") from None
    except ValueError as exc:
        raise AssignmentError(f"{exc} at the end of the text") from None
    for number, words in lines:
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


MAX_JSON_DEPTH = 64  # deeper values would overflow the recursion of json.dumps later


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON (strict readers of kernel.json reject it)")


def _finite_float(number: str) -> float:
    value = float(number)
    if value in (float("inf"), float("-inf")):  # 1e999: Infinity once read
        raise ValueError(
            f"the number {number[:20]} is too large for a float (strict readers of "
            "kernel.json reject the Infinity it becomes)"
        )
    return value


def nesting_depth(value: object) -> int:
    """How deeply ``value`` nests (iteratively: a deep value must not blow the stack)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            todo += [(v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


def parse_json_assignments(items: list[str], option: str) -> dict[str, object]:
    """``KEY=JSON`` items of ``option`` (``--metadata``, ``--provisioner-config``) -> dict.

    Strict JSON only: ``NaN``/``Infinity`` and values nested deeper than ``MAX_JSON_DEPTH``
    are refused.
    """
    import json

    parsed = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise AssignmentError(f"expected {option} KEY=JSON, got {item!r}")
        try:
            value = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
        except RecursionError:
            value = None
            depth_error = True
        except ValueError as exc:
            reason = str(exc) if "strict readers" in str(exc) else f"{raw!r} is not JSON"
            raise AssignmentError(
                f"{option} {key}: {reason}; quote strings: {key}='\"text\"'"
            ) from None
        else:
            depth_error = nesting_depth(value) > MAX_JSON_DEPTH
        if depth_error:
            raise AssignmentError(
                f"{option} {key}: the value nests deeper than {MAX_JSON_DEPTH} levels"
            )
        parsed[key] = value
    return parsed


def escape_dollars(value: str) -> str:
    """Escape ``$`` so that Jupyter's ``string.Template`` substitution leaves it as typed."""
    return value.replace("$", "$$")


def env_changes(
    assignments: Iterable[str],
    unset: Iterable[str] = (),
    *,
    literal: bool = False,
    body: EnvChanges | None = None,
) -> EnvChanges:
    """``KEY=VALUE`` words, ``--unset`` names and ``body`` (a cell or file of assignment
    lines) merged in that order: the command line wins over the body."""
    changes = EnvChanges()

    def dollars(value: str) -> str:
        return escape_dollars(value) if literal else value

    if body is not None:
        for key in body.unset:
            changes.remove(key)
        for key, value in body.set.items():
            changes.add(key, dollars(value))
    for text in assignments:
        key, value = parse_assignment(text)
        changes.add(key, dollars(value))
    for key in unset:
        changes.remove(check_env_name(key))
    return changes
