"""Remote kernels: provisioners, refusals, doctor checks, and a real SSH launch on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

try:
    import gateway_provisioners  # noqa: F401
except ImportError:
    import jupyter_client

    if os.environ.get("CI") and jupyter_client.version_info >= (7, 4):
        raise RuntimeError("CI must install kernelmagic[remote] (gateway_provisioners)") from None
    pytest.skip(
        "gateway_provisioners is not installed (it needs jupyter_client >= 7.4)",
        allow_module_level=True,
    )

from helpers import require_system_package, run_in_kernel, write_spec
from IPython.core.error import UsageError

from kernelmagic import specs
from kernelmagic.errors import InvalidInput
from kernelmagic.frontends.cli import main
from kernelmagic.operations import doctor, remote

SSH_HOST = "127.0.0.2"  # not 127.0.0.1: the provisioner runs "local" hosts without SSH


def spec_json(kernels, name):
    return json.loads((kernels / name / "kernel.json").read_text())


def test_provisioners_lists_packages_and_options(ip):
    found = {p.name: p for p in ip.run_line_magic("kernel_provisioners", "")}
    assert found["local-provisioner"].package == "jupyter_client"
    distributed = found["distributed-provisioner"]
    assert distributed.package == "gateway_provisioners"
    assert {"remote_hosts", "launch_timeout", "unauthorized_users"} <= set(distributed.options)
    assert "remote_hosts" in ip.display_formatter.format(list(found.values()))[0]["text/plain"]


def test_patch_provisioner_refuses_what_jupyter_would_ignore(ip, user_kernels, capsys):
    path = write_spec(user_kernels, "geo") / "kernel.json"
    before = path.read_bytes()
    with pytest.raises(UsageError, match=r"not installed \(installed: .*distributed-provisioner"):
        ip.run_line_magic("kernel_patch", "geo --provisioner no-such-provisioner")
    with pytest.raises(UsageError, match=r"no option 'remote_hostz'; its options: .*remote_hosts"):
        ip.run_line_magic(
            "kernel_patch",
            "geo --provisioner distributed-provisioner --provisioner-config remote_hostz=[]",
        )
    assert path.read_bytes() == before
    ip.run_line_magic(
        "kernel_patch",
        "geo --provisioner distributed-provisioner --provisioner-config 'remote_hosts=[\"h1\"]'",
    )
    stanza = spec_json(user_kernels, "geo")["metadata"]["kernel_provisioner"]
    assert stanza == {
        "provisioner_name": "distributed-provisioner",
        "config": {"remote_hosts": ["h1"]},
    }
    ip.run_line_magic("kernel_patch", "geo --provisioner none")
    assert "kernel_provisioner" not in spec_json(user_kernels, "geo").get("metadata", {})


def test_provisioner_none_with_config_is_refused_by_the_request_itself(user_kernels, capsys):
    """``none`` removes the stanza: config for it is refused where every other rule of
    ``patch`` is, when the request is made (from Python too), not once it runs."""
    write_spec(user_kernels, "geo")
    with pytest.raises(InvalidInput, match="needs a provisioner, not 'none'"):
        specs.PatchRequest("geo", provisioner="none", provisioner_config={"a": 1})
    assert main(["patch", "geo", "--provisioner", "none", "--provisioner-config", "a=1"]) == 2
    assert "needs a provisioner, not 'none'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("price $$5", "literal '$'"),
        ("costs 5$ each", "not a ${NAME} template"),
        ("it's", "single quote"),
        ("`whoami`", "backquote"),
        ("naïve", "non-ASCII"),
        ("two\nlines", "newline"),
    ],
)
def test_remote_refuses_env_values_the_remote_shell_would_change(user_kernels, capsys, value, why):
    write_spec(
        user_kernels,
        "src",
        {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "env": {"FINE": "/opt/x:${PATH}", "BAD": value},
        },
    )
    status = main(["remote", "src", "src-ssh", "--engine", "ssh", "--host", "h1"])
    err = capsys.readouterr().err
    assert status == 2 and "BAD" in err and why in err and "FINE" not in err
    assert not (user_kernels / "src-ssh").exists()


def test_remote_argument_errors(user_kernels, capsys, monkeypatch):
    write_spec(user_kernels, "src")
    assert main(["remote", "src", "x", "--engine", "ssh"]) == 2
    assert "needs at least one --host" in capsys.readouterr().err
    assert main(["remote", "src", "x", "--engine", "docker"]) == 2
    assert "needs --image" in capsys.readouterr().err
    assert (
        main(
            [
                "remote",
                "src",
                "x",
                "--engine",
                "ssh",
                "--host",
                "h",
                "--provisioner-config",
                "nope=1",
            ]
        )
        == 2
    )
    assert "no option 'nope'" in capsys.readouterr().err
    # without gateway_provisioners' installer, the error says how to get it
    monkeypatch.setitem(remote.ENGINES, "ssh", ("jupyter-no-such-spec", "distributed-provisioner"))
    assert main(["remote", "src", "x", "--engine", "ssh", "--host", "h"]) == 1
    assert "pip install 'kernelmagic[remote]'" in capsys.readouterr().err


def test_container_engine_without_its_extra_says_what_to_install(user_kernels, capsys):
    """gateway_provisioners' docker engine needs the 'docker' package, which the test
    environment does not have: Jupyter could not load the provisioner, so kernelmagic
    refuses to write a spec that Jupyter would hide."""
    try:
        import docker  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the docker package is installed here")
    write_spec(user_kernels, "src")
    status = main(["remote", "src", "geo-docker", "--engine", "docker", "--image", "img:1"])
    err = capsys.readouterr().err
    assert status == 1 and "pip install 'gateway_provisioners[docker]'" in err
    assert not (user_kernels / "geo-docker").exists()


def test_remote_specs_are_not_judged_as_local_ones(user_kernels):
    """A distributed spec's interpreter lives on the hosts and it uses {response_address}:
    neither 'program not found' nor 'no {connection_file}' applies, and --fix keeps it."""
    write_spec(
        user_kernels,
        "far",
        {
            "argv": [
                "/only/on/the/hosts/python",
                "-m",
                "x",
                "--response-address",
                "{response_address}",
            ],
            "metadata": {
                "kernel_provisioner": {"provisioner_name": "distributed-provisioner", "config": {}}
            },
        },
    )
    (info,) = specs.list_specs("far")
    assert info.problems == [] and info.visible
    assert doctor.remove_dead(doctor.diagnose(["far"])).removed == []
    assert (user_kernels / "far").exists()


def test_doctor_reports_missing_launcher_and_unknown_config(user_kernels, tmp_path):
    write_spec(
        user_kernels,
        "r",
        {
            "argv": [
                sys.executable,
                str(tmp_path / "gone" / "launch_ipykernel.py"),
                "--response-address",
                "{response_address}",
            ],
            "metadata": {
                "kernel_provisioner": {
                    "provisioner_name": "distributed-provisioner",
                    "config": {"remote_hostz": ["h"]},
                }
            },
        },
    )
    (diagnosis,) = doctor.diagnose(["r"]).diagnoses
    kinds = {p.kind: p for p in diagnosis.problems}
    assert kinds["missing-launcher"].value.endswith("gone/launch_ipykernel.py")
    assert kinds["unknown-config"].value == "remote_hostz"


# --- a real SSH server on loopback -------------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """Our own sshd on 127.0.0.2, key-only, with its own host key and authorized key."""
    daemon = shutil.which("sshd") or "/usr/sbin/sshd"
    require_system_package(os.access(daemon, os.X_OK), "sshd", "openssh-server")
    if os.geteuid() != 0:
        pytest.skip("needs root: sshd drops to the test's user")
    work = Path(tempfile.mkdtemp(prefix="kernelmagic-sshd-"))
    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
    subprocess.run([*keygen, "-f", str(work / "host_key")], check=True)
    subprocess.run([*keygen, "-f", str(work / "client_key")], check=True)
    shutil.copy(work / "client_key.pub", work / "authorized_keys")
    port = _free_port(SSH_HOST)
    (work / "sshd_config").write_text(
        f"ListenAddress {SSH_HOST}\nPort {port}\nHostKey {work / 'host_key'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPidFile {work / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        # A login gets the user's real HOME, and a kernel started there writes its IPython
        # history and profile into it: point every such dir into this run's temp dir.
        f"SetEnv HOME={work / 'home'} IPYTHONDIR={work / 'ipython'} "
        f"JUPYTER_DATA_DIR={work / 'data'} JUPYTER_CONFIG_DIR={work / 'config'} "
        f"JUPYTER_RUNTIME_DIR={work / 'runtime'}\n"
    )
    (work / "home").mkdir()
    os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory
    proc = subprocess.Popen(
        [daemon, "-D", "-f", str(work / "sshd_config"), "-E", str(work / "sshd.log")]
    )
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex((SSH_HOST, port)) == 0:
                break
        time.sleep(0.05)
    yield {"port": port, "work": work}
    proc.terminate()
    proc.wait(timeout=10)
    # Kernels started through sshd outlive it; stop any a failed test left behind (their
    # launcher scripts live in this run's temporary directories).
    base = tmp_path_factory.getbasetemp()
    subprocess.run(["pkill", "-f", f"{base}/.*launch_ipykernel.py"], check=False)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def ssh_client_env(sshd, isolated_jupyter, monkeypatch):
    """This test's HOME gets the client key and the host key in known_hosts."""
    ssh_dir = isolated_jupyter["HOME"] / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    shutil.copy(sshd["work"] / "client_key", ssh_dir / "id_ed25519")
    (ssh_dir / "id_ed25519").chmod(0o600)
    host_key = (sshd["work"] / "host_key.pub").read_text().strip()
    (ssh_dir / "known_hosts").write_text(f"[{SSH_HOST}]:{sshd['port']} {host_key}\n")
    monkeypatch.setenv("GP_SSH_PORT", str(sshd["port"]))
    monkeypatch.setenv("GP_RESPONSE_IP", "127.0.0.1")
    monkeypatch.setenv("KERNEL_USERNAME", "kmtest")  # not root: refused by default
    # the provisioner read GP_SSH_PORT when it was first imported
    import gateway_provisioners.config_mixin as mixin
    import gateway_provisioners.distributed as distributed

    monkeypatch.setattr(mixin, "ssh_port", sshd["port"])
    monkeypatch.setattr(distributed, "ssh_port", sshd["port"], raising=False)


