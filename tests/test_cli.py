"""The command line: main([...]) as a script would call it, and the installed entry points."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_spec

from kernelmagic.frontends.cli import main


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def spec_json(user_kernels, name):
    return json.loads((user_kernels / name / "kernel.json").read_text())


def test_every_command(capsys, user_kernels, tmp_path):
    status, out, _ = run(capsys, "install", "geo", "--capture", "none", "--env", "A=1")
    assert status == 0 and "Installed kernel spec 'geo'" in out
    assert run(capsys, "list")[1].count("geo") >= 1
    listing = json.loads(run(capsys, "list", "--json")[1])
    assert listing["kernelspecs"]["geo"]["spec"]["env"] == {"A": "1"}
    # The file's checks only (walk S: "No problems" where the doctor found some).
    assert (
        "No problems found in the file (kernelmagic doctor geo checks what it runs)"
        in run(capsys, "show", "GEO")[1]
    )
    status, out, _ = run(capsys, "patch", "geo", "--display-name", "Geo!")
    assert status == 0 and '+ "display_name": "Geo!",' in out
    assert run(capsys, "clone", "geo", "geo2", "--unset", "A")[0] == 0
    assert "env" not in spec_json(user_kernels, "geo2")
    env_file = tmp_path / "vars.env"
    env_file.write_text("export B='two words'\nunset A\n")
    assert run(capsys, "env", "-k", "geo", "--file", str(env_file), "C=3")[0] == 0
    assert spec_json(user_kernels, "geo")["env"] == {"B": "two words", "C": "3"}
    assert run(capsys, "env", "-k", "geo")[1] == "B='two words'\nC=3\n"
    status, out, _ = run(capsys, "remove", "geo", "geo2")
    assert status == 0 and out.count("Removed") == 2


def test_env_reads_stdin(capsys, user_kernels, monkeypatch):
    write_spec(user_kernels, "geo")
    monkeypatch.setattr(sys, "stdin", io.StringIO("X=1\nY='a\nb'\n"))
    assert run(capsys, "env", "-k", "geo", "--file", "-")[0] == 0
    assert spec_json(user_kernels, "geo")["env"] == {"X": "1", "Y": "a\nb"}


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["install", "bad/name"], 2, "invalid kernel name"),
        (["env", "-k", "geo", "NOEQ"], 2, "expected KEY=VALUE"),
        (["env", "A=1"], 2, "needs -k NAME"),
        (["patch", "geo", "--metadata", "k=nope"], 2, "is not JSON"),
        (["install", "x", "--capture", "maybe"], 2, "invalid choice"),
        (["frobnicate"], 2, "invalid choice"),
        (["--bogus"], 2, "unrecognized arguments: --bogus"),
        (["-x", "list"], 2, "unrecognized arguments: -x"),
        (["show", "missing"], 1, "No kernel spec 'missing'. Available: geo"),
        (["install", "GEO", "--capture", "none"], 1, "pass --replace"),
        (["env", "-k", "geo", "--file", "/no/such/file"], 2, "cannot read /no/such/file"),
        (["doctor", "geo", "--timeout", "5"], 2, "--timeout goes with --launch"),
        (["doctor", "--no-interrupt-check"], 2, "--no-interrupt-check goes with --launch"),
        (["install", "--capture", "none"], 2, "give the new spec's NAME (or --project"),
    ],
)
def test_errors_are_one_line_with_exit_codes(capsys, user_kernels, argv, status, message):
    path = write_spec(user_kernels, "geo") / "kernel.json"
    before = path.read_bytes()
    code, _, err = run(capsys, *argv)
    assert code == status
    assert err.startswith("kernelmagic: error: ") and err.count("\n") == 1
    assert message in err
    assert path.read_bytes() == before


def test_a_project_finds_its_environment_not_a_snippet(capsys, user_kernels, tmp_path):
    project = tmp_path / "geo-project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "geo"\n')
    snippet = tmp_path / "setup.sh"
    snippet.write_text("module load gdal\n")
    code, _, err = run(capsys, "install", "--project", str(project), "--snippet-file", str(snippet))
    assert code == 2 and "--project finds the environment itself" in err
    assert not user_kernels.exists()  # nothing written, not even the kernels dir


def test_unwritable_location_exit_1(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, "install", "x", "--capture", "none", "--prefix", str(blocker))
    assert code == 1 and "use --user" in err


def test_console_script_and_python_m(user_kernels):
    write_spec(user_kernels, "geo")
    script = Path(sys.executable).parent / "kernelmagic"
    for command in ([str(script)], [sys.executable, "-m", "kernelmagic"]):
        done = subprocess.run([*command, "list", "--json"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "geo" in json.loads(done.stdout)["kernelspecs"]
    bad = subprocess.run([str(script), "show", "nope"], capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


def test_renamed_options_keep_their_old_spellings(user_kernels, capsys, ip):
    """env's -k/--spec was --kernel (which install uses for a language), and its
    --replace-env was --replace (which elsewhere overwrites a spec): both old spellings work
    for one more release, and both front ends say so, one line each."""
    write_spec(user_kernels, "geo", {"argv": ["python", "{connection_file}"], "env": {"A": "1"}})
    # Once each, and for argparse's abbreviation of it too (walk R: `--kern` said nothing,
    # `--kernel geo --kernel geo` twice).
    for old in (["--kernel", "geo"], ["--kern", "geo"], ["--kernel", "geo", "--kernel", "geo"]):
        assert main(["env", *old, "B=2"]) == 0
        err = capsys.readouterr().err
        assert err == "kernelmagic: note: --kernel is the old spelling of -k/--spec; it stops " \
            "working in 0.4\n", old  # fmt: skip
    assert run(capsys, "env", "--spec", "geo")[1] == "A=1\nB=2\n"
    assert main(["env", "-k", "geo", "--replace=", "C=3"]) == 2  # a flag: no value
    capsys.readouterr()
    assert main(["env", "-k", "geo", "--replace", "C=3"]) == 0
    assert "--replace is the old spelling of --replace-env" in capsys.readouterr().err
    assert run(capsys, "env", "-k", "geo")[1] == "C=3\n"
    ip.run_line_magic("kernel_env", "--kernel geo E=5")
    said = capsys.readouterr().out
    assert said.startswith("note: --kernel is the old spelling of -k/--spec")
    assert ip.run_line_magic("kernel_env", "-k geo") == {"C": "3", "E": "5"}
    assert "old spelling" not in capsys.readouterr().out
    assert run(capsys, "env", "-k", "geo", "--replace-env", "D=4")[0] == 0
    assert run(capsys, "env", "-k", "geo")[1] == "D=4\n"


def test_show_json_is_one_object_masked_for_both_front_ends(user_kernels, capsys, ip):
    """`show NAME --json` (design 0.3's first change made in one command module)."""
    write_spec(user_kernels, "geo", {"argv": ["/no/such/python", "{connection_file}"],
                                     "env": {"API_TOKEN": "s3cr3t-value", "A": "1"}})  # fmt: skip
    status, out, _ = run(capsys, "show", "GEO", "--json")
    shown = json.loads(out)
    assert status == 0 and shown["name"] == "geo" and shown["resource_dir"].endswith("geo")
    assert shown["spec"]["env"] == {"API_TOKEN": "<hidden>", "A": "1"} and "s3cr3t" not in out
    assert [p["kind"] for p in shown["problems"]] == ["missing-program"]
    assert shown["hidden"] is False
    assert ip.run_line_magic("kernel_show", "geo --json") == shown
    assert run(capsys, "show", "nope", "--json")[0] == 1


def test_options_may_come_between_a_commands_names(user_kernels, capsys, ip, tmp_path):
    """Walk R: `apply FILE --check NAME` was refused ("unrecognized arguments: NAME"), as was
    `remove a --dry-run b`: argparse ended the names at the first option. Both front ends take
    options anywhere among the names now, as `jupyter kernelspec remove a -f b` does; `shell`
    still hands everything after its spec name on, options included."""
    for name in ("a", "b", "c"):
        write_spec(user_kernels, name)
    document = tmp_path / "doc.json"
    assert main(["export", "a", "b", "-o", str(document)]) == 0
    capsys.readouterr()
    status, out, err = run(capsys, "apply", str(document), "--check", "b")
    assert (status, err) == (0, "") and out.startswith("b (") and "as recorded" in out
    assert "a (" not in out
    status, out, err = run(capsys, "remove", "a", "--dry-run", "b")
    assert (status, err) == (0, "") and out.count("Would remove kernel spec") == 2
    ip.run_line_magic("kernel_remove", "a --dry-run c")
    assert capsys.readouterr().out.count("Would remove kernel spec") == 2
    assert sorted(p.name for p in user_kernels.iterdir()) == ["a", "b", "c"]
    said = tmp_path / "said"
    write_args = "import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:]))"
    assert main(["shell", "a", "--", sys.executable, "-c", write_args, str(said), "-v"]) == 0
    assert said.read_text() == "-v"
    # Walk U: the intermixed parse drops a `--` before any name, so what followed it became
    # options again: `remove -- --missing` removed every dead spec, `env -k a -- -k b A=1`
    # changed b. After `--` every word is a name, in both front ends, as before.
    write_spec(user_kernels, "dead", {"argv": ["/no/such/python"], "display_name": "D",
                                      "language": "python"})  # fmt: skip
    write_spec(user_kernels, "-old")
    status, _, err = run(capsys, "remove", "--", "--missing")
    assert status == 1 and "No kernel spec '--missing'" in err
    assert usage_error_of(ip, "kernel_remove", "-- --missing").startswith("No kernel spec")
    assert usage_error_of(ip, "kernel_env", "-k a -- -k b A=1") == "expected KEY=VALUE, got '-k'"
    assert (user_kernels / "dead").exists() and "env" not in spec_json(user_kernels, "b")
    status, out, _ = run(capsys, "remove", "--dry-run", "--", "-old")
    assert status == 0 and "Would remove kernel spec" in out and "-old" in out
    # A line refused says every missing argument, as before (it said --engine alone).
    status, _, err = run(capsys, "remote", "a")
    assert status == 2 and "required: DST, --engine" in err


def usage_error_of(ip, magic, line):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError) as refused:
        ip.run_line_magic(magic, line)
    return str(refused.value)
