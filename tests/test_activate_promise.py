"""%kernel_activate keeps its promise (issue 22): no request lost at any pace, never a deaf
kernel when something inside ipykernel fails, interrupts that never kill it, and the module
world of a login shell.

Real kernels through jupyter_client and nbclient, a real Lmod modulefile, on both ipykernel
generations (6 queues shell requests in the main thread, 7 in a thread of its own). Faults
are injected into the running kernel by patching, from a cell, the very object each step
touches."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import time
from pathlib import Path

import ipykernel
import nbformat
import pytest
from helpers import write_spec
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.connect import write_connection_file
from jupyter_client.manager import start_new_kernel
from jupyter_client.session import Session
from nbclient import NotebookClient

pytestmark = pytest.mark.usefixtures("restore_environ")
READ = "import os; print(os.getpid(), os.environ.get('GDAL_DATA'))"
IPYKERNEL_7 = ipykernel.version_info[0] >= 7
# ipykernel 7.0 to 7.3 send each shell reply straight on the shell socket, behind the back of
# the stream that reads it; that send consumes the wake-up of a request arriving at the same
# moment, which then waits unread, and every request behind it (7.4 sends through the stream).
# A kernel of those versions without kernelmagic, sent a request every 10 ms while busy for a
# second, stopped answering in 3 runs of 3 (164, 280 and 161 of about 270 lost).
STRANDS_REQUESTS = pytest.mark.xfail(
    (7, 0) <= tuple(ipykernel.version_info[:2]) < (7, 4),
    reason="ipykernel 7.0-7.3 strand shell requests that arrive while it replies, restart or not",
    strict=False,
)


@pytest.fixture
def kernel(geo_module):
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=60)
    client.execute_interactive("%load_ext kernelmagic", timeout=60)
    yield manager, client
    client.stop_channels()
    manager.shutdown_kernel(now=True)


class Answers:
    """What a client reads back, reading all along as a real client (a browser through
    jupyter_server, nbclient) does: each request's reply, printed text and idle status."""

    def __init__(self, client):
        self.client, self.sent = client, []
        self.replies, self.printed, self.order, self.idle = {}, {}, [], set()
        self.after_idle = set()  # requests with output after an idle status (nbclient drops it)

    def send(self, code: str, **options) -> str:
        msg_id = self.client.execute(code, **options)
        self.sent.append(msg_id)
        self.printed[msg_id] = ""
        return msg_id

    def read(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                msg = self.client.get_iopub_msg(timeout=0.005)
                parent = msg["parent_header"].get("msg_id")
                if parent in self.printed and msg["msg_type"] == "stream":
                    self.printed[parent] += msg["content"]["text"]
                    if parent in self.idle:
                        self.after_idle.add(parent)
                if parent in self.printed and msg["content"].get("execution_state") == "idle":
                    self.idle.add(parent)
            with contextlib.suppress(queue.Empty):
                reply = self.client.get_shell_msg(timeout=0.005)
                self.replies[reply["parent_header"]["msg_id"]] = reply["content"]
                self.order.append(reply["parent_header"]["msg_id"])

    def send_paced(self, code: str, period: float, seconds: float) -> None:
        """``code`` every ``period`` for ``seconds``, reading all along."""
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            self.read(period)
            self.send(code)

    def lost(self) -> list[int]:
        """The indexes of the requests sent that got no reply."""
        return [i for i, m in enumerate(self.sent) if m not in self.replies]

    def wait(self, timeout: float = 60) -> Answers:
        deadline = time.monotonic() + timeout
        while (len(self.replies) < len(self.sent) or len(self.idle) < len(self.sent)) and (
            time.monotonic() < deadline
        ):
            self.read(0.05)
        return self


def _answers(client, codes):
    answers = Answers(client)
    for code in codes:
        answers.send(code)
    return answers.wait()


@STRANDS_REQUESTS  # at any pace: CI's ipykernel 7.0 leg lost every request from the 8th
# on at 150 ms once (0 of 12 runs here, 0 in the CI runs before), the stall the control test
# shows without kernelmagic; the strict runs are ipykernel 6 and 7.4+
@pytest.mark.parametrize("period", [0.01, 0.15])
def test_no_request_is_lost_whatever_the_pace(kernel, geo_module, period):
    """A request every 10 ms (a script) or 150 ms (Shift-Enter) from 0 to 3 s after the
    activating one: every request gets one reply and its idle status, in the order sent, and
    those after the restart run in the new environment."""
    _, client = kernel
    answers = Answers(client)
    answers.send("%kernel_activate --modules geo/1.0")
    answers.send_paced(READ, period, 3.0)
    answers.wait(timeout=120)
    sent = answers.sent
    lost = answers.lost()
    assert lost == [], f"{len(lost)} of {len(sent)} lost, at {lost[:10]}"
    assert answers.order == sent and answers.idle == set(sent) and answers.after_idle == set()
    assert all(r["status"] == "ok" for r in answers.replies.values())
    assert answers.printed[sent[-1]].split()[1] == str(geo_module / "share")


@STRANDS_REQUESTS
def test_a_kernel_without_kernelmagic_answers_the_same_pace():
    """The control for the two tests around it: the same requests, every 10 ms for 3 s after
    a cell that keeps the kernel busy for a second, to a kernel that never loaded
    kernelmagic. Where this fails, ipykernel loses requests on its own."""
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        answers = Answers(client)
        answers.send("import time; time.sleep(1.0)")
        answers.send_paced(READ, 0.01, 3.0)
        answers.wait(timeout=30)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    lost = answers.lost()
    assert lost == [], f"{len(lost)} of {len(answers.sent)} lost, at {lost[:10]}"


@pytest.mark.skipif(not IPYKERNEL_7, reason="ipykernel 6 reads shell requests in the main thread")
@STRANDS_REQUESTS
def test_requests_read_in_the_turn_the_reading_stops(kernel, geo_module):
    """ipykernel 7 reads shell requests in a thread of its own and makes a task of each. Keep
    that thread busy for a second while the activation asks it to stop reading and requests
    pile up: the first requests it then reads are read in the same loop turn as the stop, and
    must still go to the old process before the marker (one such request in about 5,000 was
    lost at a 10 ms pace)."""
    _, client = kernel
    answers = Answers(client)
    busy = "get_ipython().kernel.shell_channel_thread.io_loop.add_callback(time.sleep, 1.0)"
    answers.send(f"import time; {busy}\n%kernel_activate --modules geo/1.0")
    answers.send_paced(READ, 0.02, 2.0)
    answers.wait(timeout=30)
    lost = answers.lost()
    assert lost == [], f"{len(lost)} of {len(answers.sent)} lost, at {lost[:10]}"
    assert answers.order == answers.sent and answers.idle == set(answers.sent)
    assert answers.printed[answers.sent[-1]].split()[1] == str(geo_module / "share")


def test_children_started_before_the_restart_are_reaped(kernel, geo_module):
    """A process the kernel started before the restart and that ends after it: the new
    process waits for it, so it does not stay a zombie until the kernel exits."""
    _, client = kernel
    start = "import subprocess; print(subprocess.Popen(['sleep', '0.5']).pid)"
    answers = _answers(client, [start, "%kernel_activate --modules geo/1.0"])
    child = int(answers.printed[answers.sent[0]])
    answers = _answers(client, ["import time; time.sleep(2.5)"])
    assert answers.replies[answers.sent[0]]["status"] == "ok"
    assert not os.path.exists(f"/proc/{child}"), Path(f"/proc/{child}/stat").read_text()


@pytest.mark.skipif(
    ipykernel.version_info[:2] < (7, 2), reason="ipykernel's IOPub is an XPUB socket since 7.2"
)
def test_the_iopub_subscription_is_seen_where_ipykernel_tells(kernel):
    """The restarted process publishes the activating cell's idle status once a client has
    subscribed to IOPub again: ipykernel 7.2 and later tell it when (the first subscription
    to a topic comes through an XPUB socket)."""
    manager, client = kernel
    watch = (
        "import threading\n"
        "from kernelmagic.restart import adapters\n"
        "kernel = get_ipython().kernel\n"
        "subscribed = threading.Event()\n"
        "print(adapters.adapter_for(kernel, kernel.parent).watch_subscriptions(subscribed))"
    )
    assert _answers(client, [watch]).printed.popitem()[1] == "True\n"
    client.iopub_channel.stop()  # no subscriber left: the next one comes through
    time.sleep(0.5)
    again = manager.blocking_client()
    again.start_channels()
    try:
        answers = _answers(again, ["print(subscribed.wait(10))"])
        assert answers.printed[answers.sent[0]] == "True\n"
    finally:
        again.stop_channels()


@pytest.mark.skipif(
    ipykernel.version_info[:2] < (7, 2), reason="ipykernel greets IOPub subscribers since 7.2"
)
def test_only_a_subscribed_connection_counts_as_one(kernel):
    """The restarted process skips the wait for a subscription that came before it could
    watch, when a greeting it sends on IOPub is seen leaving on every IOPub connection. A
    client connected but not subscribed (its socket never read) gets nothing, so it holds
    the wait; once it subscribes, the greeting reaches it too."""
    import zmq

    from kernelmagic.restart import quiesce

    if not quiesce.can_see_connections():
        pytest.skip("no /proc to find IOPub's connections in: the restart waits 0.3 s instead")
    manager, client = kernel
    greet = (
        "import threading, time\n"
        "from kernelmagic.restart import adapters, resume\n"
        "kernel = get_ipython().kernel\n"
        "probe = object.__new__(resume._Resumption)\n"
        "probe.kernel, probe.subscribed = kernel, threading.Event()\n"
        "probe.adapter = adapters.adapter_for(kernel, kernel.parent)\n"
        "probe.adapter.watch_subscriptions(probe.subscribed)\n"
        "reached = probe._greet()\n"
        "time.sleep(0.5)\n"
        "print(reached is not None and reached())"
    )
    assert _answers(client, [greet]).printed.popitem()[1] == "True\n"  # the client reads

    silent = zmq.Context.instance().socket(zmq.SUB)  # connected, never subscribed
    try:
        silent.connect(f"tcp://{manager.ip}:{manager.iopub_port}")
        silent.poll(500)
        assert _answers(client, [greet]).printed.popitem()[1] == "False\n"
        silent.setsockopt(zmq.SUBSCRIBE, b"")
        silent.poll(500)
        assert _answers(client, [greet]).printed.popitem()[1] == "True\n"
        assert silent.poll(0)  # what reached it: the greeting and the cells' messages
    finally:
        silent.close(linger=0)


@pytest.mark.skipif(
    ipykernel.version_info[:2] < (7, 2),
    reason="before 7.2 IOPub is a PUB socket: nothing tells the restarted process when a "
    "client subscribes again, and what it publishes before then is lost (docs/activate.md)",
)
@pytest.mark.parametrize("first", ["replies", "nothing"])
def test_a_client_that_reads_iopub_late_gets_every_output(kernel, geo_module, first):
    """A script sends the activating cell and five more, then reads every reply first, or
    does something else for 3 s, and reads the output after: none of the five cells' output
    came (the restarted process published it while the client's socket, unread, had not
    subscribed again, and IOPub dropped it)."""
    _, client = kernel
    sent = [client.execute("%kernel_activate --modules geo/1.0")]
    sent += [client.execute(f"{READ}; print({i})") for i in range(5)]
    if first == "replies":
        replies = [client.get_shell_msg(timeout=60) for _ in sent]
        assert [r["parent_header"]["msg_id"] for r in replies] == sent
    time.sleep(3)  # past the restarted process's wait for its clients (2 s)
    printed = dict.fromkeys(sent, "")
    idle = []
    with contextlib.suppress(queue.Empty):
        while len(idle) < len(sent):
            msg = client.get_iopub_msg(timeout=30)
            parent = msg["parent_header"].get("msg_id")
            if parent in printed and msg["msg_type"] == "stream":
                printed[parent] += msg["content"]["text"]
            if parent in printed and msg["content"].get("execution_state") == "idle":
                idle.append(parent)
    assert idle == sent
    pids = {printed[m].split()[0] for m in sent[1:]}
    assert len(pids) == 1 and all(
        printed[m].split()[1:] == [str(geo_module / "share"), str(i)]
        for i, m in enumerate(sent[1:])
    ), printed


@pytest.mark.skipif(
    ipykernel.version_info[:2] < (7, 2), reason="IOPub keeps what it publishes only since 7.2"
)
def test_a_reading_client_is_not_held_back_by_one_that_does_not_read(kernel, geo_module):
    """What IOPub keeps for a client that reads late goes out as soon as any client is seen
    subscribed: a client connected to IOPub that never reads must not hold back, for a
    minute, the output of one that reads all along."""
    import zmq

    manager, client = kernel
    silent = zmq.Context.instance().socket(zmq.SUB)  # connected, never subscribed
    try:
        silent.connect(f"tcp://{manager.ip}:{manager.iopub_port}")
        answers = Answers(client)
        answers.send("%kernel_activate --modules geo/1.0")
        for _ in range(3):
            answers.send(READ)
        began = time.monotonic()
        answers.wait(timeout=30)
        took = time.monotonic() - began
    finally:
        silent.close(linger=0)
    assert answers.lost() == [] and answers.idle == set(answers.sent), took
    assert answers.printed[answers.sent[-1]].split()[1] == str(geo_module / "share")


@pytest.mark.skipif(
    ipykernel.version_info[:2] < (7, 2), reason="IOPub keeps what it publishes only since 7.2"
)
def test_every_iopub_client_gets_what_was_kept_not_the_first_one_back(kernel, geo_module):
    """Walk Q: jupyter_server holds two IOPub connections per kernel (its activity watcher,
    the browser's). What the restarted process kept went to the first one back: through a
    real server, one activation in six lost the next cells' output and idle statuses, and the
    activating cell stayed busy in JupyterLab. Here a watcher reads all along and is back
    first; the client checked reads a little later (a client subscribes when it reads): it
    got none of what the restarted process published."""
    from jupyter_client.blocking import BlockingKernelClient

    manager, client = kernel
    watcher = BlockingKernelClient()
    watcher.load_connection_info(manager.get_connection_info())
    watcher.start_channels()

    def watch(seconds: float) -> None:  # it reads all along
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                watcher.get_iopub_msg(timeout=0.005)

    try:
        answers = Answers(client)
        answers.send("%kernel_activate --modules geo/1.0")
        for _ in range(3):
            watch(0.02)
            answers.send(READ)
        # The checked client reads from 1.2 s on: after the restarted process is up (~0.8 s
        # here), within the 2 s it waits for its clients.
        watch(1.2)
        answers.wait(timeout=30)
    finally:
        watcher.stop_channels()
    assert answers.lost() == [] and answers.idle == set(answers.sent), answers.idle
    assert all(answers.printed[m].split()[1] == str(geo_module / "share") for m in answers.sent[1:])


def test_a_notebook_at_a_browser_pace(geo_module):
    """Activate, then Shift-Enter through 8 cells, 150 ms apart, in nbclient."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%load_ext kernelmagic\nimport os\npid = os.getpid()")
    ]
    notebook.cells.append(nbformat.v4.new_code_cell("%kernel_activate --modules geo/1.0"))
    notebook.cells += [nbformat.v4.new_code_cell(READ) for _ in range(8)]
    client = NotebookClient(notebook, kernel_name="python3", timeout=60, startup_timeout=60)
    client.on_cell_executed = lambda **_: time.sleep(0.15)
    client.execute()
    printed = [cell.outputs[0]["text"].split() for cell in notebook.cells[2:]]
    assert all(p[1] == str(geo_module / "share") for p in printed)
    assert len({p[0] for p in printed}) == 1  # one process: restarted in place


# Each injection makes one step of the restart fail, from inside the kernel.
_BOOM = (
    "def _boom(*args, **kwargs):\n    raise RuntimeError('injected')\nk = get_ipython().kernel\n"
)
FAULTS = {
    "the handoff file": "os.memfd_create = _boom",
    "the marker": (
        "real = k.session.serialize\n"
        "k.session.serialize = lambda msg, *a, **kw: _boom() if msg['msg_type'] == "
        "'kernelmagic_handoff_marker' else real(msg, *a, **kw)"
    ),
    "stopping the shell stream": "k.shell_stream.stop_on_recv = _boom",
    "the last requests": "import kernelmagic.restart.quiesce as q\nq.take_all = _boom",
}
if not IPYKERNEL_7:
    FAULTS["ipykernel 6's queue"] = "k.schedule_dispatch = _boom"


@pytest.mark.parametrize("touch_point", sorted(FAULTS))
def test_a_failure_at_each_step_leaves_a_kernel_that_answers(kernel, touch_point):
    """Run All, with one step of the restart failing: the activating cell says why in one
    line, and it and the two cells behind it are answered by the same, unchanged process."""
    _, client = kernel
    client.execute_interactive("import os\n" + _BOOM + FAULTS[touch_point], timeout=30)
    answers = _answers(client, ["%kernel_activate --modules geo/1.0", READ, READ])
    answers.read(0.5)  # output that may follow its idle status
    sent, printed = answers.sent, answers.printed
    assert answers.order == sent, f"answered {len(answers.replies)} of 3"
    assert answers.after_idle == set()  # a client stops reading a cell's output at its idle
    assert (
        "Not restarted: RuntimeError: injected; this kernel keeps its environment."
        in (printed[sent[0]])
    )
    pid = printed[sent[1]].split()[0]
    assert printed[sent[1]] == printed[sent[2]] == f"{pid} None\n"
    again = client.execute_interactive(READ, timeout=30)
    assert again["content"]["status"] == "ok"


def test_interrupts_during_the_restart_never_kill_the_kernel(kernel, geo_module):
    manager, client = kernel
    answers = Answers(client)
    answers.send("%kernel_activate --modules geo/1.0")
    began = time.monotonic()
    while time.monotonic() - began < 2.0:  # an interrupt every 50 ms through the restart
        manager.interrupt_kernel()
        answers.read(0.05)
    answers.send(READ)
    answers.wait()
    assert manager.is_alive() and set(answers.replies) == set(answers.sent)
    after = client.execute_interactive(READ, timeout=30)
    assert after["content"]["status"] == "ok"


@pytest.mark.skipif(not IPYKERNEL_7, reason="subshells came with ipykernel 7")
def test_an_activation_in_a_subshell_is_refused(kernel):
    _, client = kernel
    created = client.session.msg("create_subshell_request", {})
    client.control_channel.send(created)
    subshell = client.get_control_msg(timeout=30)["content"]["subshell_id"]
    request = client.session.msg(
        "execute_request",
        {"code": "%kernel_activate --modules geo/1.0", "silent": False, "store_history": True,
         "user_expressions": {}, "allow_stdin": False},
    )  # fmt: skip
    request["header"]["subshell_id"] = subshell
    client.shell_channel.send(request)
    answers = Answers(client)
    answers.sent.append(request["header"]["msg_id"])
    answers.printed[request["header"]["msg_id"]] = ""
    reply = answers.wait().replies[request["header"]["msg_id"]]
    assert reply["status"] == "error" and "subshell" in reply["evalue"]


def test_an_untested_ipykernel_and_a_silent_request_are_refused(kernel):
    _, client = kernel
    client.execute_interactive("import ipykernel\nipykernel.version_info = (99, 0, 0)", timeout=30)
    reply = client.execute_interactive("%kernel_activate --modules geo/1.0", timeout=60)
    assert reply["content"]["status"] == "error"
    assert "is not one the in-place restart is tested with" in reply["content"]["evalue"]
    assert "use --no-restart" in reply["content"]["evalue"]
    client.execute_interactive("ipykernel.version_info = ipykernel.version_info", timeout=30)
    answers = Answers(client)
    silent = answers.send("%kernel_activate --modules geo/1.0", silent=True)
    answers.read(5)
    assert answers.replies[silent]["status"] == "error"


def test_a_client_that_never_comes_back(kernel, geo_module):
    """The activating client goes away for good; another client is answered (the restarted
    kernel waits at most 2 s for the first to reconnect)."""
    manager, other = kernel
    # A client of its own (its own session, so its own socket identity), as another
    # browser tab or notebook server would be.
    leaving = BlockingKernelClient(session=Session(key=manager.session.key))
    leaving.load_connection_info(manager.get_connection_info())
    leaving.start_channels()
    leaving.wait_for_ready(timeout=30)
    leaving.execute("%kernel_activate --modules geo/1.0")
    time.sleep(0.2)
    leaving.stop_channels()
    later = other.execute_interactive(READ, timeout=60)
    assert later["content"]["status"] == "ok"


def test_bookkeeping_only_and_save_names(kernel, geo_module, user_kernels):
    """The same module again changes only Lmod's records: no restart. --save names the
    spec as kernelmagic names Python specs; the report says what Jupyter's restart does."""
    _, client = kernel
    first = []
    client.execute_interactive(
        "%kernel_activate --modules geo/1.0 --save gdal-live",
        timeout=60,
        output_hook=lambda m: first.append(m["content"].get("text", "")),
    )
    spec = json.loads((user_kernels / "gdal-live" / "kernel.json").read_text())
    assert spec["display_name"] == "Python {}.{} (gdal-live)".format(*sys.version_info[:2])
    printed = []
    client.execute_interactive(
        "%load_ext kernelmagic\nx = 1\n%kernel_activate --modules geo/1.0",
        timeout=60,
        output_hook=lambda m: printed.append(m["content"].get("text", "")),
    )
    said = "".join(printed)
    assert "nothing to restart for" in said or "(nothing changed)" in said
    kept = client.execute_interactive("print(x)", timeout=30)
    assert kept["content"]["status"] == "ok"  # the variable survived: no restart
    plain = []
    client.execute_interactive(
        "%%kernel_activate\nexport K_X=1",
        timeout=60,
        output_hook=lambda m: plain.append(m["content"].get("text", "")),
    )
    assert "Kernel > Restart" in "".join(plain)


@pytest.mark.parametrize("launched_with", [None, "/site/lib"])
def test_save_keeps_what_the_kernels_spec_adds_to_a_path(
    geo_module, user_kernels, monkeypatch, launched_with
):
    """Walk Q: in a kernel whose spec prepends its own dir to a PATH-like variable, `--save`
    wrote the module's addition alone (`GEO/lib:${LD_LIBRARY_PATH}`): the new spec lost the
    spec's own dir. Walk S: so it did still where the launcher's value held that dir already
    (a hub's prologue loading the same module): the kernel had it twice, Lmod kept it once."""
    if launched_with is None:
        monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    else:
        monkeypatch.setenv("LD_LIBRARY_PATH", launched_with)
    write_spec(
        user_kernels,
        "site",
        {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Site",
            "language": "python",
            "env": {"LD_LIBRARY_PATH": "/site/lib:${LD_LIBRARY_PATH}", "SITE": "1"},
        },
    )
    manager, client = start_new_kernel(kernel_name="site", startup_timeout=60)
    try:
        client.execute_interactive("%load_ext kernelmagic", timeout=60)
        reply = client.execute_interactive(
            "%kernel_activate --modules geo/1.0 --save site-live --no-restart", timeout=60
        )
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    env = json.loads((user_kernels / "site-live" / "kernel.json").read_text())["env"]
    assert env["LD_LIBRARY_PATH"] == f"{geo_module / 'lib'}:/site/lib:${{LD_LIBRARY_PATH}}"
    assert env["SITE"] == "1" and env["GDAL_DATA"] == str(geo_module / "share")


def test_a_relative_connection_file_and_a_changed_directory(geo_module, tmp_path):
    """A kernel started on a relative -f path that then changed directory comes back on the
    same connection file (made absolute for the exec)."""
    import subprocess

    run = tmp_path / "run"
    run.mkdir()
    write_connection_file(str(run / "k.json"), ip="127.0.0.1")
    process = subprocess.Popen(
        [sys.executable, "-m", "ipykernel_launcher", "-f", "k.json"], cwd=run,
        stderr=subprocess.DEVNULL, env={**os.environ, "JPY_PARENT_PID": str(os.getpid())},
    )  # fmt: skip
    client = BlockingKernelClient()
    client.load_connection_file(str(run / "k.json"))
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "zmq.py").write_text("raise SystemExit('imported from the kernel cwd')\n")
        client.execute_interactive(
            f"%load_ext kernelmagic\nimport os\nos.chdir({str(elsewhere)!r})"
        )
        answers = _answers(client, ["%kernel_activate --modules geo/1.0", READ])
        assert [answers.replies[m]["status"] for m in answers.sent] == ["ok", "ok"]
        assert answers.printed[answers.sent[1]].split()[1] == str(geo_module / "share")
        where = []
        client.execute_interactive(
            "print(os.getcwd())", output_hook=lambda m: where.append(m["content"].get("text", ""))
        )
        assert "".join(where).strip() == str(elsewhere)
    finally:
        client.stop_channels()
        process.kill()
        process.wait()


