"""Type stubs of drp's native module. Use the functions through the ``drp`` package.

Every ``backup_*`` function takes its store, stack and keys as arguments, or
``plan=FILE, stack=NAME``: the recovery plan's stack then gives the store, the certificates,
the signing key, the sources (read on the stack's host), the secret key, its passphrase
reference and the trusted signers, and giving any of those arguments too raises
``InvalidArgument``. A plan that is invalid or lacks the stack raises ``PlanError``.
"""

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

_Path = Union[str, "os.PathLike[str]"]
_Sources = Union[Mapping[str, _Path], Sequence[str]]
_Json = Dict[str, Any]

__version__: str

def load_plan(path: _Path, *, files: bool = True) -> _Json:
    """Loads the recovery plan at ``path`` and returns a summary: ``name``, ``file``,
    ``digest``, ``store``, ``stacks`` (``name``, ``customer``, ``role``, ``host``,
    ``depends_on``, ``sources``, ``rto_ms``, ``rpo_ms``), ``hosts``, ``datacenters``,
    ``notifiers``, ``warnings``.

    Raises:
        drp.errors.PlanError: the plan is invalid; ``problems`` lists every error with its
            ``line`` and ``column``.
    """

def check_plan(path: _Path, *, files: bool = True) -> _Json:
    """Checks the recovery plan at ``path`` like ``drp plan check --json``: returns
    ``file``, ``valid``, ``errors``, ``warnings`` and ``problems`` (``severity``, ``kind``,
    ``file``, ``line``, ``column``, ``message``, ``text``). An invalid plan is a result, not
    an exception. ``files=False`` does not open the key files the plan names."""

def keys_generate(
    name: str,
    dir: _Path,
    *,
    passphrase_env: Optional[str] = None,
    passphrase_file: Optional[_Path] = None,
) -> _Json:
    """Writes ``DIR/NAME.pub.asc`` and ``DIR/NAME.sec.asc`` like ``drp keys generate``; the
    secret key is protected by the passphrase in the environment variable ``passphrase_env``
    or the file ``passphrase_file``. Returns ``fingerprint``, ``public_path``,
    ``secret_path``.

    Raises:
        drp.errors.DrpKeyError: e.g. a file exists already, or the passphrase is not set.
    """

def keys_list(dir: _Path) -> List[_Json]:
    """The keys in ``dir`` like ``drp keys list --json``: ``name``, ``fingerprint``,
    ``created``, ``expires``, ``has_secret``, ``user_ids``, ``path``."""

def backup_create(
    store: Optional[str] = None,
    stack: Optional[str] = None,
    sources: Optional[_Sources] = None,
    recipients: Optional[Sequence[_Path]] = None,
    *,
    plan: Optional[_Path] = None,
    sign_with: Optional[_Path] = None,
    sign_passphrase_env: Optional[str] = None,
    sign_passphrase_file: Optional[_Path] = None,
    parallelism: Optional[int] = None,
    compression_level: Optional[int] = None,
) -> _Json:
    """Backs up ``sources`` (``{NAME: PATH}``, a value ``"cmd:COMMAND"`` being a command,
    or ``["NAME=PATH", "NAME=cmd:COMMAND"]``) of ``stack`` into a new snapshot in ``store``
    (``file:///...``, ``s3://bucket/prefix``), encrypted to ``recipients``' certificates,
    the manifest signed with ``sign_with`` if given. Returns ``stack``, ``snapshot``,
    ``time``, ``finished``, ``signer``, ``plain_bytes``, ``stored_bytes`` and ``sources``
    (``name``, ``kind``, ``object``, ``plain_bytes``, ``stored_bytes``, ``sha256``).

    Raises:
        drp.errors.SourceError: a source could not be read; nothing was committed.
        drp.errors.DrpKeyError: a certificate or the signing key is unusable.
        drp.errors.InvalidArgument: a bad stack or source name or specification.
        drp.errors.StoreError: the store failed.
    """

