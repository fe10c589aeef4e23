"""The spec library against jupyter_client's own view of the same directories."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import write_spec
from jupyter_client.kernelspec import KernelSpecManager

from kernelmagic import specs
from kernelmagic.domain.shell_syntax import EnvChanges
from kernelmagic.storage import discovery


def jupyter_cli_listing() -> dict:
    """What `jupyter kernelspec list --json` prints, run as a user would."""
    jupyter = Path(sys.executable).parent / "jupyter"
    out = subprocess.run(
        [str(jupyter), "kernelspec", "list", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def assert_same_specs(ours: dict, theirs: dict) -> None:
    """Same names, resource dirs and spec fields (older jupyter_client shows fewer fields)."""
    assert {n: s["resource_dir"] for n, s in ours.items()} == {
        n: s["resource_dir"] for n, s in theirs.items()
    }
    for name, entry in theirs.items():
        assert {k: ours[name]["spec"].get(k) for k in entry["spec"]} == entry["spec"], name


@pytest.fixture
def populated(user_kernels, system_kernels, isolated_jupyter, tmp_path, monkeypatch):
    """Specs in every kind of directory Jupyter searches, with shadowing and odd cases."""
    extra = tmp_path / "extra-path" / "kernels"
    monkeypatch.setenv("JUPYTER_PATH", str(extra.parent))
    ipython_kernels = isolated_jupyter["IPYTHONDIR"] / "kernels"
    write_spec(user_kernels, "Alpha")  # mixed case, stored as found
    write_spec(
        user_kernels,
        "shadowed",
        {"argv": ["/bin/true", "{connection_file}"], "display_name": "user copy"},
    )
    write_spec(
        system_kernels,
        "shadowed",
        {"argv": ["/bin/true", "{connection_file}"], "display_name": "system copy"},
    )
    write_spec(system_kernels, "sysonly")
    write_spec(
        extra,
        "SHADOWED",
        {"argv": ["/bin/true", "{connection_file}"], "display_name": "JUPYTER_PATH copy"},
    )
    write_spec(ipython_kernels, "from-ipython-dir")
    write_spec(user_kernels, "broken", raw="{not json")
    write_spec(
        user_kernels,
        "hidden",
        {
            "argv": ["/bin/true", "{connection_file}"],
            "display_name": "needs a provisioner",
            "metadata": {"kernel_provisioner": {"provisioner_name": "no-such-provisioner"}},
        },
    )
    (user_kernels / "not-a-spec").mkdir()  # no kernel.json: not listed by anyone
    return {"extra": extra, "user": user_kernels, "system": system_kernels}


def test_find_kernel_specs_equals_jupyter_client(populated):
    ours = specs.find_kernel_specs()
    assert ours == KernelSpecManager().find_kernel_specs()
    assert ours["shadowed"] == str(populated["extra"] / "SHADOWED")  # JUPYTER_PATH wins
    assert ours["alpha"].endswith("Alpha")
    assert "not-a-spec" not in ours


def test_listing_equals_jupyter_kernelspec_list_json(populated):
    listing = specs.jupyter_listing(specs.list_specs())
    assert_same_specs(listing["kernelspecs"], jupyter_cli_listing()["kernelspecs"])
    assert_same_specs(listing["kernelspecs"], KernelSpecManager().get_all_specs())
    # Jupyter hides the malformed and provisioner-less specs; we list them with the reason.
    assert {"broken", "hidden"} <= set(listing["problems"])
    assert "broken" not in listing["kernelspecs"]
    assert "hidden" not in listing["kernelspecs"]
    assert "no-such-provisioner" in listing["problems"]["hidden"][0]
    assert "malformed JSON" in listing["problems"]["broken"][0]


def test_native_python3_fallback_matches_jupyter(tmp_path, monkeypatch):
    """With no python3 spec on disk, both fall back to ipykernel's bundled one."""
    only = tmp_path / "only" / "kernels"
    write_spec(only, "other")
    monkeypatch.setattr(discovery, "kernel_dirs", lambda: [str(only)])
    manager = KernelSpecManager(kernel_dirs=[str(only)])
    assert specs.find_kernel_specs() == manager.find_kernel_specs()
    native = specs.get_spec("python3")
    assert native.native
    assert native.spec["argv"][0] == sys.executable
    listing = specs.jupyter_listing(specs.list_specs())
    assert_same_specs(listing["kernelspecs"], manager.get_all_specs())


def test_lookup_is_case_insensitive_and_errors_list_names(populated):
    assert specs.get_spec("ALPHA").resource_dir.endswith("Alpha")
    with pytest.raises(specs.NoSuchKernelSpec) as info:
        specs.get_spec("nope")
    message = str(info.value)
    assert message.startswith("No kernel spec 'nope'. Available: ")
    assert "alpha" in message and "python3" in message
    assert isinstance(info.value, KeyError)


def test_pattern_filters_names(populated):
    assert [s.name for s in specs.list_specs("shadow")] == ["shadowed"]
    assert [s.name for s in specs.list_specs("S*ONLY")] == ["sysonly"]


def test_problems_of_launchable_specs(user_kernels):
    write_spec(user_kernels, "gone", {"argv": ["/no/such/python", "-f", "{connection_file}"]})
    write_spec(user_kernels, "noconn", {"argv": [sys.executable, "-m", "ipykernel_launcher"]})
    found = {s.name: s for s in specs.list_specs()}
    assert "program not found: /no/such/python" in str(found["gone"].problems[0])
    assert found["gone"].visible  # Jupyter still lists it; it just cannot start
    assert "{connection_file}" in str(found["noconn"].problems[0])
    assert found["python3"].problems == []


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "a\\b", "naïve", "x" * 256, "with space", "new\nline", "a;b"]
)
def test_invalid_names_are_rejected_with_the_rule(name):
    with pytest.raises(specs.InvalidInput, match="what jupyter_client accepts"):
        specs.validate_name(name)


