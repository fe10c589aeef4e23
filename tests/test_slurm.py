"""kernelmagic inside real Slurm jobs and job steps (the private cluster of slurm_cluster.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_in_kernel

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
        reason = subprocess.run(
            ["squeue", "--noheader", f"--jobs={job}", "--format=%T %r"],
            env=env,
            capture_output=True,
            text=True,
        ).stdout.split()
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
