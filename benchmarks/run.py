"""Measure kernelmagic against the baselines named in the performance issues.

    python benchmarks/run.py [--quick]

Everything runs in throw-away Jupyter directories (HOME, JUPYTER_*, XDG_CACHE_HOME and
XDG_DATA_DIRS point into a temporary directory), so the user's own kernels are neither read
nor touched. Baseline and candidate runs are interleaved and medians are reported, because
this machine is shared and noisy. Prints one table: measure, kernelmagic, baseline, ratio,
target, met. ``--quick`` (under a minute) lists 1,000 specs instead of 10,000, starts each
kernel twice and leaves out envkernel (it installs it into a venv of its own).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

from common import BIN, ROWS, interleaved, isolate, make_specs, note, print_table, row

import kernelmagic

__all__ = ["ROWS", "main"]


# --- %load_ext ---------------------------------------------------------------------------

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
    row("%load_ext kernelmagic (baseline: bare InteractiveShell)",
        load, shell, "< 20 ms added", load < 0.020)  # fmt: skip
    row(
        "  modules imported by %load_ext: "
        + (", ".join(heavy) or "none of jupyter_client, ipykernel, zmq"),
        0, None, "none", not heavy,
    )  # fmt: skip


# --- listing -----------------------------------------------------------------------------


def _peak_rss(command: list[str]) -> tuple[bytes, float]:
    """Run ``command``; its output and peak resident memory in MB."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return out, usage.ru_maxrss / 1024


def bench_cli_list(repeats: int, count: int) -> None:
    ours_cmd = [str(BIN / "kernelmagic"), "list", "--json"]
    jupyter_cmd = [str(BIN / "jupyter"), "kernelspec", "list", "--json"]
    (a, ours_mb), (b, jupyter_mb) = _peak_rss(ours_cmd), _peak_rss(jupyter_cmd)
    dirs = [{n: s["resource_dir"] for n, s in json.loads(x)["kernelspecs"].items()} for x in (a, b)]
    same = dirs[0] == dirs[1]
    t_ours, t_jupyter = interleaved(
        lambda: subprocess.check_output(ours_cmd), lambda: subprocess.check_output(jupyter_cmd),
        repeats,
    )  # fmt: skip
    row(f"kernelmagic list --json, {count:,} specs (baseline: jupyter kernelspec list --json)",
        t_ours, t_jupyter, "<= 0.3x, same names and dirs" + ("" if same else " (DIFFERENT!)"),
        t_ours <= 0.3 * t_jupyter and same)  # fmt: skip
    ratio = f"{ours_mb / jupyter_mb:.2f}x"
    peak = "  peak memory of that listing, largest process (baseline: jupyter's)"
    ROWS.append((peak, f"{ours_mb:.0f} MB", f"{jupyter_mb:.0f} MB", ratio, "report", "-"))


