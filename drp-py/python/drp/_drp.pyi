"""Type stubs of drp's native module. Use the functions through the ``drp`` package.

Every ``backup_*`` function takes its store, stack and keys as arguments, or
``plan=FILE, stack=NAME``: the recovery plan's stack then gives the store, the certificates,
the signing key, the sources (read on the stack's host), the secret key, its passphrase
reference and the trusted signers, and giving any of those arguments too raises
``InvalidArgument``. A plan that is invalid or lacks the stack raises ``PlanError``.

``host=`` (``backup_create``, ``backup_preview``, ``backup_restore``) does what ``drp backup
--host`` and its flags do: the sources are read, or the data restored, on that machine over
SSH, streamed end to end. It is ``"[USER@]HOST[:PORT]"`` (the ssh-agent's keys,
``~/.ssh/known_hosts``, strict host-key checking, a 10 s connect timeout), or a dict with
that ``address`` and any of ``ssh_key``, ``ssh_passphrase_env``, ``ssh_passphrase_file``,
``known_hosts``, ``host_key_checking`` (``"strict"``, ``"accept-new"``, ``"off"``) and
``connect_timeout`` (seconds), as a plan's host takes them. A host that cannot be reached
or used raises ``TransportError``.

``recover*``, ``drill_*`` and ``report`` take the plan's path; times are RFC 3339 text
(``"2026-11-29T10:00:00Z"``) or timezone-aware ``datetime`` objects.
"""

import datetime
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

_Path = Union[str, "os.PathLike[str]"]
_Sources = Union[Mapping[str, _Path], Sequence[str]]
_Host = Union[str, Mapping[str, Any]]
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
    host: Optional[_Host] = None,
) -> _Json:
    """Backs up ``sources`` (``{NAME: PATH}``, a value ``"cmd:COMMAND"`` being a command,
    or ``["NAME=PATH", "NAME=cmd:COMMAND"]``) of ``stack`` into a new snapshot in ``store``
    (``file:///...``, ``s3://bucket/prefix``), encrypted to ``recipients``' certificates,
    the manifest signed with ``sign_with`` if given. Returns ``stack``, ``snapshot``,
    ``time``, ``finished``, ``signer``, ``plain_bytes``, ``stored_bytes`` and ``sources``
    (``name``, ``kind``, ``object``, ``plain_bytes``, ``stored_bytes``, ``sha256``).

    Raises:
        drp.errors.SourceError: a source could not be read; nothing was committed.
        drp.errors.TransportError: the sources' host could not be reached or used;
            nothing was committed.
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
    host: Optional[_Host] = None,
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
    ``verified_signer``, ``recipients`` (fingerprints of the certificates it is encrypted
    to: which key it needs), ``sources``.

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
    host: Optional[_Host] = None,
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
        drp.errors.TransportError: ``host`` could not be reached or used; nothing was
            restored.
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
    than ``orphan_grace``, aborting their uploads never completed nor aborted (S3
    multipart uploads). Returns ``decisions`` (``snapshot``, ``time``, ``keep``,
    ``reasons``), ``orphans``, ``removed_objects``, ``aborted_uploads`` (``key``,
    ``upload_id``, ``initiated``), ``dry_run``."""

def probe(spec: Mapping[str, Any], *, wait: Union[float, str, None] = None) -> _Json:
    """Runs a probe given as a plan's probe table (``{"kind": "http", "url": ...,
    "conditions": [...]}``; kinds ``http``, ``tcp``, ``command``, ``dns``, ``tls``) once,
    or with ``wait`` (seconds or ``"2m"``) until healthy. Returns what ``drp probe --json``
    prints: ``kind``, ``target``, ``healthy``, ``time``, ``latency_ms``, ``observation``,
    ``conditions``, ``error``, ``message``. Unhealthy is a result, not an exception.

    Raises:
        drp.errors.ProbeSpecError: the spec is invalid or a condition does not parse.
    """

_Time = Union[str, "datetime.datetime"]

def recover_dry_run(
    plan: _Path, *, stacks: Sequence[str] = (), at: Optional[_Time] = None
) -> _Json:
    """What a recovery of ``plan`` would do, changing nothing anywhere, like ``drp recover
    --dry-run --json``: ``plan``, ``store``, ``target_datacenter``, ``parallelism``, ``at``,
    ``waves`` (lists of stacks recovered in parallel, wave after wave; each stack with
    ``name``, ``customer``, ``hosts`` (the spares it would take, in order), ``provisioner``,
    ``snapshot`` (``id``, ``time``, ``age_ms``, ``exceeds_rpo``, ``sources`` as ``[name,
    bytes]`` pairs, ``signed``) or ``no_snapshot`` (why none is usable), ``passed_over``,
    ``steps`` (``name``, ``runs``, ``timeout``, ``retries``)) and ``ready``: whether every
    stack has a snapshot to restore (a result; the CLI exits 1 when it is false).

    ``stacks`` picks stacks (default all); ``at`` (RFC 3339 text or an aware ``datetime``)
    takes the newest snapshots at or before that time. Reads the store and the trusted
    signers, not the secret keys.

    Raises:
        drp.errors.PlanError: the plan is invalid, or lacks a stack named.
        drp.errors.StoreError: the store cannot be read.
        drp.errors.InvalidArgument: ``at`` is not a time (or a naive ``datetime``).
    """

