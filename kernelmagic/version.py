"""kernelmagic's version (read by the build, and shown by ``kernelmagic --version``)."""

__version__ = "0.3.0"
