"""Listing on a shared filesystem: every path lookup under the kernels tree waits 1 ms.

Sites keep central kernels on NFS, Lustre or CVMFS through ``JUPYTER_PATH``, where each
lookup is a round trip to a server. ``slowfs.c`` (beside this file), built here with the
system C compiler, is preloaded into each measured process: open, stat, access, opendir and
readlink of a path under the tree wait ``SLOWFS_DELAY_US`` and are counted, so each row also
says how many lookups a spec cost. The specs are small (argv, display_name, language) and all
sit in one kernels directory on ``JUPYTER_PATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import BIN, ROWS, isolate, make_specs, note, print_table, row

DELAY_US = 1000
SHIM = Path(__file__).with_name("slowfs.c")
TOKEN = "kernelmagic-benchmark"


def build_shim(root: Path) -> Path | str:
    """The shim as a shared library, or why it cannot be built."""
    cc = shutil.which("cc")
    if cc is None:
        return "no C compiler (apt-get install gcc)"
    library = root / "slowfs.so"
    done = subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", "-o", str(library), str(SHIM), "-ldl"],
        capture_output=True,
        text=True,
    )
    return library if done.returncode == 0 else "cc failed: " + done.stderr[-200:]


def _lookups(counts: Path) -> int:
    """Lookups the shim counted in every process that has ended since ``counts`` was reset."""
    if not counts.exists():
        return 0
    return sum(int(line.split()[1]) for line in counts.read_text().splitlines())


def _timed(command: list[str], env: dict[str, str], counts: Path) -> tuple[float, int]:
    """Seconds and lookups of one run of ``command``."""
    counts.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True, timeout=1800)
    return time.perf_counter() - start, _lookups(counts)


def _median_runs(
    command: list[str], env: dict[str, str], counts: Path, repeats: int
) -> tuple[float, int]:
    runs = [_timed(command, env, counts) for _ in range(repeats)]
    return statistics.median(t for t, _ in runs), runs[-1][1]


def _per_spec(measure: str, ours: int, theirs: int | None, count: int) -> None:
    theirs_text = "-" if theirs is None else f"{theirs / count:.2f}"
    ratio = f"{ours / theirs:.2f}x" if theirs else "-"
    ROWS.append((measure, f"{ours / count:.2f}", theirs_text, ratio, "report", "-"))


_MAGIC_PROBE = """
import ctypes, json, sys, time
from IPython.core.interactiveshell import InteractiveShell
from jupyter_client.kernelspec import KernelSpecManager
from traitlets.config import Config

config = Config()
config.HistoryManager.hist_file = ":memory:"
ip = InteractiveShell.instance(config=config)
ip.run_line_magic("load_ext", "kernelmagic")
lookups = ctypes.CDLL(None).slowfs_lookups
lookups.restype = ctypes.c_ulong


def measure(func, times):
    func()  # the first call imports what the call needs
    found = []
    for _ in range(times):
        before, start = lookups(), time.perf_counter()
        func()
        found.append((time.perf_counter() - start, lookups() - before))
    return found


