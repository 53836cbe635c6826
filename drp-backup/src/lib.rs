//! drp-backup: per-customer OpenPGP-encrypted backups, streamed into object storage.
//!
//! Data flow of one source: reader (directory → tar, file, or a command's stdout) → zstd →
//! OpenPGP (SEIPDv1, readable by GnuPG 2.2) → multipart upload. A snapshot's manifest is
//! written last; a snapshot without a manifest does not exist.
//!
//! Error rule: every public function returns [`Error`]; variants name what was wrong and where
//! (stack, snapshot, source, file).

pub mod crypto;
pub mod keys;
