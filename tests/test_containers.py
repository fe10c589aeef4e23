"""Container kernels (issue 25, part 2).

Charliecloud runs for real: a directory image made of this machine's own /usr (Debian's
python3 with Debian's ipykernel, R with IRkernel), started unprivileged by ``ch-run``
through jupyter_client and nbclient, with the runtime dir where no runtime binds by default.

Apptainer, Singularity and podman cannot be installed or run here. Their specs are tested
against recording stand-ins: each records the command line and the variables it was given,
and the Apptainer/Singularity one then models the runtime's documented environment rules
(user guide, "Environment and Metadata": --cleanenv, injected values evaluated once as in
double quotes unless --no-eval, PATH only through PREPEND_PATH/APPEND_PATH, LD_LIBRARY_PATH
not taken from the host) and runs the command on this machine, so a real kernel shows what
a value became. What they show is the shape of what we pass, not the runtimes themselves.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from helpers import PROBE, kernel_output, require_system_package, run_in_kernel, write_spec
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

from kernelmagic.domain import containers
from kernelmagic.frontends.cli import main

# Every character that a shell, Apptainer's evaluation or ch-run's quote stripping could
# change: the value must arrive as it is.
AWKWARD = "a $HOME `date` \\n \"dq\" 'sq' $(id) ${X:-y} ,:;"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

STAND_IN = r'''#!{python}
"""A recording stand-in for {name}: it records its command line and the variables it was
given to $KM_RECORD, then does what the runtime's documentation says it does with them.
The image's `python3` is the suite's own interpreter, which has ipykernel on every machine
(a system python3 has it only where Debian's python3-ipykernel is installed)."""
import json, os, subprocess, sys

def run_in_image(command, env):
    if command[0] == "python3":
        command = [{python!r}, *command[1:]]
    os.execvpe(command[0], command, env)

name = os.path.basename(sys.argv[0])
prefix = {{"apptainer": "APPTAINERENV_", "singularity": "SINGULARITYENV_"}}.get(name, "")
args = sys.argv[1:]
with open(os.environ["KM_RECORD"], "a") as out:
    given = {{k: v for k, v in os.environ.items() if prefix and k.startswith(prefix)}}
    if name == "podman":
        given = {{a: os.environ.get(a) for a in args if a.isidentifier() and a.isupper()}}
    out.write(json.dumps({{"argv": args, "env": given}}) + "\n")
if os.environ.get("KM_RECORD_ONLY"):
    sys.exit(0)
default_path = "{default_path}"
if name == "podman":  # run IMAGE COMMAND: -e NAME takes the value from here
    env, at = {{"PATH": default_path, "HOME": os.environ["HOME"]}}, 1
    while args[at].startswith("-"):
        if args[at] in ("-e", "-v", "-w"):
            if args[at] == "-e":
                key, _, value = args[at + 1].partition("=")
                env[key] = value if _ else os.environ.get(key, "")
            at += 1
        at += 1
    run_in_image(args[at + 1:], env)
assert args[0] == "exec", args
at, options = 1, []
while args[at].startswith("-"):
    options.append(args[at])
    at += 2 if args[at] in ("--bind", "-B", "--env", "--pwd") else 1
command = args[at + 1:]
env = {{"HOME": os.environ["HOME"], "LANG": "C", "PATH": default_path}}
for key, value in sorted(given.items()):  # injected: override, evaluated once
    key = key[len(prefix):]
    if not ("--no-eval" in options or "--compat" in options):
        quoted = value.replace('"', '\\"')  # what Apptainer does before it evaluates
        value = subprocess.run(
            ["sh", "-c", 'export V="' + quoted + '"; printf %s "$V"'],
            env={{**env, "V": ""}}, capture_output=True, text=True, check=True,
        ).stdout
    env[key] = value
env["PATH"] = ":".join(
    p for p in (env.pop("PREPEND_PATH", ""), env["PATH"], env.pop("APPEND_PATH", "")) if p
)
if "--cleanenv" not in options:  # the host's, where not set already (never LD_LIBRARY_PATH)
    for key, value in os.environ.items():
        if key not in env and key != "LD_LIBRARY_PATH" and not key.startswith(prefix):
            env[key] = value
run_in_image(command, env)
'''


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    """apptainer, singularity and podman stand-ins first on PATH; returns the record file."""
    bin_dir = tmp_path / "stand-in-bin"
    bin_dir.mkdir()
    for name in ("apptainer", "singularity", "podman"):
        script = bin_dir / name
        script.write_text(
            STAND_IN.format(python=sys.executable, name=name, default_path=DEFAULT_PATH)
        )
        script.chmod(0o755)
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("KM_RECORD", str(record))
    return record


def _records(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def _spec(user_kernels: Path, name: str) -> dict:
    return json.loads((user_kernels / name / "kernel.json").read_text())


def _sif(tmp_path: Path) -> Path:
    image = tmp_path / "images" / "geo.sif"
    image.parent.mkdir()
    image.write_bytes(b"not really a SIF: the stand-in runs the command here")
    return image


# --- Charliecloud, for real -----------------------------------------------------------------


def test_a_charliecloud_kernel_runs_in_its_image_with_the_specs_variables(
    charliecloud_image, runtime_dir_outside_binds, user_kernels, monkeypatch, capsys
):
    """Under a clean environment (--unset-env=*), with the connection file where ch-run
    binds nothing by default: the variable set by hand arrives exactly, the host's do not,
    the interpreter is the image's, user site-packages stay out, an interrupt arrives."""
    monkeypatch.setenv("KM_HOST_ONLY", "1")
    status = main(
        ["install", "box", "--container", str(charliecloud_image),
         "--container-option=--unset-env=*", "--env", f"GREETING={AWKWARD.replace('$', '$$')}",
         "--env", "PATH=/usr/bin:/bin"]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    spec = _spec(user_kernels, "box")
    assert spec["argv"][3:] == [containers.MARK, "{connection_file}"]
    assert spec["display_name"].startswith("Python 3.") and spec["language"] == "python"

    manager, client = start_new_kernel(kernel_name="box", startup_timeout=60)
    try:
        chunks: list[str] = []
        client.execute_interactive(
            PROBE, timeout=30, output_hook=lambda m: chunks.append(m["content"].get("text", ""))
        )
        seen = json.loads("".join(chunks))
        client.execute("import time; time.sleep(30)")
        time.sleep(0.5)
        manager.interrupt_kernel()
        deadline = time.monotonic() + 5
        error = None
        while time.monotonic() < deadline and error is None:
            message = client.get_iopub_msg(timeout=5)
            if message["msg_type"] == "error":
                error = message["content"]["ename"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert seen["env"]["GREETING"] == AWKWARD
    assert seen["env"]["PYTHONNOUSERSITE"] == "1"
    assert "KM_HOST_ONLY" not in seen["env"]
    assert seen["prefix"] == "/usr"  # the image's python3, not this venv's
    assert seen["env"]["PATH"] == "/usr/bin:/bin"
    assert error == "KeyboardInterrupt"  # the wrapper execs: the signal reaches the kernel


def test_a_bind_to_a_directory_the_image_lacks_says_so(
    charliecloud_image, runtime_dir_outside_binds, tmp_path, user_kernels, capsys
):
    """containers.md's `--bind DIR:/project` on an image without /project: ch-run could not
    make the mount point in the read-only image, and the error said only that."""
    data = tmp_path / "project"
    data.mkdir()
    argv = ["install", "box", "--container", str(charliecloud_image), "--bind",
            f"{data}:/no-such-dir-in-the-image"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("kernelmagic: error: charliecloud could not run "), err
    assert "a --bind target must already exist in the image" in err
    assert not (user_kernels / "box").exists()


def test_a_variable_added_later_reaches_the_container_and_undo_takes_it_back(
    charliecloud_image, runtime_dir_outside_binds, user_kernels, capsys
):
    """%kernel_env / env changes the wrapper with env in one write; undo restores both."""
    image = str(charliecloud_image)
    assert main(["install", "box", "--container", image, "--container-option=--unset-env=*"]) == 0
    before = _spec(user_kernels, "box")
    assert main(["env", "-k", "box", "LATER=${KM_LAUNCHER_VALUE}/x"]) == 0
    after = _spec(user_kernels, "box")
    assert after["argv"] != before["argv"] and "LATER" in after["argv"][2]
    os.environ["KM_LAUNCHER_VALUE"] = "from-the-launcher"  # expanded on the host side
    try:
        seen = run_in_kernel("box")
    finally:
        del os.environ["KM_LAUNCHER_VALUE"]
    assert seen["env"]["LATER"] == "from-the-launcher/x"
    assert main(["patch", "box", "--undo"]) == 0
    assert _spec(user_kernels, "box")["argv"] == before["argv"]


def test_a_newline_value_that_unset_env_would_drop_is_refused(
    charliecloud_image, runtime_dir_outside_binds, user_kernels, capsys
):
    """Walk K: a value holding a newline cannot be a line of ch-run's env file, so it is
    passed through from the environment, which `--unset-env=*` empties: the kernel silently
    went without it. Refused at install and at a later change, writing nothing."""
    image = str(charliecloud_image)
    argv = ["install", "box", "--container", image, "--container-option=--unset-env=*"]
    assert main([*argv, "--env", "NL=a\nb"]) == 2
    assert "NL holds a newline" in capsys.readouterr().err
    assert not (user_kernels / "box").exists()
    assert main(argv) == 0
    before = (user_kernels / "box" / "kernel.json").read_bytes()
    assert main(["env", "-k", "box", "NL=a\nb"]) == 2
    assert (user_kernels / "box" / "kernel.json").read_bytes() == before


def test_a_notebook_runs_in_the_container_through_nbclient(
    charliecloud_image, runtime_dir_outside_binds, user_kernels, tmp_path
):
    image = str(charliecloud_image)
    assert main(["install", "box", "--container", image, "--env", "PROJ_LIB=/opt/proj"]) == 0
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("import os, sys\nprint(sys.prefix)"),
        nbformat.v4.new_code_cell("print(os.environ['PROJ_LIB'])"),
    ]
    NotebookClient(notebook, kernel_name="box", timeout=60, startup_timeout=60).execute()
    printed = [c["outputs"][0]["text"].strip() for c in notebook.cells]
    assert printed == ["/usr", "/opt/proj"]


def test_a_container_kernel_starts_in_the_notebooks_directory(
    charliecloud_image, user_kernels, tmp_path, monkeypatch
):
    """Every host kernel starts in the notebook's dir; a Charliecloud one started in /, so
    read_csv("data.csv") broke. ch-run binds the host's $TMPDIR at /tmp itself; elsewhere
    the dir is bound where the (directory) image has it."""
    monkeypatch.setenv("USER", pwd.getpwuid(os.getuid()).pw_name)  # ch-run needs it
    monkeypatch.setenv("TMPDIR", str(tmp_path.parent))
    assert main(["install", "box", "--container", str(charliecloud_image)]) == 0
    project = tmp_path / "project"
    project.mkdir()
    (project / "data.csv").write_text("a,b\n1,2\n")
    code = "import os\nprint(os.getcwd())\nprint(open('data.csv').read().split()[1])"
    for where, reads in ((project, True), (Path("/usr/share"), False)):
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [
            nbformat.v4.new_code_cell(code if reads else "import os\nprint(os.getcwd())")
        ]
        NotebookClient(notebook, kernel_name="box", timeout=60, startup_timeout=60,
                       resources={"metadata": {"path": str(where)}}).execute()  # fmt: skip
        printed = notebook.cells[0]["outputs"][0]["text"].split()
        inside = f"/tmp/{where.relative_to(tmp_path.parent)}" if reads else str(where)
        assert printed == ([inside, "1,2"] if reads else [inside])


def test_an_r_kernel_runs_in_the_container(
    charliecloud_image, runtime_dir_outside_binds, user_kernels
):
    require_system_package(
        Path("/usr/lib/R/site-library/IRkernel").is_dir(), "IRkernel", "r-cran-irkernel"
    )
    image = str(charliecloud_image)
    assert main(["install", "rbox", "--kernel", "ir", "--container", image,
                 "--env", "R_GREETING=hello"]) == 0  # fmt: skip
    spec = _spec(user_kernels, "rbox")
    assert spec["language"] == "R" and spec["display_name"].startswith("R 4.")
    said = kernel_output("rbox", 'cat(Sys.getenv("R_GREETING"), R.home())')
    assert said == "hello /usr/lib/R"


def test_the_doctor_looks_inside_the_image(
    charliecloud_image, runtime_dir_outside_binds, user_kernels, tmp_path, capsys
):
    image = tmp_path / "moved-image"
    os.symlink(charliecloud_image, image)
    assert main(["install", "box", "--container", str(image)]) == 0
    capsys.readouterr()
    assert main(["doctor", "box"]) == 0, capsys.readouterr().out

    assert main(["env", "-k", "box", "PYTHONHOME=/nonexistent"]) == 0
    capsys.readouterr()
    assert main(["doctor", "box", "--json"]) == 1
    (problem,) = json.loads(capsys.readouterr().out)["specs"]["box"]["problems"]
    assert problem["kind"] == "cannot-start"
    assert f"python3 in the image {image}" in problem["message"]

    image.unlink()
    assert main(["doctor", "box", "--json"]) == 1
    kinds = [p["kind"] for p in json.loads(capsys.readouterr().out)["specs"]["box"]["problems"]]
    assert kinds == ["missing-image"]  # the image is not probed when it is not there


def test_an_interpreter_under_tmp_is_said_to_need_the_hosts_tmp(
    charliecloud_image, user_kernels, monkeypatch, capsys
):
    """ch-run binds the starting client's $TMPDIR at the image's /tmp: an interpreter
    under /tmp is the host's /tmp, found while TMPDIR is unset and hidden when a client (a
    batch job) has its own. Install's probe passed; install and the doctor now say it, and
    a start under another TMPDIR fails as they say."""
    env_dir = Path(tempfile.mkdtemp(prefix="kernelmagic-env-", dir="/tmp"))
    try:
        (env_dir / "bin").mkdir()
        (env_dir / "bin" / "python3").symlink_to("/usr/bin/python3")  # the image's python3
        monkeypatch.delenv("TMPDIR", raising=False)
        monkeypatch.setattr(tempfile, "tempdir", None)
        monkeypatch.setenv("USER", pwd.getpwuid(os.getuid()).pw_name)  # ch-run needs it
        python = str(env_dir / "bin" / "python3")
        assert main(["install", "box", "--container", str(charliecloud_image),
                     "--python", python]) == 0  # fmt: skip
        said = capsys.readouterr().out
        assert f"its interpreter {python} is under /tmp" in said, said
        assert main(["doctor", "box", "--json"]) == 0  # a note: it starts here
        (note,) = json.loads(capsys.readouterr().out)["specs"]["box"]["problems"]
        assert (note["kind"], note["severity"]) == ("tmp-bind", "note")
        assert run_in_kernel("box")["prefix"] == "/usr"

        job_tmp = Path(tempfile.mkdtemp(prefix="kernelmagic-jobtmp-", dir="/var/tmp"))
        monkeypatch.setenv("TMPDIR", str(job_tmp))  # a batch job's own
        monkeypatch.setattr(tempfile, "tempdir", None)
        assert main(["doctor", "box", "--json"]) == 1
        problems = json.loads(capsys.readouterr().out)["specs"]["box"]["problems"]
        problem = next(p for p in problems if p["kind"] == "tmp-bind")
        assert problem["severity"] == "problem", problems
        assert f"TMPDIR={job_tmp}" in problem["message"]
        with pytest.raises(RuntimeError):  # what the doctor predicted
            start_new_kernel(kernel_name="box", startup_timeout=15)
        shutil.rmtree(job_tmp, ignore_errors=True)
    finally:
        shutil.rmtree(env_dir, ignore_errors=True)


def test_install_refuses_what_cannot_run_and_writes_nothing(
    charliecloud_image, user_kernels, tmp_path, capsys
):
    image = str(charliecloud_image)
    refused = {
        ("--container", str(tmp_path / "nowhere")): "no container image at",
        ("--bind", "/data"): "--bind goes with --container IMAGE",
        ("--container", image, "--from-conda", "base"): "a container kernel runs the image's",
        ("--container", image, "--like", "python3"): "it cannot go with --container",
        ("--container", image, "--kernel", "julia"): f"could not run julia in {image}",
        ("--container", image, "--python", "/opt/none/python"): "could not run /opt/none",
        ("--container", image, "--program", "R"): "--program is for --kernel ir and julia",
        ("--container", str(_sif(tmp_path)), "--runtime", "charliecloud", "--bind", ":x"): (
            "give SRC or SRC:DST"
        ),
    }
    for extra, message in refused.items():
        status = main(["install", "nope", *extra])
        err = capsys.readouterr().err
        assert status in (1, 2) and message in err, (extra, err)
        assert "Traceback" not in err
    assert not (user_kernels / "nope").exists()


def test_a_runtime_missing_from_the_path_is_a_failure_not_a_usage_error(
    user_kernels, tmp_path, monkeypatch, capsys
):
    """Walk V: no apptainer on PATH exited 2 (bad arguments), where no conda found exits 1:
    the arguments are right, the environment lacks the program."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert main(["install", "x", "--container", str(_sif(tmp_path))]) == 1
    assert capsys.readouterr().err.startswith("kernelmagic: error: no apptainer on PATH; ")
    assert not (user_kernels / "x").exists()


# --- Apptainer, Singularity and podman: recording stand-ins ---------------------------------


def test_an_apptainer_spec_follows_the_user_guides_environment_rules(
    stand_ins, user_kernels, tmp_path, runtime_dir_outside_binds, monkeypatch
):
    """Values are escaped against Apptainer's one evaluation, so they arrive exactly; PATH
    changes only through PREPEND_PATH/APPEND_PATH; an addition to LD_LIBRARY_PATH leaves no
    empty entry (the container has none of its own); --cleanenv keeps the host's out."""
    image = _sif(tmp_path)
    monkeypatch.setenv("KM_HOST_ONLY", "1")
    status = main(
        ["install", "geo", "--container", str(image), "--container-option=--cleanenv",
         "--bind", "/data:/srv/data",
         "--env", f"GREETING={AWKWARD.replace('$', '$$')}",
         "--env", "PATH=/opt/tool/bin:${PATH}:/end",
         "--env", "LD_LIBRARY_PATH=/opt/lib:${LD_LIBRARY_PATH}"]
    )  # fmt: skip
    assert status == 0
    assert _spec(user_kernels, "geo")["metadata"]["kernelmagic"]["container"]["runtime"] == (
        "apptainer"
    )
    stand_ins.write_text("")
    seen = run_in_kernel("geo")
    (started,) = _records(stand_ins)
    connection = started["argv"][-1]
    assert connection.startswith(str(runtime_dir_outside_binds))
    assert started["argv"] == [
        "exec", "--cleanenv", "--bind", str(runtime_dir_outside_binds), "--bind",
        "/data:/srv/data", "--bind", os.getcwd(), "--pwd", os.getcwd(), str(image),
        "python3", "-m", "ipykernel_launcher", "-f", connection,
    ]  # fmt: skip
    escaped = AWKWARD.replace("\\", "\\\\").replace("$", "\\$").replace("`", "\\`")
    assert started["env"] == {
        "APPTAINERENV_GREETING": escaped,
        "APPTAINERENV_PREPEND_PATH": "/opt/tool/bin",
        "APPTAINERENV_APPEND_PATH": "/end",
        "APPTAINERENV_LD_LIBRARY_PATH": "/opt/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}",
        "APPTAINERENV_PYTHONNOUSERSITE": "1",
    }
    assert seen["env"]["GREETING"] == AWKWARD
    assert seen["env"]["PATH"] == f"/opt/tool/bin:{DEFAULT_PATH}:/end"
    assert seen["env"]["LD_LIBRARY_PATH"] == "/opt/lib"
    assert "KM_HOST_ONLY" not in seen["env"]


@pytest.mark.parametrize(
    ("runtime", "options", "escaped"),
    [("singularity", [], True), ("apptainer", ["--container-option=--no-eval"], False)],
)
def test_singularity_and_no_eval_shapes(
    stand_ins, user_kernels, tmp_path, monkeypatch, runtime, options, escaped
):
    """Singularity takes SINGULARITYENV_; under --no-eval (or --compat) values go as they are."""
    image = _sif(tmp_path)
    assert main(["install", "s", "--container", str(image), "--runtime", runtime, *options,
                 "--env", f"GREETING={AWKWARD.replace('$', '$$')}"]) == 0  # fmt: skip
    argv = _spec(user_kernels, "s")["argv"]
    stand_ins.write_text("")
    monkeypatch.setenv("KM_RECORD_ONLY", "1")
    monkeypatch.setenv("GREETING", AWKWARD)  # as Jupyter sets it from env
    subprocess.run([*argv[:4], "relative/kernel-1.json"], cwd=tmp_path, check=True)
    (started,) = _records(stand_ins)
    prefix = "SINGULARITYENV_" if runtime == "singularity" else "APPTAINERENV_"
    value = AWKWARD.replace("\\", "\\\\").replace("$", "\\$").replace("`", "\\`")
    assert started["env"][f"{prefix}GREETING"] == (value if escaped else AWKWARD)
    assert started["argv"][-1] == str(tmp_path / "relative" / "kernel-1.json")
    assert f"--bind {tmp_path / 'relative'}" in " ".join(started["argv"])


def test_a_podman_spec_passes_each_variable_by_name(stand_ins, user_kernels, tmp_path, monkeypatch):
    assert main(["install", "pod", "--container", "ghcr.io/example/geo:1", "--bind", "/data",
                 "--env", "GREETING=hi"]) == 0  # fmt: skip
    spec = _spec(user_kernels, "pod")
    assert spec["metadata"]["kernelmagic"]["container"]["runtime"] == "podman"
    stand_ins.write_text("")
    monkeypatch.setenv("KM_RECORD_ONLY", "1")
    monkeypatch.setenv("GREETING", AWKWARD)
    connection = tmp_path / "run" / "kernel-2.json"
    subprocess.run([*spec["argv"][:4], str(connection)], check=True)
    (started,) = _records(stand_ins)
    run_dir = str(connection.parent)
    assert started["argv"] == [
        "run", "--rm", "-i", "--network=host", "-v", f"{run_dir}:{run_dir}", "-v",
        "/data:/data", "-v", f"{os.getcwd()}:{os.getcwd()}", "-w", os.getcwd(), "-e",
        "GREETING", "-e", "PYTHONNOUSERSITE=1", "ghcr.io/example/geo:1",
        "python3", "-m", "ipykernel_launcher", "-f", str(connection),
    ]  # fmt: skip
    assert started["env"]["GREETING"] == AWKWARD


def test_the_runtime_is_guessed_from_the_image(stand_ins, tmp_path, monkeypatch):
    sandbox = tmp_path / "sandbox"
    (sandbox / ".singularity.d").mkdir(parents=True)
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    squash = tmp_path / "image.sqfs"
    squash.write_bytes(b"")
    environ = dict(os.environ)
    guesses = {
        str(_sif(tmp_path)): "apptainer",
        str(sandbox): "apptainer",
        str(plain_dir): "charliecloud",
        str(squash): "charliecloud",
        "docker://python:3.12": "apptainer",
        "ghcr.io/example/geo:1": "podman",
    }
    for image, runtime in guesses.items():
        assert containers.guess_runtime(image, environ) == runtime, image
    only_singularity = tmp_path / "only"
    only_singularity.mkdir()
    os.symlink(shutil.which("singularity"), only_singularity / "singularity")
    sif = str(tmp_path / "images" / "geo.sif")
    assert containers.guess_runtime(sif, {"PATH": str(only_singularity)}) == "singularity"
    with pytest.raises(Exception, match="no container image at"):
        containers.image_reference("elsewhere.sif")
    odd = tmp_path / "image.tar"
    odd.write_bytes(b"")
    with pytest.raises(Exception, match="name it with --runtime"):
        containers.guess_runtime(str(odd), environ)


def test_every_writer_keeps_the_wrapper_in_step(stand_ins, user_kernels, tmp_path, capsys):
    """clone, env --unset, --dry-run and a hand-edited argv (left alone)."""
    assert main(["install", "pod", "--container", "ghcr.io/example/geo:1",
                 "--env", "A=1", "--env", "B=2"]) == 0  # fmt: skip
    assert main(["clone", "pod", "pod2", "--env", "C=3"]) == 0
    assert "-e C" in _spec(user_kernels, "pod2")["argv"][2]
    capsys.readouterr()
    assert main(["env", "-k", "pod", "--unset", "A", "--dry-run"]) == 0
    assert "-e A" in capsys.readouterr().out  # the diff shows the wrapper changing too
    assert main(["env", "-k", "pod", "--unset", "A"]) == 0
    argv = _spec(user_kernels, "pod")["argv"][2]
    assert "-e A" not in argv and "-e B" in argv
    path = user_kernels / "pod" / "kernel.json"
    spec = json.loads(path.read_text())
    spec["argv"] = ["/usr/local/bin/my-own-wrapper", "{connection_file}"]
    path.write_text(json.dumps(spec))
    assert main(["env", "-k", "pod", "D=4"]) == 0
    assert _spec(user_kernels, "pod")["argv"] == spec["argv"]


def test_export_then_apply_shows_what_the_container_runs(stand_ins, user_kernels, tmp_path, capsys):
    assert main(["install", "pod", "--container", "ghcr.io/example/geo:1",
                 "--container-option=--gpus=all"]) == 0  # fmt: skip
    document = tmp_path / "kernels.json"
    assert main(["export", "pod", "-o", str(document)]) == 0
    shutil.rmtree(user_kernels / "pod")
    capsys.readouterr()
    assert main(["apply", str(document), "--dry-run"]) == 0
    review = capsys.readouterr().out
    assert "runs in a container:" in review and "--gpus=all ghcr.io/example/geo:1" in review
    assert not (user_kernels / "pod").exists()
    assert main(["apply", str(document)]) == 0
    assert "--gpus=all" in _spec(user_kernels, "pod")["argv"][2]


def test_the_magic_installs_a_container_kernel(ip, stand_ins, user_kernels):
    ip.run_line_magic("kernel_install", "pod --container ghcr.io/example/geo:1 --env X=1")
    spec = _spec(user_kernels, "pod")
    assert spec["argv"][3] == containers.MARK and "-e X" in spec["argv"][2]


@pytest.mark.parametrize(
    "record",
    [
        {"image": 3},
        [],
        {"image": "/x", "runtime": "docker", "program": "/x", "kernel": ["python3"]},
        {"image": "/x", "runtime": "podman", "program": "/x", "kernel": [], "binds": []},
        {"image": "/x", "runtime": "podman", "program": "/x", "kernel": ["p", 1]},
    ],
)
def test_a_malformed_container_record_is_not_believed(user_kernels, capsys, record):
    """A colleague's kernel.json with a container record of the wrong shape: writers leave
    its argv alone, the doctor reports the spec without a traceback."""
    argv = ["/bin/sh", "-c", "exit 0", containers.MARK, "{connection_file}"]
    write_spec(
        user_kernels,
        "odd",
        {
            "argv": argv,
            "display_name": "odd",
            "language": "python",
            "metadata": {"kernelmagic": {"source": "current", "container": record}},
        },
    )
    assert main(["env", "-k", "odd", "A=1"]) == 0
    assert _spec(user_kernels, "odd")["argv"] == argv
    main(["doctor", "odd"])
    assert "Traceback" not in capsys.readouterr().err


# --- issue 34: no value in ch-run's argv; the wrapper's variables are not the spec's -------

RECORDING_CH_RUN = """#!/bin/sh
# ch-run as it is, its command line recorded first (what /proc/PID/cmdline shows everyone)
printf '%s\\0' "$@" > "$KM_RECORD"
exec /usr/bin/ch-run "$@"
"""


def test_charliecloud_values_never_appear_on_ch_runs_command_line(
    charliecloud_image, runtime_dir_outside_binds, user_kernels, tmp_path, monkeypatch, capsys
):
    bin_dir = tmp_path / "recording-bin"
    bin_dir.mkdir()
    (bin_dir / "ch-run").write_text(RECORDING_CH_RUN)
    (bin_dir / "ch-run").chmod(0o755)
    record = tmp_path / "ch-run-argv"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("KM_RECORD", str(record))
    secret = "s3cret-" + "q" * 20
    multiline = "first line\nsecond line"
    status = main(
        ["install", "box", "--container", str(charliecloud_image),
         "--container-option=--unset-env=KM_*", "--env", f"DB_PASSWORD={secret}",
         "--env", f"GREETING={AWKWARD.replace('$', '$$')}", "--env", f"NOTES={multiline}"]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    seen = run_in_kernel("box")["env"]
    argv = record.read_bytes().split(b"\0")
    assert b"--set-env=/dev/fd/3" in argv
    for value in (secret, AWKWARD, multiline):
        assert not [word for word in argv if value.encode() in word], value
    assert seen["DB_PASSWORD"] == secret and seen["GREETING"] == AWKWARD
    assert seen["NOTES"] == multiline  # not a line of the env file: passed through


WRAPPER_NAMES = {name: f"spec's {name}" for name in ("d", "f", "p", "s", "r", "b", "e", "n")}


def test_the_wrappers_own_variables_never_change_the_specs(
    charliecloud_image, stand_ins, runtime_dir_outside_binds, user_kernels, tmp_path
):
    settings = [f"{name}={value}" for name, value in WRAPPER_NAMES.items()]
    settings.append("LD_LIBRARY_PATH=/opt/lib:${LD_LIBRARY_PATH}")  # esc's b and r at work
    for name, image in (("box", str(charliecloud_image)), ("geo", str(_sif(tmp_path)))):
        assert main(["install", name, "--container", image, *(
            word for setting in settings for word in ("--env", setting))]) == 0  # fmt: skip
        seen = run_in_kernel(name)["env"]
        assert {k: seen.get(k) for k in WRAPPER_NAMES} == WRAPPER_NAMES, name


@pytest.mark.parametrize(
    ("option", "escaped"),
    [("--no-eval=true", False), ("--no-eval=1", False), ("--compat=True", False),
     ("--no-eval=false", True)],
)  # fmt: skip
def test_no_eval_written_with_a_value_is_no_eval(stand_ins, user_kernels, tmp_path, option,
                                                 escaped):  # fmt: skip
    image = str(_sif(tmp_path))
    container = containers.Container(image, "apptainer", ("python3",), "/x", options=(option,))
    assert container.evaluates_values is escaped
    assert main(["install", "s", "--container", image, f"--container-option={option}",
                 "--env", "GREETING=a$$b"]) == 0  # fmt: skip
    assert ('esc "$GREETING' in _spec(user_kernels, "s")["argv"][2]) is escaped


def test_an_image_others_can_change_is_not_probed(stand_ins, user_kernels, tmp_path, capsys):
    """Issue 34, item 3: the doctor asked the image's interpreter through the runtime even
    where a group member could put another image in its place."""
    image = _sif(tmp_path)
    assert main(["install", "geo", "--container", str(image)]) == 0
    image.parent.chmod(0o777)  # the images dir of a shared scratch space
    stand_ins.write_text("")
    capsys.readouterr()
    main(["doctor", "geo", "--json"])
    problems = json.loads(capsys.readouterr().out)["specs"]["geo"]["problems"]
    (refused,) = [p for p in problems if p["kind"] == "not-probed"]
    assert f"{image.parent} is writable by others" in refused["message"]
    assert stand_ins.read_text() == ""  # the runtime was never started
