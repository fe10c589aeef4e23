"""Start of a Charliecloud container spec against the same ch-run command line written by hand."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from common import BIN, note, rounds, row
from starts import start_to_reply

MEASURE = "start to kernel_info reply: --container (ch-run) (baseline: ch-run spec by hand)"


def _image(root: Path) -> Path | str:
    """A directory image of this machine's /usr (hard links: seconds), or why there is none."""
    if shutil.which("ch-run") is None:
        return "ch-run is not installed (apt-get install charliecloud-runtime)"
    if subprocess.run(["/usr/bin/python3", "-c", "import ipykernel"]).returncode != 0:
        return "Debian's python3 has no ipykernel (apt-get install python3-ipykernel)"
    image = root / "image"
    image.mkdir()
    if subprocess.run(["cp", "-al", "/usr", str(image / "usr")]).returncode != 0:
        return "/usr cannot be hard-linked here"
    subprocess.run(["cp", "-a", "/etc", str(image / "etc")], capture_output=True)
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{name}"):
            os.symlink(os.readlink(f"/{name}"), image / name)
    for mount_point in ("dev", "proc", "sys", "tmp", "mnt", "home", "run"):
        (image / mount_point).mkdir()
    return image


def bench_container(repeats: int, root: Path, kernels: Path) -> None:
    os.environ.setdefault("USER", "root")  # ch-run needs it
    image = _image(root)
    if isinstance(image, str):
        note(MEASURE, image)
        return
    subprocess.run(
        [str(BIN / "kernelmagic"), "install", "km-box", "--container", str(image)],
        check=True,
        capture_output=True,
    )
    # What an admin writes by hand: the runtime dir is under /tmp, which ch-run binds.
    by_hand = kernels / "box-by-hand"
    by_hand.mkdir()
    argv = [shutil.which("ch-run"), "--set-env=PYTHONNOUSERSITE=1", str(image), "--",
            "python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"]  # fmt: skip
    spec = {"argv": argv, "display_name": "box by hand", "language": "python"}
    (by_hand / "kernel.json").write_text(json.dumps(spec))
    measured = rounds(
        {n: (lambda n=n: start_to_reply(n)) for n in ("km-box", "box-by-hand")}, repeats
    )
    ours, theirs = measured["km-box"], measured["box-by-hand"]
    row(MEASURE, ours, theirs, "<= 1.05x", ours <= 1.05 * theirs)
