"""What ``%load_ext kernelmagic`` does to an IPython shell, and how ``%unload_ext`` undoes it.

The magics are declared through IPython's own door for lazy magics
(``MagicsManager.register_lazy``): ``%load_ext`` imports nothing of the library, and the
magics module (with its argparse parsers, which format ``%kernel_install?``) is imported when
a magic is first used, looked up for help, or configured with ``%config``. IPython resolves a
lazy magic for ``%magic?``, Tab and ``%config`` only since 9.17; with an older IPython the
magics are registered at once, so that help and completion work from the first moment.
"""

from __future__ import annotations

import sys
from typing import Any

import IPython

MODULE = "kernelmagic.frontends.magics"
CLASS_NAME = "KernelMagics"
SPEC = f"{MODULE}:{CLASS_NAME}"
# name -> kind, as KernelMagics defines them (a test keeps the two in step).
MAGICS = {
    "kernel_list": "line",
    "kernel_show": "line",
    "kernel_install": "line_cell",
    "kernel_clone": "line",
    "kernel_patch": "line",
    "kernel_env": "line_cell",
    "kernel_provisioners": "line",
    "kernel_remote": "line",
    "kernel_refresh": "line",
    "kernel_remove": "line",
    "kernel_export": "line",
    "kernel_apply": "line",
    "kernel_doctor": "line",
    "kernel_activate": "line_cell",
}
# Magics whose arguments include an existing spec name, for Tab completion.
COMPLETE_SPEC_NAMES = (
    "kernel_show",
    "kernel_clone",
    "kernel_patch",
    "kernel_env",
    "kernel_remove",
    "kernel_doctor",
    "kernel_refresh",
    "kernel_remote",
)
RESOLVES_LAZY_MAGICS = IPython.version_info >= (9, 17)


def complete_spec_names(shell: Any, event: Any) -> list[str]:
    """Tab completion: the names of the specs Jupyter finds."""
    from kernelmagic.storage.discovery import spec_names  # only when Tab is pressed

    return spec_names()


def _spec_info_text(info: Any, p: Any, cycle: bool) -> None:
    from kernelmagic.frontends import render  # only when such a value is shown

    p.text(render.spec_detail_text(info, style=render.MAGICS))


# The library's values that IPython shows through our renderers, registered by name so that
# nothing is imported to register them: module, class name, text printer.
PRINTERS = (("kernelmagic.storage.discovery", "SpecInfo", _spec_info_text),)


def _text_formatter(shell: Any) -> Any:
    formatter = getattr(shell, "display_formatter", None)
    return formatter.formatters["text/plain"] if formatter is not None else None


def _completer_keys() -> list[str]:
    return [prefix + name for name in COMPLETE_SPEC_NAMES for prefix in ("%", "%%")]


def load(shell: Any) -> None:
    """Declare the magics (lazily where IPython resolves lazy magics everywhere, or where the
    module was already imported in this process), then the printers and completers."""
    manager = shell.magics_manager
    if RESOLVES_LAZY_MAGICS and MODULE not in sys.modules:
        for name, kind in MAGICS.items():
            manager.register_lazy(name, SPEC, kind)
    else:
        from kernelmagic.frontends.magics import KernelMagics

        shell.register_magics(KernelMagics)
    text = _text_formatter(shell)
    if text is not None:
        for module, name, printer in PRINTERS:
            text.for_type_by_name(module, name, printer)
    for key in _completer_keys():
        shell.set_hook("complete_command", complete_spec_names, str_key=key)


def unload(shell: Any) -> None:
    """Remove exactly what ``load`` added: the magics (loaded or still lazy), the
    configurable, the printers, the completers."""
    manager = shell.magics_manager
    magics = dict.pop(manager.registry, CLASS_NAME, None)  # dict.pop: no lazy load on a miss
    for name, kinds in MAGICS.items():
        for kind in ("line", "cell") if kinds == "line_cell" else (kinds,):
            found = manager.magics[kind].get(name)
            ours = getattr(found, "__self__", None) is magics and magics is not None
            if ours or getattr(found, "spec", None) == SPEC:
                del manager.magics[kind][name]
        if RESOLVES_LAZY_MAGICS and manager.lazy_magics.get(name) == SPEC:
            del manager.lazy_magics[name]  # declared by load; older IPython has no such table
    if magics is not None and magics in shell.configurables:
        shell.configurables.remove(magics)
    text = _text_formatter(shell)
    if text is not None:
        for module, name, printer in PRINTERS:
            if text.deferred_printers.get((module, name)) is printer:
                del text.deferred_printers[(module, name)]
    dispatcher = shell.strdispatchers.get("complete_command")
    if dispatcher is not None:
        for key in _completer_keys():
            chain = dispatcher.strs.get(key)
            if chain is None:
                continue
            chain.chain = [
                (p, f)
                for p, f in chain.chain
                if getattr(f, "__func__", f) is not complete_spec_names
            ]
            if not chain.chain:
                del dispatcher.strs[key]
