"""install --project --scan DIR (issue 39): every project below a dir a kernel, one per pixi
environment, without registering each.

uv and Poetry run for real and offline, as in test_projects.py: `uv init`, `uv lock`, `uv
sync`, `poetry init`, `poetry lock`, `poetry env use` make a template once per session, which
the tree's projects copy (a venv works where it is copied to: its prefix is where its
pyvenv.cfg is); ipykernel reaches their venvs through a .pth file. pixi cannot be installed
here: the stand-in below extends test_projects.py's to `pixi shell-hook --json -e ENV`,
printing, for `.pixi/envs/ENV` (a real venv), the variables pixi's activation sets. conda is
conftest's stand-in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import give_ipykernel, run_in_kernel

from kernelmagic.frontends.cli import main

BIN = Path(sys.executable).parent
PIXI_STAND_IN = textwrap.dedent("""\
    #!/bin/sh
    [ "$1 $2" = "shell-hook --json" ] || { echo "unexpected: $*" >&2; exit 2; }
    env=default
    [ "$3" = "-e" ] && env="$4"
    prefix="$(pwd)/.pixi/envs/$env"
    [ -x "$prefix/bin/python" ] || { echo "environment $env is not installed" >&2; exit 1; }
    printf '{"environment_variables": {"CONDA_PREFIX": "%s", "PATH": "%s/bin:%s", '\\
    '"PIXI_ENVIRONMENT_NAME": "%s", "GDAL_DATA": "%s/share/gdal"}}\\n' \\
        "$prefix" "$prefix" "$PATH" "$env" "$prefix"
    """)


def _tool(*command: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(BIN / command[0]), *command[1:]], cwd=cwd, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _offline(caches: Path) -> dict[str, str]:
    return {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "UV_OFFLINE": "1",
        "UV_CACHE_DIR": str(caches / "uv"),
        "UV_PYTHON_DOWNLOADS": "never",
        "POETRY_CACHE_DIR": str(caches / "poetry"),
        "POETRY_CONFIG_DIR": str(caches / "poetry-config"),
    }


@pytest.fixture(scope="session")
def templates(tmp_path_factory) -> dict[str, Path]:
    """A uv project (uv.lock, .venv with ipykernel) and a Poetry one (poetry.lock), made by
    the tools once; the trees copy them."""
    root = tmp_path_factory.mktemp("templates")
    env = {**os.environ, **_offline(root / "caches")}
    env.pop("VIRTUAL_ENV", None)
    uv = root / "uv"
    uv.mkdir()
    _tool("uv", "init", "--bare", "--name", "uv-template", "--python", sys.executable, cwd=uv,
          env=env)  # fmt: skip
    _tool("uv", "sync", "--python", sys.executable, cwd=uv, env=env)
    give_ipykernel(uv / ".venv")
    poetry = root / "poetry"
    poetry.mkdir()
    _tool("poetry", "init", "-n", "--name", "poetry-template", "--python", ">=3.10", cwd=poetry,
          env=env)  # fmt: skip
    _tool("poetry", "lock", cwd=poetry, env=env)
    return {"uv": uv, "poetry": poetry}


@pytest.fixture
def offline(tmp_path, monkeypatch) -> dict[str, str]:
    """The tools offline, with caches of this test's own; the pixi stand-in on PATH."""
    stand_in = tmp_path / "bin" / "pixi"
    stand_in.parent.mkdir()
    stand_in.write_text(PIXI_STAND_IN)
    stand_in.chmod(0o755)
    env = _offline(tmp_path / "caches")
    env["PATH"] = f"{stand_in.parent}:{env['PATH']}"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "PIXI_ENVIRONMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    return {**os.environ}


def _uv(templates: dict[str, Path], where: Path, name: str, *, venv: bool = True) -> Path:
    where.mkdir(parents=True)
    for file in ("pyproject.toml", "uv.lock"):
        text = (templates["uv"] / file).read_text().replace("uv-template", name)
        (where / file).write_text(text)
    if venv:
        shutil.copytree(templates["uv"] / ".venv", where / ".venv", symlinks=True)
    return where


