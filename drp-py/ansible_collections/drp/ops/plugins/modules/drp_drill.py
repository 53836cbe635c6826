#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the drp repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: drp_drill
short_description: Run a drp drill - a real fault, measured detection and recovery
description:
  - Runs a scenario of a drp recovery plan against the real infrastructure, as
    C(drp drill run --yes) does - checks the steady state (nothing is injected into a system
    already unwell), injects the scenario's fault on its targets with a dead-man timer on
    each host that reverts it even if drp dies, measures the time until monitoring detects
    it, recovers (C(automatic) mode) or waits for the team (C(surprise) mode), reverts the
    fault and writes the drill's HTML report.
  - Returns the drill id, its verdict, the time to detect, the downtime, per-stack results
    and the report's path. Fails when the drill did not pass (unless
    O(fail_when_not_passed=false)), and with drp's message when it could not start -
    C(error_class=DrillError) with C(stage) (C(steady_state), C(inject)) and C(problems), or
    C(LockedError) when another drill is running on the store.
  - In check mode nothing is injected and no host is touched - the module reports the
    scenario, its targets, the fault and the stacks that count.
  - Runs where the plan, its keys and drp are (usually the control node); the plan's hosts
    are reached over SSH by drp itself.
version_added: "0.1.0"
author:
  - drp maintainers
requirements:
  - drp (the Python package built from drp-py)
options:
  plan:
    description: The drp recovery plan with the scenario.
    type: path
    required: true
  scenario:
    description: The scenario (C([scenarios.NAME]) of the plan).
    type: str
    required: true
  report:
    description: Where to write the drill's HTML report (default C(PLAN_DIR/.drp/drills/DRILL_ID.html)).
    type: path
  fail_when_not_passed:
    description: Fail the task when the drill did not pass (failed an expectation, or was aborted).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
notes:
  - One drill at a time per store. A drill whose process died keeps the store's drill lock and
    its record says C(running); C(drp drill revert DRILL_ID) reverts it and frees the store.
"""

EXAMPLES = r"""
- name: What would the drill hit? (injects nothing)
  drp.ops.drp_drill:
    plan: /etc/drp/drp.toml
    scenario: primary-outage
  check_mode: true

- name: Drill a primary datacenter outage
  drp.ops.drp_drill:
    plan: /etc/drp/drp.toml
    scenario: primary-outage
    report: /var/lib/drp/reports/drill.html
  register: drill

- name: Tell the team
  ansible.builtin.debug:
    msg: >-
      drill {{ drill.drill }}: {{ drill.verdict }}, detected after
      {{ drill.time_to_detect_ms }} ms, down for {{ drill.downtime_ms }} ms
"""

RETURN = r"""
drill:
  description: The drill's id (C(drp report DRILL_ID) renders it again).
  returned: success, not in check mode
  type: str
  sample: 20261129T160404Z-b6dce65f
verdict:
  description: C(PASS), C(FAIL) or C(ABORTED).
  returned: success, not in check mode
  type: str
passed:
  description: Whether the drill finished and met every expectation.
  returned: success, not in check mode
  type: bool
time_to_detect_ms:
  description: From the fault in place (T0) to the first detection (T1), in milliseconds; null if not detected.
  returned: success, not in check mode
  type: int
downtime_ms:
  description: From T0 until every stack was healthy again (T3), in milliseconds; null if not recovered.
  returned: success, not in check mode
  type: int
stack_results:
  description: Per stack that counts - C(stack), C(healthy_at), C(healthy_on) (the address it was healthy on), C(rto_ms), C(rpo_ms), C(snapshot).
  returned: success, not in check mode
  type: list
  elements: dict
recovery_runs:
  description: The recovery runs that count (drp's own in automatic mode).
  returned: success, not in check mode
  type: list
  elements: str
report:
  description: Where the HTML report was written.
  returned: success, not in check mode
  type: str
record:
  description: The drill's whole record, as kept in the store (timeline, marks T0..T4, checks, deviations, notifications).
  returned: success, not in check mode
  type: dict
scenario:
  description: The scenario.
  returned: always
  type: str
mode:
  description: C(automatic) (drp recovers) or C(surprise) (the team does).
  returned: check mode
  type: str
fault:
  description: The fault, in words.
  returned: always
  type: str
targets:
  description: The hosts the scenario may hit (C(host), C(address), C(datacenter)); after a drill, the hosts it hit.
  returned: always
  type: list
  elements: dict
hosts_hit:
  description: How many of the targets a drill hits (its blast radius, drawn at random at the start).
  returned: check mode
  type: int
stacks:
  description: The stacks that count (check mode - those that may be hit).
  returned: always
  type: list
  elements: str
error_class:
  description: The drp exception class when the drill could not start (C(DrillError), C(LockedError), C(PlanError), ...).
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.drp.ops.plugins.module_utils.drp_common import fail, require_drp


def millis(value):
    return "-" if value is None else "%d ms" % value


def main():
    module = AnsibleModule(
        argument_spec=dict(
            plan=dict(type="path", required=True),
            scenario=dict(type="str", required=True),
            report=dict(type="path"),
            fail_when_not_passed=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    drp = require_drp(module)
    p = module.params
    try:
        if module.check_mode:
            preview = drp.drill_preview(p["plan"], p["scenario"])
            module.exit_json(
                changed=True,
                scenario=preview["scenario"],
                mode=preview["mode"],
                fault=preview["fault"],
                targets=preview["candidates"],
                hosts_hit=preview["hosts_hit"],
                stacks=preview["stacks"],
                duration_ms=preview["duration_ms"],
                preview=preview,
                msg="would inject %s on %d of %s (%s, blast radius %s) for up to %d s, %s "
                "recovery; stacks: %s"
                % (
                    preview["fault"],
                    preview["hosts_hit"],
                    ", ".join(h["host"] for h in preview["candidates"]),
                    preview["targets"],
                    preview["blast_radius"],
                    preview["duration_ms"] // 1000,
                    preview["mode"],
                    ", ".join(preview["stacks"]),
                ),
            )
        record = drp.drill_run(p["plan"], p["scenario"], report=p["report"])
    except drp.DrpError as e:
        fail(module, e)
    result = dict(
        changed=True,
        drill=record["drill"],
        scenario=record["scenario"],
        verdict=record["verdict"],
        passed=record["passed"],
        time_to_detect_ms=record["time_to_detect_ms"],
        downtime_ms=record["downtime_ms"],
        fault=record["fault"],
        targets=record["targets"],
        stacks=record["stacks"],
        stack_results=record["stack_results"],
        recovery_runs=record["recovery_runs"],
        report=record["report"],
        record=record,
    )
    msg = "drill %s of scenario %s: %s, time to detect %s, downtime %s%s" % (
        record["drill"],
        record["scenario"],
        record["verdict"],
        millis(record["time_to_detect_ms"]),
        millis(record["downtime_ms"]),
        "".join(
            "; %s: expected %s, got %s" % (c["name"], c["expected"], c["actual"])
            for c in record["checks"]
            if not c["passed"]
        ),
    )
    if not record["passed"] and p["fail_when_not_passed"]:
        module.fail_json(msg=msg, **result)
    module.exit_json(msg=msg, **result)


if __name__ == "__main__":
    main()
