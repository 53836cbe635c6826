"""The exceptions drp raises: one class per kind of error, all deriving from
:class:`DrpError`.

Every exception's message (``str(error)``) is exactly what the ``drp`` command prints after
``drp: error:``, and ``exit_status`` is the status the command exits with for it (1 failure,
2 usage, 3 integrity: stored data or a manifest was refused).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

__all__ = [
    "DrpError",
    "PlanError",
    "InvalidArgument",
    "StoreError",
    "SnapshotNotFound",
    "SourceNotFound",
    "IntegrityError",
    "DrpKeyError",
    "SourceError",
    "TargetError",
    "DrpIOError",
    "ProbeSpecError",
    "TransportError",
    "LockedError",
    "RunNotFound",
    "ResumeError",
    "JournalError",
    "DrillError",
]


class DrpError(Exception):
    """Base class of every error drp raises.

    Attributes:
        message: what went wrong, as the ``drp`` command says it.
        exit_status: the ``drp`` command's exit status for this error.
    """

    message: str
    exit_status: int

    def __init__(self, message: str, *, exit_status: int = 1, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.exit_status = exit_status
        for key, value in details.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return self.message


class PlanError(DrpError):
    """A recovery plan is invalid, or names something it does not define.

    Attributes:
        file: the plan file.
        problems: every error, as dicts with ``severity``, ``kind``, ``file``, ``line``,
            ``column`` (1-based; None when the problem has no position), ``message`` and
            ``text`` (the ``FILE:LINE:COLUMN: error: MESSAGE`` line ``drp plan check``
            prints).
    """

    file: Optional[str] = None
    problems: List[Dict[str, Any]]

    def __init__(self, message: str, **details: Any) -> None:
        details.setdefault("problems", [])
        super().__init__(message, **details)


class InvalidArgument(DrpError, ValueError):
    """An argument is not acceptable: a stack or source name, a source specification, a
    retention policy that keeps nothing, a duration, conflicting options."""


class StoreError(DrpError):
    """The store cannot be opened (bad URL) or an operation on it failed (network,
    permissions, disk)."""


class SnapshotNotFound(DrpError, LookupError):
    """The stack has no snapshot, or none matching the given id or prefix."""


class SourceNotFound(DrpError, LookupError):
    """The snapshot has no source of the given name."""


class IntegrityError(DrpError):
    """Stored data or a manifest was refused as corrupt, truncated, tampered, unsigned or
    forged (``exit_status`` 3). Nothing was written to the target.

    Attributes:
        results: for ``backup_verify``, the per-snapshot outcomes (``snapshot``, ``ok``,
            ``error``, ...), when verification ran.
    """

    results: Optional[List[Dict[str, Any]]] = None


class DrpKeyError(DrpError):
    """A key, certificate or passphrase problem: a missing or unreadable key file, a wrong or
    missing passphrase, or a secret key that cannot decrypt the stack's data (the wrong
    customer's key). Named so as not to shadow the built-in ``KeyError``."""

    results: Optional[List[Dict[str, Any]]] = None


class SourceError(DrpError):
    """Reading a source failed while backing it up (a missing path, a dump command that
    exited non-zero); nothing of the snapshot was committed."""


class TargetError(DrpError):
    """The restore target cannot be used (e.g. ``TO/NAME`` already exists); nothing was
    written."""


class DrpIOError(DrpError):
    """Local input/output failed outside the data path."""


class ProbeSpecError(DrpError, ValueError):
    """A probe specification is invalid: an unknown kind or field, a condition that does not
    parse (the message gives its column) or does not fit the kind (``exit_status`` 2, as for
    ``drp probe``). An unhealthy probe is a result, not this error."""


class TransportError(DrpError):
    """A remote host could not be reached or used over SSH: the connection was refused or
    timed out, the host is unreachable, authentication failed, its host key is unknown or
    changed (strict checking), the SSH settings are unusable, or the connection was lost.
    The message is the ``drp`` command's for the same failure (it names the host); nothing
    was committed or restored.

    Raised by the ``backup_*`` calls whose sources or restore target are on another host
    (``host=``, or a plan's stack on an SSH host), and by :func:`drp.drill_run` and
    :func:`drp.drill_revert` when drp could reach none of the hosts that failed: then it
    has the attributes of :class:`DrillError` (``stage`` ``inject`` or ``revert``,
    ``problems`` per host, ``drill``). A command that ran on the host and failed is not
    this error (e.g. :class:`SourceError`), nor is a host that fails in a recovery (its
    stack's outcome) or a probe (unhealthy, a result).

    Attributes:
        stage: for drills, ``inject`` or ``revert``.
        problems: for drills, what failed, one line per host.
        drill: for drills, the drill's id.
    """

    stage: Optional[str] = None
    problems: List[str]
    drill: Optional[str] = None

    def __init__(self, message: str, **details: Any) -> None:
        details.setdefault("problems", [])
        super().__init__(message, **details)


class LockedError(DrpError):
    """Someone else holds what the call needs, and it did nothing.

    - A recovery (``recover``): the plan's lock (``.drp/lock`` in the store) is held by
      another run (or is unreadable). Attributes ``run_id``, ``holder`` (``user@host``),
      ``pid`` and ``since``. If that run is dead, resume it (``recover(plan,
      resume=run_id)``) or break the lock with :func:`drp.recover_break_lock`.
    - A drill (``drill_run``): another drill is running on the store
      (``.drp/drill-lock.json``). Attributes ``drill``, ``scenario``, ``holder`` and
      ``since``; ``drill_revert(plan, drill)`` ends it if its process died.
    """

    run_id: Optional[str] = None
    holder: Optional[str] = None
    pid: Optional[int] = None
    since: Optional[str] = None
    drill: Optional[str] = None
    scenario: Optional[str] = None


class RunNotFound(DrpError, LookupError):
    """The store has no recovery run or drill with the id given (to resume, to report, to
    revert). Attribute ``run_id``: the id asked for."""

    run_id: Optional[str] = None


class ResumeError(DrpError):
    """A run cannot be resumed: the plan changed since it started (attributes ``run_id``,
    ``plan_digest_then``, ``plan_digest_now``: resume it with the plan it started with), or
    its journal is empty, mixes runs or is of another run. Nothing was run."""

    run_id: Optional[str] = None


class JournalError(DrpError):
    """A run's journal failed: its events could not be recorded, so the run stopped where it
    was, keeping the plan's lock (attributes ``run_id`` and ``stacks``, the outcomes so far;
    resume it once the store works), or an event in the store does not parse."""

    run_id: Optional[str] = None
    stacks: Optional[Dict[str, Any]] = None


class DrillError(DrpError):
    """A drill could not start, or reverting one by hand failed.

    Attributes:
        stage: ``steady_state`` (a probe of the stacks or an abort probe did not pass:
            nothing was injected), ``inject`` (the fault could not be injected on every
            target; where it was, it was reverted), ``alert_receiver`` (it cannot listen)
            or ``revert`` (``drill_revert`` failed on some hosts). When every host that
            failed could not be reached, :class:`TransportError` is raised instead, with
            the same attributes.
        problems: what failed, one line each (per probe, per host).
        drill: the drill's id when it got one (its record, state ``not_started``, is in the
            store and in :func:`drp.drill_history`).

    A drill that ran and failed its expectations is a result (``passed`` false), not this.
    """

    stage: Optional[str] = None
    problems: List[str]
    drill: Optional[str] = None

    def __init__(self, message: str, **details: Any) -> None:
        details.setdefault("problems", [])
        super().__init__(message, **details)
