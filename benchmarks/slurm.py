"""Start of a `remote --engine slurm` spec against `srun python -m ipykernel_launcher` with a
connection file written by hand, both on an idle node of the tests' private Slurm cluster.

    python benchmarks/slurm.py [--repeats N]     (run.py runs it too)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import isolate, note, print_table, row

TESTS = Path(__file__).resolve().parent.parent / "tests"
MEASURE = (
    "start to kernel_info reply: --engine slurm "
    "(baseline: srun python -m ipykernel_launcher, connection file by hand)"
)


def _reply(client) -> None:
    request = client.kernel_info()
    while True:
        reply = client.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == request:
            return


def start_spec(name: str) -> float:
    """Seconds from KernelManager.start_kernel to the kernel_info reply (then shut down)."""
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name=name)
    began = time.perf_counter()
    manager.start_kernel()
    client = manager.client()
    client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    try:
        _reply(client)
        return time.perf_counter() - began
    finally:
        client.stop_channels()
        manager.shutdown_kernel()


def start_by_hand(work: Path) -> float:
    """The same kernel started by hand: ports picked here, srun, a client of the file."""
    from jupyter_client.blocking import BlockingKernelClient

    held = [socket.socket() for _ in range(5)]
    for sock in held:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in held]
    for sock in held:
        sock.close()
    names = ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")
    info = {"ip": "127.0.0.1", "transport": "tcp", "key": str(uuid.uuid4())}
    info |= {"signature_scheme": "hmac-sha256", **dict(zip(names, ports, strict=True))}
    connection = work / f"kernel-{uuid.uuid4()}.json"
    connection.write_text(json.dumps(info))
    began = time.perf_counter()
    job = subprocess.Popen(
        [
            "srun",
            "--quiet",
            "--ntasks=1",
            "--nodes=1",
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            str(connection),
        ],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = BlockingKernelClient(connection_file=str(connection))
    client.load_connection_file()
    client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    try:
        _reply(client)
        return time.perf_counter() - began
    finally:
        client.stop_channels()
        job.terminate()  # srun passes it to the kernel and ends the job
        job.wait(30)
        connection.unlink()


def bench_slurm(repeats: int, root: Path, kernels: Path) -> None:
    sys.path.insert(0, str(TESTS))
    try:
        import slurm_cluster

        cluster = slurm_cluster.start_cluster()
    except BaseException as exc:  # pytest.skip: the cluster cannot start here, and why
        if isinstance(exc, KeyboardInterrupt):
            raise
        note(MEASURE, f"no private Slurm cluster: {exc}")
        return
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(cluster.client_env(saved))
        from kernelmagic.frontends.cli import main

        source = kernels / "bench-src"
        source.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        spec = {"argv": argv, "display_name": "Bench", "language": "python"}
        (source / "kernel.json").write_text(json.dumps(spec))
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            main(["remote", "bench-src", "bench-slurm", "--engine", "slurm", "--replace"])
        work = Path(tempfile.mkdtemp(dir=root))
        start_spec("bench-slurm"), start_by_hand(work)  # warm-up
        ours, theirs = [], []
        for i in range(repeats):
            pair = [lambda: ours.append(start_spec("bench-slurm")),
                    lambda: theirs.append(start_by_hand(work))]  # fmt: skip
            for run in pair if i % 2 == 0 else pair[::-1]:
                run()
        mine, baseline = statistics.median(ours), statistics.median(theirs)
        row(MEASURE, mine, baseline, "<= 1.10x", mine <= 1.10 * baseline)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kernelmagic-bench-") as tmp:
        isolate(Path(tmp))
        bench_slurm(args.repeats, Path(tmp), Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels")
    print_table()
