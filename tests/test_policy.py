"""One secret policy for every path that decides, writes or shows an environment."""

from __future__ import annotations

import json
import sys

import pytest
from helpers import write_spec
from IPython.lib.pretty import pretty

from kernelmagic import specs
from kernelmagic.commands import render
from kernelmagic.domain.envcapture import CaptureOptions
from kernelmagic.domain.policy import MASK, EnvPolicy
from kernelmagic.frontends.cli import main

CRED = "mycorp-cred-value-17"
PIN = "4711"


def kernel_json(user_kernels, name):
    return user_kernels / name / "kernel.json"


def everything_shown(ip, capsys, name) -> str:
    """Every way a user can see a spec, as text: magics, CLI, reprs, HTML."""
    out = []
    ip.run_line_magic("kernel_show", name)
    out.append(repr(ip.run_line_magic("kernel_env", f"-k {name}")))
    out.append(json.dumps(ip.run_line_magic("kernel_list", "--json")))
    listed = ip.run_line_magic("kernel_list", "")
    out += [listed._repr_html_(), pretty(listed), repr(listed)]
    info = specs.get_spec(name)
    out += [repr(info), ip.display_formatter.format(info)[0]["text/plain"]]
    for argv in (["show", name], ["env", "-k", name], ["list", "--json"]):
        assert main(argv) == 0
    out.append(capsys.readouterr().out)
    return "\n".join(out)


def test_extra_secrets_hold_on_every_path_after_the_first_capture(
    ip, user_kernels, capsys, monkeypatch
):
    """The reproduction of the redesign issue: with extra_secrets=['MYCORP_*'], a snippet
    install skipped MYCORP_CRED, then refresh wrote it into a 0644 kernel.json and printed it."""
    ip.run_line_magic("config", "KernelMagics.extra_secrets = ['MYCORP_*', '*_PIN']")
    snippet = f"export MYCORP_CRED={CRED}\nexport GEO_HOME=/opt/geo\n"
    ip.run_cell_magic("kernel_install", f"corp --python {sys.executable}", snippet)
    spec = json.loads(kernel_json(user_kernels, "corp").read_text())
    assert spec["env"] == {"GEO_HOME": "/opt/geo"}
    assert spec["metadata"]["kernelmagic"]["extra_secrets"] == ["MYCORP_*", "*_PIN"]

    ip.run_line_magic("kernel_refresh", "corp")
    ip.run_line_magic("kernel_refresh", "corp --dry-run")
    ip.run_line_magic("kernel_env", f"-k corp BANK_PIN={PIN}")
    ip.run_line_magic("kernel_env", f"-k corp OTHER_PIN={PIN} --dry-run")
    printed = capsys.readouterr().out
    path = kernel_json(user_kernels, "corp")
    on_disk = path.read_text()
    assert CRED not in on_disk  # refresh kept to the rule
    assert f'"BANK_PIN": "{PIN}"' in on_disk  # typed explicitly: kept ...
    assert path.stat().st_mode & 0o777 == 0o600  # ... owner-only
    assert PIN not in printed and CRED not in printed

    # The rule is recorded, so a fresh session and the CLI without any config honour it.
    ip.run_line_magic("unload_ext", "kernelmagic")
    ip.config.pop("KernelMagics", None)
    ip.run_line_magic("load_ext", "kernelmagic")
    shown = everything_shown(ip, capsys, "corp")
    assert PIN not in shown and CRED not in shown
    assert "BANK_PIN" in shown and MASK in shown


