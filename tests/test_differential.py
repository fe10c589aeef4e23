"""kernelmagic's listing against jupyter_client's own, on random and on known-odd trees.

Compared: ``kernelmagic list --json`` with ``jupyter kernelspec list --json`` (both run as
commands), and ``specs.find_kernel_specs()`` / ``jupyter_listing(list_specs())`` with
``KernelSpecManager().find_kernel_specs()`` / ``get_all_specs()`` in this process; every spec
that Jupyter finds but hides must be in our ``"problems"``. The random trees come from a
seeded generator (names in mixed case across the user, system, JUPYTER_PATH and IPython
dirs; contents from a pool of valid and malformed kinds). On a mismatch the test shrinks the
tree to a minimal one and prints it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SYSTEM_DATA_DIR
from helpers import require_system_package, write_spec
from jupyter_client.kernelspec import KernelSpecManager

from kernelmagic import server, specs
from kernelmagic.frontends import cli
from kernelmagic.storage import lookups

SEED = 20261126
RANDOM_TREES = 40
CLI_TREES = 4  # of the random trees, also compared through both command lines

ARGV = ["/bin/true", "-f", "{connection_file}"]
BASE = {"argv": ARGV, "display_name": "D", "language": "python"}


def _json(data) -> bytes:
    return json.dumps(data).encode()


def _with(**changes) -> bytes:
    return _json({**BASE, **changes})


def _metadata(stanza) -> bytes:
    return _with(metadata={"kernel_provisioner": stanza})


# Content kinds: bytes for kernel.json, or a callable that makes the spec dir's entry.
CONTENTS: dict[str, bytes | Callable[[Path], None]] = {
    "ok": _json(BASE),
    "ok-env": _with(env={"A": "1", "P": "${PATH}:/x"}, interrupt_mode="message"),
    "empty-object": b"{}",
    "malformed": b'{"argv": [',
    "trailing-garbage": _json(BASE) + b" x",
    "top-level-list": b"[1]",
    "bom": b"\xef\xbb\xbf" + _json(BASE),
    "utf-16": json.dumps(BASE).encode("utf-16"),
    "utf-32": json.dumps(BASE).encode("utf-32"),
    "lone-surrogate": b'{"argv": ["a"], "display_name": "\xed\xa0\x80"}',
    "argv-string": _with(argv="/bin/true -f {connection_file}"),
    "argv-ints": _with(argv=[1, 2]),
    "argv-bools": _with(argv=[True]),
    "argv-null": _with(argv=None),
    "argv-number": _with(argv=5),
    "prov-no-config": _metadata({"provisioner_name": "local-provisioner"}),
    "prov-null": _metadata(None),
    "prov-number": _metadata(5),
    "prov-list": _metadata([]),
    "prov-string": _metadata("abc"),
    "prov-string-with-the-word": _metadata("provisioner_name"),
    "prov-unknown": _metadata({"provisioner_name": "nope-provisioner", "config": {}}),
    "prov-name-number": _metadata({"provisioner_name": 5}),
    "display-name-number": _with(display_name=5),
    "language-null": _with(language=None),
    "name-number": _with(name=5),
    "mimetype-number": _with(mimetype=5),
    "protocol-number": _with(kernel_protocol_version=5),
    "env-list": _with(env=[]),
    "env-non-string": _with(env={"A": 5}),
    "metadata-null": _with(metadata=None),
    "interrupt-upper": _with(interrupt_mode="SIGNAL"),
    "interrupt-bad": _with(interrupt_mode="bogus"),
    "unknown-key": _with(whatever=[1, {"x": None}]),
    "resource-dir-key": _with(resource_dir="/x"),
    "fifo": lambda d: os.mkfifo(d / "kernel.json"),
    "link-dev-null": lambda d: os.symlink("/dev/null", d / "kernel.json"),
    "self-link": lambda d: os.symlink(d / "kernel.json", d / "kernel.json"),
    "dangling-link": lambda d: os.symlink(d / "missing.json", d / "kernel.json"),
    "kernel-json-is-dir": lambda d: (d / "kernel.json").mkdir(),
    "no-kernel-json": lambda d: (d / "logo-64x64.png").write_bytes(b""),
}
NAMES = ["geo", "Geo", "GEO", "r", "python3", "Python3", "a.b", "x-1", "with space", "\u017f"]
PLACES = ["user", "system", "path", "ipython"]


def place_dirs(root: Path) -> dict[str, Path]:
    return {
        "user": Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels",
        "system": SYSTEM_DATA_DIR / "jupyter" / "kernels",
        "path": root / "jupyter-path" / "kernels",
        "ipython": Path(os.environ["IPYTHONDIR"]) / "kernels",
    }


def build(root: Path, entries: list[tuple[str, str, str]]) -> None:
    """Lay out ``entries`` (place, dir name, content kind) afresh."""
    dirs = place_dirs(root)
    for directory in dirs.values():
        shutil.rmtree(directory, ignore_errors=True)
    for place, name, kind in entries:
        spec_dir = dirs[place] / name
        spec_dir.mkdir(parents=True, exist_ok=True)
        for old in list(spec_dir.iterdir()):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
        content = CONTENTS[kind]
        if callable(content):
            content(spec_dir)
        else:
            (spec_dir / "kernel.json").write_bytes(content)


def random_tree(rng: random.Random) -> list[tuple[str, str, str]]:
    return [
        (rng.choice(PLACES), rng.choice(NAMES), rng.choice(list(CONTENTS)))
        for _ in range(rng.randint(1, 9))
    ]


def canonical(data) -> str:
    return json.dumps(data, sort_keys=True)  # NaN-safe, order-free


def library_mismatch() -> str | None:
    """Our library against jupyter_client in this process; None when they agree."""
    manager = KernelSpecManager()
    theirs_found = manager.find_kernel_specs()
    ours_found = specs.find_kernel_specs()
    if ours_found != theirs_found:
        return f"find_kernel_specs: ours {ours_found} != theirs {theirs_found}"
    theirs = manager.get_all_specs()
    listing = specs.jupyter_listing(specs.list_specs())
    if canonical(listing["kernelspecs"]) != canonical(theirs):
        return f"get_all_specs: ours {listing['kernelspecs']} != theirs {theirs}"
    unexplained = set(theirs_found) - set(theirs) - set(listing["problems"])
    if unexplained:
        return f"hidden by Jupyter but not in our problems: {sorted(unexplained)}"
    for name in theirs:  # by name, as a server starts one (and show, env, patch find it)
        try:
            started = manager.get_kernel_spec(name).resource_dir
        except Exception:  # its first entry of the name is one it cannot read: not compared
            continue
        found = specs.get_spec(name).resource_dir
        if found != started:
            return f"get_kernel_spec({name!r}): ours {found} != theirs {started}"
    return None


def _run(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def cli_mismatch() -> str | None:
    """``kernelmagic list --json`` against ``jupyter kernelspec list --json``."""
    bin_dir = Path(sys.executable).parent
    # Jupyter's first: on its first run a Jupyter app migrates ~/.ipython/kernels into the
    # data dir, and both must look at the tree as it is after that.
    theirs = _run([str(bin_dir / "jupyter"), "kernelspec", "list", "--json"])
    ours = _run([str(bin_dir / "kernelmagic"), "list", "--json"])
    if canonical(ours["kernelspecs"]) != canonical(theirs["kernelspecs"]):
        return f"list --json: ours {ours['kernelspecs']} != theirs {theirs['kernelspecs']}"
    return None


def shrink(root: Path, entries, check: Callable[[], str | None]):
    """Drop entries one at a time while the mismatch stays: a minimal tree to report."""
    entries = list(entries)
    changed = True
    while changed:
        changed = False
        for i in range(len(entries)):
            candidate = entries[:i] + entries[i + 1 :]
            build(root, candidate)
            if check():
                entries, changed = candidate, True
                break
    build(root, entries)
    return entries, check()


@pytest.fixture
def tree_root(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    root.mkdir()
    monkeypatch.setenv("JUPYTER_PATH", str(root / "jupyter-path"))
    yield root
    shutil.rmtree(SYSTEM_DATA_DIR / "jupyter", ignore_errors=True)


def test_random_trees_agree_with_jupyter(tree_root):
    rng = random.Random(SEED)
    for number in range(RANDOM_TREES):
        entries = random_tree(rng)
        build(tree_root, entries)
        for check in [library_mismatch] + ([cli_mismatch] if number < CLI_TREES else []):
            if check():
                minimal, why = shrink(tree_root, entries, check)
                pytest.fail(f"tree {number} (seed {SEED}) differs; minimal tree {minimal}: {why}")


# --- lookups overlapped, as on a network filesystem -------------------------------------

SHIM = Path(__file__).parent.parent / "benchmarks" / "slowfs.c"


@pytest.fixture
def lookups_at_once(monkeypatch):
    """Every lookup taken for a slow one: the listing spreads its reads over threads, as it
    does on NFS, opening a few files at a time (so a tree spans several batches); yields how
    many times it did."""
    monkeypatch.setattr(lookups, "PROBES", 1)
    monkeypatch.setattr(lookups, "SLOW_CALL", 0.0)
    monkeypatch.setattr(lookups, "_batch_size", lambda: 3)
    spread = []
    in_threads = lookups._in_threads
    pool_map = lookups._Pool.map

    def counted(func, items):
        spread.append(len(items))
        return in_threads(func, items)

    def counted_map(pool, func, items):
        spread.append(len(items))
        return pool_map(pool, func, items)

    monkeypatch.setattr(lookups, "_in_threads", counted)
    monkeypatch.setattr(lookups._Pool, "map", counted_map)
    return spread


def test_random_trees_agree_with_jupyter_when_lookups_overlap(tree_root, lookups_at_once):
    rng = random.Random(SEED + 1)
    for number in range(RANDOM_TREES):
        entries = random_tree(rng)
        build(tree_root, entries)
        if library_mismatch():
            minimal, why = shrink(tree_root, entries, library_mismatch)
            pytest.fail(f"tree {number} (seed {SEED + 1}) differs; minimal tree {minimal}: {why}")
    assert lookups_at_once  # the threads did the reading


def every_kind_with_shadows() -> list[tuple[str, str, str]]:
    """Each content kind under its own name on JUPYTER_PATH, plus names that a higher dir's
    non-spec, or a later entry of another case, must give way to."""
    return [("path", f"kind-{kind}", kind) for kind in CONTENTS] + [
        ("path", "geo", "fifo"),
        ("system", "geo", "ok"),
        ("path", "r", "no-kernel-json"),
        ("user", "r", "malformed"),
        ("ipython", "r", "ok"),
        ("path", "Dup", "ok-env"),
        ("path", "dup", "malformed"),
        ("path", "DUP", "kernel-json-is-dir"),
    ]


def test_every_kind_agrees_when_lookups_overlap(tree_root, lookups_at_once):
    build(tree_root, every_kind_with_shadows())
    assert library_mismatch() is None
    assert lookups_at_once


@pytest.fixture
def many_specs(user_kernels, system_kernels):
    """2,000 specs of every kind the listing treats differently: plain, with secrets to
    mask, malformed (hidden, in "problems"), missing programs, and a name in two dirs."""
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    for i in range(2000):
        name = f"k{i:04d}"
        if i % 97 == 0:
            write_spec(user_kernels, name, raw="{not json")
            continue
        spec = {"argv": list(argv), "display_name": f"K {i}", "language": "python"}
        if i % 5 == 0:
            spec["env"] = {"SERVICE_TOKEN": "abc123", "URL": "https://u:pw@host/x"}
        if i % 11 == 0:
            spec["argv"][0] = f"/nonexistent/{i}/python"
        write_spec(user_kernels if i % 13 else system_kernels, name, spec)
    write_spec(system_kernels, "k0001", {"argv": argv, "display_name": "shadowed"})
    return user_kernels


@pytest.mark.parametrize("pattern", [None, "k1*", "python"])
def test_overlapped_listing_of_many_specs_is_byte_identical(
    many_specs, monkeypatch, capsys, pattern
):
    """``list --json`` with the lookups overlapped (in many batches) prints byte for byte
    what it prints with them one at a time, secrets masked."""
    argv = ["list", "--json", *([pattern] if pattern else [])]
    assert cli.main(argv) == 0
    one_at_a_time = capsys.readouterr().out
    monkeypatch.setattr(lookups, "PROBES", 1)
    monkeypatch.setattr(lookups, "SLOW_CALL", 0.0)
    monkeypatch.setattr(lookups, "_batch_size", lambda: 64)
    assert cli.main(argv) == 0
    overlapped = capsys.readouterr().out
    assert overlapped == one_at_a_time
    assert "abc123" not in overlapped and "pw@" not in overlapped
    if pattern is None:
        listed = json.loads(overlapped)
        assert len(listed["kernelspecs"]) == 2000 - 21 + 1  # 21 malformed, plus python3
        assert listed["kernelspecs"]["k0001"]["spec"]["display_name"] == "K 1"
        assert len(listed["problems"]) >= 21


def rewrite_in_place(path: Path, old: bytes, new: bytes) -> None:
    """Change a file's bytes keeping its inode, size and mtime: nothing but its content
    says that it changed."""
    before = os.stat(path)
    data = path.read_bytes()
    assert len(old) == len(new) and old in data
    with open(path, "r+b") as f:
        f.write(data.replace(old, new))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )


def test_a_rewrite_in_place_is_listed(tree_root, lookups_at_once):
    build(tree_root, [("path", f"n{i:02d}", "ok") for i in range(12)])
    assert (
        specs.jupyter_listing(specs.list_specs())["kernelspecs"]["n03"]["spec"]["display_name"]
        == "D"
    )
    rewrite_in_place(place_dirs(tree_root)["path"] / "n03" / "kernel.json", b'"D"', b'"E"')
    listed = specs.jupyter_listing(specs.list_specs())["kernelspecs"]
    assert listed["n03"]["spec"]["display_name"] == "E"
    assert library_mismatch() is None


# --- the server's manager against jupyter_client's, call by call ---------------------------


def _outcome(manager, name: str):
    try:
        spec = manager.get_kernel_spec(name)
    except Exception as exc:
        return ["error", type(exc).__name__]
    return ["spec", spec.resource_dir, spec.to_dict()]


def manager_mismatch(ours, theirs) -> str | None:
    """kernelmagic's KernelSpecManager against jupyter_client's: find_kernel_specs,
    get_all_specs, and get_kernel_spec of every name there is and some there are not."""
    for call in ("find_kernel_specs", "get_all_specs"):
        got, wanted = getattr(ours, call)(), getattr(theirs, call)()
        if canonical(got) != canonical(wanted):
            return f"{call}: ours {got} != theirs {wanted}"
        if list(got) != list(wanted):  # the order of /api/kernelspecs (walk X: reversed)
            return f"{call} order: ours {list(got)} != theirs {list(wanted)}"
    names = {*NAMES, *(n.upper() for n in NAMES), *theirs.find_kernel_specs(), "missing"}
    for name in sorted(names):
        got, wanted = _outcome(ours, name), _outcome(theirs, name)
        if canonical(got) != canonical(wanted):
            return f"get_kernel_spec({name!r}): ours {got} != theirs {wanted}"
    return None


@pytest.mark.parametrize("overlap", [False, True], ids=["one-at-a-time", "overlapped"])
def test_server_manager_agrees_with_jupyter_client_as_the_tree_changes(
    tree_root, monkeypatch, overlap
):
    if overlap:
        monkeypatch.setattr(lookups, "PROBES", 1)
        monkeypatch.setattr(lookups, "SLOW_CALL", 0.0)
    ours, theirs = server.KernelSpecManager(), KernelSpecManager()  # kept across trees
    rng = random.Random(SEED + 2)
    for number in range(RANDOM_TREES):
        entries = random_tree(rng)
        build(tree_root, entries)

        def check():
            return manager_mismatch(ours, theirs)

        if check():
            minimal, why = shrink(tree_root, entries, check)
            pytest.fail(f"tree {number} (seed {SEED + 2}) differs; minimal tree {minimal}: {why}")
    build(tree_root, every_kind_with_shadows())
    assert manager_mismatch(ours, theirs) is None


def test_server_manager_sees_a_rewrite_in_place(tree_root, lookups_at_once):
    build(tree_root, [("path", f"n{i:02d}", "ok") for i in range(12)])
    ours = server.KernelSpecManager()
    assert ours.get_all_specs()["n03"]["spec"]["display_name"] == "D"
    rewrite_in_place(place_dirs(tree_root)["path"] / "n03" / "kernel.json", b'"D"', b'"E"')
    assert ours.get_all_specs()["n03"]["spec"]["display_name"] == "E"
    assert ours.get_kernel_spec("n03").display_name == "E"
    assert manager_mismatch(ours, KernelSpecManager()) is None


def test_server_manager_hands_out_copies(tree_root):
    build(tree_root, [("path", "geo", "ok-env")])
    ours = server.KernelSpecManager()
    given = ours.get_all_specs()["geo"]["spec"]
    given["argv"].append("--changed")
    given["env"]["A"] = "changed"
    assert manager_mismatch(ours, KernelSpecManager()) is None


@pytest.mark.parametrize(
    "settings",
    [
        {"allowed_kernelspecs": {"geo", "python3"}},
        {"ensure_native_kernel": False},
        {"kernel_dirs": ["relative-dir", "/nonexistent"]},
    ],
    ids=["allowed_kernelspecs", "no native kernel", "kernel_dirs"],
)
def test_server_manager_takes_jupyter_clients_options(tree_root, settings, monkeypatch):
    build(tree_root, [("user", "geo", "ok"), ("system", "r", "ok"), ("path", "Geo", "bom")])
    if "kernel_dirs" in settings:
        monkeypatch.chdir(place_dirs(tree_root)["path"].parent)
        settings = {"kernel_dirs": [*settings["kernel_dirs"], "kernels"]}
    ours, theirs = server.KernelSpecManager(**settings), KernelSpecManager(**settings)
    assert manager_mismatch(ours, theirs) is None


@pytest.fixture(scope="session")
def slowfs_library(tmp_path_factory):
    """benchmarks/slowfs.c built: every path lookup under SLOWFS_PREFIX waits."""
    cc = shutil.which("cc")
    require_system_package(cc is not None, "a C compiler (cc)", "gcc")
    library = tmp_path_factory.mktemp("slowfs") / "slowfs.so"
    command = [cc, "-O2", "-shared", "-fPIC", "-o", str(library), str(SHIM), "-ldl"]
    subprocess.run(command, check=True, capture_output=True)
    return library


def test_listing_on_a_slow_filesystem_agrees_with_jupyter(tree_root, slowfs_library, tmp_path):
    """Through the shim, lookups under the tree take 0.3 ms and the command line overlaps
    them; what it prints is still what Jupyter prints."""
    build(tree_root, every_kind_with_shadows())
    counts = tmp_path / "lookups"
    bin_dir = Path(sys.executable).parent
    slow = {
        **os.environ,
        "LD_PRELOAD": str(slowfs_library),
        "SLOWFS_PREFIX": str(tree_root),
        "SLOWFS_DELAY_US": "300",
        "SLOWFS_COUNT_FILE": str(counts),
    }
    done = subprocess.run(
        [str(bin_dir / "kernelmagic"), "list", "--json"], capture_output=True, env=slow
    )
    assert done.returncode == 0, done.stderr
    ours = json.loads(done.stdout)
    theirs = _run([str(bin_dir / "jupyter"), "kernelspec", "list", "--json"])
    assert canonical(ours["kernelspecs"]) == canonical(theirs["kernelspecs"])
    lookups_made = sum(int(line.split()[1]) for line in counts.read_text().splitlines())
    assert lookups_made >= len(CONTENTS)  # the shim saw the reads


def test_a_spec_found_by_name_looks_up_its_own_entries_only(tree_root, slowfs_library, tmp_path):
    """`show NAME` (and env, patch, ...) looked up every spec's kernel.json to find one: 10,002
    round trips for 10,000 specs on a shared filesystem, where jupyter_client makes 5."""
    build(tree_root, [("user", f"spec{i:03d}", "ok") for i in range(300)])
    counts = tmp_path / "lookups"
    slow = {
        **os.environ,
        "LD_PRELOAD": str(slowfs_library),
        "SLOWFS_PREFIX": str(Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels"),
        "SLOWFS_DELAY_US": "0",
        "SLOWFS_COUNT_FILE": str(counts),
    }
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        [str(bin_dir / "kernelmagic"), "show", "spec042", "--json"], capture_output=True, env=slow
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["name"] == "spec042"
    lookups_made = sum(int(line.split()[1]) for line in counts.read_text().splitlines())
    assert lookups_made < 20, lookups_made  # the dir, the spec's entry, its files: not 300


# --- one fixed case per kind of disagreement found before --------------------------------

ODD_KINDS = [
    "bom",
    "utf-16",
    "utf-32",
    "lone-surrogate",
    "argv-string",
    "argv-ints",
    "argv-bools",
    "prov-no-config",
    "prov-null",
    "prov-number",
    "prov-list",
    "prov-string",
    "prov-string-with-the-word",
    "prov-name-number",
]


@pytest.mark.parametrize("kind", ODD_KINDS)
def test_odd_contents_agree(tree_root, kind):
    build(tree_root, [("user", "odd", kind)])
    assert library_mismatch() is None
    hidden = "odd" not in KernelSpecManager().get_all_specs()
    found = {i.name: i for i in specs.list_specs()}["odd"]
    assert found.visible is not hidden
    if kind.startswith("argv-"):  # listed by Jupyter, but it cannot start
        assert "bad-argv" in [p.kind for p in found.problems]


def test_odd_contents_agree_through_both_command_lines(tree_root):
    build(tree_root, [("user", f"odd{i}", kind) for i, kind in enumerate(ODD_KINDS)])
    assert cli_mismatch() is None


@pytest.mark.parametrize(
    "kind", ["self-link", "link-dev-null", "fifo", "dangling-link", "kernel-json-is-dir"]
)
def test_a_kernel_json_that_is_no_file_does_not_shadow_lower_dirs(tree_root, kind):
    build(tree_root, [("user", "geo", kind), ("system", "geo", "ok"), ("user", "python3", kind)])
    assert library_mismatch() is None
    listing = specs.jupyter_listing(specs.list_specs())["kernelspecs"]
    assert listing["geo"]["resource_dir"] == str(SYSTEM_DATA_DIR / "jupyter" / "kernels" / "geo")
    assert "python3" in listing  # the built-in one


@pytest.mark.parametrize("kind", ["symlink-loop", "name-too-long"])
def test_a_kernels_dir_on_jupyter_path_that_cannot_be_opened_is_skipped(
    tree_root, kind, monkeypatch
):
    """Jupyter lists the other dirs' specs (``os.path.exists`` is False there); every
    listing failed with the error, and a server's kernelspecs request with a 500."""
    build(tree_root, [("user", "geo", "ok"), ("system", "r", "ok")])
    kernels = place_dirs(tree_root)["path"]
    shutil.rmtree(kernels, ignore_errors=True)
    kernels.parent.mkdir(parents=True, exist_ok=True)
    if kind == "symlink-loop":
        kernels.symlink_to("kernels")
    else:
        too_long = str(tree_root / ("x" * 300))
        monkeypatch.setenv("JUPYTER_PATH", os.environ["JUPYTER_PATH"] + os.pathsep + too_long)
    assert library_mismatch() is None
    assert cli_mismatch() is None
    assert {"geo", "r"} <= set(specs.find_kernel_specs())


