"""Environments made by shell snippets, real Lmod modules, conda activation and other
interpreters; specs launched with jupyter_client."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import give_ipykernel, make_venv, run_in_kernel, write_spec
from IPython.core.error import UsageError

from kernelmagic.frontends.cli import main


@pytest.fixture
def modules(tmp_path, monkeypatch, second_venv, lmod_available):
    """A MODULEPATH of our own with a 'gdal' module that provides Python and GDAL data."""
    root = tmp_path / "modulefiles"
    gdal = tmp_path / "opt" / "gdal"
    for sub in ("share", "lib"):
        (gdal / sub).mkdir(parents=True)

    def write(version: str, data: str, python_bin: Path = second_venv / "bin") -> None:
        (root / "gdal").mkdir(parents=True, exist_ok=True)
        (root / "gdal" / f"{version}.lua").write_text(
            textwrap.dedent(f"""\
            setenv("GDAL_DATA", "{data}")
            prepend_path("PATH", "{python_bin}")
            prepend_path("LD_LIBRARY_PATH", "{gdal / "lib"}")
        """)
        )

    write("3.8", str(gdal / "share"))
    monkeypatch.setenv("MODULEPATH", str(root))
    return {"write": write, "gdal": gdal, "venv": second_venv}


def spec_json(user_kernels, name):
    return json.loads((user_kernels / name / "kernel.json").read_text())


def test_modules_spec_launches_with_module_environment(ip, user_kernels, modules):
    ip.run_line_magic("kernel_install", "gdal --modules gdal/3.8")
    spec = spec_json(user_kernels, "gdal")
    venv_python = str(modules["venv"] / "bin" / "python3")
    assert spec["argv"][0] == venv_python  # first python3 on the module's PATH with ipykernel
    assert not [k for k in spec["env"] if k.startswith(("_ModuleTable", "__LMOD", "BASH_FUNC"))]
    assert "LOADEDMODULES" not in spec["env"]
    provenance = spec["metadata"]["kernelmagic"]
    assert provenance["source"] == "modules" and provenance["modules"] == "gdal/3.8"
    assert provenance["loaded_modules"] == "gdal/3.8"

    seen = run_in_kernel("gdal")
    assert seen["env"]["GDAL_DATA"] == str(modules["gdal"] / "share")
    assert seen["env"]["PATH"].split(os.pathsep)[0] == str(modules["venv"] / "bin")
    assert seen["env"]["PATH"].endswith(os.environ["PATH"])  # ${PATH} filled in at launch
    assert seen["env"]["LD_LIBRARY_PATH"].split(os.pathsep)[0] == str(modules["gdal"] / "lib")
    assert seen["prefix"] == str(modules["venv"])


def test_refresh_follows_a_changed_modulefile_and_keeps_hand_edits(
    ip, user_kernels, modules, capsys
):
    ip.run_line_magic("kernel_install", "gdal --modules gdal/3.8")
    ip.run_line_magic("kernel_env", "-k gdal MY_SETTING=by-hand")
    modules["write"]("3.8", "/new/gdal/data")
    path = user_kernels / "gdal" / "kernel.json"
    before = path.read_bytes()
    capsys.readouterr()

    ip.run_line_magic("kernel_refresh", "gdal --dry-run")
    out = capsys.readouterr().out
    assert '+  "GDAL_DATA": "/new/gdal/data"' in out and "Dry run" in out
    assert path.read_bytes() == before

    ip.run_line_magic("kernel_refresh", "gdal")
    env = spec_json(user_kernels, "gdal")["env"]
    assert env["GDAL_DATA"] == "/new/gdal/data"
    assert env["MY_SETTING"] == "by-hand"
    # a captured variable the user overrode by hand is theirs now
    ip.run_line_magic("kernel_env", "-k gdal GDAL_DATA=/my/override")
    modules["write"]("3.8", "/newer/gdal/data")
    assert main(["refresh", "gdal"]) == 0
    assert spec_json(user_kernels, "gdal")["env"]["GDAL_DATA"] == "/my/override"


def test_refresh_moves_argv_when_the_module_now_provides_another_python(
    ip, user_kernels, modules, tmp_path
):
    ip.run_line_magic("kernel_install", "gdal --modules gdal/3.8")
    newer = make_venv(tmp_path / "python-3.x-rebuilt", with_ipykernel=True)
    modules["write"]("3.8", str(modules["gdal"] / "share"), python_bin=newer / "bin")
    ip.run_line_magic("kernel_refresh", "gdal")
    spec = spec_json(user_kernels, "gdal")
    assert spec["argv"][0] == str(newer / "bin" / "python3")
    assert spec["env"]["PATH"].startswith(f"{newer / 'bin'}:")


def test_refresh_moves_the_interpreter_where_it_is_and_keeps_an_argv_prefix(
    ip, user_kernels, modules, tmp_path
):
    """After `patch --argv-prefix "nice -n 3"`, refresh put the new interpreter over `nice`:
    `python3 -n 3 python3 -m ipykernel_launcher ...`, which no client could start."""
    ip.run_line_magic("kernel_install", "gdal --modules gdal/3.8")
    ip.run_line_magic("kernel_patch", "gdal --argv-prefix 'nice -n 3'")
    newer = make_venv(tmp_path / "python-3.x-rebuilt", with_ipykernel=True)
    modules["write"]("3.8", str(modules["gdal"] / "share"), python_bin=newer / "bin")
    ip.run_line_magic("kernel_refresh", "gdal")
    argv = spec_json(user_kernels, "gdal")["argv"]
    assert argv[:4] == ["nice", "-n", "3", str(newer / "bin" / "python3")]
    assert argv.count(str(newer / "bin" / "python3")) == 1
    assert run_in_kernel("gdal")["prefix"] == str(newer)


def test_snippet_that_cds_and_exports_a_token_captures_neither(ip, user_kernels, tmp_path):
    snippet = f"cd {tmp_path}\nexport MY_API_TOKEN=abc123\nexport PROJ_LIB=/opt/proj\n"
    ip.run_cell_magic("kernel_install", f"snip --python {sys.executable}", snippet)
    spec = spec_json(user_kernels, "snip")
    assert spec["env"] == {"PROJ_LIB": "/opt/proj"}
    # The token is recorded masked; the full snippet (which refresh runs) is owner-only.
    assert spec["metadata"]["kernelmagic"]["snippet"] == snippet.replace("abc123", "<hidden>")
    side = user_kernels / "snip" / "kernelmagic-snippet.sh"
    assert side.read_text() == snippet and side.stat().st_mode & 0o777 == 0o600


def test_what_a_snippet_unsets_is_said_not_lost_silently(user_kernels, tmp_path, capsys):
    """Walk J: a snippet's (or a module's) ``unset PYTHONPATH`` of the login shell's
    PYTHONPATH was dropped without a word; the kernel still got it from its launcher."""
    Path(os.environ["HOME"], ".bash_profile").write_text(
        "export PYTHONPATH=/old/site\nexport KM_KEEP=1\n"
    )
    snippet = tmp_path / "s.sh"
    snippet.write_text("unset PYTHONPATH\nexport NEWV=1\n")
    capsys.readouterr()
    assert main(["install", "s2", "--snippet-file", str(snippet)]) == 0
    said = capsys.readouterr().out
    assert "Captured 1 variable(s): NEWV" in said
    assert "Unset by the snippet or modules" in said and ": PYTHONPATH (set one" in said, said
    assert "KM_KEEP" not in said


def test_a_snippet_that_stops_the_kernels_python_starting_is_refused(
    user_kernels, tmp_path, capsys
):
    """A module that sets PYTHONHOME for its own Python (here a snippet) made a spec for this
    session's interpreter that could never start; install said "Installed" and exit 0, and
    refresh wrote it too. Only the doctor said `cannot-start`."""
    setup = tmp_path / "setup.sh"
    setup.write_text("export GDAL_DATA=/opt/gdal\n")
    snippet = tmp_path / "s.sh"
    snippet.write_text(f". {setup}\n")
    assert main(["install", "geo", "--snippet-file", str(snippet)]) == 0
    written = (user_kernels / "geo" / "kernel.json").read_bytes()

    setup.write_text("export GDAL_DATA=/opt/gdal\nexport PYTHONHOME=/nonexistent\n")
    capsys.readouterr()
    assert main(["install", "geo2", "--snippet-file", str(snippet)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kernelmagic: error: the kernel's interpreter ") and (
        "does not start with this env (PYTHONHOME=/nonexistent); leave it out "
        "(--exclude PYTHONHOME)" in err
    ), err
    assert not (user_kernels / "geo2").exists()
    assert main(["refresh", "geo"]) == 2
    err = capsys.readouterr().err  # walk O: it said --exclude and --env, which refresh lacks
    assert "PYTHONHOME=/nonexistent" in err and "reinstall 'geo' with --replace --exclude" in err
    assert (user_kernels / "geo" / "kernel.json").read_bytes() == written
    assert main(["install", "geo3", "--capture", "none", "--env", "PYTHONHOME=/nonexistent"]) == 2
    assert "give --env PYTHONHOME a value that works, or leave it out" in capsys.readouterr().err

    argv = ["install", "geo2", "--snippet-file", str(snippet), "--exclude", "PYTHONHOME"]
    assert main(argv) == 0  # as the message says
    assert run_in_kernel("geo2")["env"]["GDAL_DATA"] == "/opt/gdal"


def test_failing_snippet_writes_nothing_and_shows_stderr(ip, user_kernels):
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic(
            "kernel_install",
            f"bad --python {sys.executable}",
            "export A=1\necho 'module xyz not found' >&2\nfalse\n",
        )
    assert type(info.value) is UsageError
    assert "exit status 1" in str(info.value) and "module xyz not found" in str(info.value)
    assert not (user_kernels / "bad").exists()
    assert not user_kernels.exists() or list(user_kernels.iterdir()) == []


def test_a_source_of_a_missing_file_is_named_and_quoted(user_kernels, tmp_path, capsys):
    """Walk K: docs/capture.md says a `source` of a missing file gets its line named and
    quoted; bash ends the shell there without running the ERR trap that says the others,
    so only bash's own line was shown."""
    snippet = tmp_path / "s.sh"
    snippet.write_text("export A=1\n. /no/such/setup.sh\nexport B=2\n")
    assert main(["install", "src", "--snippet-file", str(snippet)]) == 1
    err = capsys.readouterr().err
    assert "\n  kernelmagic: line 2 failed: . /no/such/setup.sh\n" in err, err
    assert not (user_kernels / "src").exists()


