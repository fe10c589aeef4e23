"""Reading what kernelmagic is handed: regular files only, capped in size, and a
``kernel.json`` parsed as Jupyter parses it (and written as its installers write it).

Below every layer (like ``errors``): the rules read a project's manifest or a script's head
through it, storage reads specs and backups through it. A FIFO planted where a file is
expected is never waited on, and a giant never fills memory.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from typing import Any

from kernelmagic.errors import InvalidInput, KernelmagicError, path_text

# An env file, snippet or document is small; /dev/zero must not fill memory.
MAX_INPUT_BYTES = 16 * 1024 * 1024


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def read_regular_file(path: str | os.PathLike[str], limit: int) -> bytes | None:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes; None when
    it is no regular file (a FIFO, a device, a socket, a dangling link: never waited on).

    The size is checked before a byte is read, and every read is capped, so a giant or a
    growing file costs nothing. ``OSError`` (``EFBIG`` for one that is too large) for a
    regular file that cannot be read.
    """
    fd = open_for_reading(path)
    return None if fd is None else read_opened(fd, path, limit)


def can_name_a_file(path: str) -> bool:
    """Whether the system can be given ``path``: a spec's JSON can hold a NUL or a lone
    surrogate (``"\\ud800"``), with which every call on it raises."""
    if "\0" in path:
        return False
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        return False
    return True


def open_for_reading(path: str | os.PathLike[str], *, follow: bool = True) -> int | None:
    """``read_regular_file``'s one path lookup: a descriptor of ``path`` opened without
    blocking (for ``read_opened``), or None where there is nothing to read (no such file, or
    one that cannot be opened and is no regular file; with ``follow=False``, any link).
    ``OSError`` for a regular file that cannot be opened."""
    try:
        return os.open(path, _READ_FLAGS if follow else _READ_FLAGS | os.O_NOFOLLOW)
    except (ValueError, UnicodeEncodeError):  # a NUL or lone surrogate: no file is so named
        return None
    except OSError:
        try:
            is_file = stat.S_ISREG((os.stat if follow else os.lstat)(path).st_mode)
        except OSError:
            return None
        if not is_file:
            return None
        raise


