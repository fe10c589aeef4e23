"""The benchmark suite runs (its numbers are reported, never asserted: machines are noisy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).parent.parent / "benchmarks" / "run.py"


def test_quick_benchmark_prints_its_table():
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [c.strip() for c in lines[0].split(" | ")][:4] == [
        "measure",
        "kernelmagic",
        "baseline",
        "ratio",
    ]
    assert any(line.startswith("kernelmagic list --json, 1,000 specs") for line in lines)
    assert any(line.startswith("start to kernel_info reply: kernelmagic") for line in lines)
    assert any(line.startswith("%kernel_activate --modules") for line in lines)
