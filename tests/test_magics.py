"""The magics, through the same doors a user goes: run_line_magic and run_cell_magic."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import write_spec
from IPython.core.error import UsageError

from kernelmagic.commands.list import SpecList
from kernelmagic.frontends.cli import main


def spec_json(user_kernels, name):
    return json.loads((user_kernels / name / "kernel.json").read_text())


def usage_error(ip, magic, line, cell=None):
    """Run a magic that must fail; return the UsageError (exactly that class)."""
    with pytest.raises(UsageError) as info:
        if cell is None:
            ip.run_line_magic(magic, line)
        else:
            ip.run_cell_magic(magic, line, cell)
    assert type(info.value) is UsageError
    assert "\n" not in str(info.value)
    return str(info.value)


def test_load_ext_imports_no_jupyter_client_ipykernel_or_zmq():
    code = (
        "import sys; from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance(); ip.run_line_magic('load_ext', 'kernelmagic')\n"
        "print(sorted(m for m in ('jupyter_client', 'ipykernel', 'zmq') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unload_removes_exactly_the_magics(shell):
    before = {k: set(v) for k, v in shell.magics_manager.magics.items()}
    shell.run_line_magic("load_ext", "kernelmagic")
    added = set(shell.magics_manager.magics["line"]) - before["line"]
    assert added == {
        "kernel_list",
        "kernel_show",
        "kernel_install",
        "kernel_clone",
        "kernel_patch",
        "kernel_env",
        "kernel_remove",
        "kernel_doctor",
        "kernel_refresh",
        "kernel_provisioners",
        "kernel_remote",
        "kernel_export",
        "kernel_apply",
        "kernel_activate",
        "kernel_shell",
        "kernel_notebook",
    }
    assert set(shell.magics_manager.magics["cell"]) - before["cell"] == {
        "kernel_env",
        "kernel_install",
        "kernel_activate",
    }
    shell.run_line_magic("unload_ext", "kernelmagic")
    assert {k: set(v) for k, v in shell.magics_manager.magics.items()} == before
    assert not any(type(c).__name__ == "KernelMagics" for c in shell.configurables)


def test_help_is_real(ip, capsys):
    """`%kernel_install?` shows argparse's help, whether or not the magic has been used yet
    (until then the table holds IPython's lazy stand-in, whose own doc is not the help)."""
    ip.run_cell("%kernel_install?")
    doc = capsys.readouterr().out
    assert "--capture" in doc and "--baseline" in doc and "--replace" in doc
    assert "%kernel_install" in doc


def test_list_returns_a_table_value(ip, user_kernels):
    write_spec(user_kernels, "geo")
    write_spec(user_kernels, "broken", raw="{")
    result = ip.run_line_magic("kernel_list", "")
    assert isinstance(result, SpecList) and isinstance(result, list)  # as 0.2 returned it
    geo = next(s for s in result if s.name == "geo")
    assert geo.display_name == "Hand-made geo" and geo.language == "python"
    assert geo.resource_dir == str(user_kernels / "geo") and geo.problems == []
    assert geo.spec["argv"][-1] == "{connection_file}"
    broken = next(s for s in result if s.name == "broken")
    assert broken.problems and not broken.visible
    text = ip.display_formatter.format(result)[0]["text/plain"]
    assert "geo" in text and "malformed JSON" in text
    assert "<table>" in result._repr_html_()
    as_json = ip.run_line_magic("kernel_list", "geo --json")
    assert list(as_json["kernelspecs"]) == ["geo"]


def test_the_list_and_env_a_magic_returns_are_a_list_and_a_dict(ip, user_kernels, capsys):
    """Walk R: 0.2 returned a list and a dict, 0.3 a view of them: notebooks' `specs + []`,
    `isinstance(env, dict)`, `json.dumps(env)`, `env | {...}` failed. They are the data
    again, shown as the commands show them."""
    write_spec(user_kernels, "geo")
    ip.run_line_magic("kernel_env", "-k geo A=1 API_TOKEN=" + "t" * 20)
    specs = ip.run_line_magic("kernel_list", "")
    env = ip.run_line_magic("kernel_env", "-k geo")
    assert [s.name for s in specs + []] == specs.names() and "geo" in specs.names()  # noqa: RUF005
    assert isinstance(env, dict) and json.loads(json.dumps(env)) == dict(env)
    assert (env | {"B": "2"})["B"] == "2" and env["A"] == "1"
    assert "t" * 20 not in json.dumps(env)  # masked, as shown
    capsys.readouterr()
    print(specs)
    print(env)
    printed = capsys.readouterr().out
    assert printed.startswith("name") and "Hand-made geo" in printed and "A=1" in printed
    assert "SpecInfo(" not in printed and "{" not in printed
    text = ip.display_formatter.format(env)[0]["text/plain"]
    assert "A=1" in text and "t" * 20 not in text
    assert "<table>" in specs._repr_html_()


def test_install_env_list_flow(ip, user_kernels, capsys, monkeypatch, tmp_path):
    baseline = tmp_path / "before.json"
    baseline.write_text(json.dumps({"PATH": "/usr/bin:/bin"}))
    monkeypatch.setenv("PATH", "/env/bin:/usr/bin:/bin")
    monkeypatch.setenv("GDAL_DATA", "/env/share/gdal")
    monkeypatch.setenv("SERVICE_TOKEN", "s3cret")
    ip.run_line_magic("kernel_install", f"--from-current My_Env --baseline {baseline}")
    out = capsys.readouterr().out
    assert "GDAL_DATA" in out and "Skipped secret-like: SERVICE_TOKEN" in out
    assert "s3cret" not in out
    spec = spec_json(user_kernels, "my_env")
    assert spec["env"]["GDAL_DATA"] == "/env/share/gdal"
    assert spec["env"]["PATH"] == "/env/bin:${PATH}"
    assert "SERVICE_TOKEN" not in spec["env"]
    # a later cell: no -k needed, the last installed spec is the target
    ip.run_line_magic("kernel_env", "PROJ_HOME=/proj/share  # where PROJ lives")
    assert '+  "PROJ_HOME": "/proj/share"' in capsys.readouterr().out
    assert spec_json(user_kernels, "my_env")["env"]["PROJ_HOME"] == "/proj/share"
    names = [s.name for s in ip.run_line_magic("kernel_list", "")]
    assert "my_env" in names


def test_env_shows_masked_and_is_not_var_expanded(ip, user_kernels):
    write_spec(user_kernels, "geo")
    ip.user_ns["x"] = "EXPANDED"
    ip.run_line_magic("kernel_env", "-k geo A=$x B={x} C=${PATH}:/y SECRET_KEY=k")
    env = spec_json(user_kernels, "geo")["env"]
    assert env == {"A": "$x", "B": "{x}", "C": "${PATH}:/y", "SECRET_KEY": "k"}
    shown = ip.run_line_magic("kernel_env", "-k geo")
    assert shown["SECRET_KEY"] == "<hidden>" and shown["A"] == "$x"
    ip.run_line_magic("kernel_env", "-k geo --literal D=$HOME -u A")
    env = spec_json(user_kernels, "geo")["env"]
    assert env["D"] == "$$HOME" and "A" not in env


def test_env_cell_magic(ip, user_kernels):
    write_spec(
        user_kernels,
        "geo",
        {"argv": ["/bin/true", "{connection_file}"], "env": {"OLD": "1", "KEEP": "2"}},
    )
    ip.run_cell_magic("kernel_env", "-k geo", "export A='x y'\nunset OLD\n# note\n\nB=2\n")
    assert spec_json(user_kernels, "geo")["env"] == {"KEEP": "2", "A": "x y", "B": "2"}
    ip.run_cell_magic("kernel_env", "-k geo --replace", "ONLY=1\n")
    assert spec_json(user_kernels, "geo")["env"] == {"ONLY": "1"}


def test_env_without_target_says_pass_k(ip):
    message = usage_error(ip, "kernel_env", "A=1")
    assert "pass -k NAME" in message


def test_patch_prints_diff_and_dry_run_writes_nothing(ip, user_kernels, capsys):
    path = write_spec(user_kernels, "geo") / "kernel.json"
    before = path.read_bytes()
    ip.run_line_magic("kernel_patch", "geo --display-name 'Geo 2' --dry-run")
    out = capsys.readouterr().out
    assert '+ "display_name": "Geo 2"' in out and "Dry run" in out
    assert path.read_bytes() == before
    ip.run_line_magic(
        "kernel_patch",
        "geo --interrupt-mode message --language python3 --argv-prefix 'nice -n 5' "
        "--metadata debugger=false --env A=1",
    )
    spec = json.loads(path.read_text())
    assert spec["interrupt_mode"] == "message" and spec["language"] == "python3"
    assert spec["argv"][:3] == ["nice", "-n", "5"]
    assert spec["metadata"]["debugger"] is False and spec["env"] == {"A": "1"}


def test_clone_and_remove(ip, user_kernels, capsys):
    write_spec(user_kernels, "src")
    ip.run_line_magic("kernel_clone", "src dst --display-name Copy --env A=1")
    spec = spec_json(user_kernels, "dst")
    assert spec["display_name"] == "Copy" and spec["env"] == {"A": "1"}
    ip.run_line_magic("kernel_remove", "dst src")
    assert not (user_kernels / "dst").exists() and not (user_kernels / "src").exists()


def test_show(ip, user_kernels, capsys):
    write_spec(
        user_kernels,
        "geo",
        {"argv": ["/bin/true", "{connection_file}"], "env": {"DB_PASSWORD": "pw"}},
    )
    ip.run_line_magic("kernel_show", "GEO")
    out = capsys.readouterr().out
    assert str(user_kernels / "geo") in out and "<hidden>" in out and 'pw"' not in out


@pytest.mark.parametrize(
    ("magic", "line", "expected"),
    [
        ("kernel_show", "nope", "No kernel spec 'nope'. Available:"),
        ("kernel_install", "'bad name'", "invalid kernel name"),
        ("kernel_install", "..", "invalid kernel name"),
        ("kernel_env", "-k geo NOEQUALS", "expected KEY=VALUE"),
        ("kernel_env", "-k geo A='open", "check the quotes"),
        ("kernel_patch", "geo --metadata x=notjson", "is not JSON"),
        ("kernel_patch", 'geo --argv-prefix "\'unbalanced"', "--argv-prefix"),
        ("kernel_install", "geo", "--replace"),
        ("kernel_install", "x --user --prefix /tmp/p", "choose one location"),
        ("kernel_install", "x --capture sometimes", "invalid choice"),
        ("kernel_remove", "python3", "built-in"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    ip, user_kernels, magic, line, expected, monkeypatch
):
    from kernelmagic.storage import discovery

    # the built-in python3 only exists when no python3 dir is on the search path
    monkeypatch.setattr(discovery, "kernel_dirs", lambda: [str(user_kernels)])
    path = write_spec(user_kernels, "geo") / "kernel.json"
    before = path.read_bytes()
    listing = sorted(p.name for p in user_kernels.iterdir())
    assert expected in usage_error(ip, magic, line)
    assert path.read_bytes() == before
    assert sorted(p.name for p in user_kernels.iterdir()) == listing


def test_config_sets_defaults(ip, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SITE_ONLY_VAR", "1")
    ip.run_line_magic("config", "KernelMagics.extra_noise = ['SITE_*']")
    ip.run_line_magic("config", "KernelMagics.default_capture = 'all'")
    ip.run_line_magic("kernel_install", f"cfg --prefix {tmp_path / 'p'}")
    spec = json.loads(
        (tmp_path / "p" / "share" / "jupyter" / "kernels" / "cfg" / "kernel.json").read_text()
    )
    assert "SITE_ONLY_VAR" not in spec["env"]
    assert spec["metadata"]["kernelmagic"]["capture"] == "all"


def test_tab_completion_offers_spec_names(ip, user_kernels):
    write_spec(user_kernels, "geo-analysis")
    # With the cursor at the end of the line, as terminals and notebooks send it (without
    # one, IPython's legacy API puts it at len(text), inside "%ke").
    for line in ("%kernel_env -k geo", "%kernel_show geo"):
        _, matches = ip.complete("geo", line, len(line))
        assert "geo-analysis" in matches


def test_the_shell_magic_without_a_command_is_one_usage_error(ip, user_kernels):
    """%kernel_shell asks for its output captured; the request made so is checked as any
    other: one line, not a traceback."""
    write_spec(user_kernels, "plain")
    assert "give a COMMAND" in usage_error(ip, "kernel_shell", "plain")


def test_a_listed_spec_shows_as_its_details(ip, user_kernels):
    """IPython shows a SpecInfo through kernelmagic's printer (registered by the class's
    module and name, so a move of the class must move the registration)."""
    write_spec(user_kernels, "plain")
    info = ip.run_line_magic("kernel_list", "plain")[0]
    shown = ip.display_formatter.formatters["text/plain"](info)
    assert shown.startswith("plain") or "plain" in shown.splitlines()[0]
    assert "SpecInfo(" not in shown and "argv" in shown


def test_doctor_fix_prints_what_it_removed_and_forgets_the_session_spec(ip, user_kernels, capsys):
    ip.run_line_magic("kernel_clone", "python3 dead1")
    ip.run_line_magic("kernel_patch", "dead1 --argv-prefix /nonexistent/bin/x")
    capsys.readouterr()
    report = ip.run_line_magic("kernel_doctor", "--fix dead1")
    out = capsys.readouterr().out
    assert f"Removed kernel spec {user_kernels / 'dead1'}; to bring it back: mv " in out
    assert not (user_kernels / "dead1").exists()
    assert report.removed == [str(user_kernels / "dead1")]  # the report's, as in its JSON
    # Gone as after %kernel_remove: no longer the spec %kernel_env changes without -k.
    assert "pass -k NAME" in usage_error(ip, "kernel_env", "A=1")
    assert str(report).count("Removed kernel spec") == 0  # said once, not again in the table


@pytest.mark.parametrize(
    "line",
    [
        '-k s1 GITHUB_TOKEN="ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ',  # no closing quote
        "-k s1 PASSWORD='hunter2hunter2",
        "-k s1 GITHUB_TOKEN:ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",  # not KEY=VALUE
        "-k s1 --no-such-option=ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",  # argparse's
    ],
)
def test_an_error_never_shows_the_secret_it_quotes(ip, user_kernels, line, capsys):
    """Walk H: the one-line errors quoted the words they refused, secrets and all, and a
    notebook keeps its errors in its outputs."""
    write_spec(user_kernels, "s1")
    with pytest.raises(UsageError) as refused:
        ip.run_line_magic("kernel_env", line)
    assert type(refused.value) is UsageError
    said = str(refused.value)
    assert "ghp_abc" not in said and "hunter2" not in said, said
    assert "<hidden>" in said
    if "'" not in line and '"' not in line:  # the command line's shell reads quotes
        status = main(["env", *line.split()])
        err = capsys.readouterr().err
        assert status == 2 and "ghp_abc" not in err and "<hidden>" in err, err


def test_a_dollar_name_the_error_quotes_is_said_to_be_unexpanded(ip, user_kernels, monkeypatch):
    """Walk Q: IPython expands `$name` in most magics; these pass `$` on as written (a spec's
    env takes `${PATH}`), so `--python $PY` failed on "$PY is not a Python interpreter" with no
    word of why. The error says it now; a `$` the error does not quote adds nothing."""
    monkeypatch.setenv("PY", sys.executable)
    said = usage_error(ip, "kernel_install", "x --python $PY --capture none")
    assert "$PY is not a Python interpreter" in said
    assert said.endswith("(%kernel_ magics take $PY as written, for a spec's ${NAME} "
                         "templates: write the value itself)")  # fmt: skip
    assert "take ${X} as written" in usage_error(ip, "kernel_show", "${X}")
    said = usage_error(ip, "kernel_env", "-k nope A=$HOME")
    assert "as written" not in said
    assert not (user_kernels / "x").exists()
