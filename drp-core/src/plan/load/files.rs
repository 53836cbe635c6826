//! The checks that open files: keys and certificates (parsed, secret keys unlocked when
//! their passphrase is available here), SSH keys, known_hosts, passphrase files, playbooks;
//! and the environment variables the plan names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use drp_provision::HostKeyChecking;

use super::Loader;
use crate::plan::model::*;
use crate::plan::problem::{Location, Problem, ProblemKind};

impl Loader<'_> {
    /// Every key, certificate, SSH key, known_hosts, passphrase file and playbook the plan
    /// names is there, readable, and (for OpenPGP keys) what it should be. Each file is
    /// checked once per place that names it.
    pub(super) fn check_files(&mut self, plan: &Plan) {
        use drp_backup::{Recipients, SecretKeys, Signer, TrustedSigners};
        let mut seen: BTreeSet<(PathBuf, Location)> = BTreeSet::new();
        let mut fresh = |file: &FileRef| seen.insert((file.path.clone(), file.at));

        let storage = &plan.storage;
        if let Some(key) = &storage.signing_key
            && fresh(key)
        {
            let passphrase = storage.signing_passphrase.as_ref();
            self.key_file(key, "signing key", |path| {
                unlockable(passphrase, "signing_passphrase", |p| {
                    Signer::from_file(path, p).map(drop)
                })
            });
        }
        for cert in &storage.trust {
            if fresh(cert) {
                self.key_file(cert, "trusted signer certificate", |path| {
                    TrustedSigners::from_files(&[path.to_path_buf()])
                        .map(drop)
                        .map_err(|e| e.to_string())
                });
            }
        }
        for cert in &storage.escrow {
            if fresh(cert) {
                self.key_file(cert, "escrow certificate", |path| {
                    Recipients::from_files(&[path.to_path_buf()])
                        .map(drop)
                        .map_err(|e| e.to_string())
                });
            }
        }
        for customer in plan.customers.values() {
            for cert in &customer.certificates {
                if fresh(cert) {
                    let what = format!("certificate of customer {}", customer.name);
                    self.key_file(cert, &what, |path| {
                        Recipients::from_files(&[path.to_path_buf()])
                            .map(drop)
                            .map_err(|e| e.to_string())
                    });
                }
            }
            if let Some(key) = &customer.secret_key
                && fresh(key)
            {
                let what = format!("secret key of customer {}", customer.name);
                let passphrase = customer.passphrase.as_ref();
                self.key_file(key, &what, |path| {
                    unlockable(passphrase, "passphrase", |p| {
                        SecretKeys::from_file(path, p).map(drop)
                    })
                });
            }
        }
        let mut ssh: Vec<(&SshSettings, String)> = plan
            .datacenters
            .values()
            .map(|d| (&d.ssh, format!("datacenter {}", d.name)))
            .collect();
        ssh.extend(
            plan.hosts
                .iter()
                .map(|h| (&h.ssh, format!("host {}", h.name))),
        );
        for (settings, owner) in ssh {
            if let Some(key) = &settings.key
                && fresh(key)
            {
                self.key_file(key, &format!("SSH key of {owner}"), |_| Ok(()));
            }
            if let Some(known_hosts) = &settings.known_hosts
                && fresh(known_hosts)
                // accept-new creates a missing known_hosts file.
                && (settings.host_key_checking != Some(HostKeyChecking::AcceptNew)
                    || known_hosts.path.exists())
            {
                self.key_file(known_hosts, &format!("known_hosts of {owner}"), |_| Ok(()));
            }
        }
        let mut secret_files: Vec<(&SecretRef, String)> = Vec::new();
        if let Some(p) = &storage.signing_passphrase {
            secret_files.push((p, "signing key passphrase".into()));
        }
        for c in plan.customers.values() {
            if let Some(p) = &c.passphrase {
                secret_files.push((p, format!("passphrase of customer {}", c.name)));
            }
        }
        for d in plan.datacenters.values() {
            if let Some(p) = &d.ssh.key_passphrase {
                secret_files.push((p, format!("SSH key passphrase of datacenter {}", d.name)));
            }
        }
        for h in &plan.hosts {
            if let Some(p) = &h.ssh.key_passphrase {
                secret_files.push((p, format!("SSH key passphrase of host {}", h.name)));
            }
        }
        for n in plan.notifiers.values() {
            if let Some(secret) = &n.secret {
                secret_files.push((secret, format!("secret of notifier {}", n.name)));
            }
        }
        for (secret, what) in secret_files {
            if let SecretRef::File(file) = secret
                && fresh(file)
            {
                self.key_file(file, &what, |_| Ok(()));
            }
        }
        for stack in plan.stacks.values() {
            if let Some(playbook) = &stack.playbook
                && fresh(playbook)
                && !playbook.path.is_file()
            {
                self.error_at(
                    ProblemKind::MissingFile,
                    playbook.at,
                    format!(
                        "stacks.{}: playbook `{playbook}` does not exist ({})",
                        stack.name,
                        playbook.path.display()
                    ),
                );
            }
        }
    }

    /// Reports a file that cannot be read, or that `load` refuses.
    fn key_file(
        &mut self,
        file: &FileRef,
        what: &str,
        load: impl FnOnce(&Path) -> Result<(), String>,
    ) {
        let problem = match std::fs::File::open(&file.path).and_then(|f| f.metadata()) {
            Err(e) => Some(format!("cannot read it: {e}")),
            Ok(meta) if meta.is_dir() => Some("it is a directory".to_string()),
            Ok(_) => load(&file.path).err().map(|message| {
                // drp-backup's messages start with the path; say it once.
                let prefix = format!("{}: ", file.path.display());
                message
                    .strip_prefix(&prefix)
                    .unwrap_or(&message)
                    .to_string()
            }),
        };
        if let Some(problem) = problem {
            self.error_at(
                ProblemKind::KeyFile,
                file.at,
                format!("{what} `{file}`: {problem}"),
            );
        }
    }

    /// Environment variables the plan references but this environment lacks: a warning, as
    /// the machine that recovers may well have them.
    pub(super) fn check_environment(&mut self) {
        let mut warned = BTreeSet::new();
        for (var, offset, what) in std::mem::take(&mut self.env_vars) {
            if std::env::var_os(&var).is_none() && warned.insert(var.clone()) {
                let location = self.at(offset);
                self.problems.push(Problem::warning(
                    self.file,
                    ProblemKind::Environment,
                    Some(location),
                    format!("environment variable {var} is not set here ({what})"),
                ));
            }
        }
    }
}

/// Loads a secret key with its passphrase when the passphrase is available here. A key
/// whose passphrase is referenced but not available here (an unset variable) is fine: it is
/// unlocked at recovery time. A protected key with no passphrase referenced is not.
fn unlockable(
    passphrase: Option<&SecretRef>,
    field: &str,
    load: impl Fn(Option<&drp_backup::Passphrase>) -> Result<(), drp_backup::KeyError>,
) -> Result<(), String> {
    use drp_backup::{KeyError, Passphrase};
    let available = match passphrase {
        None => None,
        Some(SecretRef::Env(var)) => Passphrase::from_env(var).ok(),
        Some(SecretRef::File(file)) => Passphrase::from_file(&file.path).ok(),
    };
    match load(available.as_ref()) {
        Ok(()) => Ok(()),
        Err(KeyError::PassphraseRequired { .. }) if passphrase.is_some() => Ok(()),
        Err(KeyError::PassphraseRequired { .. }) => Err(format!(
            "the key is passphrase-protected and the plan gives no passphrase: add \
             `{field}_env` or `{field}_file`"
        )),
        Err(e) => Err(e.to_string()),
    }
}