def read_opened(fd: int, path: str | os.PathLike[str], limit: int) -> bytes | None:
    """The rest of ``read_regular_file`` on a descriptor from ``open_for_reading``, which
    this closes; no path lookup."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > limit:
            raise _too_big(path, limit)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:  # the file may grow after fstat: every read is capped
            wanted = min(max(info.st_size + 1 - size, 65536), limit + 1 - size)
            chunk = os.read(fd, wanted)
            if len(chunk) < wanted and not chunks:  # a regular file reads short only at its end
                return chunk  # the usual case: all of it in one read
            chunks.append(chunk)
            size += len(chunk)
            if len(chunk) < wanted:
                return b"".join(chunks)
        raise _too_big(path, limit)
    finally:
        os.close(fd)


def read_regular_head(path: str | os.PathLike[str], size: int) -> bytes | None:
    """The first ``size`` bytes of ``path`` if it is a regular file (a script's head); None
    when it is none (a FIFO is never waited on). ``OSError`` when it cannot be read."""
    opened = _open_regular(path)
    if opened is None:
        return None
    fd, _ = opened
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def _open_regular(path: str | os.PathLike[str]) -> tuple[int, os.stat_result] | None:
    """An open descriptor of ``path`` and its stat, where it is a regular file; None where
    it is not one (opened without blocking, so a FIFO costs nothing). ``OSError`` for a
    regular file that cannot be opened."""
    fd = open_for_reading(path)
    if fd is None:
        return None
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return fd, info


def _too_big(path: str | os.PathLike[str], limit: int) -> OSError:
    size = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit} bytes"
    return OSError(errno.EFBIG, f"larger than {size}", os.fspath(path))


MAX_SPEC_BYTES = 4 * 1024 * 1024  # a kernel.json is a few hundred bytes; stop a planted giant


def parse_spec(raw: bytes) -> Any:
    """Parse the bytes of a ``kernel.json`` as Jupyter does (``open(encoding="utf-8")`` then
    ``json.load``): strict UTF-8, no BOM, no UTF-16; raises ``ValueError``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except RecursionError:  # [[[[...]]]] a thousand deep: said as malformed, not raised
        raise ValueError("nested deeper than Python's parser goes") from None


def dump_spec(data: dict[str, Any]) -> str:
    """Serialise a spec the way Jupyter's installers do (``json.dump(..., indent=1)``);
    ``KernelmagicError`` for a value JSON cannot hold, before anything is written."""
    # allow_nan=False: NaN and Infinity are not JSON, and strict readers of the listing
    # (browsers through /api/kernelspecs, jq) would fail on them.
    try:
        return json.dumps(data, indent=1, allow_nan=False) + "\n"
    except ValueError:
        raise KernelmagicError(
            "the spec holds NaN, Infinity or a number too large for a float (1e999), which "
            "strict JSON readers reject (a browser reading /api/kernelspecs); nothing was written"
        ) from None
    except TypeError as exc:
        raise KernelmagicError(f"the spec holds a value JSON cannot hold ({exc})") from None


def spec_bytes(spec: dict[str, Any]) -> bytes:
    """The bytes a writer puts in ``kernel.json`` (``dump_spec``); ``InvalidInput`` over
    ``MAX_SPEC_BYTES``, which no listing, change or undo of kernelmagic would read back."""
    data = dump_spec(spec).encode("utf-8")
    if len(data) > MAX_SPEC_BYTES:
        raise InvalidInput(
            f"the spec would be {len(data) / 2**20:.1f} MiB, more than the "
            f"{MAX_SPEC_BYTES // 2**20} MiB kernelmagic reads back; nothing was written"
        )
    return data


def read_spec_file(path: str) -> Any:
    """Parse a ``kernel.json``; raises ``OSError`` or ``ValueError`` (``InvalidInput`` for
    what is no path)."""
    raw = read_regular_file(path_text(path, "path"), MAX_SPEC_BYTES)
    if raw is None:
        raise FileNotFoundError(errno.ENOENT, "not a regular file", path)
    return parse_spec(raw)


def read_spec_object(path: str) -> dict[str, Any]:
    """``read_spec_file`` for a caller that needs the object Jupyter requires; a
    ``kernel.json`` holding anything else raises ``ValueError`` as unparsable text does."""
    spec = read_spec_file(path)
    if not isinstance(spec, dict):
        raise ValueError(f"{path} holds {json_kind(spec)}, not an object")
    return spec


_JSON_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "true or false",
               int: "a number", float: "a number"}  # fmt: skip


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words (``null``, not ``NoneType``)."""
    return "null" if value is None else _JSON_KINDS.get(type(value), type(value).__name__)


def read_text_input(path: str) -> str:
    """The UTF-8 text of an input file (``-``: stdin), at most ``MAX_INPUT_BYTES``;
    ``InvalidInput`` saying why it cannot be read."""
    try:
        if path == "-":
            stream = getattr(sys.stdin, "buffer", None)  # a text-only stdin in tests, IDEs
            data = (
                stream.read(MAX_INPUT_BYTES + 1)
                if stream is not None
                else sys.stdin.read(MAX_INPUT_BYTES + 1).encode("utf-8")
            )
        else:
            os.stat(path)  # what keeps us from it, said as the system says it
            found = read_regular_file(path, MAX_INPUT_BYTES)
            if found is None:
                raise InvalidInput(f"cannot read {path}: not a regular file")
            data = found
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise InvalidInput(f"{path} is larger than {MAX_INPUT_BYTES // 2**20} MiB") from None
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise InvalidInput(f"{path} is larger than {MAX_INPUT_BYTES // 2**20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{path} is not UTF-8 text (byte {exc.start}: {data[exc.start : exc.end]!r})"
        ) from None
