"""The README and docs/, run: the README's opening walkthrough for real, the baseline recipe
in a real login shell with real Lmod modules, the Python API example, and every magic and
command line they show through the parsers the tool itself uses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kernelmagic import options
from kernelmagic.domain.shell_syntax import split_args
from kernelmagic.frontends import cli, magics

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {p.name: p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))}
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)
README_BLOCKS = FENCE.findall(README)
BLOCKS = README_BLOCKS + [b for text in DOCS.values() for b in FENCE.findall(text)]


def _lines(prefix: str) -> list[str]:
    """Lines of the code blocks that start with ``prefix`` (not benchmark tables)."""
    return [
        line.strip()
        for block in BLOCKS
        for line in block.splitlines()
        if line.strip().startswith(prefix) and " | " not in line
    ]


def test_the_readme_leads():
    lines = README.splitlines()
    assert len(lines) <= 250
    first_screen = "\n".join(lines[:40])
    for must in ("--modules", "--kernel ir", "%kernel_activate", "pip install", "pytest"):
        assert must in first_screen or must in "\n".join(lines[:60]), must
    for page in DOCS:
        assert f"docs/{page}" in README, f"the README does not link docs/{page}"
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")
    assert (ROOT / "CHANGELOG.md").exists()


def test_the_version_is_the_changelogs_newest():
    """The 0.3 candidate called itself 0.2.0: `pip install -U` from 0.2 kept 0.2, and every
    spec and document it wrote said 0.2.0."""
    newest = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M)
    shown = subprocess.run(
        [sys.executable, "-m", "kernelmagic", "--version"], capture_output=True, text=True
    )
    assert newest and shown.stdout == f"kernelmagic {newest.group(1)}\n"


def test_the_opening_walkthrough_runs(ip, user_kernels):
    opening = README_BLOCKS[0]
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
    # The recipe's second form, from IPython, is a comment in the page: run it too.
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


def test_the_python_api_example_runs(user_kernels):
    block = next(
        b for b in FENCE.findall(DOCS["python-api.md"]) if b.startswith("from kernelmagic")
    )
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(block)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "geo" in done.stdout and "--like copies a spec of any language" in done.stdout
    spec = json.loads((user_kernels / "geo" / "kernel.json").read_text())
    assert spec["env"] == {"GDAL_DATA": "/opt/gdal/share", "PROJ_LIB": "/proj/share"}


MAGIC = re.compile(r"%%?(kernel_\w+)")


@pytest.mark.parametrize("line", _lines("%kernel_") + _lines("%%kernel_"))
def test_every_magic_shown_parses(line):
    name = MAGIC.match(line).group(1)
    method = getattr(magics.KernelMagics, name)
    words = split_args(line[MAGIC.match(line).end() :])
    method.parser.parse_args(words)


@pytest.mark.parametrize(
    "line", [line for line in _lines("kernelmagic ") if "[" not in line and "..." not in line]
)
def test_every_command_line_shown_parses(line):
    words = split_args(line)[1:]
    options.check_option_count(words)
    cli.build_parser().parse_args(words)


def test_every_option_in_help_is_in_the_docs():
    """Walk V: options only `--help` named (`patch --redo`, `env --spec`, clone's): each long
    option of each command is in the README or a page of docs/."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(page.read_text(encoding="utf-8") for page in pages)
    undocumented = [
        f"{name} {option}"
        for name, parser in cli.build_parser()._subparsers._group_actions[0].choices.items()
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
        and not re.search(re.escape(option) + r"(?![\w-])", text)
    ]  # fmt: skip
    assert undocumented == []


def test_the_pages_have_what_these_tests_read():
    assert len(_lines("%kernel_")) > 20 and len(_lines("kernelmagic ")) > 5
    assert textwrap.dedent(README_BLOCKS[0]).startswith("%load_ext kernelmagic")
