"""Notebooks as files: found in dirs, read capped (only their metadata decoded), and their
``metadata.kernelspec`` rewritten in place with nothing else in the file changed."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from typing import Any

from kernelmagic.errors import InvalidInput
from kernelmagic.storage import atomic

# Outputs and images make notebooks large, but a notebook is read to learn one small object:
# its cells are parsed and dropped at once, so memory stays near the file's size.
MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024
_SKIPPED_DIRS = (".ipynb_checkpoints", "node_modules", "__pycache__")
# A rewrite keeps the notebook's mode (owner-only stays owner-only) but gives nobody else
# write access and sets no id bits, whatever the old file had.
_KEPT_MODE_BITS = 0o775


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
    """The notebook's text and its ``metadata`` object; ``InvalidInput`` saying why it
    cannot be read."""
    text, _, _ = _read(path, follow=True)
    return text, metadata_of(text, path)


def _read(path: str, *, follow: bool) -> tuple[str, bytes, os.stat_result]:
    """The text, bytes and stat of the regular file opened at ``path`` (read from that one
    descriptor, capped; a FIFO or device is never waited on); ``follow=False`` refuses a
    symbolic link."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise InvalidInput(
                f"{path} is a symbolic link; --rewrite changes only a regular file: "
                "name the file it points to"
            ) from None
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput(f"{path} is not a regular file")
        if info.st_size > MAX_NOTEBOOK_BYTES:
            raise _too_big(path)
        data = _read_capped(fd, MAX_NOTEBOOK_BYTES)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise _too_big(path)
    try:
        return data.decode("utf-8"), data, info
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not a notebook (not UTF-8 JSON)") from None


