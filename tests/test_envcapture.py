"""What capture keeps, drops and templates."""

from __future__ import annotations

import json

import pytest

from kernelmagic.domain import envcapture, shells
from kernelmagic.domain.envcapture import CaptureOptions, capture
from kernelmagic.domain.policy import EnvPolicy

BASE = {
    "HOME": "/home/u",
    "PATH": "/usr/bin:/bin",
    "LD_LIBRARY_PATH": "/usr/lib",
    "LANG": "C.UTF-8",
}


def session(**extra):
    env = dict(BASE)
    env.update(extra)
    return env


def test_changed_keeps_activation_and_drops_noise_and_secrets():
    current = session(
        PATH="/env/bin:/usr/bin:/bin:/opt/more",
        GDAL_DATA="/env/share/gdal",
        PROJ_LIB="/env/share/proj",
        PWD="/somewhere",
        SHLVL="3",
        TERM_PROGRAM="x",
        SLURM_JOB_ID="42",
        CONDA_SHLVL="1",
        _ModuleTable001_="x",
        JPY_PARENT_PID="1",
        GITHUB_TOKEN="abc",
        DB_PASSWORD="pw",
    )
    result = capture(current, CaptureOptions(), baseline=BASE)
    assert result.env == {
        "PATH": "/env/bin:${PATH}:/opt/more",
        "GDAL_DATA": "/env/share/gdal",
        "PROJ_LIB": "/env/share/proj",
    }
    assert sorted(result.secrets_skipped) == ["DB_PASSWORD", "GITHUB_TOKEN"]
    assert result.noise_count == 6
    assert result.launcher == ["SLURM_JOB_ID"]  # named, not counted as noise
    summary = "\n".join(result.summary_lines())
    assert "PATH (/env/bin:...:/opt/more)" in summary
    assert "DB_PASSWORD, GITHUB_TOKEN" in summary and "pw" not in summary
    assert "--include NAME" in summary


def test_a_desktop_or_vscode_sessions_own_variables_are_noise():
    """Captured into a spec before (a walk in VS Code and GNOME): each names this window's
    helper, this X session or this login's ticket cache, gone when the kernel starts."""
    current = session(
        GNOME_TERMINAL_SCREEN="/org/gnome/Terminal/screen/1",
        SESSION_MANAGER="local/host:@/tmp/.ICE-unix/1",
        GIT_ASKPASS="/home/u/.vscode-server/bin/x/askpass.sh",
        BROWSER="/home/u/.vscode-server/bin/x/helpers/browser.sh",
        KRB5CCNAME="FILE:/tmp/krb5cc_1000_abc",
        GDAL_DATA="/env/share/gdal",
    )
    result = capture(current, CaptureOptions(), baseline=BASE)
    assert result.env == {"GDAL_DATA": "/env/share/gdal"}
    assert result.noise_count == 5


def test_secret_values_are_dropped_whatever_the_name():
    current = session(
        HELPER="ghp_" + "a" * 36,
        KEYID="AKIA" + "B" * 16,
        HOOK="xoxb-1234567890-abc",
        PEM="-----BEGIN RSA PRIVATE KEY-----\nabc",
        GOOG="AIza" + "c" * 35,
        JWT_LIKE="eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2QT4",
        HARMLESS="just/a/path",
    )
    result = capture(current, CaptureOptions(), baseline=BASE)
    assert result.env == {"HARMLESS": "just/a/path"}
    assert len(result.secrets_skipped) == 6


def test_include_and_exclude():
    current = session(GITHUB_TOKEN="abc", PWD="/x", KEEP_ME="1", DROP_ME="2")
    result = capture(
        current,
        CaptureOptions(include=("GITHUB_TOKEN", "PWD", "LANG"), exclude=("DROP_*",)),
        baseline=BASE,
    )
    # --include wins over secret, noise and "unchanged"
    assert result.env == {"GITHUB_TOKEN": "abc", "PWD": "/x", "LANG": "C.UTF-8", "KEEP_ME": "1"}


def test_dollars_are_escaped_in_literal_values():
    result = capture(session(PRICE="a$b ${HOME}"), CaptureOptions(), baseline=BASE)
    assert result.env == {"PRICE": "a$$b $${HOME}"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/a:/usr/bin:/bin", "/a:${PATH}"),
        ("/usr/bin:/bin:/z", "${PATH}:/z"),
        ("/a:/usr/bin:/bin:/z", "/a:${PATH}:/z"),
        ("/bin:/usr/bin", "/bin:/usr/bin"),  # reordered: literal
        ("/a:/usr/bin", "/a:/usr/bin"),  # an entry removed: literal
        ("/d$x:/usr/bin:/bin", "/d$$x:${PATH}"),
    ],
)
def test_path_templates(value, expected):
    result = capture(session(PATH=value), CaptureOptions(), baseline=BASE)
    assert result.env == {"PATH": expected}


def test_path_like_missing_from_baseline_is_literal_and_no_templates_flag():
    result = capture(session(PYTHONPATH="/x:/y"), CaptureOptions(), baseline=BASE)
    assert result.env == {"PYTHONPATH": "/x:/y"}
    result = capture(
        session(PATH="/a:/usr/bin:/bin"), CaptureOptions(templates=False), baseline=BASE
    )
    assert result.env == {"PATH": "/a:/usr/bin:/bin"}


