# -*- coding: utf-8 -*-
# Apache-2.0 (see the drp repository)
"""What every drp.ops module shares: importing the drp package, and failing with drp's
message and error class."""

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


def require_drp(module):
    """Fails the task if the drp package is not importable by the module's Python."""
    if not HAS_DRP:
        module.fail_json(msg=missing_required_lib("drp"), exception=DRP_IMPORT_ERROR)
    return drp


def fail(module, error, **extra):
    """Fails the task with a drp error: its message (the drp command's), class and exit
    status."""
    module.fail_json(
        msg=str(error),
        error_class=type(error).__name__,
        exit_status=getattr(error, "exit_status", 1),
        **extra
    )
