"""%kernel_activate under load: a client sends an execute_request every 10 ms and every
150 ms for 3 s after the activating one, reading all along; counts the requests that got
no reply or no idle status, and replies out of order (every loss is reported with where it
began). Run it as many times in a row as the claim needs; it needs Lmod.

    python benchmarks/activate_pace.py --tries 20
    python benchmarks/activate_pace.py --tries 5 --periods 0.01 --load 2   # a busy node
    python benchmarks/activate_pace.py --tries 5 --periods 0.01 --load 2 --bare

--bare sends the same requests behind a plain cell instead: what ipykernel itself does at
that pace (ipykernel 7.0 to 7.3 stop replying on a busy node with no activation at all).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import start_new_kernel


def one_try(period: float, first: str) -> tuple[int, int, int, bool]:
    """(requests sent, without a reply, without an idle status, replies in order)."""
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        client.execute_interactive("%load_ext kernelmagic", timeout=60)
        sent = [client.execute(first)]
        replies: list[str] = []
        idle: set[str] = set()

        def read(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                with contextlib.suppress(queue.Empty):
                    msg = client.get_iopub_msg(timeout=0.005)
                    if msg["content"].get("execution_state") == "idle":
                        idle.add(msg["parent_header"].get("msg_id"))
                with contextlib.suppress(queue.Empty):
                    replies.append(client.get_shell_msg(timeout=0.005)["parent_header"]["msg_id"])

        began = time.monotonic()
        while time.monotonic() - began < 3.0:
            read(period)
            sent.append(client.execute("1"))
        deadline = time.monotonic() + 30
        while (len(replies) < len(sent) or not idle >= set(sent)) and time.monotonic() < deadline:
            read(0.05)
        no_reply = sum(1 for m in sent if m not in replies)
        no_idle = sum(1 for m in sent if m not in idle)
        lost = [i for i, m in enumerate(sent) if m not in replies]
        if lost:  # where in the try: every loss seen is reported
            print(f"  lost {len(lost)} of {len(sent)}, requests {lost[:5]}...", file=sys.stderr)
        return len(sent), no_reply, no_idle, [m for m in sent if m in replies] == replies
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--periods", type=float, nargs="+", default=[0.01, 0.15])
    parser.add_argument("--load", type=int, default=0, help="busy processes beside (a loaded node)")
    parser.add_argument(
        "--bare", action="store_true", help="the same pace without an activation: ipykernel alone"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kernelmagic-pace-") as tmp:
        modules = Path(tmp) / "modules" / "geo"
        modules.mkdir(parents=True)
        (modules / "1.0.lua").write_text(f'setenv("GDAL_DATA", "{tmp}")\n')
        os.environ["MODULEPATH"] = str(modules.parent)
        for name in ("HOME", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
            os.environ[name] = str(Path(tmp) / name.lower())
        import ipykernel

        print(f"ipykernel {ipykernel.__version__}", file=sys.stderr)
        busy = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)
        ]
        try:
            measure(args)
        finally:
            for process in busy:
                process.kill()
                process.wait()
    return 0


def measure(args: argparse.Namespace) -> None:
    first = "import time; time.sleep(0.5)" if args.bare else "%kernel_activate --modules geo/1.0"
    for period in args.periods:
        totals = [0, 0, 0, 0]
        for _ in range(args.tries):
            sent, no_reply, no_idle, in_order = one_try(period, first)
            totals[0] += sent
            totals[1] += no_reply
            totals[2] += no_idle
            totals[3] += not in_order
        print(
            f"every {period * 1000:.0f} ms, {args.tries} tries: {totals[0]} requests, "
            f"{totals[1]} without a reply, {totals[2]} without an idle status, "
            f"{totals[3]} tries out of order"
        )


if __name__ == "__main__":
    sys.exit(main())
