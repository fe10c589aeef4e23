"""What is wrong with a kernel spec, said so that the user knows what to do.

Checks here are cheap (no process is started), so listing can run them on every spec.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import string
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar, cast

from kernelmagic.domain.jupyter_rules import ProvisionerVerdict, judge_provisioner, spec_schema
from kernelmagic.reading import can_name_a_file, json_kind, read_regular_head

PROVISIONER_GROUP = "jupyter_client.kernel_provisioners"
# kernelmagic's own provisioners that start kernels as batch jobs -> their scheduler (engine)
BATCH_PROVISIONERS = {"kernelmagic-slurm-provisioner": "slurm"}


@dataclass(frozen=True)
class Problem:
    """What is wrong with a spec and what to do about it.

    ``kind`` names the check (the doctor acts on kinds: ``--fix`` removes only
    ``missing-program`` specs), ``value`` is the offending value (a path, a variable name)
    when there is one, and ``fix`` the command that mends it without the tool's name
    (``env -k geo -u GDAL_DATA``): each front end spells it its own way. ``str()`` is the
    message as the command line says it.
    """

    kind: str
    message: str
    value: str | None = None
    fix: str | None = None
    severity: str = "problem"  # PROBLEM, or NOTE: worth knowing, nothing is broken

    def __str__(self) -> str:
        return self.message + (f"; fix: kernelmagic {self.fix}" if self.fix else "")

    def to_json(self) -> dict[str, str | None]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "message": str(self),
            "value": self.value,
            "fix": self.fix,
        }


PROBLEM, NOTE = "problem", "note"


_INTERRUPT_MODES = ("message", "signal")
_ONLY_STR = frozenset({str})


@cache
def installed_provisioners() -> frozenset[str]:
    """Names registered under jupyter_client's provisioner entry-point group."""
    from importlib.metadata import entry_points  # 20 ms: only when a spec names a provisioner

    return frozenset(ep.name for ep in entry_points(group=PROVISIONER_GROUP))


def structure_problems(spec: Any) -> list[Problem]:
    """Problems that make jupyter_client refuse to load the spec (so Jupyter hides it):
    what ``KernelSpec(**kernel_json)`` of the installed jupyter_client rejects."""
    if not isinstance(spec, dict):
        return [Problem("structure", f"kernel.json holds {json_kind(spec)}, not an object")]
    problems = []
    argv = spec.get("argv", [])
    if type(argv) is not list and not isinstance(argv, str):
        problems.append(Problem("structure", "'argv' must be a list of strings"))
    for key in spec_schema().string_fields:
        if key in spec and not isinstance(spec[key], str):
            problems.append(Problem("structure", f"'{key}' must be a string"))
    for key in ("env", "metadata"):
        if key in spec and not isinstance(spec[key], dict):
            problems.append(Problem("structure", f"'{key}' must be a JSON object"))
    mode = spec.get("interrupt_mode", "signal")
    if not isinstance(mode, str) or mode.lower() not in _INTERRUPT_MODES:
        problems.append(
            Problem("structure", f"'interrupt_mode' must be 'signal' or 'message', not {mode!r}")
        )
    if "resource_dir" in spec:
        problems.append(Problem("structure", "'resource_dir' must not be a key of kernel.json"))
    return problems


def unstartable(spec: dict[str, Any]) -> list[str]:
    """What keeps every kernel of ``spec`` from starting on any machine, said for a writer
    that refuses to make such a spec: an argv that is no list of strings, or empty; env
    values that are not strings, or names and values no process can be given."""
    found = [] if argv_strings(spec) else ["its argv is not a non-empty list of strings"]
    env = spec.get("env")
    if not isinstance(env, dict) or not env:
        return found
    found += [f"env {k!r} is set to {json_kind(v)}" for k, v in env.items() if type(v) is not str]
    found += [
        f"env {_quoted(k)}: a name with '=' or NUL, or a value with NUL or a lone surrogate, "
        "cannot be given to a process"
        for k in unusable_env(env)
    ]
    return found


def provisioner_name(spec: dict[str, Any]) -> str | None:
    metadata = spec.get("metadata")
    if not isinstance(metadata, dict):
        return None
    stanza = metadata.get("kernel_provisioner")
    if not isinstance(stanza, dict):
        return None
    name = stanza.get("provisioner_name")
    return name if isinstance(name, str) else None


def provisioner_verdict(spec: dict[str, Any]) -> ProvisionerVerdict:
    metadata = spec.get("metadata", {})
    if "kernel_provisioner" not in metadata:
        return ProvisionerVerdict(None, None, False)  # the common case: no entry points read
    return judge_provisioner(metadata, installed_provisioners())


