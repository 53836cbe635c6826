//! `drp.backup_*`: a stack's backups in a store, as `drp backup` does them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use drp_core::backup::manifest::validate_name;
use drp_core::backup::{
    BackupStore, CreateOptions, Host, Manifest, Recipients, Repository, RestoreDestination,
    RestoreOptions, RetentionPolicy, SecretKeys, Signer, SnapshotSelector, SourceOrigin,
    SourceSpec, TrustedSigners, open_store,
};
use drp_core::backup_plan::{BackupPlanError, StackBackup};
use drp_core::plan::CheckOptions;
use drp_core::provision::{HostKeyChecking, PassphraseSource, SshOptions, SshTarget};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use serde_json::{Value, json};

use crate::keys::passphrase;
use crate::{Failure, PathArg, run, run_blocking};

/// Where a call's settings come from: arguments, or a recovery plan's stack
/// (`plan=FILE, stack=NAME`: store, certificates, signing key, sources and their host, secret
/// key, passphrase references and trusted signers, resolved by drp-core as for `drp backup
/// --plan`).
enum Settings {
    Args { store: String, stack: String },
    Plan(Box<StackBackup>),
}

impl Settings {
    /// `replaced` names the arguments given that the plan would replace: with `plan`, any of
    /// them is an error (as the CLI's flags are).
    fn new(
        store: Option<String>,
        stack: Option<String>,
        plan: Option<PathBuf>,
        replaced: &[(&str, bool)],
    ) -> Result<Settings, Failure> {
        let stack = stack.ok_or_else(|| Failure::invalid("`stack` is required"))?;
        let Some(plan) = plan else {
            let store = store.ok_or_else(|| Failure::invalid("give `store` (or `plan`)"))?;
            return Ok(Settings::Args { store, stack });
        };
        let given = std::iter::once(("store", store.is_some()))
            .chain(replaced.iter().copied())
            .filter(|(_, given)| *given)
            .map(|(name, _)| format!("`{name}`"))
            .collect::<Vec<_>>();
        if !given.is_empty() {
            return Err(Failure::invalid(format!(
                "{} cannot be used with `plan`: the plan gives them for stack {stack}",
                given.join(", ")
            )));
        }
        let loaded = drp_core::plan::load(&plan, CheckOptions { files: false })
            .map_err(|e| crate::plan::plan_failure(&plan, e))?;
        let resolved = StackBackup::resolve(&loaded, &stack).map_err(|e| match e {
            BackupPlanError::Backup(e) => Failure::from(e),
            BackupPlanError::Plan(e) => crate::plan::plan_failure(&plan, e),
            BackupPlanError::NoSecretKey { .. } => Failure::new("DrpKeyError", e.to_string()),
            other => Failure::new("DrpError", other.to_string()),
        })?;
        Ok(Settings::Plan(Box::new(resolved)))
    }

    fn repository(&self) -> Result<Repository, Failure> {
        match self {
            Settings::Args { store, stack } => open(store, stack),
            Settings::Plan(resolved) => resolved.repository().map_err(plan_error),
        }
    }
}

fn plan_error(e: BackupPlanError) -> Failure {
    match e {
        BackupPlanError::Backup(e) => Failure::from(e),
        other => Failure::new("DrpKeyError", other.to_string()),
    }
}

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

/// `host=`: the machine over SSH where a backup reads its sources or a restore writes, as
/// `drp backup --host` and its flags give it: `"[USER@]HOST[:PORT]"`, or a dict with that
/// `address` and the SSH settings of a plan's host (`ssh_key`, `ssh_passphrase_env`,
/// `ssh_passphrase_file`, `known_hosts`, `host_key_checking`: `strict` (default),
/// `accept-new` or `off`, `connect_timeout` in seconds, default 10).
#[derive(Debug, Default)]
struct HostArg {
    address: String,
    ssh_key: Option<PathBuf>,
    ssh_passphrase_env: Option<String>,
    ssh_passphrase_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    host_key_checking: Option<String>,
    connect_timeout: Option<f64>,
}

impl HostArg {
    const FIELDS: &str = "address, ssh_key, ssh_passphrase_env, ssh_passphrase_file, \
                          known_hosts, host_key_checking, connect_timeout";

