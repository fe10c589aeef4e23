"""kernelmagic.server.KernelSpecManager in a real jupyter_server, against the stock one.

JupyterLab's launcher shows what ``/api/kernelspecs`` returns; the two servers must return
the same document, and a kernel started through the REST API must come from the same spec.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import write_spec

jupyter_server = pytest.importorskip(
    "jupyter_server", reason="jupyter_server is not installed (pip install '.[test]')"
)

TOKEN = "kernelmagic-test-token"
MANAGER = "kernelmagic.server.KernelSpecManager"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, method: str = "GET", body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"token {TOKEN}")
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else None


@contextlib.contextmanager
def running_servers(root: Path, *option_sets: tuple[str, ...]):
    """One jupyter_server on loopback per set of options, started together; yields their
    base URLs, stops them after."""
    started = []
    try:
        for options in option_sets:
            port = _free_port()
            log = root / f"server-{port}.log"
            command = [
                sys.executable,
                "-m",
                "jupyter_server",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                "--ServerApp.open_browser=False",
                "--ServerApp.allow_root=True",  # CI runs as root
                f"--ServerApp.token={TOKEN}",
                f"--ServerApp.root_dir={root}",
                *options,
            ]
            with open(log, "wb") as out:
                process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
            started.append((process, f"http://127.0.0.1:{port}", log))
        deadline = time.monotonic() + 120  # a loaded machine starts a server slowly
        for process, url, log in started:
            while True:
                try:
                    _request(url + "/api/status")
                    break
                except (urllib.error.URLError, ConnectionError):
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail("jupyter_server did not start:\n" + log.read_text()[-3000:])
                    time.sleep(0.2)
        yield [url for _, url, _ in started]
    finally:
        for process, _, _ in started:
            process.terminate()
        for process, _, _ in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def served_specs(user_kernels, system_kernels, tmp_path):
    """Specs of the kinds a launcher shows differently: logos, kernel.js, a malformed one
    (left out), a name in two dirs, an unknown provisioner (left out)."""
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    geo = write_spec(
        user_kernels, "geo", {"argv": argv, "display_name": "Geo", "language": "python"}
    )
    (geo / "logo-64x64.png").write_bytes(b"\x89PNG\r\n")
    (geo / "kernel.js").write_text("// nothing")
    write_spec(system_kernels, "geo", {"argv": argv, "display_name": "shadowed"})
    write_spec(user_kernels, "broken", raw='{"argv": [')
    write_spec(
        user_kernels,
        "remote",
        {
            "argv": argv,
            "display_name": "Remote",
            "metadata": {"kernel_provisioner": {"provisioner_name": "nope-provisioner"}},
        },
    )
    write_spec(
        system_kernels, "r", {"argv": ["/bin/true", "{connection_file}"], "display_name": "R"}
    )
    root = tmp_path / "root"
    root.mkdir()
    return root


def test_the_server_lists_and_starts_the_same_specs_with_it(served_specs):
    option = f"--ServerApp.kernel_spec_manager_class={MANAGER}"
    with running_servers(served_specs, (), (option,)) as (stock_url, url):
        stock = _request(stock_url + "/api/kernelspecs")
        stock_geo = _request(stock_url + "/api/kernelspecs/geo")
        ours = _request(url + "/api/kernelspecs")
        assert ours == stock
        assert set(ours["kernelspecs"]) == {"geo", "python3", "r"}
        assert ours["kernelspecs"]["geo"]["spec"]["display_name"] == "Geo"
        assert _request(url + "/api/kernelspecs/geo") == stock_geo
        kernel = _request(url + "/api/kernels", "POST", {"name": "geo"})
        try:
            assert kernel["name"] == "geo"
            assert _request(f"{url}/api/kernels/{kernel['id']}")["name"] == "geo"
        finally:
            _request(f"{url}/api/kernels/{kernel['id']}", "DELETE")
