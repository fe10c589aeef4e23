"""Help text for ``%magic?``, formatted from the option definitions without building a
parser (building every argparse parser cost ~15 ms of each ``%load_ext``)."""

from __future__ import annotations

from kernelmagic.operations.options import COMMANDS, Option


def _usage_word(option: Option) -> str:
    kwargs = option.kwargs
    flag = option.flags[-1]
    if not flag.startswith("-"):
        metavar = kwargs.get("metavar", flag.upper())
        return {
            "?": f"[{metavar}]",
            "*": f"[{metavar} ...]",
            "+": f"{metavar} [{metavar} ...]",
        }.get(kwargs.get("nargs"), metavar)
    if kwargs.get("action") == "store_true":
        return f"[{flag}]"
    choices = kwargs.get("choices")
    metavar = kwargs.get("metavar") or ("{" + ",".join(choices) + "}" if choices else "VALUE")
    repeat = "..." if kwargs.get("action") == "append" else ""
    if kwargs.get("required"):
        return f"{flag} {metavar}"
    return f"[{flag} {metavar}]{repeat}"


def help_text(command: str, prog: str) -> str:
    """Help for ``%magic?``, formatted from the definitions without building a parser."""
    import textwrap

    entry = COMMANDS[command]
    usage = " ".join([prog, *(_usage_word(o) for o in entry.options)])
    lines = [
        textwrap.fill(usage, 96, subsequent_indent=" " * (len(prog) + 1), break_on_hyphens=False),
        "",
        textwrap.fill(entry.summary, 96),
        "",
    ]
    for option in entry.options:
        kwargs = option.kwargs
        if option.flags[0].startswith("-"):
            name = ", ".join(option.flags)
            if kwargs.get("action") not in ("store_true",):
                choices = kwargs.get("choices")
                name += " " + (kwargs.get("metavar") or "{" + ",".join(choices or ()) + "}")
        else:
            name = kwargs.get("metavar", option.flags[0].upper())
        lines.append(f"  {name}")
        lines.append(
            textwrap.fill(
                kwargs.get("help", ""), 96, initial_indent=" " * 6, subsequent_indent=" " * 6
            )
        )
    return "\n".join(lines)
