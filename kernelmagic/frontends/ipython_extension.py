"""What ``%load_ext kernelmagic`` does to an IPython shell, and how ``%unload_ext`` undoes it.

The magics are declared through IPython's own door for lazy magics
(``MagicsManager.register_lazy``): ``%load_ext`` imports nothing of the library, and the
magics module (with its argparse parsers, which format ``%kernel_install?``) is imported when
a magic is first used, looked up for help, or configured with ``%config``. IPython resolves a
lazy magic for ``%magic?``, Tab and ``%config`` only since 9.17; with an older IPython the
magics are registered at once, so that help and completion work from the first moment.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import IPython
from IPython.core.magic import Magics

from kernelmagic.commands import COMMANDS

MODULE = "kernelmagic.frontends.magics"
CLASS_NAME = "KernelMagics"
SPEC = f"{MODULE}:{CLASS_NAME}"
# name -> kind, from the command table (which imports no command).
MAGICS = {command.magic: "line_cell" if command.cell else "line" for command in COMMANDS}
RESOLVES_LAZY_MAGICS = IPython.version_info >= (9, 17)
# IPython's matchers that can suppress all others (Jedi's Python names included) came in 8.6;
# before that the complete_command hook is all there is, and Jedi's names mix in.
HAS_CONTEXT_MATCHERS = IPython.version_info >= (8, 6)
# A magic line, or a line magic whose value is assigned (``specs = %kernel_list``).
_OUR_LINE = re.compile(r"\s*(?:[A-Za-z_][\w.]*\s*=\s*)?%%?(kernel_\w+)\b")


def _ours(text: str) -> bool:
    found = _OUR_LINE.match(text)
    return found is not None and found.group(1) in MAGICS


def _matches(text: str, token: str) -> list[str] | None:
    """None where a path goes: IPython's own matchers complete files there."""
    from kernelmagic.frontends import completion  # the options: only once Tab is pressed

    return completion.complete(text, token)


def complete_command(shell: Any, event: Any) -> list[str]:
    """IPython's ``complete_command`` hook (IPython < 8.6)."""
    found = _matches(event.text_until_cursor, event.symbol)
    if found is None:
        from IPython.core.error import TryNext  # where a path goes: IPython's files

        raise TryNext
    return found


def _context_matcher() -> Any:
    """An IPython matcher that, on a kernelmagic line, offers what ``completion`` finds and
    suppresses every other matcher; elsewhere it stays out of the way."""
    from IPython.core.completer import SimpleCompletion, context_matcher

    @context_matcher()  # type: ignore[untyped-decorator]  # IPython leaves it unannotated
    def kernelmagic_matcher(context: Any) -> dict[str, Any]:
        text = context.text_until_cursor
        if not _ours(text):
            return {"completions": [], "suppress": False}
        # IPython suppresses the other matchers only for a matcher that offers something:
        # where nothing fits (a new spec's name, a display name), the one offer is the word
        # as typed, which changes nothing, rather than Python names and files.
        found = _matches(text, context.token)
        if found is None:  # a path goes here: IPython's file completion, as without us
            return {"completions": [], "suppress": False}
        found = found or [context.token]
        return {
            "completions": [SimpleCompletion(m, type="kernelmagic") for m in found],
            "suppress": True,
        }

    return kernelmagic_matcher


def _spec_info_text(info: Any, p: Any, cycle: bool) -> None:
    from kernelmagic.commands import render  # only when such a value is shown

    p.text(render.spec_detail_text(info, style=render.MAGICS))


# The library's values that IPython shows through our renderers, registered by name so that
# nothing is imported to register them: module, class name, text printer.
PRINTERS = (("kernelmagic.domain.spec_info", "SpecInfo", _spec_info_text),)


def _text_formatter(shell: Any) -> Any:
    formatter = getattr(shell, "display_formatter", None)
    return formatter.formatters["text/plain"] if formatter is not None else None


def _completer_keys() -> list[str]:
    return [prefix + name for name in MAGICS for prefix in ("%", "%%")]


def _declared_by_us(found: Any) -> bool:
    """Whether a magics table entry is ``load``'s lazy declaration. Checked by type: asking a
    placeholder for any other attribute makes IPython load what it stands for."""
    if not RESOLVES_LAZY_MAGICS:
        return False
    from IPython.core.magic import LazyMagic  # IPython >= 9.17

    return isinstance(found, LazyMagic) and found.spec == SPEC


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
    completer = getattr(shell, "Completer", None)
    if HAS_CONTEXT_MATCHERS and completer is not None:
        completer.custom_matchers.append(_context_matcher())
    else:
        for key in _completer_keys():
            shell.set_hook("complete_command", complete_command, str_key=key)


def unload(shell: Any) -> None:
    """Remove exactly what ``load`` added: the magics (loaded or still lazy), the
    configurable, the printers, the completers."""
    manager = shell.magics_manager
    # IPython keys its registry by class name, and ipykernel's own magics are a
    # KernelMagics too: ours replaced them there when first used. Theirs go back.
    magics = dict.get(manager.registry, CLASS_NAME)  # dict.get: no lazy load on a miss
    if type(magics).__module__ != MODULE:
        magics = None
    else:
        others = [c for c in shell.configurables if type(c).__name__ == CLASS_NAME]
        replaced = [c for c in others if c is not magics and isinstance(c, Magics)]
        if replaced:
            manager.registry[CLASS_NAME] = replaced[-1]
        else:
            dict.pop(manager.registry, CLASS_NAME)
    for name, kinds in MAGICS.items():
        for kind in ("line", "cell") if kinds == "line_cell" else (kinds,):
            found = manager.magics[kind].get(name)
            # Two questions, in this order: asking a lazy placeholder for __self__ would make
            # IPython load the magics it stands for.
            if _declared_by_us(found):  # noqa: SIM114
                del manager.magics[kind][name]
            elif magics is not None and getattr(found, "__self__", None) is magics:
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
    completer = getattr(shell, "Completer", None)
    if completer is not None and hasattr(completer, "custom_matchers"):
        completer.custom_matchers[:] = [
            m
            for m in completer.custom_matchers
            if getattr(m, "__name__", "") != "kernelmagic_matcher"
        ]
    dispatcher = shell.strdispatchers.get("complete_command")
    if dispatcher is not None:
        for key in _completer_keys():
            chain = dispatcher.strs.get(key)
            if chain is None:
                continue
            chain.chain = [
                (p, f) for p, f in chain.chain if getattr(f, "__func__", f) is not complete_command
            ]
            if not chain.chain:
                del dispatcher.strs[key]
