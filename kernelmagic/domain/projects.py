"""Project environments: the environment a project's own tool made for it, found the way that
tool finds it (uv, Poetry, PDM, Hatch, pixi, conda's environment.yml, a bare .venv).

A project spec bakes that environment into a plain spec (no ``uv run`` or ``pixi run`` at
start) and records the project's dir, its tool and a digest of its lockfile, so that the
doctor can say when the lockfile or the interpreter changed since (``drift``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernelmagic.domain import pixi_files
from kernelmagic.domain.ownership import others_can_change_above, owned_by_others
from kernelmagic.domain.provenance import Source
from kernelmagic.domain.shells import failure_lines, made_by_uv
from kernelmagic.errors import EnvironmentNotReady, InvalidInput, KernelmagicError, SourceFailed
from kernelmagic.reading import MAX_INPUT_BYTES, read_regular_file

TOOL_TIMEOUT = 60.0  # `poetry env info -p` and friends
# What marks a project's dir, looked for from the given dir upwards.
_MARKERS = (
    "pixi.toml", "pyproject.toml", "environment.yml", "environment.yaml", "uv.lock",
    "poetry.lock", "pdm.lock", "hatch.toml", ".venv", "venv",
)  # fmt: skip
_LOCKFILES = {
    "uv": "uv.lock",
    "poetry": "poetry.lock",
    "pdm": "pdm.lock",
    "pixi": "pixi.lock",
    "hatch": "pyproject.toml",  # Hatch has no lockfile: its envs follow pyproject.toml
}
_TOOL_LOCKFILES = tuple(f for f in _LOCKFILES.values() if f.endswith(".lock"))  # Hatch's: none
# How to make the environment, and how to give it ipykernel, in each tool's own words.
_CREATE = {
    "uv": "uv sync",
    "poetry": "poetry install",
    "pdm": "pdm install",
    "hatch": "hatch env create",
    "pixi": "pixi install{env_option}",
    "conda": "conda env create -f {file}",
    "venv": "python3 -m venv .venv",
}
_ADD_IPYKERNEL = {
    "uv": "uv add --dev ipykernel",
    "poetry": "poetry add --group dev ipykernel",
    "pdm": "pdm add -dG dev ipykernel",
    "hatch": "add ipykernel to the env's dependencies in pyproject.toml",
    "pixi": "pixi add ipykernel",
    "conda": "conda install -n {env} ipykernel",
    "venv": "{venv}/bin/python -m pip install ipykernel",
}
# The command that finding a project's environment runs, per tool; uv's and a bare venv's
# is a directory (conda's is its activation, which apply shows as such).
_FINDING = {
    "poetry": ("poetry", "env", "info", "-p"),
    "pdm": ("pdm", "info", "--python"),
    "hatch": ("hatch", "env", "find"),
    "pixi": ("pixi", "shell-hook", "--json"),
}
_TABLE = re.compile(r"^\s*\[\s*tool\.(\w+)", re.M)
_NAME = re.compile(r'^\s*name\s*=\s*["\']([^"\']+)["\']', re.M)
_YAML_NAME = re.compile(r"^name\s*:\s*['\"]?([^'\"#\s]+)", re.M)


@dataclass(frozen=True)
class Project:
    """A project's dir, the tool that manages it, its name, its lockfile and its
    environment (a prefix; for conda's environment.yml the env's name)."""

    root: str
    tool: str  # uv | poetry | pdm | hatch | pixi | conda | venv
    name: str
    lockfile: str | None
    prefix: str | None
    conda_env: str | None = None
    activation: str | None = None  # pixi: the variables its activation sets, as a snippet
    environment: str | None = None  # pixi: the environment named (``-e ENV``)

    @property
    def interpreter(self) -> str | None:
        return os.path.join(self.prefix, "bin", "python") if self.prefix else None

    def in_root(self, command: str) -> str:
        return f"cd {shlex.quote(self.root)} && {command}"

    def create_command(self) -> str:
        file = os.path.basename(self.lockfile or "environment.yml")
        env_option = f" -e {shlex.quote(self.environment)}" if self.environment else ""
        return self.in_root(_CREATE[self.tool].format(file=file, env_option=env_option))

    def add_ipykernel_command(self) -> str:
        venv = os.path.basename(self.prefix) if self.prefix else ".venv"  # .venv or venv
        return self.in_root(_ADD_IPYKERNEL[self.tool].format(env=self.conda_env, venv=venv))

    def source(self, shell: str | None = None) -> Source:
        """The concrete source that makes the environment: its interpreter (a venv gets
        VIRTUAL_ENV and its bin on PATH), conda's activation, or pixi's variables."""
        if self.tool == "conda":
            return Source("conda", conda_env=self.conda_env, shell=shell)
        if self.activation is not None:
            return Source("snippet", snippet=self.activation, python=self.interpreter, shell=shell)
        return Source("python", python=self.interpreter, shell=shell)

    def record(self) -> dict[str, Any]:
        """What the spec records, for drift: the dir, tool, lockfile digest, interpreter."""
        found: dict[str, Any] = {"root": self.root, "tool": self.tool}
        if self.environment:
            found["environment"] = self.environment
        if self.lockfile:
            digest = lock_digest(self.lockfile, self.environment)
            found.update(lockfile=self.lockfile, lock_digest=digest)
        elif self.tool in _LOCKFILES:  # none yet (uv init, uv venv): its coming is drift
            found.update(
                lockfile=os.path.join(self.root, _LOCKFILES[self.tool]), lock_digest=NO_LOCK
            )
        if self.interpreter:
            found.update(python=self.interpreter, python_target=_target(self.interpreter))
        if self.prefix:
            found.update(prefix=self.prefix, prefix_id=_identity(self.prefix))
        return found


NO_LOCK = "none"  # the recorded digest of a lockfile that was not there (never a digest)


def lock_digest(path: str, environment: str | None = None) -> str | None:
    """A lockfile's digest, or with ``environment`` the digest of what it pins for that one
    (pixi.lock holds every environment's packages under ``environments: NAME:``: one changing
    leaves the others' digests alone). None where it is no regular file (never waited on) or
    too big."""
    try:
        data = read_regular_file(path, MAX_INPUT_BYTES)
    except OSError:
        return None
    if data is None:
        return None
    if environment:
        data = pixi_files.lock_section(data.decode("utf-8", "replace"), environment).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def _identity(path: str) -> str | None:
    """Which directory ``path`` is (device and inode): another venv put in its place, even
    one on the same base interpreter, is another directory."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return f"{found.st_dev}:{found.st_ino}"


def _target(path: str) -> str | None:
    """Where an interpreter (a venv's link) really is; None when it is not there."""
    real = os.path.realpath(path)
    return real if os.path.exists(real) else None


def deciding_paths(root: str) -> list[str]:
    """The files and dirs of the project at ``root`` that decide what runs for it: its
    project files, lockfiles and environments (``.venv``, ``.pixi``). In a shared tree
    another user may own one of them beside yours (a sticky dir lets anyone add a file)."""
    return [os.path.join(root, name) for name in (*_MARKERS, "pixi.lock", ".pixi")]


def is_project_dir(path: str) -> bool:
    """Whether a dir holds a project file (pyproject.toml, pixi.toml, environment.yml, a
    lockfile, a .venv)."""
    return any(os.path.exists(os.path.join(path, marker)) for marker in _MARKERS)


def tool_of(root: str) -> str | None:
    """The tool that manages the project at ``root``, from its files alone."""
    return _tool(root, _read(os.path.join(root, "pyproject.toml")))


def find_root(start: str) -> str:
    """``start`` or the nearest dir above it that holds a project file, by its real path:
    one project reached through a link (``~/work`` -> ``/gpfs/...``) is one project."""
    here = os.path.realpath(start)
    if not os.path.isdir(here):
        raise InvalidInput(f"--project {start}: no such directory")
    while True:
        if is_project_dir(here):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            raise InvalidInput(
                f"no project at {os.path.abspath(start)} or above it (no pyproject.toml, "
                "pixi.toml, environment.yml or .venv)"
            )
        here = parent


def _read(path: str) -> str:
    """A project file's text ("" where there is no regular, readable one: a FIFO others
    planted in a shared project is never waited on)."""
    try:
        return (read_regular_file(path, MAX_INPUT_BYTES) or b"").decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _tool_output(
    command: tuple[str, ...],
    root: str,
    environ: Mapping[str, str],
    what: str,
    silent_failure_is_none: bool = False,
) -> str:
    """What the project's tool prints (run in the project's dir, as its users run it); ""
    for a failure that says nothing, where ``silent_failure_is_none``."""
    # The request is right, the environment lacks the tool: a failure (exit 1), as "no conda
    # found" is
    missing = SourceFailed(f"{command[0]} is not on PATH; it manages the project at {root}")
    program = shutil.which(command[0], path=_absolute_path(environ))
    if program is None:
        raise missing
    try:
        done = subprocess.run(
            (program, *command[1:]), cwd=root, env=dict(environ), capture_output=True,
            stdin=subprocess.DEVNULL, timeout=TOOL_TIMEOUT, check=False,
        )  # fmt: skip
    except FileNotFoundError:  # gone since it was found
        raise missing from None
    except subprocess.TimeoutExpired:
        raise SourceFailed(
            f"{shlex.join(command)} did not answer within {TOOL_TIMEOUT:g} s"
        ) from None
    if done.returncode != 0:
        if silent_failure_is_none and not (done.stderr.strip() or done.stdout.strip()):
            return ""
        said = failure_lines(done.stderr.decode("utf-8", "replace"))
        raise InvalidInput(f"{shlex.join(command)} failed ({what})", details=said)
    return done.stdout.decode("utf-8", "replace").strip()


def _absolute_path(environ: Mapping[str, str]) -> str:
    """PATH without its empty and relative entries: the tool runs in the project's dir, and
    there they would name the project's own files (a ``pdm`` planted in a shared project)."""
    entries = environ.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(entry for entry in entries if os.path.isabs(entry))


def _pixi_activation(root: str, environ: Mapping[str, str], environment: str | None) -> str:
    """pixi's activation (its variables, activation scripts included) as export lines."""
    command = _FINDING["pixi"] + (("-e", environment) if environment else ())
    text = _tool_output(command, root, environ, "asked for the pixi environment's variables")
    try:
        variables = json.loads(text)["environment_variables"]
        assert isinstance(variables, dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise InvalidInput("pixi shell-hook --json did not print environment variables") from None
    lines = []
    for name, value in variables.items():
        if not (isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name))):
            continue
        lines.append(f"export {name}={_relative_to_own(name, value, environ.get(name))}\n")
    return "".join(lines)