def test_names_are_stored_lowercase_and_taken_case_insensitively(user_kernels):
    write_spec(user_kernels, "Geo")
    assert specs.validate_name("My.Env-2_x") == "my.env-2_x"
    with pytest.raises(specs.SpecExists, match="--replace"):
        specs.install_current_python("GEO", str(user_kernels), capture_options=_no_capture())
    assert json.loads((user_kernels / "Geo" / "kernel.json").read_text())["display_name"] == (
        "Hand-made Geo"
    )


def _no_capture():
    from kernelmagic.domain.envcapture import CaptureOptions

    return CaptureOptions(mode="none")


def test_install_matches_ipykernels_own_spec(user_kernels, tmp_path):
    """Byte for byte what `python -m ipykernel install` writes, plus the provenance record:
    the same kernel.json (argv, key order, formatting) and the same logo files."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ipykernel",
            "install",
            "--prefix",
            str(tmp_path / "ref"),
            "--name",
            "ref",
            "--display-name",
            "Same",
        ],
        check=True,
        capture_output=True,
    )
    reference = tmp_path / "ref" / "share" / "jupyter" / "kernels" / "ref"
    for attempt in ("asks-ipykernel", "from-the-cache"):
        change, _ = specs.install_current_python(
            attempt, str(user_kernels), capture_options=_no_capture(), display_name="Same"
        )
        ours = json.loads(Path(change.resource_dir, "kernel.json").read_text())
        provenance = ours["metadata"].pop("kernelmagic")
        assert json.dumps(ours, indent=1).encode() == (reference / "kernel.json").read_bytes()
        assert sorted(os.listdir(change.resource_dir)) == sorted(os.listdir(reference)), attempt
        for name in os.listdir(reference):
            if name != "kernel.json":
                assert (
                    Path(change.resource_dir, name).read_bytes() == (reference / name).read_bytes()
                )
    assert provenance["source"] == "current"
    assert provenance["python"] == sys.executable


def test_ipykernels_spec_is_asked_once_per_interpreter_and_ipykernel(user_kernels, tmp_path):
    """Asking ipykernel imports jupyter_client (most of an install's time): the answer is
    cached, keyed by the interpreter and ipykernel's files; a damaged cache is asked again."""
    install = (
        "import sys; from kernelmagic import specs; from kernelmagic.domain.envcapture import "
        "CaptureOptions; specs.install_current_python(sys.argv[1], sys.argv[2], "
        "capture_options=CaptureOptions(mode='none')); print('jupyter_client' in sys.modules)"
    )

    def imports_jupyter_client(name: str) -> bool:
        done = subprocess.run(
            [sys.executable, "-c", install, name, str(user_kernels)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout.strip() == "True"

    assert imports_jupyter_client("first")
    assert not imports_jupyter_client("second")
    cached = list((Path(os.environ["HOME"]) / ".cache" / "kernelmagic").glob("ipykernel-install-*"))
    assert len(cached) == 1
    cached[0].write_text("{not json")
    assert imports_jupyter_client("third")
    first, third = (
        json.loads((user_kernels / n / "kernel.json").read_text()) for n in ("first", "third")
    )
    assert first["argv"] == third["argv"]


@pytest.mark.parametrize(
    ("request_of", "said"),
    [
        (
            lambda d: specs.InstallRequest("b", specs.Source("bogus"), kernels_dir=d),
            "a Source's origin is one of current, snippet",
        ),
        (
            lambda d: specs.InstallRequest("b", specs.Source("snippet"), kernels_dir=d),
            "Source('snippet') needs snippet=...",
        ),
        (
            lambda d: specs.InstallRequest("b", specs.Source("modules", modules=5), kernels_dir=d),
            "Source.modules must be text, not int",
        ),
        (
            lambda d: specs.InstallRequest("b", display_name=5, kernels_dir=d),
            "display_name must be text, not int",
        ),
        (
            lambda d: specs.InstallRequest("b", env={"A": 1}, kernels_dir=d),
            "env's A value is a string, not int",
        ),
        # Walk N: these raised AttributeError or TypeError, or were installed.
        (lambda d: specs.InstallRequest("b", "snippet", kernels_dir=d), "source is a Source"),
        (lambda d: specs.InstallRequest("b", capture=None, kernels_dir=d), "capture is a Captu"),
        (lambda d: specs.InstallRequest("b", env=None, kernels_dir=d), "env is a dict of name"),
        (lambda d: specs.InstallRequest("b", group=0, kernels_dir=d), "group is a group name"),
        (lambda d: specs.InstallRequest("b", kernels_dir=None), "kernels_dir is a path, not No"),
        (lambda d: specs.InstallRequest("b", kernels_dir=""), "kernels_dir is empty"),
        (
            lambda d: specs.InstallRequest("b", specs.Source("modules", modules=""), kernels_dir=d),
            "Source.modules is empty",
        ),
        (
            lambda d: specs.InstallRequest("b", capture=specs.CaptureOptions(mode="bogus")),
            "capture mode is one of changed, all, none, not 'bogus'",
        ),
    ],
)
def test_a_library_request_refuses_what_the_front_ends_cannot_give(user_kernels, request_of, said):
    """docs/python-api.md: the requests refuse what the CLI and magics refuse. These were
    installed (a spec Jupyter hides, one refresh cannot make again) or raised TypeError."""
    with pytest.raises(specs.InvalidInput, match=re.escape(said)):
        request_of(str(user_kernels))
    assert not user_kernels.exists()


def test_one_name_is_not_taken_for_its_letters(user_kernels):
    """Walk N: `EnvChanges(unset="PROJ_LIB")` unset P, R, O, J, ... and kept PROJ_LIB:
    another variable lost, the change asked for not made, and no error."""
    for wrong in (
        lambda: specs.EnvChanges(unset="PROJ_LIB"),
        lambda: specs.EnvChanges(set=[("A", "1")]),
        lambda: specs.CaptureOptions(include="PATH"),
        lambda: specs.CaptureOptions(exclude=None),
    ):
        with pytest.raises(specs.InvalidInput, match=r"is a (list of strings|dict of name)"):
            wrong()
    assert specs.EnvChanges(unset=["PROJ_LIB"]).unset == ["PROJ_LIB"]


def test_a_relative_kernels_dir_is_where_the_caller_is(user_kernels, monkeypatch, tmp_path):
    """Walk N: `kernels_dir="relk"` said it wrote 'relk/k5', a path that means nothing to
    Jupyter or to the caller once it changes dir."""
    monkeypatch.chdir(tmp_path)
    assert specs.InstallRequest("k5", kernels_dir="relk").kernels_dir == str(tmp_path / "relk")


@pytest.mark.parametrize(
    "transform",
    [
        lambda s: {**s, "env": {"A": "a\0b"}},
        lambda s: {**s, "env": {"NUM": 1}},
        lambda s: {**s, "argv": []},
        lambda s: {},
    ],
)
def test_a_change_that_no_kernel_could_start_from_is_refused(user_kernels, transform):
    """Walk N: a library transform could write a spec that every start of fails (`ValueError:
    embedded null byte`, a TypeError, nothing to run): docs/safety.md says such values are
    refused on write."""
    written = (write_spec(user_kernels, "geo") / "kernel.json").read_bytes()
    with pytest.raises(specs.InvalidInput, match="a spec no kernel starts from: "):
        specs.rewrite_spec("geo", transform)
    assert (user_kernels / "geo" / "kernel.json").read_bytes() == written


def test_a_new_spec_that_no_kernel_could_start_from_is_not_written(user_kernels, tmp_path):
    source = write_spec(tmp_path / "from", "src")
    spec = {"argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "d", "language": "python", "env": {"A": "\0"}}  # fmt: skip
    with pytest.raises(specs.InvalidInput, match="'d' would be a spec no kernel starts from"):
        specs.install_directory("d", str(user_kernels), str(source), spec)
    environ = {**os.environ, "NULVAR": "a\0b"}
    with pytest.raises(specs.InvalidInput, match="env 'NULVAR': a name with '=' or NUL"):
        specs.install_current_python("c", str(user_kernels), environ=environ)
    assert not user_kernels.exists() or list(user_kernels.iterdir()) == []


@pytest.mark.parametrize("transform", [lambda s: None, lambda s: {**s, "display_name": 5}])
def test_a_rewrite_that_jupyter_would_hide_is_refused(user_kernels, transform):
    written = (write_spec(user_kernels, "geo") / "kernel.json").read_bytes()
    with pytest.raises(specs.InvalidInput, match="the change would make 'geo' a spec Jupyter"):
        specs.rewrite_spec("geo", transform)
    assert (user_kernels / "geo" / "kernel.json").read_bytes() == written


def test_replace_keeps_old_spec_until_the_new_one_is_complete(user_kernels):
    specs.install_current_python(
        "geo", str(user_kernels), capture_options=_no_capture(), display_name="first"
    )
    change, _ = specs.install_current_python(
        "geo",
        str(user_kernels),
        capture_options=_no_capture(),
        display_name="second",
        replace=True,
    )
    assert change.action == "replaced"
    assert change.before["display_name"] == "first"
    assert specs.get_spec("geo").display_name == "second"
    # nothing left behind but the spec and its lock file
    assert sorted(os.listdir(user_kernels)) == [".geo.lock", "geo"]


def test_patch_keeps_unknown_keys_and_writes_atomically(user_kernels):
    spec = {
        "argv": ["/bin/true", "{connection_file}"],
        "display_name": "x",
        "future_key": {"kept": True},
        "metadata": {"other": 1},
    }
    write_spec(user_kernels, "odd", spec)
    edit = specs.SpecEdit(
        display_name="y", env=EnvChanges({"A": "1"}), metadata={"other": None, "new": [1]}
    )
    change = specs.patch_spec("odd", edit)
    after = json.loads((user_kernels / "odd" / "kernel.json").read_text())
    assert after["future_key"] == {"kept": True}
    assert after["metadata"] == {"new": [1]}
    assert after["env"] == {"A": "1"}
    assert '- "display_name": "x",' in change.diff()
    assert '+ "display_name": "y",' in change.diff()
    assert [p for p in os.listdir(user_kernels / "odd") if p.endswith(".tmp")] == []


def test_dry_run_writes_nothing(user_kernels):
    path = write_spec(user_kernels, "dry") / "kernel.json"
    before = path.read_bytes()
    change = specs.patch_spec("dry", specs.SpecEdit(display_name="other"), dry_run=True)
    assert not change.written and change.changed
    assert path.read_bytes() == before
    dry_install, _ = specs.install_current_python(
        "fresh", str(user_kernels), capture_options=_no_capture(), dry_run=True
    )
    assert not dry_install.written
    assert not (user_kernels / "fresh").exists()


def test_spec_holding_a_secret_is_owner_only(user_kernels):
    change, _ = specs.install_current_python(
        "sec",
        str(user_kernels),
        capture_options=_no_capture(),
        explicit_env={"MY_API_TOKEN": "abc"},
    )
    mode = os.stat(Path(change.resource_dir, "kernel.json")).st_mode & 0o777
    assert mode == 0o600
    plain, _ = specs.install_current_python(
        "plain", str(user_kernels), capture_options=_no_capture()
    )
    assert os.stat(Path(plain.resource_dir, "kernel.json")).st_mode & 0o077 != 0


def test_clone_copies_every_file_and_key(user_kernels):
    source = write_spec(
        user_kernels,
        "src",
        {
            "argv": ["/bin/true", "{connection_file}"],
            "display_name": "Source",
            "custom": 1,
            "env": {"A": "1", "B": "2"},
        },
    )
    (source / "logo-64x64.png").write_bytes(b"png")
    change = specs.clone_spec(
        "src", "Dst", str(user_kernels), edit=specs.SpecEdit(env=EnvChanges({"C": "3"}, ["A"]))
    )
    assert change.name == "dst"
    cloned = json.loads((user_kernels / "dst" / "kernel.json").read_text())
    assert cloned["custom"] == 1
    assert cloned["env"] == {"B": "2", "C": "3"}
    assert cloned["display_name"] == "Source"  # chosen by the user: copied as it is
    assert (user_kernels / "dst" / "logo-64x64.png").read_bytes() == b"png"


def test_clone_of_the_native_spec(user_kernels, monkeypatch):
    monkeypatch.setattr(discovery, "kernel_dirs", lambda: [str(user_kernels)])
    change = specs.clone_spec("python3", "mypy", str(user_kernels))
    cloned = json.loads(Path(change.resource_dir, "kernel.json").read_text())
    assert cloned["argv"][0] == sys.executable
    assert (Path(change.resource_dir) / "logo-64x64.png").exists()


def test_a_remove_request_runs_from_the_library_as_the_command_does(user_kernels, tmp_path):
    """``specs`` exported ``RemoveRequest`` with no function to run it."""
    write_spec(user_kernels, "kept")
    write_spec(user_kernels, "named")
    gone = {"argv": [str(tmp_path / "gone-python"), "-f", "{connection_file}"],
            "display_name": "Gone", "language": "python"}  # fmt: skip
    write_spec(user_kernels, "dead", gone)
    request = specs.RemoveRequest(["named"], missing=True, dry_run=True)
    assert sorted(specs.remove(request)) == [str(user_kernels / n) for n in ("dead", "named")]
    assert {"kept", "named", "dead"} <= set(specs.find_kernel_specs())
    specs.remove(specs.RemoveRequest(["named"], missing=True))
    assert {"named", "dead"}.isdisjoint(specs.find_kernel_specs())
    assert "kept" in specs.find_kernel_specs()


def test_remove_checks_all_names_first(user_kernels):
    write_spec(user_kernels, "one")
    with pytest.raises(specs.NoSuchKernelSpec):
        specs.remove_specs(["one", "two"])
    assert (user_kernels / "one").exists()
    assert specs.remove_specs(["ONE"]) == [str(user_kernels / "one")]
    assert not (user_kernels / "one").exists()
    # No work dir is left behind; the removed spec is kept, out of Jupyter's sight, to undo.
    assert [p for p in os.listdir(user_kernels) if p.startswith(".kernelmagic-")] == [
        ".kernelmagic-removed"
    ]
    assert (user_kernels / ".kernelmagic-removed" / "one" / "kernel.json").exists()
    assert "one" not in specs.find_kernel_specs()


def test_locations(tmp_path, isolated_jupyter):
    assert specs.location_dir() == str(isolated_jupyter["JUPYTER_DATA_DIR"] / "kernels")
    assert specs.location_dir(prefix=str(tmp_path / "p")) == str(
        tmp_path / "p" / "share" / "jupyter" / "kernels"
    )
    assert specs.location_dir(sys_prefix=True) == os.path.join(
        sys.prefix, "share", "jupyter", "kernels"
    )
    with pytest.raises(specs.InvalidInput, match="choose one"):
        specs.location_dir(user=True, prefix="x")


def test_unwritable_location_is_one_line_with_advice(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(specs.LocationError, match="use --user"):
        specs.install_current_python("x", str(blocker / "kernels"), capture_options=_no_capture())


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_permission_denied_says_use_user(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(specs.LocationError, match="permission denied; use --user"):
        specs.install_current_python("x", str(locked / "kernels"), capture_options=_no_capture())


def test_concurrent_writers_lose_nothing(user_kernels, tmp_path):
    """Several processes add a variable each to one spec at the same moment."""
    write_spec(user_kernels, "shared")
    script = (
        "import sys; from kernelmagic.frontends.cli import main; "
        "sys.exit(main(['env', '-k', 'shared', f'K{sys.argv[1]}={sys.argv[1]}']))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(i)], stdout=subprocess.DEVNULL)
        for i in range(12)
    ]
    assert [p.wait() for p in procs] == [0] * 12
    env = json.loads((user_kernels / "shared" / "kernel.json").read_text())["env"]
    assert env == {f"K{i}": str(i) for i in range(12)}


def test_library_requests_refuse_wrong_types_with_the_documented_error(user_kernels):
    """Walk I: from Python, ``SpecEdit(argv_prefix="nice")`` wrote argv ["n", "i", "c",
    "e", ...]; ``remove_specs("abc")`` took each letter for a spec name; ``SpecEdit(env=
    {...})``, ``EnvChanges({"A": 1})`` and metadata JSON cannot hold raised AttributeError,
    TypeError or ValueError from inside (docs/python-api.md: the errors of kernelmagic.errors)."""
    from kernelmagic.errors import InvalidInput

    for name in ("a", "b", "k"):
        write_spec(user_kernels, name)
    before = {p.name: (p / "kernel.json").read_bytes() for p in user_kernels.iterdir()}
    wrong = [
        lambda: specs.SpecEdit(argv_prefix="nice"),
        lambda: specs.SpecEdit(argv_prefix=["nice", 5]),
        lambda: specs.SpecEdit(env=[("A", "1")]),
        lambda: specs.SpecEdit(metadata={"x": float("nan")}),
        lambda: specs.SpecEdit(metadata={"x": object()}),
        lambda: specs.SpecEdit(metadata=["x"]),
        lambda: EnvChanges({"A": 1}),
        lambda: EnvChanges({5: "1"}),
        lambda: specs.remove_specs("ab"),
    ]
    for make in wrong:
        with pytest.raises(InvalidInput):
            make()
    assert {p.name: (p / "kernel.json").read_bytes() for p in user_kernels.iterdir()} == before
    edit = specs.SpecEdit(env={"A": "1"})  # a dict is taken for what it says
    specs.patch_spec("k", edit)
    assert json.loads((user_kernels / "k" / "kernel.json").read_text())["env"] == {"A": "1"}


@pytest.mark.parametrize("flag", ["--display-name", "--language"])
def test_patch_refuses_an_empty_display_name_or_language(flag, user_kernels, capsys):
    """Walk H: `%kernel_patch h --display-name ""` wrote a blank the launcher showed."""
    from kernelmagic.frontends.cli import main

    write_spec(user_kernels, "h")
    before = (user_kernels / "h" / "kernel.json").read_bytes()
    assert main(["patch", "h", flag, ""]) == 2
    assert f"{flag} is empty" in capsys.readouterr().err
    assert (user_kernels / "h" / "kernel.json").read_bytes() == before


def test_a_spec_too_large_to_read_back_is_not_written(user_kernels):
    """Walk N: `patch_spec` (and install) wrote a 5 MB kernel.json that kernelmagic itself then
    would not read: no patch, clone or listing of it, and `undo` said "cannot write ...:
    larger than 4 MiB". Such a write is refused; a giant written by hand is named at undo."""
    path = write_spec(user_kernels, "k2") / "kernel.json"
    specs.patch_spec("k2", specs.SpecEdit(env={"A": "1"}))
    written = path.read_bytes()
    big = {"BIG": "x" * 5_000_000}
    with pytest.raises(specs.InvalidInput, match=r"would be 4\.8 MiB, more than the 4 MiB"):
        specs.patch_spec("k2", specs.SpecEdit(env=big))
    with pytest.raises(specs.InvalidInput, match=r"the spec would be 4\.8 MiB"):
        specs.install(specs.InstallRequest("k3", env=big, kernels_dir=str(user_kernels)))
    assert path.read_bytes() == written and not (user_kernels / "k3").exists()

    spec = json.loads(written)
    path.write_text(json.dumps({**spec, "env": big}))  # by hand
    with pytest.raises(specs.KernelmagicError, match="is larger than 4 MiB, more than kernelmag"):
        specs.undo_last_write("k2")


def test_a_name_taken_by_another_writer_meanwhile_is_spec_exists(user_kernels):
    """Walk N: when another writer took the name while this install ran its snippet, the
    install raised LocationError ("cannot write ...: a kernel spec named 'race' already
    exists"), so a script's `except SpecExists` did not catch it."""
    other = (
        "from kernelmagic import specs; from kernelmagic.domain.envcapture import CaptureOptions;"
        f" specs.install_current_python('race', {str(user_kernels)!r},"
        " capture_options=CaptureOptions(mode='none'))"
    )
    snippet = f"{shlex.quote(sys.executable)} -c {shlex.quote(other)}\nexport A=1\n"
    request = specs.InstallRequest("race", specs.Source("snippet", snippet=snippet),
                                   kernels_dir=str(user_kernels))  # fmt: skip
    with pytest.raises(specs.SpecExists, match="a kernel spec named 'race' already exists"):
        specs.install(request)
    assert "env" not in json.loads((user_kernels / "race" / "kernel.json").read_text())


def test_a_spec_removed_while_it_is_changed_is_no_such_spec(user_kernels, monkeypatch):
    """Walk N: said LocationError "(a link in its place since it was looked up?)"."""
    from kernelmagic.storage import atomic

    write_spec(user_kernels, "gone")
    taken = atomic.exclusive_lock

    @contextlib.contextmanager
    def removed_when_locked(path):
        with taken(path):
            shutil.rmtree(user_kernels / "gone")
            yield

    monkeypatch.setattr(atomic, "exclusive_lock", removed_when_locked)
    with pytest.raises(specs.NoSuchKernelSpec, match="No kernel spec 'gone'"):
        specs.patch_spec("gone", specs.SpecEdit(env={"A": "1"}))


def test_requests_show_no_secret_and_say_their_own_names():
    """Walk N: `repr(InstallRequest(..., env={"AWS_SECRET_ACCESS_KEY": ...}))` and a
    PatchRequest's provisioner config printed the secret (a notebook keeps the output, a log
    the traceback); PatchRequest and CloneRequest printed as `Request(...)`."""
    shown = [
        repr(specs.InstallRequest("x", env={"AWS_SECRET_ACCESS_KEY": "hunter2"})),
        repr(specs.PatchRequest("x", provisioner="p", provisioner_config={"password": "hunter2"})),
        repr(specs.CloneRequest("a", "b")),
        repr(specs.RemoveRequest(["a"])),
    ]
    assert not [text for text in shown if "hunter2" in text], shown
    assert [text.split("(")[0] for text in shown[1:]] == [
        "PatchRequest", "CloneRequest", "RemoveRequest"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("request_of", "said"),
    [
        (lambda: specs.PatchRequest("geo", edit=None), "edit is a SpecEdit, not NoneType"),
        (lambda: specs.PatchRequest(None), "name is a spec name, not NoneType"),
        (lambda: specs.CloneRequest("geo", "g2", edit={"env": {}}), "edit is a SpecEdit"),
        (lambda: specs.RefreshRequest(None), "name is a spec name, not NoneType"),
        (lambda: specs.RemoveRequest("geo"), "names is a list of strings, not str"),
    ],
)
def test_wrong_types_in_the_other_requests_are_invalid_input(request_of, said):
    """Walk N: accepted, then AttributeError when run (or `RemoveRequest("geo")` removing
    specs named g, e and o)."""
    with pytest.raises(specs.InvalidInput, match=re.escape(said)):
        request_of()


def test_a_copy_of_an_owner_only_spec_is_owner_only(user_kernels):
    """Walk N: a spec whose snippet held a token is written 0600 (docs/safety.md); its clone
    was 0644, and so was the spec after `clone --replace` onto itself."""
    snippet = specs.Source("snippet", snippet="export API_TOKEN=abcdef123456\nexport A=1\n")
    specs.install(specs.InstallRequest("sec", snippet, kernels_dir=str(user_kernels)))
    assert (user_kernels / "sec" / "kernel.json").stat().st_mode & 0o777 == 0o600
    specs.clone_spec("sec", "sec2", str(user_kernels))
    specs.clone_spec("sec", "sec", str(user_kernels), replace=True)
    for name in ("sec2", "sec"):
        assert (user_kernels / name / "kernel.json").stat().st_mode & 0o777 == 0o600, name


def test_a_dry_run_or_a_wrong_resource_dir_leaves_no_lock_anywhere(
    user_kernels, tmp_path, monkeypatch
):
    """Walk N: `patch_spec(..., resource_dir="/tmp", dry_run=True)` made `/.tmp.lock`, a
    relative one a lock in the caller's dir, a dry run of a system spec a lock in its dir
    (and, as a user who cannot write there, LocationError instead of the preview)."""
    write_spec(user_kernels, "geo")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notaspec").mkdir()
    edit = specs.SpecEdit(display_name="X")
    for wrong in (str(tmp_path / "notaspec"), "notaspec", ""):
        with pytest.raises(specs.InvalidInput, match=r"resource_dir is the path|no kernel spec"):
            specs.patch_spec("geo", edit, resource_dir=wrong, dry_run=True)
    change = specs.patch_spec("geo", edit, dry_run=True)
    assert change.after["display_name"] == "X" and not change.written
    relative = specs.patch_spec("geo", edit, resource_dir=os.path.relpath(user_kernels / "geo"))
    assert relative.resource_dir == str(user_kernels / "geo")
    assert list(tmp_path.rglob("*.lock")) == [user_kernels / ".geo.lock"]  # the real change's


@pytest.mark.parametrize(
    ("call", "said"),
    [
        (lambda d: specs.SpecEdit(argv_prefix=None), "argv_prefix is a list of strings, not No"),
        (lambda d: specs.SpecEdit(display_name=5), "--display-name is a string, not int"),
        (lambda d: specs.InstallRequest("x", like=5), "like is a spec name, not int"),
        (lambda d: specs.get_spec(["geo"]), "name is a spec name, not list"),
        (lambda d: specs.list_specs(b"g*"), "pattern is a glob, not bytes"),
        (lambda d: specs.jupyter_listing(None), "jupyter_listing's specs is a list of SpecInfo"),
        (lambda d: specs.jupyter_listing("x"), "jupyter_listing's specs is a list of SpecInfo"),
        (lambda d: specs.location_dir(prefix=b"/x"), "prefix is a path, not bytes"),
        (lambda d: specs.install_directory("d", d, d, None), "spec is a dict (a kernel.json)"),
        (
            lambda d: specs.install_current_python("c", d, environ=[("A", "1")]),
            "environ is a dict of name to value, not list",
        ),
        (
            lambda d: specs.install_current_python("c", d, environ={"A": b"1"}),
            "environ's A value is a string, not bytes",
        ),
    ],
)
def test_wrong_types_in_the_functions_are_invalid_input(user_kernels, call, said):
    """Walk N: each raised TypeError or AttributeError, or said something else ("--like is
    empty" for `like=5`); none may write anything."""
    with pytest.raises(specs.InvalidInput, match=re.escape(said)):
        call(str(user_kernels))
    assert not user_kernels.exists() or list(user_kernels.iterdir()) == []


def test_a_project_error_survives_a_process_pool():
    """Walk N: EnvironmentNotReady could not be unpickled (TypeError), so a
    ProcessPoolExecutor running installs failed on it."""
    import pickle

    from kernelmagic.errors import EnvironmentNotReady

    again = pickle.loads(pickle.dumps(EnvironmentNotReady("no .venv yet", "uv sync")))
    assert (str(again), again.command) == ("no .venv yet", "uv sync")


def test_an_ipykernel_changed_under_the_process_is_not_kept_as_the_installed_ones(
    user_kernels, tmp_path
):
    """Walk M: `pip install ipykernel==7.2.0` in a kernel that had imported 7.4.0, then
    `%kernel_install`: the spec got 7.4's `supported_encryption: ["curve"]` (a kernel that
    never became ready under transport_encryption="auto"), and the cache kept it, keyed by the
    files now installed, for every later process. Here the process imports ipykernel, then
    pretends the installed one changed (another version, a spec function that differs)."""
    script = textwrap.dedent(
        """
        import sys, ipykernel, ipykernel.kernelspec as k
        from kernelmagic import specs
        from kernelmagic.domain.envcapture import CaptureOptions
        ipykernel.__version__ = "0.0.1"  # what this process runs is not what is installed
        real = k.get_kernel_dict
        k.get_kernel_dict = lambda *a, **kw: {**real(*a, **kw), "metadata": {"stale": True}}
        specs.install_current_python(sys.argv[1], sys.argv[2],
                                     capture_options=CaptureOptions(mode="none"))
        """
    )
    subprocess.run([sys.executable, "-c", script, "changed", str(user_kernels)], check=True)
    fresh = "from kernelmagic import specs; import sys; from kernelmagic.domain.envcapture "
    fresh += "import CaptureOptions; specs.install_current_python(sys.argv[1], sys.argv[2], "
    fresh += "capture_options=CaptureOptions(mode='none'))"
    subprocess.run([sys.executable, "-c", fresh, "later", str(user_kernels)], check=True)
    for name in ("changed", "later"):
        spec = json.loads((user_kernels / name / "kernel.json").read_text())
        assert "stale" not in spec.get("metadata", {}), (name, spec)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, run with another user's HOME")
def test_root_makes_no_cache_dir_in_another_users_home(user_kernels, tmp_path, monkeypatch):
    """Walk M: `sudo -E kernelmagic list` made a root-owned ~/.cache in the user's home, and
    the user then could not make ~/.cache/pip, nor remove it."""
    home = tmp_path / "someone"
    home.mkdir()
    os.chown(home, 65534, 65534)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    specs.install_current_python("c", str(user_kernels), capture_options=_no_capture())
    assert list(home.iterdir()) == []


def test_a_change_that_fixes_one_of_two_problems_is_not_refused(user_kernels):
    """Walk O: a spec with an empty argv and an env value that is a number: a patch giving it
    an argv was refused as making the env problem new (only the first problem was seen)."""
    path = write_spec(user_kernels, "two", {"argv": [], "env": {"A": 1}}) / "kernel.json"
    argv = ["python3", "-f", "{connection_file}"]
    fixed = specs.rewrite_spec("two", lambda s: {**s, "argv": argv})
    assert fixed.written and json.loads(path.read_text())["argv"][0] == "python3"


def test_paths_may_be_pathlib_paths(user_kernels, tmp_path):
    """Walk O: this release's type checks refused `pathlib.Path` where a path goes, which
    worked before: `location_dir(prefix=Path(...))`, `InstallRequest(kernels_dir=Path(...))`
    (and `install_current_python(name, Path(...))`), `CaptureOptions(baseline_file=...)`,
    `rewrite_spec(..., resource_dir=Path(...))`; and a spec given as a Mapping."""
    from types import MappingProxyType

    assert specs.location_dir(prefix=tmp_path) == str(tmp_path / "share" / "jupyter" / "kernels")
    change, _ = specs.install_current_python("p", user_kernels, capture_options=_no_capture())
    assert change.written and (user_kernels / "p" / "kernel.json").is_file()
    assert specs.CaptureOptions(baseline_file=tmp_path / "b").baseline_file == str(tmp_path / "b")
    renamed = specs.rewrite_spec(
        "p", lambda s: {**s, "display_name": "P"}, resource_dir=user_kernels / "p"
    )
    assert renamed.written
    spec = MappingProxyType(json.loads((user_kernels / "p" / "kernel.json").read_text()))
    assert specs.install_directory("q", str(user_kernels), str(user_kernels / "p"), spec).written


def test_a_copy_of_a_spec_owner_only_by_umask_alone_is_readable(user_kernels, tmp_path):
    """Walk O: a spec made under umask 077 (0600, no secret) was cloned owner-only into a
    site's prefix, unreadable to the users it was made for."""
    path = write_spec(user_kernels, "plain") / "kernel.json"
    path.chmod(0o600)
    specs.clone_spec("plain", "plainsys", str(tmp_path / "site"))
    assert (tmp_path / "site" / "plainsys" / "kernel.json").stat().st_mode & 0o044 == 0o044


def test_a_single_string_of_secret_patterns_is_refused_not_taken_letter_by_letter(user_kernels):
    """Walk X: `EnvPolicy(extra_secrets="GEO_CODE")` made G, E, O, ... the secret names, so
    a spec holding GEO_CODE was written readable by everyone and shown unmasked."""
    for field in ("extra_secrets", "extra_noise"):
        with pytest.raises(specs.InvalidInput, match=f"{field} is a list of strings, not str"):
            specs.EnvPolicy(**{field: "GEO_CODE"})
    policy = specs.EnvPolicy(extra_secrets=["GEO_CODE"])  # a list is kept, as a tuple
    assert policy.extra_secrets == ("GEO_CODE",) and policy.is_secret("GEO_CODE", "4711")
    assert hash(policy) == hash(specs.EnvPolicy(extra_secrets=("GEO_CODE",)))


def test_a_flag_that_is_not_true_or_false_is_refused_and_changes_nothing(user_kernels):
    """Walk X: any non-empty string is true, so `SpecEdit(replace_env="no")` wiped the
    spec's env and `clone_spec(..., replace="no")` overwrote a spec."""
    spec = {"argv": ["/x", "{connection_file}"], "display_name": "S", "env": {"A": "1"}}
    write_spec(user_kernels, "seed", spec)
    before = (user_kernels / "seed" / "kernel.json").read_bytes()
    edit = specs.EnvChanges({"B": "2"}, ())
    refused = [
        lambda: specs.SpecEdit(env=edit, replace_env="no"),
        lambda: specs.clone_spec("seed", "seed", str(user_kernels), replace="no"),
        lambda: specs.RemoveRequest(("seed",), dry_run="no"),
        lambda: specs.CaptureOptions(templates="no"),
        lambda: specs.patch_spec("seed", specs.SpecEdit(env=edit), dry_run="no"),
        lambda: specs.patch_spec("seed", None),
        lambda: specs.patch_spec(["seed"], specs.SpecEdit(env=edit)),
        lambda: specs.remove_specs(None),
        lambda: specs.rewrite_spec("seed", None),
    ]
    for call in refused:
        with pytest.raises(specs.InvalidInput, match=r"is a (True or False|.*), not \w"):
            call()
    assert (user_kernels / "seed" / "kernel.json").read_bytes() == before


def test_a_removal_of_several_loses_the_race_for_one_and_removes_none(user_kernels):
    """Walk X: `remove_specs(["ra", "rb"])` while another process removed rb removed ra
    anyway, then failed with a false "permission" error. Here the other remover holds rb's
    lock and takes rb while this one waits for it."""
    import threading
    import time

    from kernelmagic.storage import atomic
    from kernelmagic.storage.transactions import lock_path

    for name in ("ra", "rb"):
        write_spec(user_kernels, name, {"argv": ["/x", "{connection_file}"], "display_name": name})
    outcome: list[BaseException] = []

    def remove() -> None:
        try:
            specs.remove_specs(["ra", "rb"])
        except BaseException as exc:  # the test reads it
            outcome.append(exc)

    with atomic.exclusive_lock(lock_path(str(user_kernels), "rb")):
        remover = threading.Thread(target=remove)
        remover.start()
        time.sleep(0.5)  # it found both and waits for rb's lock
        shutil.move(user_kernels / "rb", user_kernels.parent / "rb-taken")  # the other remover
    remover.join(timeout=30)
    assert [type(e) for e in outcome] == [specs.NoSuchKernelSpec], outcome
    assert (user_kernels / "ra" / "kernel.json").exists()


def test_wrong_paths_are_refused_as_what_they_are_and_write_nothing(user_kernels, tmp_path):
    """Walk X: a clone's kernels_dir went unchecked (an int, a NUL; an empty one fell back to
    the user's dir), and a missing source_dir was said as a dir that could not be written,
    with a lock file left behind."""
    write_spec(user_kernels, "seed", {"argv": ["/x", "{connection_file}"], "display_name": "S"})
    for kernels_dir, message in ((42, "is a path, not int"), ("", "kernels_dir is empty"),
                                 (f"{tmp_path}/a\0b", "holds a NUL")):  # fmt: skip
        with pytest.raises(specs.InvalidInput, match=message):
            specs.CloneRequest("seed", "copy", kernels_dir=kernels_dir)
    target = tmp_path / "share" / "jupyter" / "kernels"
    spec = {"argv": ["/x", "{connection_file}"], "display_name": "N"}
    with pytest.raises(specs.InvalidInput, match=f"source_dir '{tmp_path}/nope' is not a dir"):
        specs.install_directory("n", str(target), str(tmp_path / "nope"), spec)
    assert not target.exists() and sorted(os.listdir(user_kernels)) == ["seed"]
    with pytest.raises(specs.InvalidInput, match="keep is a function of a name, not int"):
        specs.list_specs(None, 5)
    with pytest.raises(specs.InvalidInput, match="path is a path, not NoneType"):
        specs.read_spec_file(None)


def test_a_spec_taken_by_another_remover_before_the_checks_is_no_such_spec(
    user_kernels, monkeypatch
):
    """Walk X2: a spec another remover took right after this one found it failed the
    permission check ("cannot write ...: permission denied"), and the check after the locks
    said "Available: none" where specs were left."""
    from kernelmagic.storage import history

    for name in ("ra", "rb"):
        write_spec(user_kernels, name, {"argv": ["/x", "{connection_file}"], "display_name": name})
    found_by_this_one = history.locate

    def found_then_taken(name):
        found = found_by_this_one(name)
        if name == "rb":
            shutil.move(found[1], user_kernels.parent / "rb-taken")
        return found

    monkeypatch.setattr(history, "locate", found_then_taken)
    with pytest.raises(specs.NoSuchKernelSpec, match=r"No kernel spec 'rb'\. Available: .*ra"):
        specs.remove_specs(["ra", "rb"])
    assert (user_kernels / "ra" / "kernel.json").exists()


def test_flags_of_the_remaining_functions_and_a_spec_without_files(user_kernels, tmp_path):
    """Walk X2: remove_specs' own dry_run and location_dir's flags took any truthy value,
    and install_directory refused None, its documented "no files but kernel.json"."""
    from fractions import Fraction

    write_spec(user_kernels, "keep", {"argv": ["/x", "{connection_file}"], "display_name": "K"})
    with pytest.raises(specs.InvalidInput, match="dry_run is a True or False, not str"):
        specs.remove_specs(["keep"], dry_run="no")
    with pytest.raises(specs.InvalidInput, match="user is a True or False, not str"):
        specs.location_dir(user="no")
    with pytest.raises(specs.InvalidInput, match=r"not fractions\.Fraction"):  # not a bare name
        specs.remove_specs(["keep"], dry_run=Fraction(1))
    assert (user_kernels / "keep").exists()
    spec = {"argv": ["/x", "{connection_file}"], "display_name": "N"}
    specs.install_directory("bare-files", str(user_kernels), None, spec)
    assert os.listdir(user_kernels / "bare-files") == ["kernel.json"]
