"""Remote hosts: backups and restores over SSH against a real sshd, and `TransportError`
wherever drp cannot reach or use a host (with the `drp` command's message and status)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import drp
from conftest import free_port, same_tree
from drp import errors


def ssh_host(sshd, **overrides) -> dict:
    """`host=` for the sshd: its client key, its known_hosts, strict checking."""
    host = {"address": sshd.target, "ssh_key": str(sshd.client_key),
            "known_hosts": str(sshd.known_hosts), "host_key_checking": "strict",
            "connect_timeout": 5}
    host.update(overrides)
    return host


def cli_flags(host: dict) -> list[str]:
    """The `drp backup --host` flags for a `host=` dict."""
    flags = ["--host", host["address"]]
    for key in ("ssh_key", "known_hosts", "host_key_checking", "connect_timeout"):
        if key in host:
            flags += [f"--{key.replace('_', '-')}", str(host[key])]
    return flags


def cli_failure(drp_bin: str, *args: str) -> tuple[str, int]:
    """The message (after `drp: error: `) and exit status of a drp command that fails."""
    run = subprocess.run([drp_bin, *args], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0, run.stdout
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("drp: error: "), run.stderr
    return last[len("drp: error: "):], run.returncode


def unreachable(sshd) -> str:
    """`USER@127.0.0.1:PORT` where nothing listens."""
    return f"{sshd.user}@127.0.0.1:{free_port()}"


def create_args(store: str, keys: Path, sources: dict) -> tuple[list, list[str]]:
    """A backup of `sources`: the arguments of `drp.backup_create` and of `drp backup
    create`."""
    py = [store, "acme", sources, [keys / "acme.pub.asc"]]
    cli = ["backup", "create", "--store", store, "--stack", "acme",
           "--recipient", str(keys / "acme.pub.asc"),
           *[f"{name}={path}" for name, path in sources.items()]]
    return py, cli


def test_backup_and_restore_over_ssh(sshd, store, keys, site, tmp_path):
    """`host=` reads the sources on the SSH host and restores there, as `--host` does."""
    host = ssh_host(sshd)
    created = drp.backup_create(store, "acme", {"www": site, "db": "cmd:echo dump"},
                                [keys / "acme.pub.asc"], host=host)
    assert [s["name"] for s in created["sources"]] == ["www", "db"]
    preview = drp.backup_preview(store, "acme", {"www": site}, [keys / "acme.pub.asc"],
                                 host=host)
    assert preview["host"] == f"ssh://{sshd.target}"
    assert preview["sources"][0]["kind"] == "directory"
    restored = drp.backup_restore(store, "acme", keys / "acme.sec.asc",
                                  to=tmp_path / "restored", host=host)
    assert [s["name"] for s in restored["sources"]] == ["www", "db"]
    same_tree(site, tmp_path / "restored" / "www")
    assert (tmp_path / "restored" / "db").read_text() == "dump\n"
    assert "Accepted publickey for" in sshd.log()

    # A command that runs on the host and fails is the source's failure, not the transport's.
    with pytest.raises(errors.SourceError) as caught:
        drp.backup_create(store, "acme", {"db": "cmd:echo broken >&2; exit 3"},
                          [keys / "acme.pub.asc"], host=host)
    assert not isinstance(caught.value, errors.TransportError)
    assert "exit code 3" in str(caught.value) and "broken" in str(caught.value)


def test_host_argument_is_checked(store, keys, site, tmp_path):
    sources, recipients = {"www": site}, [keys / "acme.pub.asc"]
    with pytest.raises(errors.InvalidArgument, match='unknown field "port"'):
        drp.backup_create(store, "acme", sources, recipients,
                          host={"address": "root@127.0.0.1", "port": 22})
    with pytest.raises(errors.InvalidArgument, match="address"):
        drp.backup_create(store, "acme", sources, recipients, host={"ssh_key": "/k"})
    with pytest.raises(errors.InvalidArgument, match="host_key_checking"):
        drp.backup_create(store, "acme", sources, recipients,
                          host={"address": "127.0.0.1", "host_key_checking": "maybe"})
    with pytest.raises(errors.InvalidArgument, match="invalid SSH target"):
        drp.backup_restore(store, "acme", keys / "acme.sec.asc", to=tmp_path / "r",
                           host="root@")


def test_an_unreachable_host_raises_transport_error(sshd, store, keys, site, tmp_path,
                                                    drp_bin):
    """Nothing listens on the port: a backup and a restore there raise TransportError with
    the CLI's message and status; nothing is committed, nothing restored."""
    host = ssh_host(sshd, address=unreachable(sshd))
    py, cli = create_args(store, keys, {"www": str(site)})
    with pytest.raises(errors.TransportError) as caught:
        drp.backup_create(*py, host=host)
    message, status = cli_failure(drp_bin, *cli, *cli_flags(host))
    assert str(caught.value) == message
    assert caught.value.exit_status == status == 1
    assert "connection refused" in message and host["address"].split("@")[1] in message
    with pytest.raises(errors.TransportError) as caught:
        drp.backup_preview(*py, host=host)
    assert str(caught.value) == message
    assert drp.backup_list(store, "acme") == []

    drp.backup_create(*py)
    to = tmp_path / "restored"
    with pytest.raises(errors.TransportError) as caught:
        drp.backup_restore(store, "acme", keys / "acme.sec.asc", to=to, host=host)
    message, status = cli_failure(
        drp_bin, "backup", "restore", "--store", store, "--stack", "acme",
        "--key", str(keys / "acme.sec.asc"), "--to", str(to), *cli_flags(host))
    assert str(caught.value) == message and caught.value.exit_status == status == 1
    assert message.startswith(f"restore target {to}: ") and "connection refused" in message
    with pytest.raises(errors.TransportError) as caught:
        drp.backup_restore(store, "acme", keys / "acme.sec.asc", pipe_to="cat", host=host,
                           sources=["www"])
    assert "connection refused" in str(caught.value)
    assert not to.exists()