def test_modes_all_and_none():
    current = session(PWD="/x", NEW="1")
    everything = capture(current, CaptureOptions(mode="all"), baseline=BASE)
    # Identity (HOME) is noise in every mode; PATH-like values stay additions to the baseline,
    # and one that adds nothing is not written (walk Q: `MODULEPATH='${MODULEPATH}'` was,
    # the text `${MODULEPATH}` in a kernel started where MODULEPATH is not set).
    assert everything.env == {"LANG": "C.UTF-8", "NEW": "1"}
    added = capture(
        session(PATH="/env/bin:/usr/bin:/bin"), CaptureOptions(mode="all"), baseline=BASE
    )
    assert added.env["PATH"] == "/env/bin:${PATH}"
    assert capture(current, CaptureOptions(mode="none")).env == {}


@pytest.mark.parametrize("form", ["json", "env0", "env"])
def test_baseline_file_formats(tmp_path, form):
    base = {"A": "1", "MULTI": "line one\nline two", "EQ": "x=y"}
    if form == "json":
        text = json.dumps(base)
    elif form == "env0":
        text = "".join(f"{k}={v}\0" for k, v in base.items())
    else:
        text = "".join(f"{k}={v}\n" for k, v in base.items())
    path = tmp_path / "before.env"
    path.write_text(text)
    assert shells.parse_environment_dump(path.read_text()) == base
    current = {**base, "B": "2"}
    result = capture(current, CaptureOptions(baseline_file=str(path)))
    assert result.env == {"B": "2"}
    assert str(path) in result.baseline


def test_login_shell_baseline_runs_the_users_profile(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / ".bash_profile").write_text("echo banner from profile\nexport FROM_PROFILE=yes\n")
    baseline = envcapture.login_shell_environment(
        {"HOME": str(home), "LANG": "C.UTF-8", "SECRET_THING": "x"}
    )
    assert baseline["FROM_PROFILE"] == "yes"
    assert baseline["HOME"] == str(home)
    assert "SECRET_THING" not in baseline  # env -i: only identity and locale come through
    current = {**baseline, "FROM_PROFILE": "yes", "ACTIVATED": "1"}
    result = capture(current, CaptureOptions(), baseline=baseline)
    assert result.env == {"ACTIVATED": "1"}


def test_no_shell_falls_back_to_all(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bash to be found
    result = capture(session(NEW="1"), CaptureOptions())
    assert "capturing all" in result.notes[0]
    assert result.env["NEW"] == "1" and "HOME" not in result.env  # identity: never captured


def test_mask_secrets():
    masked = EnvPolicy().mask_env({"API_KEY": "k", "X": "ghp_" + "a" * 36, "OK": "v"})
    assert masked == {"API_KEY": "<hidden>", "X": "<hidden>", "OK": "v"}


def test_extra_noise_and_secrets_from_config():
    current = session(SITE_SESSION="1", MY_PIN="1234", KEEP="1")
    result = capture(
        current,
        CaptureOptions(policy=EnvPolicy(extra_secrets=("*_PIN",), extra_noise=("SITE_*",))),
        baseline=BASE,
    )
    assert result.env == {"KEEP": "1"}
    assert result.secrets_skipped == ["MY_PIN"]


def test_open_mpi_and_intel_mpi_settings_of_a_step_are_the_steps():
    """Issue 35: inside a job step, the OMPI_*/I_MPI_* the step's launcher set are left out
    and named with its wire-up; outside a step they are a module's settings and kept."""
    settings = {"OMPI_MCA_btl": "^openib", "I_MPI_PMI_LIBRARY": "/usr/lib/libpmi2.so"}
    step = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "PMIX_RANK": "0", **settings}
    step.update(OMPI_COMM_WORLD_RANK="0", OMPI_MCA_orte_hnp_uri="1.0;tcp://10.0.0.1:4242")
    result = capture(session(**step), CaptureOptions(), baseline=BASE)
    assert not result.env
    assert set(result.launcher) == set(step)
    summary = "\n".join(result.summary_lines())
    assert "OMPI_MCA_btl" in summary and "I_MPI_PMI_LIBRARY" in summary

    outside = capture(session(**settings), CaptureOptions(), baseline=BASE)
    assert outside.env == settings and not outside.launcher


def test_what_a_hub_sets_for_its_server_is_left_out_only_in_a_hub_server():
    """Walk Q: a spawner's `mem_limit` and `cpu_limit` reach the server as MEM_LIMIT and
    CPU_LIMIT; captured, they held the old limits in every later server's kernels."""
    limits = {"MEM_LIMIT": "4294967296", "CPU_LIMIT": "2.0", "MEM_GUARANTEE": "1", "GEO": "1"}
    in_hub = capture(session(JUPYTERHUB_USER="ada", **limits), CaptureOptions(), baseline=BASE)
    assert in_hub.env == {"GEO": "1"}
    assert {"MEM_LIMIT", "CPU_LIMIT", "MEM_GUARANTEE"} <= set(in_hub.launcher)
    elsewhere = capture(session(**limits), CaptureOptions(), baseline=BASE)
    assert elsewhere.env == limits  # a variable of the user's own outside a hub
