//! A stack's backups as its plan says: the store, the recipients (the customer's
//! certificates and the plan's escrow certificates), the signing key, the trusted signers,
//! the customer's secret key, the sources and the host they are read on — everything `drp
//! backup --plan FILE --stack NAME` (and the Python bindings) would otherwise take as flags.
//!
//! [`StackBackup::resolve`] only reads the plan: no key is opened until an operation needs
//! it, so a backup host that holds certificates only can back up from a plan that also names
//! secret keys (they are needed only where drp restores).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use drp_backup::{
    BackupStore, CreateOptions, Host, Passphrase, Recipients, Repository, SecretKeys, Signer,
    SourceSpec, TrustedSigners, open_store_with,
};
use drp_provision::SshOptions;

use crate::plan::{Plan, PlanError, SecretRef};

/// The address that means "this machine" for a plan host: its sources are read here, without
/// SSH.
pub const LOCAL_ADDRESS: &str = "localhost";

/// Why a plan cannot back up or restore a stack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupPlanError {
    /// The plan lacks the stack (or something it names).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A restore needs the customer's secret key and the plan names none.
    #[error(
        "stack `{stack}`: customer `{customer}` has no secret_key in the plan; restoring needs it"
    )]
    NoSecretKey {
        /// The stack.
        stack: String,
        /// Its customer.
        customer: String,
    },
    /// A key, the store or the data failed.
    #[error(transparent)]
    Backup(#[from] drp_backup::Error),
}

impl From<drp_backup::KeyError> for BackupPlanError {
    fn from(e: drp_backup::KeyError) -> Self {
        BackupPlanError::Backup(e.into())
    }
}

impl From<drp_backup::StoreError> for BackupPlanError {
    fn from(e: drp_backup::StoreError) -> Self {
        BackupPlanError::Backup(e.into())
    }
}

/// Where a stack's sources are read.
#[derive(Debug, Clone)]
pub enum SourceHost {
    /// The machine running drp (the stack names no host, or its host's address is
    /// [`LOCAL_ADDRESS`]).
    Local,
    /// A plan host, over SSH with its settings.
    Ssh {
        /// The host's name in the plan.
        name: String,
        /// How to reach it.
        options: Box<SshOptions>,
    },
    /// A plan host with `transport = "local"` and its own directory: this machine, paths
    /// relative to that directory.
    LocalDir {
        /// The host's name in the plan.
        name: String,
        /// Its directory.
        dir: PathBuf,
    },
}

/// Everything the backup commands need for one stack of a plan. Paths are resolved against
/// the plan's directory; secrets are references, read when used.
#[derive(Debug, Clone)]
pub struct StackBackup {
    /// The stack (its name in the store).
    pub stack: String,
    /// Its customer.
    pub customer: String,
    /// The store URL.
    pub store_url: String,
    /// The store's backend options.
    pub store_options: BTreeMap<String, String>,
    /// Certificates every backup is encrypted to: the customer's, then the escrow ones.
    pub recipients: Vec<PathBuf>,
    /// The key that signs manifests.
    pub signing_key: Option<PathBuf>,
    /// Its passphrase.
    pub signing_passphrase: Option<SecretRef>,
    /// Certificates a restore trusts as manifest signers (empty: signatures not required).
    pub trust: Vec<PathBuf>,
    /// The customer's secret key (restores).
    pub secret_key: Option<PathBuf>,
    /// Its passphrase.
    pub passphrase: Option<SecretRef>,
    /// What is backed up.
    pub sources: Vec<SourceSpec>,
    /// Where the sources are read.
    pub host: SourceHost,
}

