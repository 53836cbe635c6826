//! `drp backup`.

use std::sync::Arc;

use drp_core::backup::{
    BackupStore, CreateOptions, Manifest, Recipients, Repository, RestoreDestination,
    RestoreOptions, RetentionPolicy, SecretKeys, Signer, SnapshotSelector, TrustedSigners,
    open_store,
};
use serde::Serialize;

use crate::cli::{BackupCommand, HostArgs, KeyArgs, PassphraseArgs, StackArgs};
use crate::output::{CommandError, human_bytes, print_json};

pub async fn run(command: BackupCommand) -> Result<(), CommandError> {
    match command {
        BackupCommand::Create {
            stack,
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
                eprintln!(
                    "stack {}: snapshot {} stored, {} sources, {} read, {} stored",
                    manifest.stack,
                    manifest.snapshot,
                    manifest.sources.len(),
                    human_bytes(manifest.plain_bytes()),
                    human_bytes(manifest.stored_bytes())
                );
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
                eprintln!("stack {}: no snapshots in {}", stack.stack, stack.store);
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
            let (secret_keys, trust) = keys.load()?;
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
                    stack.stack,
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
            let (secret_keys, trust) = keys.load()?;
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
                    })
                    .collect();
                print_json(&listed);
            } else {
                for (id, outcome) in &outcomes {
                    match outcome {
                        Ok(verified) => println!(
                            "ok      {id}: {} sources, {} decrypted{}",
                            verified.sources.len(),
                            human_bytes(verified.sources.iter().map(|s| s.plain_bytes).sum()),
                            signer_note(verified.verified_signer.as_deref())
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
            eprintln!(
                "stack {}: {} kept, {} snapshots and {} interrupted backups {verb}, {} objects",
                stack.stack,
                report.decisions.iter().filter(|d| d.keep).count(),
                report.decisions.iter().filter(|d| !d.keep).count(),
                report.orphans.len(),
                report.removed_objects.len()
            );
            Ok(())
        }
    }
}

fn open(args: &StackArgs) -> Result<Repository, CommandError> {
    let store: Arc<dyn BackupStore> = open_store(&args.store)?;
    Ok(Repository::new(store, &args.stack)?)
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
    fn load(&self) -> Result<(SecretKeys, Option<TrustedSigners>), CommandError> {
        let passphrase = self.passphrase.load()?;
        let keys = SecretKeys::from_file(&self.key, passphrase.as_ref())?;
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
