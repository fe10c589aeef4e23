"""kernelmagic: IPython magics and a CLI for Jupyter kernel specs and their environment.

``%load_ext kernelmagic`` declares the magics; the spec library (``kernelmagic.specs``)
works from plain Python too.
"""

from kernelmagic.version import __version__

__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython):
    # Imported here so that `import kernelmagic` stays cheap for the CLI and the library.
    from kernelmagic.frontends import ipython_extension

    ipython_extension.load(ipython)


def unload_ipython_extension(ipython):
    from kernelmagic.frontends import ipython_extension

    ipython_extension.unload(ipython)
