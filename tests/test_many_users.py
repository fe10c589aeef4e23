"""Many users, one cluster (issue 34): the safety rules cover everything a command runs,
reads and writes. Each test is named after the item it covers and failed on the code before
it. The multi-user ones run as two real users made with ``useradd`` (root only)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from conftest import FIGURES
from helpers import write_spec

from kernelmagic.frontends.cli import main

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
