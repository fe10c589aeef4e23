"""``notebook NB.ipynb|DIR...``: which kernel each notebook needs, whether this machine has it
(and whether it works), and if not which local specs match it, best first, with why.

``--fix [NAME]`` writes an alias spec under the missing name that starts the chosen spec (a
copy of it, so the notebook file is untouched and papermill or nbconvert run it as it is);
with ``--rewrite`` the notebook's ``metadata.kernelspec`` names the chosen spec instead.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kernelmagic.domain import clients
from kernelmagic.domain.checks import PROBLEM
from kernelmagic.domain.jupyter_rules import is_valid_kernel_name
from kernelmagic.domain.policy import DEFAULT_POLICY, EnvPolicy
from kernelmagic.domain.provenance import Provenance
from kernelmagic.errors import InvalidInput, KernelmagicError
from kernelmagic.operations import doctor, edit, remote_batch
from kernelmagic.storage import discovery, notebook_files

_WORD = re.compile(r"[a-z0-9][a-z0-9.]*")
# Words in the names of kernels of every environment (nb_conda_kernels' conda-env-NAME-py,
# "Python 3 (ipykernel)"): sharing one says nothing about which environment is meant.
_EVERY_KERNELS_WORDS = frozenset({
    "conda", "env", "envs", "py", "python", "python3", "ipykernel", "kernel", "r", "ir",
    "julia", "3",
})  # fmt: skip


@dataclass
class Match:
    """A local spec that can run the notebook, and why it was chosen."""

    name: str
    why: str
    score: tuple[bool, bool, float, str] | tuple[()] = field(repr=False, default=())


@dataclass
class NotebookReport:
    """One notebook: the kernel it names (``wanted``), its state (found, case differs,
    broken, missing, not read, unreadable, no kernel named), why, what each client runs it
    with, the matching specs, and what --fix did."""

    path: str
    wanted: dict[str, str] = field(default_factory=dict)
    state: str = "found"
    reason: str = ""
    matches: list[Match] = field(default_factory=list)
    clients: list[clients.Verdict] = field(default_factory=list)
    fixed: str = ""  # what --fix did (or would do), said in a sentence
    dry_run: bool = False  # ``fixed`` says what --fix would do
    # What fixes it, as the words after `notebook PATH` ("--fix geo --rewrite"); "" if none.
    fix_words: str = ""

    @property
    def works(self) -> bool:
        return self.state == "found" or bool(self.fixed)

    @property
    def now(self) -> str:
        """The state after --fix: what was found, unless --fix changed it."""
        if not self.fixed:
            return self.state
        return "would fix" if self.dry_run else "fixed"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kernelspec": self.wanted,
            "state": self.state,
            "reason": self.reason,
            "matches": [{"name": m.name, "why": m.why} for m in self.matches],
            "fixed": self.fixed,
            "clients": {v.client: v.to_json() for v in self.clients},
        }


class NotebookReports(list[NotebookReport]):
    """The reports of a ``notebook`` command (``NotebookReport`` items)."""

    @property
    def healthy(self) -> bool:
        return all(report.works for report in self)


def _words(*texts: str | None) -> set[str]:
    return {w for text in texts if text for w in _WORD.findall(text.lower())}


def _source_words(spec: dict[str, Any]) -> tuple[set[str], str]:
    """The words of what a spec was made from (its conda env, modules, project), and how
    to say it."""
    record = Provenance.of_spec(spec)
    if record is None:
        return set(), ""
    source = record.source
    for what, value in (
        ("conda env", source.conda_env),
        ("modules", source.modules),
        ("project", (record.project or {}).get("name")),
    ):
        if value:
            return _words(os.path.basename(str(value)), str(value)), f"{what} {value}"
    return set(), ""


def rank(wanted: dict[str, str], specs: Iterable[discovery.SpecInfo]) -> list[Match]:
    """The specs that could run a notebook that wants ``wanted``, best first: same language
    (required when the notebook names one), then the same display name, then a word of
    the missing name in what they were made from (a conda env, modules, a project) or in
    their own name, then similar names."""
    language = wanted.get("language", "").lower()
    wanted_words = _words(wanted.get("name"), wanted.get("display_name")) - _EVERY_KERNELS_WORDS
    wanted_name_words = _words(wanted.get("name")) - _EVERY_KERNELS_WORDS
    found = []
    for info in specs:
        if not info.visible or (language and info.language.lower() != language):
            continue
        if _cannot_start(info):
            continue  # a spec that cannot start is no match (--fix SPEC --force to insist)
        reasons = [f"same language ({info.language})"] if language else []
        same_display = bool(wanted.get("display_name")) and (
            info.display_name == wanted.get("display_name")
        )
        if same_display:
            reasons.append("same display name")
        source_words, source = _source_words(info.spec)
        shared = sorted(source_words & wanted_words)
        if shared:
            reasons.append(f"made from {source}, which {_sharing(shared)}")
        named = sorted(_words(info.name) & wanted_name_words - set(shared))
        if named:
            reasons.append(f"its name {_sharing(named)}")
            shared += named
        similar = (
            difflib.SequenceMatcher(None, wanted.get("name", ""), info.name).ratio()
            + difflib.SequenceMatcher(
                None, wanted.get("display_name", ""), info.display_name
            ).ratio()
        )
        score = (same_display, bool(shared), round(similar, 3), info.name)
        found.append(Match(info.name, "; ".join(reasons) or "a kernel here", score))
    return sorted(found, key=lambda m: m.score, reverse=True)


def _sharing(words: list[str]) -> str:
    quoted = ", ".join(f"'{w}'" for w in words)
    return f"shares {quoted} with the notebook's kernel"


def _cannot_start(info: discovery.SpecInfo) -> bool:
    """A problem of the listing keeps it from starting, or (a batch spec) the scheduler's
    side does: its partition, its allocation (asked of the scheduler, as the doctor asks)."""
    if any(p.kind in clients.CANNOT_START for p in info.problems):
        return True
    found = remote_batch.spec_batch_problems(info.spec)
    return any(kind in clients.SCHEDULER_CANNOT_START for kind, _, _ in found)


def _startable_by_name(info: discovery.SpecInfo) -> bool:
    """Listed by Jupyter, or left out only by allowed_kernelspecs (which filters listings,
    not ``get_kernel_spec``)."""
    return info.visible or {p.kind for p in info.problems} == {"not-allowed"}


def _listed(specs: Iterable[discovery.SpecInfo]) -> list[clients.Listed]:
    listings = clients.client_listings()
    return [
        clients.Listed(
            info.name,
            info.language,
            info.display_name,
            not _cannot_start(info),
            frozenset(client for client, found in listings.items() if found.leaves_out(info.name)),
        )
        for info in specs
        if _startable_by_name(info)
    ]


def _per_client(found: list[clients.Verdict]) -> str:
    return "; ".join(f"{clients.CLIENTS[v.client]}: {v.reason}" for v in found)


def _clear_best(matches: list[Match]) -> Match | None:
    """The best match when it is better than the next on more than name similarity."""
    if not matches:
        return None
    if len(matches) == 1 or matches[0].score[:2] > matches[1].score[:2]:
        return matches[0]
    return None


def examine(
    path: str,
    specs: list[discovery.SpecInfo],
    judged: dict[str, str | None] | None = None,
) -> NotebookReport:
    """What ``path`` needs and how it fares here. ``judged``, shared by the notebooks of one
    run, remembers what the doctor found keeps each spec from starting (None: nothing)."""
    judged = {} if judged is None else judged
    report = NotebookReport(path)
    try:
        _, metadata = notebook_files.read(path)
    except InvalidInput as exc:
        report.state, report.reason = "unreadable", str(exc)
        return report
    report.wanted = notebook_files.kernelspec_of(metadata)
    name = report.wanted.get("name", "")
    info_of = metadata.get("language_info")
    language_info = info_of.get("name") if isinstance(info_of, dict) else None
    report.clients = clients.notebook_verdicts(
        report.wanted, language_info if isinstance(language_info, str) else "", _listed(specs)
    )
    by_name = {info.name: info for info in specs}
    info = by_name.get(clients.started_name(name)) if name else None
    if info is not None and not info.read:
        report.state, report.reason = "not read", str(info.problems[0])
        return report
    if info is not None and _startable_by_name(info):
        diagnosis = doctor.diagnose([info.name]).diagnoses[0]
        problems = [p for p in diagnosis.problems if p.severity == PROBLEM]
        blocking = [p for p in problems if p.kind in clients.CANNOT_START]
        if blocking:
            report.state, report.reason = "broken", str(blocking[0])
        elif name in clients.RENAMED:
            report.reason = (
                f"jupyter_client starts {info.name!r} for the name {name!r}: "
                f"{_per_client(report.clients)}"
            )
        elif name != info.name:
            report.state = "case differs"
            report.reason = (
                f"the notebook names {name!r}, the spec is {info.name!r}: "
                f"{_per_client(report.clients)}"
            )
            report.fix_words = f"--fix {info.name} --rewrite"
        elif problems:
            report.reason = f"starts, but: {problems[0]}"
        return report
    report.state = "missing" if name else "no kernel named"
    report.reason = (
        f"no kernel spec '{name}' here" if name else "the notebook names no kernel"
    ) + (f" ({info.problems[0]})" if info is not None and info.problems else "")
    # The listing's problems ruled some out; the doctor's probes (an R without IRkernel)
    # rule out more: every match offered, and --fix's, is one that starts.
    report.matches = _startable(rank(report.wanted, specs), by_name, judged)
    if report.matches:  # named, so that the command says what it will use
        best = f"--fix {report.matches[0].name}"
        report.fix_words = best if _alias_can_fix(name) else f"{best} --rewrite"
    return report


def _alias_can_fix(name: str) -> bool:
    """Whether a spec can be made under the name the notebook wants (it names a valid one)."""
    return bool(name) and is_valid_kernel_name(name.lower())


def _startable(
    matches: list[Match], by_name: dict[str, discovery.SpecInfo], judged: dict[str, str | None]
) -> list[Match]:
    """The ``matches`` that start, as the doctor finds them (one run for those not yet in
    ``judged``: its probes in parallel, one per interpreter)."""
    unjudged = [m.name for m in matches if m.name not in judged]
    if unjudged:
        diagnoses = doctor.diagnose(unjudged).diagnoses
        for name, diagnosis in zip(unjudged, diagnoses, strict=True):
            judged[name] = _blocking(diagnosis, by_name[name])
    return [m for m in matches if judged[m.name] is None]


def _why_it_cannot_start(chosen: discovery.SpecInfo) -> str | None:
    """What keeps ``chosen`` from starting, as the doctor finds it (None: nothing)."""
    return _blocking(doctor.diagnose([chosen.name]).diagnoses[0], chosen)


def _blocking(diagnosis: doctor.Diagnosis, chosen: discovery.SpecInfo) -> str | None:
    blocking = [str(p) for p in diagnosis.problems if p.kind in clients.CANNOT_START]
    if not chosen.visible:
        blocking += [str(p) for p in chosen.problems] or ["Jupyter does not list it"]
    return blocking[0] if blocking else None


def _refuse_if_it_cannot_start(chosen: discovery.SpecInfo) -> None:
    why = _why_it_cannot_start(chosen)
    if why is not None:
        raise KernelmagicError(
            f"{chosen.name} cannot start ({why}); choose another spec, or --force to use it"
        )


def fix(
    report: NotebookReport,
    choice: str,
    *,
    rewrite: bool,
    dry_run: bool,
    force: bool = False,
    policy: EnvPolicy = DEFAULT_POLICY,
    alone: bool = False,
) -> None:
    """Make a missing kernel work with ``choice`` (a spec name; "" for the clear best); a
    spec that cannot start only with ``force``. ``policy`` decides whether an alias holds a
    secret (then it is owner-only), as for a clone. ``alone``: the notebook was the one
    named, so ``choice`` with ``rewrite`` names the spec even where its kernel is found."""
    missing = report.wanted.get("name", "")
    if report.state in ("found", "case differs"):
        # It has its kernel: only naming a spec in this one notebook (--fix SPEC --rewrite)
        # changes anything (never each notebook of a dir), where it names another.
        if not (rewrite and choice and alone) or missing == discovery.get_spec(choice).name:
            return
    elif report.state not in ("missing", "broken", "no kernel named"):
        return
    if choice:
        chosen = discovery.get_spec(choice)
    else:
        best = _clear_best(report.matches)
        if best is None:
            options = ", ".join(m.name for m in report.matches[:3]) or "none"
            raise KernelmagicError(
                f"{report.path}: no single best match (candidates: {options}); choose one: "
                f"--fix SPEC{'' if rewrite or _alias_can_fix(missing) else ' --rewrite'}"
            )
        chosen = discovery.get_spec(best.name)
    language = report.wanted.get("language", "")
    if language and chosen.language.lower() != language.lower() and not force:
        raise KernelmagicError(  # an R notebook run by a Python kernel fails in every cell
            f"{report.path} is written in {language}, and {chosen.name} runs "
            f"{chosen.language or 'no named language'}; choose a spec for {language}, or "
            "--force to use it"
        )
    if not force:
        _refuse_if_it_cannot_start(chosen)
    report.dry_run = dry_run
    if not rewrite and not _alias_can_fix(missing):
        # No alias can carry this name, and the notebook changes only when asked.
        named = f"'{missing}', no valid spec name" if missing else "no kernel"
        report.reason = f"the notebook names {named}, so no alias can fix it"
        report.fix_words = f"--fix {chosen.name} --rewrite"
        return
    if rewrite:
        kernelspec = {
            "name": chosen.name,
            "display_name": chosen.display_name,
            "language": chosen.language,
        }
        try:
            if not dry_run:
                backup = notebook_files.rewrite_kernelspec(report.path, kernelspec)
                report.fixed = f"now names {chosen.name} (the old file is {backup})"
            else:
                text = notebook_files.read(report.path)[0]
                notebook_files.with_kernelspec(text, kernelspec, report.path)
                report.fixed = f"would name {chosen.name}"
        except InvalidInput as exc:  # the other notebooks of a dir are still fixed
            report.reason = f"not rewritten: {exc}"
        return
    change = edit.copy_spec(
        chosen.name, missing.lower(), edit.SpecEdit(), dry_run=dry_run, policy=policy
    )
    verb = "would start" if dry_run else "starts"
    report.fixed = f"'{change.name}' {verb} {chosen.name} (an alias in {change.resource_dir})"