def provisioner_start_problems(spec: dict[str, Any]) -> list[Problem]:
    """An installed provisioner that still cannot start the kernel (walk W: the doctor said
    such specs work): its ``config`` is no object (jupyter_client passes it as keyword
    arguments: TypeError), or its entry point cannot be loaded (an import error)."""
    verdict = provisioner_verdict(spec)
    if verdict.hidden_because is not None or verdict.name is None:
        return []
    config = spec["metadata"]["kernel_provisioner"].get("config", {})
    if not isinstance(config, dict):
        why = (
            f"metadata.kernel_provisioner.config is {json_kind(config)}, not an object: "
            "jupyter_client gives it to the provisioner as keyword arguments (TypeError), so "
            "the kernel cannot start"
        )
        return [Problem("cannot-start", why, verdict.name)]
    failure = _provisioner_load_failure(verdict.name)
    if failure is None:
        return []
    why = (
        f"provisioner '{verdict.name}' is installed but cannot be loaded ({failure}): the "
        "kernel cannot start; reinstall its package"
    )
    return [Problem("cannot-start", why, verdict.name)]


def _provisioner_load_failure(name: str) -> str | None:
    """Why the entry point ``name`` cannot be loaded, as jupyter_client loads it (None: it
    can). Its module is imported here, as the server imports it to start a kernel."""
    from importlib.metadata import entry_points  # only for a spec that names a provisioner

    for entry in entry_points(group=PROVISIONER_GROUP, name=name):
        try:
            entry.load()
        except Exception as exc:  # whatever the package's import raises
            return f"{type(exc).__name__}: {exc}"
    return None


def provisioner_problems(spec: dict[str, Any]) -> list[Problem]:
    """A provisioner stanza Jupyter cannot use (not installed, not an object) hides the spec."""
    verdict = provisioner_verdict(spec)
    if verdict.hidden_because is None:
        return []
    return [Problem("unknown-provisioner", verdict.hidden_because, verdict.name)]


def argv_strings(spec: dict[str, Any]) -> list[str] | None:
    """``argv`` when it is a list of strings (a command that can be run), else None."""
    argv = spec.get("argv", [])
    if type(argv) is list and set(map(type, argv)) <= _ONLY_STR:
        return argv
    return None


def launch_problems(
    spec: dict[str, Any],
    program_exists: Callable[[str], str] | None = None,
    name: str = "NAME",
    resource_dir: str = "",
) -> list[Problem]:
    """Problems that keep a listed spec (in ``resource_dir``) from starting."""
    program_exists = program_exists or program_state
    argv = argv_strings(spec)
    if argv is None:
        raw = spec.get("argv")
        why = (
            "'argv' is a string, not a list: Jupyter runs it as the name of one program"
            if isinstance(raw, str)
            else "'argv' holds values that are not strings: no program can be started"
        )
        return [Problem("bad-argv", f"{why}; write it as a list of strings")]
    problems = []
    if not argv:
        return [Problem("structure", "'argv' is empty: nothing to start")]
    unencodable = [] if "".join(argv).isascii() else [w for w in argv if not _encodable(w)]
    if unencodable:
        return [
            Problem(
                "bad-argv",
                f"argv holds {_quoted(unencodable[0])}, a character no process can be given "
                "(a lone surrogate): the kernel cannot start",
            )
        ]
    # A remote provisioner runs argv on another host and has its own launch protocol
    # ({response_address} instead of {connection_file}): neither check applies here.
    local = provisioner_name(spec) in (None, "local-provisioner")
    program = launch_program(argv[0], resource_dir, spec.get("env"))
    search = kernel_path(spec.get("env"))  # the spec's own PATH, if it gives one
    state = PROGRAM_OK
    if local and os.sep not in program and search is not None:
        state = PROGRAM_MISSING  # not on the PATH the spec gives its kernel (nor its own)
    elif local:
        state = program_exists(program)
    if state == PROGRAM_RELATIVE:
        problems.append(
            Problem(
                "relative-program",
                f"argv[0] {argv[0]} is a relative path: Jupyter starts it from the kernel's "
                "working directory (the notebook's), so it starts only beside notebooks in a "
                "directory that holds it; write its absolute path",
                argv[0],
            )
        )
    elif state == PROGRAM_MISSING:
        where = " on the PATH its env gives the kernel" if search else ""
        problems.append(
            Problem(
                "missing-program",
                f"program not found{where}: {argv[0]} (reinstall the environment, or remove "
                "the spec)",
                argv[0],
            )
        )
    elif state in (PROGRAM_NOT_EXECUTABLE, PROGRAM_NOT_A_FILE):
        problems.append(
            Problem(
                "not-executable",
                f"program {program} is {state}: starting it fails with PermissionError",
                program,
                fix=f"chmod +x {program}" if state == PROGRAM_NOT_EXECUTABLE else None,
            )
        )
    elif state != PROGRAM_OK:
        problems.append(
            Problem(
                "unreachable-program",
                f"program {argv[0]} cannot be reached from here ({state}); it may be on a "
                "filesystem that is not mounted or not readable now, so the spec is kept",
                argv[0],
            )
        )
    if local:
        problems += _detaching_problems(argv)
    if local and "{connection_file}" not in "\0".join(argv):
        problems.append(
            Problem(
                "no-connection-file",
                "argv has no {connection_file}: the kernel cannot learn its ports "
                "(add e.g. '-f {connection_file}')",
            )
        )
    env = spec.get("env")
    if not env:
        return problems  # most specs: nothing more to check
    if not set(map(type, env.values())) <= _ONLY_STR:
        bad = sorted(k for k, v in env.items() if not isinstance(v, str))
        problems.append(Problem("structure", f"env values must be strings: {', '.join(bad)}"))
    unusable = unusable_env(env)
    if unusable:
        problems.append(
            Problem(
                "bad-env",
                f"env {', '.join(map(_quoted, unusable))}: a name with '=' or NUL, or a value with "
                "NUL or a lone surrogate, cannot be passed to a process, so the kernel cannot "
                "start",
                unusable[0],
                fix=f"env -k {name} -u {unusable[0]}" if "=" not in unusable[0] else None,
            )
        )
    return problems


