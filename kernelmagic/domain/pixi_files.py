"""What a pixi project's files say, read without running pixi: the environments its manifest
defines, and what its lockfile pins for one of them."""

from __future__ import annotations

import os
import re

from kernelmagic.reading import MAX_INPUT_BYTES, read_regular_file

_HEADER = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
_KEY = re.compile(r"""^\s*("[^"]+"|'[^']+'|[A-Za-z0-9_-]+)\s*=""")


def _text(path: str) -> str:
    try:
        return (read_regular_file(path, MAX_INPUT_BYTES) or b"").decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def environments(root: str) -> list[str]:
    """The environments a pixi project defines (``[environments]`` of pixi.toml, or
    ``[tool.pixi.environments]`` of pyproject.toml), ``default`` first: it always exists."""
    manifest = _text(os.path.join(root, "pixi.toml"))
    text, table = (manifest, "environments") if manifest else (
        _text(os.path.join(root, "pyproject.toml")), "tool.pixi.environments"
    )  # fmt: skip
    found = ["default"]
    inside = False
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            key = header.group(1)
            inside = key == table
            if key.startswith(table + "."):  # [environments.gpu]
                found.append(key[len(table) + 1 :].strip("'\""))
            continue
        key_match = _KEY.match(line) if inside else None
        if key_match:
            found.append(key_match.group(1).strip("'\""))
    return list(dict.fromkeys(found))


def lock_section(text: str, environment: str) -> str:
    """The lines of pixi.lock's ``environments: ENVIRONMENT:`` block ("" when absent)."""
    block: list[str] = []
    in_environments = inside = False
    for line in text.splitlines():
        if not line.startswith(" "):
            in_environments, inside = line.rstrip() == "environments:", False
        elif in_environments and re.match(r"^  \S", line):
            inside = line.strip().rstrip(":").strip("'\"") == environment
        elif inside:
            block.append(line)
    return "\n".join(block)
