"""A cluster user's first day: each thing a newcomer tripped over, tried the way they did."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_in_kernel, write_gdal_module, write_spec
from IPython.core.error import UsageError

from kernelmagic import specs
from kernelmagic.domain import envcapture, sources
from kernelmagic.domain.envcapture import CaptureOptions
from kernelmagic.domain.sources import installed_from
from kernelmagic.frontends.cli import main


def spec_json(kernels: Path, name: str) -> dict:
    return json.loads((kernels / name / "kernel.json").read_text())


@pytest.fixture
def gdal_module(tmp_path, monkeypatch, lmod_available):
    """A real Lmod modulefile that brings GDAL's data and libraries, and no Python."""
    root = tmp_path / "modulefiles"
    gdal = write_gdal_module(root, "gdal/3.8", tmp_path / "opt" / "gdal")
    monkeypatch.setenv("MODULEPATH", str(root))
    return {"root": root, "gdal": gdal}


# --- the seed's own case ---------------------------------------------------------------


def test_a_module_that_brings_no_python_uses_this_sessions(ip, user_kernels, gdal_module):
    ip.run_line_magic("kernel_install", "gdal --modules gdal/3.8")
    spec = spec_json(user_kernels, "gdal")
    assert spec["argv"][0] == sys.executable
    assert spec["env"]["GDAL_DATA"] == str(gdal_module["gdal"] / "share")
    seen = run_in_kernel("gdal")["env"]
    assert seen["GDAL_DATA"] == str(gdal_module["gdal"] / "share")
    assert seen["LD_LIBRARY_PATH"].split(os.pathsep)[0] == str(gdal_module["gdal"] / "lib")


def test_a_snippets_python_without_ipykernel_is_passed_over_with_a_note(
    ip,
    user_kernels,
    bare_python,
    capsys,
):
    bin_dir = os.path.dirname(bare_python)
    ip.run_cell_magic("kernel_install", "geo", f'export PATH="{bin_dir}:$PATH"\n')
    assert spec_json(user_kernels, "geo")["argv"][0] == sys.executable
    out = capsys.readouterr().out
    assert "cannot import ipykernel, so the kernel runs this session's" in out
    assert "-m pip install ipykernel" in out


def test_refused_only_when_no_interpreter_has_ipykernel(
    ip,
    user_kernels,
    bare_python,
    monkeypatch,
):
    """This session's interpreter always has ipykernel (a dependency), so a bare Python
    stands in for it here: the one `probe_interpreter` finds in a venv without it."""
    bare = sources.probe_interpreter(bare_python)
    monkeypatch.setattr(sources, "this_interpreter", lambda: bare)
    bin_dir = os.path.dirname(bare_python)
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("kernel_install", "geo", f'export PATH="{bin_dir}:$PATH"\n')
    message = str(info.value)
    assert "no interpreter that can import ipykernel" in message
    assert f"{bare_python} (this session's)" in message
    assert "-m pip install ipykernel" in message
    assert not (user_kernels / "geo").exists()


# --- paths and messages --------------------------------------------------------------------


def test_tilde_in_path_options(ip, user_kernels, second_venv, isolated_jupyter):
    home = isolated_jupyter["HOME"]
    (home / "venvs").mkdir()
    os.symlink(second_venv, home / "venvs" / "py311")
    ip.run_line_magic("kernel_install", "venv311 --python ~/venvs/py311/bin/python")
    assert spec_json(user_kernels, "venv311")["argv"][0] == str(
        home / "venvs" / "py311" / "bin" / "python"
    )
    (home / "before.env").write_text(json.dumps(dict(os.environ)))
    ip.run_line_magic("kernel_install", "b --baseline ~/before.env --prefix ~/p")
    assert (home / "p" / "share" / "jupyter" / "kernels" / "b" / "kernel.json").exists()
    (home / "vars.env").write_text("X=1\n")
    assert main(["env", "-k", "venv311", "--file=~/vars.env"]) == 0
    assert spec_json(user_kernels, "venv311")["env"]["X"] == "1"


def test_lmod_says_which_module_is_unknown(user_kernels, gdal_module, capsys):
    assert main(["install", "nope", "--modules", "nosuch/1.0"]) == 1
    err = capsys.readouterr().err
    assert "nosuch/1.0" in err and "unknown" in err
    assert not (user_kernels / "nope").exists()


def test_provisioner_extras_are_real_and_imports_are_quiet(ip, capfd, user_kernels):
    pytest.importorskip("gateway_provisioners", reason="the remote extra is not installed")
    table = ip.run_line_magic("kernel_provisioners", "")
    rows = {info.name: str(info.error or "") for info in table}
    if "kubernetes-provisioner" in rows and "cannot load" in rows["kubernetes-provisioner"]:
        assert "gateway_provisioners[k8s]" in rows["kubernetes-provisioner"]
    if "yarn-provisioner" in rows and "cannot load" in rows["yarn-provisioner"]:
        assert "gateway_provisioners[yarn]" in rows["yarn-provisioner"]
    captured = capfd.readouterr()
    assert "WARNING:root" not in captured.out + captured.err