def exec_problems(spec: dict[str, Any]) -> list[Problem]:
    """What exec or ipykernel refuses in a listed spec's argv and env: too long for exec,
    the connection file given twice. The doctor's, not the listing's: every listing would
    pay for them, and specs like these are rare."""
    argv = argv_strings(spec)
    if not argv:
        return []
    env = spec.get("env")
    problems = _exec_limit_problems(argv, env if isinstance(env, dict) else {})
    if provisioner_name(spec) in (None, "local-provisioner"):
        problems += _connection_file_twice(argv)
    return problems


_CONNECTION_FILE_OPTION = re.compile(r"(-f|--f|--IPKernelApp\.connection_file)(=|\Z)")


def _connection_file_twice(argv: list[str]) -> list[Problem]:
    """ipykernel given its connection file twice (``-f {connection_file}`` added to an argv
    that had it): traitlets refuses ("connection_file only accepts one value")."""
    if "ipykernel_launcher" not in argv:
        return []
    after = argv[argv.index("ipykernel_launcher") + 1 :]
    if sum(1 for word in after if _CONNECTION_FILE_OPTION.match(word)) < 2:
        return []
    why = (
        "argv gives ipykernel its connection file twice (-f): it refuses to start "
        "('connection_file only accepts one value'); keep one -f {connection_file}"
    )
    return [Problem("bad-argv", why)]


_SETSID_WAITS = frozenset({"-w", "--wait"})


def setsid_waits(argv: list[str]) -> bool:
    """Whether ``setsid`` at argv[0] waits for the kernel (``-w``) rather than forking it off."""
    for word in argv[1:]:
        if not word.startswith("-"):
            return False
        if word in _SETSID_WAITS or (word[1:2] != "-" and "w" in word[1:]):
            return True
    return False


def _detaching_problems(argv: list[str]) -> list[Problem]:
    """A wrapper that forks the kernel off and exits: Jupyter sees its kernel die at once.

    jupyter_client starts every kernel as a session leader, so ``setsid`` (without ``-w``)
    cannot make one there: it forks, its parent (the process Jupyter watches) exits, and the
    kernel, seeing its parent gone, exits too; the server restarts it a few times, then drops it.
    """
    if os.path.basename(argv[0]) != "setsid" or setsid_waits(argv):
        return []
    return [
        Problem(
            "detaches",
            "setsid forks the kernel off and exits at once (Jupyter starts kernels as session "
            "leaders), so Jupyter sees the kernel die; remove setsid from argv",
            argv[0],
        )
    ]