def test_a_socket_named_kernel_json_does_not_shadow(tree_root, tmp_path):
    build(tree_root, [("system", "s", "ok")])
    user = place_dirs(tree_root)["user"] / "s"
    user.mkdir(parents=True)
    if len(str(user / "kernel.json")) > 100:
        pytest.skip("the socket path is too long for AF_UNIX here")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(user / "kernel.json"))
        assert library_mismatch() is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root can enter a mode-000 directory")
@pytest.mark.parametrize("mode", [0o000, 0o644])
def test_a_spec_dir_that_cannot_be_entered_does_not_shadow(tree_root, mode):
    build(tree_root, [("user", "geo", "ok"), ("system", "geo", "ok")])
    locked = place_dirs(tree_root)["user"] / "geo"
    locked.chmod(mode)
    try:
        assert library_mismatch() is None
    finally:
        locked.chmod(0o755)


def _ipython_variant(variant: str, tmp_path: Path, monkeypatch) -> None:
    if variant == "empty IPYTHONDIR":
        monkeypatch.setenv("IPYTHONDIR", "")
        monkeypatch.chdir(tmp_path)
    elif variant == "unnormalised IPYTHONDIR":
        real = tmp_path / "x" / "ipython"
        real.mkdir(parents=True)
        monkeypatch.setenv("IPYTHONDIR", f"{tmp_path}/x/y/..//ipython")
    else:
        monkeypatch.delenv("IPYTHONDIR")
        home = tmp_path / "real-home"
        home.mkdir()
        if variant == "HOME is a symlink":
            (home / ".ipython").mkdir()
            os.symlink(home, tmp_path / "home-link")
            monkeypatch.setenv("HOME", str(tmp_path / "home-link"))
        else:  # no ~/.ipython, but $XDG_CONFIG_HOME/ipython
            (tmp_path / "xdg" / "ipython").mkdir(parents=True)
            monkeypatch.setenv("HOME", str(home))
            monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.mark.parametrize(
    "variant",
    ["empty IPYTHONDIR", "unnormalised IPYTHONDIR", "HOME is a symlink", "XDG ipython dir"],
)
def test_ipython_dir_resolution_agrees(variant, tmp_path, monkeypatch):
    from IPython.paths import get_ipython_dir

    _ipython_variant(variant, tmp_path, monkeypatch)
    ipdir = get_ipython_dir()
    assert specs.ipython_dir() == ipdir
    write = Path(ipdir) / "kernels" / "from-ipython"
    write.mkdir(parents=True)
    (write / "kernel.json").write_bytes(CONTENTS["ok"])
    assert "from-ipython" in specs.find_kernel_specs()
    assert library_mismatch() is None
    assert cli_mismatch() is None


