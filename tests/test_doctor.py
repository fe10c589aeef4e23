"""The doctor: one spec per problem kind, --fix, remove --missing, and undo."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import build_slowfs, write_spec

from kernelmagic.commands import render
from kernelmagic.domain import probes
from kernelmagic.frontends.cli import main
from kernelmagic.operations import doctor
from kernelmagic.storage import atomic

CONN = "{connection_file}"


@pytest.fixture(scope="session")
def python_without_ipykernel(tmp_path_factory):
    """A real interpreter that cannot import ipykernel: a fresh venv without pip."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin" / "python")


@pytest.fixture
def sick(user_kernels, tmp_path, monkeypatch, python_without_ipykernel):
    """One spec per problem kind, plus a healthy one."""
    extra = tmp_path / "jp"
    monkeypatch.setenv("JUPYTER_PATH", str(extra))
    python = [sys.executable, "-m", "ipykernel_launcher", "-f", CONN]
    write_spec(user_kernels, "healthy", {"argv": python, "env": {"DATA_DIR": str(tmp_path)}})
    write_spec(
        user_kernels,
        "dead",
        {"argv": ["/gone/env/bin/python", "-m", "ipykernel_launcher", "-f", CONN]},
    )
    write_spec(
        user_kernels,
        "no-ipykernel",
        {
            "argv": [python_without_ipykernel, "-m", "ipykernel_launcher", "-f", CONN],
            "language": "python",
        },
    )
    write_spec(user_kernels, "no-conn", {"argv": [sys.executable, "-m", "ipykernel_launcher"]})
    bash = [sys.executable, "-m", "bash_kernel", "-f", CONN]  # another Python kernel, not here
    write_spec(user_kernels, "bash", {"argv": bash, "language": "bash"})
    write_spec(
        user_kernels,
        "provisioned",
        {"argv": python, "metadata": {"kernel_provisioner": {"provisioner_name": "gone-prov"}}},
    )
    write_spec(user_kernels, "twice", {"argv": python, "display_name": "user copy"})
    write_spec(extra / "kernels", "twice", {"argv": python, "display_name": "JUPYTER_PATH copy"})
    write_spec(
        user_kernels, "no-data", {"argv": python, "env": {"GDAL_DATA": "/no/such/gdal/share"}}
    )
    write_spec(user_kernels, "template", {"argv": python, "env": {"X": "${KM_TEST_UNSET_VAR}/bin"}})
    write_spec(user_kernels, "bad name", {"argv": python})
    write_spec(user_kernels, "broken", raw="{")
    return {"user": user_kernels, "extra": extra / "kernels"}


def _by_name(report):
    return {d.name: d for d in report.diagnoses}


def test_each_problem_is_reported_with_name_and_value(sick, python_without_ipykernel):
    found = _by_name(doctor.diagnose())

    def only(name, kind):
        problems = [p for p in found[name].problems if p.kind == kind]
        assert problems, (name, kind, found[name].problems)
        return problems[0]

    assert found["healthy"].problems == []
    assert only("dead", "missing-program").value == "/gone/env/bin/python"
    assert "/gone/env/bin/python" in str(only("dead", "missing-program"))
    missing_import = only("no-ipykernel", "launcher-import")
    assert missing_import.value == python_without_ipykernel
    assert "cannot import ipykernel_launcher" in str(missing_import)
    assert "-m pip install ipykernel" in str(missing_import)
    missing_kernel = str(only("bash", "launcher-import"))  # said to install ipykernel
    assert "cannot import bash_kernel" in missing_kernel
    assert "-m pip install bash_kernel" in missing_kernel
    assert "{connection_file}" in str(only("no-conn", "no-connection-file"))
    assert only("provisioned", "unknown-provisioner").value == "gone-prov"
    shadowed = only("twice", "shadowed")
    assert shadowed.value == str(sick["extra"] / "twice")  # JUPYTER_PATH wins
    assert str(sick["user"] / "twice") in str(shadowed)
    assert only("no-data", "missing-dir").value == "/no/such/gdal/share"
    assert only("template", "undefined-template").value == "KM_TEST_UNSET_VAR"
    assert only("bad name", "invalid-name").value == "bad name"
    assert "cannot read kernel.json" in str(only("broken", "unreadable"))


