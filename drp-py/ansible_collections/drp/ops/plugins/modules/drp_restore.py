#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the drp repository)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: drp_restore
short_description: Restore a drp snapshot into a directory or a command
description:
  - Restores a snapshot of a stack, as C(drp backup restore) does, into the directory
    O(dest) (a directory source becomes C(DEST/NAME/), a file or command source the file
    C(DEST/NAME)) or, for one source, into the standard input of the shell command
    O(pipe_to) (e.g. C(pg_restore -d acme)).
  - Every byte is checked (hash, OpenPGP integrity, signature with O(trust)) before anything
    is moved into place; a refused backup leaves the target as it was and fails the task with
    drp's message. An existing C(DEST/NAME) is never overwritten (the task fails).
  - In check mode nothing is decrypted or written; the module reports the snapshot and the
    sources that would be restored.
version_added: "0.1.0"
author:
  - drp maintainers
requirements:
  - drp (the Python package built from drp-py)
extends_documentation_fragment:
  - drp.ops.snapshots
options:
  dest:
    description: Directory to restore into (created if missing). One of O(dest) and O(pipe_to) is required.
    type: path
  pipe_to:
    description: Shell command that receives one source's data on its standard input.
    type: str
  snapshot:
    description: A snapshot id, a unique prefix of one, or C(latest).
    type: str
    default: latest
  sources:
    description: The sources to restore (default all).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
"""

EXAMPLES = r"""
- name: Restore acme's web root onto the spare server
  drp.ops.drp_restore:
    store: s3://acme-backups/prod
    stack: acme
    key: /etc/drp/keys/acme.sec.asc
    passphrase_env: ACME_KEY_PASSPHRASE
    trust: [/etc/drp/keys/ops.pub.asc]
    sources: [www]
    dest: /srv/acme

- name: Load the database dump into PostgreSQL
  drp.ops.drp_restore:
    store: s3://acme-backups/prod
    stack: acme
    key: /etc/drp/keys/acme.sec.asc
    sources: [db]
    pipe_to: pg_restore -d acme
"""

RETURN = r"""
snapshot:
  description: The snapshot restored (or that would be, in check mode).
  returned: success
  type: str
  sample: 20261129T101500.123Z-1a2b3c4d
sources:
  description: Per source - C(name), C(kind), C(path) (null when piped), C(plain_bytes).
  returned: success
  type: list
  elements: dict
plain_bytes:
  description: Bytes restored (would be, in check mode) over all sources.
  returned: success
  type: int
verified_signer:
  description: Fingerprint of the manifest's signer when O(trust) was given.
  returned: success, not in check mode
  type: str
error_class:
  description: The drp exception class when it failed (C(IntegrityError), C(DrpKeyError), C(TargetError), ...).
  returned: failure
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.drp.ops.plugins.module_utils.drp_common import (
    fail,
    require_drp,
    snapshot_constraints,
    snapshot_keys,
    snapshot_options,
)


def pick(snapshots, wanted):
    """The snapshot `wanted` (id, unique prefix or latest) names, as drp resolves it."""
    if not snapshots:
        return None, "no snapshots"
    if wanted == "latest":
        return snapshots[-1], None
    matches = [s for s in snapshots if s["snapshot"].startswith(wanted)]
    if len(matches) == 1:
        return matches[0], None
    return None, "%d snapshots match %r" % (len(matches), wanted)


def preview(module, drp, p):
    """Check mode: what would be restored, read from the manifest only."""
    snapshot, problem = pick(drp.backup_list(p["store"], p["stack"], plan=p["plan"]), p["snapshot"])
    if snapshot is None:
        module.fail_json(msg="stack %s: %s" % (p["stack"], problem), error_class="SnapshotNotFound")
    chosen = [s for s in snapshot["sources"] if not p["sources"] or s["name"] in p["sources"]]
    missing = sorted(set(p["sources"]) - set(s["name"] for s in chosen))
    if missing:
        module.fail_json(
            msg="stack %s, snapshot %s: no source %s" % (p["stack"], snapshot["snapshot"], ", ".join(missing)),
            error_class="SourceNotFound",
        )
    sources = []
    for s in chosen:
        path = os.path.join(p["dest"], s["name"]) if p["dest"] else None
        if path and os.path.lexists(path):
            module.fail_json(msg="restore target %s: already exists" % path, error_class="TargetError")
        sources.append(dict(name=s["name"], kind=s["kind"], path=path, plain_bytes=s["plain_bytes"]))
    module.exit_json(
        changed=True,
        snapshot=snapshot["snapshot"],
        sources=sources,
        plain_bytes=sum(s["plain_bytes"] for s in sources),
        msg="would restore %d source(s) of snapshot %s" % (len(sources), snapshot["snapshot"]),
    )


def main():
    module = AnsibleModule(
        argument_spec=snapshot_options(
            dest=dict(type="path"),
            pipe_to=dict(type="str"),
            snapshot=dict(type="str", default="latest"),
            sources=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
        **snapshot_constraints(
            mutually_exclusive=[("dest", "pipe_to")], required_one_of=[("dest", "pipe_to")]
        )
    )
    drp = require_drp(module)
    p = module.params
    try:
        if module.check_mode:
            preview(module, drp, p)
        report = drp.backup_restore(
            p["store"],
            p["stack"],
            p["key"],
            to=p["dest"],
            pipe_to=p["pipe_to"],
            snapshot=p["snapshot"],
            sources=p["sources"],
            **snapshot_keys(p)
        )
    except drp.DrpError as e:
        fail(module, e)
    module.exit_json(
        changed=True,
        snapshot=report["snapshot"],
        verified_signer=report["verified_signer"],
        sources=report["sources"],
        plain_bytes=sum(s["plain_bytes"] for s in report["sources"]),
        msg="stack %s: snapshot %s restored, %d source(s)"
        % (p["stack"], report["snapshot"], len(report["sources"])),
    )


if __name__ == "__main__":
    main()
