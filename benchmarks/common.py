"""What every benchmark section shares: throw-away Jupyter dirs, interleaved timing, the table."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
ROWS: list[tuple[str, str, str, str, str, str]] = []


def isolate(root: Path) -> None:
    """Point every Jupyter and IPython location of this process (and children) into root."""
    for name, sub in (
        ("HOME", "home"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(root / sub)
    os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
    os.environ["XDG_DATA_DIRS"] = str(root / "system")  # no /usr/share/jupyter
    os.environ.pop("JUPYTER_PATH", None)


def interleaved(
    candidate: Callable[[], object], baseline: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median seconds of each, alternating which one goes first, after one warm-up each."""
    medians = rounds({"candidate": candidate, "baseline": baseline}, repeats)
    return medians["candidate"], medians["baseline"]


def rounds(measures: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each measure over ``repeats`` rounds, after one warm-up each. Every
    round runs each measure once, the order rotating from round to round, so a slow spell of
    the machine is shared by all of them."""
    names = list(measures)
    for name in names:
        measures[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            measures[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def row(measure: str, ours: float, theirs: float | None, target: str, met: bool | None) -> None:
    ratio = f"{ours / theirs:.2f}x" if theirs else "-"
    verdict = "-" if met is None else ("met" if met else "NOT MET")
    ROWS.append((measure, fmt(ours), fmt(theirs), ratio, target, verdict))
    print(f"  measured: {measure}", file=sys.stderr)


def note(measure: str, why: str) -> None:
    """A row that could not be measured here, and why."""
    ROWS.append((measure, "-", "-", "-", why, "-"))
    print(f"  not measured: {measure}: {why}", file=sys.stderr)


def print_table() -> None:
    header = ("measure", "kernelmagic", "baseline", "ratio", "target", "met")
    widths = [max(len(r[i]) for r in [header, *ROWS]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *ROWS]:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def venv_with(venv: Path, package: str) -> Path | str:
    """A venv of the benchmark's own at ``venv`` with ``package`` (a peer tool, no dependency
    of kernelmagic) pip-installed; it sees this environment's packages (ipykernel) through a
    .pth file, so its kernels run the same ipykernel as the others. The venv, or why not."""
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True)
    if made.returncode != 0:
        return "cannot make a venv: " + made.stderr.decode()[-200:]
    site = next((venv / "lib").glob("python*/site-packages"))
    here = [p for p in sys.path if p.endswith("site-packages")]
    (site / "benchmark-parent.pth").write_text("\n".join(here) + "\n")
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", package],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        return f"pip install {package} failed: " + pip.stderr.strip()[-200:]
    return venv


def make_specs(
    kernels: Path, count: int, pythons: list[str] | None = None, *, small: bool = False
) -> list[str]:
    """``count`` specs in one kernels dir; ``small``: argv, display_name and language only."""
    names = []
    for i in range(count):
        spec_dir = kernels / f"bench-{i:05d}"
        spec_dir.mkdir(parents=True)
        python = pythons[i % len(pythons)] if pythons else sys.executable
        spec = {
            "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"Bench {i}",
            "language": "python",
        }
        if not small:
            spec["env"] = {"GDAL_DATA": "/opt/gdal/share", "PATH": "/opt/env/bin:${PATH}"}
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
        names.append(spec_dir.name)
    return names
