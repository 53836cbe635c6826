//! The crate's error type.
//!
//! Rule: every public function returns [`Error`]. A variant says what was wrong and where: the
//! stack, the snapshot and the source for backup data, the file for keys, the URL for stores.
//! Secrets (passphrases, key material) never appear in a message.

use std::io;
use std::path::PathBuf;

use crate::host::HostError;
use crate::keys::KeyError;
use crate::store::StoreError;

/// Everything that can go wrong in drp-backup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A store could not be opened or an operation on it failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key or certificate could not be generated, loaded or used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A user-given name (stack, source) is not allowed.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    /// A source specification (`NAME=PATH` or `NAME=cmd:COMMAND`) is malformed.
    #[error("invalid source {spec:?}: {reason}")]
    InvalidSourceSpec { spec: String, reason: String },
    /// Reading a source failed while backing it up; nothing of the snapshot was committed.
    /// `message`'s source, if any, is why the host failed (e.g. it could not be reached).
    #[error("stack {stack}, source {source_name}: {message}")]
    SourceFailed {
        stack: String,
        source_name: String,
        #[source]
        message: HostError,
    },
    /// The stack has no snapshot (or none with this id).
    #[error("stack {stack}: {message}")]
    SnapshotNotFound { stack: String, message: String },
    /// The snapshot has no source of that name.
    #[error("stack {stack}, snapshot {snapshot}: no source {source_name:?} (it has: {available})")]
    SourceNotFound {
        stack: String,
        snapshot: String,
        source_name: String,
        available: String,
    },
    /// The manifest is unreadable, belongs elsewhere, or fails the signature check.
    #[error("stack {stack}, snapshot {snapshot}: manifest refused: {reason}")]
    ManifestRefused {
        stack: String,
        snapshot: String,
        reason: String,
    },
    /// Stored data is truncated, corrupted, swapped or not decryptable.
    #[error("stack {stack}, snapshot {snapshot}, source {source_name}: {reason}")]
    DataRefused {
        stack: String,
        snapshot: String,
        source_name: String,
        reason: String,
    },
    /// The stored object is intact (its hash matches the manifest) but none of the given
    /// secret keys can decrypt it: the wrong key was given, the backup is not in question.
    #[error("stack {stack}, snapshot {snapshot}, source {source_name}: {reason}")]
    WrongKey {
        stack: String,
        snapshot: String,
        source_name: String,
        reason: String,
    },
    /// A restore into a command was asked for several sources (a command has one input).
    #[error(
        "stack {stack}, snapshot {snapshot}: a command takes exactly one source; pick one of \
         {available} with --source"
    )]
    OneSourceForCommand {
        stack: String,
        snapshot: String,
        available: String,
    },
    /// The restore target cannot be used; nothing was written. `reason`'s source, if any, is
    /// why the host failed (e.g. it could not be reached).
    #[error("restore target {}: {reason}", path.display())]
    Target {
        path: PathBuf,
        #[source]
        reason: HostError,
    },
    /// A retention policy that would keep nothing.
    #[error("retention policy keeps nothing: give at least one --keep-* option")]
    EmptyRetentionPolicy,
    /// Local I/O outside the data path.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// True when stored data or a manifest was refused as untrustworthy (corrupt, truncated,
    /// tampered, unsigned or forged); frontends give this its own exit status.
    pub fn is_integrity_failure(&self) -> bool {
        matches!(
            self,
            Error::ManifestRefused { .. } | Error::DataRefused { .. }
        )
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
