"""Kernels for teams and for the next machine: export/apply, shared group kernels, and
`jupyter kernelmagic`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import group_of_mine, write_spec

from kernelmagic.frontends.cli import main
from kernelmagic.operations import doctor

COMPARED = ("argv", "env", "display_name", "language")


def spec_json(kernels: Path, name: str) -> dict:
    return json.loads((kernels / name / "kernel.json").read_text())


def snapshot(kernels: Path, names) -> dict:
    return {
        name: (
            {k: spec_json(kernels, name).get(k) for k in COMPARED},
            sorted(p.name for p in (kernels / name).iterdir() if not p.name.startswith(".")),
        )
        for name in names
    }


def test_export_remove_apply_brings_the_specs_back(ip, user_kernels, tmp_path, capsys):
    ip.run_line_magic("kernel_install", "here --capture none")
    ip.run_line_magic("kernel_env", "-k here BY_HAND='set by me'")
    ip.run_cell_magic(
        "kernel_install", f"snip --python {sys.executable}", "export GEO_HOME=/opt/geo\n"
    )
    ip.run_line_magic("kernel_clone", "snip snip-big --env OMP_NUM_THREADS=8")
    names = ["here", "snip", "snip-big"]
    before = snapshot(user_kernels, names)

    document = tmp_path / "team-kernels.txt"  # any name: apply reads the content
    assert main(["export", "here", "snip*", "-o", str(document)]) == 0
    doc = json.loads(document.read_text())
    by_name = {e["name"]: e for e in doc["specs"]}
    assert doc["format_version"] == 3
    # The record under provenance's own names: what metadata.kernelmagic calls each field.
    assert by_name["here"]["kernelmagic"]["explicit"] == ["BY_HAND"]
    assert by_name["here"]["env"] == {"BY_HAND": "set by me"}
    assert by_name["snip"]["kernelmagic"]["source"] == "snippet"
    assert by_name["snip"]["kernelmagic"]["explicit"] == []
    assert by_name["snip"]["env"] == {"GEO_HOME": "/opt/geo"}  # captured: for reference
    assert by_name["snip-big"]["kernelmagic"]["explicit"] == ["OMP_NUM_THREADS"]
    assert main(["remove", *names]) == 0

    assert main(["apply", str(document), "--dry-run"]) == 0
    assert not (user_kernels / "here").exists()
    assert main(["apply", str(document)]) == 0
    assert snapshot(user_kernels, names) == before

    # A hand edit is drift: --check names the spec and field, exits 1 and writes nothing.
    assert main(["env", "-k", "snip", "GEO_HOME=/elsewhere"]) == 0
    edited = (user_kernels / "snip" / "kernel.json").read_bytes()
    capsys.readouterr()
    assert main(["apply", str(document), "--check"]) == 1
    out = capsys.readouterr().out
    assert "snip (" in out and "): differs" in out and "env.GEO_HOME: /opt/geo -> /elsewhere" in out
    assert f"here ({user_kernels / 'here'}): as recorded" in out
    assert (user_kernels / "snip" / "kernel.json").read_bytes() == edited


def test_export_masks_secrets_and_apply_leaves_them_out(user_kernels, tmp_path, capsys):
    token = "ghp_" + "T" * 36
    assert main(["install", "sec", "--capture", "none", "--env", f"GITHUB_TOKEN={token}"]) == 0
    capsys.readouterr()
    assert main(["export", "sec"]) == 0
    text = capsys.readouterr().out
    assert token not in text
    doc = json.loads(text)
    assert doc["specs"][0]["secrets"] == ["GITHUB_TOKEN"]
    path = tmp_path / "doc.json"
    path.write_text(text)
    assert main(["remove", "sec"]) == 0
    assert main(["apply", str(path)]) == 0
    assert "GITHUB_TOKEN was a secret" in capsys.readouterr().out
    assert "GITHUB_TOKEN" not in spec_json(user_kernels, "sec").get("env", {})


def test_a_source_that_cannot_be_made_here_is_reported_not_half_made(
    user_kernels, tmp_path, capsys
):
    doc = {
        "format": "kernelmagic-export",
        "format_version": 1,
        "specs": [
            {
                "name": "gone",
                "location": "user",
                "kind": "python",
                "source": {"kind": "python", "python": "/no/such/python"},
            }
        ],
    }
    path = tmp_path / "d"
    path.write_text(json.dumps(doc))
    assert main(["apply", str(path)]) == 1
    assert "gone: not made here" in capsys.readouterr().out
    assert not (user_kernels / "gone").exists()
    path.write_text("{}")
    assert main(["apply", str(path)]) == 2


def test_a_group_kernel_is_group_owned_setgid_and_readable(tmp_path, capsys):
    group = group_of_mine()
    prefix = tmp_path / "shared"
    argv = ["install", "team", "--capture", "none", "--prefix", str(prefix)]
    argv += ["--group", group.gr_name]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"export JUPYTER_PATH={prefix / 'share' / 'jupyter'}" in out
    spec_dir = prefix / "share" / "jupyter" / "kernels" / "team"
    info = spec_dir.stat()
    assert info.st_gid == group.gr_gid and info.st_mode & stat.S_ISGID
    assert not info.st_mode & 0o002
    kernel_json = (spec_dir / "kernel.json").stat()
    assert kernel_json.st_gid == group.gr_gid and kernel_json.st_mode & 0o040
    assert not kernel_json.st_mode & 0o002

    # Members must be able to read it: the doctor says when they cannot.
    os.environ["JUPYTER_PATH"] = str(prefix / "share" / "jupyter")
    try:
        report = doctor.diagnose(["team"])
        assert report.healthy, [(p.kind, p.message) for p in report.diagnoses[0].problems]
        (spec_dir / "kernel.json").chmod(0o600)
        kinds = [p.kind for p in doctor.diagnose(["team"]).diagnoses[0].problems]
        assert "not-shared" in kinds
        (spec_dir / "kernel.json").chmod(0o640)

        # Walk R: layouts kernelmagic 0.2 left, which the doctor did not name. Its --group
        # under umask 077: a kernels dir members cannot enter.
        kernels = spec_dir.parent
        kernels.chmod(0o2700)
        (problem,) = doctor.diagnose(["team"]).diagnoses[0].problems
        assert problem.kind == "not-shared" and problem.value == str(kernels)
        assert f"chmod g+rX {kernels} && chmod -R g+rX {spec_dir}" in problem.message
        kernels.chmod(0o2750)
        # Its clone into the group's dir: a spec dir without the setgid bit.
        spec_dir.chmod(0o755)
        (problem,) = doctor.diagnose(["team"]).diagnoses[0].problems
        assert problem.kind == "not-shared" and problem.value == str(spec_dir)
        assert f"chgrp -R {group.gr_name} {spec_dir} && chmod g+s {spec_dir}" in problem.message
    finally:
        del os.environ["JUPYTER_PATH"]


def test_a_secret_is_not_shared_with_a_group_unless_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEPLOY_API_KEY", "k-123")
    group = group_of_mine().gr_name
    base = ["install", "t", "--capture", "all", "--prefix", str(tmp_path), "--group", group]
    assert main([*base, "--env", "DB_PASSWORD=x"]) == 2
    assert "looks secret" in capsys.readouterr().err
    assert main([*base, "--include", "DB_PASSWORD", "--env", "DB_PASSWORD=x"]) == 0
    assert main(["install", "u", "--capture", "none", "--group", "no-such-group-here"]) == 2


def test_jupyter_kernelmagic_is_the_same_tool(user_kernels):
    write_spec(user_kernels, "geo")
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "jupyter-kernelmagic").exists():
        pytest.fail(
            "jupyter-kernelmagic is not installed: reinstall the project (pip install -e .)"
        )
    ours = subprocess.run(
        [str(bin_dir / "kernelmagic"), "list", "--json"], capture_output=True, text=True
    )
    as_jupyter = subprocess.run(
        [str(bin_dir / "jupyter"), "kernelmagic", "list", "--json"], capture_output=True, text=True
    )
    assert as_jupyter.returncode == 0, as_jupyter.stderr
    assert json.loads(as_jupyter.stdout) == json.loads(ours.stdout)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda e: e["source"].update(colour="blue"), "unknown key(s) 'colour'"),
        (lambda e: e["source"].update(modules=["a"]), "'modules' must be text"),
        (lambda e: e.update(capture={"mode": "changed", "include": "A*"}), "capture.include"),
        (lambda e: e.update(kind="cobol"), "(snip).kind: 'cobol' is not one of"),
        (lambda e: e.update(set_by_hand=["A=1"]), "(snip).set_by_hand: must be an object"),
    ],
)
def test_a_malformed_document_entry_is_one_line_not_a_traceback(
    change, said, user_kernels, tmp_path, capsys
):
    """The record goes through provenance's codec: an extra key or a wrong type in a
    document is refused in one line (0.1 raised a TypeError traceback)."""
    doc = {
        "format": "kernelmagic-export",
        "format_version": 1,
        "specs": [
            {
                "name": "snip",
                "kind": "python",
                "source": {"kind": "snippet", "snippet": "export A=1"},
                "capture": {"mode": "changed"},
                "set_by_hand": {},
                "location": "user",
            }
        ],
    }
    change(doc["specs"][0])
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["apply", str(path)]) == 2  # the whole document is checked first
    err = capsys.readouterr().err
    first, *details = err.rstrip("\n").split("\n")
    assert "problem(s); nothing was run or written" in first
    assert any(said in line for line in details), err
    assert "Traceback" not in err
    assert not (user_kernels / "snip").exists()


def test_a_spec_made_in_a_setgid_kernels_dir_keeps_its_setgid(tmp_path, monkeypatch, capsys):
    """Re-walk G: `clone` or `install` without --group into a group's setgid kernels dir
    cleared the new spec dir's setgid bit, so its files got the writer's own group."""
    kernels = tmp_path / "shared" / "share" / "jupyter" / "kernels"
    kernels.mkdir(parents=True)
    kernels.chmod(0o2775)
    monkeypatch.setenv("JUPYTER_PATH", str(kernels.parent))
    argv = ["install", "geo", "--capture", "none", "--prefix", str(tmp_path / "shared")]
    assert main(argv) == 0
    assert main(["clone", "geo", "geo2", "--prefix", str(tmp_path / "shared")]) == 0
    for name in ("geo", "geo2"):
        assert (kernels / name).stat().st_mode & stat.S_ISGID, name
