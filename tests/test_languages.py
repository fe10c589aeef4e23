"""Every language on the cluster: R (IRkernel) for real with real Lmod modules, Julia through
a stand-in, and any installed spec as a template (--like)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from helpers import kernel_output, require_system_package, write_spec
from IPython.core.error import UsageError
from nbclient import NotebookClient

from kernelmagic.frontends.cli import main
from kernelmagic.operations import doctor, launching


@pytest.fixture(scope="session")
def r_with_irkernel():
    found = shutil.which("R")
    ok = (
        found
        and subprocess.run(
            [found, "--slave", "-e", "library(IRkernel)"], capture_output=True
        ).returncode
        == 0
    )
    require_system_package(bool(ok), "R with IRkernel", "r-cran-irkernel")
    return found


@pytest.fixture
def geo_module(tmp_path, monkeypatch, lmod_available, r_with_irkernel):
    """A real Lmod modulefile, as HPC centres write one for an R stack: data, a personal R
    library, a bin dir."""
    root = tmp_path / "modulefiles"
    geo = tmp_path / "opt" / "geo"
    for sub in ("share/gdal", "rlib", "bin"):
        (geo / sub).mkdir(parents=True)

    def write(data: str) -> None:
        (root / "geo").mkdir(parents=True, exist_ok=True)
        (root / "geo" / "1.0.lua").write_text(
            textwrap.dedent(f"""\
                setenv("GDAL_DATA", "{data}")
                setenv("R_LIBS_USER", "{geo / "rlib"}")
                prepend_path("PATH", "{geo / "bin"}")
            """)
        )

    write(str(geo / "share" / "gdal"))
    monkeypatch.setenv("MODULEPATH", str(root))
    return {"geo": geo, "write": write}


def spec_json(kernels: Path, name: str) -> dict:
    return json.loads((kernels / name / "kernel.json").read_text())


def run_r(kernel_name: str, code: str) -> str:
    return kernel_output(kernel_name, code, timeout=90)  # R starts slower than Python


def test_r_kernel_from_a_module_sees_its_variables(ip, user_kernels, geo_module, capsys):
    ip.run_line_magic("kernel_install", "rgeo --kernel ir --modules geo/1.0")
    spec = spec_json(user_kernels, "rgeo")
    assert spec["argv"][1:] == ["--slave", "-e", "IRkernel::main()", "--args", "{connection_file}"]
    assert os.path.isabs(spec["argv"][0]) and spec["language"] == "R"
    assert spec["display_name"].startswith("R ") and spec["display_name"].endswith("(rgeo)")
    assert {"logo-64x64.png", "kernel.js"} <= {p.name for p in (user_kernels / "rgeo").iterdir()}
    assert spec["metadata"]["kernelmagic"]["kernel_kind"] == "ir"
    data = str(geo_module["geo"] / "share" / "gdal")
    assert spec["env"]["GDAL_DATA"] == data
    printed = run_r("rgeo", 'cat(Sys.getenv("GDAL_DATA"), Sys.getenv("R_LIBS_USER"), sep="|")')
    assert printed == f"{data}|{geo_module['geo'] / 'rlib'}"
    assert main(["doctor", "rgeo"]) == 0, capsys.readouterr().out


def test_an_r_profile_that_prints_does_not_break_install_or_refresh(
    user_kernels, r_with_irkernel, capsys
):
    """Walk J: an ~/.Rprofile that greets ("Welcome to R on the cluster") made `install
    --kernel ir` and `refresh` fail with "not a regular file: 4.2/kernel.json": the probe's
    answers were read by position, and R printed the greeting first."""
    Path(os.environ["HOME"], ".Rprofile").write_text(
        'cat("Welcome to R on the cluster\\n"); cat("no newline after this")\n'
    )
    snippet = Path(os.environ["HOME"], "s.sh")
    snippet.write_text("export KM_R=1\n")
    assert main(["install", "rprof", "--kernel", "ir", "--snippet-file", str(snippet)]) == 0
    spec = spec_json(user_kernels, "rprof")
    assert spec["argv"][0] == os.path.realpath(spec["argv"][0]) and spec["language"] == "R"
    assert spec["display_name"].startswith("R ") and "Welcome" not in spec["display_name"]
    assert main(["refresh", "rprof"]) == 0, capsys.readouterr()
    assert run_r("rprof", 'cat(Sys.getenv("KM_R"))').endswith("1")  # after R's greeting


def test_an_r_notebook_on_a_module_spec_sees_the_modules_variables(user_kernels, geo_module):
    assert main(["install", "rnb", "--kernel", "ir", "--modules", "geo/1.0"]) == 0
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell('cat(Sys.getenv("GDAL_DATA"))')],
        metadata={"kernelspec": {"name": "rnb", "display_name": "R", "language": "R"}},
    )
    NotebookClient(nb, timeout=120, kernel_name="rnb").execute()
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert text == str(geo_module["geo"] / "share" / "gdal")


def test_refresh_and_clone_of_an_r_spec(user_kernels, geo_module, capsys):
    assert main(["install", "rgeo", "--kernel", "ir", "--modules", "geo/1.0"]) == 0
    geo_module["write"]("/newer/gdal")
    assert main(["refresh", "rgeo"]) == 0
    spec = spec_json(user_kernels, "rgeo")
    assert spec["env"]["GDAL_DATA"] == "/newer/gdal"
    assert spec["argv"][2:4] == ["-e", "IRkernel::main()"]
    assert main(["clone", "rgeo", "rgeo-big"]) == 0
    clone = spec_json(user_kernels, "rgeo-big")
    assert clone["display_name"].endswith("(rgeo-big)") and clone["argv"] == spec["argv"]


def test_like_an_irkernel_spec_finds_r_in_the_module_environment(user_kernels, geo_module):
    """The spec IRkernel ships (argv[0] a bare "R"), installed by hand, used as a template."""
    shipped = subprocess.run(
        ["R", "--slave", "-e", 'cat(system.file("kernelspec", package = "IRkernel"))'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    shutil.copytree(shipped, user_kernels / "ir")
    assert main(["install", "r-like", "--like", "ir", "--modules", "geo/1.0"]) == 0
    spec = spec_json(user_kernels, "r-like")
    assert spec["argv"][0] == shutil.which("R") and spec["language"] == "R"
    assert spec["env"]["GDAL_DATA"] == str(geo_module["geo"] / "share" / "gdal")
    assert (user_kernels / "r-like" / "logo-64x64.png").exists()
    assert "IRkernel" in run_r("r-like", "cat(environmentName(asNamespace('IRkernel')))")


def test_doctor_on_an_r_spec_that_cannot_load_irkernel(user_kernels, r_with_irkernel, tmp_path):
    """Broken honestly: the spec's env points R's site library at an empty dir."""
    assert main(["install", "rok", "--kernel", "ir", "--capture", "none"]) == 0
    empty = tmp_path / "empty-site-library"
    empty.mkdir()
    assert main(["env", "-k", "rok", f"R_LIBS_SITE={empty}"]) == 0
    report = doctor.diagnose(["rok"])
    problems = report.diagnoses[0].problems
    assert [p.kind for p in problems] == ["launcher-import"]
    assert "cannot load IRkernel" in str(problems[0])
    assert "install.packages" in str(problems[0])


def test_an_r_spec_behind_a_prefix_is_probed_as_r(user_kernels, r_with_irkernel, tmp_path):
    """`patch --argv-prefix "nice -n 10"` on an R spec: the probe ran nice with R's arguments
    ("unrecognized option '--slave'"), called it cannot-start in every client, and a notebook
    naming it broken, while every client ran it. The probe runs R; a broken one still shows."""
    assert main(["install", "rn", "--kernel", "ir", "--capture", "none"]) == 0
    assert main(["patch", "rn", "--argv-prefix", "nice -n 10"]) == 0
    (diagnosis,) = doctor.diagnose(["rn"]).diagnoses
    assert not [p for p in diagnosis.problems if p.severity == "problem"], diagnosis.problems
    assert all(v.works for v in diagnosis.clients if v.client != "vscode")
    assert kernel_output("rn", "cat(6 * 7)").strip() == "42"
    empty = tmp_path / "empty-site-library"
    empty.mkdir()
    assert main(["env", "-k", "rn", f"R_LIBS_SITE={empty}"]) == 0
    (diagnosis,) = doctor.diagnose(["rn"]).diagnoses
    assert [p.kind for p in diagnosis.problems] == ["launcher-import"]


def test_an_r_spec_in_message_mode_loses_its_interrupts(user_kernels, r_with_irkernel):
    """IRkernel answers no interrupt_request: in message mode a server's interrupt returned
    204 and the cell ran on, while the doctor said nothing (and for `setsid -w R` it advised
    message mode). The fix, run as printed, makes the interrupt arrive."""
    assert main(["install", "rm", "--kernel", "ir", "--capture", "none"]) == 0
    assert main(["patch", "rm", "--interrupt-mode", "message"]) == 0
    (diagnosis,) = doctor.diagnose(["rm"]).diagnoses
    (lost,) = [p for p in diagnosis.problems if p.kind == "interrupt-lost"]
    assert lost.fix == "patch rm --interrupt-mode signal"
    assert main(shlex.split(lost.fix)) == 0
    (diagnosis,) = doctor.diagnose(["rm"]).diagnoses
    assert "interrupt-lost" not in [p.kind for p in diagnosis.problems]
    assert launching.launch("rm", 120).interrupted is True


def test_doctor_launch_leaves_no_kernel_a_wrapper_started_apart(user_kernels, r_with_irkernel):
    """`setsid -w R ...`: shutdown killed setsid's process group, and IRkernel, in a session
    of its own and not watching its parent, ran on (adopted by init) after every launch."""
    marker = f"km-apart-{os.getpid()}"
    argv = ["setsid", "-w", r_with_irkernel, "--slave", "-e", "IRkernel::main()", "--args",
            "{connection_file}", marker]  # fmt: skip
    write_spec(user_kernels, "rs", {"argv": argv, "display_name": "R", "language": "R"})
    assert launching.launch("rs", 120, interrupt=False).started
    deadline = time.monotonic() + 10
    while subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the kernel outlived its launch"
        time.sleep(0.1)


def test_an_r_without_irkernel_is_refused_at_install(ip, user_kernels, r_with_irkernel, tmp_path):
    empty = tmp_path / "empty-site-library"
    empty.mkdir()
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("kernel_install", "rbad --kernel ir", f"export R_LIBS_SITE={empty}\n")
    assert "cannot load IRkernel" in str(info.value)
    assert "install.packages" in str(info.value)
    assert not (user_kernels / "rbad").exists()


@pytest.fixture
def fake_julia(tmp_path, monkeypatch):
    """A stand-in for julia: Julia cannot be installed on our test machines, so this script
    answers the questions kernelmagic asks a real julia (where it lives, its version, where
    IJulia is, the active project, whether IJulia has run_kernel) and passes the doctor's
    `import IJulia` probe, the way a julia with IJulia would."""
    home = tmp_path / "julia-1.10"
    (home / "bin").mkdir(parents=True)
    ijulia = tmp_path / "depot" / "packages" / "IJulia" / "abc"
    (ijulia / "deps").mkdir(parents=True)
    (ijulia / "deps" / "logo-64x64.png").write_bytes(b"png")
    project = tmp_path / "depot" / "environments" / "v1.10" / "Project.toml"
    project.parent.mkdir(parents=True)
    project.write_text("")
    julia = home / "bin" / "julia"
    julia.write_text(
        textwrap.dedent(f"""\
            #!/bin/sh
            case "$*" in
              *pkgdir*) echo "a site's banner"
                        printf '%s\\n' "" kernelmagic-facts: "{julia}" 1.10 "{ijulia}" \\
                            "{project}" true ;;
              *"import IJulia"*) exit 0 ;;
              *) exit 1 ;;
            esac
        """)
    )
    julia.chmod(0o755)
    return {"julia": julia, "ijulia": ijulia, "project": project}


def test_julia_kernel_through_a_stand_in(ip, user_kernels, fake_julia, capsys):
    bin_dir = fake_julia["julia"].parent
    ip.run_cell_magic("kernel_install", "jl --kernel julia", f'export PATH="{bin_dir}:$PATH"\n')
    spec = spec_json(user_kernels, "jl")
    assert spec["argv"] == [
        str(fake_julia["julia"]),
        "-i",
        "--color=yes",
        f"--project={fake_julia['project'].parent}",
        "-e",
        "import IJulia; IJulia.run_kernel()",
        "{connection_file}",
    ]
    assert spec["language"] == "julia" and spec["display_name"] == "Julia 1.10 (jl)"
    assert (user_kernels / "jl" / "logo-64x64.png").read_bytes() == b"png"
    assert doctor.diagnose(["jl"]).healthy
    assert main(["install", "jl2", "--kernel", "julia", "--program", str(fake_julia["julia"])]) == 0


def test_language_options_refuse_what_does_not_go_together(user_kernels, capsys):
    write_spec(user_kernels, "t")
    cases = [
        ["install", "x", "--kernel", "ir", "--python", sys.executable],
        ["install", "x", "--like", "t", "--kernel", "julia"],
        ["install", "x", "--program", "/bin/true"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
    assert main(["install", "x", "--kernel", "julia", "--program", "/no/julia"]) == 2
    assert not (user_kernels / "x").exists()


def test_a_language_missing_from_the_environment_is_a_failure_not_a_usage_error(
    user_kernels, monkeypatch, capsys
):
    """No julia on PATH exited 2 (bad arguments) where no conda on PATH exits 1: the
    arguments are right, the environment lacks the program."""
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["install", "x", "--kernel", "julia", "--capture", "none"]) == 1
    assert capsys.readouterr().err.startswith("kernelmagic: error: no julia found (julia on ")


def test_like_copies_a_templates_files_but_not_its_records(user_kernels, tmp_path):
    """A template made by kernelmagic has backups, a lock and maybe an owner-only snippet
    file holding a secret: none of them is the new spec's."""
    snippet = tmp_path / "s.sh"
    snippet.write_text("export GITHUB_TOKEN=ghp_" + "L" * 36 + "\nexport A=1\n")
    argv = ["install", "tmpl", "--python", sys.executable, "--snippet-file", str(snippet)]
    assert main(argv) == 0
    assert main(["env", "-k", "tmpl", "B=2"]) == 0  # leaves a backup
    assert main(["install", "copy", "--like", "tmpl", "--capture", "none"]) == 0
    copied = {p.name for p in (user_kernels / "copy").iterdir()}
    assert "logo-64x64.png" in copied
    assert not [n for n in copied if n.startswith(".") or n == "kernelmagic-snippet.sh"]


