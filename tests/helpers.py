"""Helpers the tests share: writing specs by hand, starting kernels, running as another user.

Fixtures live in ``conftest.py``; test modules import plain functions from here, never from
one another.
"""

from __future__ import annotations

import errno
import grp
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from kernelmagic.frontends.cli import main

# .ci/run's leg that hides the optional system packages sets this: there, a missing package
# is the point of the run, and its tests skip as on a newcomer's machine.
PACKAGES_HIDDEN = "KERNELMAGIC_TESTS_SYSTEM_PACKAGES_HIDDEN"


def require_system_package(present: bool, what: str, package: str) -> None:
    """A test needs a Debian package: in CI, .ci/run must have installed it (fail); on a
    machine without it, skip and say how to get it. conftest's summary gathers these skips
    by the `(apt-get install PACKAGE)` at the end of the reason, into one install line."""
    if present:
        return
    if os.environ.get("CI") and not os.environ.get(PACKAGES_HIDDEN):
        pytest.fail(f"{what} is missing: .ci/run must install Debian's {package}")
    pytest.skip(f"{what} is not installed (apt-get install {package})")


def write_spec(kernels_dir: Path, name: str, spec=None, *, raw: str | None = None) -> Path:
    """Create a spec dir by hand, as another tool (or a person) would."""
    resource_dir = kernels_dir / name
    resource_dir.mkdir(parents=True, exist_ok=True)
    if raw is None:
        spec = spec or {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"Hand-made {name}",
            "language": "python",
        }
        raw = json.dumps(spec, indent=1)
    (resource_dir / "kernel.json").write_text(raw, encoding="utf-8")
    return resource_dir


def write_gdal_module(root: Path, module: str, prefix: Path) -> Path:
    """A real Lmod modulefile ``root/<module>.lua`` for a GDAL install at ``prefix`` (data and
    libraries, no Python): it sets GDAL_DATA and prepends LD_LIBRARY_PATH. Returns prefix."""
    (prefix / "share").mkdir(parents=True)
    (prefix / "lib").mkdir()
    modulefile = root / f"{module}.lua"
    modulefile.parent.mkdir(parents=True, exist_ok=True)
    modulefile.write_text(
        f'setenv("GDAL_DATA", "{prefix / "share"}")\n'
        f'prepend_path("LD_LIBRARY_PATH", "{prefix / "lib"}")\n'
    )
    return prefix


PROBE = (
    "import json, os, sys\n"
    "print(json.dumps({'env': dict(os.environ), 'prefix': sys.prefix, 'cwd': os.getcwd()}))"
)