def test_reprs_never_print_values(user_kernels):
    secret = "ghp_" + "x" * 36
    change, captured = specs.install_current_python(
        "r",
        str(user_kernels),
        capture_options=CaptureOptions(mode="all", include=("GITHUB_TOKEN",)),
        environ={"GITHUB_TOKEN": secret, "HOME": "/h"},
    )
    info = specs.get_spec("r")
    edit = specs.SpecEdit(env=specs.EnvChanges({"K": secret}))
    for value in (change, captured, info, edit, pretty(change), pretty(captured)):
        assert secret not in repr(value)
    assert secret in json.dumps(info.spec)  # the data is there for code that asks for it
    assert secret not in change.diff() and MASK in change.diff()
    dry_run, _ = specs.install_current_python(
        "r2",
        str(user_kernels),
        capture_options=CaptureOptions(mode="all", include=("GITHUB_TOKEN",)),
        environ={"GITHUB_TOKEN": secret},
        dry_run=True,
    )
    shown = render.change_report(dry_run, diff=False)  # a dry run prints the JSON
    assert secret not in shown and MASK in shown


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "postgres://app:pw@db/x"),
        ("https_proxy", "http://user:pw@proxy:3128"),
        ("PIP_INDEX_URL", "https://__token__:pypi-" + "A" * 60 + "@pypi.example/simple"),
        ("K", "-----BEGIN PGP PRIVATE KEY BLOCK-----\nxx"),
        ("K", "sk-" + "a1" * 20),
        ("K", "sk-proj-" + "a1" * 20),
        ("K", "glpat-" + "a" * 20),
        ("K", "hf_" + "a" * 34),
        ("K", "npm_" + "a" * 36),
        ("MY_TOKEN", "anything"),
    ],
)
def test_credential_shapes_are_secrets(name, value):
    policy = EnvPolicy()
    assert policy.is_secret(name, value)
    assert policy.holds_secrets({"env": {name: value}})
    assert value not in json.dumps(policy.mask_spec({"env": {name: value}}))


@pytest.mark.parametrize(
    "value", ["https://proxy:3128", "postgres://db/x", "/opt/sk-tools/bin", "user@host"]
)
def test_ordinary_values_are_not_secrets(value):
    assert not EnvPolicy().is_secret("SOME_VAR", value)


def test_secrets_in_argv_metadata_and_snippets_are_masked():
    token = "ghp_" + "z" * 36
    spec = {
        "argv": ["python", f"--password={token}", "-f", "{connection_file}"],
        "metadata": {"site": {"url": "https://u:pw@h/x"}, "api_key": "k"},
        "env": {},
    }
    policy = EnvPolicy()
    shown = json.dumps(policy.mask_spec(spec))
    assert token not in shown and ":pw@" not in shown and '"k"' not in shown
    assert policy.holds_secrets(spec)
    snippet = "export DB_PASSWORD='hunter 2'\nexport A=1\ncurl https://x:y@h/\n"
    masked = policy.mask_text(snippet)
    assert "hunter" not in masked and ":y@" not in masked and "A=1" in masked


