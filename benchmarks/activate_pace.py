"""%kernel_activate under load: a client sends an execute_request every 10 ms and every
150 ms for 3 s after the activating one, reading all along; counts the requests that got
no reply or no idle status, and replies out of order. Run it as many times in a row as the
claim needs (python benchmarks/activate_pace.py --tries 20); it needs Lmod.

    python benchmarks/activate_pace.py --tries 20
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import start_new_kernel


def one_try(period: float) -> tuple[int, int, int, bool]:
    """(requests sent, without a reply, without an idle status, replies in order)."""
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        client.execute_interactive("%load_ext kernelmagic", timeout=60)
        sent = [client.execute("%kernel_activate --modules geo/1.0")]
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
        return len(sent), no_reply, no_idle, [m for m in sent if m in replies] == replies
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=5)
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
        for period in (0.01, 0.15):
            totals = [0, 0, 0, 0]
            for _ in range(args.tries):
                sent, no_reply, no_idle, in_order = one_try(period)
                totals[0] += sent
                totals[1] += no_reply
                totals[2] += no_idle
                totals[3] += not in_order
            print(
                f"every {period * 1000:.0f} ms, {args.tries} tries: {totals[0]} requests, "
                f"{totals[1]} without a reply, {totals[2]} without an idle status, "
                f"{totals[3]} tries out of order"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