def recover(
    plan: _Path,
    *,
    stacks: Sequence[str] = (),
    at: Optional[_Time] = None,
    resume: Optional[str] = None,
    incident_start: Optional[_Time] = None,
    approve: bool = False,
    local_journal: Optional[_Path] = None,
) -> _Json:
    """Recovers the plan's stacks for real, like ``drp recover``: takes the plan's lock in
    the store, then per stack, in dependency order and up to the plan's parallelism, a spare
    host (leased in the store), its sources restored from the encrypted backups (the
    snapshots :func:`recover_dry_run` shows), its commands, its probes until healthy, the
    notifications; every event journaled (store and local copy) before the next step.

    ``stacks`` picks stacks (default all; on resume, the run's); ``at`` takes the newest
    snapshots at or before that time; ``incident_start`` is when the outage began (RTO and
    RPO count from it; default the run's start); ``approve=True`` approves the plan's
    approval gates in advance (otherwise a gate fails its stack, saying so);
    ``resume=RUN_ID`` continues that run (killed, interrupted, or with failed stacks) and
    runs only the steps that did not succeed, taking over the lock only from that same run;
    ``local_journal`` moves the local journal copy (default
    ``PLAN_DIR/.drp/runs/RUN_ID.jsonl``).

    Returns ``run_id``, ``plan``, ``resumed``, ``all_recovered``, ``passed`` (every stack
    recovered within the objectives it has), ``rto_ms``, ``rpo_ms``, ``stacks`` (per stack
    name: ``status`` - ``recovered``, ``failed`` with ``step`` and ``error``, ``skipped`` or
    ``interrupted`` with ``reason`` - and ``facts``: ``host``, ``address``, ``snapshot``...),
    ``measurements`` (``incident_start``, ``incident_start_given``, ``rto_ms``, ``rpo_ms``,
    ``passed``, ``stacks``: per stack ``outcome``, ``rto_ms``, ``rto_objective_ms``,
    ``rto_verdict``, ``rpo_ms``, ``rpo_objective_ms``, ``rpo_verdict``, ``snapshot``,
    ``steps``) and ``local_journal``. A stack that is not recovered is a result, not an
    exception. The plan's secrets are ``***`` in everything returned and journaled.

    Ctrl-C (``KeyboardInterrupt``) stops the run where it is, as killing ``drp recover``
    does: it keeps the plan's lock, and ``recover(plan, resume=e.run_id)`` continues it.

    Raises:
        drp.errors.LockedError: another run holds the plan's lock (``run_id``, ``holder``,
            ``pid``, ``since``); nothing was done.
        drp.errors.RunNotFound: ``resume`` names a run the store does not have.
        drp.errors.ResumeError: the plan changed since that run started, or its journal is
            not resumable.
        drp.errors.PlanError: the plan is invalid, or lacks a stack named.
        drp.errors.DrpKeyError: a key or passphrase the plan names is unusable.
        drp.errors.JournalError: events could not be recorded; the run stopped, keeping its
            lock (``run_id``), and can be resumed.
        drp.errors.StoreError, drp.errors.DrpIOError: the store or the local journal failed.
        drp.errors.InvalidArgument: a bad time or run id.
    """

def recover_break_lock(plan: _Path) -> Optional[_Json]:
    """Breaks the plan's recovery lock, like ``drp recover --break-lock`` - only once you know
    the run holding it is dead. Returns who held it (``run_id``, ``holder``, ``pid``,
    ``acquired_at``), or None if the plan was not locked. Recovers nothing."""

def drill_preview(plan: _Path, scenario: str) -> _Json:
    """What :func:`drill_run` would do, injecting nothing and touching no host (for check
    modes): ``plan``, ``scenario``, ``description``, ``mode`` (``automatic``: drp recovers;
    ``surprise``: the team does), ``fault`` (in words) and ``fault_spec``, ``targets`` (the
    rule), ``blast_radius``, ``candidates`` (the hosts it may hit: ``host``, ``address``,
    ``datacenter``), ``hosts_hit`` (how many of them a drill draws), ``stacks`` (those that
    count: the scenario's, else those running on a candidate), ``target_datacenter``,
    ``duration_ms`` (the dead-man timer), ``detect_within_ms``, ``recover_within_ms``,
    ``steady_state``, ``steady_state_within_ms``, ``abort_probes``, ``notify_customers``,
    ``test_route``, ``alert_receiver``.

    Raises:
        drp.errors.PlanError: the plan is invalid, lacks the scenario, or the scenario hits
            no stack (the message is ``drp drill run``'s).
    """

