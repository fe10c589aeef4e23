"""Shared kernel dirs under stress: concurrent writers, SIGKILL mid-write, hostile input,
secrets by value, unwritable locations, scale. Each test prints its figures."""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from conftest import FIGURES
from helpers import run_as_nobody, run_in_kernel, write_spec
from hypothesis import given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from kernelmagic import specs
from kernelmagic.commands.render import env_lines
from kernelmagic.domain.shell_syntax import (
    AssignmentError,
    parse_assignment,
    parse_env_lines,
    split_args,
)
from kernelmagic.frontends.cli import main
from kernelmagic.storage import atomic


def report(figure: str) -> None:
    FIGURES.append(figure)


def spec_env(user_kernels, name):
    return json.loads((user_kernels / name / "kernel.json").read_text()).get("env", {})


def test_24_concurrent_writers_keep_every_variable(user_kernels):
    write_spec(user_kernels, "shared")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kernelmagic", "env", "-k", "shared", f"K{i}={i}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(24)
    ]
    statuses = [p.wait() for p in procs]
    assert statuses == [0] * 24, [p.stderr.read() for p in procs]
    env = spec_env(user_kernels, "shared")
    kept = sum(1 for i in range(24) if env.get(f"K{i}") == str(i))
    report(f"concurrent writers: {kept}/24 variables kept")
    assert kept == 24


_WRITER = textwrap.dedent("""\
    import itertools, sys
    from kernelmagic import specs
from kernelmagic.commands.render import env_lines
    from kernelmagic.domain.shell_syntax import EnvChanges
    name = sys.argv[1]
    start = len(specs.get_spec(name).env)
    for i in itertools.count(start):
        specs.patch_spec(name, specs.SpecEdit(env=EnvChanges({f"K{i}": "x" * 2000})))
""")

_REPLACER = textwrap.dedent("""\
    import itertools, sys
    from kernelmagic import specs
from kernelmagic.commands.render import env_lines
    from kernelmagic.domain import envcapture
    none = envcapture.CaptureOptions(mode="none")
    for i in itertools.count():
        specs.install_current_python(
            "swap", sys.argv[1], capture_options=none, display_name=f"v{i}", replace=True,
            explicit_env={"BIG": "y" * (i % 7) * 5000},
        )
""")


def _kill_rounds(script: str, argv: list[str], rounds: int, check) -> None:
    rng = random.Random(20261125)
    for _ in range(rounds):
        child = subprocess.Popen([sys.executable, "-c", script, *argv])
        time.sleep(rng.uniform(0.4, 1.5))  # past the imports, into the writes
        child.send_signal(signal.SIGKILL)
        child.wait()
        check()


def test_sigkill_mid_write_never_leaves_a_broken_spec(user_kernels):
    write_spec(user_kernels, "crash")
    path = user_kernels / "crash" / "kernel.json"
    survived = 0

    def check():
        nonlocal survived
        env = json.loads(path.read_text()).get("env", {})  # parses: never truncated
        assert sorted(env, key=lambda k: int(k[1:])) == [f"K{i}" for i in range(len(env))]
        assert all(v == "x" * 2000 for v in env.values())  # never half-merged
        survived += 1

    _kill_rounds(_WRITER, ["crash"], 12, check)
    writes = len(spec_env(user_kernels, "crash"))
    specs.patch_spec("crash", specs.SpecEdit(display_name="after the storm"))
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(atomic.TEMP_SUFFIX)]
    report(f"SIGKILL rounds survived: {survived}/12 ({writes} writes completed)")
    assert leftovers == []  # the next write cleaned what killed writers left
    assert len(atomic.backups(path.parent)) <= atomic.BACKUPS_KEPT


def test_sigkill_during_replace_leaves_old_or_new_spec(user_kernels):
    specs.install_current_python(
        "swap", str(user_kernels), display_name="v-first", capture_options=None
    )
    survived = 0

    def check():
        nonlocal survived
        (info,) = specs.list_specs("swap")  # always there: the old spec or the new one
        assert info.visible and info.display_name.startswith("v")
        assert info.env.get("BIG", "") == "y" * len(info.env.get("BIG", ""))
        survived += 1

    _kill_rounds(_REPLACER, [str(user_kernels)], 10, check)
    specs.install_current_python(
        "swap", str(user_kernels), capture_options=None, replace=True, display_name="final"
    )
    work = [p.name for p in user_kernels.iterdir() if p.name.startswith(".kernelmagic-")]
    report(f"SIGKILL during --replace: {survived}/10 rounds found a whole spec")
    assert work == []


