"""Kernels that run inside a container: Apptainer, Singularity, Charliecloud, podman.

A container spec's argv is a short POSIX shell script (``/bin/sh -c``) that Jupyter starts
like any kernel. It binds the connection file's directory into the container, whichever
client wrote it there (JupyterLab's runtime dir, VS Code's ``$XDG_RUNTIME_DIR``), passes
every variable of the spec's ``env`` in the runtime's own way (Jupyter has already put them,
``${VAR}`` templates expanded, into the script's environment), keeps the host's user
site-packages out, and ``exec``s the runtime so that interrupts reach the kernel.

The script is generated from the container settings that ``metadata.kernelmagic`` records and
from the names in ``env``; ``keep_in_step`` makes it again whenever a writer changes ``env``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from string import Template
from typing import Any

from kernelmagic.domain.provenance import Provenance
from kernelmagic.errors import InvalidInput, SourceFailed

RUNTIMES = ("apptainer", "singularity", "charliecloud", "podman")
PROGRAM_NAMES = {
    "apptainer": "apptainer",
    "singularity": "singularity",
    "charliecloud": "ch-run",
    "podman": "podman",
}
# The wrapper's $0: it names the process in `ps` and tells a generated argv from one edited
# by hand (which is left alone).
MARK = "kernelmagic-container"
# Charliecloud cannot create a mount point in a read-only image; /mnt is in every image.
CHARLIECLOUD_CONNECTION_DIR = "/mnt"
# Image references that Apptainer and Singularity pull or convert themselves.
_APPTAINER_SCHEMES = re.compile(
    r"(docker|docker-daemon|docker-archive|oci|oci-archive|library|oras|shub|https?)://|"
    r"(docker-daemon|docker-archive|oci-archive|oci):"
)
_APPTAINER_FILES = (".sif", ".simg", ".img")
_SQUASHFS_FILES = (".sqfs", ".squashfs")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SEPARATOR = ":"


def _reference(name: str) -> str:
    """``${NAME}``: a variable in a Jupyter template."""
    return "${" + name + "}"


def _expansion(name: str) -> str:
    """The shell's expansion of NAME inside a double-quoted string, never as ``${NAME}``:
    jupyter_client fills ``{word}`` in every argv entry with its own values (``{prefix}``,
    ``{resource_dir}``, ...), so the script holds no braces around a bare name. The closing
    and reopening quotes end the name."""
    return f'${name}""'


# Apptainer's special PATH handling (user guide, "Manipulating PATH").
_PATH_PARTS = ("PREPEND_PATH", "APPEND_PATH")
# Options that make Apptainer and Singularity take injected values verbatim.
_NO_EVAL = ("--no-eval", "--compat")
_TRUE = ("1", "t", "T", "true", "TRUE", "True")  # FLAG=VALUE as Go's strconv.ParseBool reads it

# Apptainer and Singularity evaluate each injected value once, as the shell evaluates text
# inside double quotes (user guide, "Escaping and Evaluation of Environment Variables"): the
# wrapper puts a backslash before each \ $ and ` of a value so that it arrives as it is.
# esc VALUE sets R; no subshell, no other process. R, S and P stand for the wrapper's names
# (``_wrapper_names``); the template holds no other capital letter.
_ESCAPE_FUNCTION = r"""esc() {
  R= S=$1
  while :; do
    case $S in
      *[\\\$\`]*)
        P=${S%%[\\\$\`]*}; S=${S#"$P"}
        R=$R$P\\${S%"${S#?}"}; S=${S#?} ;;
      *) R=$R$S; return ;;
    esac
  done
}
"""
# The wrapper's own variables: connection file, its dir, esc's, an addition's head, env file,
# the host's TMPDIR (Charliecloud's /tmp).
_WRAPPER_VARIABLES = ("f", "d", "r", "s", "p", "b", "e", "n", "t")


def _wrapper_names(env: Mapping[str, str]) -> dict[str, str]:
    """The wrapper's variables, named apart from every one the spec sets or its values name."""
    taken = set(env)
    for value in env.values():
        for match in Template.pattern.finditer(value):
            taken.add(match.group("named") or match.group("braced") or "")
    names = {}
    for base in _WRAPPER_VARIABLES:
        name = base
        while name in taken:
            name += "_"
        names[base] = name
    return names


def _escape_function(v: Mapping[str, str]) -> str:
    return _ESCAPE_FUNCTION.replace("R", v["r"]).replace("S", v["s"]).replace("P", v["p"])


@dataclass(frozen=True)
class Container:
    """Where and how a kernel runs in a container: the image, the runtime (``program`` is
    its path on this machine), bind mounts (``SRC[:DST]``), options passed to the runtime as
    given, and the kernel's command inside (``{connection_file}`` where the file goes)."""

    image: str
    runtime: str
    kernel: tuple[str, ...]
    program: str = ""
    binds: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def to_fields(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "runtime": self.runtime,
            "program": self.program,
            "kernel": list(self.kernel),
            "binds": list(self.binds),
            "options": list(self.options),
        }

    @classmethod
    def from_fields(cls, fields: Any) -> Container | None:
        """The settings a spec records; None when they are not all there and well typed."""
        if not isinstance(fields, Mapping):
            return None
        image, runtime, program = (fields.get(k) for k in ("image", "runtime", "program"))
        if not (isinstance(image, str) and isinstance(program, str) and runtime in RUNTIMES):
            return None
        words: list[tuple[str, ...]] = []
        for key in ("kernel", "binds", "options"):
            value = fields.get(key)
            if not (isinstance(value, list) and all(isinstance(w, str) for w in value)):
                return None
            words.append(tuple(value))
        kernel, binds, options = words
        if not kernel:
            return None
        return cls(image, str(runtime), kernel, program, binds, options)

    @property
    def is_path(self) -> bool:
        """The image is a file or directory on this machine (not a reference to pull)."""
        return os.path.isabs(self.image)

    @property
    def evaluates_values(self) -> bool:
        return self.runtime in ("apptainer", "singularity") and not _takes_values_as_they_are(
            self.options
        )


def _takes_values_as_they_are(options: tuple[str, ...]) -> bool:
    """``--no-eval`` or ``--compat`` is on (bare or ``=true``; a flag's last word wins)."""
    on: dict[str, bool] = {}
    for option in options:
        flag, equals, value = option.partition("=")
        if flag in _NO_EVAL:
            on[flag] = not equals or value in _TRUE
    return any(on.values())


def of_spec(spec: Mapping[str, Any]) -> Container | None:
    """The container a spec runs in, as its record says; None for other specs."""
    record = Provenance.of_spec(spec)
    return Container.from_fields(record.container) if record is not None else None


def described(container: Container) -> str:
    """What a reviewer must read of a container spec: every word it runs."""
    words = [container.program, *container.options, container.image]
    binds = ", ".join(container.binds) or "none"
    return (
        f"runs in a container: {shlex.join(words)} (extra binds: {binds}), and inside it "
        f"{shlex.join(container.kernel)}"
    )


def is_generated(argv: Any) -> bool:
    return (
        isinstance(argv, list)
        and len(argv) == 5
        and argv[:2] == ["/bin/sh", "-c"]
        and (argv[3] == MARK)
    )


# --- choosing the runtime ---------------------------------------------------------------


def image_reference(image: str) -> str:
    """An image path made absolute (the spec must not depend on the client's working
    directory), a reference left as given; ``InvalidInput`` for a path that is not there."""
    looks_like_a_path = image.startswith((".", "/", "~")) or image.endswith(
        (*_APPTAINER_FILES, *_SQUASHFS_FILES)
    )
    if _APPTAINER_SCHEMES.match(image) or not (looks_like_a_path or os.path.exists(image)):
        return image
    found = os.path.abspath(os.path.expanduser(image))
    if not os.path.exists(found):
        raise InvalidInput(f"no container image at {found}")
    return found


def guess_runtime(image: str, environ: Mapping[str, str]) -> str:
    """The runtime for ``image``: a .sif file, an Apptainer sandbox or a docker:// reference
    is Apptainer's (Singularity's where only that is installed), a directory image or a
    SquashFS file Charliecloud's, a registry reference (``name:tag``) podman's."""
    path = environ.get("PATH", os.defpath)
    apptainer = "singularity" if (
        not shutil.which("apptainer", path=path) and shutil.which("singularity", path=path)
    ) else "apptainer"  # fmt: skip
    if _APPTAINER_SCHEMES.match(image):
        return apptainer
    if os.path.isdir(image):
        sandbox = os.path.isdir(os.path.join(image, ".singularity.d"))
        return apptainer if sandbox else "charliecloud"
    if os.path.isfile(image):
        if image.endswith(_APPTAINER_FILES):
            return apptainer
        if image.endswith(_SQUASHFS_FILES):
            return "charliecloud"
        raise InvalidInput(f"cannot tell which runtime runs {image}; name it with --runtime")
    return "podman"


def find_runtime(runtime: str, environ: Mapping[str, str]) -> str:
    """The runtime's program on ``environ``'s PATH, as an absolute path."""
    name = PROGRAM_NAMES[runtime]
    found = shutil.which(name, path=environ.get("PATH", os.defpath))
    if found is None:  # the environment lacks it: a failure (exit 1), as "no conda found" is
        raise SourceFailed(
            f"no {name} on PATH; load it first (--modules, a snippet) or install {runtime}"
        )
    return os.path.abspath(found)


# --- the wrapper script -----------------------------------------------------------------


def _double_quoted(template: str) -> str:
    """A Jupyter ``${VAR}`` template as the text of a shell double-quoted string that
    expands the same variables (on the host, as Jupyter would) and nothing else."""

    def literal(text: str) -> str:
        return re.sub(r'([\\$`"])', r"\\\1", text)

    out, at = [], 0
    for match in Template.pattern.finditer(template):
        out.append(literal(template[at : match.start()]))
        name = match.group("named") or match.group("braced")
        out.append(_expansion(name) if name else "\\$")  # $$ and a lone $ are a dollar
        at = match.end()
    out.append(literal(template[at:]))
    return "".join(out)


def _around_itself(name: str, value: str) -> tuple[str, str] | None:
    """(before, after) when ``value`` is ``BEFORE:${NAME}:AFTER`` (either side may be
    absent): an addition to the variable's own value, which inside a container is the
    container's value."""
    own = _reference(name)
    if value.count(own) != 1:
        return None
    before, after = value.split(own)
    if (before and not before.endswith(_SEPARATOR)) or (after and not after.startswith(_SEPARATOR)):
        return None
    return before[: -len(_SEPARATOR)] if before else "", after[len(_SEPARATOR) :]


def _apptainer_exports(
    container: Container, env: Mapping[str, str], python: bool, v: Mapping[str, str]
) -> list[str]:
    """``export APPTAINERENV_NAME=...`` lines (SINGULARITYENV_ for Singularity), following
    the Apptainer user guide's rules: injected values override the image's and hold under
    --cleanenv; PATH is changed only through PREPEND_PATH and APPEND_PATH; every value is
    escaped against the one evaluation the runtime makes (not under --no-eval/--compat)."""
    prefix = "SINGULARITYENV_" if container.runtime == "singularity" else "APPTAINERENV_"
    evaluates = container.evaluates_values
    lines = [_escape_function(v)] if evaluates else []
    r, b = v["r"], v["b"]

    def export(target: str, shell_text: str) -> None:
        if evaluates:
            lines.append(f'esc "{shell_text}"; export {prefix}{target}="${r}"')
        else:
            lines.append(f'export {prefix}{target}="{shell_text}"')

    for name in sorted(env):
        value = env[name]
        around = _around_itself(name, value) if isinstance(value, str) else None
        if around and name == "PATH":
            for part, text in zip(_PATH_PARTS, around, strict=True):
                if text:
                    export(part, _double_quoted(text))
        elif around and evaluates:
            # The container's own value, evaluated there; ${NAME:+...} adds no empty entry.
            before, after = around
            if not before and not after:
                continue  # NAME=${NAME}: the container's value as it is
            lines.append(f'esc "{_double_quoted(before)}"; {b}=${r}; esc "{_double_quoted(after)}"')
            own = f"\\${{{name}:+:\\${name}}}" if before else f"\\${{{name}:+\\${name}:}}"
            value_text = (f"${b}" if before else "") + own + (":" if before and after else "")
            lines.append(f'export {prefix}{name}="{value_text}${r}"')
        else:
            export(name, "$" + name)
    if python:
        lines.append(f"export {prefix}PYTHONNOUSERSITE=1")
    return lines


def _charliecloud_env(env: Mapping[str, str], v: Mapping[str, str]) -> list[str]:
    """Lines gathering ``NAME='VALUE'`` per variable into ``$e``, the env file ch-run reads
    from a here-document on fd 3: never on its command line, which all users read in /proc.
    A value with a newline cannot be a line there: ch-run passes it through from the env."""
    e, n = v["e"], v["n"]
    lines = [f"{n}='\n'", f"{e}="]
    for name in sorted(env):
        lines.append(f'case ${name} in *"${n}"*) ;; *) {e}=${e}"{name}=\'${name}\'${n}" ;; esac')
    return lines


def _unset_globs(options: Sequence[str]) -> list[str]:
    """The name globs of ch-run's ``--unset-env=GLOB`` (or ``--unset-env GLOB``) options."""
    globs = []
    for i, option in enumerate(options):
        if option.startswith("--unset-env="):
            globs.append(option.split("=", 1)[1])
        elif option == "--unset-env" and i + 1 < len(options):
            globs.append(options[i + 1])
    return globs


_ENV_FD, _ENV_END = 3, "KERNELMAGIC_ENV"  # where the env file reaches ch-run


def _runtime_words(
    container: Container, env: Mapping[str, str], python: bool, v: Mapping[str, str]
) -> list[str]:
    """The runtime's command line up to the image, as shell words (quoted, or expanding
    the connection file's directory)."""
    q = shlex.quote
    program = q(container.program)
    options = [q(o) for o in container.options]
    d = v["d"]
    if container.runtime in ("apptainer", "singularity"):
        binds = [f'--bind "${d}"'] + [f"--bind {q(b)}" for b in container.binds]
        workdir = ['--bind "$PWD"', '--pwd "$PWD"']  # the client's working dir (the notebook's)
        return [program, "exec", *options, *binds, *workdir, q(container.image)]
    if container.runtime == "charliecloud":
        globs = _unset_globs(container.options)
        passed_through = sorted(
            name for name, value in env.items()
            if "\n" in value and any(fnmatchcase(name, glob) for glob in globs)
        )  # fmt: skip
        if passed_through:  # neither a line of the env file nor passed through
            raise InvalidInput(
                f"{passed_through[0]} holds a newline, which ch-run's env file cannot hold, "
                "and the --unset-env among the container options drops it from what ch-run "
                "passes through: the kernel would not get it; leave out one of the two"
            )
        binds = [f'-b "${d}:{CHARLIECLOUD_CONNECTION_DIR}"']
        binds += [f"-b {q(b)}" for b in container.binds]
        # After the user's options, so that an --unset-env among them drops none of env.
        settings = ["--env-no-expand"]
        if env:
            settings.append(f"--set-env=/dev/fd/{_ENV_FD}")
        if python:
            settings.append("--set-env=PYTHONNOUSERSITE=1")
        # "$@": the working dir's -b/-c, which the script's own test set
        return [program, *options, *binds, '"$@"', *settings, q(container.image), "--"]
    volumes = [f'-v "${d}:${d}"']
    volumes += [f"-v {q(b if ':' in b else f'{b}:{b}')}" for b in container.binds]
    volumes += ['-v "$PWD:$PWD"', '-w "$PWD"']
    forwarded = [f"-e {q(name)}" for name in sorted(env)]
    if python:
        forwarded.append("-e PYTHONNOUSERSITE=1")
    image = (
        ["--rootfs", q(container.image)] if os.path.isdir(container.image) else [q(container.image)]
    )
    return [program, "run", "--rm", "-i", "--network=host", *options, *volumes, *forwarded, *image]


def _charliecloud_workdir(container: Container, t: str) -> str:
    """Start in the client's working dir (the notebook's), as every host kernel does. ch-run
    binds the host's $TMPDIR (or /tmp) at the guest's /tmp; elsewhere the dir is bound where
    a directory image has it (ch-run cannot make a mount point in a read-only image: there
    the kernel starts in /)."""
    inside = shlex.quote(container.image.rstrip("/")) + '"$PWD"'
    return (
        f'{t}=${{TMPDIR:-/tmp}}; {t}=${{{t}%/}}; set --; case $PWD in "${t}"|"${t}"/*) '
        f'set -- -c "/tmp${{PWD#"${t}"}}" ;; *) if [ -d {inside} ]; then '
        'set -- -b "$PWD" -c "$PWD"; fi ;; esac'
    )


def script(
    container: Container, env: Mapping[str, str], command: tuple[str, ...], python: bool
) -> str:
    """The wrapper: ``$1`` is the connection file; ``command`` runs inside, ``{connection_file}``
    replaced by the file's path there; ``python``: keep the user's site-packages out."""
    bad = sorted(name for name in env if not _ENV_NAME.match(name))
    if bad:
        raise InvalidInput(f"{bad[0]} cannot be passed into a container: not a shell variable name")
    v = _wrapper_names(env)
    f, d = v["f"], v["d"]
    inside = f'"${f}"'
    if container.runtime == "charliecloud":
        inside = f'"{CHARLIECLOUD_CONNECTION_DIR}/${{{f}##*/}}"'
    words = [inside if w == "{connection_file}" else shlex.quote(w) for w in command]
    lines = [
        f"{f}=$1; case ${f} in /*) ;; *) {f}=$PWD/${f} ;; esac; {d}=${{{f}%/*}}; {d}=${{{d}:-/}}",
    ]
    if container.runtime in ("apptainer", "singularity"):
        lines.append(  # a bind list is split at commas and colons
            f'case ${d} in *[,:]*) echo "kernelmagic: cannot bind ${d} (a comma or colon in the '
            'path)" >&2; exit 2 ;; esac'
        )
        lines.append(
            'case $PWD in *[,:]*) echo "kernelmagic: cannot bind $PWD (a comma or colon in the '
            'path)" >&2; exit 2 ;; esac'
        )
        lines += _apptainer_exports(container, env, python, v)
    if container.runtime == "charliecloud":
        lines.append(_charliecloud_workdir(container, v["t"]))
    if container.runtime == "charliecloud" and env:
        lines += _charliecloud_env(env, v)
        lines.append(f"exec {_ENV_FD}<<{_ENV_END}\n${v['e']}\n{_ENV_END}")
    lines.append("exec " + " ".join([*_runtime_words(container, env, python, v), *words]))
    return "\n".join(lines) + "\n"


def argv(container: Container, env: Mapping[str, str]) -> list[str]:
    """The spec's argv: the wrapper, started on Jupyter's ``{connection_file}``."""
    python = "ipykernel_launcher" in container.kernel
    wrapper = script(container, env, container.kernel, python)
    return ["/bin/sh", "-c", wrapper, MARK, "{connection_file}"]


def tmp_bind_pitfall(container: Container, environ: Mapping[str, str]) -> tuple[str, bool] | None:
    """Charliecloud's ch-run binds the host's ``$TMPDIR`` (``/tmp`` when unset) at the image's
    ``/tmp``: a kernel program under ``/tmp`` there is the host's ``/tmp``, reached only while
    the starting client has no other TMPDIR (a Slurm job, a hub server's job have their own).
    (message, whether ``environ`` is such a client) for such a spec; None otherwise."""
    program = container.kernel[0] if container.kernel else ""
    if container.runtime != "charliecloud" or not _under(program, "/tmp"):
        return None
    tmpdir = environ.get("TMPDIR") or "/tmp"
    here = os.path.normpath(tmpdir) != "/tmp"
    message = (
        f"its interpreter {program} is under /tmp, where ch-run binds the starting client's "
        "$TMPDIR: it starts only where TMPDIR is unset or /tmp"
        + (f" (here TMPDIR={tmpdir}, so it cannot start)" if here else " (not in a batch job)")
        + "; put the environment outside /tmp, or bind its directory with --bind"
    )
    return message, here


def _under(path: str, directory: str) -> bool:
    return os.path.isabs(path) and os.path.commonpath([os.path.normpath(path), directory]) == (
        directory
    )


def keep_in_step(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with its wrapper made again for its current ``env`` (a container spec whose
    argv kernelmagic generated); any other spec unchanged."""
    container = of_spec(spec)
    if container is None or not is_generated(spec.get("argv")):
        return spec
    env = spec.get("env")
    env = {k: v for k, v in env.items() if isinstance(v, str)} if isinstance(env, dict) else {}
    return {**spec, "argv": argv(container, env)}


def probe_command(
    container: Container, env: Mapping[str, str], command: list[str], python: bool
) -> list[str]:
    """The wrapper running ``command`` inside, to ask the image something (from an empty
    working directory: the bound directory is that one)."""
    return ["/bin/sh", "-c", script(container, env, tuple(command), python), MARK, "probe.json"]
