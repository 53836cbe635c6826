"""The drp.ops Ansible collection, run by a real ansible-playbook on localhost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import drp
from conftest import required_env, same_tree

PLAYBOOK = Path(__file__).resolve().parents[2] / "examples" / "playbook.yml"
MODULES = ["drp_backup", "drp_verify", "drp_restore", "drp_probe"]


def ansible(tool: str, *args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = required_env("DRP_COLLECTIONS")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_LOCAL_TEMP"] = env["ANSIBLE_REMOTE_TEMP"] = str(Path(env["DRP_TMP"]) / "ansible-tmp")
    env.setdefault("ANSIBLE_HOME", str(Path(env["DRP_TMP"]) / "ansible-home"))
    command = [required_env(tool), *args]
    if tool == "DRP_ANSIBLE_PLAYBOOK":
        command += ["-i", "localhost,", "-e", f"ansible_python_interpreter={python}"]
    return subprocess.run(command, capture_output=True, text=True, env=env)


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


def test_a_missing_drp_package_is_reported(keys, site, tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    run = playbook(*extra_vars((tmp_path / "store").as_uri(), keys, site, tmp_path / "r"),
                   python=str(bare / "bin" / "python"))
    assert run.returncode != 0
    assert "Failed to import the required Python library (drp)" in run.stdout
    assert not (tmp_path / "store").exists()
