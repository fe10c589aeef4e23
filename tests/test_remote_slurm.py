"""`remote --engine slurm`: kernels as Slurm jobs, on the private Slurm cluster.

The clients (jupyter_client, nbclient) run as the cluster's unprivileged user, as a Jupyter
server on a login node would: each test starts a small client program as that user and reads
what it printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import nbformat
import pytest
from helpers import write_spec

from kernelmagic.frontends.cli import main
from kernelmagic.operations import doctor, remote_batch

pytest_plugins = ("slurm_cluster",)

CLIENT_TIMEOUT = 150
ORPHAN_LIMIT = 120  # seconds: the bound for a job whose client died


@pytest.fixture(scope="module")
def slurm_setup(slurm_cluster, other_users_python):
    """(cluster, the user's python, a kernels prefix the user can read, the user's HOME)."""
    if slurm_cluster.user is None:
        pytest.skip("no unprivileged user could be made for the jobs (useradd failed)")
    work = slurm_cluster.work / "remote-slurm"
    work.mkdir(mode=0o755)
    python = other_users_python
    home = slurm_cluster.home_for(slurm_cluster.user, work / "home")
    return slurm_cluster, python, work / "prefix", home


def make_slurm_spec(setup, user_kernels, name, *options):
    """SRC (a plain ipykernel spec with a captured variable) and NEW made from it with
    `kernelmagic remote SRC NEW --engine slurm OPTIONS`, under a prefix the user can read."""
    _cluster, python, prefix, _home = setup
    write_spec(
        user_kernels,
        "geo",
        {
            "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Geo",
            "language": "python",
            "env": {"CAPTURED_BY_KERNELMAGIC": "from-geo"},
        },
    )
    argv = ["remote", "geo", name, "--engine", "slurm", *options, "--replace"]
    argv += ["--prefix", str(prefix)]
    assert main(argv) == 0
    for path in [prefix, *prefix.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return prefix / "share" / "jupyter"


def run_client(setup, jupyter_path, program, *, wait=True, log=False, args=()):
    """Run ``program`` (Python) as the unprivileged user with the cluster's client settings."""
    cluster, python, _prefix, home = setup
    env = cluster.client_env(
        {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "JUPYTER_PATH": str(jupyter_path),
            "JUPYTER_DATA_DIR": str(home / "data"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "IPYTHONDIR": str(home / "ipython"),
            "JUPYTER_PLATFORM_DIRS": "1",
        }
    )
    account = pwd.getpwnam(cluster.user)
    argv = [str(python), "-c", textwrap.dedent(program), *args]
    options = dict(
        env=env,
        cwd=home,
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not wait:
        return subprocess.Popen(argv, **options)
    done = subprocess.run(argv, timeout=CLIENT_TIMEOUT, **options)
    assert done.returncode == 0, "\n".join(
        line for line in done.stderr.splitlines() if not line.startswith((" ", "[IPKernelApp]"))
    )[-3000:]
    said = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if log:
        return *said, "\n".join(x for x in done.stdout.splitlines() if x.startswith("LOG "))
    return said


def jobs_of_kernels(cluster) -> list[str]:
    listed = subprocess.run(
        ["squeue", "--noheader", "--format=%i %j %T"],
        env=cluster.client_env(),
        capture_output=True,
        text=True,
    )
    return [line for line in listed.stdout.splitlines() if " kernel-" in line]


def wait_until_no_kernel_jobs(cluster, seconds) -> float:
    started = time.monotonic()
    while jobs_of_kernels(cluster):
        if time.monotonic() - started > seconds:
            pytest.fail(f"jobs left after {seconds} s: {jobs_of_kernels(cluster)}")
        time.sleep(0.2)
    return time.monotonic() - started


JUPYTER_CLIENT_LIFE = """
    import json, os, time
    import jupyter_client

    def say(**what):
        print(json.dumps(what), flush=True)

    km = jupyter_client.KernelManager(kernel_name="geo-slurm")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)

    def run(code):
        out = []
        reply = kc.execute_interactive(
            code, timeout=30, output_hook=lambda m: out.append(m["content"].get("text", ""))
        )
        return reply["content"]["status"], "".join(out).strip()

    say(step="first", result=run(
        "import os; print(os.environ['SLURM_JOB_ID'], os.environ['CAPTURED_BY_KERNELMAGIC'], "
        "os.environ['USER'] if 'USER' in os.environ else os.getuid())"
    ), job=km.provisioner.job)
    say(step="which", result=run(
        "get_ipython().run_line_magic('load_ext', 'kernelmagic'); "
        "get_ipython().run_line_magic('kernel_env', '')"
    ))
    kc.execute("print('sleeping', flush=True); import time; time.sleep(60)")
    while True:  # interrupt once the cell runs (an idle ipykernel ignores SIGINT)
        message = kc.get_iopub_msg(timeout=30)
        if message["msg_type"] == "stream" and "sleeping" in message["content"]["text"]:
            break
    started = time.monotonic()
    km.interrupt_kernel()
    while True:
        message = kc.get_iopub_msg(timeout=30)
        if message["msg_type"] == "error":
            say(step="interrupt", error=message["content"]["ename"],
                seconds=time.monotonic() - started)
            break
    km.restart_kernel()
    kc.wait_for_ready(timeout=60)
    say(step="restart", result=run("import os; print(os.environ['SLURM_JOB_ID'])"),
        job=km.provisioner.job)
    kc.stop_channels()
    km.shutdown_kernel()
    say(step="shutdown", alive=km.is_alive())
"""


def test_slurm_spec_lives_and_ends_with_jupyter_client(slurm_setup, user_kernels):
    """Also (walk Q): the magics in the kernel tell the spec it was started from, though
    another spec has the same argv and env (`remote` copies them): the kernel's connection
    file, which the launcher wrote, did not name it."""
    cluster = slurm_setup[0]
    jupyter_path = make_slurm_spec(slurm_setup, user_kernels, "geo-slurm", "--time", "10")
    kernels = jupyter_path / "kernels"
    twin = json.loads((kernels / "geo-slurm" / "kernel.json").read_text())
    del twin["metadata"]["kernel_provisioner"]
    (kernels / "geo-twin").mkdir(mode=0o755)
    (kernels / "geo-twin" / "kernel.json").write_text(json.dumps(twin))
    (kernels / "geo-twin" / "kernel.json").chmod(0o644)
    said = run_client(slurm_setup, jupyter_path, JUPYTER_CLIENT_LIFE)
    first, which, interrupted, restarted, shut = said
    job_id, captured, _user = first["result"][1].split()
    assert first["result"][0] == "ok" and job_id == first["job"]
    assert captured == "from-geo"
    assert which["result"][0] == "ok", which
    assert which["result"][1].startswith("Kernel spec 'geo-slurm' ("), which
    assert interrupted["error"] == "KeyboardInterrupt" and interrupted["seconds"] < 10
    assert restarted["result"] == ["ok", restarted["job"]] and restarted["job"] != job_id
    assert shut["alive"] is False
    wait_until_no_kernel_jobs(cluster, 15)


NBCLIENT_RUN = """
    import json
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "geo-slurm", "display_name": "Geo (slurm)",
                                 "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(
        "import os; print(os.environ['SLURM_JOB_ID'], os.environ['CAPTURED_BY_KERNELMAGIC'])"))
    NotebookClient(nb, timeout=60, startup_timeout=120).execute()
    print(json.dumps({"out": nb.cells[0].outputs[0]["text"]}))
"""


def test_slurm_spec_runs_a_notebook_with_nbclient(slurm_setup, user_kernels):
    cluster = slurm_setup[0]
    jupyter_path = make_slurm_spec(slurm_setup, user_kernels, "geo-slurm")
    (result,) = run_client(slurm_setup, jupyter_path, NBCLIENT_RUN)
    job_id, captured = result["out"].split()
    assert job_id.isdigit() and captured == "from-geo"
    wait_until_no_kernel_jobs(cluster, 15)


FROM_A_SERVERS_JOB = r"""
    import json, os, subprocess, sys

    with open("kernel_client.py", "w") as file:
        file.write("\n".join([
            "import json, jupyter_client",
            "km = jupyter_client.KernelManager(kernel_name='geo-slurm')",
            "km.start_kernel()",
            "kc = km.client()",
            "kc.start_channels()",
            "kc.wait_for_ready(timeout=120)",
            "seen = []",
            "names = ('SLURM_JOB_ID', 'MKL_NUM_THREADS', 'SCRATCH', 'CAPTURED_BY_KERNELMAGIC')",
            "code = f'import json, os; print(json.dumps({{k: os.getenv(k) for k in {names}}}))'",
            "hook = lambda m: seen.append(m['content'].get('text', ''))",
            "kc.execute_interactive(code, timeout=60, output_hook=hook)",
            "print('KERNEL ' + ''.join(seen).strip(), flush=True)",
            "kc.stop_channels()",
            "km.shutdown_kernel()",
        ]))
    # A Jupyter server's job as batchspawner starts it, with the user's prologue setting
    # the job's scratch dir and a thread count (the cluster's TaskProlog sets others).
    script = (
        "#!/bin/bash\n"
        "export SCRATCH=/scratch/slurm-$SLURM_JOB_ID MKL_NUM_THREADS=7\n"
        "echo SERVER $SLURM_JOB_ID\n"
        f"exec {sys.executable} {os.path.abspath('kernel_client.py')}\n"
    )
    done = subprocess.run(
        ["sbatch", "--wait", "--parsable", "--cpus-per-task=1", "--output=server.out"],
        input=script, capture_output=True, text=True, timeout=140,
    )
    said = open("server.out").read()
    server = [l.split()[1] for l in said.splitlines() if l.startswith("SERVER ")]
    kernel = [json.loads(l[7:]) for l in said.splitlines() if l.startswith("KERNEL ")]
    print(json.dumps({"status": done.returncode, "server": server, "kernel": kernel,
                      "said": said[-2000:] + done.stderr[-500:]}))
"""


def test_a_kernel_started_from_a_servers_job_takes_none_of_its_own(slurm_setup, user_kernels):
    """Walk Q: from a Jupyter server in a batchspawner job, the kernel's own job (4 CPUs)
    ran with the server job's thread count and wrote into its scratch dir
    (/tmp/slurm-SERVERJOB), which goes when the server's job ends. (This cluster's
    TaskProlog sets TMPDIR and OMP_NUM_THREADS for every job, the user's prologue others.)"""
    cluster = slurm_setup[0]
    jupyter_path = make_slurm_spec(slurm_setup, user_kernels, "geo-slurm")
    (result,) = run_client(slurm_setup, jupyter_path, FROM_A_SERVERS_JOB)
    assert result["status"] == 0 and result["server"] and result["kernel"], result["said"]
    (server,), (kernel,) = result["server"], result["kernel"]
    assert kernel["SLURM_JOB_ID"] not in (None, server)
    assert kernel["CAPTURED_BY_KERNELMAGIC"] == "from-geo"
    assert kernel["MKL_NUM_THREADS"] is None and kernel["SCRATCH"] is None
    wait_until_no_kernel_jobs(cluster, 15)


START_AND_HOLD = """
    import json, time
    import jupyter_client

    km = jupyter_client.KernelManager(kernel_name="geo-slurm")
    km.start_kernel()
    print(json.dumps({"job": km.provisioner.job}), flush=True)
    time.sleep(600)
"""


def test_the_job_ends_when_its_client_is_killed(slurm_setup, user_kernels):
    """No shutdown at all: the client dies by SIGKILL, and the job ends by itself."""
    cluster = slurm_setup[0]
    jupyter_path = make_slurm_spec(slurm_setup, user_kernels, "geo-slurm")
    client = run_client(slurm_setup, jupyter_path, START_AND_HOLD, wait=False)
    try:
        line = client.stdout.readline()
        assert line, client.stderr.read()[-3000:]
        job = json.loads(line)["job"]
        assert any(entry.split()[0] == job for entry in jobs_of_kernels(cluster))
    finally:
        client.send_signal(signal.SIGKILL)
        client.communicate()
    took = wait_until_no_kernel_jobs(cluster, ORPHAN_LIMIT)
    print(f"the job of a killed client was gone after {took:.1f} s")


START_AND_WAIT_IN_THE_QUEUE = """
    import jupyter_client

    jupyter_client.KernelManager(kernel_name="geo-queued").start_kernel()
"""


def _submitters_of(user: str) -> list[str]:
    listed = subprocess.run(["pgrep", "-u", user, "-a", "srun"], capture_output=True, text=True)
    return listed.stdout.splitlines()


def test_a_queued_job_is_cancelled_when_its_client_is_killed(slurm_setup, user_kernels):
    """The client dies by SIGKILL while its job waits in the queue (a partition that is
    down): the srun stayed, adopted by init, and the job queued for good, to start later
    for nobody (launch_timeout needs a live client to act)."""
    cluster = slurm_setup[0]
    jupyter_path = make_slurm_spec(
        slurm_setup, user_kernels, "geo-queued", "--partition", cluster.closed_partition
    )
    client = run_client(slurm_setup, jupyter_path, START_AND_WAIT_IN_THE_QUEUE, wait=False)
    try:
        waited = time.monotonic()
        while not jobs_of_kernels(cluster):
            assert client.poll() is None, client.communicate()[1][-3000:]
            assert time.monotonic() - waited < 60, "the job never showed in the queue"
            time.sleep(0.2)
    finally:
        client.send_signal(signal.SIGKILL)
        client.communicate()
    took = wait_until_no_kernel_jobs(cluster, 30)
    print(f"the queued job of a killed client was gone after {took:.1f} s")
    deadline = time.monotonic() + 10
    while _submitters_of(cluster.user) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _submitters_of(cluster.user) == []


START_ONLY = """
    import json, logging, sys
    import jupyter_client

    # What a Jupyter server's log shows while the job waits in the queue.
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="LOG %(message)s")

    km = jupyter_client.KernelManager(kernel_name="geo-closed")
    try:
        km.start_kernel()
    except Exception as exc:
        print(json.dumps({"error": [kind.__name__ for kind in type(exc).__mro__],
                          "message": str(exc)}))
    else:
        print(json.dumps({"error": None}))
"""


def test_a_queue_that_cannot_run_the_job_times_out_naming_it(slurm_setup, user_kernels):
    cluster = slurm_setup[0]
    jupyter_path = make_slurm_spec(
        slurm_setup,
        user_kernels,
        "geo-closed",
        "--partition",
        cluster.closed_partition,
        "--provisioner-config",
        "launch_timeout=6",  # the scheduler sets the reason at its next cycle
    )
    result, logged = run_client(slurm_setup, jupyter_path, START_ONLY, log=True)
    # A TimeoutError to jupyter_client's callers, and words a Jupyter server passes on.
    assert {"TimeoutError", "HTTPError"} <= set(result["error"]), result
    assert "is PENDING (PartitionDown)" in logged and "waits: job " in logged
    message = result["message"]
    assert "did not start within 6 s: job " in message
    assert "is PENDING (PartitionDown)" in message and "cancelled" in message
    wait_until_no_kernel_jobs(cluster, 15)


START_BESIDE_A_NAMESAKE = """
    import json, subprocess, sys
    import jupyter_client

    closed = sys.argv[1]
    decoy = subprocess.run(
        ["sbatch", "--parsable", "--job-name=kernel-fixed-id", f"--partition={closed}",
         "--output=/dev/null",
         "--wrap", "sleep 1"], capture_output=True, text=True, check=True,
    ).stdout.strip().split(";")[0]
    km = jupyter_client.KernelManager(kernel_name="geo-closed", kernel_id="fixed-id")
    try:
        km.start_kernel()
    except Exception as exc:
        message = str(exc)
    queued = subprocess.run(["squeue", "--noheader", "--me", "--format=%i %j"],
                            capture_output=True, text=True).stdout.split()
    subprocess.run(["scancel", decoy])
    print(json.dumps({"message": message, "decoy": decoy, "queued": queued}))
"""


def test_a_timeout_cancels_its_own_job_not_another_of_its_name(slurm_setup, user_kernels):
    """Walk L: the provisioner found its queued job with `squeue --name=kernel-ID` (any
    user's, COMPLETING ones too) and cancelled the first it listed: a restart's old job, or
    another job of that name, and said "it was cancelled" while its own job stayed queued,
    to start later for nobody."""
    cluster = slurm_setup[0]
    jupyter_path = make_slurm_spec(
        slurm_setup, user_kernels, "geo-closed", "--partition", cluster.closed_partition,
        "--provisioner-config", "launch_timeout=6",
    )  # fmt: skip
    (said,) = run_client(slurm_setup, jupyter_path, START_BESIDE_A_NAMESAKE,
                         args=(cluster.closed_partition,))  # fmt: skip
    assert "it was cancelled" in said["message"], said
    assert said["queued"] == [said["decoy"], "kernel-fixed-id"], said  # its own: gone
    wait_until_no_kernel_jobs(cluster, 15)


INTERRUPTED_AND_LIVING_ON = """
    import json, signal, subprocess, time
    import jupyter_client

    def interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, interrupt)
    km = jupyter_client.KernelManager(kernel_name="geo-closed")
    signal.alarm(4)  # Ctrl-C while the job waits in the queue, caught: the script lives on
    try:
        km.start_kernel()
    except KeyboardInterrupt:
        pass
    interrupted = time.monotonic()

    def queued():
        listed = subprocess.run(["squeue", "--noheader", "--me", "--format=%j"],
                                capture_output=True, text=True).stdout.split()
        return [name for name in listed if name.startswith("kernel-")]

    assert queued(), "the job was not queued when the start was interrupted"
    while queued() and time.monotonic() - interrupted < 90:
        time.sleep(0.5)
    print(json.dumps({"left": queued(), "after": time.monotonic() - interrupted}))
"""


def test_a_start_interrupted_in_a_client_that_lives_on_leaves_no_job(slurm_setup, user_kernels):
    """Walk L: a script that catches Ctrl-C around a queued start lives on, no longer waiting:
    launch_timeout was never applied, and the job stayed queued as long as the process
    lived, to start for nobody. The guard now cancels a job not started in time."""
    cluster = slurm_setup[0]
    jupyter_path = make_slurm_spec(
        slurm_setup, user_kernels, "geo-closed", "--partition", cluster.closed_partition,
        "--provisioner-config", "launch_timeout=6",
    )  # fmt: skip
    (said,) = run_client(slurm_setup, jupyter_path, INTERRUPTED_AND_LIVING_ON)
    assert said["left"] == [], said
    print(f"the job of an interrupted start was gone {said['after']:.1f} s after the Ctrl-C")


STARTED_WHILE_THE_QUEUE_IS_SLOW = """
    import json, os, sys
    import jupyter_client

    os.environ["PATH"] = sys.argv[1] + os.pathsep + os.environ["PATH"]  # a slow squeue first
    km = jupyter_client.KernelManager(kernel_name="geo-slowq")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive("x = 1 + 1", timeout=30)
        print(json.dumps({"status": reply["content"]["status"]}))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
"""


def test_a_kernel_started_while_squeue_was_slow_is_not_cancelled(slurm_setup, user_kernels):
    """Walk P: the provisioner noticed the start only when a squeue it waited for returned,
    and the guard (which cancels a job not started launch_timeout + 10 s after its
    submission) killed the running kernel meanwhile; start_kernel still said it started.
    A squeue is waited for 5 s at most now, and a start seen meanwhile ends the wait."""
    cluster = slurm_setup[0]
    shims = cluster.work / "slow-squeue"
    shims.mkdir(mode=0o755, exist_ok=True)
    (shims / "squeue").write_text(f'#!/bin/sh\nsleep 45\nexec {shutil.which("squeue")} "$@"\n')
    (shims / "squeue").chmod(0o755)
    jupyter_path = make_slurm_spec(
        slurm_setup, user_kernels, "geo-slowq", "--provisioner-config", "launch_timeout=30"
    )
    # The node's two CPUs taken for 8 s: the kernel's job waits, and starts while the
    # provisioner waits for a squeue (45 s), past the guard's 40 s.
    subprocess.run(
        ["sbatch", "--cpus-per-task=2", f"--partition={cluster.partition}", "--output=/dev/null",
         "--wrap", "sleep 8"],
        env=cluster.client_env(), check=True, capture_output=True,
    )  # fmt: skip
    (said,) = run_client(slurm_setup, jupyter_path, STARTED_WHILE_THE_QUEUE_IS_SLOW,
                         args=(str(shims),))  # fmt: skip
    assert said == {"status": "ok"}
    wait_until_no_kernel_jobs(cluster, 15)


def test_slurm_options_become_the_provisioners_config(user_kernels, capsys):
    write_spec(user_kernels, "geo")
    argv = [
        "remote", "geo", "geo-gpu", "--engine", "slurm", "--partition", "gpu", "--time",
        "1-04:00:00", "--cpus", "4", "--mem", "16G", "--gres", "gpu:1", "--account", "proj",
        "--qos", "short", "--nodes", "1", "--sbatch-option=--constraint=a100",
        "--sbatch-option=--exclusive",
    ]  # fmt: skip
    assert main(argv) == 0
    spec = json.loads((user_kernels / "geo-gpu" / "kernel.json").read_text())
    stanza = spec["metadata"]["kernel_provisioner"]
    assert stanza["provisioner_name"] == "kernelmagic-slurm-provisioner"
    assert stanza["config"] == {
        "partition": "gpu",
        "time": "1-04:00:00",
        "cpus": 4,
        "mem": "16G",
        "gres": "gpu:1",
        "account": "proj",
        "qos": "short",
        "sbatch_options": ["--constraint=a100", "--exclusive"],
    }
    assert spec["argv"][-2:] == ["-f", "{connection_file}"]
    assert spec["metadata"]["kernelmagic"]["engine"] == "slurm"
    assert "srun, squeue, scancel and sinfo on PATH" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "why"),
    [
        (["--time", "4h"], "is not a Slurm time limit"),
        (["--nodes", "2"], "--nodes must be 1"),
        (["--mem", "lots"], "is not a Slurm memory size"),  # walk H: written, never started
        (["--mem", "8GB"], "is not a Slurm memory size"),
        (["--provisioner-config", 'mem="lots"'], "is not a Slurm memory size"),
        (["--allocation", "123", "--partition", "x"], "drop --partition"),
        (["--allocation", "abc"], "is not a job id"),
        (["--sbatch-option", "exclusive"], "is not an option"),
        (["--host", "h1"], "takes no --host"),
        # Options the provisioner sets or reads itself: --jobid made a shutdown cancel the
        # user's whole allocation, --job-name left a queued job it could no longer find.
        (["--sbatch-option=--jobid=123", "--sbatch-option=--overlap"], "use --allocation"),
        (["--sbatch-option=--job-name=mine"], "kernelmagic names the job"),
        (["--sbatch-option=-Jmine"], "kernelmagic names the job"),
        (["--sbatch-option=--output=/tmp/x"], "the job's stdio carries the connection"),
        (["--sbatch-option=--label"], "the job's stdio carries the connection"),
        # srun takes any unambiguous start of a long option's name: --jobi is --jobid.
        (["--sbatch-option=--jobi=123"], "use --allocation"),
        (["--sbatch-option=--job-n=mine"], "kernelmagic names the job"),
        (["--sbatch-option=--outp=/dev/null"], "the job's stdio carries the connection"),
        # Walk L: accepted, and the kernel started with no env at all (no HOME either).
        (["--sbatch-option=--export=NONE"], "the kernel gets the spec's env through the job"),
        (["--sbatch-option=--exp=PATH"], "the kernel gets the spec's env through the job"),
        (["--provisioner-config", "launch_timeout=0"], "launch_timeout must be a number"),
        # What --provisioner-config gives is checked as the flags are, and as the
        # provisioner's traits take it: these were written, and every start failed.
        (["--provisioner-config", "partition=1"], "expected a unicode string, not the int 1"),
        (["--provisioner-config", 'time="4h"'], "is not a Slurm time limit"),
        (["--provisioner-config", "nodes=2"], "--nodes must be 1"),
    ],
)
def test_slurm_refuses_what_slurm_would_refuse(user_kernels, capsys, options, why):
    write_spec(user_kernels, "geo")
    assert main(["remote", "geo", "geo-slurm", "--engine", "slurm", *options]) == 2
    assert why in capsys.readouterr().err
    assert not (user_kernels / "geo-slurm").exists()


