"""Start of a --project spec against pyproject-local-kernel (which runs `uv run` at every
start, through its kernel provisioner) and against a plain spec of the same venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

from common import BIN, note, row, venv_with

MEASURE = "start to kernel_info reply: --project, uv"
# Run by the venv that has pyproject-local-kernel (its provisioner must load in the client),
# from the project's dir, as JupyterLab starts a kernel for a notebook there: every spec is
# started the same way, in rotating order, each timed to its kernel_info reply.
_TIMER = textwrap.dedent("""\
    import json, statistics, sys, time
    from jupyter_client.manager import KernelManager

    names, repeats = sys.argv[1].split(","), int(sys.argv[2])

    def once(name):
        manager = KernelManager(kernel_name=name)
        start = time.perf_counter()
        manager.start_kernel(cwd=".")
        client = manager.client()
        client.start_channels()
        msg_id = client.kernel_info()
        while client.get_shell_msg(timeout=60)["parent_header"].get("msg_id") != msg_id:
            pass
        took = time.perf_counter() - start
        client.stop_channels()
        manager.shutdown_kernel(now=True)
        return took

    times = {n: [] for n in names}
    for n in names:
        once(n)
    for i in range(repeats):
        for n in names[i % len(names):] + names[:i % len(names)]:
            times[n].append(once(n))
    print(json.dumps({n: statistics.median(t) for n, t in times.items()}))
""")


def _project(root: Path, env: dict[str, str]) -> Path | str:
    """A uv project (no dependencies: offline) whose .venv has this ipykernel."""
    project = root / "uv-project"
    project.mkdir()
    for command in (
        ["init", "--bare", "--name", "bench-geo", "--python", sys.executable],
        ["sync", "--python", sys.executable],
    ):
        done = subprocess.run(
            [str(BIN / "uv"), *command], cwd=project, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            return f"uv {command[0]} failed: {done.stderr.strip()[-200:]}"
    site = next((project / ".venv" / "lib").glob("python*/site-packages"))
    (site / "bench-ipykernel.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return project


def bench_project(repeats: int, root: Path, kernels: Path, with_peers: bool) -> None:
    if not (BIN / "uv").exists():
        note(MEASURE, "uv is not installed (pip install uv)")
        return
    env = {**os.environ, "UV_OFFLINE": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    project = _project(root, env)
    if isinstance(project, str):
        note(MEASURE, project)
        return
    subprocess.run(
        [str(BIN / "kernelmagic"), "install", "km-project", "--project", str(project)],
        check=True,
        capture_output=True,
    )
    # The plain spec: what `python -m ipykernel install` writes for the project's venv.
    venv_python = str(project / ".venv" / "bin" / "python")
    subprocess.run(
        [venv_python, "-m", "ipykernel", "install", "--user", "--name", "plain-project-venv"],
        check=True,
        capture_output=True,
    )
    names = ["km-project", "plain-project-venv"]
    python, peer = sys.executable, None
    if with_peers:
        venv = venv_with(root / "plk-venv", "pyproject-local-kernel")
        if isinstance(venv, Path):
            python, peer = str(venv / "bin" / "python"), "pyproject_local_kernel"
            names.append(peer)
        else:
            note(f"{MEASURE} vs pyproject-local-kernel", venv)
    else:
        note(f"{MEASURE} (baseline: pyproject-local-kernel)", "not measured with --quick")
    # pyproject-local-kernel runs `uv run --with ipykernel`: it needs the index (or uv's cache).
    online = {**env, "UV_OFFLINE": "0"}
    done = subprocess.run(
        [python, "-c", _TIMER, ",".join(names), str(repeats)],
        cwd=project,
        env=online,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        note(MEASURE, done.stderr.strip()[-300:])
        return
    medians = json.loads(done.stdout.strip().splitlines()[-1])
    ours = medians["km-project"]
    row(
        f"{MEASURE} (baseline: ipykernel's own spec of the venv)",
        ours,
        medians["plain-project-venv"],
        "<= 1.03x",
        ours <= 1.03 * medians["plain-project-venv"],
    )
    if peer:
        row(
            f"{MEASURE} (baseline: pyproject-local-kernel, uv run)",
            ours,
            medians[peer],
            "<= 0.8x",
            ours <= 0.8 * medians[peer],
        )
