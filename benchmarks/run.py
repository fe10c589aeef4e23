"""Measure kernelmagic against the baselines named in the performance issue.

    python benchmarks/run.py [--quick]

Everything runs in throw-away Jupyter directories (HOME, JUPYTER_* and XDG_DATA_DIRS point
into a temporary directory), so the user's own kernels are neither read nor touched.
Baseline and candidate runs are interleaved and medians are reported, because this machine
is shared and noisy. Prints one table: measure, kernelmagic, baseline, ratio, target, met.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import kernelmagic

BIN = Path(sys.executable).parent
ROWS: list[tuple[str, str, str, str, str, str]] = []


def isolate(root: Path) -> None:
    """Point every Jupyter and IPython location of this process (and children) into root."""
    for name, sub in (
        ("HOME", "home"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(root / sub)
    os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
    os.environ["XDG_DATA_DIRS"] = str(root / "system")  # no /usr/share/jupyter
    os.environ.pop("JUPYTER_PATH", None)


def interleaved(
    candidate: Callable[[], object], baseline: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median seconds of each, alternating which one goes first, after one warm-up each."""
    candidate()
    baseline()
    ours, theirs = [], []
    for i in range(repeats):
        pair = [(candidate, ours), (baseline, theirs)]
        for func, times in pair if i % 2 == 0 else reversed(pair):
            start = time.perf_counter()
            func()
            times.append(time.perf_counter() - start)
    return statistics.median(ours), statistics.median(theirs)


def row(measure: str, ours: float, theirs: float | None, target: str, met: bool | None) -> None:
    def fmt(seconds: float | None) -> str:
        if seconds is None:
            return "-"
        return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"

    ratio = f"{ours / theirs:.2f}x" if theirs else "-"
    verdict = "-" if met is None else ("met" if met else "NOT MET")
    ROWS.append((measure, fmt(ours), fmt(theirs), ratio, target, verdict))
    print(f"  measured: {measure}", file=sys.stderr)


def make_specs(kernels: Path, count: int) -> None:
    for i in range(count):
        spec_dir = kernels / f"bench-{i:04d}"
        spec_dir.mkdir(parents=True)
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"Bench {i}",
            "language": "python",
            "env": {"GDAL_DATA": "/opt/gdal/share", "PATH": "/opt/env/bin:${PATH}"},
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))


# --- 1. %load_ext ---------------------------------------------------------------------

_LOAD_PROBE = """
import sys, time, json
from IPython.core.interactiveshell import InteractiveShell
start = time.perf_counter()
ip = InteractiveShell.instance()
shell = time.perf_counter() - start
start = time.perf_counter()
ip.run_line_magic("load_ext", "kernelmagic")
load = time.perf_counter() - start
heavy = [m for m in ("jupyter_client", "ipykernel", "zmq") if m in sys.modules]
print(json.dumps({"shell": shell, "load": load, "heavy": heavy}))
"""


def bench_load_ext(repeats: int) -> None:
    runs = [
        json.loads(subprocess.check_output([sys.executable, "-c", _LOAD_PROBE]))
        for _ in range(repeats)
    ]
    load = statistics.median(r["load"] for r in runs)
    shell = statistics.median(r["shell"] for r in runs)
    heavy = sorted({m for r in runs for m in r["heavy"]})
    row(
        "%load_ext kernelmagic (baseline: bare InteractiveShell)",
        load,
        shell,
        "< 20 ms added",
        load < 0.020,
    )
    row(
        "  modules imported by %load_ext: "
        + (", ".join(heavy) or "none of jupyter_client, ipykernel, zmq"),
        0,
        None,
        "none",
        not heavy,
    )


# --- 2. and 3. listing 1,000 specs ------------------------------------------------------


def bench_cli_list(repeats: int) -> None:
    def ours() -> bytes:
        return subprocess.check_output([str(BIN / "kernelmagic"), "list", "--json"])

    def jupyter() -> bytes:
        return subprocess.check_output([str(BIN / "jupyter"), "kernelspec", "list", "--json"])

    a = json.loads(ours())["kernelspecs"]
    b = json.loads(jupyter())["kernelspecs"]
    same = {n: s["resource_dir"] for n, s in a.items()} == {
        n: s["resource_dir"] for n, s in b.items()
    }
    t_ours, t_jupyter = interleaved(ours, jupyter, repeats)
    row(
        "kernelmagic list --json, 1,000 specs (baseline: jupyter kernelspec list --json)",
        t_ours,
        t_jupyter,
        "<= 0.3x, same names and dirs" + ("" if same else " (DIFFERENT!)"),
        t_ours <= 0.3 * t_jupyter and same,
    )


