//! `drp.backup_*`: a stack's backups in a store, as `drp backup` does them.

use std::path::PathBuf;
use std::sync::Arc;

use drp_core::backup::manifest::validate_name;
use drp_core::backup::{
    BackupStore, CreateOptions, LocalHost, Manifest, Recipients, Repository, RestoreDestination,
    RestoreOptions, RetentionPolicy, SecretKeys, Signer, SnapshotSelector, SourceOrigin,
    SourceSpec, TrustedSigners, open_store,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use serde_json::{Value, json};

use crate::keys::passphrase;
use crate::{Failure, PathArg, run, run_blocking};

/// `sources` as `drp backup create` takes them: a dict `{NAME: PATH}` (a value
/// `"cmd:COMMAND"` is a command) or a list of `"NAME=PATH"` / `"NAME=cmd:COMMAND"`.
fn source_specs(sources: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(dict) = sources.cast::<PyDict>() {
        return dict
            .iter()
            .map(|(name, value)| {
                let value: PathBuf = value.extract()?;
                Ok(format!("{name}={}", value.display()))
            })
            .collect();
    }
    if sources.is_instance_of::<PyString>() {
        return Ok(vec![sources.extract()?]);
    }
    sources.extract()
}

fn parse_sources(specs: &[String]) -> Result<Vec<SourceSpec>, Failure> {
    specs
        .iter()
        .map(|s| s.parse::<SourceSpec>().map_err(Failure::from))
        .collect()
}

fn open(store: &str, stack: &str) -> Result<Repository, Failure> {
    let store: Arc<dyn BackupStore> = open_store(store)?;
    Ok(Repository::new(store, stack)?)
}

fn selector(text: &str) -> SnapshotSelector {
    text.parse().expect("parsing a selector cannot fail")
}

fn trust(paths: &[PathBuf]) -> Result<Option<TrustedSigners>, Failure> {
    Ok(if paths.is_empty() {
        None
    } else {
        Some(TrustedSigners::from_files(paths)?)
    })
}

/// A snapshot as `drp backup create --json` and `list --json` print it, plus `stack` and
/// the totals `plain_bytes` and `stored_bytes`.
fn snapshot_json(m: &Manifest) -> Value {
    json!({
        "stack": m.stack,
        "snapshot": m.snapshot,
        "time": m.time,
        "finished": m.finished,
        "signer": m.signer,
        "plain_bytes": m.plain_bytes(),
        "stored_bytes": m.stored_bytes(),
        "sources": m.sources,
    })
}

/// Backs up `sources` of `stack` into a new snapshot in the store at URL `store`
/// (`file:///...`, `s3://bucket/prefix`), encrypted to every certificate in `recipients`,
/// like `drp backup create`. `sign_with` is the ops secret key that signs the manifest (its
/// passphrase by `sign_passphrase_env`/`sign_passphrase_file`). Returns the snapshot:
/// `snapshot` (its id), `time`, `finished`, `signer`, `plain_bytes`, `stored_bytes` and
/// `sources` (`name`, `kind`, `object`, `plain_bytes`, `stored_bytes`, `sha256`). On any
/// failure nothing of the snapshot becomes visible.
#[pyfunction]
#[pyo3(signature = (store, stack, sources, recipients, *, sign_with=None,
    sign_passphrase_env=None, sign_passphrase_file=None, parallelism=None,
    compression_level=None))]
#[allow(clippy::too_many_arguments)]
pub fn backup_create(
    py: Python<'_>,
    store: String,
    stack: String,
    sources: &Bound<'_, PyAny>,
    recipients: Vec<PathArg>,
    sign_with: Option<PathArg>,
    sign_passphrase_env: Option<String>,
    sign_passphrase_file: Option<PathArg>,
    parallelism: Option<usize>,
    compression_level: Option<i32>,
) -> PyResult<Py<PyAny>> {
    let specs = source_specs(sources)?;
    run(py, move || async move {
        let repo = open(&store, &stack)?;
        let mut options = CreateOptions::new(parse_sources(&specs)?, load_recipients(&recipients)?);
        options.signer = load_signer(
            sign_with.as_deref(),
            sign_passphrase_env.as_deref(),
            sign_passphrase_file.as_deref(),
        )?;
        if let Some(n) = parallelism {
            options.parallelism = n;
        }
        if let Some(level) = compression_level {
            options.compression_level = level;
        }
        let manifest = repo.create(options).await?;
        Ok(snapshot_json(&manifest))
    })
}

fn load_recipients(paths: &[PathBuf]) -> Result<Recipients, Failure> {
    Ok(Recipients::from_files(paths)?)
}

