"""kernelmagic: IPython magics and a CLI for Jupyter kernel specs and their environment.

``%load_ext kernelmagic`` declares the magics; the spec library (``kernelmagic.specs``)
works from plain Python too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelmagic.version import __version__

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: InteractiveShell) -> None:
    # Imported here so that `import kernelmagic` stays cheap for the CLI and the library.
    from kernelmagic.frontends import ipython_extension

    ipython_extension.load(ipython)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    from kernelmagic.frontends import ipython_extension

    ipython_extension.unload(ipython)
