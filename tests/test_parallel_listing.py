"""`kernelmagic list --json` across processes prints exactly what one process prints."""

from __future__ import annotations

import json
import sys

import pytest
from helpers import write_spec

from kernelmagic.domain.policy import EnvPolicy
from kernelmagic.frontends import cli
from kernelmagic.storage import parallel_listing


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


def _one_process(pattern: str | None, capsys) -> str:
    argv = ["list", "--json", *([pattern] if pattern else [])]
    workers = parallel_listing.SPECS_PER_WORKER
    parallel_listing.SPECS_PER_WORKER = 10**9
    try:
        assert cli.main(argv) == 0
    finally:
        parallel_listing.SPECS_PER_WORKER = workers
    return capsys.readouterr().out.rstrip("\n")


@pytest.mark.parametrize("pattern", [None, "k1*", "python"])
def test_fanned_out_listing_is_byte_identical(many_specs, monkeypatch, capsys, pattern):
    monkeypatch.setattr(parallel_listing, "SPECS_PER_WORKER", 500)
    monkeypatch.setattr(
        parallel_listing, "_cores", lambda: 3
    )  # three workers, whatever this machine has
    text = parallel_listing.listing_text(pattern, EnvPolicy())
    assert text is not None
    assert text == _one_process(pattern, capsys)
    listed = json.loads(text)
    assert "abc123" not in text and "pw@" not in text  # masked in every worker
    if pattern is None:
        assert len(listed["kernelspecs"]) == 2000 - 21 + 1  # 21 malformed, plus python3
        assert listed["kernelspecs"]["k0001"]["spec"]["display_name"] == "K 1"


def test_a_failed_worker_means_one_process_does_it_all(many_specs, monkeypatch, capsys):
    monkeypatch.setattr(parallel_listing, "SPECS_PER_WORKER", 500)
    monkeypatch.setattr(parallel_listing, "_cores", lambda: 2)
    real_part = parallel_listing._part

    def part(pattern, policy, k, workers):
        if k == 1:
            raise RuntimeError("a worker that dies")
        return real_part(pattern, policy, k, workers)

    monkeypatch.setattr(parallel_listing, "_part", part)
    assert parallel_listing.listing_text(None, EnvPolicy()) is None
    assert cli.main(["list", "--json"]) == 0  # the command still answers, in one process
    assert len(json.loads(capsys.readouterr().out)["kernelspecs"]) == 2000 - 21 + 1