def test_a_patch_to_the_slurm_provisioner_is_checked_as_remote_checks_it(user_kernels, capsys):
    write_spec(user_kernels, "geo")
    written = (user_kernels / "geo" / "kernel.json").read_bytes()
    for config in ("cpus=null", 'time="4h"'):
        argv = ["patch", "geo", "--provisioner", "kernelmagic-slurm-provisioner"]
        assert main([*argv, "--provisioner-config", config]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert (user_kernels / "geo" / "kernel.json").read_bytes() == written


def test_a_patch_drops_a_job_option_back_to_the_schedulers_default(user_kernels, capsys):
    """Walk S: the doctor's fix for too much memory is a patch of `mem`, and `mem=""` (the
    provisioner's default: the scheduler's own) was refused while `gres=""` was taken; so
    were `time=""` and `cpus=0`. They are taken, and srun is given none of them."""
    write_spec(user_kernels, "geo")
    options = ["--mem", "1G", "--time", "10", "--cpus", "2", "--gres", "gpu:1"]
    assert main(["remote", "geo", "geo-slurm", "--engine", "slurm", *options]) == 0
    patch = ["patch", "geo-slurm", "--provisioner", "kernelmagic-slurm-provisioner"]
    for config in ('mem=""', 'time=""', "cpus=0", 'gres=""'):
        assert main([*patch, "--provisioner-config", config]) == 0, capsys.readouterr().err
    spec = json.loads((user_kernels / "geo-slurm" / "kernel.json").read_text())
    config = spec["metadata"]["kernel_provisioner"]["config"]
    assert (config["mem"], config["time"], config["cpus"], config["gres"]) == ("", "", 0, "")
    argv = remote_slurm_scheduler().submit_argv(config, "kernel-1", ["python"])
    assert not [word for word in argv if word.startswith(("--mem", "--time", "--cpus", "--gres"))]
    assert main([*patch, "--provisioner-config", "cpus=-1"]) == 2


def test_job_options_need_the_slurm_engine(user_kernels, capsys):
    write_spec(user_kernels, "geo")
    assert main(["remote", "geo", "x", "--engine", "ssh", "--host", "h", "--gres", "gpu:1"]) == 2
    assert "--gres: only with --engine slurm" in capsys.readouterr().err


def test_the_submit_command_carries_the_options_and_not_the_callers_job():
    slurm = remote_slurm_scheduler()
    argv = slurm.submit_argv(
        {"partition": "p", "cpus": 2, "sbatch_options": ["--exclusive"], "allocation": ""},
        "kernel-1",
        ["python", "-c", "x"],
    )
    assert argv[0] == "srun" and "--partition=p" in argv and "--cpus-per-task=2" in argv
    assert argv.index("--exclusive") < argv.index("python")
    step = slurm.submit_argv({"allocation": "77"}, "kernel-1", ["python"])
    assert "--jobid=77" in step and "--overlap" in step
    env = slurm.submit_env({"SLURM_JOB_ID": "5", "SLURM_CONF": "/c", "PATH": "/bin"})
    assert env == {"SLURM_CONF": "/c", "PATH": "/bin"}
    # Walk L: the user's own srun defaults and the spec's SLURM_/PMIX_ values were dropped
    # too: the job was charged to no account, and the kernel never saw what its env sets.
    defaults = {"SLURM_ACCOUNT": "proj42", "SLURM_CONF": "/c", "PATH": "/bin"}
    assert slurm.submit_env(defaults) == defaults  # a client in no job of its own
    in_a_job = {"SLURM_JOB_ID": "5", "PMIX_MCA_gds": "hash", "SLURM_CPU_BIND": "none"}
    assert slurm.submit_env(in_a_job, own=["PMIX_MCA_gds", "SLURM_CPU_BIND"]) == {
        "PMIX_MCA_gds": "hash", "SLURM_CPU_BIND": "none"
    }  # fmt: skip
    # Walk P: the env forms of options kernelmagic refuses broke every start (the kernel
    # without its env; the connection line prefixed "0: " and never read).
    mechanics = {"SLURM_EXPORT_ENV": "NONE", "SLURM_LABELIO": "1", "SLURM_STDOUTMODE": "x"}
    assert slurm.submit_env({**mechanics, "PATH": "/bin"}) == {"PATH": "/bin"}
    # Walk Q: a server job's threads, devices and scratch dir, but what the spec sets.
    servers = {"SLURM_JOB_ID": "4242", "TMPDIR": "/tmp/slurm-4242", "OMP_NUM_THREADS": "8",
               "CUDA_VISIBLE_DEVICES": "2,3", "PATH": "/bin", "MKL_NUM_THREADS": "2"}  # fmt: skip
    assert slurm.submit_env(servers, own=["MKL_NUM_THREADS"]) == {
        "PATH": "/bin", "MKL_NUM_THREADS": "2"
    }  # fmt: skip


def remote_slurm_scheduler():
    from kernelmagic.batch.provisioner import Slurm

    assert remote_batch.BATCH_ENGINES["slurm"] == "kernelmagic-slurm-provisioner"
    return Slurm()


@pytest.fixture
def slurm_client_env(slurm_cluster, monkeypatch):
    """This process as a Slurm client of the private cluster (for the doctor's own calls)."""
    for name, value in slurm_cluster.client_env().items():
        monkeypatch.setenv(name, value)
    for name in [n for n in os.environ if n.startswith("SLURM_") and n != "SLURM_CONF"]:
        monkeypatch.delenv(name)
    return slurm_cluster


def test_doctor_checks_the_scheduler_side(slurm_client_env, user_kernels, monkeypatch, capsys):
    write_spec(user_kernels, "geo")
    assert main(["remote", "geo", "geo-slurm", "--engine", "slurm", "--partition", "debug"]) == 0
    assert main(["remote", "geo", "geo-nowhere", "--engine", "slurm", "--partition", "gpu"]) == 0
    broken = user_kernels / "geo-badtime" / "kernel.json"
    assert main(["remote", "geo", "geo-badtime", "--engine", "slurm"]) == 0
    spec = json.loads(broken.read_text())
    spec["metadata"]["kernel_provisioner"]["config"]["time"] = "4 hours"  # edited by hand
    broken.write_text(json.dumps(spec))
    names = ["geo-slurm", "geo-nowhere", "geo-badtime"]
    report = {d.name: d for d in doctor.diagnose(names).diagnoses}
    assert not [p for p in report["geo-slurm"].problems if not p.kind.startswith("client")]
    (unknown,) = [p for p in report["geo-nowhere"].problems if p.kind == "unknown-partition"]
    assert "no partition 'gpu' (sinfo lists: closed, debug)" in unknown.message
    assert any(p.kind == "bad-time-limit" for p in report["geo-badtime"].problems)
    vscode = {v.client: v for v in report["geo-slurm"].clients}["vscode"]
    assert not vscode.works and "outside any slurm job" in vscode.reason
    assert "salloc" in vscode.fix and "(geo)" in vscode.fix
    # srun refuses it: no client that starts it through the provisioner works (they all said
    # so), the fix names the spec it came from; VS Code's own reason stays.
    verdicts = {v.client: v for v in report["geo-nowhere"].clients}
    assert not verdicts["jupyter-server"].works and not verdicts["nbclient"].works
    assert "no partition 'gpu'" in verdicts["jupyter-server"].reason
    # The option to change, the others kept (the spec it came from may be gone since).
    change = "patch geo-nowhere --provisioner kernelmagic-slurm-provisioner --provisioner-config"
    assert unknown.fix == f"""{change} 'partition="PARTITION"'"""
    assert main(shlex.split(unknown.fix.replace("PARTITION", "debug"))) == 0  # as printed
    (fixed,) = doctor.diagnose(["geo-nowhere"]).diagnoses
    assert not [p for p in fixed.problems if p.kind == "unknown-partition"]
    assert main(shlex.split(unknown.fix.replace("PARTITION", "gpu"))) == 0  # as it was
    # A notebook naming a kernel not here: a spec srun refuses is no match, nor its fix
    # (`notebook` offered it first, then `--fix` refused it).
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "geo-nowhere-2", "language": "python"}
    path = user_kernels.parent / "nb.ipynb"
    nbformat.write(notebook, path)
    capsys.readouterr()
    main(["notebook", str(path)])
    said = capsys.readouterr().out
    assert "geo-nowhere" not in said.replace("geo-nowhere-2", ""), said
    assert "outside any slurm job" in verdicts["vscode"].reason
    # A partition that is down, and an allocation that is not running: both were "ok".
    assert main(["remote", "geo", "geo-down", "--engine", "slurm", "--partition", "closed"]) == 0
    assert main(["remote", "geo", "geo-held", "--engine", "slurm", "--allocation", "999999"]) == 0
    report = {d.name: d for d in doctor.diagnose(["geo-down", "geo-held"]).diagnoses}
    (down,) = [p for p in report["geo-down"].problems if p.kind == "partition-down"]
    assert "partition 'closed' is down (sinfo)" in down.message
    (gone,) = [p for p in report["geo-held"].problems if p.kind == "allocation-gone"]
    assert "allocation 999999 is not in the queue (it ended)" in gone.message
    assert not any(v.works for v in report["geo-held"].clients)
    # Where the scheduler does not answer, the partition does not pass unchecked (it did).
    monkeypatch.setenv("SLURM_CONF", str(user_kernels / "no-such-slurm.conf"))
    (diagnosis,) = doctor.diagnose(["geo-nowhere"]).diagnoses
    (silent,) = [p for p in diagnosis.problems if p.kind == "scheduler-unreachable"]
    assert "sinfo could not list the partitions (" in silent.message and "'gpu'" in silent.message
    assert silent.fix is None  # remaking the spec does not reach the scheduler
    (diagnosis,) = doctor.diagnose(["geo-badtime"]).diagnoses  # no partition: said too
    assert "scheduler-unreachable" in [p.kind for p in diagnosis.problems]
    # Where Jupyter cannot reach the scheduler, that is the one thing said.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    (diagnosis,) = doctor.diagnose(["geo-slurm"]).diagnoses
    (missing,) = [p for p in diagnosis.problems if p.kind == "scheduler-missing"]
    assert "srun, squeue, scancel, sinfo not on PATH" in missing.message


