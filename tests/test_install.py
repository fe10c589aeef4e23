"""InstallRequest: the Python API refuses exactly what the command line refuses, with the same
message, before anything runs."""

from __future__ import annotations

import pytest
from helpers import write_spec

from kernelmagic.commands.install import InstallRequest
from kernelmagic.domain.envcapture import CaptureOptions
from kernelmagic.domain.provenance import Source
from kernelmagic.errors import InvalidInput
from kernelmagic.frontends.cli import main

# (command line, the same request built in Python, words the refusal says)
REFUSED = [
    (["--kernel", "ir", "--like", "bash"], {"kernel": "ir", "like": "bash"}, "--like"),
    (
        ["--kernel", "ir", "--python", "/usr/bin/python3"],
        {"kernel": "ir", "source": Source("python", python="/usr/bin/python3")},
        "--python names a Python interpreter",
    ),
    (["--program", "/usr/bin/R"], {"program": "/usr/bin/R"}, "--program goes with"),
    (
        ["--modules", "gdal", "--baseline", "/tmp/x"],
        {
            "source": Source("modules", modules="gdal"),
            "capture": CaptureOptions(baseline_file="/tmp/x"),
        },
        "--baseline applies to --from-current",
    ),
    (["--shell", "/bin/zsh"], {"source": Source("current", shell="/bin/zsh")}, "--shell runs"),
    (["--timeout", "0"], {"timeout": 0}, "--timeout must be a positive"),
    (["--env", "A=1\0"], {"env": {"A": "1\0"}}, "NUL"),
    (["--env", "BAD-NAME=1"], {"env": {"BAD-NAME": "1"}}, "invalid variable name"),
    (["--group", "no-such-group-here"], {"group": "no-such-group-here"}, "no Unix group"),
]


@pytest.mark.parametrize(("argv", "fields", "said"), REFUSED, ids=[r[2] for r in REFUSED])
def test_python_api_refuses_what_the_cli_refuses(argv, fields, said, user_kernels, capsys):
    assert main(["install", "x", *argv]) == 2
    err = capsys.readouterr().err
    assert said in err
    with pytest.raises(InvalidInput) as refused:
        InstallRequest("x", **fields)
    assert said in str(refused.value)
    assert str(refused.value) in err  # the very same sentence
    assert not user_kernels.exists()


def test_several_sources_are_refused_by_the_flags():
    assert main(["install", "x", "--modules", "a", "--from-conda", "b"]) == 2
    assert main(["install", "x", "--from-current", "--modules", "a"]) == 2


@pytest.mark.parametrize("flag", ["--modules", "--from-conda", "--python"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_source_is_refused_not_taken_for_this_session(flag, value, user_kernels, capsys):
    """Walks I and J: ``--modules "$MODS"`` with MODS empty made a spec of this session's
    whole environment (``--modules "  "``: one that captured nothing), exit 0."""
    assert main(["install", "x", flag, value]) == 2
    assert f"{flag} is empty" in capsys.readouterr().err
    assert not user_kernels.exists()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--like", ""], "--like is empty"),
        (["--capture", "none", "--baseline", "/nonexistent"], "--baseline has nothing to"),
    ],
)
def test_an_option_that_would_do_nothing_is_refused(argv, said, user_kernels, capsys):
    """Walk H and I: `--like ''` said "--kernel must be one of python, ir, julia, not
    'python'"; `--capture none --baseline FILE` ignored the baseline (even a missing one)."""
    assert main(["install", "x", *argv]) == 2
    assert said in capsys.readouterr().err
    assert not user_kernels.exists()


def test_the_name_is_checked_and_stored_lowercase():
    assert InstallRequest("GeO").name == "geo"
    with pytest.raises(InvalidInput, match="invalid kernel name"):
        InstallRequest("a/b")


def test_a_template_whose_argv_is_a_string_is_refused_saying_so(user_kernels, capsys):
    """Walk I: `install y --like argvstr` (argv a string, which Jupyter lists) said "no p
    found (p on the environment's PATH)": it took the string's first letter for a program."""
    write_spec(user_kernels, "argvstr", {"argv": "python -m ipykernel_launcher -f x",
                                          "display_name": "s", "language": "python"})  # fmt: skip
    assert main(["install", "y", "--like", "argvstr", "--capture", "none"]) == 1
    assert "its argv is not a list of text" in capsys.readouterr().err
    assert not (user_kernels / "y").exists()


def test_an_unknown_like_is_refused_before_the_snippet_runs(user_kernels, tmp_path, capsys):
    ran = tmp_path / "ran"
    snippet = tmp_path / "s.sh"
    snippet.write_text(f"touch {ran}\nexport KM_X=1\n")
    assert main(["install", "x", "--like", "nosuch", "--snippet-file", str(snippet)]) == 1
    assert "No kernel spec 'nosuch'" in capsys.readouterr().err
    assert not ran.exists() and not (user_kernels / "x").exists()


def test_install_says_what_it_set_by_hand_besides_what_it_captured(user_kernels, capsys):
    """`--capture none --env FOO=bar` said only "Captured no variables." above a spec that
    has two."""
    argv = ["install", "cli1", "--capture", "none", "--env", "FOO=bar", "--env", "B=1"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["Captured no variables.", "Set by hand (--env): B, FOO"], out
