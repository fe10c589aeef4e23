"""How much of kernelmagic one command touches (issue 32's measure of the design): the own
functions `kernelmagic install geo --modules gdal/3.8` runs and the modules they live in
(a profiler), and the own modules `kernelmagic list` imports (`sys.modules`). Each command
runs in a fresh interpreter with throw-away Jupyter dirs; the modulefile is a real Lmod one.

    python benchmarks/footprint.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from common import isolate

MEASURE = textwrap.dedent(
    """
    import io, json, os, sys, contextlib
    package = os.path.dirname(__import__("kernelmagic").__file__) + os.sep
    calls = set()

    def profile(frame, event, arg):
        code = frame.f_code  # functions and methods: not module or class bodies (CO_OPTIMIZED
        # is a function's), lambdas or comprehensions
        if (event == "call" and code.co_flags & 1 and code.co_name[0] != "<"
                and code.co_filename.startswith(package)):
            calls.add((code.co_filename, code.co_firstlineno))

    from kernelmagic.frontends.cli import main
    argv = sys.argv[1:]
    sys.setprofile(profile)
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    sys.setprofile(None)
    imported = sorted(m for m in sys.modules if m == "kernelmagic" or m.startswith("kernelmagic."))
    print(json.dumps({"status": status, "functions": len(calls),
                      "function_modules": len({f for f, _ in calls}), "imported": imported}))
    """
)


def measure(*argv: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="kernelmagic-footprint-"))
    try:
        isolate(root)
        listed = measure("list")
        print(f"kernelmagic list: {len(listed['imported'])} own modules imported (goal <= 20)")
        has_lmod = subprocess.run(["bash", "-l", "-c", "type module"], capture_output=True)
        if has_lmod.returncode != 0:
            print("kernelmagic install --modules: not measured (no Lmod: apt-get install lmod)")
            return 0
        modules = root / "modules"
        (modules / "gdal").mkdir(parents=True)
        (modules / "gdal" / "3.8.lua").write_text(f'setenv("GDAL_DATA", "{root}/gdal")\n')
        import os

        os.environ["MODULEPATH"] = str(modules)
        made = measure("install", "geo", "--modules", "gdal/3.8", "--capture", "changed")
        assert made["status"] == 0, made
        print(
            f"kernelmagic install geo --modules gdal/3.8: {made['functions']} own functions in "
            f"{made['function_modules']} modules (goal <= 90 in <= 14); "
            f"{len(made['imported'])} own modules imported"
        )
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