def test_doctor_fixes_name_the_spec_and_speak_the_front_ends_language(ip, user_kernels, capsys):
    write_spec(
        user_kernels,
        "geo",
        {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "env": {"GDAL_DATA": "/no/such/gdal"},
        },
    )
    assert main(["doctor", "geo"]) == 1
    assert "kernelmagic env -k geo GDAL_DATA=" in capsys.readouterr().out
    report = ip.run_line_magic("kernel_doctor", "geo")
    assert "%kernel_env -k geo GDAL_DATA=" in str(report)
    assert "env -k NAME" not in str(report)


def test_a_pattern_that_matches_nothing_says_so(ip):
    assert str(ip.run_line_magic("kernel_list", "nomatch")) == (
        "(no kernel spec matches 'nomatch')"
    )


# --- doctor ----------------------------------------------------------------------------------


def test_doctor_sees_the_interpreter_behind_launcher_prefixes(user_kernels, tmp_path, capsys):
    write_spec(user_kernels, "geo")
    assert main(["patch", "geo", "--argv-prefix", "nice -n 10"]) == 0
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apptainer").write_text("#!/bin/sh\nexit 0\n")  # a stand-in: not installable here
    (fake / "apptainer").chmod(0o755)
    write_spec(
        user_kernels,
        "boxed",
        {
            "argv": [
                *(str(fake / "apptainer"), "exec", "img.sif", "/opt/conda/bin/python"),
                *("-m", "ipykernel_launcher", "-f", "{connection_file}"),
            ],
        },
    )
    write_spec(user_kernels, "echo", {"argv": ["/bin/echo", "-m", "x", "{connection_file}"]})
    capsys.readouterr()
    assert main(["doctor", "geo", "boxed", "echo", "--json"]) == 0, capsys.readouterr().out
    report = json.loads(capsys.readouterr().out)
    assert report["healthy"]


# --- what gets written -------------------------------------------------------------------


def test_capture_all_leaves_identity_out_and_templates_path():
    base = {"HOME": "/h", "PATH": "/usr/bin:/bin", "USER": "u", "SHELL": "/bin/bash"}
    current = {**base, "LOGNAME": "u", "PATH": "/env/bin:/usr/bin:/bin", "GEO": "1"}
    result = envcapture.capture(current, CaptureOptions(mode="all"), baseline=base)
    assert result.env == {"PATH": "/env/bin:${PATH}", "GEO": "1"}


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("/venv/bin:/a:/venv/bin:/usr/bin:/bin", "/venv/bin:/a:${PATH}"),
        ("/venv/bin:/usr/bin:/bin:/venv/bin:/bin", "/venv/bin:${PATH}"),
        ("/x:/y:/x", "/x:/y"),  # not an addition to the baseline: literal, still once each
        ("/venv/bin::/usr/bin:/bin", "/venv/bin:${PATH}"),  # an empty entry is the cwd: dropped
        ("/x:", "/x"),  # what `X=/x:$X` leaves when X was unset
    ],
)
def test_captured_path_values_hold_each_entry_once(value, written):
    base = {"PATH": "/usr/bin:/bin"}
    result = envcapture.capture({**base, "PATH": value}, CaptureOptions(), baseline=base)
    assert result.env["PATH"] == written


def test_made_up_display_names_follow_the_new_name(ip, user_kernels):
    ip.run_line_magic("kernel_install", "geo --capture none")
    ip.run_line_magic("kernel_clone", "geo geo-big")
    version = "{}.{}".format(*sys.version_info[:2])
    assert spec_json(user_kernels, "geo-big")["display_name"] == f"Python {version} (geo-big)"
    ip.run_line_magic("kernel_install", "mine --capture none --display-name 'My Geo'")
    ip.run_line_magic("kernel_clone", "mine mine2")
    assert spec_json(user_kernels, "mine2")["display_name"] == "My Geo"