def _relative_to_own(name: str, value: str, own: str | None) -> str:
    """A value as shell text: pixi adds to the PATH it was run with; where the value ends
    with that, the snippet adds to its own shell's instead (``"$PATH"``)."""
    suffix = f"{os.pathsep}{own}" if own else None
    if suffix and value.endswith(suffix) and value != suffix:
        return f'{shlex.quote(value[: -len(suffix)])}{os.pathsep}"${name}"'
    return shlex.quote(value)


def _tool(root: str, pyproject: str) -> str | None:
    tables = set(_TABLE.findall(pyproject))
    for tool, marker in (("pixi", "pixi.toml"), ("uv", "uv.lock"), ("poetry", "poetry.lock"),
                         ("pdm", "pdm.lock"), ("hatch", "hatch.toml")):  # fmt: skip
        if os.path.exists(os.path.join(root, marker)) or tool in tables:
            return tool
    for name in ("environment.yml", "environment.yaml"):
        if os.path.exists(os.path.join(root, name)):
            return "conda"
    if any(os.path.isdir(os.path.join(root, d)) for d in (".venv", "venv")):
        # `uv init` writes no uv table and no lock until the first `uv add` or `uv lock`;
        # the .venv uv made says so in its pyvenv.cfg (and has no pip for a pip hint).
        return "uv" if pyproject and made_by_uv(os.path.join(root, ".venv")) else "venv"
    if pyproject:  # a plain pyproject.toml: uv's default layout
        return "uv"
    return None


