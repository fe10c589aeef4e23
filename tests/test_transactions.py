"""storage.transactions writes what its caller hands it (issue 32, item 4): the spec as given,
owner-only when the caller says so; what to hand it (a container's wrapper in step with its
env, owner-only for a secret) is decided once, in operations.spec_writes."""

from __future__ import annotations

import json
import os
import stat

from kernelmagic.domain import containers
from kernelmagic.domain.policy import DEFAULT_POLICY
from kernelmagic.domain.provenance import Provenance, Source
from kernelmagic.operations import spec_writes
from kernelmagic.storage import atomic, transactions

KERNEL = ("python", "-m", "ipykernel_launcher", "-f", "{connection_file}")
CONTAINER = containers.Container("/images/py", "podman", KERNEL, "/usr/bin/podman")


def _container_spec(argv_env: dict[str, str], env: dict[str, str]) -> dict:
    """A container spec whose wrapper passes ``argv_env``'s names while its env is ``env``."""
    spec = {"argv": containers.argv(CONTAINER, argv_env), "display_name": "C", "language": "python"}
    if env:
        spec["env"] = env
    return Provenance(Source("current"), container=CONTAINER.to_fields()).write_into(spec)


def _written(kernels, name: str) -> tuple[dict, int]:
    path = kernels / name / "kernel.json"
    return json.loads(path.read_text()), stat.S_IMODE(os.stat(path).st_mode)


def _empty(path: str) -> None:
    os.makedirs(path)


def test_storage_writes_the_spec_it_is_handed(user_kernels):
    """Storage does not decode the record to rewrite a container's argv behind the caller."""
    spec = _container_spec({}, {"FOO": "1"})  # its wrapper does not pass FOO yet
    slot = transactions.reserve(str(user_kernels), "c", replace=False, dry_run=False)
    slot.write("installed", spec, _empty, DEFAULT_POLICY, owner_only=False)
    written, mode = _written(user_kernels, "c")
    assert written == spec
    assert mode == atomic.default_file_mode()


def test_owner_only_is_the_callers_word(user_kernels):
    spec = {"argv": ["python", "-f", "{connection_file}"], "display_name": "P", "language": "py"}
    slot = transactions.reserve(str(user_kernels), "p", replace=False, dry_run=False)
    slot.write("installed", spec, _empty, owner_only=True)
    assert _written(user_kernels, "p")[1] == 0o600

    def add_env(current: dict) -> dict:
        return {**current, "env": {"A": "1"}}

    transactions.rewrite_spec("p", add_env, owner_only=lambda before, after: False)
    written, mode = _written(user_kernels, "p")
    assert written["env"] == {"A": "1"}
    assert mode == 0o600  # not owner-only by the caller's word: the file keeps its mode


def test_every_write_through_the_operations_keeps_the_wrapper_in_step(user_kernels):
    spec = _container_spec({}, {"FOO": "1"})
    slot = transactions.reserve(str(user_kernels), "c", replace=False, dry_run=False)
    spec_writes.write_spec(slot, "cloned", spec, _empty)
    assert _written(user_kernels, "c")[0]["argv"] == containers.argv(CONTAINER, {"FOO": "1"})

    def add_bar(current: dict) -> dict:
        return {**current, "env": {**current["env"], "BAR": "2"}}

    change = spec_writes.rewrite_spec("c", add_bar)
    assert change.written
    wanted = containers.argv(CONTAINER, {"FOO": "1", "BAR": "2"})
    assert _written(user_kernels, "c")[0]["argv"] == wanted


def test_the_operations_make_a_secret_owner_only(user_kernels):
    """By the policy in force and by the patterns the spec itself records."""
    plain = {"argv": ["python", "-f", "{connection_file}"], "display_name": "P", "language": "py"}
    slot = transactions.reserve(str(user_kernels), "p", replace=False, dry_run=False)
    spec_writes.write_spec(slot, "cloned", plain, _empty)
    assert _written(user_kernels, "p")[1] == atomic.default_file_mode()

    recorded = Provenance(Source("current"), extra_secrets=("SITE_*",)).write_into(dict(plain))
    slot = transactions.reserve(str(user_kernels), "r", replace=False, dry_run=False)
    spec_writes.write_spec(slot, "cloned", recorded, _empty)

    def site_value(current: dict) -> dict:
        return {**current, "env": {"SITE_COLOR": "blue"}}

    spec_writes.rewrite_spec("r", site_value)  # only the record says SITE_* is secret
    written, mode = _written(user_kernels, "r")
    assert written["env"] == {"SITE_COLOR": "blue"} and mode == 0o600
    spec_writes.rewrite_spec("p", lambda current: {**current, "env": {"API_TOKEN": "x" * 20}})
    assert _written(user_kernels, "p")[1] == 0o600