    fn extract(value: &Bound<'_, PyAny>) -> PyResult<HostArg> {
        let py = value.py();
        let Ok(dict) = value.cast::<PyDict>() else {
            return Ok(HostArg {
                address: value.extract()?,
                ..HostArg::default()
            });
        };
        let mut host = HostArg::default();
        let mut address = None;
        for (key, item) in dict.iter() {
            let key: String = key.extract()?;
            match key.as_str() {
                "address" => address = Some(item.extract()?),
                "ssh_key" => host.ssh_key = Some(item.extract()?),
                "ssh_passphrase_env" => host.ssh_passphrase_env = Some(item.extract()?),
                "ssh_passphrase_file" => host.ssh_passphrase_file = Some(item.extract()?),
                "known_hosts" => host.known_hosts = Some(item.extract()?),
                "host_key_checking" => host.host_key_checking = Some(item.extract()?),
                "connect_timeout" => host.connect_timeout = Some(item.extract()?),
                other => {
                    return Err(Failure::invalid(format!(
                        "host: unknown field {other:?} (expected {})",
                        Self::FIELDS
                    ))
                    .into_pyerr(py));
                }
            }
        }
        host.address = address.ok_or_else(|| {
            Failure::invalid("host: `address` ([USER@]HOST[:PORT]) is required").into_pyerr(py)
        })?;
        Ok(host)
    }

    /// The host (SSH connects on first use). Must be called inside the runtime.
    fn resolve(&self) -> Result<Arc<dyn Host>, Failure> {
        let target: SshTarget = self
            .address
            .parse()
            .map_err(|e: drp_core::provision::ParseTargetError| Failure::invalid(e.to_string()))?;
        let mut options = SshOptions::from_target(&target);
        if let Some(checking) = &self.host_key_checking {
            let checking: HostKeyChecking = checking
                .parse()
                .map_err(|e: String| Failure::invalid(format!("host_key_checking: {e}")))?;
            options = options.with_host_key_checking(checking);
        }
        if let Some(seconds) = self.connect_timeout {
            let timeout = Duration::try_from_secs_f64(seconds).map_err(|_| {
                Failure::invalid(format!("connect_timeout: {seconds} is not a duration"))
            })?;
            options = options.with_connect_timeout(timeout);
        }
        if let Some(key) = &self.ssh_key {
            options = options.with_identity_file(key);
        }
        match (&self.ssh_passphrase_env, &self.ssh_passphrase_file) {
            (Some(_), Some(_)) => {
                return Err(Failure::invalid(
                    "give one of `ssh_passphrase_env` and `ssh_passphrase_file`",
                ));
            }
            (Some(var), None) => {
                options = options.with_passphrase(PassphraseSource::Env(var.clone()));
            }
            (None, Some(file)) => {
                options = options.with_passphrase(PassphraseSource::File(file.clone()));
            }
            (None, None) => {}
        }
        if let Some(known_hosts) = &self.known_hosts {
            options = options.with_known_hosts(known_hosts);
        }
        Ok(drp_core::host(Some(options)))
    }
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
/// passphrase by `sign_passphrase_env`/`sign_passphrase_file`). With `plan=FILE` instead, the
/// plan's stack gives the store, sources (read on the stack's host), certificates and signing
/// key. `host` reads the sources on another machine over SSH (see [`HostArg`]), as `drp
/// backup create --host` does. Returns the snapshot: `stack`, `snapshot` (its id), `time`,
/// `finished`, `signer`, `plain_bytes`, `stored_bytes` and `sources` (`name`, `kind`,
/// `object`, `plain_bytes`, `stored_bytes`, `sha256`). On any failure nothing of the
/// snapshot becomes visible; a host that cannot be reached raises `TransportError`.
#[pyfunction]
#[pyo3(signature = (store=None, stack=None, sources=None, recipients=None, *, plan=None,
    sign_with=None, sign_passphrase_env=None, sign_passphrase_file=None, parallelism=None,
    compression_level=None, host=None))]
