"""Many users, one cluster (issue 34): the safety rules cover everything a command runs,
reads and writes. Each test is named after the item it covers and failed on the code before
it. The multi-user ones run as two real users made with ``useradd`` (root only)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from conftest import FIGURES
from helpers import group_of_mine, make_venv, write_spec
from jupyter_client.manager import KernelManager

from kernelmagic.frontends.cli import main
from kernelmagic.storage import atomic

KERNEL = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
ELSEWHERE = {"name": "gone", "display_name": "Gone", "language": "python"}


@pytest.fixture
def plain(user_kernels):
    write_spec(user_kernels, "plain", {"argv": KERNEL, "display_name": "Plain",
                                        "language": "python"})  # fmt: skip
    return user_kernels


def _notebook(path: Path, kernelspec: dict | None = ELSEWHERE, mode: int | None = None) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    if kernelspec is not None:
        notebook.metadata["kernelspec"] = kernelspec
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    if mode is not None:
        path.chmod(mode)
    return path


def _run(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out + out.err


# --- 1, 15: backups and rewrites keep the notebook's mode, never go through a link ----------


def test_1_a_planted_link_is_not_followed_into_a_private_notebook(plain, tmp_path, capsys):
    private = _notebook(tmp_path / "home" / "private.ipynb", mode=0o600)
    before = private.read_bytes()
    shared = tmp_path / "project"
    shared.mkdir()
    (shared / "x.ipynb").symlink_to(private)
    status, out = _run(capsys, "notebook", str(shared), "--fix", "plain", "--rewrite")
    assert status == 1, out
    assert "symbolic link" in out and "not rewritten" in out
    assert sorted(p.name for p in shared.iterdir()) == ["x.ipynb"]  # no .bak of it
    assert (shared / "x.ipynb").is_symlink() and private.read_bytes() == before


def test_1_the_backup_of_an_owner_only_notebook_is_owner_only(plain, tmp_path, capsys):
    notebook = _notebook(tmp_path / "private.ipynb", mode=0o600)
    before = notebook.read_bytes()
    status, out = _run(capsys, "notebook", str(notebook), "--fix", "plain", "--rewrite")
    assert status == 0, out
    backup = tmp_path / "private.ipynb.bak"
    assert backup.read_bytes() == before
    assert backup.stat().st_mode & 0o7777 == 0o600
    assert notebook.stat().st_mode & 0o7777 == 0o600


def test_15_a_rewrite_copies_no_id_bits_and_no_world_write(plain, tmp_path, capsys):
    notebook = _notebook(tmp_path / "odd.ipynb", mode=0o6666)
    status, out = _run(capsys, "notebook", str(notebook), "--fix", "plain", "--rewrite")
    assert status == 0, out
    assert notebook.stat().st_mode & 0o7777 == 0o664
    assert (tmp_path / "odd.ipynb.bak").stat().st_mode & 0o7777 == 0o664


# --- 8: the backup is what was read, from the descriptor opened once ------------------------

_SWAP_MID_REWRITE = textwrap.dedent("""\
    import os, sys
    from kernelmagic.frontends.cli import main
    from kernelmagic.storage import notebook_files
    path, how = sys.argv[1], sys.argv[2]
    real = notebook_files.with_kernelspec

    def swapped(*args, **kwargs):
        # Another user renames something else over the notebook between read and backup.
        os.unlink(path)
        if how == "fifo":
            os.mkfifo(path)
        else:
            with open(path, "w") as planted:
                planted.write("swapped in")
        return real(*args, **kwargs)

    notebook_files.with_kernelspec = swapped
    sys.exit(main(["notebook", path, "--fix", "plain", "--rewrite"]))
