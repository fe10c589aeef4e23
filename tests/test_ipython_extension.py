"""What ``%load_ext kernelmagic`` does to IPython: magics declared lazily where IPython can
resolve them, argparse's help, values that show and print as tables, a clean unload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import kernel_output, write_spec

from kernelmagic.commands import install
from kernelmagic.frontends import ipython_extension
from kernelmagic.frontends.magics import KernelMagics
from kernelmagic.operations.doctor import Report


def _in_fresh_ipython(code: str) -> dict:
    """Run ``code`` in a new interpreter with an InteractiveShell ``ip``; it prints JSON."""
    script = textwrap.dedent("""\
        import json, sys
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        """) + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_load_ext_imports_no_library_and_nothing_heavy():
    seen = _in_fresh_ipython("""
        before = set(sys.modules)
        ip.run_line_magic("load_ext", "kernelmagic")
        new = sorted(m for m in set(sys.modules) - before if m.startswith("kernelmagic"))
        heavy = [m for m in ("jupyter_client", "ipykernel", "zmq") if m in sys.modules]
        print(json.dumps({"new": new, "heavy": heavy}))
    """)
    assert seen["heavy"] == []
    if ipython_extension.RESOLVES_LAZY_MAGICS:
        assert seen["new"] == [
            "kernelmagic",
            "kernelmagic.commands",  # the table, which imports no command
            "kernelmagic.frontends",
            "kernelmagic.frontends.ipython_extension",
            "kernelmagic.version",
        ]


def test_the_first_magic_imports_its_own_command_only(user_kernels):
    """The first magic of a session (``%kernel_activate`` in the cell that restarts) pays
    for its own command's module, not for all sixteen; help still loads the one asked for."""
    write_spec(user_kernels, "geo")
    seen = _in_fresh_ipython("""
        ip.run_line_magic("load_ext", "kernelmagic")
        names = ip.run_line_magic("kernel_list", "").names()
        after_list = sorted(m for m in sys.modules if m.startswith("kernelmagic.commands."))
        ip.run_cell("%kernel_install?")
        after_help = sorted(m for m in sys.modules if m.startswith("kernelmagic.commands."))
        print(json.dumps({"names": names, "list": after_list, "help": after_help}))
    """)
    assert "geo" in seen["names"]
    assert seen["list"] == ["kernelmagic.commands.list", "kernelmagic.commands.render"]
    assert set(seen["help"]) - set(seen["list"]) == {"kernelmagic.commands.install"}


def test_help_works_before_first_use_and_is_argparse_help():
    seen = _in_fresh_ipython("""
        ip.run_line_magic("load_ext", "kernelmagic")
        found = ip._ofind("%kernel_install")
        found = found if isinstance(found, dict) else found.__dict__
        print(json.dumps({"found": found["found"], "doc": found["obj"].__doc__}))
    """)
    assert seen["found"]
    doc = seen["doc"]
    assert "%kernel_install" in doc and "--from-conda ENV" in doc and "--snippet-file" not in doc
    assert install.SUMMARY.split(",")[0] in " ".join(doc.split())


def test_the_declared_magics_are_the_ones_the_class_has():
    declared = {name: kind for name, kind in ipython_extension.MAGICS.items()}
    line, cell = KernelMagics.magics["line"], KernelMagics.magics["cell"]
    found = {name: "line_cell" if name in cell else "line" for name in line}
    assert declared == found


def test_unload_then_load_then_use(user_kernels):
    write_spec(user_kernels, "geo")
    seen = _in_fresh_ipython("""
        for _ in range(2):
            ip.run_line_magic("load_ext", "kernelmagic")
            names = ip.run_line_magic("kernel_list", "").names()
            ip.run_line_magic("unload_ext", "kernelmagic")
        left = [n for kind in ("line", "cell") for n in ip.magics_manager.magics[kind]
                if n.startswith("kernel_")]
        print(json.dumps({"names": names, "left": left,
                          "configurable": any(type(c).__name__ == "KernelMagics"
                                              for c in ip.configurables)}))
    """)
    assert "geo" in seen["names"]
    assert seen["left"] == [] and not seen["configurable"]


def test_unload_in_a_kernel_leaves_ipykernels_own_kernel_magics(user_kernels):
    """ipykernel's magics class is a ``KernelMagics`` too, and IPython keys its registry by
    class name: ``%unload_ext`` took ipykernel's out of the registry and the configurables
    (before any magic was used), or left them replaced by nothing (after)."""
    code = textwrap.dedent("""\
        import json
        ip = get_ipython()
        def theirs():
            registered = type(ip.magics_manager.registry.get("KernelMagics")).__module__
            kept = [type(c).__module__ for c in ip.configurables
                    if type(c).__name__ == "KernelMagics"]
            return registered, kept
        seen = [theirs()]
        ip.run_line_magic("load_ext", "kernelmagic")
        ip.run_line_magic("unload_ext", "kernelmagic")
        seen.append(theirs())
        ip.run_line_magic("load_ext", "kernelmagic")
        ip.run_line_magic("kernel_list", "")
        ip.run_line_magic("unload_ext", "kernelmagic")
        seen.append(theirs())
        print(json.dumps(seen))
        """)
    seen = json.loads(kernel_output("python3", code).strip().splitlines()[-1])
    assert seen[0] == ["ipykernel.zmqshell", ["ipykernel.zmqshell"]]
    assert seen[1:] == [seen[0], seen[0]]