def test_fix_removes_only_the_dead_spec(sick, capsys):
    before = {p.name for p in sick["user"].iterdir() if not p.name.startswith(".")}
    status = main(["doctor", "--fix"])
    out = capsys.readouterr().out
    assert status == 1  # the other problems are left for the user
    assert f"Removed kernel spec {sick['user'] / 'dead'}" in out
    after = {p.name for p in sick["user"].iterdir() if not p.name.startswith(".")}
    assert before - after == {"dead"}


def test_remove_missing_is_the_same_cleanup(sick, capsys):
    assert main(["remove", "--missing"]) == 0
    assert not (sick["user"] / "dead").exists()
    assert (sick["user"] / "no-ipykernel").exists()


def test_cli_exit_codes_and_json(sick, capsys):
    assert main(["doctor", "healthy"]) == 0
    assert "1 spec(s) checked, 0 with problems" in capsys.readouterr().out
    assert main(["doctor", "no-conn", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["healthy"] is False
    kinds = [p["kind"] for p in report["specs"]["no-conn"]["problems"]]
    assert kinds == ["no-connection-file"]
    assert main(["doctor", "nope"]) == 1
    assert "No kernel spec 'nope'" in capsys.readouterr().err


def test_doctor_magic_returns_a_report(ip, sick):
    report = ip.run_line_magic("kernel_doctor", "dead no-conn")
    assert not report.healthy
    assert "missing-program" in ip.display_formatter.format(report)[0]["text/plain"]
    assert "<table>" in report._repr_html_()
    as_json = ip.run_line_magic("kernel_doctor", "healthy --json")
    assert as_json["healthy"] is True


def test_bare_python_is_the_launching_interpreter_as_in_jupyter(
    user_kernels, monkeypatch, python_without_ipykernel
):
    """jupyter_client starts a bare `python` with sys.executable, not the one on PATH: a
    python without ipykernel first on PATH must not make such a spec look broken."""
    monkeypatch.setenv("PATH", f"{os.path.dirname(python_without_ipykernel)}:{os.environ['PATH']}")
    write_spec(user_kernels, "bare", {"argv": ["python", "-m", "ipykernel_launcher", "-f", CONN]})
    (diagnosis,) = doctor.diagnose(["bare"]).diagnoses
    assert diagnosis.problems == []


def test_interpreters_run_once_per_doctor_run(user_kernels, monkeypatch):
    python = [sys.executable, "-m", "ipykernel_launcher", "-f", CONN]
    for i in range(5):
        write_spec(user_kernels, f"same{i}", {"argv": python})
    calls = []
    real = probes.run
    monkeypatch.setattr(probes, "run", lambda p: calls.append(p.command[0]) or real(p))
    report = doctor.diagnose([f"same{i}" for i in range(5)])
    assert report.healthy
    assert calls == [sys.executable]


def test_undo_restores_exact_bytes_and_backups_do_not_pile_up(user_kernels, capsys):
    original = b'{"argv": ["/bin/true", "{connection_file}"],   "display_name": "odd  spacing"}'
    path = write_spec(user_kernels, "geo", raw=original.decode()) / "kernel.json"
    versions = [path.read_bytes()]
    for i in range(7):
        assert main(["env", "-k", "geo", f"V{i}=x"]) == 0
        versions.append(path.read_bytes())
    assert len(atomic.backups(path.parent)) == atomic.BACKUPS_KEPT
    for expected in reversed(versions[-atomic.BACKUPS_KEPT - 1 : -1]):
        assert main(["patch", "geo", "--undo"]) == 0
        assert path.read_bytes() == expected
    assert main(["patch", "geo", "--undo"]) == 1
    assert "no earlier version" in capsys.readouterr().err


def test_undo_after_replace_and_after_magic_patch(ip, user_kernels):
    ip.run_line_magic("kernel_install", "geo --capture none --display-name first")
    kernel_json = user_kernels / "geo" / "kernel.json"
    first = kernel_json.read_bytes()
    ip.run_line_magic("kernel_install", "geo --capture none --display-name second --replace")
    ip.run_line_magic("kernel_patch", "geo --display-name third")
    ip.run_line_magic("kernel_patch", "geo --undo")
    assert json.loads(kernel_json.read_text())["display_name"] == "second"
    ip.run_line_magic("kernel_patch", "geo --undo")
    assert kernel_json.read_bytes() == first


def test_undo_refuses_other_changes(capsys, user_kernels):
    write_spec(user_kernels, "geo")
    assert main(["patch", "geo", "--undo", "--display-name", "x"]) == 2
    assert "give it no other change" in capsys.readouterr().err


def test_ipykernels_python3_in_this_env_and_the_systems_is_a_note(
    user_kernels, system_kernels, second_venv, monkeypatch, capsys
):
    """Debian's python3-ipykernel writes /usr/share/jupyter/kernels/python3 and every venv
    with ipykernel has its own: Jupyter run from the venv uses the venv's. A newcomer's
    doctor called that a problem and exited 1 with every kernel working. A user-level
    python3 in front of this environment's pins it to one interpreter: still a problem."""
    ours = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "python3"
    if not (ours / "kernel.json").is_file():
        pytest.skip(f"this environment has no ipykernel python3 spec at {ours}")
    # Debian's file, for an interpreter that has ipykernel on every machine (a system
    # python3 has it only where python3-ipykernel is installed)
    debian = [str(second_venv / "bin" / "python3"), "-m", "ipykernel_launcher", "-f", CONN]
    shape = {"display_name": "Python 3 (ipykernel)", "language": "python"}
    write_spec(system_kernels, "python3", {"argv": debian, **shape})
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")
    assert main(["doctor", "python3", "--json"]) == 0
    (shadowed,) = json.loads(capsys.readouterr().out)["specs"]["python3"]["problems"]
    assert (shadowed["kind"], shadowed["severity"]) == ("shadowed", "note")
    assert shadowed["value"] == str(ours)

    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")  # the user's dir comes first
    write_spec(user_kernels, "python3", {"argv": debian, **shape})
    assert main(["doctor", "python3", "--json"]) == 1
    (shadowed,) = json.loads(capsys.readouterr().out)["specs"]["python3"]["problems"]
    assert (shadowed["kind"], shadowed["severity"]) == ("shadowed", "problem")


SHARED_SPECS = 40


def test_the_doctor_walks_a_shared_kernels_dir_once_not_once_a_spec(tmp_path):
    """Issue 38: on a network filesystem every lookup is a round trip. The trust rule walks
    every directory above each spec (kernel.json, its dir, the program): the directories
    above the kernels dir, which all specs share, are judged once per run, so a spec costs a
    few lookups (its kernel.json read, its dir and kernel.json walked), not one
    for each directory above it each time (12 a spec before, for this tree)."""
    library = build_slowfs(tmp_path)
    tree = tmp_path / "shared" / "site" / "share" / "jupyter"
    for i in range(SHARED_SPECS):
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", CONN]
        write_spec(tree / "kernels", f"central-{i:02d}", {"argv": argv, "language": "python"})
    counts = tmp_path / "lookups"
    slow = {
        **os.environ,
        "JUPYTER_PATH": str(tree),
        "LD_PRELOAD": str(library),
        "SLOWFS_PREFIX": str(tmp_path / "shared"),
        "SLOWFS_DELAY_US": "0",  # counted, not slowed: the walks stay in one thread, in order
        "SLOWFS_COUNT_FILE": str(counts),
    }
    done = subprocess.run(
        [sys.executable, "-m", "kernelmagic", "doctor", "--json"],
        capture_output=True, env=slow, cwd=tmp_path, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["specs"]
    assert {f"central-{i:02d}" for i in range(SHARED_SPECS)} <= set(report)
    assert all(report[f"central-{i:02d}"]["problems"] == [] for i in range(SHARED_SPECS))
    made = sum(int(line.split()[1]) for line in counts.read_text().splitlines())
    assert SHARED_SPECS <= made <= 4 * SHARED_SPECS, f"{made} lookups for {SHARED_SPECS} specs"


def test_a_secret_value_that_looks_like_a_path_is_not_shown(user_kernels, capsys):
    """One base64 key in 64 starts with "/": the doctor's missing-directory check must not
    print it (as show masks it)."""
    key = "/K7MDENG/bPxRfiCYEXAMPLEKEYwJalrXUtnFEMI"
    python = [sys.executable, "-m", "ipykernel_launcher", "-f", CONN]
    write_spec(user_kernels, "aws", {"argv": python, "env": {"AWS_SECRET_ACCESS_KEY": key}})
    main(["doctor", "aws"])
    main(["doctor", "aws", "--json"])
    out = capsys.readouterr().out
    assert "AWS_SECRET_ACCESS_KEY" in out and "<hidden>" in out
    assert "K7MDENG" not in out


def test_the_program_judged_is_the_one_jupyter_runs(user_kernels, tmp_path):
    """{resource_dir} and {prefix} filled in as jupyter_client fills them, a bare name looked
    up on the PATH the spec's env gives the kernel, a file without x certain to fail. They
    were "relative-program", "missing" (or "ok"), and "unreachable, kept" with every client
    working; tests/test_verdicts.py runs the same shapes through the real clients."""
    kernel = ["-m", "ipykernel_launcher", "-f", "{connection_file}"]
    run_sh = write_spec(user_kernels, "resdir", {
        "argv": ["{resource_dir}/run.sh", "{connection_file}"], "display_name": "r",
        "language": "python",
    }) / "run.sh"  # fmt: skip
    run_sh.write_text(f'#!/bin/sh\nexec {sys.executable} -m ipykernel_launcher -f "$1"\n')
    run_sh.chmod(0o755)
    prefixed = "{prefix}/" + os.path.relpath(sys.executable, sys.prefix)
    write_spec(user_kernels, "prefixed", {"argv": [prefixed, *kernel], "display_name": "p"})
    env_bin = tmp_path / "env-bin"
    env_bin.mkdir()
    (env_bin / "km-only-in-env").symlink_to(sys.executable)
    write_spec(user_kernels, "inenv", {
        "argv": ["km-only-in-env", *kernel], "display_name": "e",
        "env": {"PATH": f"{env_bin}:${{PATH}}"},
    })  # fmt: skip
    write_spec(user_kernels, "hidden", {  # sh: on this PATH, not on the spec's
        "argv": ["sh", "-c", "exec true", "{connection_file}"], "display_name": "h",
        "env": {"PATH": str(tmp_path / "nowhere")},
    })  # fmt: skip
    script = tmp_path / "no-x.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    write_spec(
        user_kernels, "nox", {"argv": [str(script), "{connection_file}"], "display_name": "x"}
    )
    report = {d.name: d for d in doctor.diagnose().diagnoses}
    kinds = {name: {p.kind for p in report[name].problems} for name in report}
    start_problems = {"relative-program", "missing-program", "unreachable-program"}
    for name in ("resdir", "prefixed", "inenv"):
        assert not kinds[name] & start_problems, (name, report[name].problems)
    assert "missing-program" in kinds["hidden"]
    (nox,) = [p for p in report["nox"].problems if p.kind == "not-executable"]
    assert nox.fix == f"chmod +x {script}"
    assert not any(v.works for v in report["nox"].clients)
    # Walk K: printed as `fix: kernelmagic chmod +x ...` (and `%kernel_chmod`), no command.
    for style, fix in (("cli", "kernelmagic env -k nox"), ("magics", "%kernel_env -k nox")):
        assert render.problem_text(nox, style).endswith(f"; fix: chmod +x {script}")
        assert render.command("env -k nox", style) == fix


def test_doctor_launch_in_an_ipython_app_says_each_failure_once(user_kernels, tmp_path):
    """Run as IPython runs a script (an application, whose logger jupyter_client's launcher
    and manager write to): a failed start printed jupyter_client's traceback and its "Failed
    to run command" block above the report that says it."""
    write_spec(user_kernels, "gone", {"argv": ["/nonexistent/python", "{connection_file}"]})
    dies = ["/bin/sh", "-c", "echo boom >&2; exit 3", "{connection_file}"]
    write_spec(user_kernels, "dies", {"argv": dies})
    script = tmp_path / "t.ipy"
    script.write_text("%load_ext kernelmagic\nr = %kernel_doctor --launch dies gone\nprint(r)\n")
    ipython = Path(sys.executable).with_name("ipython")
    done = subprocess.run(
        [str(ipython), "--no-banner", str(script)], capture_output=True, text=True, timeout=120
    )
    said = done.stdout + done.stderr
    assert "Traceback" not in said and "Failed to run command" not in said, said
    assert "the kernel exited: boom" in said and "No such file or directory" in said


def test_ctrl_c_stops_doctor_launch_and_the_kernels_it_started(user_kernels):
    """Ctrl-C printed a 20-line KeyboardInterrupt traceback, and the command waited for each
    launch's --timeout (56 s) before it ended."""
    marker = f"km-hang-{os.getpid()}"
    hangs = [sys.executable, "-c", "import time; time.sleep(600)", "{connection_file}", marker]
    write_spec(user_kernels, "hangs", {"argv": hangs})
    command = [sys.executable, "-m", "kernelmagic", "doctor", "--launch", "--timeout", "300"]
    doctor_run = subprocess.Popen(
        [*command, "hangs"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    while subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode != 0:
        assert doctor_run.poll() is None, doctor_run.communicate()
        time.sleep(0.05)  # the kernel has not started yet
    doctor_run.send_signal(signal.SIGINT)
    out, err = doctor_run.communicate(timeout=60)  # it waited for the launch's 300 s
    assert doctor_run.returncode == 130, (out, err)
    assert err.strip() == "kernelmagic: interrupted" and "Traceback" not in err
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1


def test_doctor_launch_json_is_json_whatever_the_kernel_prints(user_kernels, capfd):
    """A wrapper that says "loading geo stack" on stdout: it came out before the report,
    and `doctor --launch --json` was no longer JSON."""
    script = f'echo loading geo stack; exec {sys.executable} -m ipykernel_launcher -f "$0"'
    write_spec(user_kernels, "loud", {"argv": ["/bin/sh", "-c", script, "{connection_file}"]})
    capfd.readouterr()
    assert main(["doctor", "--launch", "--json", "--no-interrupt-check", "loud"]) == 0
    out = capfd.readouterr().out
    assert json.loads(out)["specs"]["loud"]["result"] == "started"


def test_a_named_doctor_says_case_twin_as_the_whole_one_does(user_kernels):
    """Walk K: with `Twin/` and `twin/` in one kernels dir, `doctor` said which one a start
    takes (`case-twin`), but `doctor twin` judged the right entry without a word of it."""
    kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", CONN]
    write_spec(user_kernels, "Twin", {"argv": kernel, "display_name": "upper"})
    write_spec(user_kernels, "twin", {"argv": ["/nonexistent/python", *kernel[1:]]})

    def twin_notes(*names):
        (found,) = [d for d in doctor.diagnose(names).diagnoses if d.name == "twin"]
        return [p.message for p in found.problems if p.kind == "case-twin"]

    whole = twin_notes()
    if not whole:
        pytest.skip("this filesystem lists the two entries in the order a start takes them")
    assert twin_notes("twin") == whole


def test_the_doctor_looks_at_a_shared_interpreter_once(user_kernels, monkeypatch):
    """Walk M: 500 specs on 20 shared interpreters cost 7,116 lookups (each interpreter
    stat'ed 78 times, opened 50), 6.2 s on a 1 ms filesystem where `list` took 0.16 s:
    each check asked the filesystem about the same program again. The lookups of a shared
    interpreter are now as many for 30 specs as for 3."""
    import collections

    python = sys.executable

    def lookups_of_the_interpreter(specs: int) -> int:
        for i in range(specs):
            write_spec(
                user_kernels,
                f"shared{i}",
                {"argv": [python, "-m", "ipykernel_launcher", "-f", CONN], "language": "python"},
            )
        asked = collections.Counter()
        for call in ("stat", "lstat", "access", "open"):
            real = getattr(os, call)

            def counted(path, *args, _call=call, _real=real, **kwargs):
                if path == python:
                    asked[_call] += 1
                return _real(path, *args, **kwargs)

            monkeypatch.setattr(os, call, counted)
        doctor.diagnose()
        monkeypatch.undo()
        return sum(asked.values())

    lookups_of_the_interpreter(3)  # what a first run asks once (caches made)
    few = lookups_of_the_interpreter(3)
    assert lookups_of_the_interpreter(30) == few <= 12, few  # it was 218 for 30


def test_overlapping_doctors_in_two_threads_leave_no_answer_remembered(user_kernels, tmp_path):
    """Walk O: two doctor runs overlapping in two threads left the per-run memory of
    programs on for good: a program deleted afterwards was still found, by every later
    listing and doctor of that process."""
    import threading

    from kernelmagic.domain import checks

    program = tmp_path / "python3"
    shutil.copy(sys.executable, program)
    write_spec(user_kernels, "p", {"argv": [str(program), "-m", "ipykernel_launcher", "-f", CONN]})
    first_in, second_done = threading.Event(), threading.Event()

    def first():
        with checks.one_look_per_program():
            first_in.set()
            second_done.wait(10)  # the second starts inside the first and ends after it

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(10)
    with checks.one_look_per_program():
        second_done.set()
        thread.join(10)
    assert checks.program_state(str(program)) == checks.PROGRAM_OK  # remembered, if still on
    program.unlink()
    assert checks.program_state(str(program)) == checks.PROGRAM_MISSING
    (diagnosis,) = doctor.diagnose(["p"]).diagnoses
    assert "missing-program" in {p.kind for p in diagnosis.problems}


def test_a_venv_path_with_a_space_that_is_gone_is_missing(user_kernels, tmp_path):
    """Walk T: a project dir `my proj` moved away: PATH was reported gone, VIRTUAL_ENV not (a
    value with a space was taken for a command line, not a path)."""
    gone = tmp_path / "my proj" / ".venv"
    write_spec(user_kernels, "spaced", {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Spaced", "language": "python",
        "env": {"VIRTUAL_ENV": str(gone), "RUN_FLAGS": "/usr/bin/env -i x"},
    })  # fmt: skip
    (found,) = doctor.diagnose(["spaced"]).diagnoses
    missing = [p.value for p in found.problems if p.kind == "missing-dir"]
    assert missing == [str(gone)], found.problems


def test_an_installed_provisioner_that_cannot_be_loaded_cannot_start(
    user_kernels, tmp_path, monkeypatch
):
    """Walk W: a provisioner registered by a package whose module is gone passed the doctor
    (every client but VS Code "works"); jupyter_client's start raises its import error. The
    entry point is a real one, of a distribution on sys.path."""
    from jupyter_client.manager import KernelManager

    from kernelmagic.domain import checks

    dist = tmp_path / "site" / "km_broken-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: km-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[jupyter_client.kernel_provisioners]\nkm-broken-provisioner = km_gone_module:Gone\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    checks.installed_provisioners.cache_clear()  # entry points are read once a process
    stanza = {"kernel_provisioner": {"provisioner_name": "km-broken-provisioner"}}
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", CONN]
    write_spec(user_kernels, "broken-prov", {"argv": argv, "display_name": "B", "metadata": stanza})
    try:
        (diagnosis,) = doctor.diagnose(["broken-prov"]).diagnoses
        kinds = {p.kind: str(p) for p in diagnosis.problems}
        assert "cannot be loaded (ModuleNotFoundError" in kinds.get("cannot-start", ""), kinds
        assert not any(v.works for v in diagnosis.clients)
        with pytest.raises(ModuleNotFoundError, match="km_gone_module"):
            KernelManager(kernel_name="broken-prov").start_kernel()  # the real client's start
    finally:
        checks.installed_provisioners.cache_clear()


@pytest.mark.parametrize(
    ("argv", "options", "unset"),
    [
        (["PY", "-I", "-m", "ipykernel_launcher"], ("-I",), False),
        (["PY", "--check-hash-based-pycs", "default", "-m", "ipykernel_launcher"],
         ("--check-hash-based-pycs", "default"), False),
        (["PY", "-mipykernel_launcher"], (), False),
        (["numactl", "-m", "0", "PY", "-m", "ipykernel_launcher"], (), False),
        (["env", "-u", "KM_PROBE", "--", "PY", "-m", "ipykernel_launcher"], (), True),
        (["env", "-C", "/tmp", "-u", "KM_PROBE", "PY", "-m", "ipykernel_launcher"], (), True),
        (["env", "--unset=KM_PROBE", "-v", "PY", "-m", "ipykernel_launcher"], (), True),
    ],
)  # fmt: skip
def test_the_probe_runs_the_interpreter_as_the_kernel_starts(argv, options, unset, tmp_path):
    """Walks W and W2: the probe ran `python -c` without the interpreter's own options, or
    the variables an `env` in front of it unsets, so it judged another start than the
    kernel's (and knew no `-mMODULE`, no option with a value, no prefix's own `-m`)."""
    python = tmp_path / "bin" / "python3.13t"  # a free-threaded build's name
    python.parent.mkdir()
    python.symlink_to(sys.executable)
    argv = [str(python) if word == "PY" else word for word in argv]
    spec = {"argv": [*argv, "-f", CONN], "env": {"KM_PROBE": "set"}}
    probe = probes.probe_for(spec, {"PATH": f"{python.parent}:/usr/bin:/bin"})
    assert probe is not None and probe.command[0] == str(python), argv
    assert probe.command[1 : 1 + len(options)] == options
    assert probe.command[1 + len(options)] == "-c"
    assert ("KM_PROBE" not in probe.env) is unset
