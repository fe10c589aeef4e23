"""%kernel_activate: an environment activated inside the running kernel, restarted in place.

Real kernels (started by nbclient and jupyter_client), a real Lmod modulefile, on both
version sets: ipykernel 6 queues shell messages in the main thread, ipykernel 7 in a thread
of its own, and the restart goes through each one's queue.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from pathlib import Path

import nbformat
import pytest
import zmq
from helpers import run_in_kernel
from IPython.core.error import UsageError
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

pytestmark = pytest.mark.usefixtures("restore_environ")


def _code_cell(source: str, *tags: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)})


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_a_notebook_activates_a_module_in_place(user_kernels, geo_module):
    """The issue's notebook, plus the refusals and --no-restart on the way, in one kernel."""
    probe = "import json, os; print(json.dumps([os.getpid(), os.environ.get('GDAL_DATA'), {}]))"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        _code_cell("import json, os\nx = 41\n%load_ext kernelmagic\n" + probe.format("None")),
        # an environment the interpreter cannot start in is refused; the kernel goes on
        _code_cell("%%kernel_activate\nexport PYTHONHOME=/nonexistent", "raises-exception"),
        _code_cell("%%kernel_activate --no-restart\nexport KM_SNIPPET_VAR=hello"),
        _code_cell(probe.format("[x, os.environ.get('KM_SNIPPET_VAR')]")),
        _code_cell("%kernel_activate --modules geo/1.0 --save geo-live"),
        _code_cell(probe.format("['x' in globals(), os.environ.get('KM_SNIPPET_VAR')]")),
        _code_cell("print(get_ipython().find_line_magic('kernel_activate') is None)"),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = [json.loads(_text(nb.cells[i]).splitlines()[-1]) for i in (0, 3, 5)]
    (pid, data_before, _), (pid_no_restart, _, kept), (pid_after, data_after, after) = outputs

    refused = [o.text for o in nb.cells[1].outputs if o.get("name") == "stderr"]
    assert len(refused) == 1 and refused[0].startswith("UsageError: ")  # one line, no traceback
    assert "cannot start a kernel in the new environment" in refused[0]
    first, *said = refused[0].rstrip("\n").split("\n")  # one line, then what Python said
    assert "cannot start a kernel" in first and "nothing was written" not in first
    assert any("No module named 'encodings'" in line for line in said)
    assert 0 < len(said) <= 12 and all(line.startswith("  ") for line in said)

    assert kept == [41, "hello"]  # --no-restart: same interpreter, variables kept
    assert "Updated os.environ of this kernel" in _text(nb.cells[2])
    assert pid_no_restart == pid

    said = _text(nb.cells[4])
    assert "+ GDAL_DATA=" in said and "variables in memory are lost" in said
    # Issue 35: the magics are gone in the new process, and the activation said so.
    assert _text(nb.cells[6]).strip() == "True"
    assert "run %load_ext kernelmagic again" in said
    assert data_before is None and data_after == str(geo_module / "share")
    assert pid_after == pid  # the same process, in place
    assert after == [False, "hello"]  # memory is gone; the environment it ran in carries on
    assert nb.cells[5].execution_count == nb.cells[4].execution_count + 1

    saved = json.loads((user_kernels / "geo-live" / "kernel.json").read_text())
    assert saved["env"]["GDAL_DATA"] == str(geo_module / "share")
    made = saved["metadata"]["kernelmagic"]
    assert (made["source"], made["modules"], made["like"]) == ("modules", "geo/1.0", "python3")
    assert run_in_kernel("geo-live")["env"]["GDAL_DATA"] == str(geo_module / "share")


def _replies_and_outputs(client, msg_ids: list[str], timeout: float = 90):
    """Collect each request's reply, stream output and idle status, in the order they come."""
    replies, idle, printed = {}, set(), {i: "" for i in msg_ids}
    deadline = time.monotonic() + timeout
    while (len(replies) < len(msg_ids) or len(idle) < len(msg_ids)) and (
        time.monotonic() < deadline
    ):
        try:
            msg = client.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            pass
        else:
            parent = msg["parent_header"].get("msg_id")
            if parent in printed and msg["msg_type"] == "stream":
                printed[parent] += msg["content"]["text"]
            if parent in printed and msg["content"].get("execution_state") == "idle":
                idle.add(parent)
        try:
            reply = client.get_shell_msg(timeout=0.01)
        except queue.Empty:
            continue
        replies[reply["parent_header"]["msg_id"]] = reply["content"]
    return replies, idle, printed


