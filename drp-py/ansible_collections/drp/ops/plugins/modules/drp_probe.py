#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the drp repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: drp_probe
short_description: Check that a stack is really up, with drp's health probes
description:
  - Runs one drp probe, as C(drp probe) does - C(http), C(tcp), C(command), C(dns) or C(tls)
    - given as in a recovery plan, checked against Gatus-style conditions such as
    C([STATUS] == 200) or C([BODY].status == UP).
  - With O(wait), probes every C(interval) of the spec until healthy or the time is up
    (e.g. after a restore).
  - Fails when unhealthy (unless O(fail_when_unhealthy=false)) with drp's one-line
    explanation. Never changes anything (a C(command) probe runs its command, also in check
    mode).
version_added: "0.1.0"
author:
  - drp maintainers
requirements:
  - drp (the Python package built from drp-py)
options:
  spec:
    description:
      - The probe, as a probe table of a recovery plan - C(kind) and its fields (C(url),
        C(method), C(headers), C(host), C(port), C(command), C(name), C(expect)),
        C(conditions), C(timeout), C(interval), C(success_threshold). Unknown fields are errors.
    type: dict
    required: true
  wait:
    description: Probe until healthy for up to this long (C(90s), C(2m)); once by default.
    type: str
  fail_when_unhealthy:
    description: Fail the task when the probe is unhealthy.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
"""

EXAMPLES = r"""
- name: Wait until acme's site answers
  drp.ops.drp_probe:
    spec:
      kind: http
      url: https://acme.example/health
      conditions:
        - "[STATUS] == 200"
        - "[BODY].status == UP"
      interval: 5s
    wait: 3m

- name: The database port is open
  drp.ops.drp_probe:
    spec: {kind: tcp, host: db1.example, port: 5432}
"""

RETURN = r"""
healthy:
  description: Whether every condition held.
  returned: always
  type: bool
result:
  description: What C(drp probe --json) prints - C(kind), C(target), C(healthy), C(time), C(latency_ms), C(observation), C(conditions), C(error), C(message).
  returned: success or unhealthy
  type: dict
error_class:
  description: C(ProbeSpecError) when the spec is invalid.
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.drp.ops.plugins.module_utils.drp_common import fail, require_drp


def main():
    module = AnsibleModule(
        argument_spec=dict(
            spec=dict(type="dict", required=True),
            wait=dict(type="str"),
            fail_when_unhealthy=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    drp = require_drp(module)
    p = module.params
    try:
        result = drp.probe(p["spec"], wait=p["wait"])
    except drp.DrpError as e:
        fail(module, e, healthy=False)
    state = "healthy" if result["healthy"] else "unhealthy"
    message = "%s: %s" % (state, result["message"])
    if not result["healthy"] and p["fail_when_unhealthy"]:
        module.fail_json(msg=message, healthy=False, result=result)
    module.exit_json(changed=False, healthy=result["healthy"], result=result, msg=message)


if __name__ == "__main__":
    main()
