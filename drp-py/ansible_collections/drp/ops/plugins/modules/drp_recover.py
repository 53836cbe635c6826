#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the drp repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: drp_recover
short_description: Recover a drp plan's stacks onto the spare datacenter, measured
description:
  - Runs a drp recovery plan for real, as C(drp recover) does - for each stack, in
    dependency order and up to the plan's parallelism, take a spare host, restore its
    sources from the encrypted backups, run its commands, probe until healthy, notify. Every
    step is journaled in the plan's store, so a run cut off anywhere is continued with
    O(resume).
  - Returns the run id, every stack's outcome and its RTO and RPO against the plan's
    objectives, and writes the run's report when O(report) is given.
  - Fails when a stack is not recovered (unless O(fail_when_not_recovered=false)), and with
    drp's message when the recovery cannot run at all (e.g. another run holds the plan's
    lock - C(error_class=LockedError), with who holds it).
  - In check mode nothing is changed anywhere - the dry run (C(drp recover --dry-run)) reports
    what would run, on which hosts, from which snapshots; it fails if a stack has no usable
    snapshot.
  - Runs where the plan, its keys and drp are (usually the control node, C(delegate_to) or
    C(connection=local)); the plan's hosts are reached over SSH by drp itself.
version_added: "0.1.0"
author:
  - drp maintainers
requirements:
  - drp (the Python package built from drp-py)
options:
  plan:
    description: The drp recovery plan (C(drp.toml)).
    type: path
    required: true
  stacks:
    description:
      - Recover only these stacks (default all; on O(resume), the stacks of the run). Stacks
        they depend on that are not selected are taken to be up.
    type: list
    elements: str
    default: []
  at:
    description: Restore the newest snapshots taken at or before this time (C(2026-11-29T10:00:00Z)).
    type: str
  incident_start:
    description: When the outage began (RTO and RPO are measured from it; default the run's start).
    type: str
  resume:
    description:
      - Continue run RESUME (killed, or with stacks that failed) - finished steps are not run
        again. Takes over the plan's lock only if that same run holds it.
    type: str
  approve:
    description:
      - Approve every approval gate (C(approve_before_start)) of the plan in advance. Without
        it, a gate fails its stack, saying so.
    type: bool
    default: false
  report:
    description: Write the run's report to this file (see O(report_format)).
    type: path
  report_format:
    description: The report's format.
    type: str
    choices: [md, html, json]
    default: html
  fail_when_not_recovered:
    description: Fail the task when a stack was not recovered.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
notes:
  - Secrets the plan references (key passphrases, webhook URLs, SMTP passwords) are read from
    their variables or files at run time and replaced by C(***) in the journal, the report
    and the returned outcomes.
"""

EXAMPLES = r"""
- name: What would a recovery do? (changes nothing)
  drp.ops.drp_recover:
    plan: /etc/drp/drp.toml
  check_mode: true
  register: preview

- name: Recover acme's stacks onto the spare datacenter
  drp.ops.drp_recover:
    plan: /etc/drp/drp.toml
    stacks: [acme-db, acme-web]
    incident_start: "2026-11-29T10:05:00Z"
    approve: true
    report: /var/lib/drp/reports/recovery.html
  register: recovery

- name: Continue it after a failure was fixed
  drp.ops.drp_recover:
    plan: /etc/drp/drp.toml
    resume: "{{ recovery.run_id }}"
    approve: true
  when: recovery is failed
"""

RETURN = r"""
run_id:
  description: The recovery run (C(drp report RUN_ID) renders it again).
  returned: success, not in check mode
  type: str
  sample: 20261129T101500Z-1a2b3c4d
resumed:
  description: Whether the run was a resumed one.
  returned: success, not in check mode
  type: bool
all_recovered:
  description: Whether every stack was recovered.
  returned: success, not in check mode
  type: bool
passed:
  description: Whether every stack recovered within the objectives it has.
  returned: success, not in check mode
  type: bool
rto_ms:
  description: The run's RTO (the slowest stack's, from the incident start), in milliseconds; null unless every stack recovered.
  returned: success, not in check mode
  type: int
rpo_ms:
  description: The run's RPO (the age of the oldest restored snapshot at the incident start), in milliseconds.
  returned: success, not in check mode
  type: int
stacks:
  description:
    - Per stack - C(name), C(outcome) (C(recovered), C(failed), C(skipped), C(interrupted)),
      C(step) and C(error) when it failed, C(reason) when skipped or interrupted, C(host) and
      C(address) where it runs now, C(snapshot) restored, C(rto_ms), C(rto_objective_ms),
      C(rto_verdict), C(rpo_ms), C(rpo_objective_ms), C(rpo_verdict) (C(PASS), C(FAIL), C(-)).
    - In check mode, per stack - C(name), C(customer), C(hosts) it would take, C(snapshot) it
      would restore (or C(no_snapshot), why none), C(steps) (C(name), C(runs)).
  returned: success
  type: list
  elements: dict
measurements:
  description: Everything the run measured (C(incident_start), per stack the timing of every step).
  returned: success, not in check mode
  type: dict
