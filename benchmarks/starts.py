"""Kernel start latency side by side with the peers' ways of giving a kernel its environment,
the in-place restart of %kernel_activate, and doctor --launch.

Every start is timed to the ``kernel_info`` reply itself: jupyter_client's ``wait_for_ready``
adds ~0.2 s of IOPub quiet time that would hide the differences being measured.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from common import BIN, note, rounds, row, venv_with

PLAIN = "plain-ipykernel"
# The init script a login shell sources for Lmod (Debian, then Lmod's own install layout).
_LMOD_INITS = ("/etc/profile.d/lmod.sh", "/usr/share/lmod/lmod/init/bash")


def start_to_reply(name: str) -> float:
    """Seconds from starting the spec to its kernel_info reply (then shut down): what
    ``doctor --launch`` measures for each spec."""
    from kernelmagic.operations import launching

    launched = launching.launch(name)
    if not launched.started:
        raise RuntimeError(f"{name} did not start: {launched.reason}")
    return launched.seconds


# --- the module system -------------------------------------------------------------------


def setup_lmod(root: Path) -> str | None:
    """Write geo/1.0 and geo/2.0 (GDAL_DATA, LD_LIBRARY_PATH), put Lmod's variables into this
    process's environment as a login shell would, as a Jupyter server started from one has
    them. Returns why Lmod cannot be used, or None."""
    init = next((p for p in _LMOD_INITS if os.path.isfile(p)), None)
    if init is None:
        return "Lmod is not installed (apt-get install lmod)"
    modulefiles = root / "modulefiles"
    for version in ("1.0", "2.0"):
        prefix = root / "opt" / f"geo-{version}"
        (prefix / "lib").mkdir(parents=True)
        (prefix / "share").mkdir()
        (modulefiles / "geo").mkdir(parents=True, exist_ok=True)
        (modulefiles / "geo" / f"{version}.lua").write_text(
            f'setenv("GDAL_DATA", "{prefix / "share"}")\n'
            f'prepend_path("LD_LIBRARY_PATH", "{prefix / "lib"}")\n'
        )
    done = subprocess.run(
        ["bash", "-c", f". {init} >/dev/null 2>&1; env -0"],
        capture_output=True,
        env={"HOME": os.environ["HOME"], "PATH": os.environ["PATH"]},
    )
    for record in done.stdout.decode().split("\0"):
        name, _, value = record.partition("=")
        if name.startswith("LMOD") or name in ("MODULESHOME", "MODULEPATH_ROOT"):
            os.environ[name] = value
    os.environ["MODULEPATH"] = str(modulefiles)
    os.environ["KM_BENCH_LMOD_INIT"] = init
    return None


def install_helper_spec(kernels: Path) -> str:
    """The wrapper NERSC and JSC document: load modules, then exec the kernel."""
    spec_dir = kernels / "kernel-helper"
    spec_dir.mkdir(parents=True)
    helper = spec_dir / "kernel-helper.sh"
    helper.write_text(
        textwrap.dedent(f"""\
            #!/bin/bash
            . {os.environ["KM_BENCH_LMOD_INIT"]}
            module load geo/1.0
            exec "$@"
        """)
    )
    helper.chmod(0o755)
    argv = [str(helper), sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "kernel-helper.sh + Lmod", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return "kernel-helper"


def install_envkernel(root: Path) -> tuple[dict[str, str], str | None]:
    """envkernel's Lmod and venv kernels, from envkernel installed into a venv of the
    benchmark's own (it is no dependency of kernelmagic). Returns {label: spec}, or why not."""
    venv = venv_with(root / "envkernel-venv", "envkernel")
    if isinstance(venv, str):
        return {}, venv
    envkernel = str(venv / "bin" / "envkernel")
    python = f"--python={sys.executable}"
    specs = {}
    for label, args in (
        # the module brings no Python: run this one, as the other rows do
        ("envkernel lmod", ["lmod", "--user", "--name=envkernel-lmod", python, "geo/1.0"]),
        ("envkernel virtualenv", ["virtualenv", "--user", "--name=envkernel-venv", str(venv)]),
    ):
        done = subprocess.run([envkernel, *args], capture_output=True, text=True)
        if done.returncode != 0:
            return {}, f"envkernel {args[0]} failed: {done.stderr.strip()[-200:]}"
        specs[label] = args[2].removeprefix("--name=")
    return specs, None