NOT_FINITE = (
    '{"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], '
    '"display_name": "n", "language": "python", "metadata": {"x": NaN}}'
)


def _state(directory) -> dict:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_a_number_json_cannot_hold_fails_in_one_line_and_writes_nothing(user_kernels, capsys):
    """Walk I: ``--metadata x=1e999`` and a spec on disk holding NaN made every writer
    print a traceback, and leave a backup behind; export printed NaN, which is no JSON."""
    from helpers import write_spec

    from kernelmagic.frontends.cli import main

    write_spec(user_kernels, "k", {"argv": list(KERNEL), "display_name": "k"})
    write_spec(user_kernels, "n", raw=NOT_FINITE)
    before = {name: _state(user_kernels / name) for name in ("k", "n")}
    for argv, status in (
        (["patch", "k", "--metadata", "x=1e999"], 2),
        (["patch", "k", "--metadata", "x=1e999", "--dry-run"], 2),
        (["env", "-k", "n", "X=1"], 1),
        (["patch", "n", "--display-name", "Y"], 1),
        (["clone", "n", "n2"], 1),
        (["export", "n"], 1),
    ):
        capsys.readouterr()
        assert main(argv) == status, argv
        err = capsys.readouterr().err
        assert err.startswith("kernelmagic: error: ") and len(err.splitlines()) == 1, err
    assert {name: _state(user_kernels / name) for name in ("k", "n")} == before
    assert not (user_kernels / "n2").exists()
    assert main(["show", "n"]) == 0 and '"x": NaN' in capsys.readouterr().out  # as it is


def test_a_failed_write_leaves_the_undo_history_as_it_was(user_kernels, tmp_path):
    """Walk I: a write that failed (a full disk) still added a backup, and evicted the oldest
    real one: five failures emptied the undo history. The file-size limit fails the new
    kernel.json (larger than the limit) after its backup (smaller) was written."""
    import subprocess
    import sys

    from helpers import write_spec

    write_spec(user_kernels, "k", {"argv": list(KERNEL), "display_name": "k"})
    for i in range(atomic.BACKUPS_KEPT):
        spec = json.loads((user_kernels / "k" / "kernel.json").read_text())
        spec["display_name"] = f"k{i}"
        transactions.rewrite_spec("k", lambda _, s=spec: s, owner_only=lambda *_: False)
    before = _state(user_kernels / "k")
    program = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))\n"
        "from kernelmagic.frontends.cli import main\n"
        "sys.exit(main(['env', '-k', 'k', 'BIG=' + 'x' * 4096]))\n"
    )
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
        assert done.returncode == 1 and "nothing was changed" in done.stderr, done.stderr
    assert _state(user_kernels / "k") == before


def test_a_write_protected_kernel_json_is_not_replaced(user_kernels, capsys):
    """Walk I: `chmod a-w kernel.json` was passed over: env and patch replaced it (the
    atomic rename needs no write bit on the file), keeping the 0444 mode."""
    from helpers import write_spec

    from kernelmagic.frontends.cli import main

    write_spec(user_kernels, "k", {"argv": list(KERNEL), "display_name": "k"})
    assert main(["env", "-k", "k", "A=1"]) == 0  # a backup to undo to
    kernel_json = user_kernels / "k" / "kernel.json"
    kernel_json.chmod(0o444)
    before = _state(user_kernels / "k")
    for argv in (["env", "-k", "k", "B=1"], ["patch", "k", "--display-name", "K"],
                 ["patch", "k", "--undo"]):  # fmt: skip
        capsys.readouterr()
        assert main(argv) == 1, argv
        assert "is write-protected" in capsys.readouterr().err
    assert _state(user_kernels / "k") == before
    assert main(["env", "-k", "k", "B=1", "--dry-run"]) == 0  # looking is not writing


def test_a_name_kernelmagic_gives_its_own_files_is_refused(user_kernels, capsys):
    """Walk I: `clone k .c.lock` made a spec whose dir is the lock of spec `c`: every write
    of `c` then said "lock file .c.lock is not a regular file; remove it" (the spec)."""
    from helpers import write_spec

    from kernelmagic.frontends.cli import main

    write_spec(user_kernels, "k", {"argv": list(KERNEL), "display_name": "k"})
    for name in (".c.lock", ".kernelmagic-removed"):
        assert main(["clone", "k", name]) == 2
        assert "a name kernelmagic gives its own files" in capsys.readouterr().err
        assert not (user_kernels / name).exists()
    assert main(["clone", "k", "c"]) == 0
