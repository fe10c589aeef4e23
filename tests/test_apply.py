"""apply: review runs nothing and shows what would run; apply changes only what differs;
the document is checked whole; documents from another machine (issue 23)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import run_as_nobody, write_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernelmagic.domain import documents
from kernelmagic.domain.provenance import comparable
from kernelmagic.frontends.cli import main

PYTHON_ARGV = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def _document(path: Path, *specs: dict) -> Path:
    path.write_text(
        json.dumps({"format": "kernelmagic-export", "format_version": 2, "specs": list(specs)})
    )
    return path


def _tree(*roots: Path) -> dict[str, str]:
    """Every file under the roots, by path, as a digest of its bytes and its mode."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_file() and not path.name.endswith(".lock"):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
                found[str(path)] = f"{digest} {stat.S_IMODE(path.stat().st_mode):o}"
    return found


# --- reviewing runs nothing ---------------------------------------------------------------------


def test_reviewing_a_document_built_to_run_code_runs_nothing(user_kernels, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    planted = tmp_path / "planted.sh"
    planted.write_text(f"#!/bin/sh\ntouch {marker}-$1\n")
    planted.chmod(0o755)
    entries = [
        {
            "name": "a",
            "kind": "python",
            "source": {"kind": "snippet", "snippet": f"touch {marker}-snippet; export A=1"},
        },
        {
            "name": "b",
            "kind": "python",
            "source": {"kind": "snippet", "snippet": "export B=1", "shell": str(planted)},
        },
        {"name": "c", "kind": "python", "source": {"kind": "python", "python": str(planted)}},
        {
            "name": "d",
            "kind": "python",
            "source": {"kind": "modules", "modules": f"gdal; touch {marker}-modules"},
        },
        {
            "name": "e",
            "kind": "copy",
            "spec": {
                "argv": [
                    "/bin/sh",
                    "-c",
                    f'SESSION_TOKEN="$(touch {marker}-argv; echo x)" exec python "$@"',
                    "{connection_file}",
                ],
                "display_name": "E",
                "language": "python",
            },
        },
    ]
    document = _document(tmp_path / "set.json", *entries)
    assert main(["apply", str(document), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert main(["apply", str(document), "--check"]) == 1  # none of them is installed
    out += capsys.readouterr().out
    assert not list(tmp_path.glob("PWNED*")), "reviewing ran the document"
    assert not user_kernels.exists()
    # ... and it shows each command that apply would run, quoted exactly:
    assert f"touch {marker}-snippet; export A=1" in out  # the snippet, in full
    assert f"{planted} -l, running this snippet" in out  # the shell the document chose
    assert f"{planted} -c" in out  # the interpreter the document named
    assert f"module load gdal\\; touch {marker}-modules" in out or "module load 'gdal;'" in out
    assert f'SESSION_TOKEN="$(touch {marker}-argv; echo x)"' in out  # shown in full, flagged
    assert "look: argv runs a shell command" in out
    assert "look: argv starts /bin/sh, not a Python, R or Julia interpreter" in out


def test_modules_from_a_document_are_quoted_not_run(user_kernels, tmp_path, lmod_available, capsys):
    marker = tmp_path / "PWNED-modules"
    entry = {
        "name": "d",
        "kind": "python",
        "source": {"kind": "modules", "modules": f"x;touch {marker}"},
    }
    document = _document(tmp_path / "set.json", entry)
    assert main(["apply", str(document)]) == 1  # `module load 'x;touch ...'`: no such module
    assert not marker.exists()
    # Lmod's own lines, and how to reach a module dir, below the one line (they were dropped)
    out = capsys.readouterr().out.splitlines()
    said = out[out.index(next(line for line in out if "not made here" in line)) + 1 :]
    assert any(line.startswith("    ") and "unknown" in line for line in said), out
    assert any("module use DIR" in line for line in said), out


# --- review output hides only the secret part ---------------------------------------------------


def test_review_masks_only_the_secret_part(user_kernels, tmp_path, capsys):
    env = {"HTTPS_PROXY": "http://team:pw@203.0.113.66:3128", "DB_PASSWORD": "hunter2"}
    entry = {
        "name": "p",
        "kind": "copy",
        "spec": {"argv": PYTHON_ARGV, "env": env, "display_name": "P", "language": "python"},
    }
    document = _document(tmp_path / "set.json", entry)
    assert main(["apply", str(document), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "+ env.HTTPS_PROXY=http://team:<hidden>@203.0.113.66:3128" in out  # where it points
    assert "+ env.DB_PASSWORD=<hidden>" in out and "hunter2" not in out and ":pw@" not in out


# --- where specs may go -------------------------------------------------------------------------


def test_locations_are_jupyters_kernel_dirs_only(user_kernels, tmp_path, capsys, isolated_jupyter):
    anywhere = tmp_path / "anywhere"
    spec = {"argv": PYTHON_ARGV, "display_name": "X", "language": "python"}
    document = _document(
        tmp_path / "set.json",
        {"name": "x", "kind": "copy", "spec": spec, "location": {"dir": str(anywhere)}},
        {"name": "y", "kind": "copy", "spec": spec, "location": {"prefix": "~"}},
    )
    assert main(["apply", str(document)]) == 1
    out = capsys.readouterr().out
    assert "not a directory Jupyter searches" in out and not anywhere.exists()
    home = isolated_jupyter["HOME"]
    assert (home / "share" / "jupyter" / "kernels" / "y" / "kernel.json").exists()  # not ./~
    assert not Path("~").exists()
    assert main(["apply", str(document), "x", "--prefix", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "share" / "jupyter" / "kernels" / "x" / "kernel.json").exists()


def test_a_provisioner_stanza_is_shown_and_needs_allow_remote(user_kernels, tmp_path, capsys):
    metadata = {"kernel_provisioner": {"provisioner_name": "local-provisioner", "config": {}}}
    remote = {
        "kernel_provisioner": {
            "provisioner_name": "distributed-provisioner",
            "config": {"remote_hosts": ["evil.example"]},
        }
    }
    spec = {"argv": PYTHON_ARGV, "display_name": "R", "language": "python"}
    document = _document(
        tmp_path / "set.json",
        {"name": "far", "kind": "copy", "spec": {**spec, "metadata": remote}},
        {"name": "near", "kind": "copy", "spec": {**spec, "metadata": metadata}},
    )
    assert main(["apply", str(document), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "evil.example" in out and "--allow-remote" in out
    assert main(["apply", str(document)]) == 1
    assert not (user_kernels / "far").exists() and (user_kernels / "near").exists()


# --- apply changes only what differs ------------------------------------------------------------


def test_export_then_apply_on_the_same_machine_changes_no_byte(
    user_kernels, system_kernels, tmp_path, capsys, ip
):
    ip.run_cell_magic(
        "kernel_install", f"snip --python {sys.executable}", "export GEO_HOME=/opt/geo\n"
    )
    ip.run_line_magic("kernel_env", "-k snip BY_HAND=1")
    write_spec(
        user_kernels, "hand", {"argv": PYTHON_ARGV, "display_name": "Hand", "language": "python"}
    )
    ir = write_spec(
        system_kernels,
        "ir-like",
        {
            "argv": ["R", "--slave", "-e", "IRkernel::main()", "--args", "{connection_file}"],
            "display_name": "R",
            "language": "R",
        },
    )
    (ir / "logo-64x64.png").write_bytes(b"\x89PNG fake logo")
    venv_kernels = Path(sys.prefix) / "share" / "jupyter" / "kernels"
    roots = (user_kernels, system_kernels, venv_kernels)
    document = tmp_path / "set.json"
    assert main(["export", "-o", str(document)]) == 0
    before = _tree(*roots)
    for mode in (["--dry-run"], ["--check"], []):
        assert main(["apply", str(document), *mode]) == 0, (mode, capsys.readouterr())
        assert _tree(*roots) == before, mode  # every file, logos included
    out = capsys.readouterr().out
    assert "logos" not in out  # nothing new: no note about files a document cannot carry
    if os.geteuid() == 0:  # a user who cannot write the system's specs: the same answers
        for directory in (system_kernels.parent.parent, system_kernels.parent, system_kernels):
            directory.chmod(0o755)  # readable, as a system's share/jupyter is
        readable = Path(tempfile.mkdtemp(prefix="kernelmagic-doc-"))
        readable.chmod(0o755)
        shared = readable / "set.json"
        shutil.copy(document, shared)
        shared.chmod(0o644)
        try:
            for mode in (["--dry-run"], ["--check"], []):
                status, err = run_as_nobody(["apply", str(shared), "ir-like", *mode])
                assert status == 0, (mode, err)
        finally:
            shutil.rmtree(readable)
        assert _tree(*roots) == before


def test_a_spec_captured_from_a_session_is_applied_as_recorded(
    user_kernels, tmp_path, monkeypatch, capsys
):
    """Walk K: apply re-captured a `--from-current`/`--baseline` spec from the applying
    process: GDAL_DATA and LD_LIBRARY_PATH, the point of the spec, were gone, and that
    session's own variables were written instead; `--check` then said it differed."""
    baseline = tmp_path / "before.env"
    baseline.write_text("".join(f"{k}={v}\0" for k, v in os.environ.items()))
    monkeypatch.setenv("GDAL_DATA", "/opt/gdal/share")
    assert main(["install", "gb", "--baseline", str(baseline)]) == 0
    recorded = json.loads((user_kernels / "gb" / "kernel.json").read_text())
    assert recorded["env"] == {"GDAL_DATA": "/opt/gdal/share"}
    document = tmp_path / "gb.json"
    assert main(["export", "gb", "-o", str(document)]) == 0
    shutil.rmtree(user_kernels / "gb")

    monkeypatch.delenv("GDAL_DATA")  # another session, on the machine at hand
    monkeypatch.setenv("APPLIERS_OWN", "1")
    capsys.readouterr()
    assert main(["apply", str(document), "--dry-run"]) == 0
    assert "captured from a running session" in capsys.readouterr().out
    assert main(["apply", str(document)]) == 0
    applied = json.loads((user_kernels / "gb" / "kernel.json").read_text())
    assert applied["env"] == {"GDAL_DATA": "/opt/gdal/share"}
    assert main(["apply", str(document), "--check"]) == 0


def test_apply_twice_writes_once(user_kernels, tmp_path, capsys):
    spec = {"argv": PYTHON_ARGV, "display_name": "A", "language": "python", "env": {"A": "1"}}
    document = _document(tmp_path / "set.json", {"name": "a", "kind": "copy", "spec": spec})
    assert main(["apply", str(document)]) == 0
    assert "a document carries no logos" in capsys.readouterr().out  # new: said once
    first = _tree(user_kernels)
    assert main(["apply", str(document)]) == 0
    assert "unchanged" in capsys.readouterr().out and _tree(user_kernels) == first
    (user_kernels / "a" / "logo-64x64.png").write_bytes(b"logo")  # a file it does not carry
    spec["env"]["A"] = "2"
    _document(document, {"name": "a", "kind": "copy", "spec": spec})
    assert main(["apply", str(document)]) == 0
    assert (user_kernels / "a" / "logo-64x64.png").read_bytes() == b"logo"  # kept
    assert json.loads((user_kernels / "a" / "kernel.json").read_text())["env"] == {"A": "2"}


def test_check_names_each_field_and_variable_that_drifted(user_kernels, tmp_path, capsys):
    spec = {
        "argv": PYTHON_ARGV,
        "display_name": "A",
        "language": "python",
        "env": {"X": "1", "GONE": "g"},
        "interrupt_mode": "signal",
        "metadata": {"debugger": True},
    }
    document = _document(tmp_path / "set.json", {"name": "a", "kind": "copy", "spec": spec})
    assert main(["apply", str(document)]) == 0
    path = user_kernels / "a" / "kernel.json"
    drifted = json.loads(path.read_text())
    drifted["env"] = {"X": "2", "NEW": "n", "API_TOKEN": "ghp_" + "x" * 36}
    drifted["interrupt_mode"] = "message"
    drifted["metadata"]["debugger"] = False
    path.write_text(json.dumps(drifted))
    capsys.readouterr()
    assert main(["apply", str(document), "--check"]) == 1
    out = capsys.readouterr().out
    for line in (
        "env.X: 1 -> 2",
        "+ env.NEW=n",
        "- env.GONE",
        "+ env.API_TOKEN=<hidden>",
        'interrupt_mode: "signal" -> "message"',
        "metadata.debugger: true -> false",
    ):
        assert line in out, line
    assert "ghp_" not in out


# --- the document, checked whole ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        (
            {"name": "a", "kind": "copy", "spec": {"argv": PYTHON_ARGV, "env": {"A=B": "1"}}},
            "not a variable name",
        ),
        ({"name": "a", "kind": "copy", "spec": {"argv": PYTHON_ARGV, "env": {"A": "x\0y"}}}, "NUL"),
        (
            {
                "name": "a",
                "kind": "python",
                "set_by_hand": {"A": "1\0"},
                "source": {"kind": "current"},
            },
            "NUL",
        ),
        ({"name": 7, "kind": "copy"}, "name: must be text"),
        ({"name": "../x", "kind": "copy", "spec": {"argv": PYTHON_ARGV}}, "invalid kernel name"),
    ],
)
def test_values_no_process_can_take_are_refused_up_front(
    user_kernels, tmp_path, entry, said, capsys
):
    ok = {
        "name": "ok",
        "kind": "copy",
        "spec": {"argv": PYTHON_ARGV, "display_name": "ok", "language": "python"},
    }
    document = _document(tmp_path / "set.json", ok, entry)
    assert main(["apply", str(document)]) == 2
    assert said in capsys.readouterr().err
    assert not user_kernels.exists()  # not even the good entry: the document is checked first


_MUTANTS = st.sampled_from(
    [
        None,
        0,
        1.5,
        -1,
        True,
        "",
        "x" * 10_000,
        [],
        [1, "a"],
        {},
        {"k": "v"},
        "user",
        "../..",
        {"prefix": "relative"},
        {"dir": 1},
        ["a"] * 200,
        {"a": {"b": {"c": {"d": [[[[[[]]]]]]}}}},
    ]
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_documents_are_refused_in_lines_or_applied_never_a_traceback(data, tmp_path_factory):
    """Random mutations of a real export, of format 2 or 3 (wrong types, extra and missing
    keys, nesting, sizes): apply answers with lines, changes nothing when it refuses, never
    raises."""
    root = tmp_path_factory.mktemp("fuzz")
    os.environ["JUPYTER_DATA_DIR"] = str(root / "data")
    real = {
        "format": "kernelmagic-export",
        "format_version": 2,
        "specs": [
            {
                "name": "c",
                "kind": "copy",
                "location": "user",
                "display_name": "C",
                "language": "python",
                "spec": {
                    "argv": PYTHON_ARGV,
                    "display_name": "C",
                    "language": "python",
                    "env": {"A": "1"},
                },
                "secrets": [],
            },
            {
                "name": "p",
                "kind": "python",
                "location": "user",
                "display_name": "P",
                "language": "python",
                "source": {"kind": "python", "python": sys.executable},
                "capture": {"mode": "none"},
                "display_name_made_up": False,
                "set_by_hand": {"B": "2"},
                "captured": {},
                "secrets": [],
            },
        ],
    }
    if data.draw(st.booleans()):  # the current format, as export writes it now
        made = real["specs"][1]
        made["kernelmagic"] = {"source": "python", "python": sys.executable, "capture": "none",
                               "explicit": ["B"]}  # fmt: skip
        made["env"] = made.pop("set_by_hand")
        for key in ("kind", "source", "capture", "display_name_made_up", "captured"):
            made.pop(key)
        del real["specs"][0]["kind"]
        real["format_version"] = 3
    doc = copy.deepcopy(real)
    for _ in range(data.draw(st.integers(1, 4))):
        target = doc["specs"][data.draw(st.integers(0, 1))] if doc.get("specs") else doc
        if not isinstance(target, dict):
            break
        key = data.draw(st.sampled_from(sorted({*target, "extra", "spec", "source", "env"})))
        how = data.draw(st.sampled_from(["set", "delete", "nest"]))
        if how == "delete":
            target.pop(key, None)
        elif how == "nest" and isinstance(target.get(key), dict) and target[key]:
            inner = data.draw(st.sampled_from(sorted(target[key])))
            target[key][inner] = copy.deepcopy(data.draw(_MUTANTS))
        else:
            target[key] = copy.deepcopy(data.draw(_MUTANTS))
    path = root / "doc.json"
    path.write_text(json.dumps(doc))
    kernels = root / "data" / "kernels"
    for mode in (["--dry-run"], ["--check"], []):
        status = main(["apply", str(path), *mode])
        assert status in (0, 1, 2)
        if status == 2:
            assert not kernels.exists()


# --- the format: provenance's own names (issue 32, item 5) ---------------------------------------


def _format_2_document() -> dict:
    """A document as kernelmagic 0.2.0 wrote it (`export copied plain snip snip-like`), the
    interpreter's path and the dates aside: the record spelled its own way (`kind`,
    `source.kind`, `program`, `capture.mode`, `display_name_made_up`, `set_by_hand`)."""
    python = sys.executable
    made_up = f"Python {sys.version_info.major}.{sys.version_info.minor} (snip)"
    argv = [python, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    no_rules = {"include": [], "exclude": [], "templates": True, "extra_secrets": [],
                "extra_noise": []}  # fmt: skip
    return {
        "format": "kernelmagic-export",
        "format_version": 2,
        "exported": "2026-12-04T01:50:03+00:00",
        "kernelmagic": "0.2.0",
        "specs": [
            {
                "name": "copied",
                "display_name": "Copied",
                "language": "python",
                "location": "user",
                "kind": "copy",
                "spec": {
                    "argv": PYTHON_ARGV,
                    "display_name": "Copied",
                    "language": "python",
                    "env": {"A": "1"},
                },
                "secrets": [],
            },
            {
                "name": "plain",
                "display_name": "Plain Py",
                "language": "python",
                "location": "user",
                "kind": "python",
                "source": {"kind": "current"},
                "capture": {"mode": "none", **no_rules},
                "display_name_made_up": False,
                "set_by_hand": {"BY_HAND": "1"},
                "captured": {},
                "spec": {
                    "argv": argv,
                    "display_name": "Plain Py",
                    "language": "python",
                    "env": {"BY_HAND": "1"},
                },
                "secrets": [],
            },
            {
                "name": "snip",
                "display_name": made_up,
                "language": "python",
                "location": "user",
                "kind": "python",
                "source": {
                    "kind": "snippet",
                    "snippet": "export GEO_HOME=/opt/geo\nexport DROP_ME=1\n",
                    "python": python,
                },
                "capture": {**no_rules, "mode": "changed", "exclude": ["DROP_*"]},
                "display_name_made_up": True,
                "set_by_hand": {"OMP_NUM_THREADS": "8"},
                "captured": {"GEO_HOME": "/opt/geo"},
                "spec": {
                    "argv": argv,
                    "display_name": made_up,
                    "language": "python",
                    "env": {"GEO_HOME": "/opt/geo", "OMP_NUM_THREADS": "8"},
                },
                "secrets": [],
            },
            {
                "name": "snip-like",
                "display_name": f"{made_up} (snip-like)",
                "language": "python",
                "location": "user",
                "kind": "like",
                "source": {"kind": "current"},
                "like": "snip",
                "capture": {"mode": "none", **no_rules},
                "display_name_made_up": True,
                "set_by_hand": {},
                "captured": {},
                "spec": {
                    "argv": argv,
                    "display_name": f"{made_up} (snip-like)",
                    "language": "python",
                },
                "secrets": [],
            },
        ],
    }


_OLD_NAMES = ("set_by_hand", "display_name_made_up", "snippet_held_secrets", '"kind"', '"mode"')


def test_a_format_1_session_entry_writes_the_variables_it_recorded(
    user_kernels, tmp_path, capsys, monkeypatch
):
    """Walk R: a 0.1 document's spec captured from a session (`install geo` in an activated
    env) was captured again from the session running apply: GDAL_DATA, which the document
    records, was gone, and that session's own variables were written instead."""
    doc = {
        "format": "kernelmagic-export",
        "format_version": 1,
        "exported": "2026-12-05T11:04:20+00:00",
        "kernelmagic": "0.1.0",
        "specs": [
            {
                "name": "geo",
                "display_name": "Python 3.11 (geo)",
                "language": "python",
                "location": "user",
                "kind": "python",
                "source": {"kind": "current"},
                "capture": {"mode": "changed", "include": [], "exclude": [], "templates": True},
                "display_name_made_up": True,
                "set_by_hand": {"BY_HAND": "1"},
                "captured": {"GDAL_DATA": "/opt/gdal", "VIRTUAL_ENV": "/old/venv"},
                "secrets": [],
            }
        ],
    }  # fmt: skip (as kernelmagic 0.1 wrote it)
    path = tmp_path / "doc1.json"
    path.write_text(json.dumps(doc))
    monkeypatch.setenv("APPLIERS_OWN", "session")
    assert main(["apply", str(path), "--dry-run"]) == 0
    assert "bash -l" not in capsys.readouterr().out  # nothing captured, nothing run
    assert main(["apply", str(path)]) == 0, capsys.readouterr()
    spec = json.loads((user_kernels / "geo" / "kernel.json").read_text())
    assert spec["env"] == {"GDAL_DATA": "/opt/gdal", "VIRTUAL_ENV": "/old/venv", "BY_HAND": "1"}
    assert spec["argv"][0] == sys.executable
    capsys.readouterr()
    assert main(["apply", str(path)]) == 0
    assert capsys.readouterr().out.endswith(": unchanged\n")


def test_a_format_2_document_applies_to_the_specs_its_new_export_makes(
    user_kernels, tmp_path, capsys
):
    old = _format_2_document()
    names = [e["name"] for e in old["specs"]]
    old_path = tmp_path / "old.json"
    old_path.write_text(json.dumps(old))
    assert main(["apply", str(old_path)]) == 0, capsys.readouterr()
    made = {n: json.loads((user_kernels / n / "kernel.json").read_text()) for n in names}
    assert made["plain"]["display_name"] == "Plain Py" and made["plain"]["env"] == {"BY_HAND": "1"}
    assert made["snip"]["env"] == {"GEO_HOME": "/opt/geo", "OMP_NUM_THREADS": "8"}  # no DROP_ME
    assert made["snip-like"]["metadata"]["kernelmagic"]["like"] == "snip"

    new_path = tmp_path / "new.json"
    assert main(["export", *names, "-o", str(new_path)]) == 0
    text = new_path.read_text()
    new = json.loads(text)
    assert new["format_version"] == 3
    by_name = {e["name"]: e for e in new["specs"]}
    # Each record field under the name metadata.kernelmagic gives it, and none of the old ones.
    assert by_name["snip-like"]["kernelmagic"]["kernel_kind"] == "like"
    assert (
        by_name["snip"]["kernelmagic"]["generated_display_name"] == by_name["snip"]["display_name"]
    )
    assert "generated_display_name" not in by_name["plain"]["kernelmagic"]  # chosen by hand
    assert by_name["snip"]["kernelmagic"]["explicit"] == ["OMP_NUM_THREADS"]
    assert "kernelmagic" not in by_name["copied"]
    for entry in new["specs"]:
        for old_name in _OLD_NAMES:
            assert old_name not in json.dumps({k: v for k, v in entry.items() if k != "spec"})
    # The migration of the old document says what the new export says.
    migrated = {e["name"]: e for e in documents.migrated(old)["specs"]}
    for name in names:
        for key in ("kernelmagic", "env", "display_name", "location"):
            assert migrated[name].get(key) == by_name[name].get(key), (name, key)

    for name in names:
        shutil.rmtree(user_kernels / name)
    assert main(["apply", str(new_path)]) == 0
    remade = {n: json.loads((user_kernels / n / "kernel.json").read_text()) for n in names}
    assert {n: comparable(s) for n, s in remade.items()} == {
        n: comparable(s) for n, s in made.items()
    }
    # And the round trip changes nothing: export -> apply on the same machine writes no byte.
    before = _tree(user_kernels)
    capsys.readouterr()
    assert main(["apply", str(new_path)]) == 0
    assert capsys.readouterr().out.count(": unchanged") == len(names)
    assert _tree(user_kernels) == before
    assert main(["apply", str(new_path), "--check"]) == 0


def test_a_snippet_that_held_a_secret_is_not_re_run_in_either_format(
    user_kernels, tmp_path, capsys
):
    token = "ghp_" + "S" * 36
    snippet = tmp_path / "setup.sh"
    snippet.write_text(f"export GITHUB_TOKEN={token}\nexport GEO=1\n")
    argv = ["install", "sec", "--snippet-file", str(snippet), "--python", sys.executable]
    assert main(argv) == 0
    new = tmp_path / "new.json"
    assert main(["export", "sec", "-o", str(new)]) == 0
    assert json.loads(new.read_text())["specs"][0]["kernelmagic"]["snippet_file"]
    old = _document(
        tmp_path / "old.json",
        {
            "name": "sec",
            "kind": "python",
            "source": {"kind": "snippet", "snippet": "<hidden>", "snippet_held_secrets": True},
        },
    )
    shutil.rmtree(user_kernels / "sec")
    for document in (new, old):
        capsys.readouterr()
        assert main(["apply", str(document)]) == 1
        assert "its snippet held a secret" in capsys.readouterr().out
        assert not (user_kernels / "sec").exists()


def _format_3_entry() -> dict:
    return {
        "name": "p",
        "display_name": "P",
        "language": "python",
        "location": "user",
        "kernelmagic": {
            "source": "python",
            "python": sys.executable,
            "capture": "none",
            "explicit": ["B"],
        },
        "env": {"B": "2"},
        "secrets": [],
    }


@pytest.mark.parametrize(
    ("version", "change", "said"),
    [
        # one format's names in the other's document
        (
            3,
            lambda e: e.update(set_by_hand={"B": "2"}),
            "(p).set_by_hand: not a key of an export document of format_version 3",
        ),
        (
            3,
            lambda e: e.update(kind="python"),
            "(p).kind: not a key of an export document of format_version 3",
        ),
        (
            3,
            lambda e: e["kernelmagic"].update(display_name_made_up=True),
            "(p).kernelmagic.display_name_made_up: not a field of the record",
        ),
        (
            2,
            lambda e: e.update(explicit=["B"]),
            "(p).explicit: not a key of an export document of format_version 2",
        ),
        (2, lambda e: e.update(kernelmagic={"source": "current"}), "(p).kernelmagic: not a key"),
        (
            1,
            lambda e: e.update(generated_display_name="P"),
            "(p).generated_display_name: not a key of an export document of format_version 1",
        ),
        # unknown fields and wrong values, named where they are
        (3, lambda e: e.update(colour="blue"), "(p).colour: not a key"),
        (
            3,
            lambda e: e["kernelmagic"].update(colour="blue"),
            "(p).kernelmagic.colour: not a field",
        ),
        (
            3,
            lambda e: e["kernelmagic"].update(explicit="B"),
            "(p).kernelmagic.explicit: must be a list of text",
        ),
        (
            3,
            lambda e: e["kernelmagic"].update(templates="yes"),
            "(p).kernelmagic.templates: must be true or false",
        ),
        (
            3,
            lambda e: e["kernelmagic"].update(kernel_kind="cobol"),
            "(p).kernelmagic.kernel_kind: 'cobol' is not one of",
        ),
        (3, lambda e: e["kernelmagic"].pop("source"), "(p).kernelmagic.source: missing"),
        (
            3,
            lambda e: e["kernelmagic"].update(python_requested="/x"),
            "(p).kernelmagic.python_requested: a source 'python' records python",
        ),
        (3, lambda e: e.update(kernelmagic=["current"]), "(p).kernelmagic: must be an object"),
        (3, lambda e: e.pop("kernelmagic"), "(p).spec: an entry without a kernelmagic record"),
        (3, lambda e: e.update(env={"B": 2}), "(p).env.B: must be text"),
    ],
)
def test_a_document_mixing_the_formats_names_is_refused_naming_the_field(
    version, change, said, user_kernels, tmp_path, capsys
):
    if version == 3:
        entry = _format_3_entry()
    else:
        entry = {"name": "p", "location": "user", "kind": "python", "capture": {"mode": "none"},
                 "source": {"kind": "python", "python": sys.executable},
                 "set_by_hand": {"B": "2"}}  # fmt: skip
    change(entry)
    path = tmp_path / "doc.json"
    path.write_text(
        json.dumps({"format": "kernelmagic-export", "format_version": version, "specs": [entry]})
    )
    for mode in (["--dry-run"], []):
        assert main(["apply", str(path), *mode]) == 2
        err = capsys.readouterr().err
        first, *details = err.rstrip("\n").split("\n")
        assert first.startswith("kernelmagic: error: ") and "nothing was run or written" in first
        assert [line for line in details if said in line], err
        assert "Traceback" not in err
    assert not user_kernels.exists()


def test_a_format_3_entry_written_by_hand_applies(user_kernels, tmp_path, capsys):
    path = tmp_path / "doc.json"
    document = {"format": "kernelmagic-export", "format_version": 3, "specs": [_format_3_entry()]}
    path.write_text(json.dumps(document))
    assert main(["apply", str(path)]) == 0, capsys.readouterr()
    spec = json.loads((user_kernels / "p" / "kernel.json").read_text())
    assert spec["env"] == {"B": "2"} and spec["metadata"]["kernelmagic"]["explicit"] == ["B"]
    assert main(["apply", str(path), "--check"]) == 0


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"format_version": True}, "format_version: True is not 1, 2 or 3"),
        ({"format_version": 3.0}, "format_version: 3.0 is not 1, 2 or 3"),
        (
            {"entry": {"kernelmagic": {"source": "current", "kernel_kind": "like",
                                       "like": "../../etc"}}},
            "like: '../../etc' is not a kernel spec name",
        ),
        (
            {"entry": {"location": {"prefix": "~root/x"}}},
            "location.prefix: '~root/x': only ~ (your own home) is expanded",
        ),
    ],
)  # fmt: skip
def test_a_colleagues_document_is_refused_at_review_where_apply_would_differ(
    change, said, user_kernels, tmp_path, capsys
):
    """Walk G: a `like` that is no spec name passed the review ("would re-make") and failed
    only in the real apply; format_version true was read as 1 and 3.0 as 3; a prefix
    `~user/x` went to another user's home, where the docs say a ~ is your own home."""
    entry = {**_format_3_entry(), **change.get("entry", {})}
    document = {"format": "kernelmagic-export", "format_version": 3, "specs": [entry]}
    document.update({k: v for k, v in change.items() if k != "entry"})
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document))
    assert main(["apply", str(path), "--dry-run"]) == 2
    assert said in capsys.readouterr().err
    assert not user_kernels.exists() or not list(user_kernels.iterdir())


def test_the_review_quotes_the_shell_it_runs(user_kernels, tmp_path, capsys):
    """Walk G: a record's shell `/bin/sh -c "touch /tmp/x"` was shown unquoted, though
    apply runs it as one program's path."""
    entry = _format_3_entry()
    entry["kernelmagic"] = {"source": "snippet", "snippet": "export A=1",
                            "shell": '/bin/sh -c "touch /tmp/x"', "capture": "changed"}  # fmt: skip
    entry.pop("env")
    entry["kernelmagic"].pop("explicit", None)
    path = tmp_path / "doc.json"
    path.write_text(json.dumps({"format": "kernelmagic-export", "format_version": 3,
                                "specs": [entry]}))  # fmt: skip
    main(["apply", str(path), "--dry-run"])
    out = capsys.readouterr().out
    assert "'/bin/sh -c \"touch /tmp/x\"' -l" in out, out


# --- another machine ---------------------------------------------------------------------------


def test_a_document_from_another_machine_maps_its_paths(user_kernels, tmp_path, capsys):
    old_prefix = "/old/cluster/venv"
    spec = {
        "argv": [f"{old_prefix}/bin/python", *PYTHON_ARGV[1:]],
        "display_name": "M",
        "language": "python",
        "env": {"PATH": f"{old_prefix}/bin:${{PATH}}"},
    }
    entries = [
        {"name": "m", "kind": "copy", "spec": spec},
        {
            "name": "n",
            "kind": "python",
            "source": {"kind": "python", "python": f"{old_prefix}/bin/python"},
            "capture": {"mode": "none"},
        },
    ]
    document = _document(tmp_path / "set.json", *entries)
    assert main(["apply", str(document), "n"]) == 1
    out = capsys.readouterr().out
    assert "is not on this machine" in out and "--map" in out and "--python" in out
    here = str(Path(sys.executable).parent.parent)
    assert main(["apply", str(document), "--map", f"{old_prefix}={here}"]) == 0
    written = json.loads((user_kernels / "m" / "kernel.json").read_text())
    assert written["argv"][0] == f"{here}/bin/python"
    assert written["env"]["PATH"] == f"{here}/bin:${{PATH}}"
    assert (user_kernels / "n" / "kernel.json").exists()


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_number_json_has_not_is_refused_at_review_without_a_traceback(
    user_kernels, tmp_path, capsys, number
):
    """Issue 34, item 13: --dry-run said it would write it, apply ended in the JSON
    writer's ValueError."""
    spec = {"argv": PYTHON_ARGV, "display_name": "w", "language": "python",
            "metadata": {"weight": "WEIGHT"}}  # fmt: skip
    document = _document(tmp_path / "set.json", {"name": "w", "kind": "copy", "spec": spec})
    document.write_text(document.read_text().replace('"WEIGHT"', number))
    for dry_run in (["--dry-run"], []):
        assert main(["apply", str(document), *dry_run]) == 2
        err = capsys.readouterr().err
        assert f"holds {'the number ' if number[0] == '1' else ''}{number}" in err, err
        assert "Traceback" not in err and "nothing was run or written" in err
    assert not user_kernels.exists()


def test_a_verbose_review_masks_the_spec_it_prints(user_kernels, tmp_path, capsys):
    """A document whose value of a secret-named variable is in the clear (another tool
    wrote it, or a person): the review masks it in its change lines and in the spec that
    --verbose prints below them."""
    assert main(["install", "rec1", "--from-current", "--capture", "none",
                 "--env", "API_TOKEN=abc"]) == 0  # fmt: skip
    document = tmp_path / "doc.json"
    assert main(["export", "rec1", "-o", str(document)]) == 0
    doc = json.loads(document.read_text())
    entry = doc["specs"][0]
    entry["name"] = "rec2"
    entry["env"]["API_TOKEN"] = entry["spec"]["env"]["API_TOKEN"] = "plainsecret123"
    del entry["secrets"]
    document.write_text(json.dumps(doc))
    capsys.readouterr()
    main(["apply", str(document), "--dry-run", "--verbose"])
    out = capsys.readouterr().out
    assert "API_TOKEN" in out and "plainsecret123" not in out


def _apply_changes_nothing(doc: Path, spec_dir: Path, capsys) -> None:
    """`apply --check`, `--dry-run` and `apply` of ``doc`` to the spec it records: "as
    recorded" and "unchanged", and no byte of its kernel.json written."""
    before = (spec_dir / "kernel.json").read_bytes()
    capsys.readouterr()
    for extra in (["--check"], ["--dry-run"], []):
        assert main(["apply", str(doc), *extra]) == 0, extra
        out = capsys.readouterr().out
        action = "as recorded" if extra == ["--check"] else "unchanged"
        assert out.splitlines() == [f"{spec_dir.name} ({spec_dir}): {action}"], out
    assert (spec_dir / "kernel.json").read_bytes() == before


def test_applying_a_document_to_the_spec_it_records_writes_nothing(user_kernels, tmp_path, capsys):
    """`apply` of a spec's own export, where `--check` said "as recorded", made it again from
    its source: a metadata key set by hand and a secret set by hand (the document masks it)
    were gone, and the record had a new date."""
    token = "ghp_" + "t" * 36
    argv = ["install", "mdt", "--capture", "none", "--env", "K=1", "--env", f"MY_API_TOKEN={token}"]
    assert main(argv) == 0
    assert main(["patch", "mdt", "--metadata", "foo=1"]) == 0
    doc = tmp_path / "mdt.json"
    assert main(["export", "mdt", "-o", str(doc)]) == 0
    _apply_changes_nothing(doc, user_kernels / "mdt", capsys)


def test_a_spec_made_again_keeps_the_secret_it_holds_here(user_kernels, tmp_path, capsys):
    token = "ghp_" + "t" * 36
    argv = ["install", "mdt", "--capture", "none", "--env", "K=1", "--env", f"MY_API_TOKEN={token}"]
    assert main(argv) == 0
    doc = tmp_path / "mdt.json"
    assert main(["export", "mdt", "-o", str(doc)]) == 0
    assert main(["env", "-k", "mdt", "K=2"]) == 0
    capsys.readouterr()
    assert main(["apply", str(doc)]) == 0
    out = capsys.readouterr().out
    assert "MY_API_TOKEN was a secret and is not in the document: kept as set here" in out, out
    env = json.loads((user_kernels / "mdt" / "kernel.json").read_text())["env"]
    assert env == {"MY_API_TOKEN": token, "K": "1"}
    assert (user_kernels / "mdt" / "kernel.json").stat().st_mode & 0o777 == 0o600


def test_a_copied_spec_keeps_the_secret_the_document_masked(user_kernels, tmp_path, capsys):
    """Walk R: a spec kernelmagic copies (hand-made, a container's) applied from its own
    export: `--check` said "as recorded", but `--dry-run` said "would update - env.TOKEN"
    and apply deleted the secret. Where it differs otherwise, the secret it holds stays."""
    token = "ghp_" + "t" * 36
    write_spec(
        user_kernels,
        "hand",
        {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
         "display_name": "Hand", "language": "python",
         "env": {"MY_API_TOKEN": token, "K": "1"}},
    )  # fmt: skip
    doc = tmp_path / "hand.json"
    assert main(["export", "hand", "-o", str(doc)]) == 0
    _apply_changes_nothing(doc, user_kernels / "hand", capsys)

    assert main(["env", "-k", "hand", "K=2"]) == 0
    assert main(["apply", str(doc)]) == 0
    out = capsys.readouterr().out
    assert "MY_API_TOKEN was a secret and is not in the document: kept as set here" in out
    assert token not in out
    env = json.loads((user_kernels / "hand" / "kernel.json").read_text())["env"]
    assert env == {"MY_API_TOKEN": token, "K": "1"}


def test_a_group_spec_made_again_by_apply_stays_the_groups(tmp_path, monkeypatch, capsys):
    """Applied where it had drifted, a spec shared with a group came back in the applying
    user's own group, its directory no longer setgid."""
    from helpers import group_of_mine

    group = group_of_mine()
    prefix = tmp_path / "project"
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    where = ["--prefix", str(prefix), "--group", group.gr_name]
    assert main(["install", "gx", "--capture", "none", "--env", "K=1", *where]) == 0
    doc = tmp_path / "gx.json"
    assert main(["export", "gx", "-o", str(doc)]) == 0
    assert main(["env", "-k", "gx", "K=2"]) == 0  # drifted: apply makes it again
    assert main(["apply", str(doc)]) == 0
    spec_dir = prefix / "share" / "jupyter" / "kernels" / "gx"
    assert json.loads((spec_dir / "kernel.json").read_text())["env"]["K"] == "1"
    assert spec_dir.stat().st_mode & stat.S_ISGID and spec_dir.stat().st_gid == group.gr_gid
    assert (spec_dir / "kernel.json").stat().st_gid == group.gr_gid


def test_a_document_others_can_change_is_not_run_without_trust(user_kernels, tmp_path, capsys):
    """A group member edited the snippet of a document in the team's directory after it was
    reviewed; `apply` ran it as the user (`refresh` refuses the same snippet)."""
    shared = tmp_path / "team"
    shared.mkdir()
    marker = tmp_path / "ran"
    snippet = tmp_path / "s.sh"
    snippet.write_text(f"touch {marker}\nexport GEO_HOME=/opt/geo\n")
    argv = ["install", "geo", "--snippet-file", str(snippet), "--python", sys.executable]
    assert main(argv) == 0
    doc = shared / "team.json"
    assert main(["export", "geo", "-o", str(doc)]) == 0
    assert main(["remove", "geo"]) == 0
    marker.unlink()
    shared.chmod(0o777)  # anyone may replace the document
    capsys.readouterr()
    assert main(["apply", str(doc), "--dry-run"]) == 0  # a review runs nothing, as before
    assert main(["apply", str(doc)]) == 1
    out = capsys.readouterr().out
    assert f"geo: not made here: not run: {shared} is writable by others" in out, out
    assert "--trust" in out and not marker.exists() and not (user_kernels / "geo").exists()
    assert main(["apply", str(doc), "--trust"]) == 0
    assert marker.exists() and (user_kernels / "geo").exists()


def test_an_export_cut_short_says_so(user_kernels, tmp_path, capsys):
    """A document cut short (a full disk, a copy stopped) was "not a kernelmagic export"."""
    assert main(["install", "geo", "--capture", "none"]) == 0
    doc = tmp_path / "geo.json"
    assert main(["export", "geo", "-o", str(doc)]) == 0
    doc.write_text(doc.read_text()[:-40])
    capsys.readouterr()
    assert main(["apply", str(doc)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kernelmagic: error: {doc} is a kernelmagic export but not valid JSON (")
    assert err.endswith("; nothing was run or written\n")


def test_check_agrees_with_apply_python_for_a_session_document(
    user_kernels, tmp_path, second_venv, capsys
):
    """Walk O: `apply --python P` of a session's spec wrote argv with P, then `apply --check
    --python P` said "differs: argv" and exited 1 (the next apply said unchanged); the record
    still named the old interpreter."""
    assert main(["install", "s1", "--capture", "none"]) == 0
    document = tmp_path / "d.json"
    assert main(["export", "s1", "-o", str(document)]) == 0
    python = str(second_venv / "bin" / "python")
    where = ["--prefix", str(tmp_path / "p"), "--python", python]
    assert main(["apply", str(document), *where]) == 0
    written = json.loads((tmp_path / "p/share/jupyter/kernels/s1/kernel.json").read_text())
    assert written["argv"][0] == python
    assert written["metadata"]["kernelmagic"]["python"] == python
    capsys.readouterr()
    assert main(["apply", "--check", str(document), *where]) == 0, capsys.readouterr().out
    assert main(["apply", str(document), *where]) == 0
    assert "unchanged" in capsys.readouterr().out
