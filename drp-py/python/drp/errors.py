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
    """A remote host could not be reached or used over SSH. Raised by operations on remote
    hosts, which this version of the package does not expose yet (``drp backup --host``)."""


class LockedError(DrpError):
    """Another operator holds the lock of a recovery run. Raised by recoveries, which this
    version of the package does not expose yet (``drp recover``)."""
