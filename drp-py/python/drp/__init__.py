"""drp, the disaster-recovery toolkit, from Python.

Recovery plans (:func:`load_plan`, :func:`check_plan`), per-customer encrypted backups
(:func:`backup_create`, :func:`backup_list`, :func:`backup_verify`, :func:`backup_restore`,
:func:`backup_prune`, :func:`backup_preview`), keys (:func:`keys_generate`,
:func:`keys_list`), health probes (:func:`probe`), recoveries (:func:`recover`,
:func:`recover_dry_run`, :func:`recover_break_lock`), drills (:func:`drill_run`,
:func:`drill_preview`, :func:`drill_revert`, :func:`drill_history`) and reports of both
(:func:`report`), computed by the same Rust library as the ``drp`` command.

Calls are synchronous and release the GIL while they work (other Python threads run
meanwhile); they share one runtime per process. Ctrl-C interrupts a call made on the main
thread with ``KeyboardInterrupt``, as it stops the ``drp`` command (an interrupted backup
leaves no snapshot; an interrupted recovery keeps its lock and is resumed with
``recover(plan, resume=e.run_id)``; an interrupted drill is aborted and its fault reverted
before the interrupt is raised, with ``e.drill`` naming it). Results are plain data (dicts,
lists, strings, numbers, None: JSON-compatible). Errors raise the class of their kind from
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
    drill_history,
    drill_preview,
    drill_revert,
    drill_run,
    keys_generate,
    keys_list,
    load_plan,
    probe,
    recover,
    recover_break_lock,
    recover_dry_run,
    report,
)
from .errors import (
    DrillError,
    DrpError,
    DrpIOError,
    DrpKeyError,
    IntegrityError,
    InvalidArgument,
    JournalError,
    LockedError,
    PlanError,
    ProbeSpecError,
    ResumeError,
    RunNotFound,
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
    "recover_dry_run",
    "recover",
    "recover_break_lock",
    "drill_preview",
    "drill_run",
    "drill_revert",
    "drill_history",
    "report",
    "DrillError",
    "DrpError",
    "DrpIOError",
    "DrpKeyError",
    "IntegrityError",
    "InvalidArgument",
    "JournalError",
    "LockedError",
    "PlanError",
    "ProbeSpecError",
    "ResumeError",
    "RunNotFound",
    "SnapshotNotFound",
    "SourceError",
    "SourceNotFound",
    "StoreError",
    "TargetError",
    "TransportError",
]