# --- in this session: the module world of a login shell, values shown safely -------------


def test_module_use_in_the_login_profile_is_found(
    ip, lmod_available, tmp_path, monkeypatch, capsys
):
    """`module use` in ~/.bash_profile (the usual cluster setup): a kernel started by
    JupyterHub never read it; activation finds the module through the login shell's
    MODULEPATH, and a module that is nowhere names what was searched."""
    from helpers import write_gdal_module

    root = tmp_path / "site-modules"
    geo = write_gdal_module(root, "sitegeo/1.0", tmp_path / "opt" / "sitegeo")
    home = tmp_path / "home"
    (home / ".bash_profile").write_text(f"module use {root}\n")
    monkeypatch.setenv("MODULEPATH", str(tmp_path / "nothing-here"))
    ip.run_line_magic("kernel_activate", "--modules sitegeo/1.0 --no-restart")
    assert os.environ["GDAL_DATA"] == str(geo / "share")
    from IPython.core.error import UsageError

    with pytest.raises(UsageError) as raised:
        ip.run_line_magic("kernel_activate", "--modules nowhere/9.9 --no-restart")
    said = str(raised.value)
    assert "MODULEPATH searched" in said and str(root) in said.split("MODULEPATH searched")[1]
    # A `module use` only an interactive shell runs (~/.bashrc): the cell can say it.
    assert said.rstrip().endswith(
        "in a snippet (%%kernel_install NAME or %%kernel_activate, or --snippet-file)"
    )
    capsys.readouterr()
    rc_modules = tmp_path / "bashrc-modules"
    rc_geo = write_gdal_module(rc_modules, "rcgeo/1.0", tmp_path / "opt" / "rcgeo")
    monkeypatch.setenv("MODULEPATH", f"{tmp_path / 'nothing-here'}/")
    snippet = f"module use {rc_modules}\nmodule load rcgeo/1.0\n"
    ip.run_cell_magic("kernel_activate", "--no-restart", snippet)
    assert os.environ["GDAL_DATA"] == str(rc_geo / "share")
    # Lmod writes a dir without its trailing slash: the same entry, not one added, one dropped
    changed = next(line for line in capsys.readouterr().out.splitlines() if "MODULEPATH" in line)
    assert changed.strip() == f"~ MODULEPATH: + {rc_modules}", changed


