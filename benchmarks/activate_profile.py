"""Where the time of ``%kernel_activate --modules`` goes, phase by phase, next to a plain
restart followed by the same cell (what ``starts.bench_activate`` compares it with).

    python benchmarks/activate_profile.py [--rounds 9] [--fresh-check]

Stamps come from both processes of the in-place restart and from the client: a cell run
before each timed one (and not timed) wraps the activation's steps so that each writes the
wall-clock time it starts or ends to a file; a ``PYTHONSTARTUP`` file of the kernel's own
stamps when the new process reaches IPython's startup (ipykernel imported, sockets bound).
``--fresh-check`` makes every round run the interpreter check (the cache of passes is
emptied before each round), as a first activation into an environment does.
"""

from __future__ import annotations

import argparse
import compileall
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import isolate
from starts import PLAIN, setup_lmod, shell_reply

import kernelmagic

# Run in the kernel before each timed activation: wrap each step with a stamp as its module
# is imported (by the timed cell itself, so that its imports are timed too).
_WRAP = """
import os as _o, sys as _sys, importlib.machinery as _machinery
def _stamp(what, path=_o.environ["KM_PROFILE_STAMPS"]):
    import json, time  # the namespace is emptied as the old kernel closes
    with open(path, "a") as f:
        f.write(json.dumps([what, time.time()]) + "\\n")
def _wrap(owner, name, label, _stamp=_stamp):
    inner = getattr(owner, name)
    def wrapped(*a, _stamp=_stamp, **k):
        _stamp(label + " start")
        try:
            return inner(*a, **k)
        finally:
            _stamp(label + " end")
    setattr(owner, name, wrapped)
_WRAPS = {
    "kernelmagic.commands.activate": [(None, "activate_here", "magic")],
    "kernelmagic.domain.activation": [
        (None, "activate", "shell"), (None, "check_interpreter_starts", "check")
    ],
    "kernelmagic.storage.started_environments": [(None, "passed", "fingerprint")],
    "kernelmagic.restart.inplace": [
        ("Handoff", "_after_cell", "cell done"), ("Handoff", "_exec", "handoff"),
        ("Handoff", "_close_kernel", "close"),
    ],
}
class _Stamping:
    def find_spec(self, name, path=None, target=None, _wrap=_wrap, _wraps=_WRAPS):
        if name not in _wraps:
            return None
        spec = _machinery.PathFinder.find_spec(name, path)
        inner = spec.loader.exec_module
        def exec_module(module, inner=inner):
            inner(module)
            for owner, attribute, label in _wraps[name]:
                _wrap(getattr(module, owner) if owner else module, attribute, label)
        spec.loader.exec_module = exec_module
        return spec
assert not any(name in _sys.modules for name in _WRAPS)
_sys.meta_path.insert(0, _Stamping())
_wrap(_o, "execve", "exec")
"""

