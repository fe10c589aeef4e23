"""Which kernel does this notebook need (issue 26, part 2), and a shell with the kernel's
environment (part 3). Notebooks "from another machine" name kernels this one does not have;
papermill runs them after --fix; --rewrite changes nothing else in the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
from helpers import PROBE, run_in_kernel, write_spec
from nbclient import NotebookClient

from kernelmagic.commands import notebook as notebook_command
from kernelmagic.commands import shell
from kernelmagic.frontends.cli import main

KERNEL = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def _notebook(path: Path, kernelspec: dict | None, source: str = "print(6 * 7)") -> Path:
    """A notebook as nbformat writes it, naming ``kernelspec``."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source)]
    if kernelspec is not None:
        notebook.metadata["kernelspec"] = kernelspec
    notebook.metadata["language_info"] = {"name": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


FROM_ELSEWHERE = {
    "name": "conda-env-geo-py",
    "display_name": "Python [conda env:geo]",
    "language": "python",
}


@pytest.fixture
def local_specs(user_kernels, fake_conda):
    """This machine: a spec made from the conda env geo, another Python, an R spec."""
    assert main(["install", "geo", "--from-conda", "geo"]) == 0
    write_spec(
        user_kernels, "plain", {"argv": KERNEL, "display_name": "Plain", "language": "python"}
    )
    r_argv = ["R", "--slave", "-e", "IRkernel::main()", "--args", "{connection_file}"]
    write_spec(user_kernels, "rlang", {"argv": r_argv, "display_name": "R", "language": "R"})
    return user_kernels


def _report(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["notebook", *args])
    return status, capsys.readouterr().out


def test_a_spec_that_jupyter_config_does_not_allow_still_runs_a_notebook_naming_it(
    user_kernels, tmp_path, capsys
):
    """allowed_kernelspecs filters listings, not ``get_kernel_spec``: nbclient runs a
    notebook naming such a spec (the doctor said no client could, and `notebook` said
    "missing", exit 1, and offered an alias that was not allowed either)."""
    env = {"KM_SPEC": "hidden-one"}
    spec = {"argv": KERNEL, "display_name": "Hidden", "language": "python", "env": env}
    write_spec(user_kernels, "hidden-one", spec)
    write_spec(user_kernels, "plain", {"argv": KERNEL, "display_name": "P", "language": "python"})
    config = Path(os.environ["JUPYTER_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "jupyter_config.json").write_text(
        '{"KernelSpecManager": {"allowed_kernelspecs": ["plain"]}}'
    )
    source = "import os; print(os.environ.get('KM_SPEC'))"
    notebook = _notebook(tmp_path / "n.ipynb", {"name": "hidden-one", "language": "python"}, source)
    ran = nbformat.read(notebook, as_version=4)
    NotebookClient(ran, timeout=60).execute()  # the real client: it runs with the spec
    assert ran.cells[0].outputs[0]["text"].strip() == "hidden-one"
    status, out = _report(capsys, str(notebook))
    assert status == 0 and "found" in out and "missing" not in out
    main(["doctor", "--json", "hidden-one"])
    verdicts = json.loads(capsys.readouterr().out)["specs"]["hidden-one"]["clients"]
    works = {client: verdict["works"] for client, verdict in verdicts.items()}
    assert works["nbclient"] and works["console"] and works["jupyter-server"]
    assert not works["jupyterlab"]  # it picks from the server's listing
    assert works["voila"]  # Voila's app reads no jupyter_config (test_server has the real one)


def test_a_match_the_doctors_probes_find_broken_is_not_offered(
    user_kernels, tmp_path, capsys, bare_python
):
    """An interpreter without ipykernel is found by the probes only: `notebook` offered such
    a spec as the best match and its fix, which `--fix` then refused."""
    argv = [bare_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    write_spec(user_kernels, "geo-bare", {"argv": argv, "display_name": "G", "language": "python"})
    write_spec(user_kernels, "plain", {"argv": KERNEL, "display_name": "P", "language": "python"})
    notebook = _notebook(tmp_path / "n.ipynb", {"name": "geo-bare-2", "language": "python"})
    _, out = _report(capsys, str(notebook))
    assert "geo-bare (" not in out and "--fix geo-bare" not in out, out
    assert "--fix plain" in out
    assert main(["notebook", str(notebook), "--fix", "plain"]) == 0  # as offered


def test_no_match_offered_further_down_is_one_the_doctors_probes_find_broken(
    user_kernels, tmp_path, capsys, bare_python
):
    """Walk V: only the best match was probed, so a spec whose interpreter lacks ipykernel
    was offered second ("matches, best first: plain (...); geo-bare (...)"), which the docs
    say never happens and `--fix geo-bare` refused."""
    argv = [bare_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    write_spec(user_kernels, "geo-bare", {"argv": argv, "display_name": "G", "language": "python"})
    write_spec(user_kernels, "plain", {"argv": KERNEL, "display_name": "P", "language": "python"})
    for n in (1, 2):  # two notebooks of one run: the second is judged from the first's probes
        _notebook(tmp_path / f"n{n}.ipynb", {"name": "plain-2", "language": "python"})
    _, out = _report(capsys, str(tmp_path))
    assert out.count("matches, best first: plain (") == 2 and "geo-bare" not in out, out
    reports = notebook_command.run(notebook_command.Request((str(tmp_path),)))
    assert [[m.name for m in r.matches] for r in reports] == [["plain", "python3"]] * 2


def test_a_notebook_from_another_machine_gets_its_matches_best_first(local_specs, tmp_path, capsys):
    notebook = _notebook(tmp_path / "analysis.ipynb", FROM_ELSEWHERE)
    status, out = _report(capsys, str(notebook))
    assert status == 1
    assert "no kernel spec 'conda-env-geo-py' here" in out
    matches = out.split("matches, best first: ", 1)[1]
    assert matches.index("geo (same language (python); made from conda env geo") < matches.index(
        "plain (same language (python))"
    )
    assert "rlang" not in matches  # another language never matches


def test_fix_writes_an_alias_and_papermill_runs_the_notebook(local_specs, tmp_path, capsys):
    notebook = _notebook(tmp_path / "analysis.ipynb", FROM_ELSEWHERE)
    before = notebook.read_bytes()
    status, out = _report(capsys, str(notebook), "--fix", "--dry-run")
    assert out.splitlines()[1].split()[2:4] == ["would", "fix"], out
    assert not (local_specs / "conda-env-geo-py").exists()
    status, out = _report(capsys, str(notebook), "--fix")
    assert status == 0, out
    assert "'conda-env-geo-py' starts geo" in out
    # the state column says what is true now (a newcomer read 'missing' after a fix worked)
    assert out.splitlines()[1].split()[2] == "fixed", out
    assert notebook.read_bytes() == before  # the notebook file is untouched
    alias = json.loads((local_specs / "conda-env-geo-py" / "kernel.json").read_text())
    geo = json.loads((local_specs / "geo" / "kernel.json").read_text())
    assert alias["argv"] == geo["argv"] and alias["env"] == geo["env"]
    output = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(notebook), str(output), progress_bar=False)
    ran = nbformat.read(output, as_version=4)
    assert ran.cells[0].outputs[0]["text"] == "42\n"
    status, out = _report(capsys, str(notebook))
    assert status == 0 and "found" in out, out


def test_rewrite_changes_the_kernelspec_and_nothing_else(local_specs, tmp_path, capsys):
    notebook = _notebook(tmp_path / "analysis.ipynb", FROM_ELSEWHERE, "x = '\"kernelspec\": 1'")
    before = notebook.read_text()
    status, out = _report(capsys, str(notebook), "--fix", "plain", "--rewrite")
    assert status == 0, out
    after = notebook.read_text()
    assert (tmp_path / "analysis.ipynb.bak").read_text() == before
    nbformat.validate(nbformat.reads(after, as_version=4))
    old, new = json.loads(before), json.loads(after)
    assert new["metadata"]["kernelspec"] == {"display_name": "Plain", "language": "python",
                                             "name": "plain"}  # fmt: skip
    new["metadata"]["kernelspec"] = old["metadata"]["kernelspec"]
    assert new == old
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    assert changed == ['   "display_name": "Plain",', '   "name": "plain"']  # nbformat's layout
    assert not (local_specs / "conda-env-geo-py").exists()


def test_a_dir_of_notebooks_broken_and_unnamed_ones_too(local_specs, tmp_path, capsys):
    project = tmp_path / "project"
    _notebook(
        project / "ok.ipynb", {"name": "plain", "display_name": "Plain", "language": "python"}
    )
    _notebook(project / "sub" / "elsewhere.ipynb", FROM_ELSEWHERE)
    _notebook(project / "none.ipynb", None)
    _notebook(project / ".ipynb_checkpoints" / "ok-checkpoint.ipynb", FROM_ELSEWHERE)
    write_spec(local_specs, "dead", {"argv": ["/nonexistent/python", *KERNEL[1:]],
                                     "display_name": "Dead", "language": "python"})  # fmt: skip
    _notebook(
        project / "dead.ipynb", {"name": "dead", "display_name": "Dead", "language": "python"}
    )
    (project / "notes.ipynb").write_text("not json")
    status, out = _report(capsys, str(project))
    assert status == 1
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(rows) == {str(project / n) for n in
                         ("dead.ipynb", "none.ipynb", "notes.ipynb", "ok.ipynb",
                          "sub/elsewhere.ipynb")}  # fmt: skip
    assert " found" in rows[str(project / "ok.ipynb")]
    assert "broken" in rows[str(project / "dead.ipynb")]
    assert "program not found: /nonexistent/python" in rows[str(project / "dead.ipynb")]
    assert "no kernel named" in rows[str(project / "none.ipynb")]
    assert "unreadable" in rows[str(project / "notes.ipynb")]


def test_fix_without_a_clear_best_asks_which(local_specs, tmp_path, capsys):
    write_spec(
        local_specs, "plain2", {"argv": KERNEL, "display_name": "Plain", "language": "python"}
    )
    notebook = _notebook(tmp_path / "a.ipynb", {"name": "gone", "display_name": "Plain",
                                                 "language": "python"})  # fmt: skip
    assert main(["notebook", str(notebook), "--fix"]) == 1
    assert "no single best match" in capsys.readouterr().err
    assert main(["notebook", str(notebook), "--rewrite"]) == 2
    assert not (local_specs / "gone").exists()


def test_the_magic_returns_the_reports(ip, local_specs, tmp_path):
    notebook = _notebook(tmp_path / "a.ipynb", FROM_ELSEWHERE)
    reports = ip.run_line_magic("kernel_notebook", str(notebook))
    assert reports[0].state == "missing" and reports[0].matches[0].name == "geo"


# --- kernelmagic shell ---------------------------------------------------------------------------

# Set inside the kernel by the kernel itself at start (ipykernel and IPython: pagers,
# colours, matplotlib's backend, the debugger), not by the environment Jupyter gives it.
SET_BY_THE_KERNEL = {
    "TERM", "CLICOLOR", "CLICOLOR_FORCE", "FORCE_COLOR", "PAGER", "GIT_PAGER", "MPLBACKEND",
    "PYDEVD_USE_FRAME_EVAL",
}  # fmt: skip
ADDED_BY_JUPYTER_CLIENT = {"JPY_PARENT_PID"}


def test_shell_runs_with_exactly_the_kernels_environment(user_kernels, monkeypatch, capsys):
    monkeypatch.setenv("KM_LAUNCHER_ONLY", "from the launcher")
    env = {"GDAL_DATA": "/opt/gdal/share", "LD_LIBRARY_PATH": "/opt/gdal/lib:${LD_LIBRARY_PATH}",
           "PRICE": "5$$"}  # fmt: skip
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/local/lib")
    write_spec(user_kernels, "geo", {"argv": KERNEL, "display_name": "G", "language": "python",
                                      "env": env})  # fmt: skip
    # The launcher's environment is os.environ, as jupyter_client's (a library may have
    # changed the C-level environment that a bare subprocess would inherit instead).
    done = subprocess.run(
        [sys.executable, "-m", "kernelmagic", "shell", "geo", "--", "env", "-0"],
        capture_output=True,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    shell_env = dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
    kernel_env = run_in_kernel("geo", PROBE)["env"]
    differ = {k for k in set(shell_env) | set(kernel_env) if shell_env.get(k) != kernel_env.get(k)}
    assert differ <= SET_BY_THE_KERNEL | ADDED_BY_JUPYTER_CLIENT, {
        k: (shell_env.get(k), kernel_env.get(k)) for k in differ
    }
    assert shell_env["LD_LIBRARY_PATH"] == "/opt/gdal/lib:/usr/local/lib"
    assert shell_env["PRICE"] == "5$"
    # jupyter_client drops PYTHONEXECUTABLE for a Python kernel (it would change which
    # interpreter the kernel thinks it is); so does the shell.
    spec = json.loads((user_kernels / "geo" / "kernel.json").read_text())
    launcher = {"PYTHONEXECUTABLE": "/elsewhere/python", "PATH": "/usr/bin"}
    assert "PYTHONEXECUTABLE" not in shell.kernel_environment(spec, launcher)
    assert main(["shell", "geo", "--", "sh", "-c", "exit 3"]) == 3


def test_a_trust_after_the_name_is_refused_and_says_where_it_goes(user_kernels, capfd):
    """argparse drops a leading `--` from NAME's remainder, so `shell NAME -- --trust` and
    `shell NAME --trust` reach the command alike: neither may count as trusting the spec.
    Neither is run as a program named --trust either (`shell geo --trust -- pip list` said
    "cannot run --trust: No such file or directory"): one line says where --trust goes."""
    spec_dir = write_spec(user_kernels, "shared", {"argv": KERNEL, "display_name": "S",
                                                   "language": "python"})  # fmt: skip
    spec_dir.chmod(0o777)  # others can change it: not run unless trusted
    marker = spec_dir.parent / "ran"
    ran = ["sh", "-c", f"touch {marker}"]
    for words in (["--", "--trust"], ["--trust"], ["--", "--trust", *ran], ["--trust", "--", *ran]):
        assert main(["shell", "shared", *words]) == 2, words
        assert capfd.readouterr().err == (
            "kernelmagic: error: --trust goes before NAME: kernelmagic shell --trust NAME -- "
            "COMMAND; nothing was run\n"
        )
    assert not marker.exists()
    assert main(["shell", "--trust", "shared", "--", "sh", "-c", "exit 4"]) == 4


def test_shell_says_a_remote_kernel_runs_elsewhere(user_kernels, capsys):
    """`shell geo-slurm -- pip list` ran here without a word, for a kernel that runs in a
    Slurm job."""
    metadata = {"kernel_provisioner": {"provisioner_name": "kernelmagic-slurm-provisioner",
                                       "config": {"partition": "debug"}}}  # fmt: skip
    write_spec(user_kernels, "geo-slurm", {"argv": KERNEL, "display_name": "G",
                                           "language": "python", "metadata": metadata})  # fmt: skip
    assert main(["shell", "geo-slurm", "--", "sh", "-c", "exit 0"]) == 0
    assert capsys.readouterr().err == (
        "note: 'geo-slurm' starts its kernel through kernelmagic-slurm-provisioner, elsewhere; "
        "this runs here, with the env the kernel gets there (on a shared filesystem, the same "
        "environment)\n"
    )


def test_shell_says_when_pip_is_not_the_kernels(user_kernels, second_venv, capsys):
    python = str(second_venv / "bin" / "python")
    write_spec(user_kernels, "venv", {"argv": [python, *KERNEL[1:]], "display_name": "V",
                                       "language": "python"})  # fmt: skip
    main(["shell", "venv", "--", "python", "-c", "pass"])
    assert f"to install into the kernel's environment: {python} -m pip" in capsys.readouterr().err


def test_the_shell_magic_prints_what_the_command_printed(ip, user_kernels, capsys):
    write_spec(user_kernels, "geo", {"argv": KERNEL, "display_name": "G", "language": "python",
                                      "env": {"GDAL_DATA": "/opt/gdal"}})  # fmt: skip
    ip.run_line_magic("kernel_shell", "geo printenv GDAL_DATA")
    assert capsys.readouterr().out == "/opt/gdal\n"


# --- issue 33: per-client answers, dead specs --------------------------------------------


def test_a_dead_spec_is_no_match_and_fix_refuses_it_without_force(local_specs, tmp_path, capsys):
    """A spec whose program is gone was ranked first; --fix DEAD wrote the alias and said
    fixed; the next `notebook` said broken."""
    write_spec(local_specs, "conda-env-geo-py-old", {
        "argv": ["/nonexistent/envs/geo/bin/python", *KERNEL[1:]],
        "display_name": FROM_ELSEWHERE["display_name"], "language": "python"})  # fmt: skip
    notebook = _notebook(tmp_path / "analysis.ipynb", FROM_ELSEWHERE)
    status, out = _report(capsys, str(notebook))
    assert "conda-env-geo-py-old" not in out.split("matches, best first: ", 1)[1]
    assert main(["notebook", str(notebook), "--fix", "conda-env-geo-py-old"]) == 1
    assert "cannot start" in capsys.readouterr().err
    assert not (local_specs / "conda-env-geo-py").exists()
    status, out = _report(capsys, str(notebook), "--fix", "conda-env-geo-py-old", "--force")
    assert (local_specs / "conda-env-geo-py").exists()  # as asked, and the state says so:
    status, out = _report(capsys, str(notebook))
    assert status == 1 and "broken" in out


def test_fix_with_a_spec_of_another_language_is_refused_without_force(
    local_specs, tmp_path, capsys
):
    """Walk K: `notebook r.ipynb --fix plain` made an alias that ran an R notebook with a
    Python kernel, and `--fix plain --rewrite` on a dir rewrote an R notebook to it."""
    wanted = {"name": "ir-old", "display_name": "R 4.1", "language": "R"}
    notebook = _notebook(tmp_path / "r.ipynb", wanted, source="print(1)")
    assert main(["notebook", str(notebook), "--fix", "plain"]) == 1
    err = capsys.readouterr().err
    assert "is written in R, and plain runs python; choose a spec for R, or --force" in err, err
    assert not (local_specs / "ir-old").exists()
    other = _notebook(tmp_path / "py.ipynb", {**FROM_ELSEWHERE, "name": "gone-py"})
    before = notebook.read_bytes()
    _, out = _report(capsys, str(tmp_path), "--fix", "plain", "--rewrite")
    assert notebook.read_bytes() == before and "not fixed: " in out
    assert json.loads(other.read_text())["metadata"]["kernelspec"]["name"] == "plain"
    capsys.readouterr()
    main(["notebook", str(notebook), "--fix", "rlang"])  # its own language: not refused for it
    assert "is written in" not in capsys.readouterr().err  # (without R: "cannot start")


def test_a_name_in_another_case_is_answered_per_client(local_specs, tmp_path, capsys):
    """nbclient and papermill lower-case the name; JupyterLab and Voila match it exactly
    (tests/test_verdicts.py checks these answers against nbclient and Voila)."""
    notebook = _notebook(tmp_path / "a.ipynb", {"name": "Plain", "display_name": "Plain",
                                                 "language": "python"})  # fmt: skip
    status, out = _report(capsys, str(notebook))
    assert status == 1 and "case differs" in out
    (report,) = notebook_command.run(notebook_command.Request((str(notebook),)))
    clients = report.to_json()["clients"]
    assert clients["nbclient"]["works"] and clients["nbclient"]["spec"] == "plain"
    assert "asks the user" in clients["jupyterlab"]["reason"]  # geo and plain are Python
    assert clients["voila"]["spec"] == "plain"  # the first Python spec by display name
    ran = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(notebook), str(ran), progress_bar=False)
    assert nbformat.read(ran, as_version=4).cells[0].outputs[0]["text"] == "42\n"


def _hint(out: str) -> list[str]:
    """The fix the table names, as the words a user pastes into a shell."""
    import shlex

    return shlex.split(out.split("fix: ", 1)[1].splitlines()[0])


@pytest.mark.parametrize(
    "kernelspec",
    [
        FROM_ELSEWHERE,  # missing; geo and geo-py are as good: --fix alone cannot choose
        None,  # the notebook names no kernel: no alias can fix it
        {"name": "Plain", "display_name": "Plain", "language": "python"},  # case differs
    ],
    ids=["missing", "no kernel named", "case differs"],
)
def test_the_fix_a_notebook_report_names_is_a_command_that_fixes_it(
    local_specs, tmp_path, capsys, kernelspec
):
    """A newcomer pasted each hint: `notebook a.ipynb --fix` then said "no single best
    match"; a notebook naming no kernel got the same `--fix`, which no alias can do; a name
    in another case got `notebook --fix plain --rewrite`, no program and no notebook. The
    hint now names the spec it uses."""
    write_spec(local_specs, "geo-py", {"argv": KERNEL, "display_name": "G",
                                       "language": "python"})  # fmt: skip
    notebook = _notebook(tmp_path / "a.ipynb", kernelspec)
    status, out = _report(capsys, str(notebook))
    assert status == 1
    hint = _hint(out)
    assert hint[:3] == ["kernelmagic", "notebook", str(notebook)], hint
    assert hint[3] == "--fix" and hint[4] in ("geo", "geo-py", "plain", "python3"), hint
    assert main(hint[1:]) == 0, capsys.readouterr()
    status, out = _report(capsys, str(notebook))
    assert status == 0 and "kernelmagic notebook" not in out, out


def test_fix_spec_rewrite_names_the_spec_even_where_an_alias_exists(local_specs, tmp_path, capsys):
    """After `--fix` made an alias, `--fix geo --rewrite` said "found" and left the notebook
    as it was."""
    notebook = _notebook(tmp_path / "a.ipynb", FROM_ELSEWHERE)
    assert main(["notebook", str(notebook), "--fix", "geo"]) == 0
    assert main(["notebook", str(notebook), "--fix", "geo", "--rewrite"]) == 0
    assert nbformat.read(notebook, as_version=4).metadata["kernelspec"]["name"] == "geo"
    # In a dir, a notebook whose kernel is found is never renamed to the spec given.
    other = _notebook(tmp_path / "b.ipynb", {"name": "plain", "display_name": "Plain",
                                             "language": "python"})  # fmt: skip
    before = other.read_bytes()
    assert main(["notebook", str(tmp_path), "--fix", "geo", "--rewrite"]) == 0
    assert other.read_bytes() == before


def test_a_spec_whose_name_the_missing_one_holds_ranks_as_a_match(user_kernels, tmp_path, capsys):
    """`geo`, made by hand, fell out of the three best for `conda-env-geo-py` behind specs
    with closer-looking names."""
    for name in ("geo", "conda-env-py", "conda-env-gpu-py", "env-geom-py"):
        write_spec(user_kernels, name, {"argv": KERNEL, "display_name": name,
                                         "language": "python"})  # fmt: skip
    notebook = _notebook(tmp_path / "a.ipynb", FROM_ELSEWHERE)
    _, out = _report(capsys, str(notebook))
    best = out.split("matches, best first: ", 1)[1]
    assert best.startswith("geo (same language (python); its name shares 'geo' with the "), out


def test_a_dir_fix_says_what_it_fixed_when_another_notebook_cannot_be(
    local_specs, tmp_path, capsys
):
    """One notebook of the dir has no match: the others are still fixed, and the table says
    which were and why that one was not (it used to stop at the first error, after making
    the aliases of the notebooks before it without a word)."""
    _notebook(tmp_path / "nbs" / "a.ipynb", {"name": "missa", "display_name": "Plain",
                                             "language": "python"})  # fmt: skip
    _notebook(tmp_path / "nbs" / "b.ipynb", {"name": "missb", "display_name": "COBOL",
                                             "language": "cobol"})  # fmt: skip
    status, out = _report(capsys, str(tmp_path / "nbs"), "--fix")
    assert status == 1
    assert (local_specs / "missa").is_dir() and not (local_specs / "missb").exists()
    rows = {
        line.split()[0].rsplit("/", 1)[-1]: line for line in out.splitlines() if ".ipynb" in line
    }
    assert "'missa' starts plain" in rows["a.ipynb"]
    assert "not fixed: no single best match" in rows["b.ipynb"]


def test_fixing_with_a_spec_that_does_not_exist_is_one_error(local_specs, tmp_path, capsys):
    _notebook(tmp_path / "nbs" / "a.ipynb", {"name": "missa", "display_name": "Plain",
                                             "language": "python"})  # fmt: skip
    _notebook(tmp_path / "nbs" / "b.ipynb", {"name": "missb", "display_name": "Plain",
                                             "language": "python"})  # fmt: skip
    assert main(["notebook", str(tmp_path / "nbs"), "--fix", "nosuch"]) == 1
    assert capsys.readouterr().err.count("nosuch") == 1