def test_a_prefix_jupyter_does_not_search_is_reported(user_kernels, tmp_path, capsys):
    assert main(["install", "hidden", "--capture", "none", "--prefix", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert f"export JUPYTER_PATH={tmp_path / 'p' / 'share' / 'jupyter'}" in out
    assert main(["install", "seen", "--capture", "none"]) == 0
    assert "JUPYTER_PATH" not in capsys.readouterr().out


# --- reading back what it shows ------------------------------------------------------------

ODD = {
    "SPACES": "two words",
    "QUOTES": 'it\'s "quoted"',
    "DOLLAR": "${PATH}:/x $HOME",
    "HASH": "a # not a comment",
    "TAB": "a\tb",
    "NEWLINES": "line one\nline two\n",
    "EMPTY": "",
}


def test_env_listing_reads_back_exactly(ip, user_kernels, tmp_path, capsys):
    write_spec(user_kernels, "a", {"argv": ["x", "{connection_file}"], "env": ODD})
    write_spec(user_kernels, "b")
    assert main(["env", "-k", "a"]) == 0
    listing = tmp_path / "f"
    listing.write_text(capsys.readouterr().out)
    assert main(["env", "-k", "b", "--file", str(listing)]) == 0
    assert spec_json(user_kernels, "b")["env"] == ODD
    shown = ip.run_line_magic("kernel_env", "-k a")
    write_spec(user_kernels, "c")
    ip.run_cell_magic("kernel_env", "-k c", str(shown))
    assert spec_json(user_kernels, "c")["env"] == ODD


def test_an_env_listing_read_back_keeps_the_secrets_it_showed_hidden(
    ip, user_kernels, tmp_path, capsys
):
    """The listing shows a secret as <hidden> (or only its secret part so): reading it back
    wrote the text "<hidden>" over the secret, and the masked diff showed no change. Each
    such value now keeps the spec's; a <hidden> that stands for nothing there is refused."""
    env = {"MY_API_TOKEN": "abc123", "SOMEVAR": "ghp_" + "a" * 36, "PLAIN": "/opt/x",
           "PROXY": "http://user:s3cret@proxy:3128"}  # fmt: skip
    write_spec(user_kernels, "geo", {"argv": ["x", "{connection_file}"], "env": env})
    assert main(["env", "-k", "geo"]) == 0
    listing = tmp_path / "geo.env"
    listing.write_text(capsys.readouterr().out.replace("/opt/x", "/opt/y"))
    assert "abc123" not in listing.read_text() and "s3cret" not in listing.read_text()
    assert main(["env", "-k", "geo", "--file", str(listing), "--replace-env"]) == 0
    assert spec_json(user_kernels, "geo")["env"] == {**env, "PLAIN": "/opt/y"}
    # The cell magic reads the same lines; what `%kernel_env -k geo` returned, back in.
    shown = ip.run_line_magic("kernel_env", "-k geo")
    capsys.readouterr()
    ip.run_cell_magic("kernel_env", "-k geo --replace-env", str(shown))
    assert spec_json(user_kernels, "geo")["env"] == {**env, "PLAIN": "/opt/y"}
    assert "looks like a secret" not in capsys.readouterr().out  # placeholders, no secret
    before = (user_kernels / "geo" / "kernel.json").read_bytes()
    capsys.readouterr()
    for given in ("NEW_TOKEN=<hidden>", "PLAIN=<hidden>", "PROXY=http://other:<hidden>@p:1"):
        assert main(["env", "-k", "geo", given]) == 2, given
        name = given.split("=")[0]
        assert capsys.readouterr().err == (
            f"kernelmagic: error: {name}: <hidden> is how kernelmagic shows a secret, not a "
            f"value; give {name}'s own value, or leave {name} out to keep the spec's; nothing "
            "was changed\n"
        )
        with pytest.raises(UsageError, match=f"^{name}: <hidden> is how"):
            ip.run_line_magic("kernel_env", f"-k geo {given}")
    assert (user_kernels / "geo" / "kernel.json").read_bytes() == before


def test_the_env_of_a_spec_that_cannot_be_read_is_an_error_not_empty(user_kernels, capsys):
    """`env -k NAME` of a malformed (or unreadable) kernel.json printed nothing, exit 0."""
    (user_kernels / "bad").mkdir(parents=True)
    (user_kernels / "bad" / "kernel.json").write_text('{"argv": [')
    assert main(["env", "-k", "bad"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kernelmagic: error: cannot show the env of 'bad': cannot read ")
    assert err.count("\n") == 1


def test_kernel_env_without_k_changes_the_spec_last_changed_not_another_of_its_name(
    ip, user_kernels, tmp_path, capsys
):
    """A clone under ``--prefix``, behind a user spec of the same name or where Jupyter does
    not look: ``%kernel_env`` without -k changes that clone, not the spec Jupyter would start
    for its name (which it patched), nor fails with "no kernel spec" (docs/usage.md)."""
    ip.run_line_magic("kernel_install", "geo --capture none")
    ip.run_line_magic("kernel_install", "my_env --capture none")
    shared = tmp_path / "shared"
    ip.run_line_magic("kernel_clone", f"geo my_env --prefix {shared}")
    ip.run_line_magic("kernel_env", "WHICH=clone")
    clone = shared / "share/jupyter/kernels/my_env"
    assert json.loads((clone / "kernel.json").read_text())["env"]["WHICH"] == "clone"
    assert "env" not in json.loads((user_kernels / "my_env/kernel.json").read_text())

    big = tmp_path / "envs"
    ip.run_line_magic("kernel_clone", f"geo geo-big --env OMP_NUM_THREADS=32 --prefix {big}")
    capsys.readouterr()
    assert ip.run_line_magic("kernel_env", "") == {"OMP_NUM_THREADS": "32"}
    where = big / "share/jupyter/kernels/geo-big"
    assert f"Kernel spec 'geo-big' in {where} (the spec" in capsys.readouterr().out

    shutil.rmtree(where)  # gone since, by another hand: not the target any more
    with pytest.raises(UsageError, match="no kernel spec chosen: pass -k NAME"):
        ip.run_line_magic("kernel_env", "A=1")


def test_a_new_spec_that_jupyter_finds_behind_another_of_its_name_says_so(
    ip, user_kernels, tmp_path, monkeypatch, capsys
):
    """In a venv Jupyter looks in its ``share/jupyter`` before the user's dir, and it looks
    in JUPYTER_PATH first: a user spec of a name found there is installed, and hidden."""
    first = tmp_path / "first"
    write_spec(first / "kernels", "geo")
    monkeypatch.setenv("JUPYTER_PATH", str(first))
    ip.run_line_magic("kernel_install", "geo --capture none")
    assert (
        f"Jupyter starts the 'geo' in {first / 'kernels' / 'geo'}, which it finds first: this "
        "one is hidden while that one is there"
    ) in capsys.readouterr().out
    ip.run_line_magic("kernel_install", "other --capture none")
    assert "Jupyter starts" not in capsys.readouterr().out


def test_kernel_env_without_k_names_its_target(ip, user_kernels, capsys):
    ip.run_line_magic("kernel_install", "geo --capture none")
    capsys.readouterr()
    ip.run_line_magic("kernel_env", "A=1")
    said = f"Kernel spec 'geo' in {user_kernels / 'geo'} (the spec last changed here):"
    assert said in capsys.readouterr().out
    ip.run_line_magic("kernel_env", "")
    assert "Kernel spec 'geo'" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["show", "a/b"], ["remove", ".."], ["patch", "a/b", "--language", "x"], ["env", "-k", "a/b"]],
)
def test_invalid_names_exit_2_everywhere(argv, capsys):
    assert main(argv) == 2
    assert "invalid kernel name" in capsys.readouterr().err


def test_a_hand_made_spec_with_an_odd_name_is_still_found(user_kernels):
    write_spec(user_kernels, "with space")
    assert specs.get_spec("with space").name == "with space"


# --- notebook users -------------------------------------------------------------------------


def test_html_tables_are_left_aligned(ip):
    html = ip.run_line_magic("kernel_list", "")._repr_html_()
    assert 'style="text-align:left' in html


def test_an_install_for_an_interpreter_without_kernelmagic_says_so(
    ip,
    user_kernels,
    second_venv,
    capsys,
    tmp_path,
):
    python = second_venv / "bin" / "python"
    # Asked from a neutral directory: from a source checkout, `import kernelmagic` finds the
    # checkout itself, which no kernel started by Jupyter would.
    check = [str(python), "-c", "import kernelmagic"]
    has_it = subprocess.run(check, cwd=tmp_path).returncode == 0
    ip.run_cell_magic("kernel_install", f"other --python {python}", "export X=1\n")
    out = capsys.readouterr().out
    assert ("cannot import kernelmagic" in out) is not has_it
    if not has_it:
        assert f"{python} -m pip install {installed_from()}" in out


def test_the_suite_leaves_your_ipython_dir_alone(tmp_path):
    """Run a slice of this suite the way a user would, HOME pointing at an empty dir and no
    IPYTHONDIR: nothing may appear in that home."""
    home = tmp_path / "someones-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("IPYTHONDIR", "JUPYTER_DATA_DIR")}
    env["HOME"] = str(home)
    selection = [
        "-k",
        "test_show or test_list_returns",
        str(Path(__file__).parent / "test_magics.py"),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert list(home.iterdir()) == []


def test_the_reload_hint_is_for_notebooks_not_terminals(isolated_jupyter):
    """A terminal IPython is an app of the same family as the kernel's: only a kernel gets
    the JupyterLab hint (the notebook side is checked on the tour notebook)."""
    ipython = Path(sys.executable).parent / "ipython"
    done = subprocess.run(
        [str(ipython), "--ext", "kernelmagic", "-c", "%kernel_install t --capture none"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Installed kernel spec 't'" in done.stdout, done.stderr
    assert "reload the page" not in done.stdout
