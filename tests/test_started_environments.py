"""An activation's interpreter check is skipped only for an environment it passed in, unchanged."""

from __future__ import annotations

import os
import sys

import pytest

from kernelmagic.storage import files_read
from kernelmagic.storage import started_environments as started

PYTHON = sys.executable


@pytest.fixture
def read(tmp_path):
    """What the check's interpreter read: a module file and the directory it was found in."""
    pylib = tmp_path / "pylib"
    pylib.mkdir()
    (pylib / "getopt.py").write_text("# a module shadowing the standard library's\n")
    return files_read.report_line([str(pylib / "getopt.py"), str(pylib)])


@pytest.fixture
def environment(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    preload = tmp_path / "preload.so"
    preload.write_bytes(b"\x7fELF one")
    return {
        "PATH": "/usr/bin:/bin",
        "LD_LIBRARY_PATH": str(lib),
        "LD_PRELOAD": str(preload),
        "GDAL_DATA": "/opt/gdal/share",
    }


def test_a_passed_environment_is_remembered(environment, read):
    assert not started.passed(PYTHON, environment)
    started.remember(PYTHON, environment, "no report: the check printed nothing else")
    assert not started.passed(PYTHON, environment)
    started.remember(PYTHON, environment, read)
    assert started.passed(PYTHON, environment)
    assert started.passed(PYTHON, dict(reversed(list(environment.items()))))  # order-free


@pytest.mark.parametrize(
    "change",
    [
        "a variable",
        "a new variable",
        "a file on LD_LIBRARY_PATH",
        "the preloaded library",
        "a module it imported, rewritten in place",
        "a .pth file beside its modules",
    ],
)
def test_any_change_it_depends_on_means_a_new_check(environment, change, tmp_path, read):
    started.remember(PYTHON, environment, read)
    if change == "a variable":
        environment = {**environment, "GDAL_DATA": "/opt/gdal-2/share"}
    elif change == "a new variable":
        environment = {**environment, "PYTHONHOME": "/nonexistent"}
    elif change == "a file on LD_LIBRARY_PATH":
        (tmp_path / "lib" / "libzmq.so.5").write_bytes(b"shadow")
    elif change == "the preloaded library":  # rewritten in place, same size
        (tmp_path / "preload.so").write_bytes(b"\x7fELF two")
    elif change == "a module it imported, rewritten in place":  # its directory is unchanged
        with open(tmp_path / "pylib" / "getopt.py", "r+") as module:
            module.write("raise ImportError")
    else:
        (tmp_path / "pylib" / "broken.pth").write_text("import nonexistent\n")
    assert not started.passed(PYTHON, environment)


def test_another_interpreter_is_checked_again(environment, tmp_path, read):
    started.remember(PYTHON, environment, read)
    other = tmp_path / "python"
    other.symlink_to(PYTHON)
    assert started.passed(str(other), environment)  # the same file, by another name
    copy = tmp_path / "python-copy"
    copy.write_bytes(b"#!/bin/sh\n")
    assert not started.passed(str(copy), environment)


def test_entries_others_could_have_written_are_not_believed(environment, read):
    started.remember(PYTHON, environment, read)
    directory = started._directory()
    assert directory is not None
    os.chmod(directory, 0o777)
    try:
        assert not started.passed(PYTHON, environment)
    finally:
        os.chmod(directory, 0o700)
    assert started.passed(PYTHON, environment)


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to chown")
def test_an_entry_of_another_user_is_not_believed(environment, read):
    started.remember(PYTHON, environment, read)
    directory = started._directory()
    os.chown(os.path.join(directory, started.fingerprint(PYTHON, environment)), 12345, 12345)
    assert not started.passed(PYTHON, environment)


def test_old_entries_are_pruned(environment, monkeypatch, read):
    monkeypatch.setattr(started, "_KEPT", 4)
    for i in range(6):
        started.remember(PYTHON, {**environment, "N": str(i)}, read)
    directory = started._directory()
    assert 2 <= len(os.listdir(directory)) <= 4
    assert started.passed(PYTHON, {**environment, "N": "5"})  # the newest is kept
