"""Notebooks as files: found in dirs, read whole but capped, and their
``metadata.kernelspec`` rewritten in place with nothing else in the file changed."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from kernelmagic.errors import InvalidInput
from kernelmagic.storage import atomic

MAX_NOTEBOOK_BYTES = 512 * 1024 * 1024  # images and outputs make notebooks large
_SKIPPED_DIRS = (".ipynb_checkpoints", "node_modules", "__pycache__")


def notebooks_in(paths: Iterable[str]) -> Iterator[str]:
    """Each path given, and the notebooks under each dir given (not in hidden dirs or
    Jupyter's checkpoints), in a stable order."""
    for path in paths:
        if not os.path.isdir(path):
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
            for name in sorted(files):
                if name.endswith(".ipynb"):
                    yield os.path.join(root, name)


def read(path: str) -> tuple[str, dict[str, Any]]:
    """The notebook's text and its JSON; ``InvalidInput`` saying why it cannot be read."""
    try:
        data = atomic.read_regular_file(path, MAX_NOTEBOOK_BYTES)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    if data is None:
        raise InvalidInput(f"{path} is not a regular file")
    try:
        text = data.decode("utf-8")
        notebook = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInput(f"{path} is not a notebook (not JSON)") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("metadata", {}), dict):
        raise InvalidInput(f"{path} is not a notebook (no metadata object)")
    return text, notebook


def kernelspec_of(notebook: dict[str, Any]) -> dict[str, str]:
    """``metadata.kernelspec``'s text fields (name, display_name, language), with the
    language from ``language_info`` where the kernelspec has none."""
    metadata = notebook.get("metadata") or {}
    found = metadata.get("kernelspec")
    found = found if isinstance(found, dict) else {}
    wanted = {k: v for k, v in found.items() if isinstance(v, str)}
    info = metadata.get("language_info")
    if "language" not in wanted and isinstance(info, dict) and isinstance(info.get("name"), str):
        wanted["language"] = info["name"]
    return wanted


def _member_span(text: str, object_start: int, key: str) -> tuple[int, int] | None:
    """Where the value of ``key`` is in the JSON object that starts at ``object_start``."""
    decoder = json.JSONDecoder()
    at = object_start + 1
    while True:
        at = _skip_space(text, at)
        if text[at] == "}":
            return None
        name, at = decoder.raw_decode(text, at)
        at = _skip_space(text, at) + 1  # the colon
        start = _skip_space(text, at)
        _, end = decoder.raw_decode(text, start)
        if name == key:
            return start, end
        at = _skip_space(text, end)
        if text[at] == ",":
            at += 1


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def with_kernelspec(text: str, kernelspec: dict[str, str]) -> str:
    """``text`` with ``metadata.kernelspec`` set to ``kernelspec``, every other byte as it was;
    the new object is indented as the file indents."""
    span = _member_span(text, _skip_space(text, 0), "metadata")
    if span is None or text[span[0]] != "{":
        raise InvalidInput("the notebook has no metadata object")
    metadata_start = span[0]
    line_start = text.rfind("\n", 0, metadata_start) + 1
    indent = text[line_start:metadata_start]
    indent = indent[: len(indent) - len(indent.lstrip(" \t"))]
    step = _indent_step(text)
    inner = indent + " " * step
    value = json.dumps(kernelspec, indent=step or None, ensure_ascii=False, sort_keys=True)
    if step:
        value = value.replace("\n", "\n" + inner)
    found = _member_span(text, metadata_start, "kernelspec")
    if found is not None:
        return text[: found[0]] + value + text[found[1] :]
    # No kernelspec yet: it becomes the metadata object's first member.
    after = _skip_space(text, metadata_start + 1)
    empty = text[after] == "}"
    opening = "\n" + inner if step else ""
    member = f'{opening}"kernelspec": {value}'
    if empty:
        return text[: metadata_start + 1] + member + ("\n" + indent if step else "") + text[after:]
    return text[: metadata_start + 1] + member + "," + text[metadata_start + 1 :]


def _indent_step(text: str) -> int:
    """The file's indentation step (nbformat writes 1; VS Code 1; others 2 or 4)."""
    found = re.search(r"\{\n([ \t]+)\"", text)
    return len(found.group(1)) if found else 0


def write_with_backup(path: str, text: str) -> str:
    """Write ``text`` over the notebook atomically, keeping the old file beside it first;
    returns the backup's path (never an older backup overwritten)."""
    backup = f"{path}.bak"
    number = 1
    while os.path.lexists(backup):
        number += 1
        backup = f"{path}.bak{number}"
    mode = os.stat(path).st_mode & 0o7777
    with open(path, "rb") as old, open(backup, "xb") as kept:
        kept.write(old.read())
    atomic.write_bytes_atomic(path, text.encode("utf-8"), mode=mode)
    return backup
