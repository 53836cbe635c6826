//! drp-backup: per-customer OpenPGP-encrypted backups, streamed into object storage.
//!
//! Data flow of one source: reader (directory → tar, file, or a command's stdout) → zstd →
//! OpenPGP (SEIPDv1, readable by GnuPG 2.2) → multipart upload, each stage on its own thread
//! with bounded pipes between them. A snapshot's manifest is written last; a snapshot without
//! a manifest does not exist. Restores go the other way into a staging directory, and are
//! moved into place only when every byte was checked.
//!
//! Error rule: every public function returns [`Error`]; variants name what was wrong and where
//! (stack, snapshot, source, file, store URL), and never carry secrets.

pub mod crypto;
mod error;
pub mod host;
pub mod keys;
pub mod manifest;
mod pipe;
pub mod repo;
pub mod retention;
pub mod source;
pub mod store;

pub use error::{Error, Result};
pub use host::{Host, HostError, LocalHost, Staging, UnsafeEntry};
pub use keys::{KeyError, Passphrase, Recipients, SecretKeys, Signer, TrustedSigners};
pub use manifest::{Manifest, SourceKind, SourceRecord};
pub use repo::{
    CreateOptions, PruneReport, Repository, RestoreDestination, RestoreOptions, RestoreReport,
    RestoredSource, SnapshotEntry, SnapshotSelector, VerifiedSnapshot,
};
pub use retention::{RetentionDecision, RetentionPolicy};
pub use source::{SourceOrigin, SourceSpec};
pub use store::{
    BackupStore, BackupStoreExt, IncompleteUpload, StoreError, open_store, open_store_with,
};
