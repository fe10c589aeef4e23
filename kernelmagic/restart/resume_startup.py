"""Run by IPython at the start of a kernel restarted in place (``PYTHONSTARTUP`` points here
for that one start): take over the messages the old process handed off."""

from kernelmagic.restart.resume import resume as _kernelmagic_resume

# The startup file runs in IPython's namespace, where get_ipython is defined.
_kernelmagic_resume(get_ipython())  # type: ignore[name-defined]  # noqa: F821
del _kernelmagic_resume