def test_ssh_kernel_sees_the_captured_environment(ip, user_kernels, ssh_client_env, sshd, capsys):
    """A captured spec, made remote with %kernel_remote, launched by jupyter_client over SSH
    (as the test's user, whose login dirs the test's sshd points into its own temp dir: the
    suite never writes into a real home)."""
    ip.run_line_magic(
        "kernel_install",
        "geo --capture none --env GDAL_DATA='/opt/gdal data' --env PROJ_LIB=/opt/proj "
        "--env 'EXTRA_PATH=/opt/geo/bin:${HOME}' --env QUOTED='say \"hi\"'",
    )
    ip.run_line_magic("kernel_remote", f"geo geo-ssh --engine ssh --host {SSH_HOST}")
    out = capsys.readouterr().out
    assert "Remote prerequisites" in out and "pycryptodomex" in out
    spec = spec_json(user_kernels, "geo-ssh")
    assert spec["argv"][0] == sys.executable
    # kernelmagic made up geo's display name, so the remote one follows its own name
    assert spec["display_name"] == "Python {}.{} (geo-ssh)".format(*sys.version_info[:2])

    seen = run_in_kernel("geo-ssh")["env"]
    assert seen["SSH_CONNECTION"].split()[2] == SSH_HOST  # it really came in over SSH
    assert seen["GDAL_DATA"] == "/opt/gdal data"
    assert seen["PROJ_LIB"] == "/opt/proj"
    assert seen["QUOTED"] == 'say "hi"'
    assert seen["EXTRA_PATH"] == f"/opt/geo/bin:{seen['HOME']}"  # filled in on the host
    assert seen["KERNEL_USERNAME"] == "kmtest"
    assert seen["HOME"] == str(sshd["work"] / "home")
    assert seen["IPYTHONDIR"] == str(sshd["work"] / "ipython")


def test_doctor_launch_starts_a_remote_ssh_spec_as_jupyter_does(
    ip, user_kernels, ssh_client_env, capsys
):
    """Issue 35, item 8: `doctor --launch` started an ssh-engine spec with a stderr of its
    own, which gateway_provisioners also passes when the host is this machine
    (`launch_kernel() got multiple values for keyword argument 'stderr'`), and called the
    spec failed; Jupyter starts it."""
    ip.run_line_magic("kernel_install", "base --capture none")
    # The host is this machine (a login node naming itself): the provisioner starts it here.
    ip.run_line_magic("kernel_remote", "base base-ssh --engine ssh --host 127.0.0.1")
    # Its own process, as a user runs it: gateway_provisioners answers one launch per
    # process on its response address, and this test session has launched one already.
    argv = ["doctor", "base-ssh", "--launch", "--no-interrupt-check", "--json"]
    doctor_run = subprocess.run(
        [sys.executable, "-m", "kernelmagic", *argv], capture_output=True, text=True
    )
    status, report = doctor_run.returncode, doctor_run.stdout
    assert "multiple values" not in report
    launched = json.loads(report)["specs"]
    assert launched["base-ssh"]["started"], launched["base-ssh"]["reason"]
    assert status == 0, report
