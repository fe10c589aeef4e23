"""Project kernels (issue 27): one kernel per project, kept in step with its lockfile.

uv and Poetry run for real (both are test dependencies) and offline: the projects have no
dependencies, so `uv lock --offline`, `uv sync --offline`, `poetry env use` and `poetry lock`
need no index. What `uv add --dev ipykernel` would install comes from this test venv through
a .pth file instead (the index is not reachable at test time). pixi and conda cannot be
installed here: small stand-ins print what `pixi shell-hook --json` and `conda shell.posix
activate` print, for environments that are real venvs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from helpers import give_ipykernel, make_venv, run_in_kernel
from nbclient import NotebookClient

from kernelmagic.frontends.cli import main

BIN = Path(sys.executable).parent


def _tool(*command: str, cwd: Path) -> str:
    done = subprocess.run(
        [str(BIN / command[0]), *command[1:]], cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def tools_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", f"{BIN}:{os.environ['PATH']}")  # uv and poetry, as installed
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    monkeypatch.setenv("POETRY_CACHE_DIR", str(tmp_path / "poetry-cache"))
    monkeypatch.setenv("POETRY_CONFIG_DIR", str(tmp_path / "poetry-config"))
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.delenv("UV_PROJECT_ENVIRONMENT", raising=False)


@pytest.fixture
def uv_project(tmp_path, tools_offline) -> Path:
    """`uv init` + `uv lock` + `uv sync`, for real: a project with its .venv."""
    root = tmp_path / "Geo Project"
    root.mkdir()
    _tool("uv", "init", "--bare", "--name", "geo-analysis", "--python", sys.executable, cwd=root)
    _tool("uv", "sync", "--python", sys.executable, cwd=root)
    assert (root / "uv.lock").exists() and (root / ".venv" / "bin" / "python").exists()
    return root


def _spec(user_kernels: Path, name: str) -> dict:
    return json.loads((user_kernels / name / "kernel.json").read_text())


def test_a_uv_projects_kernel_runs_its_venv_and_follows_its_lockfile(
    uv_project, user_kernels, monkeypatch, capsys
):
    """From a dir inside the project, NAME from the project; then the lockfile changes as
    uv changes it, the doctor says so, refresh clears it."""
    give_ipykernel(uv_project / ".venv")
    inside = uv_project / "notebooks"
    inside.mkdir()
    monkeypatch.chdir(inside)
    assert main(["install", "--project"]) == 0
    spec = _spec(user_kernels, "geo-analysis")
    assert spec["argv"][0] == str(uv_project / ".venv" / "bin" / "python")
    record = spec["metadata"]["kernelmagic"]["project"]
    assert (record["tool"], record["root"]) == ("uv", str(uv_project))
    seen = run_in_kernel("geo-analysis")
    assert seen["prefix"] == str(uv_project / ".venv")
    assert seen["env"]["VIRTUAL_ENV"] == str(uv_project / ".venv")

    capsys.readouterr()
    assert main(["list", "geo-*"]) == 0
    assert f"project: uv, {uv_project}" in capsys.readouterr().out
    assert main(["doctor", "geo-analysis"]) == 0

    pyproject = uv_project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    _tool("uv", "lock", cwd=uv_project)  # the lockfile records the new version
    capsys.readouterr()
    assert main(["doctor", "geo-analysis", "--json"]) == 1
    (problem,) = json.loads(capsys.readouterr().out)["specs"]["geo-analysis"]["problems"]
    assert problem["kind"] == "project-drift" and "uv.lock changed" in problem["message"]
    assert problem["fix"] == "refresh geo-analysis"
    assert main(["refresh", "geo-analysis"]) == 0
    assert main(["doctor", "geo-analysis"]) == 0


def test_uv_project_environment_and_the_refusals(uv_project, user_kernels, monkeypatch, capsys):
    """The exact command to run when the env lacks ipykernel or does not exist yet;
    UV_PROJECT_ENVIRONMENT is where uv puts it."""
    assert main(["install", "geo", "--project", str(uv_project)]) == 2
    assert f"add it: cd '{uv_project}' && uv add --dev ipykernel" in capsys.readouterr().err
    monkeypatch.setenv("UV_PROJECT_ENVIRONMENT", "envs/main")
    assert main(["install", "geo", "--project", str(uv_project)]) == 2
    err = capsys.readouterr().err
    assert f"environment {uv_project}/envs/main does not exist yet" in err
    assert f"cd '{uv_project}' && uv sync" in err
    _tool("uv", "sync", "--python", sys.executable, cwd=uv_project)
    give_ipykernel(uv_project / "envs" / "main")
    assert main(["install", "geo", "--project", str(uv_project)]) == 0
    assert _spec(user_kernels, "geo")["argv"][0] == str(uv_project / "envs/main/bin/python")
    assert not (user_kernels / "geo-analysis").exists()
    for extra, message in (
        (["--kernel", "ir"], "uv manages Python environments"),
        (["--python", sys.executable], "it cannot go with --python"),
        (["--modules", "gdal"], "it cannot go with --modules"),
    ):
        assert main(["install", "other", "--project", str(uv_project), *extra]) in (1, 2)
        assert message in capsys.readouterr().err
    assert main(["install", "other", "--cwd"]) == 2
    assert "--cwd goes with --project" in capsys.readouterr().err
    assert not (user_kernels / "other").exists()


def test_a_new_uv_project_whose_first_uv_add_failed_gets_uvs_command(
    tmp_path, user_kernels, tools_offline, capsys
):
    """A newcomer's `uv init` then `uv add --dev ipykernel`, which failed (no index): uv had
    made .venv, with no lock and no uv table yet. The hint was the bare venv's `.venv/bin/
    python -m pip install ipykernel`, and a venv uv makes has no pip. uv's own command now."""
    root = tmp_path / "geo-analysis"
    root.mkdir()
    _tool("uv", "init", "--bare", "--name", "geo-analysis", "--python", sys.executable, cwd=root)
    _tool("uv", "venv", "--python", sys.executable, cwd=root)  # what the failed `uv add` left
    assert not (root / "uv.lock").exists()
    assert main(["install", "--project", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"the uv project's environment has no ipykernel; add it: cd {root} && uv add" in err
    # every hint to install into that venv is uv's: it has no pip for `python -m pip`
    python = root / ".venv" / "bin" / "python"
    assert main(["install", "x", "--python", str(python)]) == 2
    assert (
        f"install it there: uv pip install --python {python} ipykernel" in capsys.readouterr().err
    )
    give_ipykernel(root / ".venv")
    assert main(["install", "--project", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"to use the magics there: uv pip install --python {python} " in out, out
    # a plain `python -m venv .venv` beside a pyproject.toml stays a pip user's venv
    shutil.rmtree(root / ".venv")
    main(["remove", "geo-analysis"])
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    assert main(["install", "--project", str(root)]) == 2
    assert "the venv project's environment has no ipykernel" in capsys.readouterr().err


def test_cwd_starts_the_kernel_in_the_project_whatever_the_client(
    uv_project, user_kernels, tmp_path
):
    """A notebook elsewhere reads a project file by a relative path: nbclient starts the
    kernel in the notebook's dir, --cwd moves it to the project's (no wrapper process)."""
    give_ipykernel(uv_project / ".venv")
    (uv_project / "data.txt").write_text("from the project\n")
    assert main(["install", "geo", "--project", str(uv_project), "--cwd"]) == 0
    argv = _spec(user_kernels, "geo")["argv"]
    assert argv[0] == str(uv_project / ".venv" / "bin" / "python")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("print(open('data.txt').read().strip())"),
        nbformat.v4.new_code_cell("print('os' in globals(), len(_ih))"),  # nothing left behind
    ]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    client = NotebookClient(
        notebook, kernel_name="geo", timeout=60, resources={"metadata": {"path": str(elsewhere)}}
    )
    client.execute()
    printed = [cell["outputs"][0]["text"].strip() for cell in notebook.cells]
    assert printed == ["from the project", "False 3"]

    # Walk R: apply made such a spec again without --cwd (it is in no record, only in argv).
    document = tmp_path / "geo.json"
    assert main(["export", "geo", "-o", str(document)]) == 0
    shutil.rmtree(user_kernels / "geo")
    assert main(["apply", str(document)]) == 0
    assert _spec(user_kernels, "geo")["argv"] == argv


def test_a_poetry_projects_kernel_finds_poetrys_own_env(
    tmp_path, tools_offline, user_kernels, capsys
):
    """Poetry keeps the env in its cache dir: `poetry env info -p` says where. When the env
    is removed (`poetry env remove`), the doctor says the interpreter is gone."""
    root = tmp_path / "poetry-geo"
    root.mkdir()
    _tool("poetry", "init", "-n", "--name", "poetry-geo", "--python", ">=3.10", cwd=root)
    _tool("poetry", "env", "use", sys.executable, cwd=root)
    _tool("poetry", "lock", cwd=root)
    prefix = Path(_tool("poetry", "env", "info", "-p", cwd=root))
    assert prefix.is_relative_to(tmp_path / "poetry-cache")
    give_ipykernel(prefix)
    assert main(["install", "--project", str(root)]) == 0
    spec = _spec(user_kernels, "poetry-geo")
    assert spec["metadata"]["kernelmagic"]["project"]["tool"] == "poetry"
    assert run_in_kernel("poetry-geo")["prefix"] == str(prefix)
    document = tmp_path / "kernels.json"
    assert main(["export", "poetry-geo", "-o", str(document)]) == 0
    capsys.readouterr()
    # Where it is not installed yet (as it is here, apply leaves it and runs nothing).
    elsewhere = ["--prefix", str(tmp_path / "elsewhere")]
    assert main(["apply", str(document), "--dry-run", *elsewhere]) == 0
    assert f"poetry env info -p (in {root}: asks poetry" in capsys.readouterr().out
    shutil.rmtree(prefix)
    capsys.readouterr()
    assert main(["doctor", "poetry-geo", "--json"]) == 1
    kinds = {
        p["kind"]: p for p in json.loads(capsys.readouterr().out)["specs"]["poetry-geo"]["problems"]
    }
    assert "is gone" in kinds["project-drift"]["message"]
    # Its env removed, Poetry names none: walk J saw "the poetry project's environment its
    # environment does not exist yet".
    _tool("poetry", "env", "remove", "--all", cwd=root)
    capsys.readouterr()
    assert main(["refresh", "poetry-geo"]) == 2
    err = capsys.readouterr().err
    assert "the poetry project's environment does not exist yet; make it: cd " in err, err
    assert "poetry install" in err


def test_a_pixi_project_gets_what_pixi_activation_sets(tmp_path, user_kernels, monkeypatch):
    """pixi stand-in: `pixi shell-hook --json` prints the variables pixi's activation sets
    (its activation scripts' included) for `.pixi/envs/default`, a real venv here."""
    root = tmp_path / "pixi-geo"
    prefix = root / ".pixi" / "envs" / "default"
    make_venv(prefix, with_ipykernel=True)
    (root / "pixi.toml").write_text('[workspace]\nname = "Pixi Geo"\nchannels = []\n')
    (root / "pixi.lock").write_text("version: 6\n")
    stand_in = tmp_path / "bin" / "pixi"
    stand_in.parent.mkdir()
    monkeypatch.setenv("PATH", f"{stand_in.parent}:{os.environ['PATH']}")
    variables = {  # pixi adds to the PATH it is run with
        "CONDA_PREFIX": str(prefix),
        "PATH": f"{prefix}/bin:{os.environ['PATH']}",
        "PIXI_PROJECT_NAME": "Pixi Geo",
        "GDAL_DATA": f"{prefix}/share/gdal",
    }
    stand_in.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        [ "$1 $2" = "shell-hook --json" ] || {{ echo "unexpected: $*" >&2; exit 2; }}
        [ "$PWD" = "{root}" ] || {{ echo "not in the project" >&2; exit 2; }}
        echo '{json.dumps({"environment_variables": variables})}'
        """)
    )
    stand_in.chmod(0o755)
    assert main(["install", "--project", str(root)]) == 0
    spec = _spec(user_kernels, "pixi-geo")
    assert spec["argv"][0] == str(prefix / "bin" / "python")
    assert spec["env"]["GDAL_DATA"] == f"{prefix}/share/gdal"
    assert spec["env"]["CONDA_PREFIX"] == str(prefix)
    assert spec["env"]["PATH"] == f"{prefix}/bin:${{PATH}}"
    assert spec["metadata"]["kernelmagic"]["project"]["tool"] == "pixi"


def test_a_conda_environment_yml_names_the_env(tmp_path, user_kernels, fake_conda):
    root = tmp_path / "conda-geo"
    root.mkdir()
    (root / "environment.yml").write_text("name: geo\ndependencies:\n  - python=3.11\n")
    assert main(["install", "--project", str(root)]) == 0
    spec = _spec(user_kernels, "geo")
    assert spec["argv"][0] == str(fake_conda / "bin" / "python")
    assert spec["env"]["GDAL_DATA"] == f"{fake_conda}/share/gdal"
    record = spec["metadata"]["kernelmagic"]["project"]
    assert (record["tool"], record["lockfile"]) == ("conda", str(root / "environment.yml"))


def test_apply_shows_what_a_project_entry_runs(uv_project, user_kernels, tmp_path, capsys):
    give_ipykernel(uv_project / ".venv")
    assert main(["install", "geo", "--project", str(uv_project)]) == 0
    document = tmp_path / "kernels.json"
    assert main(["export", "geo", "-o", str(document)]) == 0
    shutil.rmtree(user_kernels / "geo")
    capsys.readouterr()
    assert main(["apply", str(document), "--dry-run"]) == 0
    runs = capsys.readouterr().out.split("runs:\n", 1)[1].splitlines()
    # exactly what runs: uv's environment is a directory, so only its python is asked
    # (the review once listed poetry's, pdm's, hatch's and pixi's commands for every tool)
    assert [line.strip() for line in runs if line.startswith("    ")] == [
        "the uv environment's python -c (asks its prefix, version and whether it has ipykernel)"
    ]
    assert main(["apply", str(document)]) == 0
    assert _spec(user_kernels, "geo")["metadata"]["kernelmagic"]["project"]["tool"] == "uv"


def test_the_magic_names_the_spec_after_the_project(ip, uv_project, user_kernels, monkeypatch):
    give_ipykernel(uv_project / ".venv")
    monkeypatch.chdir(uv_project)
    ip.run_line_magic("kernel_install", "--project")
    assert _spec(user_kernels, "geo-analysis")["argv"][0] == str(uv_project / ".venv/bin/python")


def test_a_fifo_in_a_shared_project_hangs_nothing(tmp_path, user_kernels, tools_offline):
    """A project dir others can write (a shared one) holds a FIFO where pyproject.toml and
    the lockfile should be: install --project and the doctor's drift check read neither
    (a FIFO is never waited on, as for kernel.json), and finish."""
    root = tmp_path / "shared-project"
    root.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(root / ".venv")], check=True)
    give_ipykernel(root / ".venv")
    (root / "uv.lock").write_text("version = 1\n")
    cli = [sys.executable, "-m", "kernelmagic"]
    done = subprocess.run(
        [*cli, "install", "--project", str(root)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    (root / "uv.lock").unlink()
    os.mkfifo(root / "uv.lock")  # the doctor compares the lockfile with the recorded digest
    os.mkfifo(root / "pyproject.toml")
    for argv in (["doctor", "shared-project"], ["install", "again", "--project", str(root)]):
        done = subprocess.run([*cli, *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode in (0, 1), done.stderr
    doctor = [*cli, "doctor", "shared-project"]
    said = subprocess.run(doctor, capture_output=True, text=True, timeout=60).stdout
    assert "uv.lock" in said  # no lockfile to read is drift: the spec says what it was made from


# --- issue 34: drift the doctor could not see ---------------------------------------------------


def _venv_project(root: Path) -> Path:
    root.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    give_ipykernel(root / ".venv")
    return root


def _doctor_problems(capsys, name: str) -> dict[str, dict]:
    capsys.readouterr()
    main(["doctor", name, "--json"])
    problems = json.loads(capsys.readouterr().out)["specs"][name]["problems"]
    return {p["kind"]: p for p in problems}


def test_a_lockfile_too_large_to_read_is_drift_unknown(
    tmp_path, user_kernels, tools_offline, capsys
):
    """Item 10: a uv.lock over 16 MiB got lock_digest null and was never reported."""
    root = _venv_project(tmp_path / "big-lock")
    with (root / "uv.lock").open("wb") as lock:
        lock.truncate(16 * 2**20 + 1)  # sparse: its size alone says it is not read
    assert main(["install", "--project", str(root)]) == 0
    kinds = _doctor_problems(capsys, "big-lock")
    note = kinds["project-drift-unknown"]
    assert note["severity"] == "note" and "larger than 16 MiB" in note["message"]
    assert "project-drift" not in kinds


def test_a_uv_workspace_member_runs_in_the_workspaces_environment(
    tmp_path, user_kernels, tools_offline, capsys
):
    """Walk J: `install --project packages/member-a` of a uv workspace was refused: "the
    environment .../member-a/.venv does not exist yet; make it: uv sync", forever (uv keeps
    one .venv and uv.lock for the workspace, at its root)."""
    root = tmp_path / "ws"
    root.mkdir()
    _tool("uv", "init", "--bare", "--name", "wsroot", "--python", sys.executable, cwd=root)
    with (root / "pyproject.toml").open("a") as pyproject:
        pyproject.write('\n[tool.uv.workspace]\nmembers = ["packages/*"]\n')
    member = root / "packages" / "member-a"
    member.mkdir(parents=True)
    _tool("uv", "init", "--bare", "--name", "member-a", "--python", sys.executable, cwd=member)
    _tool("uv", "sync", "--python", sys.executable, cwd=root)
    give_ipykernel(root / ".venv")
    assert not (member / ".venv").exists()
    assert main(["install", "--project", str(member)]) == 0, capsys.readouterr().err
    spec = _spec(user_kernels, "member-a")
    assert spec["argv"][0] == str(root / ".venv" / "bin" / "python")
    assert spec["metadata"]["kernelmagic"]["project"]["lockfile"] == str(root / "uv.lock")
    assert run_in_kernel("member-a")["prefix"] == str(root / ".venv")


def test_a_lockfile_made_after_the_spec_is_drift(tmp_path, user_kernels, tools_offline, capsys):
    """Walk J: `uv init` + `uv venv` + ipykernel, then `install --project`: no uv.lock yet,
    so nothing was recorded, and neither the lock uv made later nor any change after it was
    ever drift."""
    for name, made_by in (("young", "venv"), ("young-uv", "uv")):  # a uv venv: a uv project
        root = tmp_path / name
        root.mkdir()
        _tool("uv", "init", "--bare", "--name", name, "--python", sys.executable, cwd=root)
        if made_by == "uv":
            _tool("uv", "venv", "--python", sys.executable, cwd=root)
        else:
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")])
        give_ipykernel(root / ".venv")
        assert main(["install", "--project", str(root)]) == 0
        assert _spec(user_kernels, name)["metadata"]["kernelmagic"]["project"]["tool"] == made_by
        assert "project-drift" not in _doctor_problems(capsys, name)
        _tool("uv", "lock", "--python", sys.executable, cwd=root)
        drift = _doctor_problems(capsys, name)["project-drift"]
        assert f"its lockfile {root / 'uv.lock'} was made since the spec was" in drift["message"]
        assert main(["refresh", name]) == 0
        assert "project-drift" not in _doctor_problems(capsys, name)


def test_a_broken_environment_is_said_broken_with_the_command_that_makes_it(
    tmp_path, user_kernels, tools_offline, capsys
):
    """Walk J: a project whose interpreter is gone (its base Python removed) or missing (an
    empty .venv) was refused as "has no ipykernel; add it: .venv/bin/python -m pip install
    ipykernel", a command that cannot run there."""
    empty = tmp_path / "empty"
    (empty / ".venv").mkdir(parents=True)
    (empty / "pyproject.toml").write_text('[project]\nname = "empty"\n')
    dead = _venv_project(tmp_path / "dead")
    python = dead / ".venv" / "bin" / "python"
    python.unlink()
    python.symlink_to(tmp_path / "removed-python3.11")
    for root, state in ((empty, "is missing"), (dead, "does not run")):
        capsys.readouterr()
        assert main(["install", "--project", str(root)]) == 2
        err = capsys.readouterr().err
        assert f"environment is broken: {root / '.venv' / 'bin' / 'python'} {state}" in err, err
        assert f"make it again: cd {root} && python3 -m venv --clear .venv" in err
        assert "ipykernel" not in err


def test_a_venv_swapped_for_another_on_the_same_base_is_drift(
    tmp_path, user_kernels, tools_offline, capsys
):
    """Item 11: another venv put in place of .venv runs the same base interpreter, so the
    interpreter's target did not change; the environment did."""
    root = _venv_project(tmp_path / "swapped")
    assert main(["install", "--project", str(root)]) == 0
    assert "project-drift" not in _doctor_problems(capsys, "swapped")
    other = _venv_project(tmp_path / "elsewhere") / ".venv"
    (root / ".venv").rename(tmp_path / "old-venv")
    other.rename(root / ".venv")
    drift = _doctor_problems(capsys, "swapped")["project-drift"]
    assert f"its environment {root / '.venv'} was replaced" in drift["message"]
    assert main(["refresh", "swapped"]) == 0
    assert "project-drift" not in _doctor_problems(capsys, "swapped")


def test_an_empty_path_entry_never_runs_a_tool_planted_in_the_project(
    tmp_path, user_kernels, monkeypatch, capsys
):
    """Item 9: the tool runs in the project's dir, where an empty PATH entry (or '.') named
    a `pdm` that another member of a shared project put there."""
    root = tmp_path / "shared"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "shared"\n[tool.pdm]\n')
    marker = tmp_path / "planted-pdm-ran"
    (root / "pdm").write_text(f"#!/bin/sh\ntouch {marker}\necho /nowhere/bin/python\n")
    (root / "pdm").chmod(0o755)
    for path in (f":{os.environ['PATH']}", f".:{os.environ['PATH']}", f"{os.environ['PATH']}:"):
        monkeypatch.setenv("PATH", path)
        capsys.readouterr()
        assert main(["install", "--project", str(root)]) == 1  # a failure: walk V
        assert "pdm is not on PATH" in capsys.readouterr().err
        assert not marker.exists(), path


def test_a_project_found_above_the_dir_given_is_named_and_its_venv_is_its_own(
    user_kernels, tmp_path, capsys
):
    """`install --project ~/work` took a `venv` two levels up without a word, and for a
    `venv` (not `.venv`) without ipykernel said to run `.venv/bin/python -m pip`."""
    root = tmp_path / "above"
    make_venv(root / "venv", with_ipykernel=False)
    start = root / "home" / "work"
    start.mkdir(parents=True)
    assert main(["install", "--project", str(start)]) == 2
    assert capsys.readouterr().err == (
        "kernelmagic: error: the venv project's environment has no ipykernel; add it: "
        f"cd {root} && venv/bin/python -m pip install ipykernel\n"
    )
    give_ipykernel(root / "venv")
    assert main(["install", "--project", str(start)]) == 0
    assert capsys.readouterr().out.startswith(f"The venv project at {root}:\n")
