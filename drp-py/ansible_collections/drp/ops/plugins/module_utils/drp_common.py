# -*- coding: utf-8 -*-
# Apache-2.0 (see the drp repository)
"""What every drp.ops module shares: importing the drp package, failing with drp's message
and error class, and the options of the modules that read snapshots."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import missing_required_lib

try:
    import drp  # noqa: F401

    HAS_DRP = True
    DRP_IMPORT_ERROR = None
except ImportError:
    drp = None
    HAS_DRP = False
    DRP_IMPORT_ERROR = traceback.format_exc()


# Options that name a passphrase (a variable or a file holding it): never logged.
PASSPHRASE_OPTIONS = dict(
    passphrase_env=dict(type="str", no_log=True),
    passphrase_file=dict(type="path", no_log=True),
)

# Attributes of drp's exceptions worth returning with a failure (who holds a lock, which run
# or drill, what failed).
ERROR_DETAILS = ("run_id", "drill", "scenario", "holder", "pid", "since", "stage", "problems")


def snapshot_options(**more):
    """The argument_spec of a module that reads a stack's snapshots (documented by the
    drp.ops.snapshots fragment), plus `more`."""
    spec = dict(
        store=dict(type="str"),
        plan=dict(type="path"),
        stack=dict(type="str", required=True),
        key=dict(type="path", no_log=False),
        trust=dict(type="list", elements="path", default=[]),
    )
    spec.update(PASSPHRASE_OPTIONS)
    spec.update(more)
    return spec


def snapshot_constraints(mutually_exclusive=(), required_one_of=()):
    """The AnsibleModule keyword arguments that go with snapshot_options()."""
    return dict(
        mutually_exclusive=[("passphrase_env", "passphrase_file"), ("store", "plan")]
        + list(mutually_exclusive),
        required_one_of=[("store", "plan")] + list(required_one_of),
        required_by=dict(store=("key",)),
    )


def snapshot_keys(params):
    """The keyword arguments of drp.backup_verify/backup_restore that snapshot_options()
    gives."""
    return dict(
        plan=params["plan"],
        passphrase_env=params["passphrase_env"],
        passphrase_file=params["passphrase_file"],
        trust=params["trust"],
    )


def require_drp(module):
    """Fails the task if the drp package is not importable by the module's Python."""
    if not HAS_DRP:
        module.fail_json(msg=missing_required_lib("drp"), exception=DRP_IMPORT_ERROR)
    return drp


def fail(module, error, **extra):
    """Fails the task with a drp error: its message (the drp command's), class, exit status
    and the details it carries (ERROR_DETAILS)."""
    details = dict(
        (name, getattr(error, name))
        for name in ERROR_DETAILS
        if getattr(error, name, None) is not None and name not in extra
    )
    details.update(extra)
    module.fail_json(
        msg=str(error),
        error_class=type(error).__name__,
        exit_status=getattr(error, "exit_status", 1),
        **details
    )
