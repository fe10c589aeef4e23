"""The one parser for line, cell and --file assignments."""

from __future__ import annotations

import subprocess

import pytest

from kernelmagic.domain.shell_syntax import (
    AssignmentError,
    parse_assignment,
    parse_env_lines,
    split_args,
    split_words,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("A=1 # set A", ["A=1"]),
        ("A=1#not-a-comment", ["A=1#not-a-comment"]),
        ("A='# quoted' # real", ["A=# quoted"]),
        ('A="x # y"', ["A=x # y"]),
        (r"A=\# B=2", ["A=#", "B=2"]),
        ("# all comment", []),
    ],
)
def test_a_comment_ends_the_line_where_a_shell_would_end_it(line, expected):
    """IPython hands a line magic its trailing ``# comment``; like a shell, ``a#b`` is one
    word and a quoted ``#`` is text."""
    assert split_args(line) == expected


def test_split_args_quotes_and_errors():
    assert split_args("-k geo A='x y' B=$HOME  # note") == ["-k", "geo", "A=x y", "B=$HOME"]
    with pytest.raises(AssignmentError, match="quotes"):
        split_args("A='open")


def test_parse_assignment_keeps_value_exactly():
    assert parse_assignment("A=b=c") == ("A", "b=c")
    assert parse_assignment("A=") == ("A", "")
    assert parse_assignment("P=${PATH}:/x") == ("P", "${PATH}:/x")
    for bad in ["A", "=1", "1A=x", "A-B=1", "A B=1"]:
        with pytest.raises(AssignmentError):
            parse_assignment(bad)


def test_parse_env_lines_shell_forms():
    text = """
# a comment
export GDAL_DATA=/opt/gdal   # trailing comment
PROJ_LIB="/opt/proj lib"
MULTI='line one
line two'
EMPTY=
A=1 B=2
unset OLD
TEMPLATE=${PATH}:/x
"""
    changes = parse_env_lines(text)
    assert changes.set == {
        "GDAL_DATA": "/opt/gdal",
        "PROJ_LIB": "/opt/proj lib",
        "MULTI": "line one\nline two",
        "EMPTY": "",
        "A": "1",
        "B": "2",
        "TEMPLATE": "${PATH}:/x",
    }
    assert changes.unset == ["OLD"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=1\nnot an assignment", "line 2"),
        ("A='never closed\nB=2", "line 1: no closing quotation"),
        ("export", "needs KEY=VALUE"),
        ("unset", "needs a variable name"),
        ("BAD-NAME=1", "invalid variable name"),
    ],
)
def test_parse_env_lines_errors_name_the_line(text, message):
    with pytest.raises(AssignmentError, match=message):
        parse_env_lines(text)


@pytest.mark.parametrize(
    "quoted",
    [r'"cost \$5"', r'"a\`b"', r'"a\\b"', r'"a\nb"', r'"a\"b"', '"a\\\nb"', r'"\x"', '"t\\\tx"'],
)
def test_a_backslash_in_double_quotes_reads_as_bash_reads_it(quoted):
    """Walk H: `export PRICE="cost \\$5"` in a `%%kernel_env` cell stored `cost \\$5`; bash
    gives `cost $5` (inside double quotes a backslash escapes $, a backquote and a newline
    too, not only " and itself as shlex has it)."""
    bash = subprocess.run(["bash", "-c", f"printf %s {quoted}"], capture_output=True, text=True)
    assert split_words(quoted) == [bash.stdout]
    assert parse_env_lines(f"export X={quoted}\n").set == {"X": bash.stdout}


def test_a_suggested_pip_command_runs_in_a_shell_for_a_home_relative_python(tmp_path):
    """Walk K: for a spec whose interpreter is `~/venvs/py311/bin/python`, the note said
    `'~/venvs/py311/bin/python' -m pip install ...`: quoted, the ~ is not expanded, and the
    pasted command failed with "No such file or directory"."""
    from kernelmagic.domain.shells import pip_install

    home = tmp_path / "home"
    python = home / "venvs" / "py 311" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho ran "$@"\n')
    python.chmod(0o755)
    command = pip_install("~/venvs/py 311/bin/python", "rasterio")
    done = subprocess.run(["bash", "-c", command], env={"HOME": str(home)},
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout == "ran -m pip install rasterio\n"
