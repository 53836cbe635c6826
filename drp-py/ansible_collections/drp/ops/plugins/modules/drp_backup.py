#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the drp repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: drp_backup
short_description: Back up a stack's sources into an encrypted drp snapshot
description:
  - Creates a snapshot of a customer stack in a drp store, as C(drp backup create) does.
    Each source (a directory, a file, or the output of a command such as a database dump)
    is streamed through tar, zstd and OpenPGP encryption to the customer's certificates.
  - The snapshot exists only once its manifest is written; on any failure nothing of it is
    visible and the task fails with drp's message.
  - In check mode nothing is read from the sources and nothing is written; the module
    checks the stack name, every source, the certificates and the signing key, and reports
    what would be backed up.
  - Runs on the target host, which needs the C(drp) Python package.
version_added: "0.1.0"
author:
  - drp maintainers
requirements:
  - drp (the Python package built from drp-py)
options:
  store:
    description:
      - The store URL, C(file:///path) or C(s3://bucket/prefix) (S3 settings from the C(AWS_*)
        environment variables). One of O(store) and O(plan) is required.
    type: str
  plan:
    description:
      - A drp recovery plan; its stack O(stack) then gives the store, the certificates, the keys,
        the passphrase references and the trusted signers (and, for backups, the sources and
        their host). The options it gives cannot be set too.
    type: path
  stack:
    description: The stack's name (letters, digits, C(.), C(_), C(-)).
    type: str
    required: true
  sources:
    description:
      - What to back up, by name. A value is a path (a directory or a file) or
        C(cmd:COMMAND), a shell command whose standard output is backed up; it must exit 0.
      - Required with O(store).
    type: dict
  recipients:
    description: Certificate files (C(NAME.pub.asc)) every object is encrypted to. Required with O(store).
    type: list
    elements: path
  sign_with:
    description: The ops secret key that signs the manifest.
    type: path
  sign_passphrase_env:
    description: Environment variable (of the module's process) holding the signing key's passphrase.
    type: str
  sign_passphrase_file:
    description: File holding the signing key's passphrase.
    type: path
  compression_level:
    description: zstd level (default 3).
    type: int
attributes:
  check_mode:
    support: full
"""

EXAMPLES = r"""
- name: Back up acme's web root and database
  drp.ops.drp_backup:
    store: s3://acme-backups/prod
    stack: acme
    sources:
      www: /srv/acme/www
      db: "cmd:pg_dump -Fc acme"
    recipients:
      - /etc/drp/keys/acme.pub.asc
    sign_with: /etc/drp/keys/ops.sec.asc
    sign_passphrase_env: DRP_OPS_PASSPHRASE
  register: backup

- name: Back up a stack as the recovery plan describes it
  drp.ops.drp_backup:
    plan: /etc/drp/drp.toml
    stack: acme-web

- name: Show the snapshot id
  ansible.builtin.debug:
    msg: "{{ backup.snapshot }} ({{ backup.plain_bytes }} bytes read, {{ backup.stored_bytes }} stored)"
"""

RETURN = r"""
snapshot:
  description: The new snapshot's id (null in check mode).
  returned: always
  type: str
  sample: 20261129T101500.123Z-1a2b3c4d
plain_bytes:
  description: Bytes read from all sources.
  returned: success, not in check mode
  type: int
  sample: 1048576
stored_bytes:
  description: Bytes stored (compressed and encrypted).
  returned: success, not in check mode
  type: int
  sample: 262144
sources:
  description:
    - Per source. After a backup C(name), C(kind), C(object), C(plain_bytes), C(stored_bytes),
      C(sha256); in check mode C(name), C(kind) and C(path) or C(command).
  returned: success
  type: list
  elements: dict
recipients:
  description: Fingerprints of the certificates the data is (would be) encrypted to (check mode).
  returned: check mode
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.drp.ops.plugins.module_utils.drp_common import fail, require_drp


def main():
    module = AnsibleModule(
        argument_spec=dict(
            store=dict(type="str"),
            plan=dict(type="path"),
            stack=dict(type="str", required=True),
            sources=dict(type="dict"),
            recipients=dict(type="list", elements="path"),
            sign_with=dict(type="path"),
            sign_passphrase_env=dict(type="str", no_log=True),
            sign_passphrase_file=dict(type="path", no_log=True),
            compression_level=dict(type="int"),
        ),
        mutually_exclusive=[("sign_passphrase_env", "sign_passphrase_file"), ("store", "plan")],
        required_one_of=[("store", "plan")],
        required_by=dict(store=("sources", "recipients")),
        supports_check_mode=True,
    )
    drp = require_drp(module)
    p = module.params
    signing = dict(
        sign_with=p["sign_with"],
        sign_passphrase_env=p["sign_passphrase_env"],
        sign_passphrase_file=p["sign_passphrase_file"],
    )
    sources = None
    if p["sources"] is not None:
        sources = dict((name, str(value)) for name, value in p["sources"].items())
    try:
        if module.check_mode:
            preview = drp.backup_preview(
                p["store"], p["stack"], sources, p["recipients"], plan=p["plan"], **signing
            )
            module.exit_json(
                changed=True,
                snapshot=None,
                sources=preview["sources"],
                recipients=preview["recipients"],
                msg="would back up %d source(s) of stack %s: %s"
                % (
                    len(preview["sources"]),
                    p["stack"],
                    ", ".join(s["name"] for s in preview["sources"]),
                ),
            )
        created = drp.backup_create(
            p["store"],
            p["stack"],
            sources,
            p["recipients"],
            plan=p["plan"],
            compression_level=p["compression_level"],
            **signing
        )
    except drp.DrpError as e:
        fail(module, e)
    module.exit_json(
        changed=True,
        snapshot=created["snapshot"],
        time=created["time"],
        plain_bytes=created["plain_bytes"],
        stored_bytes=created["stored_bytes"],
        sources=created["sources"],
        msg="stack %s: snapshot %s stored, %d source(s), %d bytes read, %d stored"
        % (
            p["stack"],
            created["snapshot"],
            len(created["sources"]),
            created["plain_bytes"],
            created["stored_bytes"],
        ),
    )


if __name__ == "__main__":
    main()