def kernel_output(kernel_name: str, code: str, timeout: float = 60) -> str:
    """Start the named spec with jupyter_client, run ``code`` (in the kernel's language),
    return what it printed."""
    manager, client = start_new_kernel(kernel_name=kernel_name, startup_timeout=timeout)
    try:
        chunks = []
        reply = client.execute_interactive(
            code,
            timeout=timeout,
            output_hook=lambda msg: chunks.append(msg["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(chunks)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run_in_kernel(kernel_name: str, code: str = PROBE) -> dict:
    """Start the named Python spec, run ``code``, return its JSON output."""
    return json.loads(kernel_output(kernel_name, code))


def make_venv(path: Path, *, with_ipykernel: bool) -> Path:
    """A real venv; with_ipykernel links our packages but kernelmagic in (no network)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    if with_ipykernel:
        give_ipykernel(path)
    return path


def give_ipykernel(prefix: Path) -> None:
    """What `uv add --dev ipykernel` (or `poetry add`) would do to the environment at
    ``prefix``, without an index: the test venv's packages but kernelmagic, which a
    non-editable install puts among them."""
    site = next(prefix.glob("lib/python*/site-packages"))
    shelf = prefix.parent / f"{prefix.name}-test-packages"  # stays when the venv moves
    shelf.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith("kernelmagic"):
            (shelf / entry.name).symlink_to(entry)
    (site / "test-ipykernel.pth").write_text(f"{shelf}\n")


def run_as_nobody(argv: list[str]) -> tuple[int, str]:
    """Run main(argv) in a forked child that dropped root, as a user would run it."""

    # argparse's messages load gettext's locale module, which the child may not be able to
    # read where this interpreter lives under /root (a pyenv): loaded here, as a user's is.
    import locale  # noqa: F401

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            # CI makes its venv in a mode-700 temp dir that this user cannot even stat (no
            # user runs someone else's unreadable venv), and jupyter_core raises on that while
            # asking who owns sys.prefix. Give it the answer it would reach: not this user.
            os.environ["JUPYTER_PREFER_ENV_PATH"] = "0"
            os.setgid(65534)
            os.setuid(65534)
            sys.stderr = os.fdopen(write, "w")
            status = main(argv)
            sys.stderr.flush()
            os._exit(status)
        except BaseException:
            os._exit(99)
    os.close(write)
    with os.fdopen(read) as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


def end_process(process: subprocess.Popen, timeout: float) -> None:
    """Ask a server or daemon the test started to end (SIGTERM); kill it after ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def reachable_by_others(path: str | Path) -> bool:
    """Whether any local user can reach ``path``: every directory above it searchable by
    others (a pyenv under a mode-700 /root, or a venv in a mode-700 mktemp dir, is not)."""
    resolved = Path(path).resolve()
    return all(os.stat(p).st_mode & 0o001 for p in (resolved, *resolved.parents) if p.is_dir())


def python_for_other_users(work: Path) -> Path:
    """An interpreter another local user can run with this suite's packages and kernelmagic.

    This one serves where everything it imports is reachable. Otherwise Debian's python3 of
    the same minor version (the same ABI for compiled extensions) gets a venv in ``work`` whose
    site-packages is a hard-linked copy of this one's (a copy where links fail), kernelmagic's
    source included when its checkout is closed too: a few seconds, no network."""
    import kernelmagic

    source = Path(kernelmagic.__file__).parent
    ours = [sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib")]
    if all(reachable_by_others(p) for p in [sys.executable, *ours, source]):
        return Path(sys.executable)
    system = Path("/usr/bin/python3")
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    asked = [str(system), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    if (
        not system.exists()
        or subprocess.run(asked, capture_output=True, text=True).stdout.strip() != here
    ):
        pytest.skip(f"this Python is closed to other users and there is no /usr/bin/python{here}")
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    venv = work / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", venv], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    copied = work / "site-packages"
    for top in dict.fromkeys(ours[1:]):  # purelib and platlib, once if they are one
        shutil.copytree(top, copied, symlinks=True, copy_function=_link_or_copy,
                        dirs_exist_ok=True)  # fmt: skip
    if not reachable_by_others(source):  # an editable install of a closed checkout
        for finder in copied.glob("*kernelmagic*.pth"):
            finder.unlink()
        shutil.copytree(source, copied / "kernelmagic", copy_function=_link_or_copy,
                        dirs_exist_ok=True)  # fmt: skip
    (site / "kernelmagic_tests.pth").write_text(f"import site; site.addsitedir({str(copied)!r})\n")
    return venv / "bin" / "python"


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(source, target)


def group_of_mine() -> grp.struct_group:
    """A Unix group this user may give files to: for root any group but its own (so the
    change shows), for anyone else one they are a member of (a supplementary one if any)."""
    if os.geteuid() == 0:
        others = [g for g in grp.getgrall() if g.gr_gid != os.getgid()]
        if others:
            return others[0]
    mine = [gid for gid in os.getgroups() if gid != os.getgid()] or [os.getgid()]
    return grp.getgrgid(mine[0])


def build_directory_image(image: Path) -> Path:
    """A Charliecloud directory image made of this machine's own system: /usr hard-linked
    (seconds, no space; it must be on the same filesystem and ours to link), /etc copied, the
    merged-/usr links and the mount points ch-run uses. Its python3 is Debian's, with
    Debian's ipykernel; its R has IRkernel. Skips when /usr cannot be linked here."""
    image.mkdir(parents=True)
    linked = subprocess.run(
        ["cp", "-al", "/usr", str(image / "usr")], capture_output=True, text=True
    )
    if linked.returncode != 0:
        # Unprivileged, fs.protected_hardlinks refuses links to root's files: one line each.
        refused = linked.stderr.strip().splitlines() or [f"cp exited {linked.returncode}"]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        pytest.skip(f"cannot hard-link /usr into a test image here: {refused[0]}{more}")
    subprocess.run(["cp", "-a", "/etc", str(image / "etc")], capture_output=True)
    for name in ("bin", "lib", "lib64", "sbin"):
        host = Path("/") / name
        if host.is_symlink():
            (image / name).symlink_to(os.readlink(host))
    for mount_point in ("dev", "proc", "sys", "tmp", "mnt", "home", "root", "run", "var/tmp"):
        (image / mount_point).mkdir(parents=True, exist_ok=True)
    return image


SLOWFS = Path(__file__).parent.parent / "benchmarks" / "slowfs.c"


def build_slowfs(directory: Path) -> Path:
    """benchmarks/slowfs.c built in ``directory``: preloaded, it makes every path lookup under
    ``SLOWFS_PREFIX`` wait ``SLOWFS_DELAY_US`` and counts them into ``SLOWFS_COUNT_FILE``."""
    cc = shutil.which("cc")
    require_system_package(cc is not None, "a C compiler (cc)", "gcc")
    library = directory / "slowfs.so"
    command = [cc, "-O2", "-shared", "-fPIC", "-o", str(library), str(SLOWFS), "-ldl"]
    subprocess.run(command, check=True, capture_output=True)
    return library