def _root_and_tool(start: str) -> tuple[str, str, str]:
    """The project's dir, its pyproject.toml's text and its tool, from its files alone."""
    root = find_root(start)
    pyproject = _read(os.path.join(root, "pyproject.toml"))
    tool = _tool(root, pyproject)
    if tool is None:
        raise InvalidInput(f"cannot tell which tool manages {root}")
    return root, pyproject, tool


def finding_runs(start: str) -> tuple[str, str, str | None]:
    """The project's dir, its tool and the command that finding its environment runs
    (None: it reads a directory), from the project's files alone: for a review."""
    root, _, tool = _root_and_tool(start)
    command = _FINDING.get(tool)
    return root, tool, shlex.join(command) if command else None


def detect(start: str, environ: Mapping[str, str], environment: str | None = None) -> Project:
    """The project at ``start`` (or above), its tool and its environment (for pixi: the one
    named, else ``PIXI_ENVIRONMENT_NAME``'s), found as the tool finds it. Refuses
    (``EnvironmentNotReady``), with the tool's own command, when it does not exist yet."""
    project = locate(start, environ, environment)
    # The environment's dir, not its python: an R-only pixi environment has none.
    if project.tool != "conda" and not os.path.isdir(project.prefix or ""):
        where = f" {project.prefix}" if project.prefix else ""
        raise EnvironmentNotReady(
            f"the {project.tool} project's environment{where} does not exist yet; make it: "
            f"{project.create_command()}",
            project.create_command(),
        )
    if project.tool == "pixi":
        activation = _pixi_activation(project.root, environ, environment)
        return Project(**{**vars(project), "activation": activation})
    return project


