"""``notebook NB|DIR``: the kernel each notebook needs, whether it is here and works, else the
local specs that match it best first; ``--fix`` makes it work."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from typing import ClassVar

from kernelmagic.commands.render import Shown, command, table
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.errors import InvalidInput, KernelmagicError
from kernelmagic.operations import notebooks, remote_batch
from kernelmagic.operations.notebooks import NotebookReports
from kernelmagic.options import DRY_RUN, SPEC_NAME, Option, option, path
from kernelmagic.settings import Settings
from kernelmagic.storage import discovery, notebook_files

SUMMARY = (
    "For each notebook (or each one in a dir): the kernel it names, whether this machine "
    "has it and whether it works, else the local specs that match, best first; --fix "
    "makes it work."
)
COLUMNS = ("notebook", "kernel", "state", "details")

PATHS = option("paths", nargs="+", metavar="NB", type=path, help="notebooks, or dirs of them")
FIX = option(
    "--fix",
    nargs="?",
    const="",
    metavar="SPEC",
    completes=SPEC_NAME,
    help="make a missing kernel work: an alias spec under the notebook's kernel name that "
    "starts SPEC (default: the best match, when there is one clear match)",
)
REWRITE = option(
    "--rewrite",
    action="store_true",
    help="with --fix: change the notebook's metadata.kernelspec to the chosen spec instead "
    "(atomic, the old file kept as NB.ipynb.bak, nothing else in it changed)",
)
FORCE = option(
    "--force",
    action="store_true",
    help="with --fix: use the chosen spec even though the doctor says it cannot start",
)


@dataclass(frozen=True)
class Request:
    """``notebook``: the kernel each notebook needs, and the local specs that match it."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (PATHS, FIX, REWRITE, DRY_RUN, FORCE)

    paths: tuple[str, ...]
    fix: str | None = None  # "" for the best match
    rewrite: bool = False
    dry_run: bool = False
    force: bool = False  # with fix: a target the doctor says cannot start
    policy: EnvPolicy = DEFAULT_POLICY  # which values make an alias owner-only

    def __post_init__(self) -> None:
        if self.rewrite and self.fix is None:
            raise InvalidInput("--rewrite goes with --fix")
        if self.force and self.fix is None:
            raise InvalidInput("--force goes with --fix")

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> Request:
        return cls(tuple(ns.paths), ns.fix, ns.rewrite, ns.dry_run, ns.force, settings.policy)


def run(request: Request) -> NotebookReports:
    remote_batch.ask_the_cluster_again()  # the cluster as it is now, asked once this run
    specs = discovery.list_specs()
    reports = notebooks.NotebookReports()
    found = list(notebook_files.notebooks_in(request.paths))
    if request.fix:  # a name that is no spec is the command's mistake, not a notebook's
        discovery.get_spec(request.fix)
    judged: dict[str, str | None] = {}  # spec name: what keeps it from starting
    for notebook in found:
        report = notebooks.examine(notebook, specs, judged)
        if request.fix is not None:
            try:
                notebooks.fix(
                    report,
                    request.fix,
                    rewrite=request.rewrite,
                    dry_run=request.dry_run,
                    force=request.force,
                    policy=request.policy,
                    alone=len(found) == 1,
                )
            except KernelmagicError as exc:
                if len(found) == 1:
                    raise
                # The others are fixed (or were before this one): the table says which.
                why = str(exc).removeprefix(f"{report.path}: ")
                report.reason = f"not fixed: {why}"
            specs = discovery.list_specs() if report.fixed and not request.dry_run else specs
        reports.append(report)
    if not reports:
        raise InvalidInput(f"no notebooks in {', '.join(request.paths)}")
    return reports


def show(result: NotebookReports, style: str) -> Shown:
    text, html = table(_notebook_rows(result, style), COLUMNS)
    return Shown(text, html, 0 if result.healthy else 1, value=result)


def _notebook_rows(reports: NotebookReports, style: str) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for report in reports:
        details = report.fixed or report.reason
        if report.matches and not report.fixed:
            best = "; ".join(f"{m.name} ({m.why})" for m in report.matches[:3])
            details += f"; matches, best first: {best}"
        if report.fix_words and not report.fixed:
            fix = command(f"notebook {shlex.quote(report.path)} {report.fix_words}", style)
            details += f"; fix: {fix}"
        rows.append((report.path, report.wanted.get("name", ""), report.now, details))
    return rows