def test_unknown_module_fails_cleanly(user_kernels, modules, capsys):
    assert main(["install", "nope", "--modules", "no-such-module"]) == 1
    assert "no-such-module" in capsys.readouterr().err
    assert not (user_kernels / "nope").exists()


def test_python_venv_spec_runs_in_that_venv(ip, user_kernels, second_venv):
    python = second_venv / "bin" / "python"
    ip.run_line_magic("kernel_install", f"other --python {python}")
    spec = spec_json(user_kernels, "other")
    assert spec["argv"][0] == str(python)
    assert spec["env"]["VIRTUAL_ENV"] == str(second_venv)
    assert spec["env"]["PATH"] == f"{second_venv / 'bin'}{os.pathsep}${{PATH}}"
    seen = run_in_kernel("other")
    assert seen["prefix"] == str(second_venv)
    assert seen["env"]["VIRTUAL_ENV"] == str(second_venv)


def _older_ipykernel(venv: Path) -> Path:
    """A stand-in for an older ipykernel in ``venv`` (no index here to install ipykernel 7.0
    from): a copy of this suite's, whose spec says what ipykernel < 7.3 without debugpy
    says (no Curve encryption, no debugger). Jupyter's own installer, run in that venv,
    writes that spec."""
    give_ipykernel(venv)
    shelf = venv.parent / f"{venv.name}-test-packages"
    package = shelf / "ipykernel"
    source = package.resolve()
    package.unlink()
    shutil.copytree(source, package, ignore=shutil.ignore_patterns("__pycache__"))
    with (package / "kernelspec.py").open("a") as kernelspec:
        kernelspec.write(
            "\n_as_this_version_writes = get_kernel_dict\n\n\n"
            "def get_kernel_dict(*args, **kwargs):\n"
            "    spec = _as_this_version_writes(*args, **kwargs)\n"
            "    spec['metadata'] = {'debugger': False}\n"
            "    return spec\n"
        )
    return package


