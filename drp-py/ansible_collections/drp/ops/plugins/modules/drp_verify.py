#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the drp repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: drp_verify
short_description: Verify drp snapshots by reading them back in full
description:
  - Reads snapshots of a stack back entirely, as C(drp backup verify) does (hashes against
    the manifest, its signature when O(trust) is given, OpenPGP integrity, full decryption
    and decompression) and writes nothing.
  - Fails, with drp's message, if any snapshot is refused. Never changes anything, so it
    also runs in check mode.
version_added: "0.1.0"
author:
  - drp maintainers
requirements:
  - drp (the Python package built from drp-py)
options:
  store:
    description: The store URL (C(file:///path), C(s3://bucket/prefix)). One of O(store) and O(plan) is required.
    type: str
  plan:
    description:
      - A drp recovery plan; its stack O(stack) then gives the store, the certificates, the keys,
        the passphrase references and the trusted signers (and, for backups, the sources and
        their host). The options it gives cannot be set too.
    type: path
  stack:
    description: The stack's name.
    type: str
    required: true
  key:
    description: The customer's secret key file (C(NAME.sec.asc)). Required with O(store).
    type: path
  snapshot:
    description: A snapshot id, a unique prefix of one, C(latest) or C(all).
    type: str
    default: latest
  passphrase_env:
    description: Environment variable (of the module's process) holding the key's passphrase.
    type: str
  passphrase_file:
    description: File holding the key's passphrase.
    type: path
  trust:
    description: Signer certificates; a manifest not signed by one of them is refused.
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
"""

EXAMPLES = r"""
- name: Verify every snapshot of acme
  drp.ops.drp_verify:
    store: s3://acme-backups/prod
    stack: acme
    key: /etc/drp/keys/acme.sec.asc
    passphrase_file: /etc/drp/acme.passphrase
    trust: [/etc/drp/keys/ops.pub.asc]
    snapshot: all
"""

RETURN = r"""
snapshots:
  description: Per snapshot, newest first - C(snapshot), C(ok), C(error), C(verified_signer), C(sources).
  returned: always
  type: list
  elements: dict
error_class:
  description: The drp exception class when it failed (C(IntegrityError), C(DrpKeyError), ...).
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.drp.ops.plugins.module_utils.drp_common import fail, require_drp


def main():
    module = AnsibleModule(
        argument_spec=dict(
            store=dict(type="str"),
            plan=dict(type="path"),
            stack=dict(type="str", required=True),
            key=dict(type="path", no_log=False),
            snapshot=dict(type="str", default="latest"),
            passphrase_env=dict(type="str", no_log=True),
            passphrase_file=dict(type="path", no_log=True),
            trust=dict(type="list", elements="path", default=[]),
        ),
        mutually_exclusive=[("passphrase_env", "passphrase_file"), ("store", "plan")],
        required_one_of=[("store", "plan")],
        required_by=dict(store=("key",)),
        supports_check_mode=True,
    )
    drp = require_drp(module)
    p = module.params
    try:
        results = drp.backup_verify(
            p["store"],
            p["stack"],
            p["key"],
            plan=p["plan"],
            snapshot=p["snapshot"],
            passphrase_env=p["passphrase_env"],
            passphrase_file=p["passphrase_file"],
            trust=p["trust"],
        )
    except drp.DrpError as e:
        fail(module, e, snapshots=getattr(e, "results", None) or [])
    module.exit_json(
        changed=False,
        snapshots=results,
        msg="stack %s: %d snapshot(s) verified" % (p["stack"], len(results)),
    )


if __name__ == "__main__":
    main()