def test_a_secret_given_as_the_word_after_its_option_is_masked(user_kernels, capsys):
    """``--password VALUE`` was shown in clear where ``--password=VALUE`` was masked
    (docs/safety.md: argv is masked in every display), and the spec not kept owner-only."""
    argv = ["/bin/true", "--password", "hunter2hunter2", "--NotebookApp.token", "abc"]
    write_spec(user_kernels, "sec", {
        "argv": [*argv, "--token", "--verbose", "-f", "{connection_file}"],
        "display_name": "sec", "language": "python",
    })  # fmt: skip
    assert main(["list", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["kernelspecs"]["sec"]["spec"]["argv"]
    assert shown == [
        "/bin/true", "--password", MASK, "--NotebookApp.token", MASK,
        "--token", "--verbose", "-f", "{connection_file}",
    ]  # fmt: skip
    assert main(["show", "sec"]) == 0
    assert "hunter2" not in capsys.readouterr().out
    assert EnvPolicy().holds_secrets({"argv": argv})


def test_a_dashed_option_given_its_secret_with_equals_is_masked_and_owner_only(
    user_kernels, capsys
):
    """``--api-key=VALUE`` was shown in clear, and the spec written 0644: the assignment's
    name was read as ``key``, the word after the option's last dash (``--api_key=`` and
    ``--api-key VALUE`` were masked)."""
    kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    write_spec(user_kernels, "a4", {"argv": kernel, "display_name": "a4", "language": "python"})
    prefix = "mywrapper --api-key=plainsecretvalue --NotebookApp.token=t0ken --key-file=/k"
    assert main(["patch", "a4", "--argv-prefix", prefix]) == 0
    said = capsys.readouterr().out
    assert main(["show", "a4"]) == 0
    said += capsys.readouterr().out
    assert "plainsecretvalue" not in said and "t0ken" not in said, said
    assert "--api-key=<hidden>" in said and "--key-file=/k" in said
    assert (user_kernels / "a4" / "kernel.json").stat().st_mode & 0o077 == 0


# --- secret shapes (issue 24, items 3 and 8): keep this table growing -------------------

# (variable name, value, what must never be shown, what masking leaves readable)
SECRET_SHAPES = [
    ("DB_URL", "postgres://app:p@ssw0rd-TAIL@db/x", "ssw0rd-TAIL", "postgres://app:"),
    ("HTTPS_PROXY", "http://team:pw@203.0.113.66:3128", "team:pw", "@203.0.113.66:3128"),
    ("DB_URL", "postgresql://db/x?user=app&password=hunter2", "hunter2", "user=app&password="),
    ("JDBC", "jdbc:mysql://db/x;user=app;password=s3cr3t!", "s3cr3t", "jdbc:mysql://db/x"),
    (
        "STORAGE",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=abc123XYZ+/abc123==;X=1",
        "abc123XYZ",
        "AccountName=acct",
    ),
    # Walk K: captured in clear (display masked them), the snippet's record too.
    ("SVC_URL", "https://host/api?token=abc123tok&x=1", "abc123tok", "https://host/api?token="),
    ("SIGNED", "https://b/o?X-Amz-Signature=deadbeef99&X-Amz-Date=1", "deadbeef99", "Date=1"),
    ("API", "https://h/v1?api_key=k3y4p1&sig=s1gn4", "k3y4p1", "https://h/v1?api_key="),
    # Walk O: forms that were neither skipped nor masked.
    ("PG_CONN", "host=db password = s3cretpw", "s3cretpw", "host=db"),
    ("ODBC", "Pwd=s3cretpw;Server=db", "s3cretpw", "Server=db"),
    ("CALLBACK", "https://h/cb?access%5Ftoken=t0k3nv4l&x=1", "t0k3nv4l", "x=1"),
    ("TOOL_ARGS", "--user me --password s3cretpw --verbose", "s3cretpw", "--verbose"),
    ("DOCKER_AUTH_CONFIG", '{"auths":{"r":{"auth":"YWJjOmRlZg=="}}}', "YWJjOmRlZg", '"auths"'),
    ("SIGNED_URL", "https://h/o#sig=abcdef123", "abcdef123", "https://h/o#sig="),
    ("MYSQL_PWD", "plain", "plain", None),
    ("DB_PASS", "plain", "plain", None),
    ("APP_PWD", "plain", "plain", None),
    ("GPG_PASSPHRASE", "plain", "plain", None),
    ("AZURE_CONNECTION_STRING", "Server=x;Pwd=y", "Pwd=y", None),
    ("SENTRY_DSN", "https://k@o1.ingest.sentry.io/2", "https://k@", None),
    ("PAYMENTS", "sk_live_" + "a1B2c3D4e5F6g7H8i9J0", "a1B2c3D4", None),
    ("PAYMENTS", "rk_test_" + "a1B2c3D4e5F6g7H8i9J0", "a1B2c3D4", None),
    ("GH", "ghp_" + "a" * 36, "ghp_aaaa", None),
    ("GH", "github_pat_" + "B" * 40, "github_pat_BBB", None),
    ("SLACK", "xoxb-" + "1" * 20, "xoxb-111", None),
    ("AWS_ID", "AKIA" + "A" * 16, "AKIAAAAA", None),
    ("AWS_ID", "ASIA" + "B" * 16, "ASIABBBB", None),
    ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG", "wJalrXUtn", None),
    ("AUTH", "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2QT4fwpM", "SflKxwRJ", None),
    ("MAPS", "AIza" + "S" * 35, "AIzaSSSS", None),
    ("MAPS", "AIza" + "S" * 34 + "-", "AIzaSSSS", None),  # was captured and shown in clear
    (
        "DEPLOY_KEY",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\nQyNTUxOQAA\n"
        "-----END OPENSSH PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU",
        None,
    ),
]
NOT_SECRETS = [
    ("BYPASS_CACHE", "1"),
    ("PASSENGER_HOME", "/opt/passenger"),
    ("DATABASE_HOST", "db.example.org"),
    ("URL", "https://example.org/path?page=2&pass_through=yes"),
    ("REGION", "asia-east1"),
    ("TOKENIZERS_PARALLELISM", "false"),  # Hugging Face's: was left out of every capture
    ("TIKTOKEN_CACHE_DIR", "/scratch/tiktoken"),
    ("SEARCH_URL", "https://h/?design=1&monkey=2&keyword=x&author=me"),
    # Walk O: skipped as secrets once values that set a secret-named key were: kernels lost
    # their git, pip and Spark settings.
    ("GIT_SSH_COMMAND", "ssh -o PasswordAuthentication=no"),
    ("PIP_INDEX_URL", "https://pypi.example.org/simple?sort_key=name&use_auth=false"),
    ("JAVA_TOOL_OPTIONS", "-Dcom.sun.management.jmxremote.password.file=/etc/jmx.pw"),
    ("GIT_CONFIG_PARAMETERS", "'credential.helper=cache'"),
    ("PASS_OPTS", "--password-file /etc/pw --token-dir /tmp/t"),
    ("BUILD_FLAGS", "-DWITH_KEYRING=ON -DCMAKE_BUILD_TYPE=Release"),
]


@pytest.mark.parametrize(("name", "value", "hidden", "readable"), SECRET_SHAPES)
def test_secret_shapes_are_caught_and_masked(name, value, hidden, readable):
    policy = EnvPolicy()
    assert policy.is_secret(name, value)
    assert hidden not in json.dumps(policy.mask_env({name: value}))
    shown = policy.mask_text(f"export {name}={json.dumps(value)}\n")
    assert hidden not in shown
    if readable:  # only the secret part goes: the review still shows where it points
        assert readable in policy.mask_text(value) and MASK in policy.mask_text(value)


@pytest.mark.parametrize(("name", "value"), NOT_SECRETS)
def test_ordinary_names_and_values_are_not_secrets(name, value):
    assert not EnvPolicy().is_secret(name, value)


def test_masking_hides_whole_private_key_blocks_and_writes_owner_only(ip, user_kernels, capsys):
    """A snippet exporting a private key: 0.1 masked the BEGIN line only, and the body and
    END line landed in a 0644 kernel.json, in show, list --json and export."""
    body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB"
    snippet = (
        'export DEPLOY_KEY="-----BEGIN OPENSSH PRIVATE KEY-----\n'
        f'{body}\n-----END OPENSSH PRIVATE KEY-----"\nexport GEO_HOME=/opt/geo\n'
    )
    ip.run_cell_magic("kernel_install", f"keyed --python {sys.executable}", snippet)
    path = kernel_json(user_kernels, "keyed")
    on_disk = path.read_text()
    assert body not in on_disk and "END OPENSSH" not in on_disk
    assert path.stat().st_mode & 0o777 == 0o600  # from the unmasked source, not the record
    shown = everything_shown(ip, capsys, "keyed")
    assert main(["export", "keyed"]) == 0
    shown += capsys.readouterr().out
    assert body not in shown and "END OPENSSH" not in shown


def test_a_credential_in_a_urls_query_is_neither_captured_nor_recorded(
    user_kernels, tmp_path, capsys
):
    """Walk K: `export SVC_URL="https://host/api?token=abc123&x=1"` was captured into the
    spec, shown in clear in the snippet's record by `show`, and exported twice with
    `"secrets": []`; displays masked the env value, capture did not skip it."""
    snippet = tmp_path / "q.sh"
    snippet.write_text(
        'export SVC_URL="https://host/api?token=abc123tok&x=1"\n'
        'export PG_CONN="host=db password=s3cretpw"\nexport PLAIN=1\n'
    )
    assert main(["install", "qs", "--snippet-file", str(snippet)]) == 0
    said = capsys.readouterr().out
    assert "Captured 1 variable(s): PLAIN" in said, said
    document = tmp_path / "qs.json"
    assert main(["export", "qs", "-o", str(document)]) == 0
    assert main(["show", "qs"]) == 0
    for text in (capsys.readouterr().out, document.read_text(),
                 (user_kernels / "qs" / "kernel.json").read_text()):  # fmt: skip
        assert "abc123tok" not in text and "s3cretpw" not in text, text


def _as_an_older_kernelmagic_left_it(user_kernels, name: str, group: bool = False):
    """A spec holding credentials that kernelmagic 0.2 did not take for secrets (an argv's
    `--password VALUE`, a JSON value's "password"), written readable by all, with a backup
    of an earlier version holding one too: what 0.3 finds after an upgrade."""
    spec = {
        "argv": ["/usr/bin/env", "--password", "hunter2pw", sys.executable, "-m",
                 "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Old", "language": "python",
        "env": {"DB": '{"password": "s3cr3tJ"}', "PLAIN": "1"},
    }  # fmt: skip
    spec_dir = write_spec(user_kernels, name, spec)
    if group:
        spec_dir.chmod(0o2775)
    earlier = dict(spec, env={"DB": '{"password": "s3cr3tJ"}'})
    (spec_dir / ".kernel.json.backup-1").write_text(json.dumps(earlier))
    for path in spec_dir.iterdir():
        path.chmod(0o644)
    return spec_dir


def test_secrets_an_older_kernelmagic_left_readable_are_named_and_hidden(user_kernels, capsys):
    """Walk R: 0.3 masks these values and makes a spec holding them owner-only, but the
    doctor said ok to the 0644 file 0.2 wrote; after a 0.3 write the secrets stayed in clear
    in 0644 backups, and --undo brought back a 0644 kernel.json holding them."""
    spec_dir = _as_an_older_kernelmagic_left_it(user_kernels, "pw")
    assert main(["doctor", "pw"]) == 1
    out = capsys.readouterr().out
    assert "secret-readable" in out and "env DB" in out and "argv" in out, out
    assert "PLAIN" not in out and "hunter2pw" not in out and "s3cr3tJ" not in out
    assert f"chmod go-rw {spec_dir / 'kernel.json'} {spec_dir / '.kernel.json.backup-1'}" in out

    assert main(["env", "-k", "pw", "X=1"]) == 0
    modes = {p.name: p.stat().st_mode & 0o777 for p in spec_dir.iterdir()}
    assert set(modes) == {"kernel.json", ".kernel.json.backup-1", ".kernel.json.backup-2"}
    assert set(modes.values()) == {0o600}, modes
    assert main(["patch", "pw", "--undo"]) == 0
    assert (spec_dir / "kernel.json").stat().st_mode & 0o777 == 0o600
    assert "X" not in json.loads((spec_dir / "kernel.json").read_text())["env"]
    capsys.readouterr()
    assert main(["doctor", "pw"]) == 0, capsys.readouterr().out


def test_undo_hides_what_an_older_kernelmagic_left_readable(user_kernels):
    spec_dir = _as_an_older_kernelmagic_left_it(user_kernels, "pw")
    assert main(["patch", "pw", "--undo"]) == 0  # the first write 0.3 makes to it
    assert (spec_dir / "kernel.json").stat().st_mode & 0o777 == 0o600
    (undone,) = spec_dir.glob(".kernel.json.undone-*")
    assert undone.stat().st_mode & 0o777 == 0o600


def test_a_groups_spec_shares_its_secrets_with_the_group_not_everyone(user_kernels, capsys):
    spec_dir = _as_an_older_kernelmagic_left_it(user_kernels, "team", group=True)
    for path in spec_dir.iterdir():
        path.chmod(0o640)
    assert main(["doctor", "team"]) == 0, capsys.readouterr().out
    (spec_dir / "kernel.json").chmod(0o644)
    assert main(["doctor", "team"]) == 1
    assert "secret-readable" in capsys.readouterr().out
    assert main(["env", "-k", "team", "X=1"]) == 0  # a group's: never made owner-only
    assert (spec_dir / "kernel.json").stat().st_mode & 0o777 == 0o644