def _execute_without_identity(manager, client, code: str) -> dict:
    """Run ``code`` from a shell socket that, unlike jupyter_client's, sets no identity."""
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.linger = 0
    socket.connect(f"{manager.transport}://{manager.ip}:{manager.shell_port}")
    try:
        content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}}
        client.session.send(socket, "execute_request", {**content, "allow_stdin": False})
        assert socket.poll(30_000), "no reply"
        return client.session.recv(socket)[1]["content"]
    finally:
        socket.close()


def test_requests_queued_behind_the_activation_run_in_the_new_environment(geo_module):
    """Run All: three execute_requests sent at once; all three are answered, and the two
    behind the activation run in the restarted process with the module's variables."""
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        read = "import os; print(os.getpid(), os.environ.get('GDAL_DATA'))"
        first = []
        client.execute_interactive(
            "%load_ext kernelmagic\nimport os\n" + read,
            timeout=60,
            output_hook=lambda msg: first.append(msg["content"].get("text", "")),
        )
        pid = "".join(first).split()[0]
        refused = _execute_without_identity(manager, client, "%kernel_activate --modules geo/1.0")
        assert refused["status"] == "error" and "no identity of its own" in refused["evalue"]
        sent = [client.execute("%kernel_activate --modules geo/1.0"), client.execute(read)]
        sent.append(client.execute(read))
        replies, idle, printed = _replies_and_outputs(client, sent)
        assert [replies.get(i, {}).get("status") for i in sent] == ["ok", "ok", "ok"]
        assert idle == set(sent)
        expected = f"{pid} {geo_module / 'share'}\n"
        assert printed[sent[1]] == printed[sent[2]] == expected
        counts = [replies[i]["execution_count"] for i in sent]
        assert counts == [counts[0], counts[0] + 1, counts[0] + 2]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_a_kept_check_is_not_believed_once_what_it_read_changed(tmp_path, monkeypatch):
    """Issue 38: the interpreter check is kept for an environment it passed in; between two
    activations into the same environment, a module the interpreter imports at start is
    rewritten in place (its directory unchanged) so that it breaks the interpreter. The
    second activation checks again and is refused; the kernel answers, as it was."""
    import tempfile  # the restart's own code imports it, so the check does, from PYTHONPATH

    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # start kernels as Jupyter does
    pylib = tmp_path / "pylib"
    pylib.mkdir()
    shadow = pylib / "tempfile.py"
    shadow.write_bytes(Path(tempfile.__file__).read_bytes())  # works: the module itself
    probe = "import os, tempfile as t; print(os.getpid(), os.environ.get('PYTHONPATH'), t.__file__)"
    export = f"%%kernel_activate\nexport PYTHONPATH={pylib}"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        _code_cell("%load_ext kernelmagic\n" + probe),
        _code_cell(export),  # checked, kept, restarted
        _code_cell(probe),
        _code_cell("%load_ext kernelmagic"),
        _code_cell("%%kernel_activate\nunset PYTHONPATH"),  # back to where it started
        # In place: a kept check that looked only at the directory would not notice.
        _code_cell(
            f"with open({str(shadow)!r}, 'r+') as f:\n    f.truncate(0)\n"
            "    f.write(\"raise ImportError('broken in place')\\n\")"
        ),
        _code_cell("%load_ext kernelmagic"),
        _code_cell(export, "raises-exception"),  # the same environment as the first time
        _code_cell(probe),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    first, kept, last = (_text(nb.cells[i]).split() for i in (0, 2, 8))
    assert kept == [first[0], str(pylib), str(shadow)]  # restarted in place, shadowed
    refused = [o.text for o in nb.cells[7].outputs if o.get("name") == "stderr"]
    assert len(refused) == 1 and "cannot start a kernel in the new environment" in refused[0]
    assert "broken in place" in refused[0]
    assert last[:2] == [first[0], "None"]  # the same process answers, in its environment


# --- in this session (terminal IPython: no kernel to restart) ---------------------------


def test_outside_a_kernel_it_updates_this_session(ip, geo_module, monkeypatch, capsys):
    monkeypatch.delenv("GDAL_DATA", raising=False)
    ip.run_line_magic("kernel_activate", "--modules geo/1.0")
    said = capsys.readouterr().out
    assert os.environ["GDAL_DATA"] == str(geo_module / "share")
    assert os.environ["LD_LIBRARY_PATH"].split(os.pathsep)[0] == str(geo_module / "lib")
    assert "not a Jupyter kernel" in said and "nothing was restarted" in said
    assert "LD_LIBRARY_PATH" in said.splitlines()[-1]  # read only when the interpreter starts