local_journal:
  description: The local copy of the run's journal (JSON Lines).
  returned: success, not in check mode
  type: str
report:
  description: Where the report was written (when O(report) is given).
  returned: success, not in check mode, when asked
  type: str
waves:
  description: The dry run's waves of stack names (a wave's stacks run in parallel).
  returned: check mode
  type: list
  elements: list
error_class:
  description: The drp exception class when the recovery could not run (C(LockedError), C(PlanError), C(ResumeError), C(RunNotFound), ...).
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.drp.ops.plugins.module_utils.drp_common import fail, require_drp


def dry_run(module, drp, p):
    """Check mode: what would run, from the dry run."""
    preview = drp.recover_dry_run(p["plan"], stacks=p["stacks"], at=p["at"])
    stacks = []
    for wave in preview["waves"]:
        for s in wave:
            stacks.append(
                dict(
                    name=s["name"],
                    customer=s["customer"],
                    hosts=s["hosts"],
                    snapshot=s["snapshot"],
                    no_snapshot=s["no_snapshot"],
                    steps=[dict(name=step["name"], runs=step["runs"]) for step in s["steps"]],
                )
            )
    waves = [[s["name"] for s in wave] for wave in preview["waves"]]
    missing = [s for s in stacks if s["snapshot"] is None]
    result = dict(
        changed=True,
        stacks=stacks,
        waves=waves,
        target_datacenter=preview["target_datacenter"],
    )
    if missing:
        module.fail_json(
            msg="; ".join(
                "stack %s has no usable snapshot: %s" % (s["name"], s["no_snapshot"] or "none")
                for s in missing
            ),
            **result
        )
    module.exit_json(
        msg="would recover %d stack(s) into datacenter %s, in %d wave(s): %s"
        % (
            len(stacks),
            preview["target_datacenter"],
            len(waves),
            " | ".join(", ".join(wave) for wave in waves),
        ),
        **result
    )


def per_stack(recovery):
    """One dict per stack: its outcome, where it runs, what was measured."""
    measured = dict((m["stack"], m) for m in recovery["measurements"]["stacks"])
    stacks = []
    for name, outcome in sorted(recovery["stacks"].items()):
        m = measured.get(name, {})
        facts = outcome.get("facts") or {}
        stacks.append(
            dict(
                name=name,
                outcome=outcome["status"],
                step=outcome.get("step"),
                error=outcome.get("error"),
                reason=outcome.get("reason"),
                host=facts.get("host"),
                address=facts.get("address"),
                snapshot=m.get("snapshot"),
                rto_ms=m.get("rto_ms"),
                rto_objective_ms=m.get("rto_objective_ms"),
                rto_verdict=m.get("rto_verdict"),
                rpo_ms=m.get("rpo_ms"),
                rpo_objective_ms=m.get("rpo_objective_ms"),
                rpo_verdict=m.get("rpo_verdict"),
            )
        )
    return stacks


def main():
    module = AnsibleModule(
        argument_spec=dict(
            plan=dict(type="path", required=True),
            stacks=dict(type="list", elements="str", default=[]),
            at=dict(type="str"),
            incident_start=dict(type="str"),
            resume=dict(type="str"),
            approve=dict(type="bool", default=False),
            report=dict(type="path"),
            report_format=dict(type="str", choices=["md", "html", "json"], default="html"),
            fail_when_not_recovered=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    drp = require_drp(module)
    p = module.params
    try:
        if module.check_mode:
            dry_run(module, drp, p)
        recovery = drp.recover(
            p["plan"],
            stacks=p["stacks"],
            at=p["at"],
            resume=p["resume"],
            incident_start=p["incident_start"],
            approve=p["approve"],
        )
        if p["report"]:
            drp.report(p["plan"], recovery["run_id"], format=p["report_format"], out=p["report"])
    except drp.DrpError as e:
        fail(module, e)
    stacks = per_stack(recovery)
    result = dict(
        changed=True,
        run_id=recovery["run_id"],
        resumed=recovery["resumed"],
        all_recovered=recovery["all_recovered"],
        passed=recovery["passed"],
        rto_ms=recovery["rto_ms"],
        rpo_ms=recovery["rpo_ms"],
        stacks=stacks,
        measurements=recovery["measurements"],
        local_journal=recovery["local_journal"],
        report=p["report"],
    )
    recovered = [s["name"] for s in stacks if s["outcome"] == "recovered"]
    msg = "run %s: %d of %d stack(s) recovered%s" % (
        recovery["run_id"],
        len(recovered),
        len(stacks),
        "".join(
            "; %s %s%s" % (s["name"], s["outcome"], ": " + s["error"] if s["error"] else "")
            for s in stacks
            if s["outcome"] != "recovered"
        ),
    )
    if recovery["all_recovered"]:
        msg += ", RTO %s ms, RPO %s ms: %s" % (
            recovery["rto_ms"],
            recovery["rpo_ms"],
            "PASS" if recovery["passed"] else "FAIL",
        )
    elif p["fail_when_not_recovered"]:
        module.fail_json(msg=msg, **result)
    module.exit_json(msg=msg, **result)


if __name__ == "__main__":
    main()
