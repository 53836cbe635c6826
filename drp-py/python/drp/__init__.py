"""drp, the disaster-recovery toolkit, from Python.

Recovery plans (:func:`load_plan`, :func:`check_plan`), per-customer encrypted backups
(:func:`backup_create`, :func:`backup_list`, :func:`backup_verify`, :func:`backup_restore`,
:func:`backup_prune`, :func:`backup_preview`), keys (:func:`keys_generate`,
:func:`keys_list`) and health probes (:func:`probe`), computed by the same Rust library as the
``drp`` command.

Calls are synchronous and release the GIL while they work (other Python threads run
meanwhile); they share one runtime per process. Ctrl-C interrupts a call made on the main
thread with ``KeyboardInterrupt``, as it stops the ``drp`` command (an interrupted backup
leaves no snapshot). Results are plain data (dicts, lists,
strings, numbers, None: JSON-compatible). Errors raise the class of their kind from
:mod:`drp.errors`, all subclasses of :class:`DrpError`, with the ``drp`` command's message.
Secrets are never arguments: passphrases are read from the environment variable or file
you name (``passphrase_env=``, ``passphrase_file=``).
"""

from . import errors
from ._drp import (
    __version__,
    backup_create,
    backup_list,
    backup_preview,
    backup_prune,
    backup_restore,
    backup_verify,
    check_plan,
    keys_generate,
    keys_list,
    load_plan,
    probe,
)
from .errors import (
    DrpError,
    DrpIOError,
    DrpKeyError,
    IntegrityError,
    InvalidArgument,
    LockedError,
    PlanError,
    ProbeSpecError,
    SnapshotNotFound,
    SourceError,
    SourceNotFound,
    StoreError,
    TargetError,
    TransportError,
)

__all__ = [
    "__version__",
    "errors",
    "load_plan",
    "check_plan",
    "keys_generate",
    "keys_list",
    "backup_create",
    "backup_preview",
    "backup_list",
    "backup_verify",
    "backup_restore",
    "backup_prune",
    "probe",
    "DrpError",
    "DrpIOError",
    "DrpKeyError",
    "IntegrityError",
    "InvalidArgument",
    "LockedError",
    "PlanError",
    "ProbeSpecError",
    "SnapshotNotFound",
    "SourceError",
    "SourceNotFound",
    "StoreError",
    "TargetError",
    "TransportError",
]
