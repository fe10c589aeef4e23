"""Every client (issue 26, part 1): per-client verdicts in the doctor, interrupts through
wrappers (checked for real by doctor --launch), fields that claim more than the kernel has,
and the protocol and encryption fields kept by every writer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_spec

from kernelmagic.frontends.cli import main

PYTHON = sys.executable
# VS Code starts a spec through its Python extension only when argv[0] is named python or
# python3: a venv made by `python3.10 -m venv` runs as bin/python3.10, which it would not.
VSCODE_PYTHON = str(Path(sys.executable).with_name("python3"))
KERNEL = [PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def _doctor_json(capsys, *names: str) -> tuple[int, dict]:
    capsys.readouterr()
    status = main(["doctor", "--json", *names])
    return status, json.loads(capsys.readouterr().out)["specs"]


def _spec(name: str, argv=None, **fields) -> dict:
    return {"argv": argv or KERNEL, "display_name": name, "language": "python", **fields}


def test_each_client_gets_a_verdict_with_its_reason(user_kernels, capsys):
    missing = "/nonexistent/venv/bin/python"
    write_spec(user_kernels, "good", _spec("good"))
    write_spec(user_kernels, "gone", _spec("gone", [missing, *KERNEL[1:]]))
    write_spec(user_kernels, "dollars", _spec("dollars", env={"PRICE": "5$$", "WHERE": "$HOME"}))
    write_spec(user_kernels, "no-dash-f", _spec("x", [VSCODE_PYTHON, "-m", "ipykernel_launcher",
                                                      "--f={connection_file}"]))  # fmt: skip
    status, specs = _doctor_json(capsys, "good", "gone", "dollars", "no-dash-f")
    assert status == 1  # `gone` cannot start anywhere
    assert all(v["works"] for v in specs["good"]["clients"].values())
    assert set(specs["good"]["clients"]) == {
        "jupyter-server",
        "jupyterlab",
        "voila",
        "vscode",
        "nbclient",
        "console",
    }
    gone = specs["gone"]["clients"]
    assert (
        gone["vscode"]["reason"]
        == f"VS Code does not list it: its interpreter {missing} is not there"
    )
    assert not gone["jupyter-server"]["works"]
    assert gone["jupyter-server"]["reason"].startswith(
        "listed, but it cannot start: program not found"
    )
    dollars = specs["dollars"]
    assert dollars["clients"]["jupyter-server"]["works"]
    assert "`$$`" in dollars["clients"]["vscode"]["reason"]
    kinds = {p["kind"]: p["severity"] for p in dollars["problems"]}
    assert kinds == {"client-vscode": "note"}  # it works elsewhere: a note, not a problem
    assert "-f {connection_file}" in specs["no-dash-f"]["clients"]["vscode"]["reason"]
    assert specs["no-dash-f"]["clients"]["nbclient"]["works"]


def test_vscode_ignores_provisioners(user_kernels, capsys):
    pytest.importorskip(
        "gateway_provisioners", reason="gateway_provisioners needs jupyter_client >= 7.4"
    )
    stanza = {"provisioner_name": "distributed-provisioner", "config": {"remote_hosts": ["h"]}}
    write_spec(user_kernels, "far", _spec("far", metadata={"kernel_provisioner": stanza}))
    _, specs = _doctor_json(capsys, "far")
    clients = specs["far"]["clients"]
    assert clients["jupyter-server"]["works"]
    assert "through the provisioner distributed-provisioner" in clients["jupyter-server"]["reason"]
    assert not clients["vscode"]["works"]
    assert clients["vscode"]["reason"].startswith("VS Code ignores kernel provisioners")


def test_an_interrupt_through_wrappers_for_real(user_kernels, capsys):
    """setsid puts the kernel outside the process group Jupyter signals: the interrupt is
    lost (said statically); doctor --launch sees what a client sees: the interrupt ends
    `setsid -w`, the process Jupyter watches, so the kernel dies; a shell without exec passes
    it on (jupyter_client signals the group: a note only); a shell that execs is the kernel."""
    script = f'{PYTHON} -m ipykernel_launcher -f "$0"'
    write_spec(user_kernels, "detached", _spec("d", ["setsid", "-w", *KERNEL]))
    write_spec(user_kernels, "child", _spec("c", ["/bin/sh", "-c", script, "{connection_file}"]))
    write_spec(user_kernels, "execs", _spec("e", ["/bin/sh", "-c", f"exec {script}",
                                                  "{connection_file}"]))  # fmt: skip
    status, specs = _doctor_json(capsys, "detached", "child", "execs")
    assert status == 1
    (lost,) = [p for p in specs["detached"]["problems"] if p["kind"] == "interrupt-lost"]
    assert lost["fix"] == "patch detached --interrupt-mode message"
    assert [p["kind"] for p in specs["child"]["problems"]] == ["wrapper-stays"]
    assert specs["execs"]["problems"] == []
    status = main(["doctor", "--launch", "--json", "detached", "child", "execs"])
    launched = json.loads(capsys.readouterr().out)["specs"]
    assert status == 1
    assert launched["detached"]["interrupted"] is False
    assert launched["detached"]["interrupt"].startswith("killed the kernel: it exited")
    assert launched["child"]["interrupted"] is True and launched["execs"]["interrupted"] is True
    assert main(["doctor", "--launch", "--no-interrupt-check", "detached"]) == 0


def test_a_listed_spec_whose_argv_is_a_string_is_listed_and_cannot_start(user_kernels, capsys):
    """Jupyter lists it (/api/kernelspecs has it) and every start fails: it was "not listed"."""
    write_spec(user_kernels, "s", _spec("s") | {"argv": "python -m ipykernel_launcher"})
    _, specs = _doctor_json(capsys, "s")
    reasons = {client: v["reason"] for client, v in specs["s"]["clients"].items()}
    assert all(r.startswith("listed, but it cannot start: 'argv' is a string") for r in
               reasons.values()), reasons  # fmt: skip


def test_a_spec_that_claims_more_than_its_kernel_has(user_kernels, tmp_path, capsys):
    """A debugger without debugpy (hidden from the interpreter by a sitecustomize, as a
    site's Python without it would be); curve encryption on an ipykernel before 7.3."""
    hide = tmp_path / "hide-debugpy"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['debugpy'] = None\n")
    write_spec(user_kernels, "nodebug", _spec("n", env={"PYTHONPATH": str(hide)},
                                              metadata={"debugger": True}))  # fmt: skip
    _, specs = _doctor_json(capsys, "nodebug")
    assert [p["kind"] for p in specs["nodebug"]["problems"]] == ["claims-debugger"]
    import ipykernel

    old = tuple(int(p) for p in ipykernel.__version__.split(".")[:2]) < (7, 3)
    for claim in (["curve"], "curve"):  # ipykernel 7.4's claim, and 7.3's (a str)
        write_spec(user_kernels, "curve", _spec("c", metadata={"supported_encryption": claim}))
        _, specs = _doctor_json(capsys, "curve")
        kinds = [p["kind"] for p in specs["curve"]["problems"]]
        assert kinds == (["claims-encryption"] if old else [])


def test_protocol_and_encryption_fields_are_kept_by_every_writer(
    user_kernels, tmp_path, capsys, second_venv
):
    """What ipykernel 7.4 writes (kernel_protocol_version, metadata.supported_encryption)
    survives clone, patch, refresh, --like, export/apply and a remote spec."""
    fields = {"kernel_protocol_version": "5.5"}
    encryption = ["curve"]

    def has_fields(name: str) -> bool:
        spec = json.loads((user_kernels / name / "kernel.json").read_text())
        return (
            spec.get("kernel_protocol_version") == "5.5"
            and spec.get("metadata", {}).get("supported_encryption") == encryption
        )

    assert main(["install", "made", "--python", str(second_venv / "bin" / "python")]) == 0
    path = user_kernels / "made" / "kernel.json"
    spec = json.loads(path.read_text())
    spec.update(fields)
    spec.setdefault("metadata", {})["supported_encryption"] = encryption
    path.write_text(json.dumps(spec))
    assert main(["clone", "made", "cloned"]) == 0 and has_fields("cloned")
    assert main(["patch", "made", "--display-name", "Made"]) == 0 and has_fields("made")
    assert main(["refresh", "made"]) == 0 and has_fields("made")
    assert main(["install", "alike", "--like", "made"]) == 0 and has_fields("alike")
    hand = {**_spec("hand"), **fields, "metadata": {"supported_encryption": encryption}}
    write_spec(user_kernels, "hand", hand)
    document = tmp_path / "doc.json"
    assert main(["export", "hand", "-o", str(document)]) == 0
    shutil.rmtree(user_kernels / "hand")
    assert main(["apply", str(document)]) == 0 and has_fields("hand")
    if importlib_found("gateway_provisioners"):
        assert main(["remote", "made", "far", "--engine", "ssh", "--host", "h1"]) == 0
        assert has_fields("far")


def importlib_found(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_notes_do_not_fail_the_doctor(user_kernels, capsys):
    write_spec(user_kernels, "dollars", _spec("d", env={"PRICE": "5$$"}))
    assert main(["doctor", "dollars"]) == 0
    out = capsys.readouterr().out
    assert "client-vscode (note)" in out and "VS Code passes both dollars" in out


def test_vscode_substitutes_only_braced_names(user_kernels, capsys):
    write_spec(user_kernels, "bare", _spec("b", env={"WHERE": "$HOME"}))
    write_spec(user_kernels, "braced", _spec("b", env={"WHERE": "${HOME}"}))
    _, specs = _doctor_json(capsys, "bare", "braced")
    assert "substitutes only ${NAME}" in specs["bare"]["clients"]["vscode"]["reason"]
    assert specs["bare"]["clients"]["vscode"]["fix"] == "write ${NAME} in WHERE"
    assert specs["braced"]["clients"]["vscode"]["works"]


def test_a_fifo_planted_as_a_specs_program_hangs_no_doctor(user_kernels, tmp_path):
    """Someone who can write a shared kernels dir points a spec's argv[0] at a FIFO (mode
    755): the doctor, which reads a wrapper's first bytes to see whether it execs the kernel,
    never waits on it, and says what it found."""
    fifo = tmp_path / "wrap"
    os.mkfifo(fifo)
    fifo.chmod(0o755)
    write_spec(user_kernels, "w", {"argv": [str(fifo), "python3", "-f", "{connection_file}"]})
    done = subprocess.run(
        [sys.executable, "-m", "kernelmagic", "doctor", "w"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (0, 1) and "w" in done.stdout, done.stderr


# --- issue 33: verdicts checked against what the clients do (tests/test_verdicts.py) --------


def test_setsid_without_wait_cannot_start_and_its_advice_is_not_the_interrupt_mode(
    user_kernels, capsys
):
    """jupyter_client starts kernels as session leaders: setsid forks, exits, and the
    kernel dies with it. Every verdict said works; the advice was --interrupt-mode message."""
    write_spec(user_kernels, "forks", _spec("f", ["setsid", *KERNEL]))
    write_spec(user_kernels, "waits", _spec("w", ["setsid", "-w", *KERNEL]))
    status, specs = _doctor_json(capsys, "forks", "waits")
    assert status == 1
    forks = specs["forks"]
    assert [p["kind"] for p in forks["problems"]] == ["detaches"]
    assert not any(v["works"] for v in forks["clients"].values())
    assert "remove setsid" in forks["clients"]["jupyterlab"]["reason"]
    assert main(["patch", "forks", "--interrupt-mode", "message"]) == 0
    status, specs = _doctor_json(capsys, "forks")
    assert status == 1 and not specs["forks"]["clients"]["nbclient"]["works"]
    waits = specs_of(capsys, "waits")
    (lost,) = waits["problems"]
    assert lost["kind"] == "interrupt-lost" and "state is lost" in lost["message"]
    assert all(v["works"] for v in waits["clients"].values())
    launched = main(["doctor", "--launch", "--no-interrupt-check", "--json", "forks"])
    assert launched == 1  # what the clients see: it does not start


def specs_of(capsys, name: str) -> dict:
    return _doctor_json(capsys, name)[1][name]


def test_what_the_probes_found_decides_the_verdicts(user_kernels, bare_python, capsys):
    """An env value that is not a string (Popen's TypeError) and an interpreter without
    ipykernel were listed as problems while every verdict said works."""
    write_spec(user_kernels, "number", _spec("n", env={"THREADS": 4}))
    write_spec(user_kernels, "bare", _spec("b", [bare_python, *KERNEL[1:]]))
    # -X and its value as two words: no probe ran, and it was "ok" (a walk's find).
    split = [bare_python, "-X", "frozen_modules=off", *KERNEL[1:]]
    write_spec(user_kernels, "bare-x", _spec("x", split))
    _, specs = _doctor_json(capsys, "number", "bare", "bare-x")
    for name, kind in (("number", "structure"), ("bare", "launcher-import"),
                       ("bare-x", "launcher-import")):  # fmt: skip
        assert kind in [p["kind"] for p in specs[name]["problems"]]
        verdicts = specs[name]["clients"]
        assert not any(verdicts[c]["works"] for c in verdicts if c != "vscode"), name


def test_a_relative_program_is_judged_from_the_notebooks_dir_not_the_doctors(
    user_kernels, tmp_path, monkeypatch, capsys
):
    """Jupyter starts a relative argv[0] from the kernel's working dir (the notebook's):
    the verdict flipped with the doctor's own cwd, and its advice was wrong from both."""
    write_spec(user_kernels, "rel", _spec("r", ["venv/bin/python", *KERNEL[1:]]))
    here = tmp_path / "with"
    (here / "venv" / "bin").mkdir(parents=True)
    (here / "venv" / "bin" / "python").symlink_to(PYTHON)
    said = []
    for cwd in (here, tmp_path):
        monkeypatch.chdir(cwd)
        said.append(specs_of(capsys, "rel"))
    assert said[0] == said[1]
    (problem,) = said[0]["problems"]
    assert problem["kind"] == "relative-program" and "absolute path" in problem["message"]
    assert not said[0]["clients"]["nbclient"]["works"]


def test_a_tilde_program_is_expanded_as_jupyter_client_does(user_kernels, second_venv, capsys):
    os.symlink(second_venv, os.path.join(os.path.expanduser("~"), "env"))
    write_spec(user_kernels, "tilde", _spec("t", ["~/env/bin/python", *KERNEL[1:]]))
    assert specs_of(capsys, "tilde")["problems"] == []


def test_vscode_runs_argv_of_a_spec_whose_provisioner_is_missing(user_kernels, capsys):
    """kernelmagic's own rule: VS Code ignores provisioners. A missing one hides the spec
    from Jupyter, not from VS Code."""
    stanza = {"provisioner_name": "km-no-such-provisioner"}
    write_spec(user_kernels, "gone", _spec("g", metadata={"kernel_provisioner": stanza}))
    clients = specs_of(capsys, "gone")["clients"]
    assert clients["vscode"]["works"], clients["vscode"]
    assert "ignores provisioners" in clients["vscode"]["reason"]
    assert not clients["jupyter-server"]["works"] and not clients["voila"]["works"]
    assert "another kernel of its language" in clients["voila"]["reason"]


def test_a_kernel_json_over_4_mib_is_not_read_and_not_called_hidden(user_kernels, capsys):
    """kernelmagic stops reading at 4 MiB; Jupyter reads any size. It says what it did not
    read and claims nothing of Jupyter: not "hidden", not "missing"."""
    pad = "x" * (4 * 2**20 + 1)
    write_spec(user_kernels, "huge", _spec("h", metadata={"pad": pad}))
    (problem,) = specs_of(capsys, "huge")["problems"]
    assert problem["kind"] == "not-read"
    assert "Jupyter reads any size" in problem["message"]
    assert main(["list"]) == 0
    assert "hidden by Jupyter" not in capsys.readouterr().out
    clients = specs_of(capsys, "huge")["clients"]
    assert all(v["works"] is None for v in clients.values())


def test_doctor_launch_names_every_spec_it_did_not_start(user_kernels, capsys):
    """Provisioner specs (unless named), hidden specs and the ones not read were left out
    of `doctor --launch` without a word."""
    expected = {"broken": "cannot read kernel.json", "huge": "over 4 MiB",
                "gone": "km-no-such-provisioner"}  # fmt: skip
    if importlib_found("gateway_provisioners"):  # it needs jupyter_client >= 7.4
        stanza = {"provisioner_name": "distributed-provisioner", "config": {"remote_hosts": ["h"]}}
        write_spec(user_kernels, "far", _spec("far", metadata={"kernel_provisioner": stanza}))
        expected["far"] = "provisioner distributed-provisioner"
    stanza = {"provisioner_name": "km-no-such-provisioner"}
    write_spec(user_kernels, "gone", _spec("g", metadata={"kernel_provisioner": stanza}))
    write_spec(user_kernels, "broken", raw="{")
    write_spec(user_kernels, "huge", _spec("h", metadata={"pad": "x" * (4 * 2**20 + 1)}))
    write_spec(user_kernels, "fine", _spec("fine"))
    capsys.readouterr()
    main(["doctor", "--launch", "--no-interrupt-check", "--json"])
    launched = json.loads(capsys.readouterr().out)["specs"]
    assert launched["fine"]["started"]
    for name, says in expected.items():
        assert launched[name]["result"] == "not launched", name
        assert says in launched[name]["reason"], launched[name]