HOSTILE_NAMES = ["", ".", "..", "a/b", "a\\b", "naïve", "x" * 256, "with space", "new\nline", "a;b"]
HOSTILE_CLI = [
    *(["install", name, "--capture", "none"] for name in HOSTILE_NAMES),
    *(["clone", "geo", name] for name in HOSTILE_NAMES),
    ["env", "-k", "geo", "A=B=C", "=empty"],
    ["env", "-k", "geo", "="],
    ["env", "-k", "geo", "NO_EQUALS"],
    ["env", "-k", "geo", "BAD-NAME=1"],
    ["env", "-k", "geo", "-u", "A=B"],
    ["patch", "geo", "--metadata", "x=not json"],
    ["patch", "geo", "--metadata", "=1"],
    ["patch", "geo", "--argv-prefix", "'unbalanced"],
    ["patch", "geo", "--interrupt-mode", "sometimes"],
]


def test_hostile_cli_input_exit_2_one_line_nothing_written(user_kernels, capsys):
    path = write_spec(user_kernels, "geo") / "kernel.json"
    before = path.read_bytes()
    listing = sorted(p.name for p in user_kernels.iterdir())
    for argv in HOSTILE_CLI:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("kernelmagic: error: ") and err.count("\n") == 1, (argv, err)
        assert "Traceback" not in err
        assert path.read_bytes() == before
        assert sorted(p.name for p in user_kernels.iterdir()) == listing
    report(f"hostile CLI inputs tried: {len(HOSTILE_CLI)}, all refused with exit 2")


def test_hostile_magic_input_is_a_plain_usage_error(ip, user_kernels):
    path = write_spec(user_kernels, "geo") / "kernel.json"
    before = path.read_bytes()
    lines = [
        *(("kernel_install", shlex.quote(n) + " --capture none") for n in HOSTILE_NAMES if n),
        ("kernel_install", "''"),
        ("kernel_env", "-k geo =1"),
        ("kernel_patch", "geo --metadata x={bad"),
        ("kernel_patch", 'geo --argv-prefix "\'open"'),
    ]
    for magic, line in lines:
        with pytest.raises(UsageError) as info:
            ip.run_line_magic(magic, line)
        assert type(info.value) is UsageError and "\n" not in str(info.value)
    with pytest.raises(UsageError):
        ip.run_cell_magic("kernel_env", "-k geo", "GOOD=1\nBAD LINE\n")
    assert path.read_bytes() == before
    report(f"hostile magic inputs tried: {len(lines) + 1}, all plain UsageErrors")


ODD_VALUES = {
    "NEWLINES": "line one\nline two\n",
    "EQUALS": "a=b==c",
    "EMPTY": "",
    "DOLLARS": "$HOME ${PATH} $$ $",
    "QUOTES": 'it\'s "quoted" `here`',
    "BACKSLASH": "C:\\path\\to\\n",
    "UNICODE": "naïve Ωmega 東京 🚀",
    "HASH": "#not a comment # either",
    "TABS": "a\tb",
}


def test_odd_values_round_trip_to_a_launched_kernel(user_kernels, tmp_path):
    write_spec(user_kernels, "odd")
    env_file = tmp_path / "odd.env"
    env_file.write_text(
        "".join(f"export {k}={shlex.quote(v)}\n" for k, v in ODD_VALUES.items()), "utf-8"
    )
    assert main(["env", "-k", "odd", "--literal", "--file", str(env_file)]) == 0
    seen = run_in_kernel("odd")["env"]
    assert {k: seen.get(k) for k in ODD_VALUES} == ODD_VALUES
    report(f"odd values round-tripped to a kernel: {len(ODD_VALUES)}")


ENV_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"))


@settings(max_examples=300, deadline=None)
@given(ENV_NAMES, VALUES)
def test_line_assignments_round_trip(name, value):
    (word,) = split_args(f"{name}={shlex.quote(value)}  # trailing comment")
    assert parse_assignment(word) == (name, value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(ENV_NAMES, VALUES, max_size=8), st.sampled_from(["", "export "]))
def test_cell_and_file_assignments_round_trip(env, prefix):
    text = "# header\n\n" + "".join(f"{prefix}{k}={shlex.quote(v)}\n" for k, v in env.items())
    assert parse_env_lines(text).set == env


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(ENV_NAMES, VALUES, max_size=8))
def test_an_env_listing_reads_back_exactly_and_cannot_drive_a_terminal(env):
    """What ``env`` prints (``%%kernel_env`` and ``--file`` read it back): a value with an
    escape sequence or a carriage return is shown as ``$'...'`` with C escapes."""
    listing = env_lines(env)
    assert parse_env_lines(listing).set == env
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", listing)
    for key, value in env.items():
        if "\n" not in value:  # one line: a magic's arguments, as split there
            (word,) = split_args(env_lines({key: value}))
            assert parse_assignment(word) == (key, value)


