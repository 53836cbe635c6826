# -*- coding: utf-8 -*-
# Apache-2.0 (see the drp repository)
"""The options drp_verify and drp_restore share: where a stack's snapshots are, and the keys
that read them (C(extends_documentation_fragment: drp.ops.snapshots))."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
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
"""