def test_empty_path_entries_and_terminal_escapes(ip, monkeypatch, capsys):
    ip.run_cell_magic(
        "kernel_activate", "--no-restart",
        "export LD_LIBRARY_PATH=/opt/lib:\nexport SHOWN=\"$(printf '\\033[31mred')\"\n",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert os.environ["LD_LIBRARY_PATH"] == "/opt/lib"  # no empty entry: not the cwd
    assert "\x1b" not in out and "\\x1b[31mred" in out


@pytest.mark.skipif(not IPYKERNEL_7, reason="ipykernel 6 stops reading in the cell's own thread")
@STRANDS_REQUESTS  # 7.0 stalled in 3 runs of 3 here, from the 39th to the 51st request on;
# without kernelmagic, after a 0.3 s cell and at this pace, in 1 of 3
def test_a_failure_in_the_reading_thread_keeps_the_order_of_requests(kernel):
    """ipykernel 7 stops reading shell requests in a thread of its own, after the cell. Make
    that stop fail there a moment later while a request comes every 20 ms: the requests the
    main thread set aside meanwhile for the new process are answered by this one, before
    any that came after them (CI once saw them answered after the next one)."""
    _, client = kernel
    slow_failure = (
        "import time\n"
        "def _slow_boom(*args, **kwargs):\n    time.sleep(0.3)\n    _boom()\n"
        "k.shell_stream.stop_on_recv = _slow_boom"
    )
    client.execute_interactive("import os\n" + _BOOM + slow_failure, timeout=30)
    answers = Answers(client)
    answers.send("%kernel_activate --modules geo/1.0")
    answers.send_paced(READ, 0.02, 1.5)
    answers.wait(timeout=60)
    sent = answers.sent
    assert answers.lost() == [] and answers.order == sent and answers.idle == set(sent)
    assert answers.after_idle == set()
    assert "Not restarted: RuntimeError: injected" in answers.printed[sent[0]]
    assert {answers.printed[m].split()[1] for m in sent[1:]} == {"None"}