def test_an_env_listing_shows_an_escape_sequence_as_c_escapes(user_kernels, capsys):
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "esc", "language": "python"}
    write_spec(user_kernels, "esc", {**spec, "env": {"E1": "x\u001b[31mred\rY"}})
    assert main(["env", "-k", "esc"]) == 0
    assert capsys.readouterr().out == "E1=$'x\\x1b[31mred\\rY'\n"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parsers_fail_only_with_clear_errors(text):
    for parse in (parse_env_lines, split_args):
        try:
            parse(text)
        except AssignmentError as exc:
            assert str(exc)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=300), st.sampled_from(["\u017f", "\u212a", "\u0130", "a\n"])))
def test_name_validation(name):
    """jupyter_client's own rule (lowercase, then its pattern), less what would break the
    kernels directory: '.', '..', a final newline, names longer than a file name."""
    from jupyter_client.kernelspec import _is_valid_kernel_name

    stored = name.lower()
    valid = bool(_is_valid_kernel_name(stored)) and stored not in (".", "..")
    valid = valid and not stored.endswith("\n") and len(stored.encode()) <= 255
    try:
        got = specs.validate_name(name)
    except specs.InvalidInput as exc:
        assert not valid and "jupyter_client accepts" in str(exc)
    else:
        assert valid and got == stored


def test_secrets_by_value_are_dropped_reported_and_masked(ip, user_kernels, capsys, monkeypatch):
    from kernelmagic.domain import envcapture

    aws = "AKIA" + "Q" * 16
    session = {"HOME": "/h", "DEPLOY_HELPER": aws, "FEED": "xoxp-1234567890-abcdef", "OK": "1"}
    result = envcapture.capture(session, envcapture.CaptureOptions(mode="all"))
    assert result.env == {"OK": "1"}
    assert sorted(result.secrets_skipped) == ["DEPLOY_HELPER", "FEED"]
    kept = envcapture.capture(
        session, envcapture.CaptureOptions(mode="all", include=("DEPLOY_HELPER",))
    )
    assert kept.env["DEPLOY_HELPER"] == aws

    monkeypatch.setenv("DEPLOY_HELPER", aws)
    ip.run_line_magic("kernel_install", "sec --capture all")
    out = capsys.readouterr().out
    assert "DEPLOY_HELPER" in out and aws not in out
    ip.run_line_magic("kernel_install", "sec2 --capture all --include DEPLOY_HELPER")
    path = user_kernels / "sec2" / "kernel.json"
    assert json.loads(path.read_text())["env"]["DEPLOY_HELPER"] == aws
    assert os.stat(path).st_mode & 0o777 == 0o600
    ip.run_line_magic("kernel_show", "sec2")
    shown = capsys.readouterr().out
    assert aws not in shown and '"DEPLOY_HELPER": "<hidden>"' in shown


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_unwritable_location_says_what_to_try():
    """Also in a process that imported ipykernel (as a full run's has), whose files the user
    who runs the install cannot read: CI's venv lies in a mode-700 dir (it once said "cannot
    run .../venv/bin/python3: Permission denied", asking that ipykernel's installer)."""
    import ipykernel.kernelspec  # noqa: F401

    # Outside pytest's tmp_path, whose ancestors other users cannot enter.
    base = Path(tempfile.mkdtemp(prefix="kernelmagic-shared-"))
    base.chmod(0o755)
    locked = base / "shared"
    (locked / "share" / "jupyter" / "kernels").mkdir(parents=True)
    try:
        _check_unwritable(locked)
    finally:
        shutil.rmtree(base)


def _check_unwritable(locked: Path) -> None:
    status, err = run_as_nobody(["install", "x", "--capture", "none", "--prefix", str(locked)])
    if status == 99:
        pytest.skip("this machine does not allow dropping root")
    assert status == 1
    assert err.startswith("kernelmagic: error: cannot write ") and err.count("\n") == 1
    assert str(locked / "share" / "jupyter" / "kernels") in err
    assert "--user" in err and "--prefix" in err
    assert list((locked / "share" / "jupyter" / "kernels").iterdir()) == []


def test_5000_variables_in_one_write(user_kernels, tmp_path):
    write_spec(user_kernels, "big")
    big = tmp_path / "big.env"
    big.write_text("".join(f"VAR_{i}='value {i}'\n" for i in range(5000)))
    start = time.perf_counter()
    assert main(["env", "-k", "big", "--file", str(big)]) == 0
    elapsed = time.perf_counter() - start
    env = spec_env(user_kernels, "big")
    assert len(env) == 5000 and env["VAR_4999"] == "value 4999"
    assert len(atomic.backups(user_kernels / "big")) == 1  # one write, one backup
    report(f"5,000 variables written in one write ({elapsed:.2f} s)")