#[allow(clippy::too_many_arguments)]
pub fn backup_create(
    py: Python<'_>,
    store: Option<String>,
    stack: Option<String>,
    sources: Option<&Bound<'_, PyAny>>,
    recipients: Option<Vec<PathArg>>,
    plan: Option<PathArg>,
    sign_with: Option<PathArg>,
    sign_passphrase_env: Option<String>,
    sign_passphrase_file: Option<PathArg>,
    parallelism: Option<usize>,
    compression_level: Option<i32>,
    host: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let specs = sources.map(source_specs).transpose()?;
    let host = host.map(HostArg::extract).transpose()?;
    run(py, move || async move {
        let args = ArgsForCreate {
            specs,
            recipients,
            sign_with,
            sign_passphrase_env,
            sign_passphrase_file,
            host,
        };
        let settings = Settings::new(store, stack, plan, &args.replaced())?;
        let repo = settings.repository()?;
        let mut options = args.create_options(&settings)?;
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

/// The arguments of a backup that a plan replaces.
struct ArgsForCreate {
    specs: Option<Vec<String>>,
    recipients: Option<Vec<PathBuf>>,
    sign_with: Option<PathBuf>,
    sign_passphrase_env: Option<String>,
    sign_passphrase_file: Option<PathBuf>,
    host: Option<HostArg>,
}

impl ArgsForCreate {
    fn replaced(&self) -> [(&'static str, bool); 6] {
        [
            ("sources", self.specs.is_some()),
            ("recipients", self.recipients.is_some()),
            ("sign_with", self.sign_with.is_some()),
            ("sign_passphrase_env", self.sign_passphrase_env.is_some()),
            ("sign_passphrase_file", self.sign_passphrase_file.is_some()),
            ("host", self.host.is_some()),
        ]
    }

    /// Sources, recipients, signer and host: from the arguments or from the plan. (SSH hosts
    /// need the runtime: call it inside it.)
    fn create_options(&self, settings: &Settings) -> Result<CreateOptions, Failure> {
        if let Settings::Plan(resolved) = settings {
            return resolved.create_options().map_err(plan_error);
        }
        let specs = self
            .specs
            .as_ref()
            .ok_or_else(|| Failure::invalid("give `sources` (or `plan`)"))?;
        let recipients = self
            .recipients
            .as_ref()
            .ok_or_else(|| Failure::invalid("give `recipients` (or `plan`)"))?;
        let mut options =
            CreateOptions::new(parse_sources(specs)?, Recipients::from_files(recipients)?);
        options.signer = load_signer(
            self.sign_with.as_deref(),
            self.sign_passphrase_env.as_deref(),
            self.sign_passphrase_file.as_deref(),
        )?;
        if let Some(host) = &self.host {
            options.host = host.resolve()?;
        }
        Ok(options)
    }
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
/// exist on the sources' host and be a directory or a file), the recipients' certificates
/// and the signing key. Returns `stack`, `store`, `host`, `sources` (`name`, `kind`:
/// `directory`, `file` or `command`, and `path` or `command`), `recipients` and `signer`
/// (fingerprints). For check modes.
#[pyfunction]
#[pyo3(signature = (store=None, stack=None, sources=None, recipients=None, *, plan=None,
    sign_with=None, sign_passphrase_env=None, sign_passphrase_file=None, host=None))]
#[allow(clippy::too_many_arguments)]
pub fn backup_preview(
    py: Python<'_>,
    store: Option<String>,
    stack: Option<String>,
    sources: Option<&Bound<'_, PyAny>>,
    recipients: Option<Vec<PathArg>>,
    plan: Option<PathArg>,
    sign_with: Option<PathArg>,
    sign_passphrase_env: Option<String>,
    sign_passphrase_file: Option<PathArg>,
    host: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let specs = sources.map(source_specs).transpose()?;
    let host = host.map(HostArg::extract).transpose()?;
    run_blocking(py, move || {
        // A remote host drives its transport on the shared runtime.
        let _runtime = crate::runtime().enter();
        let args = ArgsForCreate {
            specs,
            recipients,
            sign_with,
            sign_passphrase_env,
            sign_passphrase_file,
            host,
        };
        let settings = Settings::new(store, stack, plan, &args.replaced())?;
        let (store, stack) = match &settings {
            Settings::Args { store, stack } => (store.clone(), stack.clone()),
            Settings::Plan(resolved) => (resolved.store_url.clone(), resolved.stack.clone()),
        };
        validate_name("stack", &stack)?;
        let options = args.create_options(&settings)?;
        if options.sources.is_empty() {
            return Err(Failure::invalid("invalid source \"\": no sources given"));
        }
        let mut listed = Vec::new();
        for spec in &options.sources {
            let kind = spec.kind(options.host.as_ref(), &stack)?;
            let mut entry = json!({"name": spec.name, "kind": kind});
            match &spec.origin {
                SourceOrigin::Path(path) => entry["path"] = json!(path),
                SourceOrigin::Command(command) => entry["command"] = json!(command),
            }
            listed.push(entry);
        }
        Ok(json!({
            "stack": stack,
            "store": store,
            "host": options.host.to_string(),
            "sources": listed,
            "recipients": options.recipients.fingerprints(),
            "signer": options.signer.as_ref().map(Signer::fingerprint),
        }))
    })
}

/// The snapshots of `stack` in `store` (or in the store of `plan`), oldest first, like `drp
/// backup list --json`: each as `backup_create` returns it, plus `signed` (whether a
/// signature object exists).
#[pyfunction]
#[pyo3(signature = (store=None, stack=None, *, plan=None))]
pub fn backup_list(
    py: Python<'_>,
    store: Option<String>,
    stack: Option<String>,
    plan: Option<PathArg>,
) -> PyResult<Py<PyAny>> {
    run(py, move || async move {
        let repo = Settings::new(store, stack, plan, &[])?.repository()?;
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

/// The secret keys and trusted signers of a restore or verification: from the arguments,
/// or the customer's secret key, passphrase reference and the trusted signers of the plan.
struct KeyArgs {
    key: Option<PathBuf>,
    passphrase_env: Option<String>,
    passphrase_file: Option<PathBuf>,
    trust: Vec<PathBuf>,
}

impl KeyArgs {
    fn replaced(&self) -> [(&'static str, bool); 4] {
        [
            ("key", self.key.is_some()),
            ("passphrase_env", self.passphrase_env.is_some()),
            ("passphrase_file", self.passphrase_file.is_some()),
            ("trust", !self.trust.is_empty()),
        ]
    }

    fn load(&self, settings: &Settings) -> Result<(SecretKeys, Option<TrustedSigners>), Failure> {
        if let Settings::Plan(resolved) = settings {
            let keys = resolved.secret_keys().map_err(plan_error)?;
            return Ok((keys, resolved.trusted_signers().map_err(plan_error)?));
        }
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| Failure::invalid("give `key` (or `plan`)"))?;
        let passphrase = passphrase(
            self.passphrase_env.as_deref(),
            self.passphrase_file.as_deref(),
        )?;
        let keys = SecretKeys::from_file(key, passphrase.as_ref())?;
        let trust = if self.trust.is_empty() {
            None
        } else {
            Some(TrustedSigners::from_files(&self.trust)?)
        };
        Ok((keys, trust))
    }
}

/// Reads snapshots back in full (hashes, signature when `trust` names signer certificates,
/// OpenPGP integrity, decompression) and writes nothing, like `drp backup verify`.
/// `snapshot` is an id, a unique prefix of one, `"latest"` or `"all"`. `key` is the stack's
/// secret key (its passphrase by `passphrase_env`/`passphrase_file`); with `plan`, the plan
/// gives the store, the key and the trusted signers. Returns one dict per snapshot, newest
/// first: `snapshot`, `ok`, `error`, `verified_signer`, `recipients` (fingerprints of the
/// certificates it is encrypted to: which key it needs), `sources`. If any snapshot fails,
/// raises: with one snapshot asked for, its own error (e.g. `IntegrityError`,
/// `DrpKeyError`); with several, `IntegrityError` whose `results` hold the per-snapshot
/// outcomes.
#[pyfunction]
#[pyo3(signature = (store=None, stack=None, key=None, *, plan=None,
    snapshot="latest".to_string(), passphrase_env=None, passphrase_file=None,
    trust=Vec::new()),
    text_signature = "(store=None, stack=None, key=None, *, plan=None, snapshot='latest', \
    passphrase_env=None, passphrase_file=None, trust=())")]
#[allow(clippy::too_many_arguments)]
pub fn backup_verify(
    py: Python<'_>,
    store: Option<String>,
    stack: Option<String>,
    key: Option<PathArg>,
    plan: Option<PathArg>,
    snapshot: String,
    passphrase_env: Option<String>,
    passphrase_file: Option<PathArg>,
    trust: Vec<PathArg>,
) -> PyResult<Py<PyAny>> {
    run(py, move || async move {
        let key_args = KeyArgs {
            key,
            passphrase_env,
            passphrase_file,
            trust,
        };
        let settings = Settings::new(store, stack, plan, &key_args.replaced())?;
        let repo = settings.repository()?;
        let (keys, trust) = key_args.load(&settings)?;
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
                    "recipients": v.recipients,
                    "sources": v.sources,
                }),
                Err(e) => json!({
                    "snapshot": id,
                    "ok": false,
                    "error": e.to_string(),
                    "error_class": crate::errors::backup_class(e),
                    "verified_signer": null,
                    "recipients": [],
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

/// Restores a snapshot of `stack`, like `drp backup restore`: into the directory `to` (a
/// directory source becomes `TO/NAME/`, others the file `TO/NAME`; an existing `TO/NAME` is
/// an error, never overwritten) or, for exactly one source, into the standard input of
/// `sh -c PIPE_TO`. `snapshot` is an id, a unique prefix or `"latest"`; `sources` picks
/// sources (default all); `trust` makes an unsigned or foreign-signed manifest an
/// `IntegrityError`; with `plan`, the plan gives the store, the key and the trusted signers.
/// `host` restores (or pipes) on another machine over SSH (see [`HostArg`]), as `drp backup
/// restore --host` does; a host that cannot be reached raises `TransportError`. Everything
/// is checked before anything is moved into place. Returns `snapshot`, `verified_signer`
/// and `sources` (`name`, `kind`, `path`, `plain_bytes`).
#[pyfunction]
#[pyo3(signature = (store=None, stack=None, key=None, *, plan=None, to=None, pipe_to=None,
    snapshot="latest".to_string(), sources=Vec::new(), passphrase_env=None,
    passphrase_file=None, trust=Vec::new(), host=None),
    text_signature = "(store=None, stack=None, key=None, *, plan=None, to=None, pipe_to=None, \
    snapshot='latest', sources=(), passphrase_env=None, passphrase_file=None, trust=(), \
    host=None)")]
#[allow(clippy::too_many_arguments)]
pub fn backup_restore(
    py: Python<'_>,
    store: Option<String>,
    stack: Option<String>,
    key: Option<PathArg>,
    plan: Option<PathArg>,
    to: Option<PathArg>,
    pipe_to: Option<String>,
    snapshot: String,
    sources: Vec<String>,
    passphrase_env: Option<String>,
    passphrase_file: Option<PathArg>,
    trust: Vec<PathArg>,
    host: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let host = host.map(HostArg::extract).transpose()?;
    run(py, move || async move {
        let destination = match (to, pipe_to) {
            (Some(dir), None) => RestoreDestination::Directory(dir),
            (None, Some(command)) => RestoreDestination::Command(command),
            _ => return Err(Failure::invalid("give exactly one of `to` and `pipe_to`")),
        };
        let key_args = KeyArgs {
            key,
            passphrase_env,
            passphrase_file,
            trust,
        };
        let settings = Settings::new(store, stack, plan, &key_args.replaced())?;
        let repo = settings.repository()?;
        let (keys, trust) = key_args.load(&settings)?;
        let mut options = RestoreOptions::new(keys, destination);
        options.snapshot = selector(&snapshot);
        options.sources = sources;
        options.trust = trust;
        if let Some(host) = host {
            options.host = host.resolve()?;
        }
        Ok(repo.restore(options).await?)
    })
}

/// Applies a retention policy to `stack` (in `store`, or the store of `plan`), like `drp
/// backup prune`: a snapshot kept by any `keep_*` rule stays (at least one rule is
/// required); data of interrupted backups older than `orphan_grace` (`"24h"`, `"90m"`,
/// `"0s"`) is removed too, and their uploads never completed nor aborted (S3 multipart
/// uploads) are aborted. With `dry_run` nothing is removed or aborted. Returns `decisions`
/// (per snapshot, newest first: `snapshot`, `time`, `keep`, `reasons`), `orphans`,
/// `removed_objects`, `aborted_uploads` (`key`, `upload_id`, `initiated`) and `dry_run`.
#[pyfunction]
#[pyo3(signature = (store=None, stack=None, *, plan=None, keep_last=None, keep_daily=None,
    keep_weekly=None, keep_monthly=None, orphan_grace="24h".to_string(), dry_run=false),
    text_signature = "(store=None, stack=None, *, plan=None, keep_last=None, keep_daily=None, \
    keep_weekly=None, keep_monthly=None, orphan_grace='24h', dry_run=False)")]
#[allow(clippy::too_many_arguments)]
pub fn backup_prune(
    py: Python<'_>,
    store: Option<String>,
    stack: Option<String>,
    plan: Option<PathArg>,
    keep_last: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    orphan_grace: String,
    dry_run: bool,
) -> PyResult<Py<PyAny>> {
    run(py, move || async move {
        let grace = parse_grace(&orphan_grace)?;
        let repo = Settings::new(store, stack, plan, &[])?.repository()?;
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
