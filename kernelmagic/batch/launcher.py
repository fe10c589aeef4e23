"""What runs inside the batch job: pick the kernel's ports on the node, start the kernel,
send the connection information back on the job's stdout, and end the job when the client
is gone.

The provisioner passes this file's text to the job's interpreter with ``-I -c`` (so nothing
of kernelmagic needs to exist on the node, and no file travels through a shared
filesystem), followed by the kernel's argv in which ``{connection_file}`` is still a
placeholder. Standard library only, Python >= 3.6 (it runs under the kernel's interpreter):
so a generic type in an annotation is quoted (3.6 evaluates annotations; ``list[int]``
would raise there).

The job's stdin is a pipe that only the client process holds open; the scheduler forwards
it. End of file there means the client has gone (shut down, crashed or killed), so the
kernel is stopped and the job ends with it: no allocation outlives its client.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Sequence
from typing import Any

MARKER = "KERNELMAGIC-BATCH-CONNECTION "
STOP_GRACE_SECONDS = 5.0


def reachable_address() -> str:
    """The address of this node on the route back to the client's host (the submit host),
    where the client can reach the kernel; KERNELMAGIC_KERNEL_IP overrides it."""
    chosen = os.environ.get("KERNELMAGIC_KERNEL_IP")
    if chosen:
        return chosen
    submit_host = os.environ.get("SLURM_SUBMIT_HOST") or os.environ.get("KERNELMAGIC_CLIENT_HOST")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            # connect() on UDP sends nothing: it only asks the kernel for the route.
            probe.connect((socket.gethostbyname(submit_host or socket.gethostname()), 9))
            address: str = probe.getsockname()[0]
            return address
    except OSError:
        return socket.gethostbyname(socket.gethostname())


def free_ports(ip: str, count: int, preferred: "Sequence[int]" = ()) -> "list[int]":
    """``count`` free ports; the ``preferred`` ones (a restarted kernel's previous ports)
    where they are free, so that clients connected before a restart reach it again."""
    held: list[socket.socket] = []
    wanted = list(preferred)[:count]
    wanted += [0] * (count - len(wanted))
    try:
        for port in wanted:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # As zmq binds: the previous kernel's connections may linger in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((ip, port))
            except OSError:
                sock.bind((ip, 0))
            held.append(sock)
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


def read_request(client_pipe: int) -> "dict[str, Any]":
    """The client's first line on the pipe: {} for a new kernel; for a restarted one its
    previous ports and key (so that clients connected before the restart reach it again;
    the key travels here, not in the job's argv or environment)."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(client_pipe, 1)
        if not chunk:
            raise SystemExit("kernelmagic launcher: the client went away before the kernel started")
        line += chunk
    request: dict[str, Any] = json.loads(line.decode("utf-8") or "{}")
    return request


def write_connection_file(
    directory: str, ip: str, request: "dict[str, Any]"
) -> "tuple[str, dict[str, Any]]":
    ports = [int(port) for port in request.get("ports") or ()]
    shell, iopub, stdin, hb, control = free_ports(ip, 5, ports)
    info = {
        "ip": ip,
        "transport": "tcp",
        "shell_port": shell,
        "iopub_port": iopub,
        "stdin_port": stdin,
        "hb_port": hb,
        "control_port": control,
        "key": request.get("key") or str(uuid.uuid4()),
        "signature_scheme": "hmac-sha256",
    }
    if request.get("kernel_name"):  # as jupyter_client writes it for a local kernel
        info["kernel_name"] = request["kernel_name"]
    path = os.path.join(directory, "kernel.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(info, out)
    return path, info


def stop(kernel: "subprocess.Popen[bytes]") -> None:
    if kernel.poll() is not None:
        return
    try:
        kernel.terminate()
        kernel.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        kernel.kill()
    except OSError:
        pass


def watch_client(client_pipe: int, kernel: "subprocess.Popen[bytes]") -> None:
    """Stop the kernel at end of file on the client's pipe (the client is gone)."""
    while True:
        try:
            if not os.read(client_pipe, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    stop(kernel)


def main(argv: "list[str]") -> int:
    # The kernel must not read (and so swallow) the client's pipe: it gets /dev/null.
    client_pipe = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    request = read_request(client_pipe)
    ip = reachable_address()
    directory = tempfile.mkdtemp(prefix="kernelmagic-kernel-")
    try:
        path, info = write_connection_file(directory, ip, request)
        command = [arg.replace("{connection_file}", path) for arg in argv]
        # The scheduler signals every process of the step (Slurm's proctrack plugins: the
        # process tree, the cgroup, or the process group, which the kernel shares with this
        # launcher), so the kernel gets an interrupt directly; forwarding it too would
        # interrupt it twice. The launcher itself outlives such signals and ends with the
        # kernel (a handler, not SIG_IGN, which the kernel would inherit).
        for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT"):
            signal.signal(getattr(signal, name), lambda _signum, _frame: None)
        kernel = subprocess.Popen(command, stdin=devnull, stdout=2)
        report = {
            "connection": info,
            "job": os.environ.get("SLURM_JOB_ID", ""),
            "step": os.environ.get("SLURM_STEP_ID", ""),
            "node": os.environ.get("SLURMD_NODENAME", socket.gethostname()),
            "pid": kernel.pid,
        }
        sys.stdout.write(MARKER + json.dumps(report) + "\n")
        sys.stdout.flush()
        # The job's stdout carried the connection; from now on anything written there
        # (the kernel's own fd 1 is stderr already) goes to the job's stderr.
        os.dup2(2, 1)
        threading.Thread(target=watch_client, args=(client_pipe, kernel), daemon=True).start()
        status = kernel.wait()
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
