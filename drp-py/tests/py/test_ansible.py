"""The drp.ops Ansible collection, run by a real ansible-playbook on localhost (`-c local`)
and over SSH on a real sshd host."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import drp
from conftest import Sshd, required_env, same_tree

PLAYBOOK = Path(__file__).resolve().parents[2] / "examples" / "playbook.yml"
MODULES = ["drp_backup", "drp_verify", "drp_restore", "drp_probe", "drp_recover", "drp_drill"]


def ansible(tool: str, *args: str, python: str = sys.executable,
            inventory: list[str] | None = None) -> subprocess.CompletedProcess:
    """Runs an ansible-core command; a playbook runs on localhost with `-c local` and
    `python`, or on the hosts of `inventory` (the arguments `ssh_inventory` returns)."""
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = required_env("DRP_COLLECTIONS")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_LOCAL_TEMP"] = env["ANSIBLE_REMOTE_TEMP"] = str(Path(env["DRP_TMP"]) / "ansible-tmp")
    env.setdefault("ANSIBLE_HOME", str(Path(env["DRP_TMP"]) / "ansible-home"))
    env["ANSIBLE_HOST_KEY_CHECKING"] = "True"
    command = [required_env(tool), *args]
    if tool == "DRP_ANSIBLE_PLAYBOOK":
        command += inventory or ["-i", "localhost,", "-c", "local",
                                 "-e", f"ansible_python_interpreter={python}"]
    return subprocess.run(command, capture_output=True, text=True, env=env)


def ssh_inventory(tmp_path: Path, sshd: Sshd, known_hosts: Path | None = None) -> list[str]:
    """Arguments that run a play on the sshd as host `127.0.0.1` (`drp_hosts` for the
    example playbook): its port, user and client key, strict host-key checking against
    `known_hosts` (default: the file listing the server's key), and this virtual
    environment's python, which imports drp (the "remote" host is this machine)."""
    known_hosts = known_hosts or sshd.known_hosts
    ssh_options = [
        "-F /dev/null",  # no user or system ssh_config
        f"-o UserKnownHostsFile={known_hosts}", "-o GlobalKnownHostsFile=/dev/null",
        "-o StrictHostKeyChecking=yes", "-o IdentitiesOnly=yes", "-o BatchMode=yes",
    ]
    host = {
        "ansible_port": sshd.port,
        "ansible_user": sshd.user,
        "ansible_ssh_private_key_file": str(sshd.client_key),
        "ansible_ssh_common_args": " ".join(ssh_options),
        # One connection per command: no master connection outlives the play.
        "ansible_ssh_args": "-o ControlMaster=no",
        "ansible_python_interpreter": sys.executable,
    }
    inventory = tmp_path / "inventory.yml"  # JSON is YAML
    inventory.write_text(json.dumps({"all": {"hosts": {"127.0.0.1": host}}}))
    return ["-i", str(inventory), "-e", "drp_hosts=127.0.0.1"]


@pytest.fixture(autouse=True)
def ansible_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("DRP_TMP", str(tmp_path))


def playbook(*args: str, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return ansible("DRP_ANSIBLE_PLAYBOOK", str(PLAYBOOK), *args, **kwargs)


def extra_vars(store: str, keys: Path, site: Path, restore_to: Path, **more: str) -> list[str]:
    pairs = dict(store=store, keys=str(keys), site=str(site), restore_to=str(restore_to), **more)
    return [arg for k, v in pairs.items() for arg in ("-e", f"{k}={v}")]


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders_every_module(module):
    shown = ansible("DRP_ANSIBLE_DOC", f"drp.ops.{module}")
    assert shown.returncode == 0, shown.stderr
    assert f"drp.ops.{module}" in shown.stdout
    assert "EXAMPLES:" in shown.stdout and "RETURN VALUES:" in shown.stdout
    assert "ERROR" not in shown.stderr
    assert "WARNING" not in shown.stderr, shown.stderr


def test_ansible_doc_renders_the_shared_options():
    """drp_verify and drp_restore take their store and key options from one fragment."""
    for module in ("drp_verify", "drp_restore"):
        shown = ansible("DRP_ANSIBLE_DOC", "--json", f"drp.ops.{module}")
        assert shown.returncode == 0, shown.stderr
        options = json.loads(shown.stdout)[f"drp.ops.{module}"]["doc"]["options"]
        for name in ("store", "plan", "stack", "key", "passphrase_env", "passphrase_file",
                     "trust", "snapshot"):
            assert name in options, (module, name)


def test_the_example_playbook_backs_up_verifies_and_restores(keys, site, tmp_path):
    store = (tmp_path / "store").as_uri()
    run = playbook(*extra_vars(store, keys, site, tmp_path / "restored"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "failed=0" in run.stdout
    same_tree(site, tmp_path / "restored" / "www")
    assert (tmp_path / "restored" / "db").read_text() == "CREATE TABLE customers (id int);\n"
    snapshots = drp.backup_list(store, "acme")
    assert len(snapshots) == 1
    assert f"snapshot {snapshots[0]['snapshot']} stored" in run.stdout
    assert "1 snapshot(s) verified" in run.stdout

    # Check mode: the backup and the restore say what they would do; nothing is written.
    check = playbook("--check", *extra_vars(store, keys, site, tmp_path / "check-restore"))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "would back up 2 source(s) of stack acme: www, db" in check.stdout
    assert f"would restore 2 source(s) of snapshot {snapshots[0]['snapshot']}" in check.stdout
    assert [s["snapshot"] for s in drp.backup_list(store, "acme")] == [snapshots[0]["snapshot"]]
    assert not (tmp_path / "check-restore").exists()


def test_a_failing_task_reports_drps_message(keys, site, tmp_path):
    """Verifying with another customer's key fails the play with drp's own message."""
    store = (tmp_path / "store").as_uri()
    run = playbook(*extra_vars(store, keys, site, tmp_path / "restored",
                               customer_key=str(keys / "globex.sec.asc")))
    assert run.returncode != 0
    with pytest.raises(drp.DrpError) as caught:
        drp.backup_verify(store, "acme", keys / "globex.sec.asc")
    assert str(caught.value) in run.stdout, run.stdout
    assert f'"error_class": "{type(caught.value).__name__}"' in run.stdout
    assert "failed=1" in run.stdout
    assert not (tmp_path / "restored").exists()


def test_the_example_playbook_over_ssh(sshd, keys, site, tmp_path):
    """The same playbook on a real sshd host: every module runs there through SSH (the host
    is this machine, its python the virtual environment's), the host key checked strictly."""
    store = (tmp_path / "store").as_uri()
    inventory = ssh_inventory(tmp_path, sshd)
    run = playbook(*extra_vars(store, keys, site, tmp_path / "restored"), inventory=inventory)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"^127\.0\.0\.1 +: ok=5 .*failed=0", run.stdout, re.M), run.stdout
    same_tree(site, tmp_path / "restored" / "www")
    assert (tmp_path / "restored" / "db").read_text() == "CREATE TABLE customers (id int);\n"
    snapshots = drp.backup_list(store, "acme")
    assert len(snapshots) == 1
    assert f"snapshot {snapshots[0]['snapshot']} stored" in run.stdout
    assert "1 snapshot(s) verified" in run.stdout
    # It went through the server: one login per module at least.
    logins = sshd.log().count(f"Accepted publickey for {sshd.user} from 127.0.0.1")
    assert logins >= 4, sshd.log()

    # Check mode over SSH: what would be done, and nothing done.
    check = playbook("--check", *extra_vars(store, keys, site, tmp_path / "check-restore"),
                     inventory=inventory)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "would back up 2 source(s) of stack acme: www, db" in check.stdout
    assert f"would restore 2 source(s) of snapshot {snapshots[0]['snapshot']}" in check.stdout
    assert [s["snapshot"] for s in drp.backup_list(store, "acme")] == [snapshots[0]["snapshot"]]
    assert not (tmp_path / "check-restore").exists()


def test_ssh_host_key_checking_is_strict(sshd, keys, site, tmp_path):
    """A known_hosts without the server's key: ssh refuses the host, nothing runs there."""
    empty = tmp_path / "known_hosts.empty"
    empty.write_text("")
    store = (tmp_path / "store").as_uri()
    run = playbook(*extra_vars(store, keys, site, tmp_path / "restored"),
                   inventory=ssh_inventory(tmp_path, sshd, known_hosts=empty))
    assert run.returncode != 0
    assert "Host key verification failed" in run.stdout + run.stderr, run.stdout
    assert re.search(r"^127\.0\.0\.1 +: ok=0 .*unreachable=1", run.stdout, re.M), run.stdout
    assert not (tmp_path / "store").exists() and not (tmp_path / "restored").exists()


def test_a_failing_restore_over_ssh_reports_drps_error(sshd, keys, site, tmp_path):
    """A restore on the sshd host into a directory that already has the source: the task
    fails with drp's message and class, and the directory is left as it was."""
    store = (tmp_path / "store").as_uri()
    created = drp.backup_create(store, "acme", {"www": site}, [keys / "acme.pub.asc"])
    dest = tmp_path / "live"
    (dest / "www").mkdir(parents=True)
    (dest / "www" / "index.html").write_text("live data\n")
    run, results = run_play(tmp_path, """
    - name: Restore over the live site
      drp.ops.drp_restore:
        store: "{{ store }}"
        stack: acme
        key: "{{ key }}"
        dest: "{{ dest }}"
      register: restored
      ignore_errors: true
""", inventory=ssh_inventory(tmp_path, sshd), store=store, key=str(keys / "acme.sec.asc"),
        dest=str(dest))
    assert run.returncode == 0, run.stdout + run.stderr
    restored = results["restored"]
    with pytest.raises(drp.errors.TargetError) as caught:
        drp.backup_restore(store, "acme", keys / "acme.sec.asc", to=dest)
    assert restored["failed"] is True and restored["msg"] == str(caught.value)
    assert restored["error_class"] == "TargetError"
    assert f"{dest}/www already exists" in restored["msg"]
    assert created["snapshot"]
    assert [p.name for p in dest.iterdir()] == ["www"]
    assert [p.name for p in (dest / "www").iterdir()] == ["index.html"]
    assert (dest / "www" / "index.html").read_text() == "live data\n"
    assert f"Accepted publickey for {sshd.user} from 127.0.0.1" in sshd.log()


def test_a_missing_drp_package_is_reported(keys, site, tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    run = playbook(*extra_vars((tmp_path / "store").as_uri(), keys, site, tmp_path / "r"),
                   python=str(bare / "bin" / "python"))
    assert run.returncode != 0
    assert "Failed to import the required Python library (drp)" in run.stdout
    assert not (tmp_path / "store").exists()


def run_play(tmp_path: Path, tasks: str, inventory: list[str] | None = None,
             **variables: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Runs a play of `tasks` on localhost, or on the hosts of `inventory`; every task that
    registers `NAME` leaves its result in the returned dict (written by the play itself to
    `results/NAME.json`)."""
    results = tmp_path / "results"
    results.mkdir()
    names = [line.split(":", 1)[1].strip() for line in tasks.splitlines()
             if line.strip().startswith("register:")]
    saves = "".join(
        f"""
    - name: Keep {name}
      ansible.builtin.copy:
        content: "{{{{ {name} | to_json }}}}"
        dest: "{results}/{name}.json"
""" for name in names)
    play = tmp_path / "play.yml"
    hosts = "localhost\n  connection: local" if inventory is None else "all"
    play.write_text(f"""- hosts: {hosts}
  gather_facts: false
  tasks:
{tasks}{saves}""")
    args = [arg for k, v in variables.items() for arg in ("-e", f"{k}={v}")]
    run = ansible("DRP_ANSIBLE_PLAYBOOK", str(play), *args, inventory=inventory)
    found = {p.stem: json.loads(p.read_text()) for p in results.glob("*.json")}
    return run, found


def test_drp_drill_runs_a_drill_and_check_mode_injects_nothing(demo, tmp_path):
    demo.ready()
    drills = demo.dir / "store" / ".drp" / "drills"
    before = len(list(drills.iterdir()))
    report = tmp_path / "drill.html"
    run, results = run_play(tmp_path, """
    - name: What the drill would hit
      drp.ops.drp_drill:
        plan: "{{ plan }}"
        scenario: primary-outage
      check_mode: true
      register: preview

    - name: The drill
      drp.ops.drp_drill:
        plan: "{{ plan }}"
        scenario: primary-outage
        report: "{{ report }}"
      register: drill
""", plan=str(demo.plan), report=str(report))
    assert run.returncode == 0, run.stdout + run.stderr
    preview, drill = results["preview"], results["drill"]
    assert before == 1
    assert preview["changed"] is True
    assert preview["scenario"] == "primary-outage" and preview["mode"] == "automatic"
    assert preview["fault"].startswith("command `kill -STOP")
    assert [t["host"] for t in preview["targets"]] == ["primary-1"]
    assert preview["stacks"] == ["acme", "globex"]
    assert preview["msg"].startswith("would inject command `kill -STOP")
    assert "drill" not in preview

    assert drill["changed"] is True and drill["verdict"] == "PASS" and drill["passed"] is True
    assert drill["time_to_detect_ms"] > 0 and drill["downtime_ms"] >= drill["time_to_detect_ms"]
    assert drill["report"] == str(report) and "<svg" in report.read_text()
    assert drill["msg"].startswith(f"drill {drill['drill']} of scenario primary-outage: PASS")
    assert len(drill["stack_results"]) == 2
    # The demo's drill, and the task's: check mode ran none.
    assert len(list(drills.iterdir())) == before + 1
    assert [d["drill"] for d in drp.drill_history(demo.plan)][-1] == drill["drill"]


def test_drp_recover_check_mode_and_for_real(demo, tmp_path):
    demo.ready()
    runs = demo.dir / "store" / ".drp" / "runs"
    report = tmp_path / "recovery.md"
    run, results = run_play(tmp_path, """
    - name: What a recovery would do
      drp.ops.drp_recover:
        plan: "{{ plan }}"
      check_mode: true
      register: preview

    - name: Recover
      drp.ops.drp_recover:
        plan: "{{ plan }}"
        approve: true
        report: "{{ report }}"
        report_format: md
      register: recovery
""", plan=str(demo.plan), runs=str(runs), report=str(report))
    assert run.returncode == 0, run.stdout + run.stderr
    preview, recovery = results["preview"], results["recovery"]
    assert preview["changed"] is True
    assert preview["waves"] == [["acme", "globex"]]
    assert preview["msg"] == ("would recover 2 stack(s) into datacenter spare, in 1 wave(s): "
                              "acme, globex")
    assert all(s["snapshot"]["id"] for s in preview["stacks"])
    assert "run_id" not in preview

    assert recovery["changed"] is True and recovery["all_recovered"] is True
    assert [s["outcome"] for s in recovery["stacks"]] == ["recovered", "recovered"]
    assert sorted(s["host"] for s in recovery["stacks"]) == ["spare-1", "spare-2"]
    assert all(s["rto_verdict"] == "PASS" for s in recovery["stacks"])
    assert recovery["rto_ms"] > 0
    assert recovery["msg"].startswith(f"run {recovery['run_id']}: 2 of 2 stack(s) recovered")
    assert report.read_text().startswith(f"# Recovery report: run {recovery['run_id']}")
    # The demo's drill made one run; check mode none; the task one.
    assert len(list(runs.iterdir())) == 2


def test_drp_recover_and_drp_drill_fail_with_drps_message(demo, tmp_path):
    lock = {"run_id": "20261129T101500Z-0badc0de", "holder": "ops@elsewhere", "pid": 7,
            "acquired_at": "2026-11-29T10:15:00Z"}
    (demo.dir / "store" / ".drp" / "lock").write_text(json.dumps(lock))
    (demo.dir / "store" / ".drp" / "drill-lock.json").write_text(
        json.dumps(dict(lock, scenario="primary-outage")))
    run, results = run_play(tmp_path, """
    - name: Recover
      drp.ops.drp_recover:
        plan: "{{ plan }}"
      register: recovery
      ignore_errors: true

    - name: Drill
      drp.ops.drp_drill:
        plan: "{{ plan }}"
        scenario: primary-outage
      register: drill
      ignore_errors: true
""", plan=str(demo.plan))
    assert run.returncode == 0, run.stdout + run.stderr
    recovery, drill = results["recovery"], results["drill"]
    with pytest.raises(drp.errors.LockedError) as caught:
        drp.recover(demo.plan)
    assert recovery["failed"] is True and recovery["msg"] == str(caught.value)
    assert recovery["error_class"] == "LockedError" and recovery["run_id"] == lock["run_id"]
    with pytest.raises(drp.errors.LockedError) as caught:
        drp.drill_run(demo.plan, "primary-outage")
    assert drill["failed"] is True and drill["msg"] == str(caught.value)
    assert drill["error_class"] == "LockedError" and drill["drill"] == lock["run_id"]
