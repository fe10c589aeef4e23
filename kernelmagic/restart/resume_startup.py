"""Run by IPython at the start of a kernel restarted in place (``PYTHONSTARTUP`` points here
for that one start): take over the messages the old process handed off."""

from kernelmagic.restart.inplace import resume as _kernelmagic_resume

_kernelmagic_resume(get_ipython())  # noqa: F821 (the startup file runs in IPython's namespace)
del _kernelmagic_resume
