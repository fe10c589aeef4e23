"""`doctor --launch`: specs started for real through jupyter_client, failures with the lines
of the kernel's stderr that say why."""

from __future__ import annotations

import json
import sys

import ipykernel
import pytest
from helpers import write_spec

from kernelmagic.frontends.cli import main

CONN = "{connection_file}"
# ipykernel 7.0-7.3 leave a shell request unread that arrives while they reply (see
# test_activate_promise.py): the doctor now waits for its kernel_info replies before the
# check's cell, but a stall there means the cell never runs, which the check reports as
# "not checked", not as what the test asserts (once in CI's ipykernel 7.0 leg, under load).
STRANDS_REQUESTS = pytest.mark.xfail(
    (7, 0) <= tuple(ipykernel.version_info[:2]) < (7, 4),
    reason="ipykernel 7.0-7.3 strand shell requests that arrive while it replies",
    strict=False,
)


def test_launch_reports_started_and_failed_specs_with_the_reason(
    ip,
    user_kernels,
    tmp_path,
    bare_python,
    capsys,
):
    write_spec(user_kernels, "ok")  # this interpreter, with ipykernel
    write_spec(
        user_kernels,
        "no-ipykernel",
        {"argv": [bare_python, "-m", "ipykernel_launcher", "-f", CONN]},
    )
    wrapper = tmp_path / "kernel-helper.sh"
    wrapper.write_text("#!/bin/sh\nmodule_load_that_is_not_there gdal\nexit 127\n")
    wrapper.chmod(0o755)
    write_spec(user_kernels, "wrapper", {"argv": [str(wrapper), CONN]})
    write_spec(user_kernels, "gone", {"argv": ["/no/such/python", "-m", "x", "-f", CONN]})

    names = ["ok", "no-ipykernel", "wrapper", "gone"]
    assert main(["doctor", "--launch", "--json", *names]) == 1
    report = json.loads(capsys.readouterr().out)["specs"]
    assert report["ok"]["started"] and report["ok"]["seconds"] > 0
    assert (report["ok"]["language"], report["ok"]["implementation"]) == ("python", "ipython")
    assert "No module named ipykernel_launcher" in report["no-ipykernel"]["reason"]
    assert "module_load_that_is_not_there" in report["wrapper"]["reason"]
    assert "not found" in report["wrapper"]["reason"]
    assert report["gone"]["reason"].startswith("cannot start")
    assert not any(report[n]["started"] for n in names[1:])

    # The summary counts what happened to each spec (issue 28: it once said "11 spec(s)
    # started, 3 failed" when 8 had started).
    table = ip.run_line_magic("kernel_doctor", "--launch ok gone")
    assert not table.healthy
    assert str(table).splitlines()[-1] == "2 spec(s): 1 started, 1 failed."


def test_launch_refuses_fix_and_a_bad_timeout(capsys):
    assert main(["doctor", "--launch", "--fix"]) == 2
    assert main(["doctor", "--launch", "--timeout", "0"]) == 2
    assert main(["doctor", "--launch", "no/such"]) == 2
    assert capsys.readouterr().err.count("kernelmagic: error:") == 3


@STRANDS_REQUESTS
def test_a_kernel_that_an_interrupt_kills_is_said_to_be_killed_not_still_running(
    user_kernels, capsys
):
    """IRkernel on a cold disk halted ('Execution halted', exit 1) when the check pressed
    Interrupt before R was inside the cell, and the doctor said 'the cell was still running'.
    A stand-in: an ipykernel in which a cell's print makes SIGINT fatal, as R's top level is
    there (set before the check's line is printed, so before it can press)."""
    fatal = (
        "import builtins, os, signal; _print = builtins.print; builtins.print = lambda *a, **k: "
        "(signal.signal(signal.SIGINT, lambda *x: (os.write(2, b'Execution halted\\n'), "
        "os._exit(1))), _print(*a, **k))"
    )
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", CONN]
    write_spec(user_kernels, "fatal", {"argv": [*argv, f"--IPKernelApp.exec_lines={fatal}"]})
    assert main(["doctor", "--launch", "--json", "fatal"]) == 1
    launched = json.loads(capsys.readouterr().out)["specs"]["fatal"]
    assert launched["started"] and launched["interrupted"] is False
    assert launched["interrupt"] == (
        "killed the kernel: it exited when interrupted: Execution halted"
    ), launched


def test_a_long_statement_that_fails_is_not_checked_rather_than_said_to_arrive(
    user_kernels, capsys
):
    """A kernel whose sleep statement fails at once ends the cell before any interrupt: the
    check said 'arrived in 0.00 s' of an interrupt that interrupted nothing."""
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", CONN]
    breaks_print = "--IPKernelApp.exec_lines=import builtins; builtins.print = None"
    write_spec(user_kernels, "no-print", {"argv": [*argv, breaks_print]})
    assert main(["doctor", "--launch", "--json", "no-print"]) == 0
    launched = json.loads(capsys.readouterr().out)["specs"]["no-print"]
    assert launched["started"] and launched["interrupted"] is None
    assert launched["interrupt"].startswith("not checked: the long statement failed: TypeError")
