//! `drp backup`.

use std::sync::Arc;

use drp_core::backup::{
    BackupStore, CreateOptions, Manifest, Recipients, Repository, RestoreDestination,
    RestoreOptions, RetentionPolicy, SecretKeys, Signer, SnapshotSelector, TrustedSigners,
    open_store,
};
use drp_core::backup_plan::{BackupPlanError, SourceHost, StackBackup};
use drp_core::plan::{self, CheckOptions};
use serde::Serialize;

use crate::cli::{BackupCommand, HostArgs, KeyArgs, PassphraseArgs, StackArgs, usage_error};
use crate::output::{CommandError, human_bytes, print_json};

pub async fn run(command: BackupCommand) -> Result<(), CommandError> {
    match command {
        BackupCommand::Create {
            stack,
            all,
            recipients,
            sign_with,
            sign_passphrase_env,
            sign_passphrase_file,
            parallel,
            compression_level,
            json,
            host,
            sources,
        } => {
            if stack.plan.is_some() {
                if host.host.is_some() {
                    usage_error(
                        "--host cannot be used with --plan: the plan says where each stack's \
                         sources are read (stacks.NAME.host)"
                            .into(),
                    );
                }
                return create_from_plan(&stack, all, parallel, compression_level, json).await;
            }
            let repo = open(&stack)?;
            let mut options = CreateOptions::new(sources, Recipients::from_files(&recipients)?);
            if let Some(path) = sign_with {
                let passphrase = PassphraseArgs {
                    passphrase_env: sign_passphrase_env,
                    passphrase_file: sign_passphrase_file,
                }
                .load()?;
                options.signer = Some(Signer::from_file(&path, passphrase.as_ref())?);
            }
            if let Some(n) = parallel {
                options.parallelism = n;
            }
            options.compression_level = compression_level;
            options.host = host.resolve()?;
            let manifest = repo.create(options).await?;
            if json {
                print_json(&SnapshotJson::from(&manifest));
            } else {
                println!("{}", manifest.snapshot);
                print_created(&manifest);
            }
            Ok(())
        }
        BackupCommand::List { stack, json } => {
            let repo = open(&stack)?;
            let snapshots = repo.snapshots().await?;
            if json {
                let listed: Vec<ListedJson> = snapshots
                    .iter()
                    .map(|s| ListedJson {
                        snapshot: SnapshotJson::from(&s.manifest),
                        signed: s.signed,
                    })
                    .collect();
                print_json(&listed);
                return Ok(());
            }
            if snapshots.is_empty() {
                eprintln!(
                    "stack {}: no snapshots in {}",
                    repo.stack(),
                    repo_store_name(&stack)?
                );
                return Ok(());
            }
            println!(
                "{:<30} {:<20} {:>10} {:>10} {:<6} SOURCES",
                "SNAPSHOT", "TIME (UTC)", "PLAIN", "STORED", "SIGNED"
            );
            for entry in snapshots {
                let m = &entry.manifest;
                println!(
                    "{:<30} {:<20} {:>10} {:>10} {:<6} {}",
                    m.snapshot,
                    m.time.strftime("%Y-%m-%d %H:%M:%S"),
                    human_bytes(m.plain_bytes()),
                    human_bytes(m.stored_bytes()),
                    if entry.signed { "yes" } else { "no" },
                    m.sources
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
            Ok(())
        }
        BackupCommand::Restore {
            stack,
            keys,
            snapshot,
            sources,
            to,
            pipe_to,
            host,
            json,
        } => {
            let repo = open(&stack)?;
            let (secret_keys, trust) = keys.load(&stack)?;
            let destination = match (to, pipe_to) {
                (Some(dir), _) => RestoreDestination::Directory(dir),
                (None, Some(command)) => RestoreDestination::Command(command),
                (None, None) => unreachable!("clap requires --to or --pipe-to"),
            };
            let mut options = RestoreOptions::new(secret_keys, destination);
            options.snapshot = selector(&snapshot);
            options.sources = sources;
            options.trust = trust;
            options.host = host.resolve()?;
            let report = repo.restore(options).await?;
            if json {
                print_json(&report);
            } else {
                for source in &report.sources {
                    match &source.path {
                        Some(path) => println!(
                            "restored {} ({}) to {}",
                            source.name,
                            human_bytes(source.plain_bytes),
                            path.display()
                        ),
                        None => eprintln!(
                            "restored {} ({}) into the command",
                            source.name,
                            human_bytes(source.plain_bytes)
                        ),
                    }
                }
                eprintln!(
                    "stack {}: snapshot {} restored{}",
                    repo.stack(),
                    report.snapshot,
                    signer_note(report.verified_signer.as_deref())
                );
            }
            Ok(())
        }
        BackupCommand::Verify {
            stack,
            keys,
            snapshot,
            json,
        } => {
            let repo = open(&stack)?;
            let (secret_keys, trust) = keys.load(&stack)?;
            let which = (snapshot != "all").then(|| selector(&snapshot));
            let outcomes = repo
                .verify(which.as_ref(), &secret_keys, trust.as_ref())
                .await?;
            let failed = outcomes.iter().filter(|(_, o)| o.is_err()).count();
            if json {
                let listed: Vec<VerifyJson> = outcomes
                    .iter()
                    .map(|(id, outcome)| VerifyJson {
                        snapshot: id.clone(),
                        ok: outcome.is_ok(),
                        error: outcome.as_ref().err().map(ToString::to_string),
                        verified_signer: outcome
                            .as_ref()
                            .ok()
                            .and_then(|v| v.verified_signer.clone()),
                        recipients: outcome
                            .as_ref()
                            .map(|v| v.recipients.clone())
                            .unwrap_or_default(),
                    })
                    .collect();
                print_json(&listed);
            } else {
                for (id, outcome) in &outcomes {
                    match outcome {
                        Ok(verified) => println!(
                            "ok      {id}: {} sources, {} decrypted{}; needs the key of {}",
                            verified.sources.len(),
                            human_bytes(verified.sources.iter().map(|s| s.plain_bytes).sum()),
                            signer_note(verified.verified_signer.as_deref()),
                            verified.recipients.join(" or ")
                        ),
                        Err(e) => println!("FAILED  {id}: {e}"),
                    }
                }
            }
            match (outcomes.len(), failed) {
                (_, 0) => Ok(()),
                // A single refused snapshot keeps its own error (and exit status).
                (1, 1) => Err(outcomes
                    .into_iter()
                    .next()
                    .and_then(|(_, o)| o.err())
                    .expect("one failure")
                    .into()),
                (_, n) => Err(CommandError::Refused(n)),
            }
        }
        BackupCommand::Prune {
            stack,
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
            orphan_grace,
            dry_run,
            json,
        } => {
            let repo = open(&stack)?;
            let policy = RetentionPolicy {
                keep_last,
                keep_daily,
                keep_weekly,
                keep_monthly,
            };
            let grace: jiff::SignedDuration = parse_duration(&orphan_grace)?;
            let report = repo.prune(&policy, grace, dry_run).await?;
            if json {
                print_json(&report);
                return Ok(());
            }
            let verb = if dry_run { "would remove" } else { "removed" };
            for d in &report.decisions {
                if d.keep {
                    println!("keep    {} ({})", d.snapshot, d.reasons.join(", "));
                } else {
                    println!("{verb:<7} {} (no rule keeps it)", d.snapshot);
                }
            }
            for orphan in &report.orphans {
                println!("{verb:<7} {orphan} (data of an interrupted backup, no manifest)");
            }
            let abort = if dry_run { "would abort" } else { "aborted" };
            for upload in &report.aborted_uploads {
                println!(
                    "{abort:<7} upload of {} started {} (never completed)",
                    upload.key, upload.initiated
                );
            }
            eprintln!(
                "stack {}: {} kept, {} snapshots and {} interrupted backups {verb}, {} objects; \
                 {} incomplete uploads {abort}",
                repo.stack(),
                report.decisions.iter().filter(|d| d.keep).count(),
                report.decisions.iter().filter(|d| !d.keep).count(),
                report.orphans.len(),
                report.removed_objects.len(),
                report.aborted_uploads.len()
            );
            Ok(())
        }
    }
}

/// The stack's repository: in the --store, or in the --plan's store.
fn open(args: &StackArgs) -> Result<Repository, CommandError> {
    if args.plan.is_some() {
        return Ok(from_plan(args)?.repository()?);
    }
    let store: Arc<dyn BackupStore> = open_store(&store_flag(args))?;
    Ok(Repository::new(store, stack_flag(args))?)
}

/// The store URL, for messages.
fn repo_store_name(args: &StackArgs) -> Result<String, CommandError> {
    if args.plan.is_some() {
        return Ok(from_plan(args)?.store_url);
    }
    Ok(store_flag(args))
}

/// --store, else DRP_STORE (without --plan, one of them is required).
fn store_flag(args: &StackArgs) -> String {
    args.store
        .clone()
        .or_else(|| std::env::var("DRP_STORE").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| {
            usage_error(
                "the following required arguments were not provided: --store <URL> (or the \
                 DRP_STORE environment variable), or --plan <FILE>"
                    .into(),
            )
        })
}

fn stack_flag(args: &StackArgs) -> &str {
    match &args.stack {
        Some(stack) => stack,
        None => {
            usage_error("the following required argument was not provided: --stack <NAME>".into())
        }
    }
}

/// The --stack's backup settings in the --plan.
fn from_plan(args: &StackArgs) -> Result<StackBackup, CommandError> {
    let plan = load_plan(args)?;
    Ok(StackBackup::resolve(&plan, stack_flag(args))?)
}

/// The plan, read without opening its key files: a backup host has certificates only.
fn load_plan(args: &StackArgs) -> Result<plan::Plan, CommandError> {
    let path = args.plan.as_ref().expect("called with --plan");
    plan::load(path, CheckOptions { files: false })
        .map_err(|e| CommandError::message(e.to_string()))
}

impl From<BackupPlanError> for CommandError {
    fn from(e: BackupPlanError) -> Self {
        match e {
            // Keeps the exit status of integrity failures.
            BackupPlanError::Backup(e) => CommandError::Backup(e),
            other => CommandError::message(other.to_string()),
        }
    }
}

/// `drp backup create --plan FILE (--stack NAME | --all)`: each stack's sources, read on its
/// host, encrypted to its customer. With --all, a failing stack does not stop the others;
/// the exit status is 1 if any failed.
async fn create_from_plan(
    args: &StackArgs,
    all: bool,
    parallel: Option<usize>,
    compression_level: i32,
    json: bool,
) -> Result<(), CommandError> {
    let plan = load_plan(args)?;
    let targets = if all {
        StackBackup::all(&plan)?
    } else {
        vec![StackBackup::resolve(&plan, stack_flag(args))?]
    };
    let mut results: Vec<PlanCreateJson> = Vec::new();
    let mut failed = 0;
    let mut last_error = None;
    for target in &targets {
        if target.sources.is_empty() {
            if !all {
                return Err(CommandError::message(format!(
                    "stack {}: the plan gives it no sources to back up",
                    target.stack
                )));
            }
            eprintln!("stack {}: no sources in the plan, skipped", target.stack);
            continue;
        }
        match create_one(target, parallel, compression_level).await {
            Ok(manifest) => {
                if !json {
                    if all {
                        println!("{} {}", manifest.stack, manifest.snapshot);
                    } else {
                        println!("{}", manifest.snapshot);
                    }
                    print_created(&manifest);
                }
                results.push(PlanCreateJson {
                    stack: target.stack.clone(),
                    host: host_name(target),
                    snapshot: Some(SnapshotJson::from(&manifest).into_owned()),
                    error: None,
                });
            }
            Err(error) => {
                failed += 1;
                eprintln!("stack {}: backup failed: {error}", target.stack);
                results.push(PlanCreateJson {
                    stack: target.stack.clone(),
                    host: host_name(target),
                    snapshot: None,
                    error: Some(error.to_string()),
                });
                last_error = Some(error);
            }
        }
    }
    if json {
        if all {
            print_json(&results);
        } else if let Some(PlanCreateJson {
            snapshot: Some(snapshot),
            ..
        }) = results.first()
        {
            print_json(snapshot);
        }
    }
    match (failed, last_error) {
        (0, _) => Ok(()),
        (_, Some(error)) if !all => Err(error),
        (n, _) => Err(CommandError::message(format!(
            "{n} of {} stacks failed to back up",
            targets.len()
        ))),
    }
}

async fn create_one(
    target: &StackBackup,
    parallel: Option<usize>,
    compression_level: i32,
) -> Result<Manifest, CommandError> {
    let repo = target.repository()?;
    let mut options = target.create_options()?;
    if let Some(n) = parallel {
        options.parallelism = n;
    }
    options.compression_level = compression_level;
    Ok(repo.create(options).await?)
}

fn host_name(target: &StackBackup) -> String {
    match &target.host {
        SourceHost::Local => "local".to_string(),
        SourceHost::Ssh { name, .. } | SourceHost::LocalDir { name, .. } => name.clone(),
    }
}

fn print_created(manifest: &Manifest) {
    eprintln!(
        "stack {}: snapshot {} stored, {} sources, {} read, {} stored",
        manifest.stack,
        manifest.snapshot,
        manifest.sources.len(),
        human_bytes(manifest.plain_bytes()),
        human_bytes(manifest.stored_bytes())
    );
}

/// One stack of `create --plan --all --json`.
#[derive(Serialize)]
struct PlanCreateJson {
    stack: String,
    /// The plan host its sources were read on (`local`: this machine).
    host: String,
    snapshot: Option<OwnedSnapshotJson>,
    error: Option<String>,
}

fn selector(text: &str) -> SnapshotSelector {
    text.parse().expect("parsing a selector cannot fail")
}

fn signer_note(signer: Option<&str>) -> String {
    signer.map_or(String::new(), |s| format!(", manifest signed by {s}"))
}

fn parse_duration(text: &str) -> Result<jiff::SignedDuration, CommandError> {
    let span: jiff::Span = text.parse().map_err(|e| {
        CommandError::message(format!(
            "invalid duration {text:?} (try 24h, 90m or 0s): {e}"
        ))
    })?;
    jiff::SignedDuration::try_from(span)
        .map_err(|e| CommandError::message(format!("invalid duration {text:?}: {e}")))
}

impl KeyArgs {
    /// The secret keys and trusted signers: from the flags, or from the --plan (the stack's
    /// customer's secret key and passphrase, the plan's trusted signers).
    fn load(
        &self,
        stack: &StackArgs,
    ) -> Result<(SecretKeys, Option<TrustedSigners>), CommandError> {
        if stack.plan.is_some() {
            for (flag, given) in [
                ("--passphrase-env", self.passphrase.passphrase_env.is_some()),
                (
                    "--passphrase-file",
                    self.passphrase.passphrase_file.is_some(),
                ),
            ] {
                if given {
                    usage_error(format!(
                        "the argument '{flag}' cannot be used with '--plan <FILE>': the plan \
                         names the customer's passphrase (customers.NAME.passphrase_env or \
                         passphrase_file)"
                    ));
                }
            }
            let target = from_plan(stack)?;
            return Ok((target.secret_keys()?, target.trusted_signers()?));
        }
        let passphrase = self.passphrase.load()?;
        let key = self
            .key
            .as_ref()
            .expect("clap requires --key without --plan");
        let keys = SecretKeys::from_file(key, passphrase.as_ref())?;
        let trust = if self.trust.is_empty() {
            None
        } else {
            Some(TrustedSigners::from_files(&self.trust)?)
        };
        Ok((keys, trust))
    }
}

/// The JSON shape of a snapshot: `snapshot`, `time`, `sources` (name, kind, object,
/// plain_bytes, stored_bytes, sha256).
#[derive(Serialize)]
struct SnapshotJson<'m> {
    snapshot: &'m str,
    time: jiff::Timestamp,
    finished: jiff::Timestamp,
    signer: Option<&'m str>,
    sources: &'m [drp_core::backup::SourceRecord],
}

impl<'m> From<&'m Manifest> for SnapshotJson<'m> {
    fn from(m: &'m Manifest) -> Self {
        SnapshotJson {
            snapshot: &m.snapshot,
            time: m.time,
            finished: m.finished,
            signer: m.signer.as_deref(),
            sources: &m.sources,
        }
    }
}