def bench_magic_list(repeats: int, kernels: Path) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from jupyter_client.kernelspec import KernelSpecManager
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"  # the temporary HOME goes away before exit
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "kernelmagic")

    def ours() -> object:
        return ip.run_line_magic("kernel_list", "")

    def manager() -> object:
        return KernelSpecManager().get_all_specs()

    def floor() -> object:
        return {
            entry.name: json.loads(Path(entry.path, "kernel.json").read_bytes())
            for entry in os.scandir(kernels)
        }

    t_ours, t_manager = interleaved(ours, manager, repeats)
    row(
        "%kernel_list, 1,000 specs (baseline: KernelSpecManager().get_all_specs())",
        t_ours,
        t_manager,
        "<= 0.3x",
        t_ours <= 0.3 * t_manager,
    )
    t_ours, t_floor = interleaved(ours, floor, repeats)
    row(
        "%kernel_list, 1,000 specs (baseline: json.loads of the same files)",
        t_ours,
        t_floor,
        "<= 2x",
        t_ours <= 2 * t_floor,
    )


# --- 4. kernel start ---------------------------------------------------------------------


def _start_to_kernel_info(name: str) -> None:
    from jupyter_client.manager import start_new_kernel

    # The kernel's stderr only says "running over TCP without encryption" on every start.
    manager, client = start_new_kernel(
        kernel_name=name, startup_timeout=60, stderr=subprocess.DEVNULL
    )
    try:
        client.kernel_info(reply=True, timeout=30)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def bench_kernel_start(repeats: int, root: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--user", "--name", "plain-ipykernel"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [str(BIN / "kernelmagic"), "install", "captured", "--capture", "all"],
        check=True,
        capture_output=True,
    )
    t_ours, t_plain = interleaved(
        lambda: _start_to_kernel_info("captured"),
        lambda: _start_to_kernel_info("plain-ipykernel"),
        repeats,
    )
    row(
        "kernel start to kernel_info reply (baseline: plain ipykernel spec)",
        t_ours,
        t_plain,
        "<= 1.05x",
        t_ours <= 1.05 * t_plain,
    )


# --- 5. install and doctor ---------------------------------------------------------------


def bench_install(repeats: int) -> None:
    from kernelmagic.envcapture import login_shell_environment

    def install() -> None:
        subprocess.run(
            [str(BIN / "kernelmagic"), "install", "timed", "--replace"],
            check=True,
            capture_output=True,
        )

    t_install, t_shell = interleaved(install, login_shell_environment, repeats)
    row(
        "kernelmagic install --from-current (baseline: its login-shell baseline alone)",
        t_install,
        t_shell,
        "report",
        None,
    )


def bench_doctor(repeats: int, root: Path, kernels: Path) -> None:
    """50 specs over 5 distinct interpreters: each interpreter is started once."""
    from kernelmagic import doctor

    pythons = []
    for i in range(5):
        venv = root / "venvs" / f"v{i}"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        pythons.append(str(venv / "bin" / "python"))
    names = []
    for i in range(50):
        name = f"doc-{i:02d}"
        spec_dir = kernels / name
        spec_dir.mkdir(parents=True)
        argv = [pythons[i % 5], "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "language": "python"}))
        names.append(name)

    def sequential() -> object:
        doctor.MAX_PARALLEL = 1
        try:
            return doctor.diagnose(names)
        finally:
            doctor.MAX_PARALLEL = 8

    t_parallel, t_sequential = interleaved(lambda: doctor.diagnose(names), sequential, repeats)
    row(
        "kernel_doctor on 50 specs, 5 interpreters (baseline: checked one at a time)",
        t_parallel,
        t_sequential,
        "report",
        None,
    )
    for name in names:
        shutil.rmtree(kernels / name)


def print_table() -> None:
    header = ("measure", "kernelmagic", "baseline", "ratio", "target", "met")
    widths = [max(len(r[i]) for r in [header, *ROWS]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *ROWS]:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (under a minute)")
    args = parser.parse_args(argv)
    small, large, starts = (3, 5, 3) if args.quick else (9, 15, 11)

    # An installed package has bytecode; an editable checkout may not (PYTHONDONTWRITEBYTECODE).
    compileall.compile_dir(os.path.dirname(kernelmagic.__file__), quiet=1)
    with tempfile.TemporaryDirectory(prefix="kernelmagic-bench-") as tmp:
        root = Path(tmp)
        isolate(root)
        kernels = Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels"
        print(
            f"kernelmagic {kernelmagic.__version__}, Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} cores; repeats: {small}/{large}/{starts}",
            file=sys.stderr,
        )
        bench_load_ext(large)
        make_specs(kernels, 1000)
        bench_cli_list(small)
        bench_magic_list(large, kernels)
        shutil.rmtree(kernels)
        bench_kernel_start(starts, root)
        bench_install(small)
        bench_doctor(small, root, kernels)
    print_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