""")


@pytest.mark.parametrize("how", ["file", "fifo"])
def test_8_the_backup_is_the_notebook_read_not_what_was_swapped_in(plain, tmp_path, how):
    notebook = _notebook(tmp_path / "a.ipynb")
    before = notebook.read_bytes()
    done = subprocess.run(
        [sys.executable, "-c", _SWAP_MID_REWRITE, str(notebook), how],
        capture_output=True,
        text=True,
        timeout=60,  # before: a FIFO swapped in hung the backup's blocking read
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "a.ipynb.bak").read_bytes() == before
    assert nbformat.read(notebook, as_version=4).metadata.kernelspec.name == "plain"


# --- 6: plain --fix never rewrites -----------------------------------------------------------


@pytest.mark.parametrize("kernelspec", [None, {"name": "conda env:geo", "language": "python"}])
def test_6_plain_fix_leaves_a_notebook_naming_no_valid_name_alone(
    plain, tmp_path, capsys, kernelspec
):
    notebook = _notebook(tmp_path / "a.ipynb", kernelspec)
    before = notebook.read_bytes()
    status, out = _run(capsys, "notebook", str(notebook), "--fix", "plain")
    assert status == 1, out
    assert notebook.read_bytes() == before
    assert not (tmp_path / "a.ipynb.bak").exists()
    assert "--fix plain --rewrite" in out
    status, out = _run(capsys, "notebook", str(notebook), "--fix", "plain", "--rewrite")
    assert status == 0 and nbformat.read(notebook, as_version=4).metadata.kernelspec.name == "plain"


# --- 7: notebooks are read capped, their cells never decoded -------------------------------


def test_7_a_notebook_past_the_cap_is_refused_by_its_size(plain, tmp_path, capsys):
    giant = tmp_path / "giant.ipynb"
    with giant.open("wb") as f:
        f.truncate(64 * 2**20 + 1)  # sparse: costs no disk, and must cost no read
    status, out = _run(capsys, "notebook", str(giant))
    assert status == 1
    assert "larger than 64 MiB, more than kernelmagic reads" in out, out


# VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec.
_READ_AND_PEAK = (
    "import re, sys\n"
    "from kernelmagic.storage import notebook_files\n"
    "notebook_files.read(sys.argv[1])\n"
    "print(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1))\n"
)


def _peak_rss_mib(path: Path) -> float:
    done = subprocess.run([sys.executable, "-c", _READ_AND_PEAK, str(path)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return int(done.stdout) / 1024


def test_7_a_large_notebook_costs_about_its_size_in_memory(tmp_path):
    small = nbformat.v4.new_notebook(metadata={"kernelspec": ELSEWHERE})
    nbformat.write(small, tmp_path / "small.ipynb")
    big = nbformat.v4.new_notebook(metadata={"kernelspec": ELSEWHERE})
    output = nbformat.v4.new_output("stream", text=[f"line {i}\n" for i in range(2000)])
    big.cells = [nbformat.v4.new_code_cell("x", outputs=[output]) for _ in range(600)]
    nbformat.write(big, tmp_path / "big.ipynb")
    size_mib = (tmp_path / "big.ipynb").stat().st_size / 2**20
    grown_mib = _peak_rss_mib(tmp_path / "big.ipynb") - _peak_rss_mib(tmp_path / "small.ipynb")
    FIGURES.append(f"a notebook of {size_mib:.0f} MiB read with {grown_mib:.0f} MiB more peak RSS")
    # Its bytes and its text are all that is held; decoded, the cells took 5 times its size.
    assert grown_mib < 3 * size_mib


# --- 16: a duplicate metadata key is never 'fixed' -----------------------------------------


def test_16_a_duplicate_metadata_key_is_not_reported_fixed(plain, tmp_path, capsys):
    text = (
        '{"cells": [], "metadata": {"kernelspec": {"name": "gone"}}, "nbformat": 4,\n'
        ' "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "gone", '
        '"language": "python"}}}\n'
    )
    notebook = tmp_path / "dup.ipynb"
    notebook.write_text(text)
    status, out = _run(capsys, "notebook", str(notebook), "--fix", "plain", "--rewrite")
    assert status == 1, out
    assert "2 'metadata' members" in out and "fixed" not in out.splitlines()[1].split()[2]
    assert notebook.read_text() == text
    assert json.loads(notebook.read_text())["metadata"]["kernelspec"]["name"] == "gone"


# --- 12: a team kernel, maintained by every member of its group ------------------------------

TEAM = "km34team"
MEMBERS = ("km34ann", "km34bob")


@pytest.fixture(scope="module")
def team(other_users_python):
    """Two real users in one group, made for the test with useradd (root only), and the
    interpreter they run kernelmagic with."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make two users with useradd")
    if shutil.which("useradd") is None:
        pytest.skip("no useradd here to make two users")
    made = []
    if subprocess.run(["getent", "group", TEAM], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", TEAM], check=True)
        made.append(("groupdel", TEAM))
    for user in MEMBERS:
        if subprocess.run(["id", user], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--no-create-home", "--user-group", "-G", TEAM, user],
                           check=True)  # fmt: skip
            made.insert(0, ("userdel", user))
        else:  # left by a run that was killed, perhaps not in the group any more
            subprocess.run(["usermod", "-a", "-G", TEAM, user], check=True)
    yield (
        {user: pwd.getpwnam(user) for user in MEMBERS},
        grp.getgrnam(TEAM).gr_gid,
        other_users_python,
    )
    for command, name in made:
        subprocess.run([command, name], capture_output=True)


@pytest.fixture
def project(team):
    """A cluster project space: root:TEAM 2775, reachable by both members."""
    base = Path(tempfile.mkdtemp(prefix="kernelmagic-team-"))
    base.chmod(0o755)
    shared = base / "project"
    shared.mkdir()
    os.chown(shared, 0, team[1])
    shared.chmod(0o2775)
    yield shared
    shutil.rmtree(base, ignore_errors=True)


def _as_member(team, user: str, shared: Path, program: str, *args: str) -> subprocess.Popen:
    """Start ``python -c PROGRAM ARGS`` as ``user`` (in the team, umask 002, as members set
    it), with the team's kernels dir on JUPYTER_PATH; its stdout and stderr go to pipes."""
    users, team_gid, python = team
    account = users[user]
    home = shared.parent / f"home-{user}"
    if not home.exists():
        home.mkdir()
        os.chown(home, account.pw_uid, account.pw_gid)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_PATH": str(shared / "share" / "jupyter"),
        "JUPYTER_PREFER_ENV_PATH": "0",
    }
    return subprocess.Popen(
        [str(python), "-c", program, *args],
        env=env,
        cwd=home,
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[team_gid],
        umask=0o002,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


RUN_KERNELMAGIC = (
    "import sys; from kernelmagic.frontends.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _run_as(team, user: str, shared: Path, *argv: str) -> tuple[int, str]:
    """``kernelmagic ARGV`` as ``user``: its exit status and what it said on stderr."""
    member = _as_member(team, user, shared, RUN_KERNELMAGIC, *argv)
    _, said = member.communicate(timeout=120)
    return member.returncode, said


def _team_specs(team, project: Path, *names: str) -> Path:
    """``names`` installed by the first member as the group's specs in ``project``; their
    kernels dir."""
    where = ["--prefix", str(project), "--group", TEAM]
    for name in names:
        status, err = _run_as(
            team, MEMBERS[0], project, "install", name, "--capture", "none", *where
        )
        assert status == 0, err
    return project / "share" / "jupyter" / "kernels"


def test_12_every_member_edits_patches_undoes_and_removes_a_team_kernel(team, project):
    ann, bob = MEMBERS
    kernels = _team_specs(team, project, "t2", "t3")
    status, err = _run_as(team, ann, project, "remove", "t3")  # ann's removal comes first
    assert status == 0, err
    for argv in (["env", "-k", "t2", "X=1"], ["patch", "t2", "--display-name", "Team"],
                 ["patch", "t2", "--undo"], ["env", "-k", "t2", "Y=2"]):  # fmt: skip
        status, err = _run_as(team, bob, project, *argv)
        assert status == 0, (argv, err)
    status, err = _run_as(team, ann, project, "env", "-k", "t2", "Z=3")
    assert status == 0, err
    spec = json.loads((kernels / "t2" / "kernel.json").read_text())
    assert spec["env"] == {"X": "1", "Y": "2", "Z": "3"}
    assert spec["display_name"] != "Team"  # bob's undo held
    status, err = _run_as(team, bob, project, "remove", "t2")
    assert status == 0, err
    removed = kernels / ".kernelmagic-removed"
    assert sorted(p.name for p in removed.iterdir()) == ["t2", "t3"]
    assert removed.stat().st_mode & 0o7777 == 0o2770  # the group's, nobody else's
    assert (kernels / ".t2.lock").stat().st_mode & 0o777 == 0o644


def test_12_a_removed_specs_dir_an_older_kernelmagic_kept_to_one_member_is_said(team, project):
    """Walk R: kernelmagic 0.2 made `.kernelmagic-removed` owner-only (2700). Another
    member's removal said it "is not a directory; remove it", and `remove --missing` removed
    nothing, said nothing and exited 0. The removal names the dir's owner and the chmod;
    `--missing` says which dead spec it could not remove, and exits 1."""
    ann, bob = MEMBERS
    kernels = _team_specs(team, project, "t4", "dead")
    status, err = _run_as(team, ann, project, "patch", "dead", "--argv-prefix", "/gone/wrapper")
    assert status == 0, err
    removed = kernels / ".kernelmagic-removed"
    removed.mkdir()
    os.chown(removed, team[0][ann].pw_uid, team[1])
    removed.chmod(0o2700)  # as 0.2 made it
    status, err = _run_as(team, bob, project, "remove", "t4")
    assert status == 1
    assert err == (
        f"kernelmagic: error: cannot use the dir of removed specs {removed}: it is {ann}'s and "
        f"only they can use it (mode 2700, from an older kernelmagic); ask them to run chmod "
        f"2770 {removed}\n"
    )
    status, err = _run_as(team, bob, project, "remove", "--missing")
    assert status == 1 and err.startswith("kernelmagic: error: could not remove 'dead': "), err
    assert f"{ann}'s" in err and err.count("\n") == 1
    assert {"t4", "dead"} <= {p.name for p in kernels.iterdir()}
    status, err = _run_as(team, ann, project, "remove", "t4")  # its owner's removal mends it
    assert status == 0, err
    assert removed.stat().st_mode & 0o7777 == 0o2770
    status, err = _run_as(team, bob, project, "remove", "--missing")
    assert status == 0, err
    assert not (kernels / "dead").exists()


def test_12_a_lock_an_older_kernelmagic_kept_to_one_member_is_said(team, project):
    """Walk R: kernelmagic 0.2 under umask 077 left a member's `.NAME.lock` 0600; another
    member's write said "cannot write KERNELS: permission denied", blaming the dir."""
    ann, bob = MEMBERS
    lock = _team_specs(team, project, "t5") / ".t5.lock"
    lock.chmod(0o600)  # as 0.2 left it
    status, err = _run_as(team, bob, project, "env", "-k", "t5", "X=1")
    assert (status, err) == (1, (
        f"kernelmagic: error: cannot use the lock {lock}: it is {ann}'s and only they can use "
        f"it (mode 600, from an older kernelmagic); ask them to run chmod 644 {lock}\n"
    ))  # fmt: skip
    lock.chmod(0o644)
    assert _run_as(team, bob, project, "env", "-k", "t5", "X=1") == (0, "")


PLANT_LINK = "import os, sys; os.symlink(sys.argv[1], sys.argv[2])"


def test_12_a_members_planted_links_turn_no_write_of_another_member(team, project):
    """A member (bob) plants links in the team's kernels dir, pointing into ann's private
    home: ann's own commands then moved her private dir into the shared dir (a crashed
    write's recovery followed a planted work dir), restored a planted backup link to her
    private notes as the group-readable kernel.json, and changed her private spec through a
    spec dir linked to it. A file bob made writable by all stayed so after ann's write."""
    ann, bob = MEMBERS
    where = ["--prefix", str(project), "--group", TEAM]
    kernels = project / "share" / "jupyter" / "kernels"
    assert _run_as(team, ann, project, "install", "geo", "--capture", "none", *where)[0] == 0
    status, err = _run_as(team, ann, project, "install", "mine", "--capture", "none", "--user")
    assert status == 0, err
    home = project.parent / f"home-{ann}"
    mine = home / "data" / "kernels" / "mine" / "kernel.json"
    mine_before = mine.read_bytes()
    private, notes = home / "private", home / "notes.txt"
    (private / "old").mkdir(parents=True)
    (private / "old" / "draft.txt").write_text("secret draft")
    notes.write_text("password=hunter2")
    for path in (private, private / "old", private / "old" / "draft.txt", notes):
        os.chown(path, team[0][ann].pw_uid, -1)
    home.chmod(0o700)
    plants = {
        kernels / ".kernelmagic-newspec+x": private,
        kernels / "geo" / ".kernel.json.backup-99": notes,
        kernels / "hlink": mine.parent,
    }
    for link, target in plants.items():
        planted = _as_member(team, bob, project, PLANT_LINK, str(target), str(link))
        assert planted.wait(timeout=60) == 0, planted.communicate()

    status, err = _run_as(team, ann, project, "install", "newspec", "--capture", "none", *where)
    assert status == 0, err
    assert (private / "old" / "draft.txt").read_text() == "secret draft"
    assert not (kernels / "newspec" / "draft.txt").exists()
    for argv in (["env", "-k", "geo", "X=1"], ["patch", "geo", "--undo"]):
        status, err = _run_as(team, ann, project, *argv)
        assert status == 0, (argv, err)
    restored = (kernels / "geo" / "kernel.json").read_text()
    assert "hunter2" not in restored and '"X"' not in restored  # the real backup came back
    status, err = _run_as(team, ann, project, "env", "-k", "hlink", "X=1")
    assert status == 1 and f"a symbolic link that {bob} made" in err, err
    assert len(err.strip().splitlines()) == 1 and mine.read_bytes() == mine_before

    assert _run_as(team, bob, project, "env", "-k", "geo", "B=1")[0] == 0  # now bob's file
    opened = _as_member(team, bob, project, "import os, sys; os.chmod(sys.argv[1], 0o666)",
                        str(kernels / "geo" / "kernel.json"))  # fmt: skip
    assert opened.wait(timeout=60) == 0
    assert _run_as(team, ann, project, "env", "-k", "geo", "A=1")[0] == 0
    assert (kernels / "geo" / "kernel.json").stat().st_mode & 0o002 == 0


def test_12_a_group_spec_under_a_new_prefix_is_reachable_by_the_group(team, project):
    """``--group`` with a prefix whose share/jupyter/kernels did not exist: ann (umask 077
    here) made those dirs hers alone, and bob never saw the spec it said was shared."""
    ann, bob = MEMBERS
    users, team_gid, _python = team
    prefix = project / "p3"
    prefix.mkdir()
    os.chown(prefix, users[ann].pw_uid, team_gid)
    program = "import os, sys; os.umask(0o077); " + RUN_KERNELMAGIC.split("; ", 1)[1]
    where = ["--prefix", str(prefix), "--group", TEAM]
    made = _as_member(team, ann, project, program, "install", "g3", "--capture", "none", *where)
    assert made.wait(timeout=120) == 0, made.communicate()
    for directory in ("share", "share/jupyter", "share/jupyter/kernels"):
        info = (prefix / directory).stat()
        assert info.st_gid == team_gid and info.st_mode & 0o2050 == 0o2050, directory
    seen = subprocess.run(
        ["runuser", "-u", bob, "--", "ls", str(prefix / "share/jupyter/kernels/g3")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert seen.returncode == 0 and "kernel.json" in seen.stdout, seen.stderr


# A member's writer: adds PREFIX_0, PREFIX_1, ... to the team spec, one write each, until
# killed.
WRITER = """
import itertools, sys
from kernelmagic import specs
from kernelmagic.domain.shell_syntax import EnvChanges

prefix = sys.argv[1]
print("ready", flush=True)  # imported: the round's clock starts once every writer is here
for i in itertools.count():
    specs.patch_spec("team", specs.SpecEdit(env=EnvChanges({f"{prefix}_{i}": "x" * 500})))
"""


def test_12_two_members_write_one_team_spec_concurrently_with_kills(team, project):
    status, err = _run_as(team, MEMBERS[0], project, "install", "team", "--capture", "none",
                          "--prefix", str(project), "--group", TEAM)  # fmt: skip
    assert status == 0, err
    spec_dir = project / "share" / "jupyter" / "kernels" / "team"
    kernel_json = spec_dir / "kernel.json"
    writers, rounds = 3, 8
    rng = random.Random(20261203)
    kills = reads = 0
    prefixes = []
    for round_ in range(rounds):
        members = []
        for user in MEMBERS:
            for w in range(writers):
                prefixes.append(f"{user.upper()}_W{w}_R{round_}")
                members.append(_as_member(team, user, project, WRITER, prefixes[-1]))
        for member in members:  # a busy machine takes seconds to start an interpreter
            assert member.stdout.readline() == "ready\n", member.communicate()[1]
        deadline = time.monotonic() + rng.uniform(1.0, 2.0)
        while time.monotonic() < deadline:
            json.loads(kernel_json.read_text())  # never torn, never empty
            reads += 1
            time.sleep(0.005)  # leave the two cores to the writers
        for member in members:
            member.send_signal(signal.SIGKILL)
        for member in members:
            _, said = member.communicate()
            assert member.returncode == -signal.SIGKILL, f"a writer ended by itself: {said}"
            kills += 1
    for user in MEMBERS:  # the next write of each member cleans what killed writers left
        status, err = _run_as(team, user, project, "env", "-k", "team", f"LAST_{user}=1")
        assert status == 0, err
    env = json.loads(kernel_json.read_text())["env"]
    kept = 0
    for prefix in prefixes:
        numbers = sorted(int(k.rsplit("_", 1)[1]) for k in env if k.startswith(prefix + "_"))
        assert numbers == list(range(len(numbers))), f"{prefix}: a completed write was lost"
        kept += len(numbers)
    for user in MEMBERS:
        assert any(k.startswith(user.upper()) for k in env), f"{user} wrote nothing"
    leftovers = [p.name for p in spec_dir.iterdir() if p.name.endswith(atomic.TEMP_SUFFIX)]
    assert leftovers == []
    assert not [p for p in spec_dir.parent.iterdir() if p.name.startswith(".kernelmagic-team+")]
    FIGURES.append(
        f"team spec, 2 members x {writers} writers x {rounds} rounds: {kills} SIGKILLs, "
        f"{kept} writes kept in order, 0 lost, {reads} reads all whole JSON, no temp files"
    )


# --- 3, 5: nothing is run that others can change, above the spec or around its program --------

PLANTED = "import pathlib; pathlib.Path({marker!r}).write_text('ran')\n"


def _group_writable(path: Path) -> None:
    """Writable by a group with other members than this user (a project's group)."""
    if os.geteuid() != 0 and not [g for g in os.getgroups() if g != os.getgid()]:
        pytest.skip("needs a group of one's own with other members (or root) to share with")
    os.chown(path, -1, group_of_mine().gr_gid)
    path.chmod(0o2775)


@pytest.mark.parametrize(
    "how",
    ["pth-in-venv", "pythonpath", "ancestor", "project", "link-hop", "ld-preload", "ipythondir"],
)
def test_3_5_the_doctor_runs_nothing_others_can_change(
    user_kernels, tmp_path, monkeypatch, capsys, how
):
    marker = tmp_path / "planted-code-ran"
    venv = make_venv(tmp_path / "project" / ".venv", with_ipykernel=True)
    site = next(venv.glob("lib/python*/site-packages"))
    plant = tmp_path / "plant"
    plant.mkdir()
    spec = {"argv": [str(venv / "bin" / "python"), *KERNEL[1:]], "display_name": "V",
            "language": "python"}  # fmt: skip
    kernels = user_kernels
    if how == "pth-in-venv":  # a group member dropped a .pth into the project's venv
        (site / "zz-planted.pth").write_text(
            f"import pathlib; pathlib.Path({str(marker)!r}).touch()\n"
        )
        _group_writable(site)
        changeable = site
    elif how == "pythonpath":  # a sitecustomize.py in a directory the spec puts first
        (plant / "sitecustomize.py").write_text(PLANTED.format(marker=str(marker)))
        _group_writable(plant)
        spec["env"] = {"PYTHONPATH": str(plant)}
        changeable = plant
    elif how == "ancestor":  # share/ of a group project: share/jupyter can be swapped
        (plant / "sitecustomize.py").write_text(PLANTED.format(marker=str(marker)))
        spec["env"] = {"PYTHONPATH": str(plant)}
        share = tmp_path / "group-project" / "share"
        kernels = share / "jupyter" / "kernels"
        kernels.mkdir(parents=True)
        _group_writable(share)
        monkeypatch.setenv("JUPYTER_PATH", str(share / "jupyter"))
        changeable = share
    elif how == "link-hop":  # PYTHONPATH reaches its dir through a link in a group's dir
        (plant / "sitecustomize.py").write_text(PLANTED.format(marker=str(marker)))
        hop = tmp_path / "hop"
        hop.mkdir()
        (hop / "second").symlink_to(plant)
        (tmp_path / "first").symlink_to(hop / "second")
        _group_writable(hop)  # a member can point "second" anywhere: not on either real path
        spec["env"] = {"PYTHONPATH": str(tmp_path / "first")}
        changeable = hop
    elif how == "ld-preload":  # a library the loader puts into every process the spec starts
        (plant / "x.so").write_bytes(b"")  # its constructor would run as you
        _group_writable(plant)
        spec["env"] = {"LD_PRELOAD": f"libm.so.6 {plant / 'x.so'}"}
        changeable = plant
    elif how == "ipythondir":  # a profile whose startup files the kernel runs (was run)
        (plant / "profile_default" / "startup").mkdir(parents=True)
        _group_writable(plant)
        spec["env"] = {"IPYTHONDIR": str(plant)}
        changeable = plant
    else:  # the project the spec was made from, where its tool and files live
        root = str(tmp_path / "project")
        record = {"source": "project", "project_dir": root, "project": {"root": root}}
        spec["metadata"] = {"kernelmagic": record}
        (site / "zz-planted.pth").write_text(
            f"import pathlib; pathlib.Path({str(marker)!r}).touch()\n"
        )
        _group_writable(tmp_path / "project")
        changeable = tmp_path / "project"
    write_spec(kernels, "victim", spec)
    capsys.readouterr()
    main(["doctor", "victim", "--json"])
    problems = json.loads(capsys.readouterr().out)["specs"]["victim"]["problems"]
    not_probed = [p for p in problems if p["kind"] == "not-probed"]
    assert not_probed, problems
    assert f"{changeable} is writable by others (owner root" in not_probed[0]["message"] or (
        f"{changeable} is writable by others (owner" in not_probed[0]["message"]
    )
    assert "drwxrwsr-x" in not_probed[0]["message"] and "--trust" in not_probed[0]["message"]
    assert not marker.exists()
    assert main(["shell", "victim", "--", sys.executable, "-c", "pass"]) == 1
    assert "--trust" in capsys.readouterr().err and not marker.exists()
    main(["doctor", "victim", "--trust"])
    if how not in ("project", "ld-preload", "ipythondir"):  # the probe runs no kernel
        assert marker.exists()  # named and trusted: it ran


# --- 4: the in-place restart never re-reads a connection file others can replace ---------------


def _execute(client, code: str) -> str:
    said: list[str] = []

    def keep(message: dict) -> None:
        content = message["content"]
        said.append(content.get("text", "") or " ".join(content.get("traceback", [])))

    client.execute_interactive(code, timeout=60, output_hook=keep)
    return "".join(said)


def test_4_activate_refuses_a_connection_file_others_could_replace(user_kernels, tmp_path):
    """A connection file a client wrote where a group can write and nothing is sticky: a
    member could rename a file of their own over it before the restarted process reads its
    key and ports again."""
    runtime = tmp_path / "client-dir"
    runtime.mkdir()
    _group_writable(runtime)
    manager = KernelManager(kernel_name="python3", connection_file=str(runtime / "k.json"))
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        # jupyter_client made it sticky (and ipykernel 6 writes the file again as it starts,
        # making it sticky again); it cannot where the dir is not the user's (a group's
        # project dir), which root cannot show: take the bit away once the kernel is up.
        runtime.chmod(0o2775)
        first = _execute(client, "x = 41\n%load_ext kernelmagic\nimport os; print(os.getpid(), x)")
        said = _execute(client, "%%kernel_activate\nexport KM_X=1")
        then = _execute(client, "print(os.getpid(), x)")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert "cannot restart this kernel in place" in said
    assert "another user could replace its connection file" in said
    assert f"{runtime} is writable by others" in said
    assert then == first  # the same process, its memory kept: nothing was restarted