def _poetry(templates: dict[str, Path], where: Path, name: str, *, venv: bool = True) -> Path:
    """A Poetry project; its env in the project (.venv, which Poetry uses where it exists)."""
    where.mkdir(parents=True)
    for file in ("pyproject.toml", "poetry.lock"):
        text = (templates["poetry"] / file).read_text().replace("poetry-template", name)
        (where / file).write_text(text)
    if venv:
        shutil.copytree(templates["uv"] / ".venv", where / ".venv", symlinks=True)
    return where


def _bare_venv(templates: dict[str, Path], where: Path) -> Path:
    shutil.copytree(templates["uv"] / ".venv", where / ".venv", symlinks=True)
    return where


def _pixi(
    templates: dict[str, Path], where: Path, name: str, envs: dict[str, bool], extra: str = ""
) -> Path:
    """A pixi project: its manifest, a pixi.lock with a block per environment, and
    `.pixi/envs/ENV` (a real venv) for each environment marked True."""
    where.mkdir(parents=True)
    (where / "pixi.toml").write_text(f'[workspace]\nname = "{name}"\nchannels = []\n{extra}')
    lock = ["version: 6", "environments:"]
    for env in envs:
        lock += [f"  {env}:", "    packages:", "      linux-64:", f"      - conda: {env}-python"]
    (where / "pixi.lock").write_text("\n".join([*lock, "packages: []", ""]))
    for env, made in envs.items():
        if made:
            prefix = where / ".pixi" / "envs" / env
            shutil.copytree(templates["uv"] / ".venv", prefix, symlinks=True)
            (prefix / "share" / "gdal").mkdir(parents=True)
    return where


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p): (p.lstat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
        for p in sorted(root.rglob("*"))
    }


def _spec(user_kernels: Path, name: str) -> dict:
    return json.loads((user_kernels / name / "kernel.json").read_text())


