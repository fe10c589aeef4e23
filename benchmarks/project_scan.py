"""``install --project --scan DIR`` over 100 projects against registering them one by one with
``install --project`` (issue 39), and a second scan, which finds every spec in step.

    python benchmarks/project_scan.py [--count N]    (alone; run.py also runs it)

The projects are real uv projects (`uv init`, `uv lock`, `uv sync`, offline, made once and
copied: a venv works where it is copied to) and bare venvs, ten to a group dir: DIR/gNN/pNNN.
Each measure starts from an empty kernels dir; each runs the `kernelmagic` command line, as a
user would.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from common import BIN, isolate, note, print_table, row

MEASURE = "install --project --scan DIR"
GOAL = 30.0  # seconds, for 100 projects (issue 39)


def _template(root: Path, env: dict[str, str]) -> Path | str:
    project = root / "template"
    project.mkdir()
    for command in (
        ["init", "--bare", "--name", "template", "--python", sys.executable],
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


def make_tree(top: Path, template: Path, count: int) -> list[Path]:
    """``count`` projects, ten to a group: nine uv projects and a bare venv in each."""
    made = []
    for i in range(count):
        where = top / f"g{i // 10:02d}" / (f"p{i:03d}" if i % 10 != 9 else f"venv{i:03d}")
        where.mkdir(parents=True)
        if i % 10 != 9:
            for file in ("pyproject.toml", "uv.lock"):
                text = (template / file).read_text().replace("template", f"proj-{i:03d}")
                (where / file).write_text(text)
        shutil.copytree(template / ".venv", where / ".venv", symlinks=True)
        made.append(where)
    return made


def _timed(commands: list[list[str]], env: dict[str, str]) -> float:
    start = time.perf_counter()
    for command in commands:
        subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def bench_scan(root: Path, kernels: Path, count: int = 100) -> None:
    if not (BIN / "uv").exists():
        note(MEASURE, "uv is not installed (pip install uv)")
        return
    env = {**os.environ, "UV_OFFLINE": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    work = root / "scan-bench"
    work.mkdir()
    template = _template(work, env)
    if isinstance(template, str):
        note(MEASURE, template)
        return
    top = work / "projects"
    projects = make_tree(top, template, count)
    cli = str(BIN / "kernelmagic")
    shutil.rmtree(kernels, ignore_errors=True)
    one_by_one = _timed([[cli, "install", "--project", str(p)] for p in projects], env)
    made = len([n for n in os.listdir(kernels) if not n.startswith(".")])
    shutil.rmtree(kernels)
    scan = _timed([[cli, "install", "--project", "--scan", str(top)]], env)
    scanned = len([n for n in os.listdir(kernels) if not n.startswith(".")])
    again = _timed([[cli, "install", "--project", "--scan", str(top)]], env)
    shutil.rmtree(kernels)
    if made != count or scanned != count:
        note(MEASURE, f"made {made} one by one and {scanned} by the scan, not {count}")
        return
    row(f"{MEASURE}, {count} projects (baseline: install --project of each)",
        scan, one_by_one, f"< {GOAL:g} s", scan < GOAL)  # fmt: skip
    row(f"{MEASURE} again, {count} specs in step (baseline: the first scan)",
        again, scan, "report", None)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="projects (default: 100)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kernelmagic-bench-") as tmp:
        root = Path(tmp)
        isolate(root)
        bench_scan(root, Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels", args.count)
    print_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