def locate(start: str, environ: Mapping[str, str], environment: str | None = None) -> Project:
    """The project at ``start`` (or above) and where its tool keeps its environment, which
    may not exist yet; runs only what finding it takes (``poetry env info -p``, ...)."""
    root, _, tool = _root_and_tool(start)
    name = _name_in(root) or os.path.basename(root)
    lockfile = os.path.join(root, _LOCKFILES[tool]) if tool in _LOCKFILES else None
    if tool == "conda":
        spec_file = next(
            os.path.join(root, n) for n in ("environment.yml", "environment.yaml")
            if os.path.exists(os.path.join(root, n))
        )  # fmt: skip
        found = _YAML_NAME.findall(_read(spec_file))
        if not found:
            raise InvalidInput(f"{spec_file} names no environment (name: ...)")
        return Project(root, tool, found[0], spec_file, None, conda_env=found[0])
    if tool == "pixi" and environment is None:
        environment = environ.get("PIXI_ENVIRONMENT_NAME") or None
        chosen = None  # as before: pixi reads PIXI_ENVIRONMENT_NAME itself
    else:
        chosen = environment
    workspace = _uv_workspace(root) if tool == "uv" else None
    if workspace is not None:  # a member: the workspace's one environment and lockfile
        lockfile = os.path.join(workspace, _LOCKFILES["uv"])
    prefix = _prefix(tool, workspace or root, environ, environment or "default")
    if workspace is not None and prefix is not None:
        _refuse_others_workspace(root, workspace, prefix)
    # Another user's file or link among the project's own (a group's or a sticky dir lets
    # them add one): a `.venv` link to their venv, a pixi.toml, a lockfile would make an
    # install or refresh of your project run their environment as you (walk T2).
    why = owned_by_others((*deciding_paths(root), *([prefix] if prefix else [])))
    if why:
        raise KernelmagicError(
            f"{why}, in the project at {root}: kernelmagic runs no environment another user "
            "put in your project (one you have read: install NAME --python PATH)"
        )
    lockfile = lockfile if lockfile and os.path.exists(lockfile) else None
    return Project(root, tool, name, lockfile, prefix, environment=chosen)