CONFIGS = {
    "allowed_kernelspecs": (
        "jupyter_config.json",
        '{"KernelSpecManager": {"allowed_kernelspecs": ["geo"]}}',
    ),
    "whitelist": ("jupyter_config.py", 'c.KernelSpecManager.whitelist = {"r"}\n'),
    "no native kernel": (
        "jupyter_config.json",
        '{"KernelSpecManager": {"ensure_native_kernel": false}}',
    ),
    # As traitlets reads them: a str is a set of one name (it was one of letters), and the
    # deprecated whitelist's observer runs after allowed_kernelspecs is set.
    "a name as a str": ("jupyter_config.py", 'c.KernelSpecManager.allowed_kernelspecs = "geo"'),
    "both names": (
        "jupyter_config.py",
        'c.KernelSpecManager.whitelist = ["r"]\nc.KernelSpecManager.allowed_kernelspecs = ["geo"]',
    ),
}


@pytest.mark.parametrize("setting", list(CONFIGS))
def test_jupyter_config_is_honoured(setting, tree_root):
    build(tree_root, [("user", "geo", "ok"), ("system", "r", "ok"), ("user", "other", "ok")])
    filename, text = CONFIGS[setting]
    config_dir = Path(os.environ["JUPYTER_CONFIG_DIR"])
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / filename).write_text(text)
    assert cli_mismatch() is None
    listed = specs.jupyter_listing(specs.list_specs())
    for name in {"geo", "r", "other"} - set(listed["kernelspecs"]):
        assert "not allowed by Jupyter config" in listed["problems"][name][0]
        shown = specs.get_spec(name)  # as show and env find it: said as the listing says it
        assert not shown.visible and "not allowed by Jupyter config" in str(shown.problems[-1])
    assert set(specs.find_kernel_specs()) == set(listed["kernelspecs"])


