"""A hostile world: secrets in snippets, sibling names, shared dirs, odd files, slow parsers.

Each test is one item of the hardening issue tried as an attacker would; each failed before
its fix. Where the old failure was a hang or a quadratic blow-up, the test runs the command
in a child process with a generous bound (a hang guard, not a timing assertion).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from helpers import run_as_nobody, write_spec
from IPython.core.error import UsageError

from kernelmagic import specs
from kernelmagic.frontends.cli import main
from kernelmagic.operations import doctor
from kernelmagic.storage import transactions

TOKEN = "ghp_" + "S" * 36


def spec_of(kernels: Path, name: str) -> dict:
    return json.loads((kernels / name / "kernel.json").read_text())


def run_cli(*argv: str, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    """``kernelmagic ARGV`` in a child process (so a hang is bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "kernelmagic", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


# --- 1-3: secrets ----------------------------------------------------------------------


def test_a_secret_in_a_snippet_is_never_stored_or_shown_in_clear(user_kernels, tmp_path, capsys):
    snippet = tmp_path / "s.sh"
    snippet.write_text(f"export GITHUB_TOKEN={TOKEN}\nexport GEO_HOME=/opt/geo\n")
    argv = ["install", "s1", "--python", sys.executable, "--snippet-file", str(snippet)]
    assert main([*argv, "--dry-run"]) == 0
    assert main(argv) == 0
    kernel_json = user_kernels / "s1" / "kernel.json"
    assert TOKEN not in kernel_json.read_text()
    assert spec_of(user_kernels, "s1")["env"] == {"GEO_HOME": "/opt/geo"}
    side = user_kernels / "s1" / "kernelmagic-snippet.sh"
    assert TOKEN in side.read_text() and stat.S_IMODE(side.stat().st_mode) == 0o600
    for command in (["show", "s1"], ["list", "--json"], ["refresh", "s1", "--dry-run"]):
        assert main(command) == 0
    assert main(["refresh", "s1"]) == 0  # refresh runs the full snippet from the side file
    assert TOKEN not in capsys.readouterr().out
    assert TOKEN not in kernel_json.read_text()


def test_credentials_inside_values_are_skipped_on_capture(ip, user_kernels, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "postgres://app:pw@db/x")
    monkeypatch.setenv("https_proxy", "http://user:pw@proxy:3128")
    monkeypatch.setenv("OPENAI_KEY_FOR_TESTS", "sk-" + "b2" * 20)
    ip.run_line_magic("kernel_install", "cap --capture all")
    out = capsys.readouterr().out
    env = spec_of(user_kernels, "cap").get("env", {})
    assert not {"DATABASE_URL", "https_proxy", "OPENAI_KEY_FOR_TESTS"} & set(env)
    assert "DATABASE_URL" in out and ":pw@" not in out


def test_secrets_typed_into_argv_prefix_or_metadata_make_the_file_owner_only(user_kernels, capsys):
    write_spec(user_kernels, "w")
    path = user_kernels / "w" / "kernel.json"
    assert main(["patch", "w", "--argv-prefix", f"wrapper --token {TOKEN}"]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_spec(user_kernels, "m")
    assert main(["patch", "m", "--metadata", 'site={"url": "https://u:pw@host/x"}']) == 0
    assert stat.S_IMODE((user_kernels / "m" / "kernel.json").stat().st_mode) == 0o600
    assert main(["show", "w"]) == 0 and main(["show", "m"]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out and ":pw@" not in out


# --- 4-8: sibling names and shared directories -----------------------------------------


def test_a_crashed_replace_of_a_dot_b_is_not_taken_for_a(user_kernels):
    """A crash between the two renames of a replace leaves the old spec in a work dir; the
    next write of *that* name puts it back. A write of 'a' must not take 'a.b''s."""
    write_spec(user_kernels, "a.b", {"argv": ["x", "{connection_file}"], "display_name": "AB"})
    work = transactions.work_dir(str(user_kernels), "a.b")  # the name the real writer gives it
    os.rename(user_kernels / "a.b", Path(work) / "old")
    specs.install_directory("a", str(user_kernels), str(user_kernels), {"argv": ["y"]}, action="x")
    assert spec_of(user_kernels, "a")["argv"] == ["y"]
    assert Path(work, "old").is_dir()  # still there for a.b's own recovery
    specs.install_directory(
        "a.b", str(user_kernels), str(tempfile.mkdtemp()), {"argv": ["z"]}, replace=True
    )
    assert spec_of(user_kernels, "a.b")["argv"] == ["z"]
    assert not Path(work).exists()


def test_sibling_names_replaced_concurrently_never_fail(user_kernels, tmp_path):
    src = write_spec(user_kernels, "src")
    (src / "big.bin").write_bytes(os.urandom(4 * 2**20))
    loops = {
        "clone": "for i in range(8): m.main(['clone', 'src', 'a.b', '--replace'])",
        "install": "for i in range(8): m.main(['install', 'a', '--capture', 'none', '--replace'])",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", f"import kernelmagic.frontends.cli as m\n{code}"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for code in loops.values()
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    # (old ipykernels print a debugger warning about frozen modules on import: not ours)
    assert [p.returncode for p in procs] == [0, 0]
    assert not [e for e in errors if "Traceback" in e or "error" in e.lower()], errors
    assert (user_kernels / "a.b" / "big.bin").stat().st_size == 4 * 2**20
    assert spec_of(user_kernels, "a")["display_name"].startswith("Python")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_an_unreachable_program_is_not_dead():
    """remove --missing deletes a spec whose program is gone, not one it cannot reach (an
    unreadable directory, as with an expired Kerberos ticket on NFS)."""
    base = Path(tempfile.mkdtemp(prefix="kernelmagic-nfs-"))
    try:
        base.chmod(0o755)
        locked = base / "locked"
        (locked / "bin").mkdir(parents=True)
        locked.chmod(0o700)  # root's: the user below cannot enter it
        kernels = base / "data" / "kernels"
        for name, program in (("behind", locked / "bin" / "python"), ("gone", base / "nope")):
            write_spec(kernels, name, {"argv": [str(program), "-f", "{connection_file}"]})
        for path in (base / "data", kernels, *kernels.iterdir()):
            os.chown(path, 65534, 65534)
        os.environ["JUPYTER_DATA_DIR"] = str(base / "data")
        # The child cannot read this venv where CI makes it (in a mode-700 temp dir): load
        # now what it needs.
        import kernelmagic.operations.doctor  # noqa: F401

        specs.list_specs()  # imports ipykernel's spec writer, reads jupyter_client's fields
        status, err = run_as_nobody(["remove", "--missing"])
        if status == 99:
            pytest.skip("this machine does not allow dropping root")
        assert status == 0, err
        assert sorted(p.name for p in kernels.iterdir() if not p.name.startswith(".")) == ["behind"]
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def test_a_planted_lock_symlink_is_refused(user_kernels, tmp_path, capsys):
    write_spec(user_kernels, "geo")
    target = tmp_path / "elsewhere"
    os.symlink(target, user_kernels / ".geo.lock")
    assert main(["env", "-k", "geo", "A=1"]) == 1
    err = capsys.readouterr().err
    assert "symbolic link" in err and err.count("\n") == 1
    assert not target.exists()
    assert "env" not in spec_of(user_kernels, "geo")


def test_a_planted_lock_fifo_is_refused_not_waited_on(user_kernels):
    """A group member replaced the lock file with a FIFO: the next write waited forever in
    open() for a writer that never came."""
    write_spec(user_kernels, "geo")
    os.mkfifo(user_kernels / ".geo.lock")
    done = subprocess.run(
        [sys.executable, "-m", "kernelmagic", "env", "-k", "geo", "A=1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        f"kernelmagic: error: lock file {user_kernels / '.geo.lock'} is not a regular file; "
        "remove it\n"
    )
    assert "env" not in spec_of(user_kernels, "geo")


def test_clone_copies_links_as_links(user_kernels, tmp_path):
    src = write_spec(user_kernels, "src")
    os.symlink(src, src / "loop")  # a link to its own directory
    os.symlink("/etc/hostname", src / "outside")
    assert main(["clone", "src", "dst"]) == 0
    dst = user_kernels / "dst"
    assert os.readlink(dst / "loop") == str(src)
    assert os.readlink(dst / "outside") == "/etc/hostname"


PLANTED = "import pathlib; pathlib.Path({marker!r}).write_text('ran')\n"


@pytest.mark.parametrize("how", ["world-writable", "other-owner"])
def test_doctor_does_not_run_specs_others_can_change(user_kernels, tmp_path, how):
    plant = tmp_path / "plant"
    plant.mkdir()
    marker = tmp_path / "marker"
    (plant / "sitecustomize.py").write_text(PLANTED.format(marker=str(marker)))
    spec_dir = write_spec(
        user_kernels,
        "shared",
        {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "env": {"PYTHONPATH": str(plant)},
        },
    )
    if how == "world-writable":
        spec_dir.chmod(0o777)
    elif os.geteuid() == 0:
        os.chown(spec_dir / "kernel.json", 65534, 65534)
    else:
        pytest.skip("needs root to give the spec to another user")
    report = doctor.diagnose(["shared"])
    kinds = [p.kind for p in report.diagnoses[0].problems]
    assert "not-probed" in kinds
    assert not marker.exists()


# --- 9-13: odd files and values ----------------------------------------------------------


def test_a_fifo_or_device_named_kernel_json_is_no_spec(user_kernels, system_kernels):
    fifo_dir = user_kernels / "fifo"
    fifo_dir.mkdir(parents=True)
    os.mkfifo(fifo_dir / "kernel.json")
    zero_dir = user_kernels / "zero"
    zero_dir.mkdir()
    os.symlink("/dev/zero", zero_dir / "kernel.json")
    write_spec(system_kernels, "fifo")  # Jupyter finds this one instead
    for argv in (["list", "--json"], ["show", "fifo"], ["doctor", "fifo"]):
        done = run_cli(*argv, timeout=60)
        assert done.returncode in (0, 1), done.stderr
    listing = json.loads(run_cli("list", "--json").stdout)
    assert listing["kernelspecs"]["fifo"]["resource_dir"] == str(system_kernels / "fifo")
    assert "zero" not in listing["kernelspecs"]


def test_env_names_and_values_no_process_can_take(user_kernels, tmp_path, capsys):
    write_spec(
        user_kernels,
        "odd",
        {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "env": {"A=B": "1", "NUL": "a\0b"},
        },
    )
    write_spec(user_kernels, "fine")
    report = doctor.diagnose()  # once crashed for every spec
    by_name = {d.name: [p.kind for p in d.problems] for d in report.diagnoses}
    assert "bad-env" in by_name["odd"] and by_name["fine"] == []
    env_file = tmp_path / "nul.env"
    env_file.write_text("V=a\0b\n")
    assert main(["env", "-k", "fine", "--file", str(env_file)]) == 2
    assert "NUL" in capsys.readouterr().err
    assert "env" not in spec_of(user_kernels, "fine")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", '{"a": [NaN]}'])
def test_non_json_numbers_are_refused(user_kernels, value, capsys):
    write_spec(user_kernels, "geo")
    before = (user_kernels / "geo" / "kernel.json").read_bytes()
    assert main(["patch", "geo", "--metadata", f"x={value}"]) == 2
    assert main(["patch", "geo", "--provisioner", "p", "--provisioner-config", f"x={value}"]) == 2
    assert (user_kernels / "geo" / "kernel.json").read_bytes() == before
    err = capsys.readouterr().err
    assert err.count("kernelmagic: error:") == 2 and "Traceback" not in err


def test_failures_are_one_line_and_change_nothing(user_kernels, tmp_path, capsys):
    write_spec(user_kernels, "geo")
    path = user_kernels / "geo" / "kernel.json"
    before = path.read_bytes()
    latin = tmp_path / "latin.env"
    latin.write_bytes(b"A=caf\xe9\n")
    cases = [
        ["env", "-k", "geo", "--file", str(latin)],
        ["install", "u", "--python", sys.executable, "--snippet-file", str(latin)],
        ["patch", "geo", "--metadata", "x=" + "[" * 5000 + "]" * 5000],
        ["patch", "geo", "--metadata", "x=" + "[" * 100 + "]" * 100],
        ["env", "-k", "geo", "--file", "/dev/zero"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("kernelmagic: error:") and err.count("\n") == 1, err
    assert path.read_bytes() == before and not (user_kernels / "u").exists()


def test_a_file_size_limit_while_writing_is_one_line(user_kernels):
    """A full disk or a file-size limit (RLIMIT_FSIZE) in the middle of a write."""
    write_spec(user_kernels, "geo")
    path = user_kernels / "geo" / "kernel.json"
    before = path.read_bytes()
    code = textwrap.dedent("""\
        import resource, sys
        from kernelmagic.frontends.cli import main
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        sys.exit(main(["env", "-k", "geo", "BIG=" + "x" * 100000]))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("kernelmagic: error: cannot write")
    assert done.stderr.count("\n") == 1
    assert path.read_bytes() == before


def test_refresh_of_a_spec_whose_record_is_not_an_object(user_kernels, capsys):
    write_spec(
        user_kernels,
        "rec",
        {"argv": ["python", "{connection_file}"], "metadata": {"kernelmagic": "snippet"}},
    )
    assert main(["refresh", "rec"]) == 1
    err = capsys.readouterr().err
    assert "no recorded source" in err and err.count("\n") == 1


def test_terminal_escapes_are_shown_escaped(user_kernels, capsys):
    write_spec(
        user_kernels,
        "esc",
        {"argv": ["python", "{connection_file}"], "display_name": "evil\x1b]0;owned\x07\x1b[2J"},
    )
    assert main(["list"]) == 0 and main(["show", "esc"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b" in out
    assert main(["show", "no\nsuch\x1b[2J"]) == 2  # no spec can have that name
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err


def test_an_unknown_name_with_a_newline_is_one_line_in_a_magic(ip):
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("kernel_show", "'no\nsuch'")
    assert type(info.value) is UsageError and "\n" not in str(info.value)


# --- 14-15: snippets and parsers ---------------------------------------------------------


def _unique_sleep() -> str:
    """A sleep length no other process has in its command line (this run, this test)."""
    import random

    return f"600.{os.getpid()}{random.randrange(10**6)}"


def _alive(marker: str) -> bool:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                return True
        except OSError:
            continue
    return False


def test_a_background_job_does_not_block_capture_and_is_not_left_behind(user_kernels, tmp_path):
    marker = _unique_sleep()
    snippet = tmp_path / "bg.sh"
    snippet.write_text(f"sleep {marker} &\nexport BG=1\n")
    done = run_cli(
        "install", "bg", "--python", sys.executable, "--snippet-file", str(snippet), timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert spec_of(user_kernels, "bg")["env"]["BG"] == "1"
    assert not _alive(marker)


def test_timeout_stops_the_snippet_and_everything_it_started(user_kernels, tmp_path):
    marker = _unique_sleep()
    snippet = tmp_path / "slow.sh"
    snippet.write_text(f"sleep {marker} &\nsleep {marker}\n")
    argv = ["install", "slow", "--python", sys.executable, "--snippet-file", str(snippet)]
    done = run_cli(*argv, "--timeout", "1", timeout=120)
    assert done.returncode == 1
    assert "did not finish within 1 s" in done.stderr and "--timeout" in done.stderr
    assert not _alive(marker) and not (user_kernels / "slow").exists()
    assert run_cli(*argv, "--timeout", "0").returncode == 2


def test_an_interrupted_snippet_leaves_no_process(tmp_path):
    marker = _unique_sleep()
    code = textwrap.dedent(f"""\
        import _thread, threading
        from kernelmagic.domain import shells
        threading.Timer(1.0, _thread.interrupt_main).start()
        try:
            shells.run_in_login_shell("sleep {marker}", environ={{}}, timeout=300)
        except KeyboardInterrupt:
            print("interrupted")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "interrupted", done.stderr
    assert not _alive(marker)


def test_hostile_sizes_parse_in_linear_time(user_kernels, tmp_path):
    """Each took 17 to 55 s before (quadratic); a child process bounds them at 30 s."""
    write_spec(user_kernels, "geo")
    unclosed = tmp_path / "unclosed.env"
    unclosed.write_text("A='never closed\n" + "B=1\n" * 2000)
    done = run_cli("env", "-k", "geo", "--file", str(unclosed), timeout=30)
    assert done.returncode == 2 and "line 1: no closing quotation" in done.stderr
    big = tmp_path / "big.env"
    big.write_text("V='" + ("x" * 79 + "\n") * 20000 + "'\n")  # one 1.6 MB value
    assert run_cli("env", "-k", "geo", "--file", str(big), timeout=30).returncode == 0
    assert len(spec_of(user_kernels, "geo")["env"]["V"]) == 1_600_000
    flags = [w for i in range(30000) for w in ("-u", f"V{i}")]
    done = run_cli("env", "-k", "geo", *flags, timeout=30)
    assert done.returncode == 2 and "at most 1000" in done.stderr


def test_socket_named_kernel_json_is_no_spec(user_kernels):
    spec_dir = user_kernels / "sock"
    spec_dir.mkdir(parents=True)
    path = str(spec_dir / "kernel.json")
    if len(path) > 100:
        pytest.skip("socket path too long for AF_UNIX")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        assert "sock" not in specs.find_kernel_specs()
        assert "sock" not in [i.name for i in specs.list_specs()]


@pytest.mark.parametrize(
    ("raw", "kind"), [("null", "null"), ("[1]", "a list"), ('"x"', "a string")]
)
def test_a_kernel_json_that_is_no_object_is_named_in_jsons_words(raw, kind, user_kernels, capsys):
    """Walk I: a `null` kernel.json was "kernel.json holds a NoneType, not an object"."""
    from kernelmagic.frontends.cli import main

    write_spec(user_kernels, "odd", raw=raw)
    main(["list", "--json"])
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert problems["odd"] == [f"kernel.json holds {kind}, not an object"], problems


def test_one_odd_kernel_json_takes_no_listing_down(user_kernels, ip, capsys):
    """Walk M: a kernel.json nested a thousand deep (RecursionError), an argv[0] holding a
    NUL or a lone surrogate (ValueError, UnicodeEncodeError from os.stat) and a display name
    holding a lone surrogate (UnicodeEncodeError printing the table) each made `list`,
    `%kernel_list`, `list_specs()` and the doctor fail with a traceback for every user of
    that kernels dir. Jupyter lists the others (and those two)."""
    write_spec(user_kernels, "good")
    (user_kernels / "deep").mkdir()
    (user_kernels / "deep" / "kernel.json").write_text(
        '{"argv": ["/bin/true"], "display_name": "d", "metadata": {"x": '
        + "[" * 1000
        + "]" * 1000
        + "}}"
    )
    for name, argv0, display in (("nul", "/bin/tr\\u0000ue", "n"),
                                 ("sur", "/bin/\\ud800x", "\\ud800 lone")):  # fmt: skip
        (user_kernels / name).mkdir()
        (user_kernels / name / "kernel.json").write_text(
            f'{{"argv": ["{argv0}", "{{connection_file}}"], "display_name": "{display}"}}'
        )
    odd = {"good", "deep", "nul", "sur"}
    assert odd <= {i.name for i in specs.list_specs()}
    assert odd <= {i.name for i in ip.run_line_magic("kernel_list", "")}
    for argv in (["list"], ["list", "--json"], ["show", "sur"], ["doctor"], ["doctor", "nul"],
                 ["doctor", "--launch", "nul", "sur", "--timeout", "20"]):  # fmt: skip
        capsys.readouterr()
        assert main(argv) in (0, 1), argv
        out, err = capsys.readouterr()
        named = "nul" if argv == ["doctor", "nul"] else "sur"
        assert "Traceback" not in out + err and named in out + err, (argv, out, err)
    assert main(["list"]) == 0
    assert "\\ud800 lone" in capsys.readouterr().out