ours = measure(lambda: ip.run_line_magic("kernel_list", ""), int(sys.argv[1]))
theirs = measure(lambda: KernelSpecManager().get_all_specs(), int(sys.argv[2]))
print(json.dumps({"ours": ours, "theirs": theirs}))
"""


def bench_latency(root: Path, count: int, quick: bool) -> None:
    shim = build_shim(root)
    if isinstance(shim, str):
        note("listing with 1 ms a lookup", shim)
        return
    tree = root / "slow-tree"
    kernels = tree / "share" / "jupyter" / "kernels"
    make_specs(kernels, count, small=True)
    counts = root / "lookups.txt"
    env = {
        **os.environ,
        "JUPYTER_PATH": str(tree / "share" / "jupyter"),
        "LD_PRELOAD": str(shim),
        "SLOWFS_PREFIX": str(tree),
        "SLOWFS_DELAY_US": str(DELAY_US),
        "SLOWFS_COUNT_FILE": str(counts),
    }
    ours_repeats, theirs_repeats = (1, 1) if quick else (5, 1)  # Jupyter's takes a minute
    what = f"{count:,} small specs, 1 ms a lookup"

    t_ours, l_ours = _median_runs(
        [str(BIN / "kernelmagic"), "list", "--json"], env, counts, ours_repeats
    )
    t_jupyter, l_jupyter = _median_runs(
        [str(BIN / "jupyter"), "kernelspec", "list", "--json"], env, counts, theirs_repeats
    )
    row(f"kernelmagic list --json, {what} (baseline: jupyter kernelspec list --json)",
        t_ours, t_jupyter, "<= 1.5 s", t_ours <= 1.5)  # fmt: skip
    _per_spec(
        "  path lookups a spec of that listing (baseline: jupyter's)", l_ours, l_jupyter, count
    )

    done = subprocess.run(
        [sys.executable, "-c", _MAGIC_PROBE, str(ours_repeats), str(theirs_repeats)],
        env=env, capture_output=True, text=True, check=True, timeout=3600,
    )  # fmt: skip
    found = json.loads(done.stdout.splitlines()[-1])
    t_ours = statistics.median(t for t, _ in found["ours"])
    t_theirs = statistics.median(t for t, _ in found["theirs"])
    row(f"%kernel_list, {what} (baseline: KernelSpecManager().get_all_specs())",
        t_ours, t_theirs, "<= 1.5 s", t_ours <= 1.5)  # fmt: skip
    _per_spec("  path lookups a spec (baseline: jupyter_client's)",
              found["ours"][-1][1], found["theirs"][-1][1], count)  # fmt: skip

    t_doctor, l_doctor = _median_runs(
        [str(BIN / "kernelmagic"), "doctor", "--json"], env, counts, ours_repeats
    )
    row(f"kernelmagic doctor --json, {what} (no baseline)", t_doctor, None, "report", None)
    _per_spec("  path lookups a spec of the doctor's checks", l_doctor, None, count)

    bench_server(root, env, count, what, ours_repeats, theirs_repeats)
    bench_interpreters_on_the_tree(root, env, counts, ours_repeats)


ENVIRONMENTS = 500


def bench_interpreters_on_the_tree(
    root: Path, env: dict[str, str], counts: Path, repeats: int
) -> None:
    """A site's environments on the same filesystem as its kernels, each spec its own
    interpreter: checking each program was a stat and an access, one after another (8.9 s
    for 2,000 such specs at 2 ms a lookup, before they overlapped)."""
    tree = root / "slow-envs"
    pythons = []
    for i in range(ENVIRONMENTS):
        bin_dir = tree / "envs" / f"env-{i:04d}" / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "python").symlink_to(sys.executable)
        pythons.append(str(bin_dir / "python"))
    make_specs(tree / "share" / "jupyter" / "kernels", ENVIRONMENTS, pythons, small=True)
    env = {**env, "JUPYTER_PATH": str(tree / "share" / "jupyter"), "SLOWFS_PREFIX": str(tree)}
    what = f"{ENVIRONMENTS:,} specs, each its own interpreter on the tree, 1 ms a lookup"
    t_ours, l_ours = _median_runs(
        [str(BIN / "kernelmagic"), "list", "--json"], env, counts, repeats
    )
    t_jupyter, l_jupyter = _median_runs(
        [str(BIN / "jupyter"), "kernelspec", "list", "--json"], env, counts, 1
    )
    row(f"kernelmagic list --json, {what} (baseline: jupyter kernelspec list --json)",
        t_ours, t_jupyter, "<= 0.35x", t_ours <= 0.35 * t_jupyter)  # fmt: skip
    _per_spec("  path lookups a spec of that listing (baseline: jupyter's)",
              l_ours, l_jupyter, ENVIRONMENTS)  # fmt: skip


# --- the server's listing ----------------------------------------------------------------


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=1800) as response:
        return response.read()


def _serve(root: Path, env: dict[str, str], *options: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False", "--ServerApp.allow_root=True",
        f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={root}", *options,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            _get(url + "/api/status")
            return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("jupyter_server did not start") from None
            time.sleep(0.2)


def _served_listing(
    root: Path, env: dict[str, str], counts: Path, repeats: int, *options: str
) -> tuple[float, float, bytes]:
    """Median seconds of GET /api/kernelspecs, lookups a request, and the document."""
    counts.unlink(missing_ok=True)
    process, url = _serve(root, env, *options)
    try:
        _get(url + "/api/kernelspecs")  # the first request imports what the handler needs
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            document = _get(url + "/api/kernelspecs")
            times.append(time.perf_counter() - start)
    finally:
        process.terminate()
        process.wait(timeout=60)
    return statistics.median(times), _lookups(counts) / (repeats + 1), document


def bench_server(
    root: Path, env: dict[str, str], count: int, what: str, ours_repeats: int, repeats: int
) -> None:
    try:
        import jupyter_server  # noqa: F401
    except ImportError:
        note("GET /api/kernelspecs", "jupyter_server is not installed (pip install '.[test]')")
        return
    counts = Path(env["SLOWFS_COUNT_FILE"])
    served = root / "served"
    served.mkdir(exist_ok=True)
    manager = "--ServerApp.kernel_spec_manager_class=kernelmagic.server.KernelSpecManager"
    t_ours, l_ours, ours = _served_listing(served, env, counts, ours_repeats, manager)
    t_stock, l_stock, stock = _served_listing(served, env, counts, repeats)
    same = json.loads(ours) == json.loads(stock)
    row(f"GET /api/kernelspecs, {what} (baseline: jupyter_server's own manager)", t_ours,
        t_stock, "report, same document" + ("" if same else " (DIFFERENT!)"), same)  # fmt: skip
    ROWS.append(("  path lookups a spec of a request (server start included)",
                 f"{l_ours / count:.2f}", f"{l_stock / count:.2f}",
                 f"{l_ours / l_stock:.2f}x", "report", "-"))  # fmt: skip


def main() -> int:
    """This section alone: ``python benchmarks/latency.py [--quick]``."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 specs, one run of each")
    parser.add_argument("--specs", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kernelmagic-bench-") as tmp:
        isolate(Path(tmp))
        bench_latency(Path(tmp), 500 if args.quick else args.specs, args.quick)
    print_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
