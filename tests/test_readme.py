"""The README, run: its opening walkthrough for real, its baseline recipe in a real login
shell with real Lmod modules, and every magic and command line it shows through the parsers
the tool itself uses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kernelmagic.domain.shell_syntax import split_args
from kernelmagic.frontends import cli, magics
from kernelmagic.operations import options

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```[a-z]*\n(.*?)^```", README, re.S | re.M)


def _lines(prefix: str) -> list[str]:
    """Lines of the README's code blocks that start with ``prefix`` (not benchmark tables)."""
    return [
        line.strip()
        for block in BLOCKS
        for line in block.splitlines()
        if line.strip().startswith(prefix) and " | " not in line
    ]


def test_the_opening_walkthrough_runs(ip, user_kernels):
    opening = BLOCKS[0]
    assert "%load_ext kernelmagic" in opening
    ip.run_line_magic("unload_ext", "kernelmagic")  # the walkthrough loads it itself
    for line in opening.splitlines():
        result = ip.run_cell(line)
        assert result.success, (line, result.error_in_exec or result.error_before_exec)
    spec = json.loads((user_kernels / "my_env" / "kernel.json").read_text())
    assert spec["env"]["PROJ_HOME"] == "/proj/share"


def test_the_baseline_recipe_runs(tmp_path, isolated_jupyter, lmod_available):
    block = next(b for b in BLOCKS if "env -0 > ~/before.env" in b)
    modulefiles = tmp_path / "modulefiles"
    for name, variable in (("gdal", "GDAL_DATA"), ("proj", "PROJ_DATA")):
        (modulefiles / name).mkdir(parents=True)
        (modulefiles / name / "1.0.lua").write_text(f'setenv("{variable}", "/opt/{name}")\n')
    # The recipe's second form, from IPython, is a comment in the README: run it too.
    script = block.replace("# or, from IPython: ", "")
    script = script.replace("%kernel_install geo ", "%kernel_install geo2 ")
    env = {**os.environ, "MODULEPATH": str(modulefiles)}
    # A login shell's profile resets PATH: put this venv (kernelmagic, ipython) first again.
    script = f'export PATH="{Path(sys.executable).parent}:$PATH"\n{script}'
    done = subprocess.run(
        ["bash", "-l", "-e", "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    kernels = isolated_jupyter["JUPYTER_DATA_DIR"] / "kernels"
    for name in ("geo", "geo2"):
        spec = json.loads((kernels / name / "kernel.json").read_text())
        assert spec["env"]["GDAL_DATA"] == "/opt/gdal" and spec["env"]["PROJ_DATA"] == "/opt/proj"


MAGIC = re.compile(r"%%?(kernel_\w+)")


@pytest.mark.parametrize("line", _lines("%kernel_") + _lines("%%kernel_"))
def test_every_magic_in_the_readme_parses(line):
    name = MAGIC.match(line).group(1)
    method = getattr(magics.KernelMagics, name)
    words = split_args(line[MAGIC.match(line).end() :])
    method.parser.parse_args(words)


@pytest.mark.parametrize(
    "line", [line for line in _lines("kernelmagic ") if "[" not in line and "..." not in line]
)
def test_every_command_line_in_the_readme_parses(line):
    words = split_args(line)[1:]
    options.check_option_count(words)
    cli.build_parser().parse_args(words)


def test_the_readme_has_what_these_tests_read():
    assert len(_lines("%kernel_")) > 20 and len(_lines("kernelmagic ")) > 5
    assert textwrap.dedent(BLOCKS[0]).startswith("%load_ext kernelmagic")