def unusable_env(env: Any) -> list[str]:
    """The names of ``env`` entries no process can be given (``=``/NUL in a name, NUL in a
    value, an empty name, a character the system cannot encode)."""
    if not isinstance(env, dict):
        return []
    bad = [
        k
        for k, v in env.items()
        if not k or "=" in k or "\0" in k or (isinstance(v, str) and "\0" in v)
    ]
    strings = [*env, *(v for v in env.values() if isinstance(v, str))]
    if not "".join(strings).isascii():  # (nearly every env is: one look at all of it)
        bad += [
            k
            for k, v in env.items()
            if k not in bad and not (_encodable(k) and (not isinstance(v, str) or _encodable(v)))
        ]
    return sorted(bad) if bad else bad


def _quoted(name: str) -> str:
    return repr(name) if _encodable(name) else ascii(name)  # a lone surrogate cannot print


def _encodable(text: str) -> bool:
    """Whether ``text`` can be given to a process (a lone surrogate such as a JSON file's
    ``\\ud800`` cannot: Popen raises UnicodeEncodeError)."""
    if text.isascii():  # nearly every name and value: no encoding to try
        return True
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


# Linux's limits on what exec takes (execve's E2BIG: "Argument list too long"): one string
# (MAX_ARG_STRLEN, 32 pages) and everything together (about a quarter of the stack limit).
_MAX_STRING = 32 * os.sysconf("SC_PAGE_SIZE") if sys.platform.startswith("linux") else None
_MAX_TOTAL = os.sysconf("SC_ARG_MAX") if hasattr(os, "sysconf") else None
_POINTER = 8  # each string's pointer counts towards the total too


def _exec_limit_problems(argv: list[str], env: dict[str, Any]) -> list[Problem]:
    """What exec refuses as too long: the spec's argv, and its env as Jupyter passes it
    (``$$`` is one ``$`` then, walk W2) on top of this process's own variables, as the
    server's come on top of the spec's; each string counts with its NUL and its pointer."""

    def size(word: str) -> int:
        return len(os.fsencode(word)) + 1 if _encodable(word) else 0

    given = {
        k: string.Template(v).safe_substitute(os.environ)
        for k, v in env.items()
        if isinstance(v, str)
    }
    arguments = [size(word) for word in argv]
    variables = [size(f"{k}={v}") for k, v in given.items()]
    others = [size(f"{k}={v}") for k, v in os.environ.items() if k not in given]
    pointers = _POINTER * (len(arguments) + len(variables) + len(others))
    if _MAX_STRING is not None and max(arguments, default=0) > _MAX_STRING:
        kind, what = "bad-argv", f"argv holds a word over {_MAX_STRING} bytes"
    elif _MAX_STRING is not None and max(variables, default=0) > _MAX_STRING:
        kind, what = "bad-env", f"env holds a value over {_MAX_STRING} bytes"
    elif _MAX_TOTAL is not None and sum(arguments + variables + others) + pointers > _MAX_TOTAL:
        kind, what = "bad-env", f"argv and env hold over {_MAX_TOTAL} bytes"
    else:
        return []
    why = (
        f"{what}: exec refuses it (OSError: [Errno 7] Argument list too long), so the kernel "
        "cannot start; keep long values in a file"
    )
    return [Problem(kind, why)]


# jupyter_client starts these argv[0] with the interpreter that launches the kernel.
_BARE_PYTHONS = frozenset(
    {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
)


def launch_program(program: str, resource_dir: str = "", env: Any = None) -> str:
    """The program Jupyter really starts for ``argv[0]`` of a spec in ``resource_dir`` with
    ``env``: a path where one is found.

    ``KernelManager.format_kernel_cmd`` replaces a bare ``python``, ``python3`` or
    ``python3.X`` with ``sys.executable`` (checked from here, this process's interpreter, the
    best stand-in for the one that will launch the kernel), then ``{resource_dir}`` and
    ``{prefix}`` (``sys.prefix``); the launcher expands a leading ``~``; and Popen looks a
    bare name up on the PATH the kernel gets: the spec's own (its ``${PATH}`` filled in from
    this environment, as jupyter_client fills it), else this one. A bare name found nowhere
    is returned as it is.
    """
    if program in _BARE_PYTHONS:
        return sys.executable
    if "{" in program:  # (the checks of most specs' plain path cost a listing nothing)
        names = {"resource_dir": resource_dir, "prefix": sys.prefix}
        program = _PLACEHOLDER.sub(lambda m: names.get(m.group(1)) or m.group(), program)
    if program.startswith("~"):
        program = os.path.expanduser(program)
    if os.sep in program or (os.altsep and os.altsep in program):
        return program
    return shutil.which(program, path=kernel_path(env)) or program


_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]+)\}")  # format_kernel_cmd's


