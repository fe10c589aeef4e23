"""``doctor``: every problem of every spec (or the named ones) and what to do about it, whether
each client can use it; ``--fix`` removes the dead ones, ``--launch`` starts them for real."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import ClassVar

from kernelmagic.commands.render import (
    MAGICS,
    Shown,
    html_table,
    problem_text,
    removal_lines,
    text_table,
)
from kernelmagic.domain.checks import NOTE
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.errors import InvalidInput
from kernelmagic.operations import doctor, launching
from kernelmagic.operations.doctor import Report
from kernelmagic.operations.launching import FAILED, NOT_LAUNCHED, STARTED, LaunchReport
from kernelmagic.options import DRY_RUN, SPEC_NAME, TRUST, Option, option, seconds
from kernelmagic.settings import Settings
from kernelmagic.storage import history

SUMMARY = (
    "Check kernel specs (all, or the named ones) and say what to do about each problem: "
    "unreadable JSON, invalid names, missing programs, interpreters that cannot import "
    "their launcher, no {connection_file}, uninstalled provisioners, shadowed names, "
    "env paths that do not exist, templates naming unset variables."
)
COLUMNS = ("name", "check", "details")
LAUNCH_COLUMNS = ("name", "result", "seconds", "kernel", "details")

NAMES = option(
    "names", nargs="*", metavar="NAME", completes=SPEC_NAME, help="kernel spec names (default: all)"
)
FIX = option(
    "--fix",
    action="store_true",
    help="remove the specs whose program or project is gone; leave the rest",
)
LAUNCH = option(
    "--launch",
    action="store_true",
    help="start each spec for real through jupyter_client and wait for its kernel_info "
    "reply; a failure shows the lines of the kernel's stderr that say why",
)
NO_INTERRUPT = option(
    "--no-interrupt-check",
    action="store_true",
    help="with --launch: do not check that an interrupt stops a running cell",
)
LAUNCH_TIMEOUT = option(
    "--timeout",
    type=float,
    default=launching.DEFAULT_TIMEOUT,
    metavar="SECONDS",
    help="with --launch: how long to wait for each kernel (default: 60)",
)
JSON = option("--json", action="store_true", help="the report as JSON")


@dataclass(frozen=True)
class Request:
    """``doctor``: check every spec or the named ones; ``fix`` removes the dead ones,
    ``launch`` starts them for real instead."""

    OPTIONS: ClassVar[tuple[Option, ...]] = (
        NAMES, FIX, DRY_RUN, LAUNCH, LAUNCH_TIMEOUT, NO_INTERRUPT, TRUST, JSON,
    )  # fmt: skip

    names: tuple[str, ...] = ()
    fix: bool = False
    dry_run: bool = False  # with fix: say what it would remove
    launch: bool = False
    timeout: float = launching.DEFAULT_TIMEOUT  # each kernel's, with launch
    trust: bool = False  # run the named specs others can change
    json: bool = False
    interrupt: bool = True  # with launch: interrupt a running cell
    policy: EnvPolicy = DEFAULT_POLICY  # which values are secrets, never shown

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        seconds(self.timeout)
        if self.fix and self.launch:
            raise InvalidInput("--fix removes dead specs; run it without --launch")
        if self.dry_run and not self.fix:
            raise InvalidInput("--dry-run goes with --fix (the doctor changes nothing else)")
        launch_only = {"--timeout": self.timeout != launching.DEFAULT_TIMEOUT,
                       "--no-interrupt-check": not self.interrupt}  # fmt: skip
        for flag, given in launch_only.items():
            if given and not self.launch:
                raise InvalidInput(f"{flag} goes with --launch (the checks start no kernel)")
        if self.trust and not self.names:
            raise InvalidInput("--trust runs specs others can change: name the ones you have read")

    @classmethod
    def from_args(
        cls, ns: argparse.Namespace, settings: Settings, body: str | None = None
    ) -> Request:
        return cls(
            tuple(ns.names), ns.fix, ns.dry_run, ns.launch, ns.timeout, ns.trust, ns.json,
            not ns.no_interrupt_check, settings.policy,
        )  # fmt: skip


@dataclass
class Checked:
    """The doctor's report (of the checks, or of the launches), and whether to show JSON."""

    report: Report | LaunchReport
    json: bool = False


def run(request: Request) -> Checked:
    return Checked(_checked(request), request.json)


def _checked(request: Request) -> Report | LaunchReport:
    """The report of the static checks (after ``fix`` removed the dead specs), or of the
    kernels ``launch`` started."""
    if request.launch:
        return launching.launch_all(
            request.names, request.timeout, trust=request.trust, interrupt=request.interrupt
        )
    report = doctor.diagnose(request.names, trust=request.trust, policy=request.policy)
    return doctor.remove_dead(report, dry_run=request.dry_run) if request.fix else report


def show(checked: Checked, style: str) -> Shown:
    result = checked.report
    removed: list[str] = []
    gone: tuple[str, ...] = ()  # the spec dirs the magics forget (none on a dry run)
    if isinstance(result, Report) and result.removed:
        kept = [(path, history.removed_copy(path)) for path in result.removed]
        removed = removal_lines(kept, dry_run=result.dry_run)
        gone = () if result.dry_run else tuple(result.removed)
    status = 0 if result.healthy else 1
    if checked.json:
        return Shown(
            "",
            status=status,
            value=result.to_json(),
            plain=True,
            notes=tuple(removed),
            removed_dirs=gone,
        )
    if isinstance(result, LaunchReport):
        rows, text = _launch_rows(result, style), _launch_text(result, style)
        html = html_table(rows, LAUNCH_COLUMNS)
    else:
        text, html = (
            _report_text(result, style),
            html_table(_diagnosis_rows(result, style), COLUMNS),
        )
    if style == MAGICS:  # a magic returns the report, often into a variable: say them now
        return Shown(text, html, status, value=result, notes=tuple(removed), removed_dirs=gone)
    return Shown("\n".join([*removed, text]), html, status, value=result, removed_dirs=gone)


def _diagnosis_rows(report: Report, style: str) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for d in report.diagnoses:
        if all(p.severity == NOTE for p in d.problems):
            rows.append((d.name, "ok", ""))
        rows += [
            (d.name, p.kind if p.severity != NOTE else f"{p.kind} (note)", problem_text(p, style))
            for p in d.problems
        ]
    return rows


def _report_text(report: Report, style: str) -> str:
    sick = sum(1 for d in report.diagnoses if any(p.severity != NOTE for p in d.problems))
    table = text_table(_diagnosis_rows(report, style), COLUMNS)
    return f"{table}\n{len(report.diagnoses)} spec(s) checked, {sick} with problems."


def _launch_rows(report: LaunchReport, style: str) -> list[tuple[str, ...]]:
    return [
        (
            launch.name,
            launch.result,
            f"{launch.seconds:.2f}" if launch.seconds is not None else "",
            f"{launch.language} ({launch.implementation})" if launch.started else "",
            "; ".join(
                t
                for t in (launch.reason, launch.interrupt and "interrupt " + launch.interrupt)
                if t
            ),
        )
        for launch in report.launches
    ]


def _launch_text(report: LaunchReport, style: str) -> str:
    table = text_table(_launch_rows(report, style), LAUNCH_COLUMNS)
    counts = [f"{report.count(STARTED)} started", f"{report.count(FAILED)} failed"]
    if report.count(NOT_LAUNCHED):
        counts.append(f"{report.count(NOT_LAUNCHED)} not launched")
    return f"{table}\n{len(report.launches)} spec(s): {', '.join(counts)}."