_STARTUP = """
import json, os, time, sys
def _stamp(what, path=os.environ["KM_PROFILE_STAMPS"]):
    import json, time
    with open(path, "a") as f:
        f.write(json.dumps([what, time.time()]) + "\\n")
_stamp("new process at IPython startup")
if "kernelmagic.restart.resume" in sys.modules:
    _r = sys.modules["kernelmagic.restart.resume"]._Resumption
    _inner = _r._wait_for_iopub_subscriber
    def _wait(self, _inner=_inner, _stamp=_stamp):
        _stamp("iopub wait start")
        if self.subscribed.is_set():
            _stamp("iopub seen before the wait")
        try:
            return _inner(self)
        finally:
            _stamp("iopub wait end")
    _r._wait_for_iopub_subscriber = _wait
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--fresh-check", action="store_true")
    parser.add_argument(
        "--no-iopub", action="store_true", help="a client that reads shell replies only"
    )
    args = parser.parse_args()
    # An installed package has bytecode; an editable checkout may not (as run.py does).
    compileall.compile_dir(os.path.dirname(kernelmagic.__file__), quiet=1)
    with tempfile.TemporaryDirectory(prefix="kernelmagic-profile-") as tmp:
        root = Path(tmp)
        isolate(root)
        missing = setup_lmod(root)
        if missing:
            print(f"not measured: {missing}", file=sys.stderr)
            return 1
        stamps = root / "stamps"
        startup = root / "startup.py"
        startup.write_text(_STARTUP)
        os.environ["KM_PROFILE_STAMPS"] = str(stamps)
        os.environ["PYTHONSTARTUP"] = str(startup)
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--user", "--name", PLAIN],
            check=True,
            capture_output=True,
        )
        print(f"load before: {os.getloadavg()}", file=sys.stderr)
        profile(args.rounds, stamps, root, args.fresh_check, not args.no_iopub)
        print(f"load after: {os.getloadavg()}", file=sys.stderr)
    return 0


def profile(rounds: int, stamps: Path, root: Path, fresh_check: bool, read_iopub: bool) -> None:
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name=PLAIN)
    manager.start_kernel(stderr=subprocess.DEVNULL)
    client = manager.blocking_client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    versions = itertools.cycle(["geo/2.0", "geo/1.0"])

    def answered(*msg_ids: str) -> dict[str, float]:
        waiting, at = set(msg_ids), {}
        while waiting:
            reply = shell_reply(client, read_iopub)
            assert reply["content"]["status"] == "ok", reply["content"]
            parent = reply["parent_header"]["msg_id"]
            waiting.discard(parent)
            at[parent] = time.time()
        return at

    def read_stamps() -> dict[str, float]:
        found = {}
        for line in stamps.read_text().splitlines():
            what, when = json.loads(line)
            found.setdefault(what, when)
        stamps.unlink()
        return found

    phases: dict[str, list[float]] = {}
    totals: dict[str, list[float]] = {"activate": [], "restart": []}

    def add(name: str, seconds: float) -> None:
        phases.setdefault(name, []).append(seconds)

    def activate(record: bool) -> None:
        answered(client.execute(_WRAP, silent=True, store_history=False))
        if fresh_check:
            shutil.rmtree(root / "cache" / "kernelmagic" / "started", ignore_errors=True)
        stamps.unlink(missing_ok=True)
        line = f"%load_ext kernelmagic\n%kernel_activate --modules {next(versions)}"
        sent = time.time()
        first, second = client.execute(line), client.execute("import os; os.environ['GDAL_DATA']")
        at = answered(first, second)
        s = read_stamps()
        if not record:
            return
        add("(subscription seen before the wait)", float("iopub seen before the wait" in s))
        totals["activate"].append(at[second] - sent)
        chain = [
            ("cell sent -> %kernel_activate runs (load_ext, imports)", sent, s["magic start"]),
            ("the shell that runs module load", s["shell start"], s["shell end"]),
            ("the interpreter check's fingerprint", s["fingerprint start"], s["fingerprint end"]),
            ("the interpreter check (run when not kept)", s.get("check start"), s.get("check end")),
            ("%kernel_activate's end -> the cell's end", s["magic end"], s["cell done start"]),
            ("the queue drained to the marker", s["cell done start"], s["handoff start"]),
            ("closing the old kernel", s["close start"], s["close end"]),
            ("handoff start -> exec (less the close)", s["handoff start"], s["exec start"]),
            (
                "exec -> new process at IPython's startup",
                s["exec start"],
                s["new process at IPython startup"],
            ),
            (
                "startup -> the activating cell's reply at the client",
                s["new process at IPython startup"],
                at[first],
            ),
            ("the wait for the IOPub subscription", s["iopub wait start"], s["iopub wait end"]),
            ("that reply -> the next cell's reply", at[first], at[second]),
        ]
        for name, start, end in chain:
            if start is not None and end is not None:
                value = end - start
                if name.startswith("handoff start"):
                    value -= s["close end"] - s["close start"]
                add(name, value)
            else:
                add(name, 0.0)

    from jupyter_client.provisioning import local_provisioner

    launch, launched = local_provisioner.launch_kernel, []

    def stamped_launch(*args, **kwargs):
        launched.append(time.time())
        return launch(*args, **kwargs)

    local_provisioner.launch_kernel = stamped_launch

    def restart(record: bool) -> None:
        stamps.unlink(missing_ok=True)
        sent = time.time()
        manager.restart_kernel(now=False)
        at = answered(client.execute("import os; os.environ.get('GDAL_DATA')"))
        if not record:
            return
        (replied,) = at.values()
        started = read_stamps()["new process at IPython startup"]
        totals["restart"].append(replied - sent)
        add("restart: restart_kernel() until Popen (shutdown, wait)", launched[-1] - sent)
        add("restart: Popen -> new process at IPython's startup", started - launched[-1])
        add("restart: startup -> the cell's reply at the client", replied - started)

    try:
        activate(False)
        restart(False)
        for i in range(rounds):
            for measure in (activate, restart) if i % 2 == 0 else (restart, activate):
                measure(True)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    for name, values in phases.items():
        print(f"{statistics.median(values) * 1000:8.1f} ms  {name}")
    a, r = statistics.median(totals["activate"]), statistics.median(totals["restart"])
    print(f"{a * 1000:8.1f} ms  activate, total (median of {rounds})")
    print(f"{r * 1000:8.1f} ms  restart + cell, total; ratio {a / r:.2f}x")
    print(
        "ratios per round:",
        " ".join(
            f"{x / y:.2f}" for x, y in zip(totals["activate"], totals["restart"], strict=True)
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
