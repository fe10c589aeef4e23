"""The cluster as it is (issue 25): batch jobs, and snippets and modules that fail."""

from __future__ import annotations

import json
import sys

import pytest

from kernelmagic.frontends.cli import main

JOB = {
    "CUDA_VISIBLE_DEVICES": "2,3",
    "ROCR_VISIBLE_DEVICES": "1",
    "OMP_NUM_THREADS": "8",
    "OPENBLAS_NUM_THREADS": "8",
    "TMPDIR": "/tmp/slurm-4242",
    "JOB_SCRATCH": "/scratch/job4242",
    "GEO_HOME": "/opt/geo",  # what the user's environment set: kept
}


def _spec_env(user_kernels, name):
    return json.loads((user_kernels / name / "kernel.json").read_text()).get("env", {})


# --- 1. job-scoped variables ---------------------------------------------------------------


@pytest.mark.parametrize(
    "job_variable",
    ["SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID", "FLUX_JOB_ID", "COBALT_JOBID"],
)
def test_inside_a_batch_job_its_devices_threads_and_paths_stay_out(
    user_kernels, monkeypatch, capsys, job_variable
):
    monkeypatch.setenv(job_variable, "4242")
    for name, value in JOB.items():
        monkeypatch.setenv(name, value)
    assert main(["install", "jobenv", "--from-current"]) == 0
    out = capsys.readouterr().out
    env = _spec_env(user_kernels, "jobenv")
    assert env.get("GEO_HOME") == "/opt/geo"
    for name in ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "OMP_NUM_THREADS",
                 "OPENBLAS_NUM_THREADS", "JOB_SCRATCH", job_variable):  # fmt: skip
        assert name not in env, name
    line = next(line for line in out.splitlines() if line.startswith("Job-scoped"))
    assert "the kernel inherits its launcher's" in line and "4242" in line
    assert "CUDA_VISIBLE_DEVICES" in line and "OMP_NUM_THREADS" in line and "JOB_SCRATCH" in line