def test_a_tree_of_28_projects_gives_24_kernels_and_4_commands(
    templates, offline, tmp_path, user_kernels, fake_conda, capsys
):
    """24 ready projects (uv, Poetry, bare venvs, pixi, conda) and 4 that are not, in a
    two-level tree: 24 specs, 4 commands in the tools' own words. A second scan writes no
    byte; a new project keeps the others' names; a deleted project's spec goes with
    remove --missing (Poetry's env in its cache outlives the project)."""
    top = tmp_path / "work"
    ready: dict[str, Path] = {}  # spec name -> the project's env prefix
    for group in ("group-a", "group-b"):
        for i in range(6):
            name = f"{group}-uv-{i}"
            ready[name] = _uv(templates, top / group / f"uv{i}", name) / ".venv"
        # the same project name twice: each qualified by its group
        ready[f"{group}-analysis"] = _uv(templates, top / group / "analysis", "analysis") / ".venv"
    ready["analysis"] = _uv(templates, top / "analysis", "analysis") / ".venv"  # first level
    for i in range(3):
        name = f"poetry-{i}"
        ready[name] = _poetry(templates, top / "group-b" / f"p{i}", name) / ".venv"
    for i in range(3):
        ready[f"notebooks{i}"] = _bare_venv(templates, top / "group-a" / f"notebooks{i}") / ".venv"
    for i in range(2):
        where = _pixi(templates, top / "group-b" / f"px{i}", f"Pixi {i}", {"default": True})
        ready[f"pixi-{i}"] = where / ".pixi" / "envs" / "default"
    conda = top / "group-a" / "geo-conda"
    conda.mkdir()
    (conda / "environment.yml").write_text("name: geo\ndependencies:\n  - python=3.11\n")
    ready["geo"] = fake_conda
    # a registered project from before: kept, not made twice
    assert main(["install", "mine", "--project", str(top / "group-a" / "uv0")]) == 0
    ready.pop("group-a-uv-0")
    assert len(ready) == 23  # + mine = 24 ready projects
    # hidden, vendored, environments and symlinks are not entered; too deep is not seen
    _uv(templates, top / "group-a" / "node_modules" / "pkg", "vendored")
    _uv(templates, top / ".cache" / "x", "hidden")
    (top / "group-b" / "outside").symlink_to(templates["uv"], target_is_directory=True)
    _uv(templates, top / "group-a" / "deep" / "er" / "still", "too-deep")
    # not ready: no env yet, no ipykernel, a Poetry project without env, a pixi env to make
    new = _uv(templates, top / "group-b" / "new-uv", "new-uv", venv=False)
    bare = _uv(templates, top / "group-a" / "bare-uv", "bare-uv", venv=False)
    subprocess.run([str(BIN / "uv"), "venv", "--python", sys.executable], cwd=bare, check=True,
                   capture_output=True, env=offline)  # fmt: skip
    unmade_poetry = _poetry(templates, top / "group-a" / "p-new", "p-new", venv=False)
    unmade_pixi = _pixi(templates, top / "group-b" / "px-new", "px-new", {"default": False})

    capsys.readouterr()
    assert main(["install", "--project", "--scan", str(top)]) == 0
    out = capsys.readouterr().out
    made = sorted(p.name for p in user_kernels.iterdir() if (p / "kernel.json").exists())
    assert made == sorted([*ready, "mine"]), out
    for name, prefix in ready.items():
        spec = _spec(user_kernels, name)
        assert spec["argv"][0] == str(prefix / "bin" / "python"), name
        assert spec["metadata"]["kernelmagic"]["scan_root"] == str(top)
        assert "kernelmagic-launch" not in json.dumps(spec["argv"])  # a plain spec
    assert "scan_root" not in _spec(user_kernels, "mine")["metadata"]["kernelmagic"]
    assert _spec(user_kernels, "pixi-1")["env"]["GDAL_DATA"] == f"{ready['pixi-1']}/share/gdal"
    commands = [
        f"cd {new} && uv sync",
        f"cd {bare} && uv add --dev ipykernel",
        f"cd {unmade_poetry} && poetry install",
        f"cd {unmade_pixi} && pixi install -e default",
    ]
    for command in commands:
        assert command in out, out
    assert "4 needs" in out and "23 installed" in out and "1 registered" in out, out
    assert "vendored" not in out and "hidden" not in out and "too-deep" not in out
    assert run_in_kernel("group-b-analysis")["prefix"] == str(ready["group-b-analysis"])

    # a second scan: every spec unchanged, not a byte (nor a date) written
    before = _snapshot(user_kernels.parent)
    assert main(["install", "--project", "--scan", str(top)]) == 0
    assert "23 unchanged" in capsys.readouterr().out
    assert _snapshot(user_kernels.parent) == before

    # list marks what the scan made
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert f"scan of {top}" in listed.split("group-a-uv-1", 1)[1].splitlines()[0]
    assert f"scan of {top}" not in listed.split("mine", 1)[1].splitlines()[0]

    # a new project of a name already given: the others keep theirs
    _uv(templates, top / "group-c" / "analysis", "analysis")
    assert main(["install", "--project", "--scan", str(top)]) == 0
    assert (user_kernels / "group-c-analysis").exists() and (user_kernels / "analysis").exists()
    assert _spec(user_kernels, "analysis")["argv"][0] == str(ready["analysis"] / "bin/python")


