"""kernelmagic.server.KernelSpecManager in a real jupyter_server, against the stock one.

JupyterLab's launcher shows what ``/api/kernelspecs`` returns; the two servers must return
the same document, and a kernel started through the REST API must come from the same spec.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import end_process, write_spec

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
            process.terminate()  # all at once: each then ends as the others do
        for process, _, _ in started:
            end_process(process, 20)


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


@contextlib.contextmanager
def running_voila(folder: Path):
    """A real Voila (its own app, as `voila DIR` runs it) serving ``folder``, from there:
    Voila reads its config from its working directory first."""
    port = _free_port()
    log = folder.parent / f"voila-{port}.log"
    command = [sys.executable, "-m", "voila", str(folder), "--no-browser", f"--port={port}",
               "--Voila.ip=127.0.0.1"]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/", timeout=10).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("Voila did not start:\n" + log.read_text()[-3000:])
                time.sleep(0.2)
        yield url
    finally:
        end_process(process, 20)


@pytest.mark.parametrize(
    "config_file", ["jupyter_config.json", "jupyter_server_config.json", "voila.json"]
)
def test_each_clients_own_config_decides_whether_it_lists_a_spec(
    config_file, user_kernels, tmp_path, capsys
):
    """``allowed_kernelspecs`` leaves a spec out where the client's own config file sets it:
    the server reads jupyter_config then jupyter_server_config, Voila's app voila.json only.
    The doctor read jupyter_config alone for every client: a real Voila ran a spec it
    called left out, and JupyterLab's listing left out one it called listed."""
    pytest.importorskip("voila", reason="voila is not installed (the test extra has it)")
    nbformat = pytest.importorskip("nbformat")
    from kernelmagic.commands import notebook
    from kernelmagic.frontends.cli import main

    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    for name in ("plain", "hidden"):
        spec = {"argv": argv, "display_name": name, "language": "python", "env": {"KM": name}}
        write_spec(user_kernels, name, spec)
    config = Path(os.environ["JUPYTER_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    (config / config_file).write_text('{"KernelSpecManager": {"allowed_kernelspecs": ["plain"]}}')
    root = tmp_path / "root"
    root.mkdir()
    kernelspec = {"name": "hidden", "display_name": "hidden", "language": "python"}
    document = nbformat.v4.new_notebook(metadata={"kernelspec": kernelspec})
    document.cells.append(nbformat.v4.new_code_cell("import os; print('KM=' + os.environ['KM'])"))
    nbformat.write(document, root / "n.ipynb")

    with running_servers(root, ()) as (url,), running_voila(root) as voila:
        listed = "hidden" in _request(url + "/api/kernelspecs")["kernelspecs"]
        kernel = _request(url + "/api/kernels", "POST", {"name": "hidden"})
        _request(f"{url}/api/kernels/{kernel['id']}", "DELETE")
        with urllib.request.urlopen(voila + "/voila/render/n.ipynb", timeout=120) as page:
            ran = re.search(rb"KM=(\w+)", page.read())
    assert kernel["name"] == "hidden"  # started by its name, whatever the config
    voila_ran_it = ran is not None and ran.group(1) == b"hidden"

    capsys.readouterr()
    main(["doctor", "--json", "hidden"])
    found = json.loads(capsys.readouterr().out)["specs"]["hidden"]["clients"]
    assert found["jupyterlab"]["works"] == listed, found["jupyterlab"]
    assert found["jupyter-server"]["works"], found["jupyter-server"]
    assert found["voila"]["works"] == voila_ran_it, found["voila"]
    (report,) = notebook.run(notebook.Request((str(root / "n.ipynb"),)))
    said = {verdict.client: verdict for verdict in report.clients}
    assert (said["voila"].spec == "hidden") == voila_ran_it, said["voila"]  # else its fallback
    assert (said["jupyterlab"].spec == "hidden") == listed, said["jupyterlab"]
