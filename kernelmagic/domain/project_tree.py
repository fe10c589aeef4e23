"""A tree of projects (``install --project --scan DIR``): every project dir below DIR, found
by the ``--project`` rules, each of its environments, and the spec name each one gets.

Only files are read here; nothing runs. The walk enters no hidden dir, no vendored one
(``node_modules``, ``site-packages``, ...), no environment (a dir with ``pyvenv.cfg`` or
``conda-meta``), no symlink (so it never leaves DIR, nor goes round a loop), and not a
project's own subdirs: a workspace's members share its environment.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kernelmagic.domain import pixi_files, projects

DEFAULT_DEPTH = 3  # DIR/group/project/… : a projects dir with a level of grouping, and one more
MAX_NAME = 100  # a long relative path makes a name still short enough to read in a menu
# Dirs that hold other people's code or installed packages, never a project of the user's.
VENDORED = frozenset({
    "node_modules", "site-packages", "dist-packages", "__pycache__", "__pypackages__",
    "bower_components", "vendor", "_vendor",
})  # fmt: skip


@dataclass(frozen=True)
class Candidate:
    """One environment of one project in the tree."""

    root: str
    tool: str
    name: str  # the project's name, as its files give it
    environment: str | None = None  # pixi: the environment (each gets its own spec)

    @property
    def key(self) -> tuple[str, str | None]:
        return self.root, self.environment


def project_dirs(top: str, depth: int = DEFAULT_DEPTH) -> list[str]:
    """Every project dir at most ``depth`` levels below ``top`` (``top`` is level 0), sorted."""
    found: list[str] = []
    level = [os.path.abspath(top)]
    for below in range(depth + 1):
        deeper = []
        for path in level:
            if projects.is_project_dir(path):
                found.append(path)
            elif below < depth:
                deeper += _subdirs(path)
        level = deeper
    return sorted(found)


def _subdirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as entries:
            dirs = [
                entry.path
                for entry in entries
                if not entry.name.startswith(".")
                and entry.name not in VENDORED
                and entry.is_dir(follow_symlinks=False)
            ]
    except OSError:  # unreadable: nothing below it is ours to scan
        return []
    return [d for d in dirs if not _is_environment(d)]


def _is_environment(path: str) -> bool:
    return os.path.exists(os.path.join(path, "pyvenv.cfg")) or os.path.isdir(
        os.path.join(path, "conda-meta")
    )


def candidates(root: str) -> list[Candidate]:
    """The environments of the project at ``root``: one, or one per pixi environment."""
    tool = projects.tool_of(root)
    if tool is None:
        return []
    name = projects.name_of(root)
    if tool != "pixi":
        return [Candidate(root, tool, name)]
    return [Candidate(root, tool, name, env) for env in pixi_files.environments(root)]


def spec_names(
    found: Iterable[Candidate],
    top: str,
    kept: Mapping[tuple[str, str | None], str],
    taken: Iterable[str],
) -> dict[tuple[str, str | None], str]:
    """A spec name for each candidate: the one it has (``kept``: a previous scan's), else
    the project's name (``proj``, ``proj-gpu`` for pixi's ``gpu``), made unique with the
    project's path below ``top`` where two projects share a name or the name is ``taken``,
    then with a number. Stable: a project keeps its name when others come or go."""
    found = list(found)
    used = {name.lower() for name in taken} | set(kept.values())
    bases = {c.key: _base(c) for c in found if c.key not in kept}
    shared = Counter(bases.values())
    names = {c.key: kept[c.key] for c in found if c.key in kept}
    for c in found:
        if c.key in names:
            continue
        name = bases[c.key]
        if shared[name] > 1 or name in used:
            name = _qualified(c, top)
        unique, n = name, 2
        while unique in used:
            unique, n = f"{name}-{n}", n + 1
        used.add(unique)
        names[c.key] = unique
    return names


def _base(candidate: Candidate) -> str:
    env = candidate.environment
    suffix = f"-{env}" if env and env != "default" else ""
    return _short(projects.valid_name(candidate.name + suffix))


def _qualified(candidate: Candidate, top: str) -> str:
    """The name with the path of the project's parent below ``top`` before it: ``a-app``."""
    where = os.path.relpath(os.path.dirname(candidate.root), top)
    if where == "." or where.startswith(".."):
        return _base(candidate)
    return _short(projects.valid_name(f"{where.replace(os.sep, '-')}-{_base(candidate)}"))


def _short(name: str) -> str:
    return name[-MAX_NAME:].strip("-.") or "project"
