"""The trust rule's shared walk (issue 38): one ``TrustWalk`` over many paths answers as a
fresh walk of each would, in any order and from several threads, and keeps nothing that
could let a path others can change through."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
from helpers import make_venv, write_spec

from kernelmagic.domain import ownership
from kernelmagic.domain.ownership import TrustWalk, others_can_change_above
from kernelmagic.frontends.cli import main
from kernelmagic.storage import lookups

pytestmark = pytest.mark.skipif(
    not hasattr(os, "O_PATH"), reason="the walk on descriptors is Linux's"
)


def _tree(root: Path) -> list[str]:
    """Directories safe and not, sticky ones, links (absolute, relative, through ``..``,
    to places others can change), files, and paths that are not there: every path to ask."""
    root.chmod(0o755)
    safe = root / "safe" / "kernels"
    safe.mkdir(parents=True)
    shared = root / "shared" / "kernels"
    shared.mkdir(parents=True)
    (root / "shared").chmod(0o777)
    sticky = root / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "mine").mkdir()
    group = root / "group"
    group.mkdir()
    group.chmod(0o775)
    asked = []
    for kernels in (safe, shared, sticky / "mine", group):
        for i in range(3):
            spec = kernels / f"spec{i}"
            spec.mkdir()
            (spec / "kernel.json").write_text("{}")
            asked += [str(spec), str(spec / "kernel.json"), str(spec / "gone" / "x")]
    (safe / "spec0" / "kernel.json").chmod(0o666)
    (safe / "to-shared").symlink_to(shared / "spec0")
    (safe / "up-and-over").symlink_to("../../shared/kernels/spec1")
    (safe / "to-safe").symlink_to("spec1")
    (shared / "to-safe").symlink_to(safe / "spec2")
    (safe / "loop").symlink_to("loop")
    for link in ("to-shared", "up-and-over", "to-safe", "loop"):
        asked += [str(safe / link), str(safe / link / "kernel.json")]
    asked += [str(shared / "to-safe" / "kernel.json"), str(safe / ".." / "kernels" / "spec1")]
    return asked


def test_one_walk_answers_as_a_fresh_walk_of_each_path(tmp_path):
    asked = _tree(tmp_path)
    expected = {path: others_can_change_above([path]) for path in asked}
    assert any(expected.values()) and not all(expected.values())  # both kinds are asked
    rng = random.Random(38)
    for _ in range(5):
        order = asked * 2
        rng.shuffle(order)
        with TrustWalk() as walk:
            assert {path: walk.why([path]) for path in order} == expected


def test_one_walk_answers_the_same_from_many_threads(tmp_path, monkeypatch):
    asked = _tree(tmp_path)
    expected = [others_can_change_above([path]) for path in asked]
    monkeypatch.setattr(lookups, "PROBES", 1)  # every call taken for a slow one: threads
    monkeypatch.setattr(lookups, "SLOW_CALL", 0.0)
    for _ in range(5):
        with TrustWalk() as walk:
            assert lookups.overlapped(lambda path: walk.why([path]), asked * 3) == expected * 3


def test_a_path_missing_at_first_is_judged_when_it_appears(tmp_path):
    """A missing path is nothing to run, and not remembered: someone may create it (in a
    sticky /tmp, another user may) before the walk is asked again."""
    tmp_path.chmod(0o755)
    later = tmp_path / "later" / "sitecustomize.py"
    with TrustWalk() as walk:
        assert walk.why([str(later)]) is None
        later.parent.mkdir()
        later.parent.chmod(0o777)
        later.write_text("")
        assert "writable by others" in walk.why([str(later)])


def test_a_kept_directory_is_reopened_only_if_it_is_the_one_judged(tmp_path, monkeypatch):
    """With no descriptor kept, a judged directory is opened by name and used only when its
    device and inode are the ones the walk saw; a directory put in its place is walked."""
    monkeypatch.setattr(ownership, "_KEPT_OPEN", 0)
    tmp_path.chmod(0o755)
    kernels = tmp_path / "kernels"
    (kernels / "a").mkdir(parents=True)
    with TrustWalk() as walk:
        assert walk.why([str(kernels / "a")]) is None
        kernels.rename(tmp_path / "old")
        kernels.mkdir()
        (kernels / "a").mkdir()
        (kernels / "a").chmod(0o777)
        assert "writable by others" in walk.why([str(kernels / "a" / "kernel.json")])


def test_a_venv_removed_at_any_instant_of_the_doctor_is_a_finding_not_an_error(
    tmp_path, user_kernels, capsys, monkeypatch
):
    """CI's red run of the Slurm suite: the doctor, run as the job's epilog was removing the
    job's TMPDIR, printed no report, only "No such file or directory". A link the walk had
    looked at (the venv's ``bin/python``, its ``lib64``) was read again by its name, gone by
    then; so was one in ``os.path.realpath`` (CPython issue 97566). The epilog's ``rm -rf``
    is put after each filesystem call of the doctor's in turn: every run gives its report."""
    tmp_path.chmod(0o755)
    template = make_venv(tmp_path / "template", with_ipykernel=False)
    venv = tmp_path / "job42" / "venv"
    argv = [str(venv / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    env = {"VIRTUAL_ENV": str(venv), "PATH": f"{venv}/bin:/usr/bin"}
    write_spec(user_kernels, "tmpk", {"argv": argv, "display_name": "t", "env": env})
    calls = {"made": 0, "remove_at": 0}

    def counted(call):
        def call_then_maybe_remove(*args, **kwargs):
            result = call(*args, **kwargs)
            calls["made"] += 1
            if calls["made"] == calls["remove_at"]:
                shutil.rmtree(venv, ignore_errors=True)
            return result

        return call_then_maybe_remove

    def doctor(remove_at: int) -> tuple[int, str, str]:
        shutil.rmtree(venv, ignore_errors=True)
        shutil.copytree(template, venv, symlinks=True)
        calls.update(made=0, remove_at=remove_at)
        with monkeypatch.context() as patched:
            for name in ("open", "stat", "lstat", "readlink", "scandir", "listdir", "access"):
                patched.setattr(os, name, counted(getattr(os, name)))
            status = main(["doctor", "tmpk", "--json"])
        return (status, *capsys.readouterr())

    untouched = json.loads(doctor(0)[1])["specs"]["tmpk"]["problems"]
    assert [p["kind"] for p in untouched] == ["launcher-import"]  # walked, probed: no ipykernel
    for remove_at in range(1, calls["made"] + 1):
        status, out, err = doctor(remove_at)
        assert out, f"removed after call {remove_at}: {err}"
        assert status in (0, 1) and json.loads(out)["specs"]["tmpk"], out