def _read_capped(fd: int, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``fd`` (one more than allowed shows it grew)."""
    chunks = []
    size = 0
    while size <= limit:
        chunk = os.read(fd, min(1 << 20, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _too_big(path: str) -> InvalidInput:
    return InvalidInput(
        f"{path} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB, more than kernelmagic "
        "reads; clear its outputs first (jupyter nbconvert --clear-output --inplace)"
    )


def _drop_cells(pairs: list[tuple[str, Any]]) -> dict[str, Any] | None:
    """Keep a JSON object unless it is a cell or an output: their contents are freed as soon
    as they are parsed, so a notebook costs about its text in memory, not 25 times it."""
    if any(name in ("cell_type", "output_type") for name, _ in pairs):
        return None
    return dict(pairs)


# C-speed parsing that checks the whole file and keeps no cell.
_LEAN = json.JSONDecoder(object_pairs_hook=_drop_cells)


def metadata_of(text: str, path: str) -> dict[str, Any]:
    """The ``metadata`` object of a notebook's text (the last one, as JSON readers take it)."""
    try:
        notebook = _LEAN.decode(text)
    except (ValueError, RecursionError):
        raise InvalidInput(f"{path} is not a notebook (not JSON)") from None
    metadata = notebook.get("metadata", {}) if isinstance(notebook, dict) else None
    if not isinstance(metadata, dict):
        raise InvalidInput(f"{path} is not a notebook (no metadata object)")
    return metadata


_Members = list[tuple[str, tuple[int, int]]]  # each member's name and where its value is


def _members(text: str, object_start: int) -> _Members:
    """The members of the JSON object at ``object_start`` and where their values are.
    ``ValueError`` where it is no JSON object."""
    if text[object_start] != "{":
        raise ValueError("not an object")
    found: _Members = []
    at = _skip_space(text, object_start + 1)
    if text[at] == "}":
        return found
    while True:
        name, at = _LEAN.raw_decode(text, at)
        if not isinstance(name, str):
            raise ValueError("a member name is no string")
        at = _skip_space(text, at)
        if text[at] != ":":
            raise ValueError("no colon")
        start = _skip_space(text, at + 1)
        end = _LEAN.raw_decode(text, start)[1]
        found.append((name, (start, end)))
        at = _skip_space(text, end)
        if text[at] == "}":
            return found
        if text[at] != ",":
            raise ValueError("no comma")
        at = _skip_space(text, at + 1)


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def kernelspec_of(metadata: dict[str, Any]) -> dict[str, str]:
    """``metadata.kernelspec``'s text fields (name, display_name, language), with the
    language from ``language_info`` where the kernelspec has none."""
    found = metadata.get("kernelspec")
    found = found if isinstance(found, dict) else {}
    wanted = {k: v for k, v in found.items() if isinstance(v, str)}
    info = metadata.get("language_info")
    if "language" not in wanted and isinstance(info, dict) and isinstance(info.get("name"), str):
        wanted["language"] = info["name"]
    return wanted


def _members_or_refuse(text: str, object_start: int, path: str) -> _Members:
    try:
        return _members(text, object_start)
    except (ValueError, IndexError, RecursionError):
        raise InvalidInput(f"{path} is not a notebook (not JSON)") from None


def _only(members: _Members, key: str, path: str, where: str) -> tuple[int, int] | None:
    spans = [span for name, span in members if name == key]
    if len(spans) > 1:
        # JSON readers differ on which one counts: no rewrite could say which it changed.
        raise InvalidInput(
            f"{path} has {len(spans)} '{key}' members{where} (JSON readers differ on which "
            "one counts); keep one by hand"
        )
    return spans[0] if spans else None


def with_kernelspec(text: str, kernelspec: dict[str, str], path: str = "the notebook") -> str:
    """``text`` with ``metadata.kernelspec`` set to ``kernelspec``, every other byte as it was;
    the new object is indented as the file indents."""
    span = _only(_members_or_refuse(text, _skip_space(text, 0), path), "metadata", path, "")
    if span is None or text[span[0]] != "{":
        raise InvalidInput(f"{path} has no metadata object")
    metadata_start = span[0]
    metadata = _members_or_refuse(text, metadata_start, path)
    found = _only(metadata, "kernelspec", path, " in its metadata")
    line_start = text.rfind("\n", 0, metadata_start) + 1
    indent = text[line_start:metadata_start]
    indent = indent[: len(indent) - len(indent.lstrip(" \t"))]
    step = _indent_step(text)
    inner = indent + " " * step
    value = json.dumps(kernelspec, indent=step or None, ensure_ascii=False, sort_keys=True)
    if step:
        value = value.replace("\n", "\n" + inner)
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


def rewrite_kernelspec(path: str, kernelspec: dict[str, str]) -> str:
    """Set the notebook's ``metadata.kernelspec`` atomically, the old file kept beside it
    first (never an older backup overwritten, never written through a link); returns the
    backup's path. The old bytes are read once, from the descriptor opened without
    following a link, so what is kept is what was rewritten."""
    text, old, info = _read(path, follow=False)
    new = with_kernelspec(text, kernelspec, path).encode("utf-8")
    if kernelspec_of(metadata_of(new.decode("utf-8"), path)) != kernelspec:
        raise InvalidInput(f"{path}: the rewrite would not name {kernelspec['name']}; not changed")
    mode = info.st_mode & _KEPT_MODE_BITS
    backup = _write_backup(path, old, mode)
    atomic.write_bytes_atomic(path, new, mode=mode)
    return backup


def _write_backup(path: str, data: bytes, mode: int) -> str:
    """``data`` in a new ``PATH.bak`` (``.bak2``, ...) created with ``mode``, never through
    a planted link and never over an older backup."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    for number in range(1, 10_000):
        backup = f"{path}.bak" if number == 1 else f"{path}.bak{number}"
        try:
            # Created owner-only, then given the notebook's mode: never readable by others
            # for a moment the notebook was not.
            fd = os.open(backup, flags, 0o600)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, mode)
            with open(fd, "wb", closefd=False) as kept:
                kept.write(data)
                kept.flush()
                os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(backup)
            raise
        finally:
            os.close(fd)
        return backup
    raise InvalidInput(f"{path}: too many backups beside it ({path}.bak ...); remove some")
