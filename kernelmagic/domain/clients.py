"""Will a spec work in each client? JupyterLab and the other Jupyter server clients, VS Code,
nbclient (papermill, nbconvert) and jupyter console each find and start kernels their own
way; and can a user interrupt it, and does it claim more than its kernel has.

Found without running anything; the doctor adds what its probes learnt of the interpreter
(its ipykernel's version, whether debugpy is there) as ``facts``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernelmagic.domain import checks, containers, jupyter_rules
from kernelmagic.domain.checks import NOTE, PROBLEM, Problem
from kernelmagic.domain.spec_info import SpecInfo

CLIENTS = {
    "jupyter-server": "the Jupyter server's REST start (JupyterHub, kernel gateways)",
    "jupyterlab": "JupyterLab, Notebook 7 (the front end)",
    "voila": "Voila",
    "vscode": "VS Code",
    "nbclient": "nbclient, papermill, nbconvert",
    "console": "jupyter console",
}
# VS Code starts a spec "via local Python ipykernel" when argv[0]'s name is exactly one of
# these and argv has -m ipykernel...: it then runs argv[1:] with the interpreter the Python
# extension knows for argv[0], replacing `-f {connection_file}` with its own arguments
# (vscode-jupyter src/kernels/helpers.node.ts, isKernelLaunchedViaLocalPythonIPyKernel and
# isLikelyAPythonExecutable; src/kernels/raw/launcher/kernelProcess.node.ts).
_VSCODE_PYTHONS = frozenset({"python", "python3", "python.exe", "python3.exe"})
# VS Code substitutes only ${NAME} (an unset one becomes ""), and `\$` is its escape; `$$`
# and `$NAME` reach the kernel as written (src/kernels/raw/launcher/kernelEnvVarsService.node.ts,
# substituteEnvVars). Jupyter substitutes $NAME and ${NAME} (unset: left as written), `$$`
# is its escape.
_BARE_REFERENCE = re.compile(r"(?<!\$)\$[A-Za-z_][A-Za-z0-9_]*")
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh"})
# Runners that start the kernel as a child and do not pass SIGINT on to it.
_NO_SIGNAL_RUNNERS = {"conda": "run", "mamba": "run", "micromamba": "run"}
_CONTAINER_RUNNERS = frozenset(
    {"apptainer", "singularity", "docker", "podman", "ch-run", "shifter", "enroot"}
)
# What keeps a batch spec's job from starting (``remote_batch.batch_problems``), in every
# client that honours provisioners; VS Code runs argv on its own host, outside any job.
SCHEDULER_CANNOT_START = frozenset(
    {"scheduler-missing", "scheduler-unreachable", "unknown-partition", "partition-down",
     "bad-time-limit", "too-many-cpus", "too-much-memory", "unknown-gres", "allocation-gone",
     "allocation-pending", "allocation-not-yours"}
)  # fmt: skip
# Problems that keep a listed spec from starting at all (the probes add some: launcher-import,
# cannot-start). "structure" on a listed spec: an empty argv, env values that are not
# strings (Popen's TypeError: the server answers 500, nbclient raises).
CANNOT_START = frozenset(
    {"missing-program", "bad-argv", "bad-env", "no-connection-file", "launcher-import",
     "cannot-start", "missing-runtime", "missing-image", "structure", "detaches",
     "relative-program", "not-executable", "missing-interpreter", *SCHEDULER_CANNOT_START}
)  # fmt: skip
# The first ipykernel that takes Curve keys and says so (7.3: "curve", 7.4: ["curve"]).
CURVE_SINCE = (7, 3)


@dataclass(frozen=True)
class Verdict:
    """Whether the spec works in one client family, why, and the fix when it does not."""

    client: str
    works: bool | None  # None: kernelmagic did not read enough to say
    reason: str
    fix: str | None = None
    spec: str | None = None  # for a notebook: the spec the client runs it with

    def to_json(self) -> dict[str, Any]:
        found = {"works": self.works, "reason": self.reason, "fix": self.fix}
        return {**found, "spec": self.spec} if self.spec is not None else found


def _provisioner(spec: Mapping[str, Any]) -> str | None:
    name = checks.provisioner_name(dict(spec))
    return None if name in (None, "local-provisioner") else name


def _made_from(spec: Mapping[str, Any]) -> str:
    record = (spec.get("metadata") or {}).get("kernelmagic") or {}
    made_from = record.get("from") if isinstance(record, dict) else None
    return made_from if isinstance(made_from, str) else "its source spec"


def _vscode(info: SpecInfo, argv: list[str], *, provisioners: bool = True) -> Verdict:
    provisioner = _provisioner(info.spec) if provisioners else None
    if provisioner in checks.BATCH_PROVISIONERS:
        return Verdict("vscode", False, f"VS Code ignores kernel provisioners: it would run "
                       f"the kernel here, outside any {checks.BATCH_PROVISIONERS[provisioner]} job",
                       "use JupyterLab or nbclient; for VS Code, take an allocation (salloc), "
                       "open VS Code on that node (Remote-SSH or a tunnel) and pick the spec "
                       f"this one was made from ({_made_from(info.spec)})")  # fmt: skip
    if provisioner:
        return Verdict("vscode", False, f"VS Code ignores kernel provisioners: it would run "
                       f"argv here instead of starting it through {provisioner}",
                       "use JupyterLab, or a spec that starts the kernel itself")  # fmt: skip
    if "{connection_file}" not in "\0".join(argv):
        return Verdict("vscode", False, "VS Code refuses an argv without {connection_file}")
    launched_via_python = (
        info.language.lower() == "python"
        and os.path.basename(argv[0]).lower() in _VSCODE_PYTHONS
        and any(argv[i] == "-m" and "ipykernel" in argv[i + 1] for i in range(len(argv) - 1))
    )
    if launched_via_python:
        if os.path.isabs(argv[0]) and not checks.program_exists(argv[0]):
            return Verdict("vscode", False, f"VS Code does not list it: its interpreter "
                           f"{argv[0]} is not there")  # fmt: skip
        at = argv.index("{connection_file}") if "{connection_file}" in argv else -1
        if at < 1 or argv[at - 1] != "-f":
            return Verdict("vscode", False, "VS Code starts a Python spec with its own "
                           "connection arguments in place of `-f {connection_file}`, which "
                           "this argv does not have", "write `-f {connection_file}`")  # fmt: skip
    env = {k: v for k, v in info.env.items() if isinstance(v, str)}
    escaped = sorted(k for k, v in env.items() if "$$" in v)
    if escaped:
        return Verdict("vscode", False, f"env {escaped[0]} holds `$$`, Jupyter's escape for `$`: "
                       "VS Code passes both dollars", "write the value without a `$` if you "
                       "can")  # fmt: skip
    bare = sorted(k for k, v in env.items() if _BARE_REFERENCE.search(v.replace("$$", "")))
    if bare:
        return Verdict("vscode", False, f"env {bare[0]} refers to a variable as $NAME: VS Code "
                       "substitutes only ${NAME}", f"write ${{NAME}} in {bare[0]}")  # fmt: skip
    runner = next((os.path.basename(w) for w in argv if os.path.basename(w) in
                   _CONTAINER_RUNNERS), None)  # fmt: skip
    if runner and not containers.is_generated(info.spec.get("argv")):
        return Verdict("vscode", False, f"it runs {runner}: VS Code writes the connection file "
                       "under $XDG_RUNTIME_DIR/jupyter/runtime, which containers do not bind",
                       "reinstall it with --container, which binds it")  # fmt: skip
    return Verdict("vscode", True, "listed and started from argv, env merged over VS Code's")


# jupyter_client's KernelManager starts "python3" when asked for the name "python" exactly
# (its kernel_name observer): every client that starts kernels through it does.
RENAMED = {"python": "python3"}


def client_listings() -> dict[str, jupyter_rules.DiscoveryConfig]:
    """The config of each client that picks a spec from a listing: the server's
    ``/api/kernelspecs`` (JupyterLab's launcher; Voila as a server extension) loads
    jupyter_config then jupyter_server_config, Voila's own app its voila config only."""
    return {
        "jupyterlab": jupyter_rules.discovery_config(jupyter_rules.SERVER_CONFIG),
        "voila": jupyter_rules.discovery_config(jupyter_rules.VOILA_CONFIG),
    }


def _as_listed_by_each(
    found: list[Verdict], name: str, listings: Mapping[str, jupyter_rules.DiscoveryConfig]
) -> list[Verdict]:
    """``allowed_kernelspecs`` filters listings only: what starts a kernel by its name
    (``get_kernel_spec``) still finds a spec it leaves out; what picks from a listing does
    not. Each client's own config files decide (``client_listings``)."""
    by_client = {v.client: v for v in found}
    server, voila = listings["jupyterlab"], listings["voila"]
    fallback = "a notebook naming it runs in another kernel of its language, if there is one"
    if server.leaves_out(name) and by_client["jupyterlab"].works:
        said = f"not in /api/kernelspecs (allowed_kernelspecs in {server.source})"
        by_client["jupyterlab"] = Verdict(
            "jupyterlab", False, f"{said}: the front end offers only listed kernels, and asks "
            f"which one for a notebook naming it (Voila as a server extension: {fallback})",
        )  # fmt: skip
        by_client["jupyter-server"] = Verdict(
            "jupyter-server", True, f"{said}, but POST /api/kernels starts it by its name"
        )
    if voila.leaves_out(name) and by_client["voila"].works:
        by_client["voila"] = Verdict(
            "voila", False, f"not listed (allowed_kernelspecs in {voila.source}): {fallback} "
            "(Voila's fallback)",
        )  # fmt: skip
    return list(by_client.values())


def started_name(name: str) -> str:
    """The spec a client asking jupyter_client for ``name`` starts (case ignored after)."""
    return RENAMED.get(name, name).lower()


def verdicts(
    info: SpecInfo,
    problems: list[Problem] | None = None,
    listings: Mapping[str, jupyter_rules.DiscoveryConfig] | None = None,
) -> list[Verdict]:
    """A verdict for each client family (``CLIENTS``), from every problem found (``problems``:
    the doctor's, probes included; by default the spec's own). ``listings``: the clients'
    config (``client_listings()``, read here by default)."""
    problems = info.problems if problems is None else problems
    if not info.read:
        why = f"unknown: {info.problems[0].message}" if info.problems else "unknown: not read"
        return [Verdict(client, None, why) for client in CLIENTS]
    if not info.visible and {p.kind for p in info.problems} == {"not-allowed"}:
        # Left out of `jupyter kernelspec list` by jupyter_config only: each client's own
        # config says whether it lists the spec (a server's can allow it again, Voila's
        # app does not read that file).
        kept = [p for p in problems if p.kind != "not-allowed"]
        info = dataclasses.replace(info, visible=True, problems=kept)
        problems = kept
    found = _verdicts(info, problems)
    if not info.visible:
        return found
    return _as_listed_by_each(found, info.name, client_listings() if listings is None else listings)


def _verdicts(info: SpecInfo, problems: list[Problem]) -> list[Verdict]:
    argv = checks.argv_strings(info.spec) or []
    if info.visible and not argv:  # listed (an argv that is a string), cannot start
        why = str(info.problems[0]) if info.problems else "it has no argv"
        fix = info.problems[0].fix if info.problems else None
        return [Verdict(c, False, f"listed, but it cannot start: {why}", fix) for c in CLIENTS]
    if not info.visible:
        why = str(info.problems[0]) if info.problems else "it has no argv"
        fix = info.problems[0].fix if info.problems else None
        found = {client: Verdict(client, False, f"not listed: {why}", fix) for client in CLIENTS}
        hiding = {p.kind for p in info.problems}
        if argv and hiding == {"unknown-provisioner"}:
            # VS Code has its own finder, which never looks at provisioners: it runs argv.
            found["vscode"] = _vscode_ignoring_provisioner(info, argv, problems)
        found["voila"] = Verdict(
            "voila", False, f"not listed: {why}; a notebook naming it runs in another kernel "
            "of its language, if there is one (Voila's fallback)", fix)  # fmt: skip
        return list(found.values())
    if info.name in RENAMED:
        why = (
            f"listed, but jupyter_client starts '{RENAMED[info.name]}' for the name "
            f"'{info.name}', so this spec never runs; copy it under another name "
            f"(kernelmagic clone {info.name} NEW) and remove it"
        )
        found = {client: Verdict(client, False, why) for client in CLIENTS}
        found["vscode"] = _vscode(info, argv)  # VS Code runs argv itself
        return list(found.values())
    blocking = [p for p in problems if p.kind in CANNOT_START]
    if blocking:
        why = f"listed, but it cannot start: {blocking[0]}"
        fix = blocking[0].fix
        found = {client: Verdict(client, False, why, fix) for client in CLIENTS}
        vscode = _vscode(info, argv)
        scheduler_only = all(p.kind in SCHEDULER_CANNOT_START for p in blocking)
        if vscode.reason.startswith("VS Code does not list it") or scheduler_only:
            found["vscode"] = vscode
        return list(found.values())
    listed = "listed by /api/kernelspecs"
    if info.spec.get("metadata", {}).get("debugger") is True:
        listed += "; its debugger is offered"
    provisioner = _provisioner(info.spec)
    if provisioner:
        listed += f"; started through the provisioner {provisioner}"
    by_name = f"found by its name ({info.name}) and started from argv"
    if provisioner:
        by_name = f"found by its name ({info.name}), started through {provisioner}"
    return [
        Verdict("jupyter-server", True, listed + "; POST /api/kernels starts it"),
        Verdict(
            "jupyterlab",
            True,
            listed + f"; a notebook whose metadata.kernelspec.name is "
            f"exactly {info.name!r} opens with it",
        ),
        Verdict(
            "voila",
            True,
            f"runs a notebook whose metadata.kernelspec.name is exactly {info.name!r} with it",
        ),
        _vscode(info, argv),
        Verdict(
            "nbclient",
            True,
            by_name + "; a notebook must name it in metadata.kernelspec (any case)",
        ),
        Verdict("console", True, by_name + f" (jupyter console --kernel {info.name})"),
    ]


def _vscode_ignoring_provisioner(
    info: SpecInfo, argv: list[str], problems: list[Problem]
) -> Verdict:
    provisioner = checks.provisioner_name(info.spec)
    said = f"VS Code ignores provisioners ({provisioner} is not installed here) and runs argv"
    blocking = [p for p in problems if p.kind in CANNOT_START]
    if blocking:
        return Verdict("vscode", False, f"{said}, which cannot start: {blocking[0]}",
                       blocking[0].fix)  # fmt: skip
    found = _vscode(info, argv, provisioners=False)
    if not found.works:
        return found
    return Verdict("vscode", True, f"{said}: {found.reason}")


def client_problems(found: list[Verdict]) -> list[Problem]:
    """The clients a listed spec does not work in, as notes (it works elsewhere)."""
    if not any(v.works for v in found):
        return []  # not listed at all, or not read: the spec's own problem says why
    return [
        Problem(f"client-{v.client}", f"{CLIENTS[v.client]}: {v.reason}", fix=None, severity=NOTE)
        for v in found
        if v.works is False
    ]


def _last_command(script: str) -> str:
    lines = [line.strip() for line in re.split(r"[;\n]|&&", script) if line.strip()]
    return lines[-1] if lines else ""


def _script_execs(path: str) -> bool | None:
    """Whether a wrapper script ends by exec'ing the kernel; None when it cannot be read."""
    head = checks.program_head(path)
    if head is None or not head.startswith(b"#!") or b"\0" in head:
        return None
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace")
    if not any(os.path.basename(word) in _SHELLS for word in first[2:].split()):
        return None
    return re.search(rb"^\s*exec\s", head, re.M) is not None


def shebang_problems(info: SpecInfo) -> list[Problem]:
    """A program at argv[0] that exec cannot run: a script whose ``#!`` interpreter does not
    exist or cannot be run (exec's ENOENT or EACCES, or ``env`` finding nothing on the
    kernel's PATH), or a file that is neither a script nor a binary (ENOEXEC)."""
    argv = checks.argv_strings(info.spec) or []
    if not argv or not info.visible or _provisioner(info.spec):
        return []
    env = info.spec.get("env")
    program = checks.launch_program(argv[0], info.resource_dir, env)
    if not os.path.isabs(program) or checks.program_state(program) != checks.PROGRAM_OK:
        return []  # said already, if at all
    head = checks.program_head(program)
    if head is None:
        return []
    refused = _exec_refuses(head)
    if refused:
        why = f"{program} {refused}: exec refuses it (OSError: [Errno 8] Exec format error)"
        return [Problem("not-executable", f"{why}, so the kernel cannot start", program)]
    if not head.startswith(b"#!"):
        return []
    # The kernel reads the line as exec does: up to the newline, the interpreter's name up
    # to a space or tab (a Windows line end leaves '\r' in it), the rest one argument.
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace")
    interpreter, _, argument = line.strip(" \t").replace("\t", " ").partition(" ")
    argument = argument.strip(" ")
    if os.path.basename(interpreter) == "env" and os.path.exists(interpreter):
        # `env -S` splits its argument; without it, the whole argument is one program name
        # (walk W2: "#!/usr/bin/env python3 -u" asks for a program "python3 -u").
        words = argument.split() if argument.startswith(("-S", "--split-string")) else [argument]
        named = [w for w in words if w and not w.startswith("-") and "=" not in w]
        if not named or shutil.which(named[0], path=checks.kernel_path(env)):
            return []
        why = f"#!{_shown(line)}, and {_shown(named[0])} is on no directory of the kernel's PATH"
        if " " in named[0]:
            why += " (without -S, env takes all after it as one program name)"
        return [_shebang_problem(program, why, line)]
    if os.path.isfile(interpreter) and os.access(interpreter, os.X_OK):
        nested = checks.program_head(interpreter)  # (a script as the interpreter is allowed)
        script = nested is None or nested.startswith(b"#!")
        refused = None if script else _exec_refuses(nested or b"")
        if refused is None:
            return []
        why = f"{program} starts with #!{interpreter}, which {refused}: the kernel cannot start"
        return [Problem("not-executable", why, program)]
    if os.path.exists(interpreter):  # exec's EACCES: PermissionError
        kind = "a directory" if os.path.isdir(interpreter) else "not executable"
        why = f"{program} starts with #!{interpreter}, which is {kind}: the kernel cannot start"
        return [Problem("not-executable", why, program)]
    return [_shebang_problem(program, f"#!{_shown(interpreter)}, which does not exist", line)]


def _exec_refuses(head: bytes) -> str | None:
    """Why exec refuses a file that starts with ``head`` (None: it may run it): no ``#!``
    line with an interpreter and no ELF binary of this machine's kind."""
    if head.startswith(b"#!"):
        line = head[2:].split(b"\n", 1)[0]
        return None if line.strip(b" \t\r") else "starts with a #! line naming no interpreter"
    if not head.startswith(b"\x7fELF"):
        return "is neither a script with a #! line nor a binary"
    machine = _elf_machine(head)
    if machine is None:
        return "is not a whole ELF binary"
    own = _own_machine()
    if own is not None and machine != own and machine not in _ALSO_RUNS.get(own, ()):
        return "is a binary for another kind of machine"
    return None


# Machines (ELF e_machine) whose binaries a machine also runs: x86-64 runs i386's, AArch64
# ARM's (where the kernel and libraries allow; the doctor does not say otherwise).
_ALSO_RUNS = {62: frozenset({3}), 183: frozenset({40})}


def _elf_machine(head: bytes) -> int | None:
    """The e_machine of an ELF header (None for a header too short or of no known kind)."""
    if len(head) < 20 or not head.startswith(b"\x7fELF") or {head[4], head[5]} - {1, 2}:
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


@functools.cache
def _own_machine() -> int | None:
    """The machine this interpreter's own binary is for: what exec here runs (None where
    that binary cannot be read)."""
    try:
        with open(os.path.realpath(sys.executable), "rb") as file:
            return _elf_machine(file.read(20))
    except OSError:
        return None


def _shown(text: str) -> str:
    """``text`` as it is, or quoted with escapes where it holds a control character."""
    return text if text.isprintable() else repr(text)


def _shebang_problem(program: str, missing: str, line: str) -> Problem:
    crlf = " (a Windows line end: the \\r is part of the name; save the file with \\n ends)"
    return Problem(
        "missing-interpreter",
        f"{program} starts with {missing}{crlf if line.endswith(chr(13)) else ''}: the kernel "
        "cannot start",
        program,
    )


def interrupt_problems(info: SpecInfo) -> list[Problem]:
    """Wrappers between Jupyter and the kernel, for an interrupt (interrupt_mode signal).

    jupyter_client signals the kernel's whole process group, so a shell that runs the
    kernel as its child passes an interrupt on (a note: a tool that signals only the process
    it started does not). A wrapper that puts the kernel in a session of its own (``setsid``,
    ``conda run``) loses it: the wrapper gets the signal, the kernel never does.
    """
    argv = checks.argv_strings(info.spec) or []
    mode = info.spec.get("interrupt_mode")
    irkernel = "IRkernel::main()" in argv  # it answers no interrupt_request (signals only)
    message = isinstance(mode, str) and mode.lower() == "message"
    if argv and message and irkernel:
        return [
            Problem(
                "interrupt-lost",
                "interrupt_mode is message, and IRkernel answers no interrupt_request: an "
                "interrupt is lost (the cell runs on); use signal mode",
                "message",
                fix=f"patch {shlex.quote(info.name)} --interrupt-mode signal",
            )
        ]
    if not argv or message or _provisioner(info.spec):
        return []
    program = os.path.basename(argv[0])
    # Message mode is the way round a wrapper, where the kernel answers it (IRkernel does not).
    fix = None if irkernel else f"patch {shlex.quote(info.name)} --interrupt-mode message"
    if program == "setsid":
        if not checks.setsid_waits(argv):
            return []  # it cannot start at all: its own problem (detaches) says so
        return [
            Problem(
                "interrupt-lost",
                "an interrupt ends setsid -w, not the kernel (setsid starts it apart from the "
                "process group Jupyter signals), and the kernel exits with its parent: the "
                "server restarts it and its state is lost; start the kernel without setsid"
                + ("" if irkernel else ", or set interrupt_mode to message"),
                argv[0],
                fix=fix,
            )
        ]
    if _NO_SIGNAL_RUNNERS.get(program) in argv[1:2]:
        runner = f"{program} run"
        return [
            Problem(
                "interrupt-lost",
                f"an interrupt stops {runner}, not the kernel: {runner} starts the kernel "
                "apart from the process group Jupyter signals; install the spec with "
                "--from-conda ENV instead (no wrapper at start), or set interrupt_mode to "
                "message",
                argv[0],
                fix=fix,
            )
        ]
    child = None
    if program in _SHELLS and "-c" in argv[1:3]:
        at = argv.index("-c") + 1
        if at < len(argv) and not _last_command(argv[at]).startswith("exec "):
            child = f"{program} -c"
    elif _script_execs(argv[0]) is False:
        child = f"the wrapper script {argv[0]}"
    if child is None:
        return []
    return [
        Problem(
            "wrapper-stays",
            f"{child} stays as the kernel's parent (no exec): Jupyter's interrupt reaches the "
            "kernel (it signals the process group), a tool that signals only the process it "
            "started does not; put exec before the kernel's command",
            argv[0],
            severity=NOTE,
        )
    ]


def claim_problems(info: SpecInfo, facts: Mapping[str, Any]) -> list[Problem]:
    """Fields that promise what the spec's kernel, as probed, does not have."""
    metadata = info.spec.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    found = []
    if metadata.get("debugger") is True and facts.get("debugpy") is False:
        said = (
            "metadata.debugger is true but the kernel's interpreter cannot import debugpy: "
            "JupyterLab offers a debugger that cannot start; install debugpy there"
        )
        found.append(Problem("claims-debugger", said, severity=PROBLEM))
    version = _version(facts.get("ipykernel"))
    encryption = metadata.get("supported_encryption")
    claims = encryption == "curve" or (isinstance(encryption, list) and "curve" in encryption)
    if claims and version and version < CURVE_SINCE:  # as jupyter_client reads the claim
        found.append(Problem("claims-encryption", "metadata.supported_encryption claims curve, "
                             f"but the kernel's ipykernel is {facts.get('ipykernel')} (curve "
                             "came in 7.3): a client that asks for it cannot connect",
                             severity=PROBLEM))  # fmt: skip
    return found


def _version(text: Any) -> tuple[int, ...] | None:
    if not isinstance(text, str):
        return None
    parts = re.findall(r"\d+", text)[:2]
    return tuple(int(p) for p in parts) if parts else None


@dataclass(frozen=True)
class Listed:
    """A spec as the clients see it when they pick one for a notebook."""

    name: str  # as Jupyter lists it (lowercased)
    language: str
    display_name: str
    starts: bool  # no problem keeps it from starting
    left_out_of: frozenset[str] = frozenset()  # the clients whose listing leaves it out


def notebook_verdicts(
    wanted: Mapping[str, str], language_info: str, listed: list[Listed]
) -> list[Verdict]:
    """Which spec each client runs a notebook with, given its ``metadata.kernelspec``
    (``wanted``) and ``metadata.language_info.name``.

    nbclient, papermill, nbconvert, console and the server's REST start look the name up
    lower-cased (jupyter_client's KernelSpecManager). JupyterLab takes a spec whose name is
    exactly the notebook's, else the one spec whose language equals language_info's name,
    else asks the user (``getDefaultKernel`` in @jupyterlab/apputils' sessioncontext).
    Voila takes the exact name, else the first spec of the notebook's language (case
    ignored) by display name, else fails (``fix_notebook`` in voila/notebook_renderer.py).
    """
    name = wanted.get("name", "")
    by_name = {spec.name: spec for spec in listed}  # what starts by a name
    # What JupyterLab and Voila each pick among: their listing, under their own config.
    offered = [spec for spec in listed if "jupyterlab" not in spec.left_out_of]
    for_voila = [spec for spec in listed if "voila" not in spec.left_out_of]

    def exactly(among: list[Listed]) -> Listed | None:
        spec = next((spec for spec in among if spec.name == name), None) if name else None
        if spec is not None and name in RENAMED:  # found by its name, started by another
            return by_name.get(RENAMED[name])
        return spec

    def ran(client: str, spec: Listed | None, how: str, missing: str) -> Verdict:
        if spec is None:
            return Verdict(client, False, missing)
        if not spec.starts:
            return Verdict(client, False, f"{how} {spec.name}, which cannot start", spec=spec.name)
        return Verdict(client, True, f"{how} {spec.name}", spec=spec.name)

    lower = by_name.get(started_name(name)) if name else None
    no_such = f"no kernel named {name!r} (case ignored): it stops"
    found = [
        ran(client, lower, "runs it with", no_such) for client in ("jupyter-server", "nbclient")
    ]
    exact = exactly(offered)
    if exact is not None:
        lab = ran("jupyterlab", exact, "opens it with", "")
    else:
        same = [spec for spec in offered if language_info and spec.language == language_info]
        how = f"no kernel named exactly {name!r}; the only {language_info} kernel:"
        lab = (
            ran("jupyterlab", same[0], f"opens it with {how}", "")
            if len(same) == 1
            else Verdict(
                "jupyterlab",
                False,
                f"no kernel named exactly {name!r} and "
                f"{len(same)} kernels of language {language_info!r}: it asks the "
                "user which kernel to start",
            )
        )
    exact = exactly(for_voila)
    if exact is not None:
        voila = ran("voila", exact, "runs it with", "")
    else:
        language = (wanted.get("language") or language_info).lower()
        same = sorted(
            (spec for spec in for_voila if spec.language.lower() == language),
            key=lambda spec: spec.display_name,
        )
        voila = ran(
            "voila",
            same[0] if same else None,
            f"no kernel named exactly {name!r}; it falls back to the first {language} kernel:",
            f"no kernel named exactly {name!r} and none of language {language!r}: it fails",
        )
    console = ran("console", lower, f"`jupyter console --kernel {name}` runs", no_such)
    return [*found[:1], lab, voila, found[1], console]
