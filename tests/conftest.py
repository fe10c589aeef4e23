"""Test isolation: no test reads or writes the real Jupyter or IPython directories."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

# jupyter_core fixes its system directories when first imported, from XDG_DATA_DIRS under
# JUPYTER_PLATFORM_DIRS=1. Point them at an empty directory of our own before anything
# imports it, so /usr/share/jupyter and /usr/local/share/jupyter are never searched.
SYSTEM_DATA_DIR = Path(tempfile.mkdtemp(prefix="kernelmagic-tests-system-"))
os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
os.environ["XDG_DATA_DIRS"] = str(SYSTEM_DATA_DIR)
os.environ["XDG_CONFIG_DIRS"] = str(SYSTEM_DATA_DIR / "config")
# Session-scoped fixtures (the shared InteractiveShell) are made before the per-test
# isolation below; they too must find a home and IPython dir of the suite's own, or IPython
# writes profile_default/ into yours.
SESSION_HOME = SYSTEM_DATA_DIR / "session-home"
for _name, _path in {
    "HOME": SESSION_HOME,
    "IPYTHONDIR": SESSION_HOME / ".ipython",
    "JUPYTER_DATA_DIR": SESSION_HOME / "data",
    "JUPYTER_CONFIG_DIR": SESSION_HOME / "config",
    "JUPYTER_RUNTIME_DIR": SESSION_HOME / "runtime",
}.items():
    os.environ[_name] = str(_path)
_XDG_HOMES = ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")
for _name in ("JUPYTER_PATH", "JUPYTER_PREFER_ENV_PATH", *_XDG_HOMES):
    os.environ.pop(_name, None)
SESSION_HOME.mkdir()


# Lmod exports its `module` function to child shells; a job script may have only $LMOD_CMD.
_PURGE = """
if type module; then module purge
elif [ -x "${LMOD_CMD:-}" ]; then eval "$("$LMOD_CMD" bash purge)"
else exit 3; fi >/dev/null 2>&1 && env -0
"""


def _purge_loaded_modules() -> None:
    """Modules loaded by the caller's shell (`module load` in ~/.bashrc, as on many clusters)
    set GDAL_DATA, LD_LIBRARY_PATH, ... that the tests' own modulefiles set too, and a test
    that expects '+ GDAL_DATA' would see '~ GDAL_DATA'. The suite starts where `module purge`
    leaves a shell: the module system's own purge, run once, its result taken whole."""
    if not os.environ.get("LOADEDMODULES"):
        return
    purged = subprocess.run(["bash", "-c", _PURGE], capture_output=True)
    if purged.returncode != 0:
        return  # no module system to purge with: test_newcomer says so
    shell_own = {"_", "SHLVL", "PWD", "OLDPWD"}
    after = dict(
        os.fsdecode(entry).split("=", 1) for entry in purged.stdout.split(b"\0") if b"=" in entry
    )
    for name in set(os.environ) - set(after) - shell_own:
        del os.environ[name]
    os.environ.update({k: v for k, v in after.items() if k not in shell_own})


_purge_loaded_modules()

# Only now: helpers import jupyter_client, and with it jupyter_core.
from helpers import (  # noqa: E402
    build_directory_image,
    make_venv,
    python_for_other_users,
    require_system_package,
    write_gdal_module,
)

# Figures that stress tests measured (writers kept, kill rounds survived, ...), printed at
# the end of the run so that CI logs show them.
FIGURES: list[str] = []


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SYSTEM_DATA_DIR, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("figures")
        for figure in FIGURES:
            terminalreporter.write_line(figure)
    _summarise_skips(terminalreporter)


# helpers.require_system_package ends every such reason with this
_MISSING_PACKAGE = re.compile(
    r"(?P<what>.*) is not installed \(apt-get install (?P<package>[^)]+)\)$"
)


def _summarise_skips(terminalreporter) -> None:
    """What this run did not test and why: the tests skipped for a missing system package,
    with the one apt-get line that would run them, then those skipped for a condition
    (root, a second user, ...). A green run on a bare machine must say what it left out."""
    by_package: dict[str, list[str]] = {}
    by_condition: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        missing = _MISSING_PACKAGE.match(reason)
        if missing:
            by_package.setdefault(missing["package"], []).append(missing["what"])
        else:
            by_condition[reason] += 1
    if not by_package and not by_condition:
        return
    terminalreporter.section("what this run skipped")
    for package, whats in sorted(by_package.items()):
        needed = ", ".join(sorted(set(whats)))
        terminalreporter.write_line(f"{len(whats):4} for Debian's {package} ({needed})")
    if by_package:
        packages = " ".join(sorted(by_package))
        terminalreporter.write_line(
            f"to run them: apt-get install -y --no-install-recommends {packages}"
        )
    for reason, count in by_condition.most_common():
        terminalreporter.write_line(f"{count:4} because: {reason}")


@pytest.fixture(scope="session")
def second_venv(tmp_path_factory) -> Path:
    return make_venv(tmp_path_factory.mktemp("second") / "venv", with_ipykernel=True)


@pytest.fixture(scope="session")
def other_users_python() -> Iterator[Path]:
    """An interpreter other local users can run with this suite's packages (see
    ``helpers.python_for_other_users``), under a world-searchable temp dir."""
    work = Path(tempfile.mkdtemp(prefix="kernelmagic-python-"))
    work.chmod(0o755)
    yield python_for_other_users(work)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory) -> str:
    venv = make_venv(tmp_path_factory.mktemp("bare") / "venv", with_ipykernel=False)
    return str(venv / "bin" / "python")