def backup_preview(
    store: Optional[str] = None,
    stack: Optional[str] = None,
    sources: Optional[_Sources] = None,
    recipients: Optional[Sequence[_Path]] = None,
    *,
    plan: Optional[_Path] = None,
    sign_with: Optional[_Path] = None,
    sign_passphrase_env: Optional[str] = None,
    sign_passphrase_file: Optional[_Path] = None,
) -> _Json:
    """What :func:`backup_create` would back up, checking names, sources, certificates and
    the signing key without reading data or touching the store: ``stack``, ``store``,
    ``host``, ``sources`` (``name``, ``kind``, ``path`` or ``command``), ``recipients``,
    ``signer``.
    Raises as :func:`backup_create` does."""

def backup_list(
    store: Optional[str] = None, stack: Optional[str] = None, *, plan: Optional[_Path] = None
) -> List[_Json]:
    """The snapshots of ``stack``, oldest first, each as :func:`backup_create` returns it
    plus ``signed``."""

def backup_verify(
    store: Optional[str] = None,
    stack: Optional[str] = None,
    key: Optional[_Path] = None,
    *,
    plan: Optional[_Path] = None,
    snapshot: str = "latest",
    passphrase_env: Optional[str] = None,
    passphrase_file: Optional[_Path] = None,
    trust: Sequence[_Path] = (),
) -> List[_Json]:
    """Reads snapshots (an id, a unique prefix, ``"latest"`` or ``"all"``) back in full and
    writes nothing. Returns per snapshot, newest first: ``snapshot``, ``ok``, ``error``,
    ``verified_signer``, ``sources``.

    Raises:
        drp.errors.IntegrityError: data or manifest refused (``results`` holds the
            per-snapshot outcomes; with ``"all"``, any failure raises this).
        drp.errors.DrpKeyError: the key cannot decrypt the data, or cannot be opened.
        drp.errors.SnapshotNotFound: no such snapshot.
    """

def backup_restore(
    store: Optional[str] = None,
    stack: Optional[str] = None,
    key: Optional[_Path] = None,
    *,
    plan: Optional[_Path] = None,
    to: Optional[_Path] = None,
    pipe_to: Optional[str] = None,
    snapshot: str = "latest",
    sources: Sequence[str] = (),
    passphrase_env: Optional[str] = None,
    passphrase_file: Optional[_Path] = None,
    trust: Sequence[_Path] = (),
) -> _Json:
    """Restores a snapshot into the directory ``to`` (``TO/NAME/`` per directory source,
    the file ``TO/NAME`` per other source; never overwriting) or, for one source, into the
    standard input of ``sh -c PIPE_TO``. Everything is checked before anything is moved
    into place. Returns ``snapshot``, ``verified_signer``, ``sources`` (``name``, ``kind``,
    ``path``, ``plain_bytes``).

    Raises:
        drp.errors.IntegrityError: data or manifest refused; the target is unchanged.
        drp.errors.DrpKeyError: wrong key or passphrase.
        drp.errors.TargetError: ``TO/NAME`` exists or the target is unusable.
        drp.errors.SnapshotNotFound, drp.errors.SourceNotFound: nothing matches.
    """

def backup_prune(
    store: Optional[str] = None,
    stack: Optional[str] = None,
    *,
    plan: Optional[_Path] = None,
    keep_last: Optional[int] = None,
    keep_daily: Optional[int] = None,
    keep_weekly: Optional[int] = None,
    keep_monthly: Optional[int] = None,
    orphan_grace: str = "24h",
    dry_run: bool = False,
) -> _Json:
    """Applies a retention policy like ``drp backup prune`` (a snapshot kept by any rule
    stays; at least one rule is required) and removes data of interrupted backups older
    than ``orphan_grace``. Returns ``decisions`` (``snapshot``, ``time``, ``keep``,
    ``reasons``), ``orphans``, ``removed_objects``, ``dry_run``."""

def probe(spec: Mapping[str, Any], *, wait: Union[float, str, None] = None) -> _Json:
    """Runs a probe given as a plan's probe table (``{"kind": "http", "url": ...,
    "conditions": [...]}``; kinds ``http``, ``tcp``, ``command``, ``dns``, ``tls``) once,
    or with ``wait`` (seconds or ``"2m"``) until healthy. Returns what ``drp probe --json``
    prints: ``kind``, ``target``, ``healthy``, ``time``, ``latency_ms``, ``observation``,
    ``conditions``, ``error``, ``message``. Unhealthy is a result, not an exception.

    Raises:
        drp.errors.ProbeSpecError: the spec is invalid or a condition does not parse.
    """
