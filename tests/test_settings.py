"""One configuration for both front ends: jupyter_kernelmagic_config in Jupyter's config path."""

from __future__ import annotations

import json

import pytest
from helpers import write_spec

from kernelmagic import settings
from kernelmagic.errors import InvalidInput
from kernelmagic.frontends.cli import main


@pytest.fixture
def config_dir(isolated_jupyter):
    path = isolated_jupyter["JUPYTER_CONFIG_DIR"]
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pin_spec(user_kernels):
    write_spec(
        user_kernels,
        "site",
        {"argv": ["python", "-f", "{connection_file}"], "env": {"SITE_PIN": "4711", "A": "1"}},
    )


@pytest.mark.parametrize("kind", ["py", "py-append", "json"])
def test_both_front_ends_mask_what_the_config_file_calls_secret(
    kind, config_dir, user_kernels, ip, capsys
):
    """``.append`` (traitlets' way to add to a list) was "must be a list of strings"."""
    if kind == "py":
        text = "c.KernelMagics.extra_secrets = ['*_PIN']\n"
    elif kind == "py-append":
        text = "c.KernelMagics.extra_secrets.append('*_PIN')\n"
        kind = "py"
    else:
        text = json.dumps({"KernelMagics": {"extra_secrets": ["*_PIN"]}})
    (config_dir / f"jupyter_kernelmagic_config.{kind}").write_text(text)
    _pin_spec(user_kernels)
    assert main(["env", "-k", "site"]) == 0
    cli = capsys.readouterr().out
    magic = str(ip.run_line_magic("kernel_env", "-k site"))
    assert "4711" not in cli and "4711" not in magic
    assert "SITE_PIN='<hidden>'" in cli and "SITE_PIN='<hidden>'" in magic
    assert "A=1" in cli and "A=1" in magic


def test_without_a_config_file_nothing_extra_is_masked(user_kernels, capsys):
    _pin_spec(user_kernels)
    assert main(["env", "-k", "site"]) == 0
    assert "SITE_PIN=4711" in capsys.readouterr().out


def test_ipython_config_overrides_the_file_in_a_session(config_dir, user_kernels, ip, capsys):
    (config_dir / "jupyter_kernelmagic_config.json").write_text(
        json.dumps({"KernelMagics": {"default_location": "sys-prefix"}})
    )
    assert settings.load().default_location == "sys-prefix"
    ip.run_line_magic("config", "KernelMagics.default_location = 'user'")
    ip.run_line_magic("kernel_install", "here --capture none")
    assert (user_kernels / "here" / "kernel.json").exists()


def test_a_bad_value_is_one_line_naming_the_file(config_dir, capsys):
    path = config_dir / "jupyter_kernelmagic_config.json"
    path.write_text(json.dumps({"KernelMagics": {"default_capture": "everything"}}))
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "default_capture" in err and str(path) in err
    path.write_text(json.dumps({"KernelMagics": {"extra_secrets": "*_PIN"}}))
    with pytest.raises(InvalidInput, match="list of strings"):
        settings.load()


@pytest.fixture
def pin_is_secret(config_dir):
    (config_dir / "jupyter_kernelmagic_config.json").write_text(
        json.dumps({"KernelMagics": {"extra_secrets": ["*_PIN"]}})
    )


def test_the_doctor_never_shows_what_the_config_calls_secret(
    pin_is_secret, user_kernels, ip, capsys
):
    """A secret whose value looks like a path that does not exist: the doctor names the
    variable, not the value, in its text and JSON and through the magic."""
    write_spec(
        user_kernels,
        "site",
        {"argv": ["python", "-f", "{connection_file}"], "env": {"SITE_PIN": "/4711/x"}},
    )
    main(["doctor", "site"])
    main(["doctor", "site", "--json"])
    cli = capsys.readouterr().out
    magic = str(ip.run_line_magic("kernel_doctor", "site"))
    assert "SITE_PIN" in cli and "SITE_PIN" in magic
    assert "4711" not in cli and "4711" not in magic


def test_a_notebooks_alias_of_a_spec_holding_a_secret_is_owner_only(
    pin_is_secret, user_kernels, tmp_path
):
    """notebook --fix copies a spec under the notebook's name: as clone does, by the
    configured policy (the copy of a 0600 spec holding SITE_PIN stays 0600)."""
    write_spec(
        user_kernels,
        "site",
        {"argv": ["python", "-f", "{connection_file}"], "env": {"SITE_PIN": "4711"}},
    )
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text(
        json.dumps(
            {
                "cells": [],
                "metadata": {"kernelspec": {"name": "gone", "display_name": "Gone"}},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    assert main(["notebook", str(notebook), "--fix", "site", "--force"]) == 0
    alias = user_kernels / "gone" / "kernel.json"
    assert json.loads(alias.read_text())["env"]["SITE_PIN"] == "4711"
    assert alias.stat().st_mode & 0o077 == 0


def test_clone_for_a_group_refuses_what_the_config_calls_secret(
    pin_is_secret, user_kernels, capsys
):
    """As install --group does: a group sees the spec's env."""
    group = __import__("grp").getgrgid(__import__("os").getgid()).gr_name
    assert main(["clone", "python3", "shared", "--env", "SITE_PIN=4711", "--group", group]) == 2
    err = capsys.readouterr().err
    assert "SITE_PIN looks secret" in err and "--unset" in err and "--include" not in err
    assert not (user_kernels / "shared").exists()
