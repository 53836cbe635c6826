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
extends_documentation_fragment:
  - drp.ops.snapshots
options:
  snapshot:
    description: A snapshot id, a unique prefix of one, C(latest) or C(all).
    type: str
    default: latest
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

from ansible_collections.drp.ops.plugins.module_utils.drp_common import (
    fail,
    require_drp,
    snapshot_constraints,
    snapshot_keys,
    snapshot_options,
)


def main():
    module = AnsibleModule(
        argument_spec=snapshot_options(snapshot=dict(type="str", default="latest")),
        supports_check_mode=True,
        **snapshot_constraints()
    )
    drp = require_drp(module)
    p = module.params
    try:
        results = drp.backup_verify(
            p["store"], p["stack"], p["key"], snapshot=p["snapshot"], **snapshot_keys(p)
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