_UV_WORKSPACE = re.compile(r"^\s*\[\s*tool\.uv\.workspace\s*\]\s*$(.*?)(?=^\s*\[|\Z)", re.M | re.S)
_GLOBS = re.compile(r"^\s*(members|exclude)\s*=\s*\[(.*?)\]", re.M | re.S)


def _uv_workspace(root: str) -> str | None:
    """The uv workspace ``root`` is a member of (the nearest dir above it whose
    pyproject.toml's ``[tool.uv.workspace]`` lists it), where uv keeps the members' one
    ``.venv`` and ``uv.lock``; None for a project of its own."""
    here = root
    while os.path.dirname(here) != here:
        here = os.path.dirname(here)
        table = _UV_WORKSPACE.search(_read(os.path.join(here, "pyproject.toml")))
        if table is None:
            continue
        globs = {key: re.findall(r"[\"']([^\"']+)[\"']", items)
                 for key, items in _GLOBS.findall(table.group(1))}  # fmt: skip
        relative = os.path.relpath(root, here)
        listed = any(fnmatch.fnmatchcase(relative, g) for g in globs.get("members", ()))
        excluded = any(fnmatch.fnmatchcase(relative, g) for g in globs.get("exclude", ()))
        return here if listed and not excluded else None
    return None


def _refuse_others_workspace(root: str, workspace: str, prefix: str) -> None:
    """A workspace found above the project, which the user did not name, is taken only
    where nobody else can change it (walk T: another user's pyproject.toml listing every
    dir of a shared tree, and a .venv beside it, made each scan, install and refresh of a
    member run that user's interpreter as you, and the spec run it at every start)."""
    why = others_can_change_above((*deciding_paths(workspace), prefix))
    if why:
        raise KernelmagicError(
            f"{root} is a member of the uv workspace at {workspace}, whose environment uv "
            f"uses, and {why}: kernelmagic runs no environment others can change (once you "
            f"have read it, install from it by name: --python {prefix}/bin/python)"
        )


def _prefix(tool: str, root: str, environ: Mapping[str, str], pixi_env: str) -> str | None:
    """Where the tool keeps the project's environment."""
    if tool == "uv":
        chosen = environ.get("UV_PROJECT_ENVIRONMENT") or ".venv"
        return os.path.join(root, os.path.expanduser(chosen))
    if tool == "venv":
        return next(
            (
                os.path.join(root, d)
                for d in (".venv", "venv")
                if os.path.isdir(os.path.join(root, d))
            ),
            None,
        )
    if tool == "pixi":
        return os.path.join(root, ".pixi", "envs", pixi_env)
    if tool == "poetry":
        # poetry fails without a word where the project has no env yet
        found = _tool_output(_FINDING["poetry"], root, environ, "asked where its env is", True)
        return found or None
    if tool == "pdm":
        python = _tool_output(_FINDING["pdm"], root, environ, "asked for its interpreter")
        return os.path.dirname(os.path.dirname(python)) if python else None
    return _tool_output(_FINDING["hatch"], root, environ, "asked where its env is") or None


def valid_name(name: str) -> str:
    """A project's name as a kernel spec's name: lowercase, [a-z0-9._-] only."""
    made = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.") or "project"
    return made