fn load_signer(
    path: Option<&std::path::Path>,
    env: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<Signer>, Failure> {
    let Some(path) = path else {
        return Ok(None);
    };
    let passphrase = passphrase(env, file)?;
    Ok(Some(Signer::from_file(path, passphrase.as_ref())?))
}

/// What `backup_create` with the same arguments would back up, without reading or writing
/// any data and without touching the store: checks the stack name, every source (a path must
/// exist and be a directory or a file), the recipients' certificates and the signing key.
/// Returns `stack`, `store`, `sources` (`name`, `kind`: `directory`, `file` or `command`,
/// and `path` or `command`), `recipients` and `signer` (fingerprints). For check modes.
#[pyfunction]
#[pyo3(signature = (store, stack, sources, recipients, *, sign_with=None,
    sign_passphrase_env=None, sign_passphrase_file=None))]
#[allow(clippy::too_many_arguments)]
pub fn backup_preview(
    py: Python<'_>,
    store: String,
    stack: String,
    sources: &Bound<'_, PyAny>,
    recipients: Vec<PathArg>,
    sign_with: Option<PathArg>,
    sign_passphrase_env: Option<String>,
    sign_passphrase_file: Option<PathArg>,
) -> PyResult<Py<PyAny>> {
    let specs = source_specs(sources)?;
    run_blocking(py, move || {
        validate_name("stack", &stack)?;
        let sources = parse_sources(&specs)?;
        if sources.is_empty() {
            return Err(Failure::invalid("invalid source \"\": no sources given"));
        }
        let mut listed = Vec::new();
        for spec in &sources {
            let kind = spec.kind(&LocalHost, &stack)?;
            let mut entry = json!({"name": spec.name, "kind": kind});
            match &spec.origin {
                SourceOrigin::Path(path) => entry["path"] = json!(path),
                SourceOrigin::Command(command) => entry["command"] = json!(command),
            }
            listed.push(entry);
        }
        let recipients = load_recipients(&recipients)?;
        let signer = load_signer(
            sign_with.as_deref(),
            sign_passphrase_env.as_deref(),
            sign_passphrase_file.as_deref(),
        )?;
        Ok(json!({
            "stack": stack,
            "store": store,
            "sources": listed,
            "recipients": recipients.fingerprints(),
            "signer": signer.as_ref().map(Signer::fingerprint),
        }))
    })
}

/// The snapshots of `stack` in `store`, oldest first, like `drp backup list --json`: each as
/// `backup_create` returns it, plus `signed` (whether a signature object exists).
#[pyfunction]
pub fn backup_list(py: Python<'_>, store: String, stack: String) -> PyResult<Py<PyAny>> {
    run(py, move || async move {
        let repo = open(&store, &stack)?;
        let snapshots = repo.snapshots().await?;
        Ok(snapshots
            .iter()
            .map(|s| {
                let mut v = snapshot_json(&s.manifest);
                v["signed"] = json!(s.signed);
                v
            })
            .collect::<Vec<_>>())
    })
}

/// Reads snapshots back in full (hashes, signature when `trust` names signer certificates,
/// OpenPGP integrity, decompression) and writes nothing, like `drp backup verify`.
/// `snapshot` is an id, a unique prefix of one, `"latest"` or `"all"`. `key` is the stack's
/// secret key (its passphrase by `passphrase_env`/`passphrase_file`). Returns one dict per
/// snapshot, newest first: `snapshot`, `ok`, `error`, `verified_signer`, `sources`. If any
/// snapshot fails, raises: with one snapshot asked for, its own error (e.g.
/// `IntegrityError`, `DrpKeyError`); with several, `IntegrityError` whose `results` hold
/// the per-snapshot outcomes.
#[pyfunction]
#[pyo3(signature = (store, stack, key, *, snapshot="latest".to_string(), passphrase_env=None,
    passphrase_file=None, trust=Vec::new()),
    text_signature = "(store, stack, key, *, snapshot='latest', passphrase_env=None, \
    passphrase_file=None, trust=())")]
#[allow(clippy::too_many_arguments)]
pub fn backup_verify(
    py: Python<'_>,
    store: String,
    stack: String,
    key: PathArg,
    snapshot: String,
    passphrase_env: Option<String>,
    passphrase_file: Option<PathArg>,
    trust: Vec<PathArg>,
) -> PyResult<Py<PyAny>> {
    run(py, move || async move {
        let repo = open(&store, &stack)?;
        let passphrase = passphrase(passphrase_env.as_deref(), passphrase_file.as_deref())?;
        let keys = SecretKeys::from_file(&key, passphrase.as_ref())?;
        let trust = trust_signers(&trust)?;
        let which = (snapshot != "all").then(|| selector(&snapshot));
        let outcomes = repo.verify(which.as_ref(), &keys, trust.as_ref()).await?;
        let results: Vec<Value> = outcomes
            .iter()
            .map(|(id, outcome)| match outcome {
                Ok(v) => json!({
                    "snapshot": id,
                    "ok": true,
                    "error": null,
                    "verified_signer": v.verified_signer,
                    "sources": v.sources,
                }),
                Err(e) => json!({
                    "snapshot": id,
                    "ok": false,
                    "error": e.to_string(),
                    "error_class": crate::errors::backup_class(e),
                    "verified_signer": null,
                    "sources": [],
                }),
            })
            .collect();
        let failed = outcomes.iter().filter(|(_, o)| o.is_err()).count();
        match (outcomes.len(), failed) {
            (_, 0) => Ok(results),
            // A single refused snapshot keeps its own error (as the CLI's exit status does).
            (1, 1) => {
                let (_, outcome) = outcomes.into_iter().next().expect("one outcome");
                let error = outcome.expect_err("one failure");
                Err(Failure::from(error).with_detail("results", Value::Array(results)))
            }
            (_, n) => Err(Failure::new(
                "IntegrityError",
                format!("{n} snapshot(s) failed verification"),
            )
            .with_status(drp_core::exit::INTEGRITY)
            .with_detail("results", Value::Array(results))),
        }
    })
}

