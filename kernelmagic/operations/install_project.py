"""``install --project [DIR]``: the kernel of a project's own environment (uv, Poetry, PDM,
Hatch, pixi, conda's environment.yml, a bare .venv), baked into a plain spec."""

from __future__ import annotations

import argparse
import os
from typing import Any

from kernelmagic.domain import projects
from kernelmagic.domain.provenance import Source
from kernelmagic.errors import InvalidInput
from kernelmagic.options import option, path

PROJECT = option(
    "--project",
    nargs="?",
    const=".",
    metavar="DIR",
    type=path,
    help="the environment of the project at DIR (default: this dir or the nearest one above "
    "with a pyproject.toml, pixi.toml, environment.yml or .venv), found as its tool (uv, "
    "Poetry, PDM, Hatch, pixi, conda) finds it; NAME defaults to the project's name",
)
CWD = option(
    "--cwd",
    action="store_true",
    help="with --project: the kernel starts in the project's dir, whatever the client's "
    "working dir (relative paths in notebooks work from every client)",
)
SCAN = option(
    "--scan",
    metavar="DIR",
    type=path,
    help="with --project (no DIR): a spec for every environment of every project below DIR "
    "that can run ipykernel (one per pixi environment), named from the project; the others "
    "are listed with their tool's command; a spec a scan made is kept, or refreshed when its "
    "lockfile changed",
)
DEPTH = option(
    "--depth",
    type=int,
    default=None,
    metavar="N",
    help="with --scan: look for projects at most N dirs below DIR (default: 3)",
)
OPTIONS = (PROJECT, CWD, SCAN, DEPTH)


def source_from_args(ns: argparse.Namespace, shell: str | None) -> Source | None:
    """The project source --project names; None without it. Refuses another source."""
    if ns.depth is not None:
        raise InvalidInput("--depth goes with --project --scan DIR")
    if ns.project is None:
        if ns.cwd:
            raise InvalidInput("--cwd goes with --project")
        return None
    given = [flag for flag, on in (("--modules", ns.modules), ("--from-conda", ns.from_conda),
                                   ("--python", ns.python), ("--from-current", ns.from_current))
             if on]  # fmt: skip
    if given:
        raise InvalidInput(f"--project finds the environment itself; it cannot go with {given[0]}")
    return Source("project", project=projects.find_root(ns.project), shell=shell)


def spec_name(ns: argparse.Namespace) -> str:
    """NAME as given, or with --project the project's name made a valid spec name."""
    if ns.name:
        return str(ns.name)
    if ns.project is None:
        raise InvalidInput("give the new spec's NAME (or --project, which names it)")
    return projects.valid_name(projects.name_of(ns.project))


def start_in(root: str) -> str:
    """The argv word that makes ipykernel change to ``root`` once it has started (after it
    read its connection file, which may be a relative path): ipykernel's own exec_lines, so
    no wrapper process; it binds no name in the user's namespace and stays out of history."""
    return f"--IPKernelApp.exec_lines=__import__('os').chdir({os.path.abspath(root)!r})"


def check_language(kernel: str, made_project: dict[str, Any] | None) -> None:
    """R and Julia come from a project only where its tool manages them (pixi, conda)."""
    tool = (made_project or {}).get("tool")
    if tool and kernel != "python" and tool not in ("pixi", "conda"):
        raise InvalidInput(
            f"{tool} manages Python environments; --kernel {kernel} needs a pixi or conda project"
        )