def drill_run(plan: _Path, scenario: str, *, report: Optional[_Path] = None) -> _Json:
    """Runs a drill of ``scenario`` against the real infrastructure, like ``drp drill run
    --yes``: checks the steady state (the stacks' and the abort probes), injects the fault on
    the targets (each armed first with a dead-man timer that reverts it even if drp dies),
    measures detection (drp's probes, and alerts posted to the scenario's
    ``alert_receiver``), recovers (``automatic``: an ordinary journaled run named
    ``DRILL_ID-recovery``) or watches the team do it (``surprise``), reverts, records the
    drill in the store and writes its HTML report to ``report`` (default
    ``PLAN_DIR/.drp/drills/DRILL_ID.html``).

    Returns the drill's record as the store keeps it (``drill``, ``plan``, ``scenario``,
    ``mode``, ``state``, ``fault``, ``targets``, ``stacks``, ``steady_state``, ``marks``
    T0..T4, ``alerts``, ``recovery_runs``, ``stack_results`` with ``healthy_on``,
    ``rto_ms``, ``rpo_ms``, ``notifications``, ``timeline``, ``deviations``,
    ``abort_reason``, ``checks``, ...) plus ``time_to_detect_ms``, ``downtime_ms``,
    ``time_to_start_recovery_ms``, ``fault_duration_ms``, ``verdict`` (``PASS``, ``FAIL``,
    ``ABORTED``), ``passed`` and ``report`` (the HTML file). A drill that ran and failed
    its expectations is a result (``passed`` false), not an exception.

    Ctrl-C (``KeyboardInterrupt``) aborts the drill as in ``drp drill run``: the fault is
    reverted and the drill recorded as aborted (report written) before the interrupt is
    raised, with ``e.drill`` naming it.

    Raises:
        drp.errors.DrillError: it could not start: the steady state did not hold
            (``stage="steady_state"``) or the fault could not be injected everywhere
            (``stage="inject"``; where it was, it was reverted); ``problems`` says what,
            ``drill`` names its record (state ``not_started``).
        drp.errors.TransportError: the fault could not be injected because drp could not
            reach the hosts where it failed (the same attributes, ``stage="inject"``).
        drp.errors.LockedError: another drill is running on the store (``drill``,
            ``scenario``, ``holder``, ``since``).
        drp.errors.PlanError: the plan is invalid, lacks the scenario, or it hits no stack.
        drp.errors.StoreError, drp.errors.DrpIOError: the store or the report file failed.
    """

def drill_revert(plan: _Path, drill_id: str) -> _Json:
    """Reverts drill ``drill_id``'s fault by hand on every host it hit, like ``drp drill
    revert`` (e.g. after its process was killed; the dead-man timers revert anyway when
    they fire), records it (a drill left running becomes ``aborted``) and frees the store
    for the next drill. Safe to repeat. Returns the record as :func:`drill_run` does
    (without ``report``).

    Raises:
        drp.errors.RunNotFound: the store has no such drill.
        drp.errors.DrillError: reverting failed on some hosts (``stage="revert"``,
            ``problems`` per host).
        drp.errors.TransportError: the hosts where reverting failed could not be reached
            (the same attributes); try again when they can be.
        drp.errors.InvalidArgument: not a drill id.
    """

def drill_history(plan: _Path) -> List[_Json]:
    """Every drill of the plan in its store, oldest first, like ``drp drill history``: each
    record as :func:`drill_run` returns it (without ``report``). Unreadable records are
    skipped with a ``RuntimeWarning`` each."""

def report(
    plan: _Path,
    run_id: str,
    *,
    format: str = "md",
    out: Optional[_Path] = None,
    incident_start: Optional[_Time] = None,
) -> str:
    """The report of a recovery run or a drill (``run_id``: its id; ``"latest"``: the newest
    recovery run), like ``drp report``: ``format`` ``"md"`` (Markdown), ``"html"`` (one
    self-contained file with a Gantt chart of the steps; for a drill, the trend of its
    scenario's drills too) or ``"json"`` (``json.loads`` gives the report as data). With
    ``out``, also written to that file (whole or not at all). ``incident_start`` moves the
    start RTO and RPO count from (recovery runs only). Returns the text.

    Raises:
        drp.errors.RunNotFound: the store has no such run or drill.
        drp.errors.JournalError: the run's journal does not parse.
        drp.errors.InvalidArgument: an unknown format or a bad time.
    """
