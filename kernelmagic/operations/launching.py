"""Start kernels for real (``doctor --launch``): what static checks cannot see, such as a
missing shared library, a broken module or a wrapper that fails, shows when Jupyter starts
the spec. Each spec is started through jupyter_client, asked for ``kernel_info``, and shut
down; a failure is reported with the lines of the kernel's stderr that say why.
"""

from __future__ import annotations

import os
import queue
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kernelmagic.domain import checks
from kernelmagic.domain.shells import failure_lines
from kernelmagic.storage import discovery

DEFAULT_TIMEOUT = 60.0


@dataclass
class Launch:
    """How one spec started (seconds to the ``kernel_info`` reply) or why it did not."""

    name: str
    started: bool
    seconds: float | None = None
    language: str = ""
    implementation: str = ""
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "seconds": self.seconds,
            "language": self.language,
            "implementation": self.implementation,
            "reason": self.reason,
        }


@dataclass
class LaunchReport:
    """How each spec ``doctor --launch`` started did."""

    launches: list[Launch]
    removed: list[str] = field(default_factory=list)  # as the static report: nothing here

    @property
    def healthy(self) -> bool:
        return all(launch.started for launch in self.launches)

    def to_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "specs": {launch.name: launch.to_json() for launch in self.launches},
        }


def _stderr_of(stream: Any) -> str:
    stream.seek(0)
    return stream.read(64 * 1024).decode("utf-8", "replace")


def launch(name: str, timeout: float = DEFAULT_TIMEOUT) -> Launch:
    """Start the spec ``name`` as Jupyter would, wait for its ``kernel_info`` reply (at most
    ``timeout`` seconds), shut it down."""
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name=name)
    with tempfile.TemporaryFile() as stderr:
        began = time.perf_counter()
        try:
            manager.start_kernel(stderr=stderr)
        except Exception as exc:  # whatever keeps the process from starting at all
            return Launch(name, False, reason=f"cannot start: {exc}")
        client = manager.client()
        # The shell channel is all a kernel_info request needs; a heartbeat thread still
        # starting when a kernel dies at once would race the client's teardown.
        client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        try:
            request = client.kernel_info()
            while time.perf_counter() - began < timeout:
                if not manager.is_alive():
                    said = failure_lines(_stderr_of(stderr))
                    return Launch(name, False, reason=f"the kernel exited: {said}")
                try:
                    reply = client.get_shell_msg(timeout=0.2)
                except queue.Empty:
                    continue
                if reply["parent_header"].get("msg_id") == request:
                    content = reply["content"]
                    return Launch(
                        name,
                        True,
                        round(time.perf_counter() - began, 3),
                        content.get("language_info", {}).get("name", ""),
                        content.get("implementation", ""),
                    )
            said = failure_lines(_stderr_of(stderr))
            return Launch(name, False, reason=f"no kernel_info reply within {timeout:g} s: {said}")
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)


def launch_all(names: Iterable[str] = (), timeout: float = DEFAULT_TIMEOUT) -> LaunchReport:
    """Start every spec Jupyter lists, or the named ones, a few at a time (bounded by the
    cores). Remote (provisioner) specs are started only when named: they reach other hosts."""
    names = list(names)
    if names:
        wanted = [info.name for info in discovery.get_specs(names)]
    else:
        wanted = [
            info.name
            for info in discovery.list_specs()
            if info.visible and checks.provisioner_name(info.spec) in (None, "local-provisioner")
        ]
    if not wanted:
        return LaunchReport([])
    with ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, len(wanted))) as pool:
        launches = list(pool.map(lambda name: launch(name, timeout), wanted))
    return LaunchReport(launches)