def test_a_jupyter_config_value_of_the_wrong_type_is_one_line(tree_root, capsys):
    """Jupyter's own listing fails on it too; ours printed a 17-line traceback."""
    build(tree_root, [("user", "geo", "ok")])
    config_dir = Path(os.environ["JUPYTER_CONFIG_DIR"])
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "jupyter_config.py").write_text("c.KernelSpecManager.allowed_kernelspecs = 5")
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kernelmagic: error: Jupyter config {config_dir}/jupyter_config.py: ")
    assert "expected a set, not the int 5" in err and err.count("\n") == 1


def test_listing_without_config_never_imports_jupyter_client(tree_root):
    # A python3 of its own: the built-in one is ipykernel's, whose writer imports it.
    build(tree_root, [("user", "python3", "ok"), ("user", "geo", "prov-no-config")])
    code = (
        "import sys\nfrom kernelmagic import specs\nspecs.jupyter_listing(specs.list_specs())\n"
        "print('jupyter_client' in sys.modules, 'traitlets.config.loader' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_the_command_line_listing_loads_only_what_listing_needs(tree_root):
    """Issue 32: `kernelmagic list` imports at most 20 of kernelmagic's modules, and none of
    the writers, the capture, the spec trust rules, ipykernel's spec cache (a python3 spec
    is on disk) or the large standard-library modules the listing does not use."""
    build(tree_root, [("user", "python3", "ok"), ("user", "geo", "ok")])
    code = (
        "import sys, io, contextlib\nfrom kernelmagic.frontends.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    status = main(['list'])\n"
        "print(status, ' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    status, modules = done.stdout.split(" ", 1)
    loaded = set(modules.split())
    assert status == "0", done.stderr
    ours = sorted(m for m in loaded if m.split(".")[0] == "kernelmagic")
    assert len(ours) <= 20, ours
    never = {
        "kernelmagic.operations", "kernelmagic.storage.atomic", "kernelmagic.storage.transactions",
        "kernelmagic.storage.ipykernel_specs", "kernelmagic.domain.trust",
        "kernelmagic.domain.containers", "kernelmagic.domain.envcapture",
        "kernelmagic.domain.shell_syntax", "html", "statistics", "concurrent.futures",
        "jupyter_client",
    }  # fmt: skip
    assert loaded & never == set()


@pytest.mark.parametrize("name", ["\u017f", "\u212a", "\u0130", "GEO", "a\n", ".", "n" * 256])
def test_names_follow_jupyter_clients_rule(name):
    from jupyter_client.kernelspec import _is_valid_kernel_name

    jupyter_accepts = bool(_is_valid_kernel_name(name.lower()))
    try:
        specs.validate_name(name)
        ours = True
    except specs.InvalidInput:
        ours = False
    breaks_the_dir = name.lower() in (".", "..") or name.endswith("\n") or len(name) > 255
    assert ours == (jupyter_accepts and not breaks_the_dir)