fn trust_signers(paths: &[PathBuf]) -> Result<Option<TrustedSigners>, Failure> {
    trust(paths)
}

/// Restores a snapshot of `stack`, like `drp backup restore`: into the directory `to` (a
/// directory source becomes `TO/NAME/`, others the file `TO/NAME`; an existing `TO/NAME` is
/// an error, never overwritten) or, for exactly one source, into the standard input of
/// `sh -c PIPE_TO`. `snapshot` is an id, a unique prefix or `"latest"`; `sources` picks
/// sources (default all); `trust` makes an unsigned or foreign-signed manifest an
/// `IntegrityError`. Everything is checked before anything is moved into place. Returns
/// `snapshot`, `verified_signer` and `sources` (`name`, `kind`, `path`, `plain_bytes`).
#[pyfunction]
#[pyo3(signature = (store, stack, key, *, to=None, pipe_to=None, snapshot="latest".to_string(),
    sources=Vec::new(), passphrase_env=None, passphrase_file=None, trust=Vec::new()),
    text_signature = "(store, stack, key, *, to=None, pipe_to=None, snapshot='latest', \
    sources=(), passphrase_env=None, passphrase_file=None, trust=())")]
#[allow(clippy::too_many_arguments)]
pub fn backup_restore(
    py: Python<'_>,
    store: String,
    stack: String,
    key: PathArg,
    to: Option<PathArg>,
    pipe_to: Option<String>,
    snapshot: String,
    sources: Vec<String>,
    passphrase_env: Option<String>,
    passphrase_file: Option<PathArg>,
    trust: Vec<PathArg>,
) -> PyResult<Py<PyAny>> {
    run(py, move || async move {
        let destination = match (to, pipe_to) {
            (Some(dir), None) => RestoreDestination::Directory(dir),
            (None, Some(command)) => RestoreDestination::Command(command),
            _ => return Err(Failure::invalid("give exactly one of `to` and `pipe_to`")),
        };
        let repo = open(&store, &stack)?;
        let passphrase = passphrase(passphrase_env.as_deref(), passphrase_file.as_deref())?;
        let keys = SecretKeys::from_file(&key, passphrase.as_ref())?;
        let mut options = RestoreOptions::new(keys, destination);
        options.snapshot = selector(&snapshot);
        options.sources = sources;
        options.trust = trust_signers(&trust)?;
        Ok(repo.restore(options).await?)
    })
}

/// Applies a retention policy to `stack`, like `drp backup prune`: a snapshot kept by any
/// `keep_*` rule stays (at least one rule is required); data of interrupted backups older
/// than `orphan_grace` (`"24h"`, `"90m"`, `"0s"`) is removed too. With `dry_run` nothing is
/// removed. Returns `decisions` (per snapshot, newest first: `snapshot`, `time`, `keep`,
/// `reasons`), `orphans`, `removed_objects` and `dry_run`.
#[pyfunction]
#[pyo3(signature = (store, stack, *, keep_last=None, keep_daily=None, keep_weekly=None,
    keep_monthly=None, orphan_grace="24h".to_string(), dry_run=false),
    text_signature = "(store, stack, *, keep_last=None, keep_daily=None, keep_weekly=None, \
    keep_monthly=None, orphan_grace='24h', dry_run=False)")]
#[allow(clippy::too_many_arguments)]
pub fn backup_prune(
    py: Python<'_>,
    store: String,
    stack: String,
    keep_last: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    orphan_grace: String,
    dry_run: bool,
) -> PyResult<Py<PyAny>> {
    run(py, move || async move {
        let grace = parse_grace(&orphan_grace)?;
        let repo = open(&store, &stack)?;
        let policy = RetentionPolicy {
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
        };
        Ok(repo.prune(&policy, grace, dry_run).await?)
    })
}

/// The orphan grace period, read as `drp backup prune --orphan-grace` reads it.
fn parse_grace(text: &str) -> Result<jiff::SignedDuration, Failure> {
    let span: jiff::Span = text.parse().map_err(|e| {
        Failure::invalid(format!(
            "invalid duration {text:?} (try 24h, 90m or 0s): {e}"
        ))
    })?;
    jiff::SignedDuration::try_from(span)
        .map_err(|e| Failure::invalid(format!("invalid duration {text:?}: {e}")))
}
