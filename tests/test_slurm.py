"""kernelmagic inside real Slurm jobs and job steps (the private cluster of slurm_cluster.py)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from helpers import run_in_kernel

from kernelmagic.frontends.cli import main

pytest_plugins = ("slurm_cluster",)


def _env_of(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@pytest.mark.parametrize(
    ("kind", "mpi"), [("srun", None), ("srun", "pmi2"), ("srun", "pmix"), ("sbatch", None)]
)
def test_the_private_cluster_runs_tasks_with_the_sites_prolog(slurm_cluster, kind, mpi):
    if mpi:
        slurm_cluster.require_mpi(mpi)
    done = slurm_cluster.run_in_job(["env"], kind, mpi=mpi, options=["--cpus-per-task=2"])
    assert done.returncode == 0, done.stderr
    env = _env_of(done.stdout)
    job = env["SLURM_JOB_ID"]
    assert env["TMPDIR"] == f"{slurm_cluster.jobtmp}/job{job}"
    assert env["OMP_NUM_THREADS"] == "2"
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    wire_up = {"pmi2": {"PMI_RANK"}, "pmix": {"PMIX_RANK"}}
    assert {"PMI_RANK", "PMIX_RANK"} & set(env) == wire_up.get(mpi, set())


def test_an_allocation_runs_its_command_where_salloc_runs(slurm_cluster):
    done = slurm_cluster.run_in_job(["env"], "salloc")
    assert done.returncode == 0, done.stderr
    env = _env_of(done.stdout)
    assert env["SLURM_JOB_ID"]
    assert "SLURM_STEP_ID" not in env  # no task: the TaskProlog has not run either
    assert "TMPDIR" not in env or "jobtmp" not in env["TMPDIR"]


def test_jobs_run_as_an_unprivileged_user(slurm_cluster, tmp_path):
    if slurm_cluster.user is None:
        pytest.skip("no unprivileged user could be made for the jobs (useradd failed)")
    done = slurm_cluster.run_in_job(
        ["sh", "-c", 'id -un; touch "$TMPDIR/mine" && echo wrote'],
        "srun",
        user=slurm_cluster.user,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [slurm_cluster.user, "wrote"]


def test_the_closed_partition_cannot_run_a_job(slurm_cluster):
    env = slurm_cluster.client_env()
    submitted = subprocess.run(
        ["sbatch", "--parsable", f"--partition={slurm_cluster.closed_partition}", "--wrap=true"],
        env=env,
        cwd=slurm_cluster.work / "outputs",
        capture_output=True,
        text=True,
    )
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    try:
        # The reason is the scheduler's once it has looked at the job (its next cycle).
        for _ in range(100):
            reason = subprocess.run(
                ["squeue", "--noheader", f"--jobs={job}", "--format=%T %r"],
                env=env,
                capture_output=True,
                text=True,
            ).stdout.split()
            assert reason[:1] == ["PENDING"], reason
            if reason[1:] == ["PartitionDown"]:
                break
            time.sleep(0.1)
        assert reason == ["PENDING", "PartitionDown"]
    finally:
        subprocess.run(["scancel", job], env=env)


# --- capture inside jobs and steps ------------------------------------------------------------


def _km(*args: str) -> list[str]:
    return [sys.executable, "-m", "kernelmagic", *args]


def _spec_env(kernels: Path, name: str) -> dict[str, str]:
    return json.loads((kernels / name / "kernel.json").read_text()).get("env", {})


def _scheduler_set(env: dict[str, str]) -> set[str]:
    """What the scheduler, the TaskProlog and the step's MPI plugin set (not our own test
    environment, which srun passes through)."""
    return {
        name
        for name in env
        if name.startswith(("SLURM_", "SLURMD_", "PMI_", "PMIX_", "OMPI_", "I_MPI_"))
        and name != "SLURM_CONF"
    } | ({"TMPDIR", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES"} & set(env))


def _python_for(user: str) -> tuple[str, str]:
    """An interpreter ``user`` can run with kernelmagic importable: this one, or (when this
    one is in a directory only we can read, as a venv of root's pyenv) the system's python3
    of the same version with our packages on PYTHONPATH. Skips when there is none."""
    import kernelmagic

    def usable(python: str, path: str) -> bool:
        env = {"PATH": "/usr/bin:/bin", **({"PYTHONPATH": path} if path else {})}
        probe = [python, "-c", "import kernelmagic, ipykernel, sys; print(sys.version_info[:2])"]
        ran = subprocess.run(
            ["runuser", "-u", user, "--", "env", *[f"{k}={v}" for k, v in env.items()], *probe],
            capture_output=True,
            text=True,
            cwd="/",
        )
        return ran.returncode == 0 and ran.stdout.strip() == str(tuple(sys.version_info[:2]))

    ours = os.pathsep.join(
        [str(Path(kernelmagic.__file__).parent.parent), sysconfig.get_paths()["purelib"]]
    )
    for python, path in ((sys.executable, ""), ("/usr/bin/python3", ours)):
        if usable(python, path):
            return python, path
    pytest.skip(f"no interpreter with kernelmagic that {user} may run (ours: {sys.executable})")


@pytest.mark.parametrize("mpi", ["pmi2", "pmix"])
def test_a_job_steps_mpi_wire_up_is_left_out_and_named(slurm_cluster, user_kernels, tmp_path, mpi):
    """Issue 35, items 1, 2 and 9 (TMPDIR): `srun --mpi=... kernelmagic install` keeps
    nothing the scheduler, the TaskProlog or the step's PMI server set, and names it all."""
    slurm_cluster.require_mpi(mpi)
    done = slurm_cluster.run_in_job(_km("install", "stepk"), "srun", mpi=mpi, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    env = _spec_env(user_kernels, "stepk")
    assert not {n for n in env if n.startswith(("PMI", "SLURM"))}, env
    for name in ("TMPDIR", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES"):
        assert name not in env
    wire_up = "PMI_* (" if mpi == "pmi2" else "PMIX_* ("
    launched = next(line for line in out.splitlines() if line.startswith("Left out what"))
    assert wire_up in launched and "SLURMD_NODENAME" in launched, launched
    assert "SLURM_* (" in launched
    assert "Left out TMPDIR" in out
    jobbed = next(line for line in out.splitlines() if line.startswith("Job-scoped"))
    assert "OMP_NUM_THREADS" in jobbed and "CUDA_VISIBLE_DEVICES" in jobbed

    # Later, outside any job: the kernel has none of the step's wire-up.
    seen = run_in_kernel("stepk")["env"]
    assert not {n for n in seen if n.startswith(("PMI_", "PMIX_", "SLURMD_"))}

    # Kept on purpose (--include), the doctor names each with its fix (it used to say ok).
    kept = slurm_cluster.run_in_job(
        _km("install", "stepkept", "--include", "PMI*"), "srun", mpi=mpi, cwd=tmp_path
    )
    assert kept.returncode == 0, kept.stderr
    wired = {n for n in _spec_env(user_kernels, "stepkept") if n.startswith("PMI")}
    assert wired
    doctor = subprocess.run(_km("doctor", "stepkept", "--json"), capture_output=True, text=True)
    problems = json.loads(doctor.stdout)["specs"]["stepkept"]["problems"]
    assert {p["value"] for p in problems if p["kind"] == "job-scoped"} >= wired
    assert doctor.returncode == 1


# What batchspawner's SlurmSpawner hands the single-user server in its job (JupyterHub 5/6).
HUB = {
    "JUPYTERHUB_API_URL": "http://10.0.0.1:8081/hub/api",
    "JUPYTERHUB_BASE_URL": "/",
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-ada",
    "JUPYTERHUB_DEFAULT_URL": "/lab",
    "JUPYTERHUB_HOST": "",
    "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/ada/oauth_callback",
    "JUPYTERHUB_SERVER_NAME": "",
    "JUPYTERHUB_SERVICE_PREFIX": "/user/ada/",
    "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:45123/user/ada/",
    "JUPYTERHUB_USER": "ada",
    "JUPYTERHUB_ACTIVITY_URL": "http://10.0.0.1:8081/hub/api/users/ada/activity",
}


def test_a_hub_servers_variables_and_a_fixed_path_in_a_batch_job(
    slurm_cluster, user_kernels, tmp_path, capsys
):
    """Issue 35, items 3 and 7: --from-current in a batchspawner job (sbatch) leaves out
    the hub's single-user variables, names them, and says PATH is written as a fixed value;
    the doctor calls an --include'd JUPYTERHUB_DEFAULT_URL=/lab what it is, not a
    missing directory."""
    # The server's own PATH: its venv first, and not the login shell's list around it.
    env = {**os.environ, **HUB, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    done = slurm_cluster.run_in_job(_km("install", "hub"), "sbatch", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    spec_env = _spec_env(user_kernels, "hub")
    assert not [n for n in spec_env if n.startswith("JUPYTERHUB_")], spec_env
    launched = next(line for line in out.splitlines() if line.startswith("Left out what"))
    assert "JUPYTERHUB_* (11)" in launched and "SLURM_* (" in launched
    assert "Written as a fixed value: PATH" in out
    assert "ENVIRONMENT" not in spec_env and "HOSTNAME" not in spec_env  # Slurm's, in batch

    kept = slurm_cluster.run_in_job(
        _km("install", "hubkept", "--include", "JUPYTERHUB_*"), "sbatch", env=env, cwd=tmp_path
    )
    assert kept.returncode == 0, kept.stderr
    assert _spec_env(user_kernels, "hubkept")["JUPYTERHUB_DEFAULT_URL"] == "/lab"
    assert main(["doctor", "hubkept", "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["specs"]["hubkept"]["problems"]
    assert not [p for p in problems if "JUPYTERHUB" in p["message"] and p["kind"] != "job-scoped"]
    flagged = {p["value"] for p in problems if p["kind"] == "job-scoped"}
    assert set(HUB) <= flagged


def test_a_snippets_own_exports_are_kept_inside_a_job_step(
    slurm_cluster, user_kernels, tmp_path, capsys
):
    """Issue 35, items 4 and 9: inside `srun --mpi=pmix`, a snippet's own `export
    OMP_NUM_THREADS=4` is the user's, kept and not called the job's; `${SLURM_JOB_ID}` in a
    snippet (empty in the clean shell it runs in, in a job or not) is warned about."""
    slurm_cluster.require_mpi("pmix")
    snippet = tmp_path / "snippet.sh"
    snippet.write_text(
        "export OMP_NUM_THREADS=4\nexport TMPDIR=/var/tmp\n"
        "export SCRATCH=/var/tmp/run-${SLURM_JOB_ID}\n"
    )
    argv = _km("install", "snip", "--snippet-file", str(snippet))
    done = slurm_cluster.run_in_job(argv, "srun", mpi="pmix", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    spec_env = _spec_env(user_kernels, "snip")
    assert spec_env["OMP_NUM_THREADS"] == "4" and spec_env["TMPDIR"] == "/var/tmp"
    assert "Job-scoped" not in out
    assert "uses ${SLURM_JOB_ID}" in out

    # Outside any job the same warning: the value came out empty.
    assert main(["install", "snip2", "--snippet-file", str(snippet)]) == 0
    assert "uses ${SLURM_JOB_ID}" in capsys.readouterr().out
    assert _spec_env(user_kernels, "snip2")["SCRATCH"] == "/var/tmp/run-"


def test_values_set_by_hand_are_never_job_scoped(user_kernels, capsys):
    """Issue 35, item 6: the README's `clone ... --env OMP_NUM_THREADS=32`, `patch --env` and
    `env -k` are choices; no job anywhere, and the doctor has nothing to say about them."""
    assert main(["install", "geo", "--capture", "none"]) == 0
    assert main(["clone", "geo", "geo-big", "--env", "OMP_NUM_THREADS=32"]) == 0
    assert main(["patch", "geo", "--env", "CUDA_VISIBLE_DEVICES=0"]) == 0
    assert main(["env", "-k", "geo", "MKL_NUM_THREADS=8"]) == 0
    assert _spec_env(user_kernels, "geo-big")["OMP_NUM_THREADS"] == "32"
    capsys.readouterr()
    status = main(["doctor", "geo", "geo-big", "--json"])
    specs = json.loads(capsys.readouterr().out)["specs"]
    assert not [p for s in specs.values() for p in s["problems"] if p["kind"] == "job-scoped"]
    assert status == 0


def test_apply_inside_a_job_keeps_a_documents_thread_count(
    slurm_cluster, user_kernels, tmp_path, monkeypatch, capsys
):
    """Issue 35, item 5: a document made outside any job recorded OMP_NUM_THREADS=8;
    `apply` inside a job step (whose TaskProlog sets its own) keeps 8 and says so, and
    `apply --check` in the job finds the spec as recorded. (A snippet's spec, which apply
    makes again; one captured from a session is written as recorded.)"""
    snippet = tmp_path / "threads.sh"
    snippet.write_text("export OMP_NUM_THREADS=8\n")
    snippet.chmod(0o644)
    assert main(["install", "geo", "--snippet-file", str(snippet)]) == 0
    assert _spec_env(user_kernels, "geo")["OMP_NUM_THREADS"] == "8"
    document = tmp_path / "kernels.json"
    assert main(["export", "geo", "-o", str(document)]) == 0
    assert main(["remove", "geo"]) == 0
    capsys.readouterr()

    done = slurm_cluster.run_in_job(_km("apply", str(document)), "srun", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _spec_env(user_kernels, "geo")["OMP_NUM_THREADS"] == "8"
    assert "kept the document's OMP_NUM_THREADS" in done.stdout + done.stderr
    check = slurm_cluster.run_in_job(_km("apply", "--check", str(document)), "srun", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_doctor_finds_a_captured_value_holding_the_job_id(
    slurm_cluster, user_kernels, tmp_path, capsys
):
    """Issue 35, item 9: a value --include'd inside a job that holds the job's id (a scratch
    directory of that job) is flagged by the doctor later, outside the job, by its value,
    not only by its name."""
    script = 'export RUN_SCRATCH="$TMPDIR/run" && exec "$@"'
    argv = ["sh", "-c", script, "sh", *_km("install", "jobv", "--include", "RUN_SCRATCH")]
    done = slurm_cluster.run_in_job(argv, "sbatch", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    value = _spec_env(user_kernels, "jobv")["RUN_SCRATCH"]
    assert value.startswith(f"{slurm_cluster.jobtmp}/job")
    capsys.readouterr()
    assert main(["doctor", "jobv", "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["specs"]["jobv"]["problems"]
    (found,) = [p for p in problems if p["kind"] == "job-scoped"]
    assert found["value"] == "RUN_SCRATCH" and "id of batch job" in found["message"]
    assert found["fix"] == "env -k jobv -u RUN_SCRATCH"


def test_an_interpreter_in_the_jobs_tmpdir_is_warned_at_install_and_doctor(
    slurm_cluster, user_kernels, tmp_path, capsys
):
    """Issue 35, item 9: a venv made in the job's TMPDIR (removed by the site's epilog when
    the job ends) gets a warning from install and a problem from the doctor, in that job and
    after it; the variables that point into the venv are not each told to be removed."""
    purelib = sysconfig.get_paths()["purelib"]
    script = (
        f'{sys.executable} -m venv --without-pip "$TMPDIR/venv" && '
        f'echo {purelib} > "$(echo "$TMPDIR"/venv/lib/python*/site-packages)/km.pth" && '
        f'{shlex.join(_km("install", "tmpk", "--python"))} "$TMPDIR/venv/bin/python" && '
        f'{shlex.join(_km("doctor", "tmpk"))}; echo "doctor exit $?"'
    )
    done = slurm_cluster.run_in_job(["sh", "-c", script], "srun", cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "temporary directory" in out.split("Installed kernel spec")[0], out
    doctor = out.split("Installed kernel spec")[1]
    assert "this job's temporary directory" in doctor and "doctor exit 1" in doctor, doctor
    # The captured PATH and VIRTUAL_ENV point into the venv, so they hold the job's id: walk
    # Q's doctor told to remove each (`env -k tmpk -u PATH`), where the program is what goes.
    assert {"PATH", "VIRTUAL_ENV"} <= set(_spec_env(user_kernels, "tmpk")), out
    assert "job-scoped" not in doctor and " -u " not in doctor, doctor
    capsys.readouterr()
    # After the job, outside any; the epilog may still be removing the venv (test_trust).
    main(["doctor", "tmpk", "--json"])
    out, err = capsys.readouterr()
    assert out, err
    problems = json.loads(out)["specs"]["tmpk"]["problems"]
    assert not [p for p in problems if p["kind"] in ("job-scoped", "missing-dir")], problems
    (gone,) = [p for p in problems if p["kind"] == "job-temporary"]
    assert "install the spec from there" in gone["message"], problems


def test_an_allocation_and_an_unprivileged_users_step_capture_no_job_variable(
    slurm_cluster, user_kernels, tmp_path
):
    """Issue 35, items 1 and 2 in a `salloc` shell (the job's variables, no step) and in a
    `srun --mpi=pmix` step of an unprivileged user, whose own HOME holds the spec."""
    done = slurm_cluster.run_in_job(_km("install", "alloc"), "salloc", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    env = _spec_env(user_kernels, "alloc")
    assert not [n for n in env if n.startswith(("SLURM", "PMI"))], env
    assert "SLURM_* (" in done.stdout

    user = slurm_cluster.user
    if user is None:
        pytest.skip("no unprivileged user could be made for the jobs (useradd failed)")
    python, path = _python_for(user)
    slurm_cluster.require_mpi("pmix")
    home = slurm_cluster.home_for(user, slurm_cluster.work / "outputs" / f"home-{tmp_path.name}")
    mine = {**os.environ, "HOME": str(home), "JUPYTER_DATA_DIR": str(home / "data")}
    if path:
        mine["PYTHONPATH"] = path
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        mine[name] = str(home / name.lower())
    done = slurm_cluster.run_in_job(
        [python, "-m", "kernelmagic", "install", "theirs"],
        "srun",
        mpi="pmix",
        user=user,
        env=mine,
        cwd=home,
    )
    assert done.returncode == 0, done.stderr
    spec = json.loads((home / "data" / "kernels" / "theirs" / "kernel.json").read_text())
    assert not [n for n in spec.get("env", {}) if n.startswith(("SLURM", "PMI"))], spec
    assert "PMIX_* (" in done.stdout and "SLURMD_NODENAME" in done.stdout


ACTIVATING_NOTEBOOK = """
import json, sys
import nbformat
from nbclient import NotebookClient

cells = [
    "%load_ext kernelmagic",
    "%%kernel_activate --save act\\nexport KM_ACT=1\\nexport OMP_NUM_THREADS=3",
    "import json, os\\nprint(json.dumps(dict(os.environ)))",
]
nb = nbformat.v4.new_notebook()
nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
NotebookClient(nb, timeout=120, kernel_name="python3").execute()
texts = ["".join(o.get("text", "") for o in cell.outputs) for cell in nb.cells]
print(json.dumps(texts))
"""


def test_kernel_activate_in_a_notebook_inside_a_job_step(slurm_cluster, user_kernels, tmp_path):
    """A notebook's kernel started inside `srun --mpi=pmix` (as a hub's server in a job
    starts its kernels): `%%kernel_activate --save` keeps the snippet's own OMP_NUM_THREADS
    in the restarted kernel and in the saved spec, saves none of the step's variables, and
    says to load the magics again (issue 35, items 1, 4 and 9)."""
    slurm_cluster.require_mpi("pmix")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    done = slurm_cluster.run_in_job(
        [sys.executable, "-c", ACTIVATING_NOTEBOOK], "srun", mpi="pmix", env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _, said, environ = json.loads(done.stdout.splitlines()[-1])
    assert "run %load_ext kernelmagic again" in said
    seen = json.loads(environ)
    assert seen["KM_ACT"] == "1" and seen["OMP_NUM_THREADS"] == "3"
    saved = _spec_env(user_kernels, "act")
    assert saved.get("OMP_NUM_THREADS") == "3" and saved.get("KM_ACT") == "1"
    assert not [n for n in saved if n.startswith(("SLURM", "PMI"))], saved