impl SnapshotJson<'_> {
    fn into_owned(self) -> OwnedSnapshotJson {
        OwnedSnapshotJson {
            snapshot: self.snapshot.to_string(),
            time: self.time,
            finished: self.finished,
            signer: self.signer.map(str::to_string),
            sources: self.sources.to_vec(),
        }
    }
}

/// [`SnapshotJson`], owned (kept across stacks).
#[derive(Serialize)]
struct OwnedSnapshotJson {
    snapshot: String,
    time: jiff::Timestamp,
    finished: jiff::Timestamp,
    signer: Option<String>,
    sources: Vec<drp_core::backup::SourceRecord>,
}

#[derive(Serialize)]
struct ListedJson<'m> {
    #[serde(flatten)]
    snapshot: SnapshotJson<'m>,
    signed: bool,
}

#[derive(Serialize)]
struct VerifyJson {
    snapshot: String,
    ok: bool,
    error: Option<String>,
    verified_signer: Option<String>,
    /// Fingerprints of the certificates it is encrypted to (which key it needs).
    recipients: Vec<String>,
}

impl HostArgs {
    /// This machine, or the SSH host the flags describe.
    fn resolve(&self) -> Result<Arc<dyn drp_core::backup::Host>, CommandError> {
        use drp_core::provision::{PassphraseSource, SshOptions};
        let Some(target) = &self.host else {
            return Ok(drp_core::host(None));
        };
        let mut options = SshOptions::from_target(target)
            .with_host_key_checking(self.host_key_checking)
            .with_connect_timeout(std::time::Duration::from_secs(self.connect_timeout));
        if let Some(key) = &self.ssh_key {
            options = options.with_identity_file(key);
        }
        if let Some(var) = &self.ssh_passphrase_env {
            options = options.with_passphrase(PassphraseSource::Env(var.clone()));
        } else if let Some(file) = &self.ssh_passphrase_file {
            options = options.with_passphrase(PassphraseSource::File(file.clone()));
        }
        if let Some(known_hosts) = &self.known_hosts {
            options = options.with_known_hosts(known_hosts);
        }
        Ok(drp_core::host(Some(options)))
    }
}