def test_the_doctor_checks_cpus_memory_and_gres_against_the_nodes(slurm_client_env, user_kernels):
    """Walk Q: the doctor said ok to `--gres gpu:1` on a cluster without GPUs, `--mem` over
    every node's and more CPUs than a node has; only `--launch` found them. It reads the
    nodes from sinfo now, and a real start of each spec fails as it says (the private node
    has 2 CPUs, 1 MB, no generic resources), and each that fits starts."""
    from jupyter_client.manager import KernelManager

    write_spec(user_kernels, "geo")
    asked = {
        "geo-cpus": (["--cpus", "3"], "too-many-cpus", "--cpus 3 is more than any node"),
        "geo-mem": (["--mem", "1G"], "too-much-memory", "--mem 1G is more than any node"),
        "geo-gres": (["--gres", "gpu:1"], "unknown-gres", "no node of the default partition"),
        "geo-fits": (["--cpus", "2", "--mem", "1", "--gres", "none"], None, ""),
        # What srun takes after those (walk S: passed): the last of each wins.
        "geo-sb-cpus": (["--cpus", "2", "--sbatch-option=-c3"], "too-many-cpus", "-c3 is more"),
        "geo-sb-mem": (["--sbatch-option=--mem-per-cpu=2"], "too-much-memory", "--mem-per-cpu=2"),
        "geo-sb-share": (["--cpus", "2", "--sbatch-option=--mem-per-cpu=1"], None, ""),
        "geo-sb-gpus": (["--sbatch-option=--gpus=1"], "unknown-gres", "has --gpus=1 (sinfo"),
        "geo-sb-fits": (["--mem", "2", "--sbatch-option=--mem=1"], None, ""),
    }
    for name, (options, kind, _) in asked.items():
        argv = ["remote", "geo", name, "--engine", "slurm", *options]
        waits = 4 if kind == "too-many-cpus" else 60  # that one waits in the queue for good
        assert main([*argv, "--provisioner-config", f"launch_timeout={waits}"]) == 0
    report = {d.name: d for d in doctor.diagnose(list(asked)).diagnoses}
    for name, (_, kind, said) in asked.items():
        found = [p for p in report[name].problems if not p.kind.startswith("client")]
        manager = KernelManager(kernel_name=name)  # what the doctor predicts, for real
        if kind is None:
            assert not found, found
            manager.start_kernel()
            manager.shutdown_kernel(now=True)
            continue
        (problem,) = found
        assert problem.kind == kind and said in problem.message, problem
        assert problem.fix.startswith(f"patch {name} --provisioner ")
        assert not {v.client: v for v in report[name].clients}["jupyter-server"].works
        with pytest.raises((RuntimeError, TimeoutError)):
            manager.start_kernel()
    wait_until_no_kernel_jobs(slurm_client_env, 30)