def test_an_unknown_or_changed_host_key_raises_transport_error(sshd, store, keys, site,
                                                               tmp_path, drp_bin):
    """Strict host-key checking refuses the server: TransportError, the CLI's message."""
    empty = tmp_path / "known_hosts.empty"
    empty.write_text("")
    host = ssh_host(sshd, known_hosts=str(empty))
    py, cli = create_args(store, keys, {"www": str(site)})
    with pytest.raises(errors.TransportError) as caught:
        drp.backup_create(*py, host=host)
    message, status = cli_failure(drp_bin, *cli, *cli_flags(host))
    assert str(caught.value) == message and caught.value.exit_status == status
    assert "host key verification failed" in message

    # Another key listed for [127.0.0.1]:PORT: a possible man in the middle.
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    changed = tmp_path / "known_hosts.changed"
    changed.write_text(f"[127.0.0.1]:{sshd.port} {Path(f'{other}.pub').read_text()}")
    drp.backup_create(*py)
    host = ssh_host(sshd, known_hosts=str(changed))
    to = tmp_path / "restored"
    with pytest.raises(errors.TransportError) as caught:
        drp.backup_restore(store, "acme", keys / "acme.sec.asc", to=to, host=host)
    message, status = cli_failure(
        drp_bin, "backup", "restore", "--store", store, "--stack", "acme",
        "--key", str(keys / "acme.sec.asc"), "--to", str(to), *cli_flags(host))
    assert str(caught.value) == message and caught.value.exit_status == status
    assert "REMOTE HOST KEY CHANGED" in message
    assert not to.exists()


PLAN = """format = 1

[storage]
url = "STORE_URL"

[customers.acme]
certificates = ["keys/acme.pub.asc"]
secret_key = "keys/acme.sec.asc"

[datacenters.dc1]

[[hosts]]
name = "spare-1"
datacenter = "dc1"
address = "localhost"
roles = ["app"]
spare = true

[[hosts]]
name = "app-1"
datacenter = "dc1"
address = "ADDRESS"
ssh_key = "SSH_KEY"
known_hosts = "KNOWN_HOSTS"
connect_timeout = "5s"
roles = ["app"]

[stacks.acme]
customer = "acme"
host = "app-1"
role = "app"
sources = ["www=SITE"]
restore_to = "/srv/acme"

[recovery]
target_datacenter = "dc1"
"""


def remote_plan(tmp_path: Path, keys: Path, site: Path, address: str, ssh_key: Path,
                known_hosts: Path) -> Path:
    shutil.copytree(keys, tmp_path / "keys")
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.replace("STORE_URL", (tmp_path / "store").as_uri())
                    .replace("ADDRESS", address).replace("SSH_KEY", str(ssh_key))
                    .replace("KNOWN_HOSTS", str(known_hosts)).replace("SITE", str(site)))
    return plan