def test_a_returned_report_prints_as_the_terminal_shows_it(ip, user_kernels, capsys):
    write_spec(user_kernels, "geo", {"argv": ["/no/such/python", "{connection_file}"]})
    report = ip.run_line_magic("kernel_doctor", "geo")
    assert isinstance(report.value, Report) and not report.healthy  # reads as its data
    print(report)
    printed = capsys.readouterr().out
    assert "object at 0x" not in printed
    assert printed.startswith("name") and "missing-program" in printed
    assert "1 spec(s) checked, 1 with problems." in printed
    assert "<table>" in report._repr_html_()
    assert report.to_json()["healthy"] is False


def test_unload_before_any_use_leaves_nothing_and_loads_nothing():
    """On the lazy path, a placeholder asked for anything but its type loads the magics:
    unload must remove the declarations without loading them."""
    seen = _in_fresh_ipython("""
        before = {k: sorted(v) for k, v in ip.magics_manager.magics.items()}
        ip.run_line_magic("load_ext", "kernelmagic")
        ip.run_line_magic("unload_ext", "kernelmagic")
        after = {k: sorted(v) for k, v in ip.magics_manager.magics.items()}
        print(json.dumps({"same": before == after,
                          "loaded": "kernelmagic.frontends.magics" in sys.modules}))
    """)
    assert seen["same"]
    if ipython_extension.RESOLVES_LAZY_MAGICS:
        assert not seen["loaded"]


@pytest.mark.parametrize(
    "config, option",
    [
        ("c.KernelMagics.extra_secrets = '*_PIN'", None),
        ("c.KernelMagics.extra_secrets.append('*_PIN')", None),
        ("", "--KernelMagics.extra_secrets=*_PIN"),
    ],
    ids=["a-string", "append", "command-line"],
)
def test_ipython_config_that_traitlets_takes_is_taken(user_kernels, tmp_path, config, option):
    """Walk R: what traitlets casts to a list (a string, `.append(...)`, IPython's own
    `--KernelMagics.x=...`) made every magic refuse in 0.3 ("expected a list"), and the
    secret pattern was dropped; 0.1 and 0.2 took them."""
    write_spec(
        user_kernels,
        "site",
        {"argv": ["python", "-f", "{connection_file}"], "env": {"SITE_PIN": "4711"}},
    )
    profile = Path(os.environ["IPYTHONDIR"]) / "profile_taken"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text(config + "\n")
    script = tmp_path / "t.ipy"
    script.write_text(
        "%load_ext kernelmagic\nprint(str(get_ipython().run_line_magic('kernel_env', '-k site')))\n"
    )
    ipython = [str(Path(sys.executable).with_name("ipython")), "--no-banner", "--profile=taken"]
    done = subprocess.run(
        [*ipython, *([option] if option else []), str(script)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert "SITE_PIN" in said and "4711" not in said and "Error" not in said, said


def test_a_wrong_value_in_ipythons_config_is_one_line_and_the_magics_still_load(
    user_kernels, tmp_path
):
    """Walk H: ``c.KernelMagics.default_location = 'bogus'`` in ipython_config.py made every
    magic print a 120-line TraitError (the registration failed), where a wrong value in
    jupyter_kernelmagic_config is one line; a %config that set it right did not help."""
    profile = Path(os.environ["IPYTHONDIR"]) / "profile_bad"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text(
        "c.KernelMagics.default_location = 'bogus'\nc.KernelMagics.extra_secrets = ['CORP_*']\n"
        "c.KernelMagics.extra_noise = 5\n"
    )
    script = tmp_path / "t.ipy"
    script.write_text(
        "%load_ext kernelmagic\n"
        "try:\n    get_ipython().run_line_magic('kernel_list', '')\n"
        "except Exception as exc:\n    print(type(exc).__module__, type(exc).__name__, exc)\n"
        "%config KernelMagics.default_location = 'user'\n"
        "%config KernelMagics.extra_noise = []\n"
        "r = %kernel_list\nprint(len(r), 'specs')\n"
    )
    ipython = Path(sys.executable).with_name("ipython")
    done = subprocess.run(
        [str(ipython), "--no-banner", "--profile=bad", str(script)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert "Traceback" not in said and "TraitError" not in said, said
    assert (
        "IPython.core.error UsageError IPython config: c.KernelMagics.default_location = "
        "'bogus': expected any of ['user', 'sys-prefix']"
    ) in said, said
    assert "c.KernelMagics.extra_noise = 5: expected a list" in said  # both said
    assert "1 specs" in said  # set right, the magics work