impl StackBackup {
    /// The backup settings of stack `name` of `plan`.
    pub fn resolve(plan: &Plan, name: &str) -> Result<StackBackup, BackupPlanError> {
        let stack = plan.stacks.get(name).ok_or_else(|| PlanError::Unknown {
            what: "stack",
            name: name.to_string(),
        })?;
        let customer = plan
            .customers
            .get(&stack.customer)
            .ok_or_else(|| PlanError::Unknown {
                what: "customer",
                name: stack.customer.clone(),
            })?;
        let host = match &stack.host {
            None => SourceHost::Local,
            Some(host_name) => {
                let host = plan.host(host_name).ok_or_else(|| PlanError::Unknown {
                    what: "host",
                    name: host_name.clone(),
                })?;
                if let crate::plan::Reach::Local { dir } = &host.reach {
                    match dir {
                        None => SourceHost::Local,
                        Some(dir) => SourceHost::LocalDir {
                            name: host.name.clone(),
                            dir: dir.path.clone(),
                        },
                    }
                } else if is_local(&host.address) {
                    SourceHost::Local
                } else {
                    SourceHost::Ssh {
                        name: host.name.clone(),
                        options: Box::new(host.ssh_options()),
                    }
                }
            }
        };
        let storage = &plan.storage;
        Ok(StackBackup {
            stack: stack.name.clone(),
            customer: customer.name.clone(),
            store_url: storage.url.clone(),
            store_options: storage.options.clone(),
            recipients: customer
                .certificates
                .iter()
                .chain(&storage.escrow)
                .map(|c| c.path.clone())
                .collect(),
            signing_key: storage.signing_key.as_ref().map(|k| k.path.clone()),
            signing_passphrase: storage.signing_passphrase.clone(),
            trust: storage.trust.iter().map(|c| c.path.clone()).collect(),
            secret_key: customer.secret_key.as_ref().map(|k| k.path.clone()),
            passphrase: customer.passphrase.clone(),
            sources: stack.sources.iter().map(|s| s.spec.clone()).collect(),
            host,
        })
    }

    /// The settings of every stack of the plan, by name.
    pub fn all(plan: &Plan) -> Result<Vec<StackBackup>, BackupPlanError> {
        plan.stacks
            .keys()
            .map(|name| StackBackup::resolve(plan, name))
            .collect()
    }

    /// The plan's store.
    pub fn store(&self) -> Result<Arc<dyn BackupStore>, BackupPlanError> {
        Ok(open_store_with(
            &self.store_url,
            self.store_options.clone(),
        )?)
    }

    /// The stack's repository in the plan's store.
    pub fn repository(&self) -> Result<Repository, BackupPlanError> {
        Ok(Repository::new(self.store()?, &self.stack)?)
    }

    /// The host its sources are read on (SSH connects on first use).
    pub fn source_host(&self) -> Arc<dyn Host> {
        match &self.host {
            SourceHost::Local => crate::host(None),
            SourceHost::LocalDir { dir, .. } => Arc::new(crate::remote::TransportHost::new(
                Arc::new(drp_provision::LocalTransport::in_dir(dir)),
            )),
            SourceHost::Ssh { options, .. } => crate::host(Some((**options).clone())),
        }
    }

    /// Options of a backup of every source: recipients and signer loaded (the signing key's
    /// passphrase read now), sources read on the stack's host.
    pub fn create_options(&self) -> Result<CreateOptions, BackupPlanError> {
        let recipients = Recipients::from_files(&self.recipients)?;
        let mut options = CreateOptions::new(self.sources.clone(), recipients);
        if let Some(key) = &self.signing_key {
            let passphrase = passphrase(self.signing_passphrase.as_ref())?;
            options.signer = Some(Signer::from_file(key, passphrase.as_ref())?);
        }
        options.host = self.source_host();
        Ok(options)
    }

    /// The customer's secret key, unlocked with its passphrase.
    pub fn secret_keys(&self) -> Result<SecretKeys, BackupPlanError> {
        let path = self
            .secret_key
            .as_ref()
            .ok_or_else(|| BackupPlanError::NoSecretKey {
                stack: self.stack.clone(),
                customer: self.customer.clone(),
            })?;
        let passphrase = passphrase(self.passphrase.as_ref())?;
        Ok(SecretKeys::from_file(path, passphrase.as_ref())?)
    }

    /// The signers restores and verifications require (`None`: the plan trusts none, so
    /// signatures are not required).
    pub fn trusted_signers(&self) -> Result<Option<TrustedSigners>, BackupPlanError> {
        if self.trust.is_empty() {
            return Ok(None);
        }
        Ok(Some(TrustedSigners::from_files(&self.trust)?))
    }
}

/// Whether a plan host's address means this machine: `localhost` with no user and no port
/// (`127.0.0.1:2222` is an SSH server, not this machine).
pub fn is_local(address: &drp_provision::SshTarget) -> bool {
    address.user.is_none() && address.port.is_none() && address.host == LOCAL_ADDRESS
}

fn passphrase(secret: Option<&SecretRef>) -> Result<Option<Passphrase>, BackupPlanError> {
    Ok(match secret {
        None => None,
        Some(SecretRef::Env(var)) => Some(Passphrase::from_env(var)?),
        Some(SecretRef::File(file)) => Some(Passphrase::from_file(&file.path)?),
    })
}