def kernel_path(env: Any) -> str | None:
    """The PATH a kernel with the spec's ``env`` gets (None: this process's own)."""
    value = env.get("PATH") if isinstance(env, dict) else None
    if not isinstance(value, str):
        return None
    return string.Template(value).safe_substitute(os.environ)


PROGRAM_OK = "ok"
PROGRAM_MISSING = "missing"
PROGRAM_RELATIVE = "relative"  # found from the kernel's working dir, which is not ours
PROGRAM_NOT_EXECUTABLE = "not executable"  # there, and certain to fail: not "unreachable"
PROGRAM_NOT_A_FILE = "not a file"


Answer = TypeVar("Answer")
# What the commands running now learnt of each program (``one_look_per_program``): None
# when none runs. Shared by the threads a command starts (its probes), so not thread-local.
_LOOKED_AT: dict[tuple[str, str], Any] | None = None
_RUNNING = 0  # commands inside one_look_per_program, in any thread
_LOOKING = threading.Lock()


@contextlib.contextmanager
def one_look_per_program() -> Iterator[None]:
    """Within it, each program is looked at once, its state and its first bytes, however
    many specs run it and checks ask (a doctor of 500 specs on 20 shared interpreters asked
    each one 78 times: a round trip each on NFS). Once the last command in it ends, every
    answer is asked again: in a long-running session programs come and go."""
    global _LOOKED_AT, _RUNNING
    with _LOOKING:
        _RUNNING += 1
        if _LOOKED_AT is None:
            _LOOKED_AT = {}
    try:
        yield
    finally:
        with _LOOKING:
            _RUNNING -= 1
            if _RUNNING == 0:
                _LOOKED_AT = None


def _remembered(kind: str, path: str, ask: Callable[[str], Answer]) -> Answer:
    looked = _LOOKED_AT
    if looked is None:
        return ask(path)
    if (kind, path) not in looked:  # threads may both ask: the same answer, kept once
        looked[kind, path] = ask(path)
    return cast(Answer, looked[kind, path])


def program_head(program: str) -> bytes | None:
    """The first 64 KiB of ``program`` (a script's ``#!`` line and body), None where it is
    no regular file that can be read (a FIFO planted as the program is not waited on)."""
    return _remembered("head", program, _read_head)


def _read_head(program: str) -> bytes | None:
    try:
        return read_regular_head(program, 65536)
    except OSError:
        return None


def program_state(program: str) -> str:
    """``_program_state``, asked once per program in ``one_look_per_program``."""
    return _remembered("state", program, _program_state)


def program_exists(path: str) -> bool:
    """``os.path.exists``, asked once per path in ``one_look_per_program``."""
    return _remembered("exists", path, os.path.exists)


def _program_state(program: str) -> str:
    """Whether ``program`` (absolute, relative or a bare name on PATH) can be executed:
    ``PROGRAM_OK``, ``PROGRAM_MISSING``, or a few words on why it cannot be reached.

    Missing means gone for sure: the program does not exist and the nearest directory above
    it that does exist can be read, so nothing is hidden from us. An unreadable directory, an
    expired Kerberos ticket on NFS or an automount that is not there now is "unreachable",
    never "missing": ``--fix`` and ``remove --missing`` delete only missing ones. A relative
    path with a separator is ``PROGRAM_RELATIVE``: the kernel's working directory (the
    notebook's) finds it, not ours.
    """
    program = launch_program(program)
    if not can_name_a_file(program):  # NUL, a lone surrogate: no file is so named
        return PROGRAM_MISSING
    if not (os.sep in program or (os.altsep and os.altsep in program)):
        return PROGRAM_OK if shutil.which(program) else PROGRAM_MISSING
    if not os.path.isabs(program):
        return PROGRAM_RELATIVE
    try:
        info = os.stat(program)
    except (FileNotFoundError, NotADirectoryError):
        return (
            PROGRAM_MISSING
            if _nearest_ancestor_readable(program)
            else "a directory above it is not readable"
        )
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if not stat.S_ISREG(info.st_mode):
        return PROGRAM_NOT_A_FILE
    return PROGRAM_OK if os.access(program, os.X_OK) else PROGRAM_NOT_EXECUTABLE


def _nearest_ancestor_readable(path: str) -> bool:
    parent = os.path.dirname(os.path.abspath(path))
    while True:
        try:
            os.stat(parent)
        except (FileNotFoundError, NotADirectoryError):
            if parent == os.path.dirname(parent):
                return True
            parent = os.path.dirname(parent)
            continue
        except OSError:
            return False
        return os.access(parent, os.R_OK | os.X_OK)