def _scontrol(*words: str) -> None:
    subprocess.run(["scontrol", "update", *words], check=True, capture_output=True)


@contextlib.contextmanager
def _changed(what: str, change: list[str], back: list[str]):
    """The cluster with ``what`` (a partition or node) updated by ``change``, put back after."""
    _scontrol(what, *change)
    try:
        yield
    finally:
        _scontrol(what, *back)


def test_the_doctor_sees_a_queue_no_job_of_the_spec_leaves(
    slurm_client_env, user_kernels, monkeypatch
):
    """Walk L: the doctor said ok to specs whose job waits for good (the default partition
    down, every node drained, --time over the partition's MaxTime): each cost the user the
    whole launch_timeout; it flagged `--partition debug,closed`, which starts at once; an
    allocation still PENDING was said to be gone ("hold a new one")."""
    cluster = slurm_client_env
    write_spec(user_kernels, "geo")
    for name, options in (("geo-default", []), ("geo-list", ["--partition", "debug,closed"]),
                          ("geo-long", ["--time", "01:00:00"])):  # fmt: skip
        assert main(["remote", "geo", name, "--engine", "slurm", *options]) == 0
    names = ["geo-default", "geo-list", "geo-long"]

    def kinds():
        report = doctor.diagnose(names).diagnoses
        return {d.name: sorted(p.kind for p in d.problems if not p.kind.startswith("client"))
                for d in report}  # fmt: skip

    assert kinds() == {"geo-default": [], "geo-list": [], "geo-long": []}
    # Walk P: srun takes the user's SLURM_PARTITION where the spec names none.
    monkeypatch.setenv("SLURM_PARTITION", cluster.closed_partition)
    assert kinds()["geo-default"] == ["partition-down"]
    monkeypatch.delenv("SLURM_PARTITION")
    # A hidden partition: sinfo leaves it out, srun takes it.
    with _changed(f"partitionname={cluster.closed_partition}", ["hidden=yes"], ["hidden=no"]):
        assert main(["remote", "geo", "geo-hid", "--engine", "slurm", "--partition",
                     cluster.closed_partition]) == 0  # fmt: skip
        (hid,) = doctor.diagnose(["geo-hid"]).diagnoses
        assert "unknown-partition" not in {p.kind for p in hid.problems}
    debug = f"partitionname={cluster.partition}"
    with _changed(debug, ["maxtime=00:30:00"], ["maxtime=INFINITE"]):
        assert kinds()["geo-long"] == ["bad-time-limit"]
    with _changed(f"nodename={cluster.node}", ["state=drain", "reason=walk-L"], ["state=resume"]):
        assert kinds() == {name: ["partition-down"] for name in names}
    with _changed(debug, ["state=down"], ["state=up"]):
        assert kinds()["geo-default"] == ["partition-down"]
    deadline = time.monotonic() + 20  # the node back from drain at the controller's pace
    while kinds() != {"geo-default": [], "geo-list": [], "geo-long": []}:
        assert time.monotonic() < deadline, kinds()
        time.sleep(0.5)
    pending = subprocess.run(
        ["sbatch", "--parsable", f"--partition={cluster.closed_partition}", "--output=/dev/null",
         "--wrap", "sleep 1"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().split(";")[0]  # fmt: skip
    try:
        step_of = ["remote", "geo", "geo-step", "--engine", "slurm", "--allocation", pending]
        assert main(step_of) == 0
        (step,) = doctor.diagnose(["geo-step"]).diagnoses
        (waits,) = [p for p in step.problems if p.kind.startswith("allocation")]
        assert waits.kind == "allocation-pending" and "until it starts" in waits.message
    finally:
        subprocess.run(["scancel", pending], check=False)


def test_doctor_launch_goes_through_the_queue(slurm_client_env, user_kernels, capfd):
    cluster = slurm_client_env
    write_spec(user_kernels, "geo")
    assert main(["remote", "geo", "geo-slurm", "--engine", "slurm"]) == 0
    argv = ["remote", "geo", "geo-closed", "--engine", "slurm", "--partition", "closed"]
    # The spec's own launch_timeout reaches the provisioner as an argument: it outlasted
    # --timeout (the doctor waited 41 s of 5).
    assert main([*argv, "--provisioner-config", "launch_timeout=40"]) == 0
    capfd.readouterr()
    assert main(["doctor", "--launch", "--timeout", "4", "geo-closed"]) == 1
    out, err = capfd.readouterr()
    assert "did not start within 4 s: job " in out and "PartitionDown" in out
    assert err == ""  # srun's lines were relayed to the doctor's stderr, under its report
    assert main(["doctor", "--launch", "--timeout", "60", "geo-slurm"]) == 0
    assert capfd.readouterr().err == ""  # the kernel's banner, relayed as well
    wait_until_no_kernel_jobs(cluster, 15)


def test_ctrl_c_ends_a_doctor_launch_waiting_in_the_queue(slurm_client_env, user_kernels):
    """One Ctrl-C while the launch's job waited in the queue: the doctor waited on until the
    launch's --timeout (the start blocks a worker thread), 300 s here."""
    cluster = slurm_client_env
    write_spec(user_kernels, "geo")
    argv = ["remote", "geo", "geo-closed", "--engine", "slurm", "--partition", "closed"]
    assert main(argv) == 0
    command = [sys.executable, "-m", "kernelmagic", "doctor", "--launch", "--timeout", "300"]
    doctor_run = subprocess.Popen(
        [*command, "geo-closed"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        waited = time.monotonic()
        while not jobs_of_kernels(cluster):
            assert doctor_run.poll() is None, doctor_run.communicate()
            assert time.monotonic() - waited < 60, "the job never showed in the queue"
            time.sleep(0.2)
        doctor_run.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        out, err = doctor_run.communicate(timeout=60)
    finally:
        if doctor_run.poll() is None:
            doctor_run.kill()
            doctor_run.communicate()
    print(f"the doctor ended {time.monotonic() - interrupted:.1f} s after Ctrl-C")
    assert doctor_run.returncode == 130, (out, err)
    assert err.strip() == "kernelmagic: interrupted", err
    wait_until_no_kernel_jobs(cluster, 15)


def test_a_kernel_as_a_step_of_an_allocation(slurm_client_env, user_kernels):
    """--allocation: the kernel is a step of a job the user holds (salloc --no-shell); its
    shutdown ends the step, and the allocation stays for the next kernel."""
    from jupyter_client.manager import KernelManager

    cluster = slurm_client_env
    held = subprocess.run(
        ["salloc", "--no-shell", "--nodes=1", "--job-name=held-allocation"],
        env=cluster.client_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    allocation = held.stderr.split("Granted job allocation ")[-1].split()[0]
    assert allocation.isdigit(), held.stderr
    try:
        write_spec(user_kernels, "geo")
        assert (
            main(["remote", "geo", "geo-step", "--engine", "slurm", "--allocation", allocation])
            == 0
        )
        manager = KernelManager(kernel_name="geo-step")
        manager.start_kernel()
        client = manager.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            out = []
            client.execute_interactive(
                "import os; print(os.environ['SLURM_JOB_ID'], os.environ['SLURM_STEP_ID'])",
                timeout=30,
                output_hook=lambda m: out.append(m["content"].get("text", "")),
            )
        finally:
            client.stop_channels()
            manager.shutdown_kernel()
        job, step = "".join(out).split()
        assert job == allocation and step.isdigit()
        steps = subprocess.run(
            ["squeue", "--noheader", "--steps", f"--jobs={allocation}", "--format=%i"],
            env=cluster.client_env(),
            capture_output=True,
            text=True,
        ).stdout.split()
        assert f"{allocation}.{step}" not in steps
        assert any(line.split()[0] == allocation for line in _all_jobs(cluster))
    finally:
        subprocess.run(["scancel", allocation], env=cluster.client_env())


DOCTOR_OF_THEIRS = """
    import json
    from kernelmagic.operations import doctor

    (diagnosis,) = doctor.diagnose(["geo-theirs"]).diagnoses
    print(json.dumps({"kinds": [p.kind for p in diagnosis.problems],
                      "works": [v.works for v in diagnosis.clients if v.client != "vscode"]}))
"""


def test_an_allocation_another_user_holds_cannot_take_a_step_of_yours(slurm_setup, user_kernels):
    """The doctor called it ok; every start failed: "Unable to create step for job N:
    Access/permission denied"."""
    cluster = slurm_setup[0]
    held = subprocess.run(
        ["salloc", "--no-shell", "--nodes=1", "--job-name=roots-allocation"],
        env=cluster.client_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    allocation = held.stderr.split("Granted job allocation ")[-1].split()[0]
    assert allocation.isdigit(), held.stderr
    try:
        jupyter_path = make_slurm_spec(
            slurm_setup, user_kernels, "geo-theirs", "--allocation", allocation
        )
        (said,) = run_client(slurm_setup, jupyter_path, DOCTOR_OF_THEIRS)
        assert "allocation-not-yours" in said["kinds"]
        assert not any(said["works"])
    finally:
        subprocess.run(["scancel", allocation], env=cluster.client_env())


def _all_jobs(cluster) -> list[str]:
    listed = subprocess.run(
        ["squeue", "--noheader", "--format=%i %j %T"],
        env=cluster.client_env(),
        capture_output=True,
        text=True,
    )
    return listed.stdout.splitlines()


def test_the_magic_takes_the_schedulers_words(ip, user_kernels):
    write_spec(user_kernels, "geo")
    ip.run_line_magic(
        "kernel_remote",
        "geo geo-slurm --engine slurm --partition debug --time 30 --gres gpu:1 "
        "--sbatch-option=--exclusive --sbatch-option=--constraint=a100",
    )
    config = json.loads((user_kernels / "geo-slurm" / "kernel.json").read_text())["metadata"][
        "kernel_provisioner"
    ]["config"]
    assert config == {
        "partition": "debug",
        "time": "30",
        "gres": "gpu:1",
        "sbatch_options": ["--exclusive", "--constraint=a100"],
    }


SERVER_SESSION = """
    import asyncio, json, os, sys, urllib.request, uuid
    from tornado.websocket import websocket_connect

    base, token = sys.argv[1], sys.argv[2]
    headers = {"Authorization": f"token {token}"}

    def call(method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=120) as answer:
            text = answer.read()
        return json.loads(text) if text else None

    async def run(kernel, code):
        socket = await websocket_connect(
            f"{base.replace('http', 'ws')}/api/kernels/{kernel}/channels?token={token}"
        )
        msg_id = uuid.uuid4().hex
        await socket.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "t",
                       "session": uuid.uuid4().hex, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": "import os", "silent": False,
                        "user_expressions": {"seen": code}},
        }))
        # The answer comes in the reply (shell), which a fresh websocket cannot miss, unlike
        # output published on IOPub before its subscription is through.
        while True:
            message = json.loads(await socket.read_message())
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "execute_reply":
                socket.close()
                return message["content"]["user_expressions"]["seen"]["data"]["text/plain"]

    kernel = call("POST", "/api/kernels", {"name": "geo-slurm"})["id"]
    print(json.dumps({"kernel": kernel}), flush=True)
    code = "os.environ['SLURM_JOB_ID'] + ' ' + os.environ['CAPTURED_BY_KERNELMAGIC']"
    print(json.dumps({"first": asyncio.run(run(kernel, code))}), flush=True)
    call("POST", f"/api/kernels/{kernel}/restart")
    print(json.dumps({"restarted": asyncio.run(run(kernel, code))}), flush=True)
"""


def test_a_jupyter_server_starts_it_and_its_death_ends_the_job(slurm_setup, user_kernels):
    """jupyter_server (what JupyterLab and Notebook talk to) starts and restarts the kernel;
    then the server is killed without a shutdown, and the job ends by itself."""
    import secrets

    _require_jupyter_server()
    cluster = slurm_setup[0]
    jupyter_path = make_slurm_spec(slurm_setup, user_kernels, "geo-slurm")
    token = secrets.token_hex(16)
    port = slurm_free_port()
    server = run_client(
        slurm_setup,
        jupyter_path,
        f"""
        import sys
        from jupyter_server.serverapp import main
        sys.argv = ["jupyter-server", "--ip=127.0.0.1", "--port={port}", "--no-browser",
                    "--IdentityProvider.token={token}", "--ServerApp.open_browser=False"]
        main()
        """,
        wait=False,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _answers(base, token):
            assert server.poll() is None, server.stderr.read()[-3000:]
            time.sleep(0.2)
        said = {}
        for entry in run_client(slurm_setup, jupyter_path, SERVER_SESSION, args=(base, token)):
            said.update(entry)
        listed = jobs_of_kernels(cluster)
        first_job, captured = said["first"].strip("'").split()
        restarted_job, _ = said["restarted"].strip("'").split()
        assert captured == "from-geo" and restarted_job != first_job
        # The job's name carries the server's kernel id: an admin's squeue says whose it is.
        assert [line.split()[0] for line in listed] == [restarted_job]
        assert said["kernel"][:8] in listed[0]
    finally:
        server.send_signal(signal.SIGKILL)
        server.communicate()
    took = wait_until_no_kernel_jobs(cluster, ORPHAN_LIMIT)
    print(f"the job of a killed server was gone after {took:.1f} s")


def _answers(base: str, token: str) -> bool:
    import urllib.request

    try:
        request = urllib.request.Request(
            base + "/api/status", headers={"Authorization": f"token {token}"}
        )
        with urllib.request.urlopen(request, timeout=2):
            return True
    except OSError:
        return False


def slurm_free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_job_slurm_refuses_fails_the_start_with_slurms_words(slurm_client_env, user_kernels):
    """srun refuses at once (a partition the cluster lacks): the start fails with srun's own
    error line at once, not after the launch timeout, and a Jupyter server passes those words
    on to its client (walk Q: its answer was "Unhandled error", so JupyterLab's "Error Starting
    Kernel" dialog said nothing of why)."""
    import secrets
    import urllib.error
    import urllib.request

    from jupyter_client.manager import KernelManager

    write_spec(user_kernels, "geo")
    argv = ["remote", "geo", "geo-nowhere", "--engine", "slurm", "--partition", "nowhere"]
    assert main(argv) == 0
    manager = KernelManager(kernel_name="geo-nowhere")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"ended before the kernel started: .*invalid partition"):
        manager.start_kernel()
    assert time.monotonic() - started < 30
    assert not jobs_of_kernels(slurm_client_env)

    _require_jupyter_server()
    token, port = secrets.token_hex(16), slurm_free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _answers(base, token):
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
            time.sleep(0.2)
        # A kernel alone (what a kernel gateway's clients and scripts ask; this answer said
        # "Unhandled error"), and a notebook's session (what JupyterLab asks, which the server
        # words itself).
        session = {"path": "a.ipynb", "type": "notebook", "kernel": {"name": "geo-nowhere"}}
        asked = {"/api/kernels": {"name": "geo-nowhere"}, "/api/sessions": session}
        for path, body in asked.items():
            request = urllib.request.Request(
                base + path,
                data=json.dumps(body).encode(),
                method="POST",
                headers={"Authorization": f"token {token}"},
            )
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(request, timeout=60)
            reply = json.loads(answer.value.read())
            assert answer.value.code == 500, path
            assert "ended before the kernel started" in reply["message"], (path, reply)
            assert "invalid partition" in reply["message"], (path, reply)
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert not jobs_of_kernels(slurm_client_env)


def _require_jupyter_server() -> None:
    """jupyter_server is not in the test extra: it needs jupyter_client >= 7.4, and the suite
    also runs against jupyter_client 7.0. CI's other legs install it (.ci/run)."""
    import importlib.util

    import jupyter_client

    if importlib.util.find_spec("jupyter_server") is not None:
        from jupyter_server import version_info

        if version_info < (2,):  # 1.x (the oldest set) refuses this test's requests (403)
            pytest.skip("this test drives jupyter_server 2's API; the oldest set has 1.x")
        return
    if os.environ.get("CI") and jupyter_client.version_info >= (7, 4):
        pytest.fail("CI must install jupyter_server>=2 beside the test extra")
    pytest.skip("jupyter_server is not installed (pip install 'jupyter_server>=2')")