def test_include_keeps_a_job_scoped_variable_on_purpose(user_kernels, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert main(["install", "j", "--from-current", "--include", "OMP_NUM_THREADS"]) == 0
    assert _spec_env(user_kernels, "j")["OMP_NUM_THREADS"] == "8"


def test_outside_a_job_nothing_changes(user_kernels, monkeypatch):
    for name in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID", "FLUX_JOB_ID", "COBALT_JOBID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert main(["install", "n", "--from-current"]) == 0
    assert _spec_env(user_kernels, "n")["OMP_NUM_THREADS"] == "8"


def test_the_doctor_flags_job_scoped_values_with_the_fix(user_kernels, monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # captured outside a job (0.1 did so)
    assert main(["install", "gpu", "--from-current"]) == 0
    argv = ["install", "mine", "--capture", "none", "--env", "OMP_NUM_THREADS=4"]
    assert main(argv) == 0  # set by hand on purpose: left alone
    capsys.readouterr()
    assert main(["doctor", "gpu", "mine", "--json"]) == 1
    specs = json.loads(capsys.readouterr().out)["specs"]
    (found,) = [p for p in specs["gpu"]["problems"] if p["kind"] == "job-scoped"]
    assert (
        found["value"] == "CUDA_VISIBLE_DEVICES"
        and found["fix"] == "env -k gpu -u CUDA_VISIBLE_DEVICES"
    )
    assert not [p for p in specs["mine"]["problems"] if p["kind"] == "job-scoped"]


def test_what_a_snippet_or_module_sets_on_purpose_is_never_job_scoped(
    user_kernels, tmp_path, modules, capsys
):
    """docs/capture.md: what a snippet or --modules sets runs in a clean login shell with no
    job, so it is set on purpose. The doctor still called a snippet's OMP_NUM_THREADS=4 and a
    module's "what a batch job gave its own processes", with no job anywhere (exit 1)."""
    (modules / "omp").mkdir()
    (modules / "omp" / "1.lua").write_text('setenv("OMP_NUM_THREADS", "4")\n')
    snippet = tmp_path / "s.sh"
    snippet.write_text(
        "export OMP_NUM_THREADS=4 CUDA_VISIBLE_DEVICES=0 SLURM_CONF=/etc/slurm/site.conf\n"
    )
    python = ["--python", sys.executable]
    assert main(["install", "snip", "--snippet-file", str(snippet), *python]) == 0
    assert main(["install", "ompmod", "--modules", "omp/1", *python]) == 0
    assert _spec_env(user_kernels, "snip")["SLURM_CONF"] == "/etc/slurm/site.conf"
    assert _spec_env(user_kernels, "ompmod")["OMP_NUM_THREADS"] == "4"
    capsys.readouterr()
    status = main(["doctor", "snip", "ompmod", "--json"])
    specs = json.loads(capsys.readouterr().out)["specs"]
    assert not [p for s in specs.values() for p in s["problems"] if p["kind"] == "job-scoped"]
    assert status == 0


# --- 3. snippets and modules that fail are failures -------------------------------------------


@pytest.fixture
def modules(tmp_path, monkeypatch, lmod_available):
    root = tmp_path / "modulefiles"
    (root / "gdal").mkdir(parents=True)
    data = tmp_path / "opt" / "gdal"
    data.mkdir(parents=True)
    (root / "gdal" / "3.8.lua").write_text(f'setenv("GDAL_DATA", "{data}")\n')
    monkeypatch.setenv("MODULEPATH", str(root))
    return root


def test_a_module_that_does_not_load_fails_the_snippet(user_kernels, tmp_path, modules, capsys):
    snippet = tmp_path / "s.sh"
    snippet.write_text("module load gdal/9.9\nexport X=hello\n")
    argv = ["install", "geo", "--snippet-file", str(snippet), "--python", sys.executable]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "line 1 failed" in err and "module load gdal/9.9" in err
    assert not (user_kernels / "geo").exists()


def test_any_failing_line_fails_the_snippet_and_names_it(user_kernels, tmp_path, capsys):
    snippet = tmp_path / "s.sh"
    snippet.write_text("export A=1\nsource /no/such/setup.sh\nexport X=hello\n")
    argv = ["install", "s", "--snippet-file", str(snippet), "--python", sys.executable]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "the snippet failed" in err and "/no/such/setup.sh" in err
    assert "snippet: line 2:" in err and "kernelmagic-" not in err  # its line, not a temp file
    assert not (user_kernels / "s").exists()
    snippet.write_text("grep -q x /dev/null || true\nif false; then :; fi\nexport X=hello\n")
    assert main(argv) == 0  # what a shell does not treat as failing is fine
    assert _spec_env(user_kernels, "s")["X"] == "hello"


def test_apply_where_the_module_is_missing_writes_nothing(user_kernels, tmp_path, modules, capsys):
    entry = {"name": "geo", "kind": "python", "source": {"kind": "modules", "modules": "gdal/9.9"}}
    document = tmp_path / "set.json"
    document.write_text(json.dumps({"format": "kernelmagic-export", "specs": [entry]}))
    assert main(["apply", str(document)]) == 1
    assert "a module is not available here" in capsys.readouterr().out
    assert not (user_kernels / "geo").exists()


def test_a_deleted_module_is_named_by_the_doctor_and_by_refresh(user_kernels, modules, capsys):
    assert main(["install", "geo", "--modules", "gdal/3.8", "--python", sys.executable]) == 0
    (modules / "gdal" / "3.8.lua").unlink()
    capsys.readouterr()
    assert main(["doctor", "geo"]) == 1
    out = capsys.readouterr().out
    assert "module gdal/3.8 is gone" in out and "3.8.lua does not exist" in out
    assert main(["refresh", "geo"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith(
        "kernelmagic: error: module load gdal/3.8: a module is not available here"
    )