def test_an_r_only_pixi_environment_makes_an_r_kernel(
    tmp_path, user_kernels, monkeypatch, r_with_irkernel
):
    """pixi stand-in (pixi is not installable here): `pixi shell-hook --json` prints the
    variables of `.pixi/envs/default`, an environment with R (this machine's, linked) and no
    Python. It was refused: "environment ... does not exist yet; make it: pixi install"."""
    root = tmp_path / "pixi-r"
    prefix = root / ".pixi" / "envs" / "default"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "R").symlink_to(r_with_irkernel)
    (root / "pixi.toml").write_text('[workspace]\nname = "pixi-r"\nchannels = []\n')
    stand_in = tmp_path / "bin" / "pixi"
    stand_in.parent.mkdir()
    variables = {"CONDA_PREFIX": str(prefix), "PATH": f"{prefix}/bin:/usr/bin:/bin"}
    stand_in.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2" = "shell-hook --json" ] || { echo "unexpected: $*" >&2; exit 2; }\n'
        f"echo '{json.dumps({'environment_variables': variables})}'\n"
    )
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stand_in.parent}:{os.environ['PATH']}")
    assert main(["install", "rgeo", "--project", str(root), "--kernel", "ir"]) == 0
    spec = json.loads((user_kernels / "rgeo" / "kernel.json").read_text())
    assert spec["language"] == "R" and spec["env"]["CONDA_PREFIX"] == str(prefix)
