"""Specs written by kernelmagic, started by Jupyter itself: real kernels, real notebooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import run_in_kernel
from nbclient import NotebookClient

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_captured_spec_launches_with_its_environment(ip, user_kernels, tmp_path, monkeypatch):
    """%kernel_install --from-current + %kernel_env, then a real kernel sees exactly that."""
    before = dict(os.environ)
    baseline = tmp_path / "before.env"
    baseline.write_text("".join(f"{k}={v}\0" for k, v in before.items()))
    env_bin = tmp_path / "env" / "bin"
    activation = {
        "PATH": f"{env_bin}{os.pathsep}{before['PATH']}",
        "GDAL_DATA": str(tmp_path / "env" / "share" / "gdal"),
        "WEIRD_VALUE": "a$b ${HOME} $$ = 'quotes' \"double\"",
        "MULTI_LINE": "first\nsecond",
        "EMPTY_VALUE": "",
        "SERVICE_TOKEN": "do-not-capture",
        "SLURM_JOB_ID": "1234",
    }
    with monkeypatch.context() as activated:  # what `conda activate` would have done
        for key, value in activation.items():
            activated.setenv(key, value)
        ip.run_line_magic("kernel_install", f"--from-current geo --baseline {baseline}")
    ip.run_line_magic("kernel_env", "PROJ_HOME=/proj/share")

    seen = run_in_kernel("geo")
    env = seen["env"]
    assert env["GDAL_DATA"] == activation["GDAL_DATA"]
    assert env["WEIRD_VALUE"] == activation["WEIRD_VALUE"]  # `$` arrives unchanged
    assert env["MULTI_LINE"] == "first\nsecond"
    assert env["EMPTY_VALUE"] == ""
    assert env["PROJ_HOME"] == "/proj/share"
    # PATH was written as "<env>/bin:${PATH}": the kernel gets the launcher's PATH behind it
    assert env["PATH"] == activation["PATH"]
    assert "SERVICE_TOKEN" not in env and "SLURM_JOB_ID" not in env
    assert seen["prefix"] == sys.prefix

    listed = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter"), "kernelspec", "list", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(listed.stdout)["kernelspecs"]["geo"]["resource_dir"] == str(
        user_kernels / "geo"
    )


@pytest.fixture
def executed_tour(isolated_jupyter):
    """The example notebook, executed by nbclient in the isolated Jupyter dirs."""
    nb = nbformat.read(EXAMPLES / "tour.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return nb


def _outputs(cell) -> str:
    return "".join(
        o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.outputs
    )


def test_example_notebook_runs_and_its_spec_starts(executed_tour, user_kernels):
    errors = [
        o
        for c in executed_tour.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert errors == []
    spec = json.loads((user_kernels / "demo_env" / "kernel.json").read_text())
    assert spec["env"]["DEMO_GREETING"] == "hello"
    assert spec["env"]["PROJ_HOME"] == "/proj/share"
    assert spec["env"]["GDAL_DATA"] == "/proj/share/gdal"
    # the notebook kernel's own session variables were not captured
    assert not [k for k in spec["env"] if k.startswith("JPY_")]
    assert "'demo_env'" in _outputs(executed_tour.cells[-1])
    # In a notebook, an install says when the launcher will show the new kernel.
    installing = next(c for c in executed_tour.cells if "%kernel_install" in c.source)
    assert "reload the page to see it now" in _outputs(installing)

    # A notebook on the new spec: it sees the variables, and %kernel_env without -k targets
    # the spec this kernel was started from. Launchers since jupyter_client 8.3 record its
    # name in the connection file; older ones (7.0 on the oldest version set) do not, and
    # the spec is then found by this process's command line and env.
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("import os; print(os.environ['PROJ_HOME'])"),
            nbformat.v4.new_code_cell(
                "import json; from ipykernel.connect import get_connection_file\n"
                "print(json.load(open(get_connection_file())).get('kernel_name') or '-')"
            ),
            nbformat.v4.new_code_cell(
                "%load_ext kernelmagic\n%kernel_env SET_FROM_INSIDE=1\nshown = %kernel_env"
            ),
        ]
    )
    NotebookClient(nb, timeout=120, kernel_name="demo_env").execute()
    assert _outputs(nb.cells[0]).strip() == "/proj/share"
    recorded = _outputs(nb.cells[1]).strip()
    how = "this kernel's spec" + ("" if recorded == "demo_env" else ", found by its command line")
    assert recorded in ("demo_env", "-")
    said = _outputs(nb.cells[2])
    assert f"Kernel spec 'demo_env' ({how}" in said, said
    assert f"Kernel spec 'demo_env' in {user_kernels / 'demo_env'} (the spec last" in said
    spec = json.loads((user_kernels / "demo_env" / "kernel.json").read_text())
    assert spec["env"]["SET_FROM_INSIDE"] == "1"