def test_a_plan_stack_on_a_host_that_refuses_its_key_raises_transport_error(
        sshd, keys, site, tmp_path, drp_bin):
    """The stack's sources are on a plan host whose host key is not known: backing it up
    (or previewing it) raises TransportError, with `drp backup create --plan`'s message."""
    empty = tmp_path / "known_hosts.empty"
    empty.write_text("")
    plan = remote_plan(tmp_path, keys, site, sshd.target, sshd.client_key, empty)
    with pytest.raises(errors.TransportError) as caught:
        drp.backup_create(plan=plan, stack="acme")
    message, status = cli_failure(drp_bin, "backup", "create", "--plan", str(plan),
                                  "--stack", "acme")
    assert str(caught.value) == message and caught.value.exit_status == status
    assert message.startswith("stack acme, source www: ")
    assert "host key verification failed" in message
    with pytest.raises(errors.TransportError) as caught:
        drp.backup_preview(plan=plan, stack="acme")
    assert str(caught.value) == message

    # With the key known, the same plan backs up over SSH.
    plan.write_text(plan.read_text().replace(str(empty), str(sshd.known_hosts)))
    created = drp.backup_create(plan=plan, stack="acme")
    drp.backup_restore(plan=plan, stack="acme", to=tmp_path / "restored")
    same_tree(site, tmp_path / "restored" / "www")
    assert created["snapshot"] == drp.backup_list(plan=plan, stack="acme")[0]["snapshot"]


def make_unreachable(demo, host: str, sshd) -> None:
    """`host` of the demo's plan reached over SSH at a port of its address where nothing
    listens (instead of its local transport): its stacks' services still answer there."""
    text = demo.plan.read_text()
    block = re.search(rf'\[\[hosts\]\]\nname = "{host}"\n.*?(?=\n\[)', text, re.S).group(0)
    address = re.search(r'address = "([^"]+)"', block).group(1)
    replaced = (block.replace(f'address = "{address}"',
                              f'address = "{sshd.user}@{address}:{free_port(address)}"')
                .replace('transport = "local"\n', "")
                .replace(f'dir = "hosts/{host}"\n',
                         f'ssh_key = "{sshd.client_key}"\nknown_hosts = "{sshd.known_hosts}"\n'
                         'connect_timeout = "2s"\n'))
    demo.plan.write_text(text.replace(block, replaced))


def test_drill_revert_on_unreachable_hosts_raises_transport_error(demo, sshd):
    """The demo's drill hit primary-1; reverting it by hand when primary-1 cannot be reached
    raises TransportError (stage `revert`, the host's problem, the drill), with `drp drill
    revert`'s message; once it can be reached again, the revert succeeds."""
    demo.ready()  # the frozen services are running again, to be thawed again
    drill = drp.drill_history(demo.plan)[-1]["drill"]
    original = demo.plan.read_text()
    make_unreachable(demo, "primary-1", sshd)
    with pytest.raises(errors.TransportError) as caught:
        drp.drill_revert(demo.plan, drill)
    error = caught.value
    assert not isinstance(error, errors.DrillError)
    assert error.stage == "revert" and error.drill == drill
    assert len(error.problems) == 1 and error.problems[0].startswith("primary-1: ")
    assert "connection refused" in error.problems[0]
    assert str(error) == demo.cli_error("drill", "revert", drill, "--plan", str(demo.plan))
    assert str(error).startswith(f"reverting drill {drill} failed: primary-1: ")
    assert error.exit_status == 1

    demo.plan.write_text(original)
    assert drp.drill_revert(demo.plan, drill)["drill"] == drill


def test_drill_run_on_an_unreachable_host_raises_transport_error(demo, sshd):
    """The steady state holds (the services answer) but drp cannot reach the target host to
    inject the fault: TransportError (stage `inject`, the drill's record not started)."""
    demo.ready()
    make_unreachable(demo, "primary-1", sshd)
    with pytest.raises(errors.TransportError) as caught:
        drp.drill_run(demo.plan, "primary-outage")
    error = caught.value
    assert error.stage == "inject" and error.drill
    assert str(error).startswith("injecting the fault failed: primary-1: ")
    assert "connection refused" in str(error) and error.problems == [
        str(error).removeprefix("injecting the fault failed: ")]
    record = next(d for d in drp.drill_history(demo.plan) if d["drill"] == error.drill)
    assert record["state"] == "not_started"
    cli = demo.cli("drill", "run", "--plan", str(demo.plan), "--yes", "--scenario",
                   "primary-outage")
    assert cli.returncode == error.exit_status == 1
    # The same message, but for the drill's id (the fault is labelled with it).
    cli_drill = drp.drill_history(demo.plan)[-1]["drill"]
    assert cli_drill != error.drill
    assert (cli.stderr.strip().splitlines()[-1]
            == f"drp: error: {error}".replace(error.drill, cli_drill))
