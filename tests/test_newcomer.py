"""A cluster user's first day, round two: what a newcomer still tripped over (issue 28).
Each test is named after what the newcomer saw."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from helpers import write_spec
from IPython.core.error import UsageError

from kernelmagic.frontends.cli import main

PYTHON_ARGV = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


# --- 2. the doctor's advice when a spec's env breaks Python ---------------------------------


def test_a_spec_whose_env_breaks_python_is_said_to_not_start(user_kernels, capsys):
    write_spec(user_kernels, "broken", {"argv": PYTHON_ARGV, "env": {"PYTHONHOME": "/nonexistent"}})
    assert main(["doctor", "broken", "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["specs"]["broken"]["problems"]
    by_kind = {p["kind"]: p for p in problems}
    assert "could not start" in by_kind["cannot-start"]["message"]
    assert "encodings" in by_kind["cannot-start"]["message"]  # what Python said
    assert "pip install ipykernel" not in json.dumps(problems)  # it is installed
    assert by_kind["missing-dir"]["value"] == "/nonexistent"  # PYTHONHOME, flagged too
    assert "PYTHONHOME" in by_kind["missing-dir"]["message"]


def test_every_path_valued_variable_that_points_nowhere_is_flagged(user_kernels, capsys):
    env = {"JAVA_HOME": "/no/java", "LD_PRELOAD": "/no/libshim.so", "OMPI_FLAGS": "-x /a /b"}
    write_spec(user_kernels, "paths", {"argv": PYTHON_ARGV, "env": env})
    assert main(["doctor", "paths", "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["specs"]["paths"]["problems"]
    missing = {p["value"] for p in problems if p["kind"] == "missing-dir"}
    assert missing == {"/no/java", "/no/libshim.so"}  # not the flags that hold paths


# --- 3. directories made on demand are notes, not problems ----------------------------------


def test_cache_and_config_dirs_that_do_not_exist_yet_are_notes(user_kernels, capsys):
    env = {
        "PIP_CACHE_DIR": "/nonexistent/pip",
        "XDG_CONFIG_HOME": "/nonexistent/config",
        "XDG_CACHE_HOME": "/nonexistent/cache",
        "MPLCONFIGDIR": "/nonexistent/mpl",
    }
    write_spec(user_kernels, "works", {"argv": PYTHON_ARGV, "env": env})
    assert main(["doctor", "works"]) == 0  # a working kernel: healthy, exit 0
    out = capsys.readouterr().out
    assert out.count("missing-dir (note)") == 4 and "reinstall" not in out
    assert "1 spec(s) checked, 0 with problems." in out


# --- 6. doctor --fix shows what it removes, and how to undo it --------------------------------


def test_doctor_fix_has_a_dry_run_and_says_how_to_undo(user_kernels, capsys):
    dead = write_spec(user_kernels, "dead", {"argv": ["/gone/env/bin/python", "{connection_file}"]})
    write_spec(user_kernels, "alive")
    assert main(["doctor", "--fix", "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert f"Would remove kernel spec {dead}" in out and "nothing was" in out
    assert dead.exists()
    assert main(["doctor", "--fix"]) in (0, 1)
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("Removed kernel spec"))
    assert not dead.exists() and (user_kernels / "alive").exists()
    undo = line.split("to bring it back: ")[1].split()
    assert undo[0] == "mv"
    Path(undo[1]).rename(undo[2])  # what the user would type
    assert json.loads((dead / "kernel.json").read_text())["argv"][0] == "/gone/env/bin/python"
    assert main(["doctor", "--dry-run"]) == 2  # only with --fix


# --- 7. patch --undo can itself be undone -------------------------------------------------------


def test_undo_keeps_what_it_replaces_and_redo_brings_it_back(user_kernels, capsys):
    path = write_spec(user_kernels, "geo") / "kernel.json"
    versions = [path.read_bytes()]
    for value in ("1", "2"):
        assert main(["env", "-k", "geo", f"V={value}"]) == 0
        versions.append(path.read_bytes())
    assert main(["patch", "geo", "--undo"]) == 0 and path.read_bytes() == versions[1]
    assert main(["patch", "geo", "--undo"]) == 0 and path.read_bytes() == versions[0]
    assert main(["patch", "geo", "--redo"]) == 0 and path.read_bytes() == versions[1]
    assert main(["patch", "geo", "--redo"]) == 0 and path.read_bytes() == versions[2]
    capsys.readouterr()
    assert main(["patch", "geo", "--redo"]) == 1  # where we were: nothing more to redo
    assert "no undone version" in capsys.readouterr().err
    assert main(["patch", "geo", "--undo"]) == 0 and path.read_bytes() == versions[1]
    assert main(["patch", "geo", "--undo", "--redo"]) == 2


# --- 5. the listing's status says what it checked -------------------------------------------


def test_the_listing_says_found_not_ok_and_points_at_the_doctor(user_kernels, ip, capsys):
    write_spec(user_kernels, "geo")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()[:2]
    assert header.split()[-1] == "status" and row.split()[-1] == "found"
    assert "kernelmagic doctor --launch" in out and " ok" not in out
    listed = ip.run_line_magic("kernel_list", "")
    assert "%kernel_doctor --launch" in str(listed) and "%kernel_doctor" in listed._repr_html_()


# --- 8. capture noise -------------------------------------------------------------------------


def test_a_venv_prompt_is_not_captured(user_kernels, monkeypatch, capsys):
    monkeypatch.setenv("VIRTUAL_ENV_PROMPT", "(geo) ")
    monkeypatch.setenv("KM_TEST_REAL", "1")
    assert main(["install", "v", "--capture", "all"]) == 0
    env = json.loads((user_kernels / "v" / "kernel.json").read_text()).get("env", {})
    assert "VIRTUAL_ENV_PROMPT" not in env and env["KM_TEST_REAL"] == "1"


def test_lmods_reordered_modulepath_is_not_captured(
    user_kernels, tmp_path, monkeypatch, lmod_available
):
    """Lmod rewrites MODULEPATH in its own order on `module load`; the same set of dirs is
    no change (0.1 recorded it)."""
    first, second = tmp_path / "mods-a", tmp_path / "mods-b"
    for root in (first, second):
        (root / "tool").mkdir(parents=True)
    (first / "tool" / "1.0.lua").write_text('setenv("TOOL_HOME", "/opt/tool")\n')
    snippet = tmp_path / "s.sh"
    # The user's own MODULEPATH (kept in the clean shell), then a module loaded from it.
    monkeypatch.setenv("MODULEPATH", f"{second}:{first}")
    snippet.write_text("module load tool/1.0\n")
    argv = ["install", "m", "--snippet-file", str(snippet), "--python", sys.executable]
    assert main(argv) == 0
    env = json.loads((user_kernels / "m" / "kernel.json").read_text())["env"]
    assert env["TOOL_HOME"] == "/opt/tool" and "MODULEPATH" not in env


# --- 9. hints that can work ---------------------------------------------------------------------


def test_the_hint_for_a_kernel_without_kernelmagic_repeats_how_it_was_installed(
    user_kernels, second_venv, capsys
):
    """kernelmagic is on no index yet: 'pip install kernelmagic' cannot work; the hint names
    the checkout, wheel or repository this one came from. --python alone gives it too."""
    from kernelmagic.domain.sources import installed_from

    python = second_venv / "bin" / "python"
    assert main(["install", "other", "--python", str(python), "--capture", "none"]) == 0
    out = capsys.readouterr().out
    assert f"{python} -m pip install {installed_from()}" in out
    source = installed_from()
    assert source != "kernelmagic"  # this test suite runs from a checkout (pip install -e .)
    assert Path(source).exists() and (Path(source) / "pyproject.toml").exists()


# --- 11. errors: one line, then what the tool said -----------------------------------------


def test_a_module_that_does_not_load_is_one_line_then_lmods_lines(
    user_kernels, ip, capsys, lmod_available
):
    assert main(["install", "g", "--modules", "nosuch/9.9"]) == 1
    first, *said = capsys.readouterr().err.rstrip("\n").split("\n")
    assert first == (
        "kernelmagic: error: module load nosuch/9.9: a module is not available here (the "
        "module system does not know it; `module spider NAME` shows what there is); "
        "nothing was written"
    )
    assert " | " not in first and 0 < len(said) <= 12
    assert all(line.startswith("  ") for line in said)
    assert any("nosuch/9.9" in line for line in said)  # Lmod's own words, below
    # ... in Lmod's order: its "unknown:" and the module's name on the next line stay together
    unknown = next(i for i, line in enumerate(said) if line.rstrip().endswith("unknown:"))
    assert said[unknown + 1].strip() == '"nosuch/9.9"', said
    # ... and last, how to reach a module dir only an interactive shell adds (seen in
    # JupyterLab by a user whose `module use` sat below the interactive check of ~/.bashrc)
    assert said[-1].strip().startswith("a `module use DIR` that only interactive shells run")
    with pytest.raises(UsageError) as refused:
        ip.run_line_magic("kernel_activate", "--modules nosuch/9.9")
    first = str(refused.value).split("\n")[0]
    assert "module load nosuch/9.9: a module is not available here" in first
    assert "nothing was written" not in first and "unchanged" in first


# --- 10. Tab completion -------------------------------------------------------------------------


def _tab(ip, line: str) -> list[str]:
    from IPython.core.completer import provisionalcompleter

    with provisionalcompleter():
        return [c.text for c in ip.Completer.completions(line, len(line))]


def test_tab_completes_spec_names_options_choices_and_modules(
    ip, user_kernels, tmp_path, monkeypatch, lmod_available
):
    from kernelmagic.frontends import completion, ipython_extension

    for name in ("geo", "gdal-env", "r-geo"):
        write_spec(user_kernels, name)
    modulefiles = tmp_path / "modulefiles"
    (modulefiles / "gdal").mkdir(parents=True)
    (modulefiles / "gdal" / "3.8.lua").write_text('setenv("GDAL_DATA", "/opt/gdal")\n')
    monkeypatch.setenv("MODULEPATH", str(modulefiles))
    completion.module_names.cache_clear()
    # IPython < 8.6 has no matcher that can keep Jedi's Python names out: there, ours are
    # among the offers; from 8.6 on, they are all that is offered.
    exact = ipython_extension.HAS_CONTEXT_MATCHERS

    def offers(line: str, expected: set[str]) -> bool:
        found = set(_tab(ip, line))
        return found == expected if exact else expected <= found

    for line in ("%kernel_show g", "%kernel_clone g", "%kernel_install x --like g",
                 "%kernel_env -k g", "%kernel_patch g", "%kernel_doctor geo g"):  # fmt: skip
        assert offers(line, {"geo", "gdal-env"}), line
    assert offers("%kernel_doctor --l", {"--launch"})
    assert offers("%kernel_install x --kernel ", {"python", "ir", "julia"})
    assert "--like" in _tab(ip, "%kernel_install x --li")
    assert "gdal/3.8" in _tab(ip, '%kernel_install x --modules "gcc/12 gd')
    assert "gdal/3.8" in _tab(ip, "%kernel_activate --modules gd")
    # An earlier release's spelling (env --kernel, --replace) works but is not offered.
    replacing = _tab(ip, "%kernel_env --re")
    assert "--replace-env" in replacing and "--replace" not in replacing
    assert "--kernel" not in _tab(ip, "%kernel_env --k")
    if exact:
        shown = set(_tab(ip, "%kernel_show "))
        assert shown >= {"geo", "gdal-env", "r-geo"}
        assert not {"and", "if", "in", "is", "not", "or", "abs"} & shown  # no Python names
        # Where nothing fits (a new name, a display name), nothing else is offered either:
        # IPython ignored the suppression of a matcher that offered nothing.
        (tmp_path / "afile.txt").write_text("")
        monkeypatch.chdir(tmp_path)
        for line in ("%kernel_clone geo ", "%kernel_install x --display-name "):
            assert set(_tab(ip, line)) <= {""}, line
        # The assignment form the docs show.
        assert offers("info = %kernel_show g", {"geo", "gdal-env"})
        # Where a path goes, IPython's own file completion (walk H: loading the extension
        # turned it off, the typed word came back alone).
        (tmp_path / "team.json").write_text("{}")
        for line in ("%kernel_apply te", "%kernel_export -o te", "%kernel_notebook te",
                     "%kernel_install x --prefix te"):  # fmt: skip
            assert "team.json" in _tab(ip, line), line


# --- 1. the first pytest of a cluster user -------------------------------------------------------


def test_the_suite_runs_with_no_module_loaded_whatever_the_callers_shell_loaded():
    """A newcomer with `module load gdal` in ~/.bashrc ran pytest and five activation tests
    failed: they saw '~ GDAL_DATA' for '+ GDAL_DATA'. conftest purges the caller's modules."""
    loaded = os.environ.get("LOADEDMODULES")
    assert not loaded, f"{loaded} still loaded: no `module` here to purge; `module purge` first"