def bench_starts(repeats: int, root: Path, kernels: Path, with_peers: bool) -> None:
    """One run, all specs interleaved: ratio of each to a plain ipykernel spec."""
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--user", "--name", PLAIN],
        check=True,
        capture_output=True,
    )
    kernelmagic = str(BIN / "kernelmagic")
    subprocess.run([kernelmagic, "install", "km-current"], check=True, capture_output=True)
    specs = {"kernelmagic --from-current": "km-current"}
    peers: dict[str, str] = {}
    lmod_missing = setup_lmod(root)
    if lmod_missing is None:
        subprocess.run(
            [kernelmagic, "install", "km-modules", "--modules", "geo/1.0"],
            check=True,
            capture_output=True,
        )
        specs["kernelmagic --modules (Lmod)"] = "km-modules"
        peers["kernel-helper.sh + Lmod (NERSC/JSC)"] = install_helper_spec(kernels)
    envkernel_missing = "not measured with --quick (installs envkernel into a venv)"
    if with_peers:
        found, envkernel_missing = install_envkernel(root)
        peers.update(found)
        if lmod_missing:
            peers.pop("envkernel lmod", None)
    for label, name in list(peers.items()):  # a peer that does not start here is said so
        try:
            start_to_reply(name)
        except RuntimeError as exc:
            note(f"start to kernel_info reply: {label}", str(exc)[:120])
            del peers[label]
    measured = rounds(
        {
            name: (lambda n=name: start_to_reply(n))
            for name in [PLAIN, *specs.values(), *peers.values()]
        },
        repeats,
    )
    plain = measured[PLAIN]
    for label, name in specs.items():
        ours = measured[name]
        row(f"start to kernel_info reply: {label} (baseline: plain ipykernel spec)",
            ours, plain, "<= 1.03x", ours <= 1.03 * plain)  # fmt: skip
    for label, name in peers.items():
        row(f"start to kernel_info reply: {label} (baseline: plain ipykernel spec)",
            measured[name], plain, "peer, report", None)  # fmt: skip
    if lmod_missing:
        note("start to kernel_info reply: kernelmagic --modules, kernel-helper.sh", lmod_missing)
    if envkernel_missing:
        note("start to kernel_info reply: envkernel lmod and virtualenv", envkernel_missing)
    note(
        "start to kernel_info reply: conda activation wrappers (kernda, nb_conda_kernels)",
        "conda cannot be installed on this machine; not imitated",
    )


# --- %kernel_activate and doctor --launch ------------------------------------------------


def shell_reply(client, read_iopub: bool = True, timeout: float = 120.0) -> dict:
    """The next shell reply; with ``read_iopub``, what IOPub sends meanwhile is read (and
    dropped) as a front end reads it: a ZMQ client that never touches its SUB socket does
    not subscribe again after a reconnection, which no Jupyter front end does."""
    if not read_iopub:
        return client.get_shell_msg(timeout=timeout)
    import zmq

    poller = zmq.Poller()
    shell, iopub = client.shell_channel.socket, client.iopub_channel.socket
    poller.register(shell, zmq.POLLIN)
    poller.register(iopub, zmq.POLLIN)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = dict(poller.poll(timeout=100))
        while iopub.poll(0):
            iopub.recv_multipart()
        if shell in ready:
            return client.get_shell_msg(timeout=0)
    raise TimeoutError(f"no shell reply within {timeout:g} s")


def bench_activate(repeats: int) -> None:
    """From sending %kernel_activate (and the next cell at once) to that next cell's reply,
    against a plain restart of the kernel followed by the same cell."""
    if "KM_BENCH_LMOD_INIT" not in os.environ:
        note("%kernel_activate --modules, in place", "Lmod is not installed")
        return
    from jupyter_client.manager import KernelManager

    # The sections before may have emptied the kernels dir (project_scan starts from none).
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--user", "--name", PLAIN],
        check=True,
        capture_output=True,
    )
    manager = KernelManager(kernel_name=PLAIN)
    manager.start_kernel(stderr=subprocess.DEVNULL)
    client = manager.blocking_client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    versions = itertools.cycle(["geo/2.0", "geo/1.0"])

    def answered(*msg_ids: str) -> None:
        waiting = set(msg_ids)
        while waiting:
            reply = shell_reply(client)
            assert reply["content"]["status"] == "ok", reply["content"]
            waiting.discard(reply["parent_header"]["msg_id"])

    def activate() -> None:
        line = f"%load_ext kernelmagic\n%kernel_activate --modules {next(versions)}"
        answered(client.execute(line), client.execute("import os; os.environ['GDAL_DATA']"))

    def restart() -> None:
        manager.restart_kernel(now=False)
        answered(client.execute("import os; os.environ.get('GDAL_DATA')"))

    try:
        measured = rounds({"activate": activate, "restart": restart}, repeats)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    row(
        "%kernel_activate --modules to the next cell's reply (baseline: restart, then the cell)",
        measured["activate"],
        measured["restart"],
        "report",
        None,
    )


def bench_launch(repeats: int, kernels: Path, count: int) -> None:
    """doctor --launch on ``count`` specs, in parallel, against starting them one at a time."""
    from kernelmagic.operations import launching

    names = []
    for i in range(count):
        spec_dir = kernels / f"launch-{i:02d}"
        spec_dir.mkdir(parents=True)
        shutil.copy(kernels / PLAIN / "kernel.json", spec_dir / "kernel.json")
        names.append(spec_dir.name)

    def parallel(interrupt: bool = False) -> None:
        report = launching.launch_all(names, interrupt=interrupt)
        healthy = report.healthy and all(launch.started for launch in report.launches)
        assert healthy, [(run.name, run.result, run.interrupt) for run in report.launches]

    def one_at_a_time() -> None:
        assert all(launching.launch(name, interrupt=False).started for name in names)

    measured = rounds(
        {
            "parallel": parallel,
            "sequential": one_at_a_time,
            "interrupt": lambda: parallel(interrupt=True),
        },
        repeats,
    )
    row(
        f"doctor --launch, {count} specs (baseline: started one at a time)",
        measured["parallel"],
        measured["sequential"],
        "report",
        None,
    )
    row(
        f"doctor --launch with its interrupt check, {count} specs (baseline: without it)",
        measured["interrupt"],
        measured["parallel"],
        "<= 1.3x",
        measured["interrupt"] <= 1.3 * measured["parallel"],
    )