@pytest.fixture(scope="session")
def lmod_available():
    found = (
        subprocess.run(
            ["bash", "-l", "-c", "type module"], capture_output=True, env={"HOME": "/nonexistent"}
        ).returncode
        == 0
    )
    require_system_package(found, "Lmod", "lmod")


@pytest.fixture(scope="session")
def charliecloud_image(tmp_path_factory) -> Path:
    """A directory image (this machine's /usr, hard-linked) that ch-run runs unprivileged."""
    require_system_package(shutil.which("ch-run") is not None, "ch-run", "charliecloud-runtime")
    image_python = subprocess.run(["/usr/bin/python3", "-c", "import ipykernel"]).returncode
    require_system_package(
        image_python == 0, "the image's python3 with ipykernel", "python3-ipykernel"
    )
    return build_directory_image(tmp_path_factory.mktemp("image") / "root")


@pytest.fixture
def runtime_dir_outside_binds(monkeypatch):
    """Connection files where no container runtime binds them at their own path (as VS
    Code's $XDG_RUNTIME_DIR): JUPYTER_RUNTIME_DIR, and TMPDIR, where jupyter_client's
    KernelManager writes them when it is not given one."""
    path = Path(tempfile.mkdtemp(prefix="kernelmagic-runtime-", dir="/var/tmp"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(path))
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches where it found it
    monkeypatch.setenv("USER", pwd.getpwuid(os.getuid()).pw_name)  # ch-run needs it
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_conda(tmp_path, monkeypatch, second_venv):
    """A stand-in for conda: it prints what `conda shell.posix activate ENV` prints.

    conda cannot be installed on our test machines, so this script imitates its activation
    output (PS1, exports of PATH, CONDA_PREFIX, CONDA_SHLVL, ..., then sourcing the env's
    activate.d scripts) for an env whose prefix is a real venv with ipykernel.
    """
    prefix = tmp_path / "conda" / "envs" / "geo"
    shutil.copytree(second_venv, prefix, symlinks=True)
    (prefix / "conda-meta").mkdir()
    activate_d = prefix / "etc" / "conda" / "activate.d"
    activate_d.mkdir(parents=True)
    (activate_d / "gdal-activate.sh").write_text(f'export GDAL_DATA="{prefix}/share/gdal"\n')
    conda = tmp_path / "conda" / "bin" / "conda"
    conda.parent.mkdir(parents=True)
    conda.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        [ "$1" = shell.posix ] && [ "$2" = activate ] || {{ echo "unexpected: $*" >&2; exit 2; }}
        case "$3" in geo|{prefix}) ;; *) echo "EnvironmentNameNotFound: $3" >&2; exit 1;; esac
        echo "PS1='(geo) '"
        echo "export PATH='{prefix}/bin:{tmp_path}/conda/condabin:'\\"\\$PATH\\""
        echo "export CONDA_PREFIX='{prefix}'"
        echo "export CONDA_SHLVL='1'"
        echo "export CONDA_DEFAULT_ENV='geo'"
        echo "export CONDA_PROMPT_MODIFIER='(geo) '"
        echo ". \\"{activate_d}/gdal-activate.sh\\""
    """)
    )
    conda.chmod(0o755)
    monkeypatch.setenv("CONDA_EXE", str(conda))
    return prefix


@pytest.fixture
def geo_module(tmp_path, monkeypatch, lmod_available):
    """A real Lmod modulefile setting GDAL_DATA and prepending LD_LIBRARY_PATH."""
    root = tmp_path / "modulefiles"
    geo = write_gdal_module(root, "geo/1.0", tmp_path / "opt" / "geo")
    monkeypatch.setenv("MODULEPATH", str(root))
    # ipykernel leaves fds 1 and 2 alone under pytest; a kernel started by Jupyter has them
    # captured, and the restart must hand the real ones back. Start kernels as Jupyter does.
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    return geo


@pytest.fixture
def restore_environ():
    """%kernel_activate in this process changes os.environ; put it back for other tests."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


@pytest.fixture(autouse=True)
def isolated_jupyter(tmp_path, monkeypatch):
    """Point HOME and every Jupyter/IPython location at ``tmp_path``."""
    home = tmp_path / "home"
    home.mkdir()
    paths = {
        "HOME": home,
        "JUPYTER_DATA_DIR": tmp_path / "data",
        "JUPYTER_CONFIG_DIR": tmp_path / "config",
        "JUPYTER_RUNTIME_DIR": tmp_path / "runtime",
        "IPYTHONDIR": tmp_path / "ipython",
    }
    for name, path in paths.items():
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("XDG_DATA_DIRS", str(SYSTEM_DATA_DIR))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(SYSTEM_DATA_DIR / "config"))
    for name in ("JUPYTER_PATH", "JUPYTER_PREFER_ENV_PATH", *_XDG_HOMES):
        monkeypatch.delenv(name, raising=False)
    yield paths


@pytest.fixture
def user_kernels(isolated_jupyter) -> Path:
    return isolated_jupyter["JUPYTER_DATA_DIR"] / "kernels"


@pytest.fixture
def system_kernels():
    """The (test-only) system-wide kernels directory; emptied after the test."""
    path = SYSTEM_DATA_DIR / "jupyter" / "kernels"
    path.mkdir(parents=True, exist_ok=True)
    yield path
    shutil.rmtree(SYSTEM_DATA_DIR / "jupyter", ignore_errors=True)


@pytest.fixture(scope="session")
def shell():
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    return InteractiveShell.instance(config=config)


@pytest.fixture
def ip(shell):
    """The session's shell with kernelmagic freshly loaded (and unloaded afterwards)."""
    shell.run_line_magic("load_ext", "kernelmagic")
    yield shell
    shell.run_line_magic("unload_ext", "kernelmagic")
    shell.config.pop("KernelMagics", None)  # %config in one test must not leak into the next