def test_secrets_set_by_a_snippet_are_left_out_and_masked(ip, monkeypatch, capsys):
    monkeypatch.delenv("KM_SERVICE_TOKEN", raising=False)
    monkeypatch.delenv("KM_PLAIN", raising=False)
    ip.run_cell_magic(
        "kernel_activate", "", "export KM_SERVICE_TOKEN=abc123secret\nexport KM_PLAIN=1\n"
    )
    said = capsys.readouterr().out
    assert "KM_SERVICE_TOKEN" not in os.environ and os.environ["KM_PLAIN"] == "1"
    assert "abc123secret" not in said and "Skipped secret-like: KM_SERVICE_TOKEN" in said
    ip.run_cell_magic(
        "kernel_activate", "--include KM_SERVICE_TOKEN", "export KM_SERVICE_TOKEN=abc123secret"
    )
    assert os.environ["KM_SERVICE_TOKEN"] == "abc123secret"
    assert "abc123secret" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "cell", "message"),
    [
        ("", None, "name what to activate"),
        ("--modules geo/1.0", "export A=1", "choose one source"),
        ("--modules nosuch/9.9", None, "nosuch"),
    ],
)
def test_bad_requests_are_one_line_and_change_nothing(ip, geo_module, line, cell, message):
    before = dict(os.environ)
    with pytest.raises(UsageError) as raised:
        if cell is None:
            ip.run_line_magic("kernel_activate", line)
        else:
            ip.run_cell_magic("kernel_activate", line, cell)
    assert type(raised.value) is UsageError
    first, *said = str(raised.value).split("\n")  # one line; a tool's lines below it
    assert message in first or any(message in line for line in said)
    assert len(said) <= 12 and all(line.startswith("  ") for line in said)
    assert dict(os.environ) == before


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--save 'bad name' --no-restart", "invalid kernel name 'bad name'"),
        ("--replace --no-restart", "--replace goes with --save NAME"),
    ],
)
def test_a_bad_save_is_refused_before_the_snippet_runs(ip, user_kernels, tmp_path, line, message):
    ran = tmp_path / "ran"
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("kernel_activate", line, f"touch {ran}\nexport KM_X=1\n")
    assert not ran.exists() and "KM_X" not in os.environ
    assert not list(user_kernels.glob("[!.]*"))


def test_the_spec_of_a_kernel_is_found_with_the_arguments_its_launcher_appended(user_kernels):
    """jupyter_client < 8.3 records no spec name; nbclient appends
    --HistoryManager.hist_file=:memory: to argv, which must not hide the spec (--save
    copies it)."""
    from helpers import write_spec

    from kernelmagic.domain.this_kernel import specs_matching_process
    from kernelmagic.storage.discovery import list_specs

    base = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    write_spec(user_kernels, "plain", {"argv": base, "display_name": "P", "language": "python"})
    longer = {"argv": [*base, "--x=1"], "display_name": "L", "language": "python"}
    write_spec(user_kernels, "longer", longer)
    started = [sys.executable, "-m", "ipykernel_launcher", "-f", "/tmp/k.json"]
    extra = "--HistoryManager.hist_file=:memory:"
    assert "plain" in specs_matching_process([*started, extra], {}, list_specs())
    assert specs_matching_process([*started, "--x=1"], {}, list_specs()) == [
        "longer"
    ]  # the closer one
    assert "longer" not in specs_matching_process(started, {}, list_specs())


def test_an_iopub_subscriber_is_seen_in_the_tcp_table():
    """The restarted kernel publishes the cell's idle status only once a client is connected
    to its IOPub port again (Linux: its sockets in /proc/self/fd and their TCP state); a PUB
    socket would drop it before."""
    import socket

    from kernelmagic.restart import quiesce

    if not quiesce.can_see_connections():
        pytest.skip("no /proc/self/fd or TCP_INFO here: the restart waits a fixed 0.3 s instead")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert not quiesce.connected_to(port)  # listening is not connected
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = server.accept()
            with accepted:
                assert quiesce.connected_to(port)


def test_the_activation_says_where_a_request_at_the_close_can_be_lost():
    """Half-closing the shell socket's connections needs TCP and Linux's /proc: elsewhere the
    report says, before the restart, that a request sent at the close can be lost."""
    from types import SimpleNamespace

    from kernelmagic.restart import inplace, quiesce

    said = inplace.unguarded_close(SimpleNamespace(transport="ipc"))
    assert said == "the kernel uses the ipc transport, not tcp"
    over_tcp = inplace.unguarded_close(SimpleNamespace(transport="tcp"))
    assert (over_tcp is None) == quiesce.can_see_connections()