def test_a_spec_for_another_interpreter_is_what_its_own_ipykernel_writes(
    ip, user_kernels, tmp_path, capsys
):
    """ipykernel >= 7.3 declares Curve encryption in its spec, and jupyter_client's
    ``transport_encryption = "auto"`` then hands the kernel keys: a spec for an interpreter
    with an older ipykernel that carried this session's claim never answered (seen with a
    real ipykernel 7.0.1 and jupyter_client 8.10). The spec is that interpreter's own."""
    venv = make_venv(tmp_path / "older", with_ipykernel=False)
    package = _older_ipykernel(venv)
    python = str(venv / "bin" / "python")
    ip.run_line_magic("kernel_install", f"older --python {python} --capture none")
    subprocess.run(
        [python, "-m", "ipykernel", "install", "--prefix", str(tmp_path / "own"), "--name", "o"],
        check=True,
        capture_output=True,
    )
    own = json.loads((tmp_path / "own/share/jupyter/kernels/o/kernel.json").read_text())
    spec = spec_json(user_kernels, "older")
    assert spec["argv"] == own["argv"]
    assert {k: v for k, v in spec["metadata"].items() if k != "kernelmagic"} == own["metadata"]
    assert run_in_kernel("older")["prefix"] == str(venv)

    # The answer is kept for that interpreter's ipykernel, and asked again when it changes.
    (package / "kernelspec.py").write_text("raise RuntimeError('this ipykernel is broken')\n")
    assert main(["install", "older2", "--python", python, "--capture", "none"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"kernelmagic: error: {python} -m ipykernel install failed: "
        "RuntimeError: this ipykernel is broken"
    ]
    assert not (user_kernels / "older2").exists()


def test_interpreter_without_ipykernel_is_refused(ip, user_kernels, bare_python):
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("kernel_install", f"bare --python {bare_python}")
    assert f"{bare_python} -m pip install ipykernel" in str(info.value)
    assert not (user_kernels / "bare").exists()


def test_from_conda_uses_the_activation_hook(ip, user_kernels, fake_conda):
    ip.run_line_magic("kernel_install", "geo --from-conda geo")
    spec = spec_json(user_kernels, "geo")
    assert spec["argv"][0] == str(fake_conda / "bin" / "python")
    env = spec["env"]
    assert env["GDAL_DATA"] == f"{fake_conda}/share/gdal"  # from activate.d
    assert env["CONDA_PREFIX"] == str(fake_conda)
    assert env["PATH"].startswith(f"{fake_conda}/bin:")
    assert "CONDA_SHLVL" not in env and "CONDA_PROMPT_MODIFIER" not in env
    assert spec["metadata"]["kernelmagic"]["conda_env"] == "geo"


def test_python_in_a_conda_prefix_is_activated_like_from_conda(ip, user_kernels, fake_conda):
    ip.run_line_magic("kernel_install", f"geo2 --python {fake_conda / 'bin' / 'python'}")
    env = spec_json(user_kernels, "geo2")["env"]
    assert env["GDAL_DATA"] == f"{fake_conda}/share/gdal"


def test_no_conda_names_what_was_looked_for(ip, monkeypatch, tmp_path):
    monkeypatch.delenv("CONDA_EXE", raising=False)
    monkeypatch.delenv("MAMBA_EXE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match=r"CONDA_EXE, \$MAMBA_EXE and for conda, mamba"):
        ip.run_line_magic("kernel_install", "geo --from-conda geo")


def test_cli_snippet_from_stdin(capsys, user_kernels, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("export FROM_STDIN=yes\n"))
    assert main(["install", "piped", "--snippet-file", "-", "--python", sys.executable]) == 0
    assert spec_json(user_kernels, "piped")["env"] == {"FROM_STDIN": "yes"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["install", "x", "--modules", "a", "--from-conda", "b"], "choose one source"),
        (["install", "x", "--from-current", "--modules", "a"], "cannot go with --modules"),
        (["install", "x", "--modules", "a", "--baseline", "f"], "--baseline applies"),
        (["install", "x", "--shell", "/bin/zsh"], "--shell runs a snippet"),
    ],
)
def test_conflicting_sources_are_usage_errors(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_refresh_needs_a_recorded_source(ip, user_kernels, capsys):
    write_spec(user_kernels, "handmade")
    assert main(["refresh", "handmade"]) == 1
    assert "no recorded source" in capsys.readouterr().err
    ip.run_line_magic("kernel_install", "current --capture none")
    assert main(["refresh", "current"]) == 1
    assert "captured from a running session" in capsys.readouterr().err