def test_a_deleted_projects_spec_goes_with_remove_missing(
    templates, offline, tmp_path, user_kernels, capsys
):
    """Poetry keeps the env in its cache: deleting the project leaves the interpreter, so
    the spec's program exists; the project is gone, and remove --missing prunes it. The doctor
    says so, and remove --project-gone prunes only what a scan made."""
    top = tmp_path / "work"
    root = _poetry(templates, top / "team" / "cached", "cached", venv=False)
    _tool("poetry", "env", "use", sys.executable, cwd=root, env=offline)
    prefix = Path(_tool("poetry", "env", "info", "-p", cwd=root, env=offline))
    assert prefix.is_relative_to(tmp_path / "caches" / "poetry")
    give_ipykernel(prefix)
    kept = _uv(templates, top / "team" / "kept", "kept")
    elsewhere = _uv(templates, tmp_path / "own" / "by-hand", "by-hand")
    assert main(["install", "--project", "--scan", str(top)]) == 0
    assert main(["install", "--project", str(elsewhere)]) == 0
    assert _spec(user_kernels, "cached")["argv"][0] == str(prefix / "bin" / "python")

    shutil.rmtree(root)
    shutil.rmtree(elsewhere)
    capsys.readouterr()
    assert main(["doctor", "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["specs"]
    (gone,) = [p for p in problems["cached"]["problems"] if p["kind"] == "project-gone"]
    assert gone["fix"] == "remove --project-gone" and str(root) in gone["message"]
    assert not [p for p in problems["kept"]["problems"] if p["kind"] == "project-gone"]
    assert main(["install", "--project", "--scan", str(top)]) == 0
    assert "their project gone: cached" in capsys.readouterr().out

    assert main(["remove", "--project-gone", "--dry-run"]) == 0
    assert (user_kernels / "cached").exists()
    assert main(["remove", "--missing"]) == 0
    assert not (user_kernels / "cached").exists()
    assert not (user_kernels / "by-hand").exists()  # --missing: any spec whose project is gone
    assert (user_kernels / "kept").exists()
    assert kept.exists()


def test_a_scan_into_a_prefix_works_on_that_prefix(
    templates, offline, tmp_path, user_kernels, capsys
):
    """Walk T: a scan judged what it had made from Jupyter's path, not from where it writes:
    `--scan DIR --prefix P` took the user's own scan's specs of the projects for done (P
    stayed empty), and where P is off Jupyter's path its second scan failed on every name it
    had written ("already exists; pass --replace"). It said nothing of JUPYTER_PATH either.
    A P off Jupyter's path (a team's share) has its own names."""
    top = tmp_path / "work"
    geo = _uv(templates, top / "geo", "geo")
    _uv(templates, top / "hydro", "hydro")
    assert main(["install", "--project", "--scan", str(top)]) == 0  # the user's own scan
    share = tmp_path / "team"
    kernels = share / "share" / "jupyter" / "kernels"
    scan = ["install", "--project", "--scan", str(top), "--prefix", str(share)]
    capsys.readouterr()
    assert main(scan) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in kernels.glob("[!.]*")) == ["geo", "hydro"], out
    assert f"Jupyter does not look in {kernels}" in out, out
    assert f"export JUPYTER_PATH={share / 'share' / 'jupyter'}" in out, out
    before = {p.name: (p / "kernel.json").read_bytes() for p in kernels.glob("[!.]*")}
    assert main(scan) == 0  # the second scan: nothing to do
    out = capsys.readouterr().out
    assert "2 unchanged" in out and "Jupyter does not look" not in out, out
    assert {p.name: (p / "kernel.json").read_bytes() for p in kernels.glob("[!.]*")} == before
    mine = (user_kernels / "geo" / "kernel.json").read_bytes()
    with (geo / "uv.lock").open("a") as lock:  # drift: the scan's spec in P is refreshed
        lock.write("\n# changed\n")
    assert main(scan) == 0
    out = capsys.readouterr().out
    assert "1 refreshed" in out and "1 unchanged" in out, out
    assert (kernels / "geo" / "kernel.json").read_bytes() != before["geo"]
    assert (user_kernels / "geo" / "kernel.json").read_bytes() == mine


def test_remove_project_gone_prunes_only_what_a_scan_made(
    templates, offline, tmp_path, user_kernels, capsys
):
    top = tmp_path / "work"
    scanned = _bare_venv(templates, top / "scanned")
    by_hand = _bare_venv(templates, tmp_path / "by-hand")
    external = tmp_path / "env"
    shutil.copytree(templates["uv"] / ".venv", external, symlinks=True)
    for project in (scanned, by_hand):  # their env outside: the program stays
        shutil.rmtree(project / ".venv")
        (project / ".venv").symlink_to(external, target_is_directory=True)
    assert main(["install", "--project", "--scan", str(top)]) == 0
    assert main(["install", "--project", str(by_hand)]) == 0
    for spec in ("scanned", "by-hand"):  # the venv's python through the project's link
        assert _spec(user_kernels, spec)["argv"][0].startswith(str(tmp_path))
    shutil.rmtree(scanned)
    shutil.rmtree(by_hand)
    capsys.readouterr()
    assert main(["remove", "--project-gone"]) == 0
    assert "Removed kernel spec" in capsys.readouterr().out
    assert not (user_kernels / "scanned").exists()
    assert (user_kernels / "by-hand").exists()


def test_one_spec_per_pixi_environment_each_with_its_own_lock(
    templates, offline, tmp_path, user_kernels, capsys
):
    """`proj` and `proj-gpu`, each with what `pixi shell-hook --json -e ENV` sets; a change
    to the gpu environment's lock drifts its spec only, and the next scan refreshes it."""
    top = tmp_path / "work"
    extra = '[feature.cuda.dependencies]\ncuda = "*"\n\n[environments]\ngpu = ["cuda"]\n'
    root = _pixi(templates, top / "geo", "Geo", {"default": True, "gpu": True}, extra)
    assert main(["install", "--project", "--scan", str(top), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would install" in out and not user_kernels.exists()
    assert main(["install", "--project", "--scan", str(top)]) == 0
    for name, env in (("geo", "default"), ("geo-gpu", "gpu")):
        spec = _spec(user_kernels, name)
        prefix = root / ".pixi" / "envs" / env
        assert spec["argv"][0] == str(prefix / "bin" / "python")
        assert spec["env"]["PIXI_ENVIRONMENT_NAME"] == env
        assert spec["env"]["PATH"] == f"{prefix}/bin:${{PATH}}"
        assert spec["metadata"]["kernelmagic"]["project"]["environment"] == env
    digests = {n: _spec(user_kernels, n)["metadata"]["kernelmagic"]["project"]["lock_digest"]
               for n in ("geo", "geo-gpu")}  # fmt: skip
    assert digests["geo"] != digests["geo-gpu"]
    assert run_in_kernel("geo-gpu")["prefix"] == str(root / ".pixi" / "envs" / "gpu")

    lock = root / "pixi.lock"
    lock.write_text(lock.read_text().replace("gpu-python", "gpu-python-3.12"))
    capsys.readouterr()
    assert main(["doctor", "--json"]) == 1
    specs = json.loads(capsys.readouterr().out)["specs"]
    kinds = {n: [p["kind"] for p in specs[n]["problems"] if "project" in p["kind"]] for n in specs}
    assert (kinds["geo"], kinds["geo-gpu"]) == ([], ["project-drift"])
    for name in ("geo", "geo-gpu"):  # plain specs: every client family sees and starts them
        verdicts = specs[name]["clients"]
        assert verdicts and all(v["works"] for v in verdicts.values()), verdicts
    assert main(["install", "--project", "--scan", str(top)]) == 0
    out = capsys.readouterr().out
    assert "1 refreshed" in out and "1 unchanged" in out, out
    assert main(["doctor", "geo-gpu"]) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a project to another user needs root")
def test_a_project_another_user_owns_is_not_run(templates, offline, tmp_path, user_kernels, capsys):
    """A shared tree: a project another user can change is listed, nothing of it runs, and
    it takes no name (walk T: theirs, named as yours, made yours `mine-2` for good)."""
    top = tmp_path / "shared"
    theirs = _uv(templates, top / "a-theirs", "mine")  # found first
    _uv(templates, top / "mine", "mine")
    os.chown(theirs, 65534, 65534)
    assert main(["install", "--project", "--scan", str(top)]) == 0
    out = capsys.readouterr().out
    assert f"{theirs} is owned by another user (owner nobody, mode drwx" in out, out
    assert f"; install --project {theirs} once you have read it" in out, out
    assert sorted(p.name for p in user_kernels.glob("[!.]*")) == ["mine"]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")
def test_another_users_workspace_above_your_project_is_never_run(
    templates, offline, tmp_path, user_kernels, capsys
):
    """Walk T: in a shared tree (a sticky dir: anyone adds files, nobody replaces others'),
    another user's pyproject.toml listing every dir as a member of its uv workspace, and a
    .venv link beside it to their own venv, made your scan, `install --project` and
    `refresh` of your own project run their interpreter as you (its .pth ran), and wrote a
    spec that ran it at every start. The workspace and its files are judged as the
    project's own are: another user's are refused, naming them, and nothing of theirs runs."""
    top = tmp_path / "shared"
    mine = _uv(templates, top / "mine", "mine")
    also = _uv(templates, top / "also", "also")  # yours too, not installed yet
    top.chmod(0o1777)
    assert main(["install", "--project", str(mine)]) == 0
    before = (user_kernels / "mine" / "kernel.json").read_bytes()
    # The colleague's plant (uid 65534): a venv of theirs that marks whoever runs it.
    ran = tmp_path / "ran-as-you"
    theirs = _bare_venv(templates, tmp_path / "theirs")
    (site,) = (theirs / ".venv" / "lib").glob("python*/site-packages")
    (site / "zz-planted.pth").write_text(f"import pathlib; pathlib.Path({str(ran)!r}).touch()\n")
    (top / "pyproject.toml").write_text(
        '[project]\nname = "ws"\n\n[tool.uv.workspace]\nmembers = ["*"]\n'
    )
    (top / ".venv").symlink_to(theirs / ".venv")
    for path in (theirs, *theirs.rglob("*"), top / "pyproject.toml", top / ".venv"):
        os.lchown(path, 65534, 65534)
    capsys.readouterr()
    assert main(["install", "--project", "--scan", str(top)]) == 0  # their project: skipped
    out = capsys.readouterr().out
    assert f"{top}/pyproject.toml is owned by another user (owner nobody" in out, out
    assert main(["install", "--project", "--scan", str(also)]) == 1  # yours: refused
    out = capsys.readouterr().out
    assert f"{also} is a member of the uv workspace at {top}" in out, out
    assert main(["install", "mine2", "--project", str(mine)]) == 1
    err = capsys.readouterr().err
    assert "kernelmagic runs no environment others can change" in err, err
    assert f"--python {top}/.venv/bin/python" in err, err
    assert main(["refresh", "mine"]) == 1
    assert "is owned by another user" in capsys.readouterr().err
    assert not ran.exists(), "the other user's interpreter ran as you"
    assert (user_kernels / "mine" / "kernel.json").read_bytes() == before
    assert sorted(p.name for p in user_kernels.glob("[!.]*")) == ["mine"]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")
def test_another_users_link_in_your_own_project_is_never_run(
    templates, offline, tmp_path, user_kernels, capsys
):
    """Walk T2: in your own project in a sticky (or group-writable) dir, another user adds a
    `.venv` link to their venv: `install --project` of your project ran it as you, and a
    `refresh` of your spec (made on your own `venv/`) moved the spec onto it and ran it.
    Both are refused now, naming the link and its owner; nothing of theirs runs."""
    ran = tmp_path / "ran-as-you"
    theirs = _bare_venv(templates, tmp_path / "theirs")
    (site,) = (theirs / ".venv" / "lib").glob("python*/site-packages")
    (site / "zz-planted.pth").write_text(f"import pathlib; pathlib.Path({str(ran)!r}).touch()\n")
    for path in (theirs, *theirs.rglob("*")):
        os.lchown(path, 65534, 65534)
    fresh = tmp_path / "fresh"  # yours, no environment yet
    fresh.mkdir(mode=0o1777)
    (fresh / "pyproject.toml").write_text('[project]\nname = "fresh"\n')
    own = tmp_path / "own"  # yours, with your own venv/
    own.mkdir(mode=0o1777)
    (own / "pyproject.toml").write_text('[project]\nname = "own"\n')
    shutil.copytree(templates["uv"] / ".venv", own / "venv", symlinks=True)
    assert main(["install", "--project", str(own)]) == 0
    before = (user_kernels / "own" / "kernel.json").read_bytes()
    for project in (fresh, own):
        (project / ".venv").symlink_to(theirs / ".venv")
        os.lchown(project / ".venv", 65534, 65534)
    capsys.readouterr()
    assert main(["install", "--project", str(fresh)]) == 1
    err = capsys.readouterr().err
    assert f"{fresh}/.venv is owned by another user (owner nobody" in err, err
    assert "kernelmagic runs no environment another user put in your project" in err, err
    assert main(["refresh", "own"]) == 1
    assert f"{own}/.venv is owned by another user" in capsys.readouterr().err
    assert not ran.exists(), "the other user's interpreter ran as you"
    assert (user_kernels / "own" / "kernel.json").read_bytes() == before
    assert not (user_kernels / "fresh").exists()


def test_the_magic_scans_and_bad_combinations_are_refused(
    ip, templates, offline, tmp_path, user_kernels, capsys
):
    from IPython.core.error import UsageError

    top = tmp_path / "work"
    _uv(templates, top / "a" / "one", "one")
    _uv(templates, top / "a" / "b" / "c" / "two", "two")
    result = ip.run_line_magic("kernel_install", f"--project --scan {top} --depth 2")
    assert [e.name for e in result.entries] == ["one"]
    assert "1 installed" in str(result)
    for line, message in (
        (f"x --project --scan {top}", "it cannot go with NAME"),
        (f"--scan {top}", "--scan DIR goes with --project"),
        (f"--project {top} --scan {top}", "give --project without a DIR"),
        (f"--project --scan {top} --python {sys.executable}", "cannot go with --python"),
        (f"--project --scan {top / 'nowhere'}", "no such directory"),
        (f"--project --scan {top} --depth -1", "--depth must be 0 or more"),
        ("--project --depth 2", "--depth goes with --project --scan DIR"),
    ):
        with pytest.raises(UsageError, match=message):
            ip.run_line_magic("kernel_install", line)
    assert sorted(p.name for p in user_kernels.glob("[!.]*")) == ["one"]


def test_pixi_environments_as_manifests_write_them(tmp_path):
    """pixi.toml's [environments] (plain, inline-table and quoted keys, a sub-table), or
    pyproject's [tool.pixi.environments]; default first; pixi.lock's block per environment."""
    from kernelmagic.domain import pixi_files

    manifest = tmp_path / "a"
    manifest.mkdir()
    (manifest / "pixi.toml").write_text(
        textwrap.dedent("""\
        [workspace]
        name = "a"
        [environments]
        gpu = ["cuda"]
        test = { features = ["test"], solve-group = "default" }
        "py-312" = [
          "py312",
        ]
        [environments.lint]
        features = ["lint"]
        [tasks]
        fmt = "ruff format"
        """)
    )
    assert pixi_files.environments(str(manifest)) == ["default", "gpu", "test", "py-312", "lint"]
    pyproject = tmp_path / "b"
    pyproject.mkdir()
    (pyproject / "pyproject.toml").write_text(
        '[project]\nname = "b"\n[tool.pixi.environments]\ndefault = ["x"]\ncuda = ["cuda"]\n'
    )
    assert pixi_files.environments(str(pyproject)) == ["default", "cuda"]
    lock = "version: 6\nenvironments:\n  default:\n    a: 1\n  'gpu':\n    b: 2\npackages:\n- c\n"
    assert pixi_files.lock_section(lock, "gpu") == "    b: 2"
    assert pixi_files.lock_section(lock, "default") == "    a: 1"
    assert pixi_files.lock_section(lock, "none") == ""


@pytest.mark.parametrize(
    "flags", [["--bind", "/x"], ["--runtime", "podman"], ["--container-option=--nv"]]
)
def test_container_options_are_refused_with_a_scan(ip, flags, tmp_path, user_kernels, capsys):
    """They mean nothing without --container, which a scan cannot take: refused as without a
    scan, not ignored."""
    from IPython.core.error import UsageError

    (tmp_path / "work").mkdir()
    argv = ["install", "--project", "--scan", str(tmp_path / "work"), "--dry-run", *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot go with {flags[0].split('=')[0]}" in err, err
    with pytest.raises(UsageError, match=f"cannot go with {flags[0].split('=')[0]}"):
        ip.run_line_magic("kernel_install", " ".join(argv[1:]))
    assert not list(user_kernels.glob("[!.]*"))


def test_a_tree_scanned_through_a_link_is_the_same_tree(
    templates, offline, tmp_path, user_kernels, capsys
):
    """Walk J: `~/work` is often a link (to /gpfs/...). A scan through the link made a second
    spec for every project (`outer-2`, ...), where a second scan writes no byte."""
    top = tmp_path / "work"
    _uv(templates, top / "groupa" / "analysis", "analysis")
    _poetry(templates, top / "outer", "outer")
    assert main(["install", "--project", "--scan", str(top)]) == 0
    before = _snapshot(user_kernels)
    link = tmp_path / "work-link"
    link.symlink_to(top)
    capsys.readouterr()
    assert main(["install", "--project", "--scan", str(link)]) == 0
    said = capsys.readouterr().out
    assert "installed" not in said and "2 unchanged" in said, said
    assert _snapshot(user_kernels) == before
    assert main(["install", "--project", "--scan", str(link / "outer"), "--dry-run"]) == 0
    assert "would install" not in capsys.readouterr().out
