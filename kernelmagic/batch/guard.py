"""What runs on the client's machine around the scheduler's submit command (``srun``) until
the kernel has started: it cancels a job still in the queue when the client is gone.

A submit command waits in the foreground for its allocation, and nothing ties it to the
client: if the client ends while the job is queued (a server stopped, a script killed, a
second Ctrl-C), the submit command and the queued job stay, and the job starts later for
nobody. Once the job runs, the job's stdin (which only the client holds) ends it; before,
nothing reads that stdin.

The provisioner runs this file's text with ``-I -c`` (no import of kernelmagic) as
``FD SECONDS COMMAND...``: FD is the read end of a pipe whose write end only the client's
process holds, and to which the provisioner writes one byte once the kernel has started. The
pipe hanging up without that byte means the client's process is gone: the submit command gets
SIGTERM, on which ``srun`` cancels the job it waits for. So does no byte within SECONDS (the
launch timeout, and a little more): a client whose wait was interrupted (a Ctrl-C it caught)
lives on but no longer waits, and its job would start for nobody. After the byte, the guard
only waits.

The provisioner signals the whole process group; the submit command acts on the signals,
and the guard ends as it ends (by the same signal, or with its exit status).
"""

import os
import select
import signal
import subprocess
import sys
import time


def main() -> None:
    lifeline = int(sys.argv[1])
    deadline = time.monotonic() + float(sys.argv[2])
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: None)  # the submit command's to answer
    try:
        submit = subprocess.Popen(sys.argv[3:])
    except OSError as exc:  # no srun here: said in one line, as a shell would say it
        sys.stderr.write(f"{sys.argv[3]}: {exc.strerror or exc}\n")
        sys.exit(127)
    watch = select.poll()
    watch.register(lifeline, select.POLLIN)  # hanging up is reported whatever is asked
    while True:
        try:
            status = submit.wait(timeout=0.2 if lifeline >= 0 else None)
            break
        except subprocess.TimeoutExpired:
            pass
        ready = watch.poll(0)
        if ready or time.monotonic() > deadline:
            if not (ready and os.read(lifeline, 1)):  # no byte: the client is gone, or late
                submit.send_signal(signal.SIGTERM)
            watch.unregister(lifeline)
            os.close(lifeline)
            lifeline = -1
    if status < 0:  # end as the submit command ended: by its signal
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    sys.exit(status)


if __name__ == "__main__":
    main()