def drift(record: Mapping[str, Any]) -> list[str]:
    """What changed since a project spec was made: its lockfile, its interpreter."""
    reasons = []
    lockfile, digest = record.get("lockfile"), record.get("lock_digest")
    environment = record.get("environment") if isinstance(record.get("environment"), str) else None
    root = record.get("root")
    if record.get("tool") == "venv" and isinstance(root, str):  # a bare venv, tool-less then
        made = [
            os.path.join(root, f) for f in _TOOL_LOCKFILES if os.path.exists(os.path.join(root, f))
        ]
        if made:  # uv init + uv venv, then uv lock: uv manages the project now
            reasons.append(f"its lockfile {made[0]} was made since the spec was")
    if isinstance(lockfile, str) and digest == NO_LOCK:
        if os.path.exists(lockfile):
            reasons.append(f"its lockfile {lockfile} was made since the spec was")
    elif (
        isinstance(lockfile, str)
        and isinstance(digest, str)
        and lock_digest(lockfile, environment) != digest
    ):
        state = "changed" if os.path.exists(lockfile) else "is gone"
        reasons.append(f"its lockfile {lockfile} {state} since the spec was made")
    python, target = record.get("python"), record.get("python_target")
    if isinstance(python, str):
        now = _target(python)
        if now is None:
            reasons.append(f"its interpreter {python} is gone")
        elif isinstance(target, str) and now != target:
            reasons.append(f"its interpreter {python} now runs {now}, not {target}")
    prefix, identity = record.get("prefix"), record.get("prefix_id")
    replaced = isinstance(prefix, str) and os.path.isdir(prefix) and _identity(prefix) != identity
    if replaced and isinstance(identity, str):
        reasons.append(f"its environment {prefix} was replaced by another (or made again)")
    return reasons


def gone(record: Mapping[str, Any]) -> bool:
    """Whether the project a spec was made for is gone: its recorded dir is not there."""
    root = record.get("root")
    return isinstance(root, str) and os.path.isabs(root) and not os.path.isdir(root)


def drift_unknown(record: Mapping[str, Any]) -> str | None:
    """Why drift cannot be told for a project spec: its lockfile was too large to read."""
    lockfile = record.get("lockfile")
    if isinstance(lockfile, str) and "lock_digest" in record and record["lock_digest"] is None:
        return (
            f"its lockfile {lockfile} was larger than {MAX_INPUT_BYTES // 2**20} MiB, more "
            "than kernelmagic reads, when the spec was made: whether it changed is unknown"
        )
    return None


def ipykernel_missing(project: Project) -> EnvironmentNotReady:
    """The refusal for an environment without ipykernel, with the tool's command."""
    command = project.add_ipykernel_command()
    return EnvironmentNotReady(
        f"the {project.tool} project's environment has no ipykernel; add it: {command}", command
    )


def interpreter_broken(project: Project) -> EnvironmentNotReady:
    """The refusal for an environment whose interpreter is missing or does not run (a venv
    whose base Python was removed, an empty .venv), with the tool's command that makes it."""
    interpreter = project.interpreter or "its interpreter"
    state = "does not run" if os.path.lexists(interpreter) else "is missing"
    command = project.create_command()
    if project.tool == "venv":  # make the venv again where it is
        venv = os.path.basename(project.prefix or ".venv")
        command = project.in_root(f"python3 -m venv --clear {shlex.quote(venv)}")
    return EnvironmentNotReady(
        f"the {project.tool} project's environment is broken: {interpreter} {state}; "
        f"make it again: {command}",
        command,
    )


def name_of(start: str) -> str:
    """The project's name, as its files give it (no tool is run): pixi.toml's or
    pyproject.toml's ``name``, environment.yml's, else its dir's name."""
    root = find_root(start)
    return _name_in(root) or _conda_name(root) or os.path.basename(root)


def _name_in(root: str) -> str | None:
    for file in ("pixi.toml", "pyproject.toml"):
        names = _NAME.findall(_read(os.path.join(root, file)))
        if names:
            return str(names[0])
    return None


def _conda_name(root: str) -> str | None:
    for file in ("environment.yml", "environment.yaml"):
        names = _YAML_NAME.findall(_read(os.path.join(root, file)))
        if names:
            return str(names[0])
    return None