def bench_magic_list_small(repeats: int, kernels: Path, count: int) -> None:
    """Small specs (argv, display_name, language) against the plainest loop that reads them:
    os.scandir, open().read(), json.loads, in the same process."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()

    def ours() -> object:
        return ip.run_line_magic("kernel_list", "")

    def floor() -> object:
        found = {}
        for entry in os.scandir(kernels):
            with open(os.path.join(entry.path, "kernel.json")) as f:
                found[entry.name] = json.loads(f.read())
        return found

    t_ours, t_floor = interleaved(ours, floor, repeats)
    row(f"%kernel_list, {count:,} small specs (baseline: scandir + open().read() + json.loads)",
        t_ours, t_floor, "<= 1.25x", t_ours <= 1.25 * t_floor)  # fmt: skip


def bench_magic_list(repeats: int, kernels: Path, count: int) -> None:
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
    row(f"%kernel_list, {count:,} specs (baseline: KernelSpecManager().get_all_specs())",
        t_ours, t_manager, "<= 0.3x", t_ours <= 0.3 * t_manager)  # fmt: skip
    t_ours, t_floor = interleaved(ours, floor, repeats)
    row(f"%kernel_list, {count:,} specs (baseline: json.loads of the same files)",
        t_ours, t_floor, "<= 1.25x", t_ours <= 1.25 * t_floor)  # fmt: skip
    peaks = []
    for func in (ours, floor):
        tracemalloc.start()
        func()
        peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
    ROWS.append(("  peak Python allocations of that listing (baseline: the json.loads floor)",
                 f"{peaks[0]:.1f} MB", f"{peaks[1]:.1f} MB", f"{peaks[0] / peaks[1]:.2f}x",
                 "report", "-"))  # fmt: skip


# --- install -----------------------------------------------------------------------------


def bench_install(repeats: int) -> None:
    kernelmagic_cli = str(BIN / "kernelmagic")

    def ipykernel_install() -> None:
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--user", "--name", "by-ipykernel"],
            check=True, capture_output=True,
        )  # fmt: skip

    def ours(*options: str) -> None:
        command = [kernelmagic_cli, "install", "--from-current", "by-km", "--replace", *options]
        subprocess.run(command, check=True, capture_output=True)

    t_none, t_ipykernel = interleaved(lambda: ours("--capture", "none"), ipykernel_install, repeats)
    row("kernelmagic install --from-current --capture none (baseline: python -m ipykernel "
        "install --user)", t_none, t_ipykernel, "<= 0.40x",
        t_none <= 0.4 * t_ipykernel)  # fmt: skip
    t_default, t_ipykernel = interleaved(ours, ipykernel_install, repeats)
    row("kernelmagic install --from-current, env captured (baseline: python -m ipykernel "
        "install --user)", t_default, t_ipykernel, "<= 1.0x", t_default <= t_ipykernel)  # fmt: skip


# --- static doctor -----------------------------------------------------------------------


def bench_doctor(repeats: int, root: Path, kernels: Path, count: int, interpreters: int) -> None:
    """``count`` specs over ``interpreters`` distinct interpreters; each is a wrapper that
    notes every start, so the row can say how often each one was started."""
    from kernelmagic.operations import doctor

    log = root / "probes.log"
    pythons = []
    for i in range(interpreters):
        wrapper = root / "interpreters" / f"i{i:02d}" / "bin" / "python"
        wrapper.parent.mkdir(parents=True)
        wrapper.write_text(f'#!/bin/sh\necho {i} >> {log}\nexec {sys.executable} "$@"\n')
        wrapper.chmod(0o755)
        pythons.append(str(wrapper))
    names = make_specs(kernels, count, pythons)

    def once() -> object:
        return doctor.diagnose(names)

    log.write_text("")
    once()
    starts = log.read_text().split()
    per_interpreter = {starts.count(str(i)) for i in range(interpreters)}
    t_doctor, _ = interleaved(once, lambda: None, repeats)
    row(f"kernel_doctor, {count:,} specs over {interpreters} interpreters (no baseline)",
        t_doctor, None, f"report; each interpreter started {sorted(per_interpreter)} time(s)",
        per_interpreter == {1})  # fmt: skip
    for name in names:
        shutil.rmtree(kernels / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (under a minute)")
    args = parser.parse_args(argv)
    small, large, starts = (3, 5, 2) if args.quick else (5, 15, 40)
    specs_listed = 1000 if args.quick else 10_000

    import containers as container_starts  # beside this file
    import latency as slow_filesystem
    import project_scan
    import projects as project_starts
    import slurm as slurm_starts
    import starts as kernel_starts

    # An installed package has bytecode; an editable checkout may not (PYTHONDONTWRITEBYTECODE).
    compileall.compile_dir(os.path.dirname(kernelmagic.__file__), quiet=1)
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
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
        make_specs(kernels, specs_listed)
        bench_cli_list(small, specs_listed)
        bench_magic_list(large, kernels, specs_listed)
        shutil.rmtree(kernels)
        make_specs(kernels, specs_listed, small=True)
        bench_magic_list_small(large, kernels, specs_listed)
        shutil.rmtree(kernels)
        slow_filesystem.bench_latency(root, 500 if args.quick else specs_listed, args.quick)
        bench_install(large)
        bench_doctor(small, root, kernels, 100 if args.quick else 1000, 20)
        kernel_starts.bench_starts(starts, root, kernels, with_peers=not args.quick)
        container_starts.bench_container(starts, root, kernels)
        project_starts.bench_project(starts, root, kernels, with_peers=not args.quick)
        project_scan.bench_scan(root, kernels, 20 if args.quick else 100)
        slurm_starts.bench_slurm(min(starts, 15), root, kernels)
        kernel_starts.bench_activate(2 if args.quick else 7)
        kernel_starts.bench_launch(1 if args.quick else 3, kernels, 4 if args.quick else 20)
    if not ROWS:
        note("nothing", "no benchmark ran")
    print_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