def test_missing_parent_is_created_but_a_file_in_the_way_is_an_error(tmp_path, capsys):
    assert main(["install", "x", "--capture", "none", "--prefix", str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / "share" / "jupyter" / "kernels" / "x" / "kernel.json").exists()
    (tmp_path / "file").write_text("")
    assert main(["install", "x", "--capture", "none", "--prefix", str(tmp_path / "file")]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "file") in err and "--user" in err


def test_stale_files_do_not_confuse_listing(user_kernels):
    spec_dir = write_spec(user_kernels, "geo")
    (spec_dir / (atomic.TEMP_PREFIX + "abc" + atomic.TEMP_SUFFIX)).write_text("{trunc")
    (user_kernels / ".geo.lock").write_text("")
    (user_kernels / ".kernelmagic-geo.x1y2").mkdir()
    assert [s.name for s in specs.list_specs("geo")] == ["geo"]
    assert Path(specs.get_spec("geo").resource_dir) == spec_dir


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_remove_removes_none_when_one_of_its_specs_cannot_be_removed(monkeypatch):
    """Walk I, as a user: `remove u1 ir` (ir in a system dir) removed u1, then failed on ir
    with stdout empty: u1 was gone, unsaid. A spec dir without write (its ``..`` cannot
    move) failed too, and each try left a work dir behind."""
    base = Path(tempfile.mkdtemp(prefix="kernelmagic-remove-"))
    base.chmod(0o755)
    try:
        mine, system = base / "mine" / "kernels", base / "system" / "kernels"
        write_spec(mine, "u1")
        write_spec(mine, "frozen")
        write_spec(system, "ir")
        for path in (mine.parent, *mine.parent.rglob("*")):
            os.chown(path, 65534, 65534)
        (mine / "frozen").chmod(0o555)
        monkeypatch.setenv("JUPYTER_PATH", f"{mine.parent}:{system.parent}")
        for names in (["u1", "ir"], ["u1", "frozen"]):
            status, err = run_as_nobody(["remove", *names])
            if status == 99:
                pytest.skip("this machine does not allow dropping root")
            assert status == 1 and err.count("\n") == 1, err
            assert f"cannot write {system if 'ir' in names else mine / 'frozen'}" in err, err
            assert (mine / "u1" / "kernel.json").is_file()  # nothing was removed
            assert sorted(p.name for p in mine.iterdir()) == ["frozen", "u1"]
        # A link of yours to a spec you may not change moves without writing its target.
        os.symlink(system / "ir", mine / "linked")
        os.lchown(mine / "linked", 65534, 65534)
        status, err = run_as_nobody(["remove", "linked"])
        assert status == 0 and not os.path.lexists(mine / "linked"), err
        assert (system / "ir" / "kernel.json").is_file()
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_a_refused_write_names_the_directory_and_a_refused_read_the_file(monkeypatch):
    """Walk G, as a user: a spec they may not change was refused naming a random lock or
    temp file (`.kernel.json.db2nrprd.tmp`); a clone of a spec holding another user's
    owner-only file blamed the clone's target ("cannot write .../kernels"), not that file."""
    base = Path(tempfile.mkdtemp(prefix="kernelmagic-names-"))
    base.chmod(0o755)
    try:
        theirs = base / "theirs" / "kernels"
        write_spec(theirs, "geo")
        private = theirs / "geo" / "kernelmagic-snippet.sh"
        private.write_text("export TOKEN=x\n")
        private.chmod(0o600)
        for path in (base / "theirs", *(base / "theirs").rglob("*")):
            if path.is_dir():
                path.chmod(0o755)
        mine = base / "mine"
        mine.mkdir()
        os.chown(mine, 65534, 65534)
        monkeypatch.setenv("JUPYTER_PATH", str(theirs.parent))
        status, err = run_as_nobody(["env", "-k", "geo", "X=1"])
        if status == 99:
            pytest.skip("this machine does not allow dropping root")
        assert status == 1 and ".tmp" not in err and ".lock" not in err, err
        assert f"cannot write {theirs}" in err or f"cannot write {theirs / 'geo'}" in err, err
        status, err = run_as_nobody(["clone", "geo", "mine", "--prefix", str(mine)])
        assert status == 1 and f"cannot read {private}: permission denied" in err, err
        assert not list(mine.rglob("kernel.json"))
    finally:
        shutil.rmtree(base)
