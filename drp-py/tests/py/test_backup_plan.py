"""Backups of a recovery plan's stack: `plan=FILE, stack=NAME` instead of store and keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import drp
from conftest import same_tree
from drp import errors

PLAN = """format = 1

[storage]
url = "STORE_URL"
signing_key = "keys/ops.sec.asc"
trust = ["keys/ops.pub.asc"]

[customers.acme]
certificates = ["keys/acme.pub.asc"]
secret_key = "keys/acme.sec.asc"

[customers.locked]
certificates = ["keys/locked.pub.asc"]
secret_key = "keys/locked.sec.asc"
passphrase_env = "DRP_TEST_PASSPHRASE"

[datacenters.dc1]
[datacenters.dc2]

[[hosts]]
name = "app-1"
datacenter = "dc1"
address = "localhost"
roles = ["app"]

[[hosts]]
name = "spare-1"
datacenter = "dc2"
address = "root@10.0.2.11"
roles = ["app"]
spare = true

[stacks.acme]
customer = "acme"
host = "app-1"
role = "app"
sources = ["www=SITE", "db=cmd:echo 'CREATE TABLE acme (id int);'"]
restore_to = "/srv/acme"

[stacks.locked]
customer = "locked"
role = "app"
sources = ["www=SITE"]
restore_to = "/srv/locked"

[recovery]
target_datacenter = "dc2"
"""


@pytest.fixture
def plan(tmp_path: Path, keys: Path, site: Path) -> Path:
    shutil.copytree(keys, tmp_path / "keys")
    path = tmp_path / "plan.toml"
    path.write_text(PLAN.replace("STORE_URL", (tmp_path / "store").as_uri())
                    .replace("SITE", str(site)))
    return path


def test_round_trip_from_the_plan(plan, site, tmp_path):
    preview = drp.backup_preview(plan=plan, stack="acme")
    assert [(s["name"], s["kind"]) for s in preview["sources"]] == [
        ("www", "directory"), ("db", "command"),
    ]
    assert preview["store"] == (tmp_path / "store").as_uri()
    assert preview["signer"]
    created = drp.backup_create(plan=plan, stack="acme")
    assert created["signer"] == preview["signer"]
    listed = drp.backup_list(plan=plan, stack="acme")
    assert [s["snapshot"] for s in listed] == [created["snapshot"]]
    # The plan trusts the ops key: verification checks the signature.
    verified = drp.backup_verify(plan=plan, stack="acme")
    assert verified[0]["ok"] and verified[0]["verified_signer"]
    drp.backup_restore(plan=plan, stack="acme", to=tmp_path / "restored")
    same_tree(site, tmp_path / "restored" / "www")
    pruned = drp.backup_prune(plan=plan, stack="acme", keep_last=1, dry_run=True)
    assert [d["keep"] for d in pruned["decisions"]] == [True]


def test_the_plans_passphrase_reference_is_used(plan, site, tmp_path):
    drp.backup_create(plan=plan, stack="locked")
    drp.backup_restore(plan=plan, stack="locked", to=tmp_path / "restored")
    same_tree(site, tmp_path / "restored" / "www")


def test_arguments_the_plan_gives_are_refused(plan, keys):
    with pytest.raises(errors.InvalidArgument, match="`store`, `recipients` cannot be used"):
        drp.backup_create("file:///tmp/x", "acme", recipients=[keys / "acme.pub.asc"], plan=plan)
    with pytest.raises(errors.InvalidArgument, match="`key` cannot be used with `plan`"):
        drp.backup_verify(stack="acme", key=keys / "acme.sec.asc", plan=plan)
    with pytest.raises(errors.InvalidArgument, match="`stack` is required"):
        drp.backup_list(plan=plan)
    with pytest.raises(errors.InvalidArgument, match="give `store`"):
        drp.backup_list(stack="acme")


def test_an_unknown_stack_or_a_bad_plan_is_a_plan_error(plan, tmp_path):
    with pytest.raises(errors.PlanError, match="stack `nope` is not in the plan"):
        drp.backup_list(plan=plan, stack="nope")
    bad = tmp_path / "bad.toml"
    bad.write_text(plan.read_text().replace("[recovery]", "[recovery]\nparalel = 3"))
    with pytest.raises(errors.PlanError) as caught:
        drp.backup_create(plan=bad, stack="acme")
    assert [p["kind"] for p in caught.value.problems] == ["unknown_key"]
    assert caught.value.problems[0]["line"] == PLAN.count("\n", 0, PLAN.index("[recovery]")) + 2


def test_the_ansible_modules_take_the_plan(plan, site, tmp_path, monkeypatch):
    from test_ansible import ansible

    monkeypatch.setenv("DRP_TMP", str(tmp_path))
    playbook = tmp_path / "plan-playbook.yml"
    playbook.write_text(f"""
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - drp.ops.drp_backup: {{plan: "{plan}", stack: acme}}
      register: backup
    - drp.ops.drp_verify: {{plan: "{plan}", stack: acme, snapshot: "{{{{ backup.snapshot }}}}"}}
    - drp.ops.drp_restore: {{plan: "{plan}", stack: acme, dest: "{tmp_path / 'restored'}"}}
""")
    run = ansible("DRP_ANSIBLE_PLAYBOOK", str(playbook))
    assert run.returncode == 0, run.stdout + run.stderr
    same_tree(site, tmp_path / "restored" / "www")
    assert len(drp.backup_list(plan=plan, stack="acme")) == 1
