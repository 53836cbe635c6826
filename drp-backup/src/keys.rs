//! OpenPGP keys: generation, listing, loading certificates and secret keys.
//!
//! Everything here speaks "v4" OpenPGP (RFC 4880 profile) so that GnuPG 2.2 can use the keys
//! and read the messages: generated certificates advertise SEIPD v1 only (see
//! `shared/SETUP.md`), and [`crate::crypto`] always writes SEIPD v1 messages.
//!
//! All loaded key types ([`Recipients`], [`SecretKeys`], [`Signer`], [`TrustedSigners`]) are
//! immutable, `Send + Sync`, cheap to clone (an `Arc` inside) and have a `Debug` that prints
//! fingerprints only, never secret material. Secret key material is decrypted once, when it is
//! loaded, so a wrong passphrase is reported immediately.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::cert::CertParser;
use openpgp::cert::prelude::*;
use openpgp::crypto::{Password, S2K};
use openpgp::packet::key::{PublicParts, SecretParts, UnspecifiedRole};
use openpgp::packet::{Key, UserID};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::types::Features;

/// A public key (no secret parts), with its role erased.
pub(crate) type PublicKey = Key<PublicParts, UnspecifiedRole>;
/// A key with secret parts (unencrypted once loaded), with its role erased.
pub(crate) type SecretKey = Key<SecretParts, UnspecifiedRole>;

/// The policy every key and message is checked against.
static POLICY: StandardPolicy<'static> = StandardPolicy::new();

/// The OpenPGP policy used throughout drp ([`StandardPolicy`], current time).
pub(crate) fn policy() -> &'static StandardPolicy<'static> {
    &POLICY
}

/// Errors of key handling and of the OpenPGP operations in [`crate::crypto`].
///
/// Every message names the file (or the message) and what was wrong. No message and no
/// `Debug` output ever contains a passphrase or secret key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A key name is not acceptable as a file name stem.
    #[error("invalid key name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// `generate_key` would overwrite an existing file.
    #[error("{}: already exists; refusing to overwrite it", .path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// Creating a new key failed.
    #[error("generating key {name:?} failed: {message}")]
    Generate {
        /// The key name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The file holds no OpenPGP certificate at all (e.g. it is empty).
    #[error("{}: no OpenPGP certificate found", .path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file is not (entirely) valid OpenPGP certificate data.
    #[error("{}: not a valid OpenPGP certificate file: {message}", .path.display())]
    InvalidCertificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A certificate is not valid under the policy (e.g. revoked, expired, weak algorithms).
    #[error("{}: certificate {fingerprint} is not valid: {message}", .path.display())]
    UnusableCertificate {
        /// The file.
        path: PathBuf,
        /// The certificate's fingerprint.
        fingerprint: String,
        /// Why it is not valid.
        message: String,
    },
    /// A recipient certificate has no key we may encrypt to.
    #[error(
        "{}: certificate {fingerprint} has no valid encryption-capable key",
        .path.display()
    )]
    NoEncryptionKey {
        /// The file.
        path: PathBuf,
        /// The certificate's fingerprint.
        fingerprint: String,
    },
    /// A certificate has no key that can make (or, for trusted signers, have made)
    /// signatures.
    #[error("{}: certificate {fingerprint} has no valid signing-capable key", .path.display())]
    NoSigningKey {
        /// The file.
        path: PathBuf,
        /// The certificate's fingerprint.
        fingerprint: String,
    },
    /// A file expected to hold a secret key holds only public keys.
    #[error("{}: contains no secret key", .path.display())]
    NoSecretKey {
        /// The file.
        path: PathBuf,
    },
    /// The file has secret keys, but none usable for the purpose (decryption or signing).
    #[error(
        "{}: contains no usable secret {purpose} key (certificates: {fingerprints})",
        .path.display()
    )]
    NoUsableSecretKey {
        /// The file.
        path: PathBuf,
        /// "decryption" or "signing".
        purpose: &'static str,
        /// The certificates in the file.
        fingerprints: String,
    },
    /// The secret key is encrypted and no passphrase was given.
    #[error(
        "{}: secret key is passphrase-protected; give a passphrase \
         (--passphrase-env VAR or --passphrase-file FILE)",
        .path.display()
    )]
    PassphraseRequired {
        /// The file.
        path: PathBuf,
    },
    /// The given passphrase does not unlock the secret key.
    #[error("{}: wrong passphrase for secret key {fingerprint}", .path.display())]
    WrongPassphrase {
        /// The file.
        path: PathBuf,
        /// The certificate's fingerprint.
        fingerprint: String,
    },
    /// A passphrase environment variable is not set, empty or not UTF-8.
    #[error("passphrase environment variable {var} is {problem}")]
    PassphraseEnv {
        /// The variable name.
        var: String,
        /// "not set", "empty" or "not valid UTF-8".
        problem: &'static str,
    },
    /// A passphrase file is empty or not UTF-8.
    #[error("{}: passphrase file is {problem}", .path.display())]
    PassphraseFile {
        /// The file.
        path: PathBuf,
        /// "empty" or "not valid UTF-8".
        problem: &'static str,
    },
    /// Encryption needs at least one recipient.
    #[error("no recipient certificates given")]
    NoRecipients,
    /// None of our secret keys can decrypt the message.
    #[error(
        "message is encrypted to {recipients}, but none of the given secret keys \
         ({available}) can decrypt it"
    )]
    NoMatchingKey {
        /// Key IDs the message is encrypted to.
        recipients: String,
        /// Fingerprints of the secret keys we have.
        available: String,
    },
    /// The input is not an encrypted OpenPGP message we can read.
    #[error("not a readable OpenPGP encrypted message: {message}")]
    MalformedMessage {
        /// What was wrong.
        message: String,
    },
    /// Creating the OpenPGP message (encryption or signature) failed.
    #[error("OpenPGP {operation} failed: {message}")]
    OpenPgp {
        /// "encryption", "signing", ...
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A detached signature is malformed, bad, or not made by a trusted signer.
    #[error("signature does not verify against any trusted signer ({trusted}): {detail}")]
    BadSignature {
        /// Fingerprints of the trusted signers.
        trusted: String,
        /// What was found instead.
        detail: String,
    },
    /// There is no signature at all.
    #[error("manifest is not signed")]
    NotSigned,
}

/// Shorthand for an I/O error with its path.
fn io_err(path: &Path, source: io::Error) -> KeyError {
    KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Formats a list of fingerprints (or key IDs) for messages.
pub(crate) fn join_list<I: IntoIterator<Item = String>>(items: I) -> String {
    let v: Vec<String> = items.into_iter().collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// Uppercase hex fingerprint without spaces.
fn fpr(cert: &Cert) -> String {
    cert.fingerprint().to_hex()
}

// ---------------------------------------------------------------------------------------------
// Passphrase

/// A passphrase for a secret key. Its `Debug` prints `Passphrase(***)`; the bytes are kept in
/// sequoia's protected memory ([`Password`]) and are never part of any error message.
#[derive(Clone)]
pub struct Passphrase(Password);

impl Passphrase {
    /// Reads the passphrase from environment variable `var`. An unset, empty or non-UTF-8
    /// variable is an error naming the variable.
    pub fn from_env(var: &str) -> Result<Self, KeyError> {
        let problem = match std::env::var(var) {
            Ok(v) if !v.is_empty() => return Ok(Self(Password::from(v))),
            Ok(_) => "empty",
            Err(std::env::VarError::NotPresent) => "not set",
            Err(std::env::VarError::NotUnicode(_)) => "not valid UTF-8",
        };
        Err(KeyError::PassphraseEnv {
            var: var.to_string(),
            problem,
        })
    }

    /// Reads the passphrase from the first line of `path`: one trailing newline (`\n` or
    /// `\r\n`) is stripped, everything else is kept. An empty passphrase is an error.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let mut bytes = fs::read(path).map_err(|e| io_err(path, e))?;
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        let s = String::from_utf8(bytes).map_err(|_| KeyError::PassphraseFile {
            path: path.to_path_buf(),
            problem: "not valid UTF-8",
        })?;
        if s.is_empty() {
            return Err(KeyError::PassphraseFile {
                path: path.to_path_buf(),
                problem: "empty",
            });
        }
        Ok(Self(Password::from(s)))
    }

    /// The passphrase as sequoia's [`Password`].
    pub(crate) fn password(&self) -> &Password {
        &self.0
    }
}

impl From<String> for Passphrase {
    fn from(s: String) -> Self {
        Self(Password::from(s))
    }
}

impl From<&str> for Passphrase {
    fn from(s: &str) -> Self {
        Self(Password::from(s))
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(***)")
    }
}

// ---------------------------------------------------------------------------------------------
// Generation

/// The files written by [`generate_key`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct GeneratedKey {
    /// The certificate's fingerprint (uppercase hex, no spaces).
    pub fingerprint: String,
    /// `DIR/NAME.pub.asc`: the armored public certificate (give it to backup hosts).
    pub public_path: PathBuf,
    /// `DIR/NAME.sec.asc`: the armored secret key (mode 0600; needed only to restore).
    pub secret_path: PathBuf,
}

/// Checks a key name: non-empty, only `[A-Za-z0-9._-]`, no leading dot.
fn validate_name(name: &str) -> Result<(), KeyError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.starts_with('.') {
        "it must not start with a dot"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "only letters, digits, '.', '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(KeyError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// Generates a new key pair named `name` and writes `DIR/NAME.pub.asc` (armored certificate)
/// and `DIR/NAME.sec.asc` (armored secret key, its secret material encrypted with
/// `passphrase` if given).
///
/// The key is a v4 key (primary for certification, a signing subkey and an encryption
/// subkey, Curve25519), user ID `drp key NAME`, without expiry, advertising SEIPD v1 only so
/// that GnuPG 2.2 can decrypt what is encrypted to it. `DIR` is created if missing. Existing
/// files are never overwritten; files are written to a temporary name and renamed into
/// place, so a half-written key is never visible. The secret file has mode 0600.
pub fn generate_key(
    name: &str,
    dir: &Path,
    passphrase: Option<&Passphrase>,
) -> Result<GeneratedKey, KeyError> {
    validate_name(name)?;
    let public_path = dir.join(format!("{name}.pub.asc"));
    let secret_path = dir.join(format!("{name}.sec.asc"));
    for p in [&public_path, &secret_path] {
        if fs::symlink_metadata(p).is_ok() {
            return Err(KeyError::AlreadyExists { path: p.clone() });
        }
    }
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;

    let gen_anyhow = |e: PgpError| KeyError::Generate {
        name: name.to_string(),
        message: format!("{e:#}"),
    };
    let builder = CertBuilder::general_purpose(Some(UserID::from(format!("drp key {name}"))))
        .set_profile(openpgp::Profile::RFC4880)
        .map_err(gen_anyhow)?
        .set_features(Features::empty().set_seipdv1())
        .map_err(gen_anyhow)?
        .set_validity_period(None)
        .set_password(passphrase.map(|p| p.password().clone()));
    let (cert, _revocation) = builder.generate().map_err(gen_anyhow)?;

    let public = cert.armored().to_vec().map_err(gen_anyhow)?;
    let secret = cert.as_tsk().armored().to_vec().map_err(gen_anyhow)?;

    write_new_file(&secret_path, &secret, 0o600)?;
    if let Err(e) = write_new_file(&public_path, &public, 0o644) {
        // Do not leave a secret key without its certificate behind.
        let _ = fs::remove_file(&secret_path);
        return Err(e);
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(GeneratedKey {
        fingerprint: fpr(&cert),
        public_path,
        secret_path,
    })
}

/// sequoia's error type (`anyhow::Error`, re-exported by sequoia).
pub(crate) type PgpError = openpgp::anyhow::Error;

/// Writes `data` to a new file at `path` (temp file + fsync + no-clobber rename).
fn write_new_file(path: &Path, data: &[u8], mode: u32) -> Result<(), KeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| io_err(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| io_err(tmp.path(), e))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.write_all(data).map_err(|e| io_err(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| io_err(tmp.path(), e))?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == io::ErrorKind::AlreadyExists {
            KeyError::AlreadyExists {
                path: path.to_path_buf(),
            }
        } else {
            io_err(path, e.error)
        }
    })?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading certificates

/// Reads every certificate (public or secret) in `path`: armored or binary, one or several
/// (as `gpg --export [--armor]` writes them). Zero certificates is an error.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<Cert>, KeyError> {
    let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
    let invalid = |e: PgpError| KeyError::InvalidCertificate {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    };
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(KeyError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    let mut certs = Vec::new();
    for cert in CertParser::from_bytes(&bytes).map_err(invalid)? {
        certs.push(cert.map_err(invalid)?);
    }
    if certs.is_empty() {
        return Err(KeyError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Adds `cert` to `certs`, merging it with an earlier copy of the same certificate.
fn push_merged(certs: &mut Vec<Cert>, cert: Cert) {
    if let Some(existing) = certs
        .iter_mut()
        .find(|c| c.fingerprint() == cert.fingerprint())
    {
        // Same fingerprint: merging cannot fail; keep the first copy if it does anyway.
        if let Ok(merged) = existing.clone().merge_public(cert) {
            *existing = merged;
        }
    } else {
        certs.push(cert);
    }
}

// ---------------------------------------------------------------------------------------------
// Listing

/// One certificate found by [`list_keys`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    /// The file name without `.pub.asc` / `.sec.asc` / `.asc` / `.pgp` / `.gpg`.
    pub name: String,
    /// The certificate's fingerprint (uppercase hex, no spaces).
    pub fingerprint: String,
    /// When the primary key was created.
    pub created: jiff::Timestamp,
    /// When the certificate expires (`None`: never, or unknown because the certificate is
    /// not valid under the policy).
    pub expires: Option<jiff::Timestamp>,
    /// Whether secret key material for it is in DIR.
    pub has_secret: bool,
    /// The user IDs (lossily decoded as UTF-8).
    pub user_ids: Vec<String>,
    /// The file it was read from; for a pair `NAME.pub.asc` + `NAME.sec.asc`, the public one.
    pub path: PathBuf,
}

/// Strips the key file suffix from a file name; `None` if it is not a key file name.
fn key_file_stem(file_name: &str) -> Option<&str> {
    for suffix in [".sec.asc", ".pub.asc", ".asc", ".pgp", ".gpg"] {
        if let Some(stem) = file_name.strip_suffix(suffix)
            && !stem.is_empty()
        {
            return Some(stem);
        }
    }
    None
}

fn to_timestamp(t: SystemTime) -> jiff::Timestamp {
    jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Lists the certificates in `dir`: every `*.asc` / `*.pgp` / `*.gpg` file (hidden files are
/// skipped). A certificate present both as `NAME.pub.asc` and `NAME.sec.asc` is listed once,
/// with `has_secret = true`. A file with several certificates gives one entry per
/// certificate. Sorted by name, then fingerprint. A key file that does not parse is an error
/// naming the file.
pub fn list_keys(dir: &Path) -> Result<Vec<KeyInfo>, KeyError> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with('.') {
            continue;
        }
        let Some(stem) = key_file_stem(&file_name) else {
            continue;
        };
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        files.push((stem.to_string(), path));
    }
    // Public files first, so that `path` points to the public file of a pair.
    files.sort_by_key(|(name, path)| {
        let secret = path.to_string_lossy().ends_with(".sec.asc");
        (name.clone(), secret, path.clone())
    });

    let mut out: Vec<KeyInfo> = Vec::new();
    for (name, path) in files {
        for cert in read_certs(&path)? {
            let fingerprint = fpr(&cert);
            let has_secret = cert.is_tsk();
            if let Some(existing) = out
                .iter_mut()
                .find(|k| k.name == name && k.fingerprint == fingerprint)
            {
                existing.has_secret |= has_secret;
                continue;
            }
            let expires = cert
                .with_policy(policy(), None)
                .ok()
                .and_then(|vc| vc.primary_key().key_expiration_time())
                .map(to_timestamp);
            out.push(KeyInfo {
                name: name.clone(),
                fingerprint,
                created: to_timestamp(cert.primary_key().key().creation_time()),
                expires,
                has_secret,
                user_ids: cert
                    .userids()
                    .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
                    .collect(),
                path: path.clone(),
            });
        }
    }
    out.sort_by(|a, b| (&a.name, &a.fingerprint).cmp(&(&b.name, &b.fingerprint)));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Recipients

/// One recipient certificate and the keys messages are encrypted to.
#[derive(Clone)]
pub(crate) struct RecipientCert {
    pub(crate) cert: Cert,
    /// Valid, alive, non-revoked storage- or transport-encryption keys.
    pub(crate) keys: Vec<PublicKey>,
}

/// Certificates to encrypt to. Every valid encryption-capable (storage or transport)
/// subkey of every certificate gets a copy of the session key.
#[derive(Clone)]
pub struct Recipients {
    inner: Arc<Vec<RecipientCert>>,
}

impl Recipients {
    /// Loads the recipient certificates in `paths`. A file may hold several certificates,
    /// armored or binary. A secret key file is accepted, but only its public part is kept.
    /// A certificate without a valid encryption-capable key (under the standard policy, now:
    /// not expired, not revoked) is an error naming the file and fingerprint. No files at all
    /// is an error.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self, KeyError> {
        let mut certs: Vec<(PathBuf, Cert)> = Vec::new();
        for path in paths {
            for cert in read_certs(path)? {
                let cert = cert.strip_secret_key_material();
                if let Some((_, existing)) = certs
                    .iter_mut()
                    .find(|(_, c)| c.fingerprint() == cert.fingerprint())
                {
                    *existing = existing.clone().merge_public(cert).map_err(|e| {
                        KeyError::InvalidCertificate {
                            path: path.clone(),
                            message: format!("{e:#}"),
                        }
                    })?;
                } else {
                    certs.push((path.clone(), cert));
                }
            }
        }
        if certs.is_empty() {
            return Err(KeyError::NoRecipients);
        }
        let mut out = Vec::with_capacity(certs.len());
        for (path, cert) in certs {
            let vc =
                cert.with_policy(policy(), None)
                    .map_err(|e| KeyError::UnusableCertificate {
                        path: path.clone(),
                        fingerprint: fpr(&cert),
                        message: format!("{e:#}"),
                    })?;
            let keys: Vec<PublicKey> = vc
                .keys()
                .supported()
                .alive()
                .revoked(false)
                .for_storage_encryption()
                .for_transport_encryption()
                .map(|ka| ka.key().clone().role_into_unspecified())
                .collect();
            if keys.is_empty() {
                return Err(KeyError::NoEncryptionKey {
                    path,
                    fingerprint: fpr(&cert),
                });
            }
            out.push(RecipientCert { cert, keys });
        }
        Ok(Self {
            inner: Arc::new(out),
        })
    }

    /// The recipient certificates' fingerprints (uppercase hex), in load order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.inner.iter().map(|r| fpr(&r.cert)).collect()
    }

    /// The recipients, for [`crate::crypto::encrypt`].
    pub(crate) fn entries(&self) -> &[RecipientCert] {
        &self.inner
    }

    /// Whether every certificate advertises SEIPD v2 support (informational; drp always
    /// writes SEIPD v1).
    #[cfg(test)]
    pub(crate) fn all_support_seipdv2(&self) -> bool {
        use openpgp::cert::Preferences;
        self.inner.iter().all(|r| {
            r.cert
                .with_policy(policy(), None)
                .ok()
                .and_then(|vc| vc.features())
                .is_some_and(|f| f.supports_seipdv2())
        })
    }
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Recipients")
            .field(&self.fingerprints())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Secret keys

/// Whether a secret key is a stub without usable secret material (GnuPG's "gnu-dummy" for
/// offline primary keys, or "divert-to-card").
fn is_stub(key: &SecretKey) -> bool {
    match key.optional_secret() {
        Some(openpgp::packet::key::SecretKeyMaterial::Encrypted(e)) => {
            matches!(e.s2k(), S2K::Private { .. } | S2K::Unknown { .. })
        }
        _ => false,
    }
}

/// Makes `key` usable: decrypts its secret material with `passphrase` if it is encrypted.
fn unlock(
    path: &Path,
    cert: &Cert,
    key: SecretKey,
    passphrase: Option<&Passphrase>,
) -> Result<SecretKey, KeyError> {
    if key.has_unencrypted_secret() {
        return Ok(key);
    }
    let Some(passphrase) = passphrase else {
        return Err(KeyError::PassphraseRequired {
            path: path.to_path_buf(),
        });
    };
    key.decrypt_secret(passphrase.password())
        .map_err(|_| KeyError::WrongPassphrase {
            path: path.to_path_buf(),
            fingerprint: fpr(cert),
        })
}

/// Secret keys of `cert` that may be tried for decryption: keys flagged for storage or
/// transport encryption with a valid binding signature (expired and revoked keys included:
/// they must still open old backups). If the certificate as a whole is not valid under the
/// policy, every secret key whose algorithm can encrypt.
fn decryption_candidates(cert: &Cert) -> Vec<SecretKey> {
    let keys: Vec<SecretKey> = match cert.with_policy(policy(), None) {
        Ok(vc) => vc
            .keys()
            .secret()
            .for_storage_encryption()
            .for_transport_encryption()
            .map(|ka| ka.key().clone().role_into_unspecified())
            .collect(),
        Err(_) => cert
            .keys()
            .secret()
            .filter(|ka| ka.key().pk_algo().for_encryption())
            .map(|ka| ka.key().clone().role_into_unspecified())
            .collect(),
    };
    keys.into_iter().filter(|k| !is_stub(k)).collect()
}

/// The decrypted secret keys of one certificate.
#[derive(Clone)]
pub(crate) struct SecretCert {
    /// The public certificate.
    pub(crate) cert: Cert,
    /// Unencrypted encryption-capable secret keys.
    pub(crate) keys: Vec<SecretKey>,
}

/// Secret keys for decryption (restores), with their secret material already unlocked.
#[derive(Clone)]
pub struct SecretKeys {
    inner: Arc<Vec<SecretCert>>,
}

impl SecretKeys {
    /// Loads the secret keys in `path`: a `NAME.sec.asc` from [`generate_key`] or the output
    /// of `gpg --export-secret-keys [--armor]` (several keys in one file are fine).
    ///
    /// Passphrase-protected secret keys are unlocked now with `passphrase`: a wrong
    /// passphrase is an error here, and so is a missing one. A file with only public keys is
    /// an error ("contains no secret key"); so is a file whose secret keys cannot decrypt
    /// (e.g. only a signing key).
    pub fn from_file(path: &Path, passphrase: Option<&Passphrase>) -> Result<Self, KeyError> {
        let certs = read_certs(path)?;
        if !certs.iter().any(|c| c.is_tsk()) {
            return Err(KeyError::NoSecretKey {
                path: path.to_path_buf(),
            });
        }
        let mut out = Vec::new();
        for cert in certs.iter().filter(|c| c.is_tsk()) {
            let mut keys = Vec::new();
            for key in decryption_candidates(cert) {
                keys.push(unlock(path, cert, key, passphrase)?);
            }
            if !keys.is_empty() {
                out.push(SecretCert {
                    cert: cert.clone().strip_secret_key_material(),
                    keys,
                });
            }
        }
        if out.is_empty() {
            return Err(KeyError::NoUsableSecretKey {
                path: path.to_path_buf(),
                purpose: "decryption",
                fingerprints: join_list(certs.iter().map(fpr)),
            });
        }
        Ok(Self {
            inner: Arc::new(out),
        })
    }

    /// Combines several sets of secret keys into one; decryption tries all of them.
    pub fn combine<I: IntoIterator<Item = SecretKeys>>(sets: I) -> Self {
        let mut certs: Vec<SecretCert> = Vec::new();
        for set in sets {
            for sc in set.inner.iter() {
                match certs
                    .iter_mut()
                    .find(|c| c.cert.fingerprint() == sc.cert.fingerprint())
                {
                    Some(existing) => {
                        for k in &sc.keys {
                            if !existing
                                .keys
                                .iter()
                                .any(|e| e.fingerprint() == k.fingerprint())
                            {
                                existing.keys.push(k.clone());
                            }
                        }
                    }
                    None => certs.push(sc.clone()),
                }
            }
        }
        Self {
            inner: Arc::new(certs),
        }
    }

    /// The fingerprints (uppercase hex) of the certificates whose secret keys are loaded.
    pub fn fingerprints(&self) -> Vec<String> {
        self.inner.iter().map(|c| fpr(&c.cert)).collect()
    }

    /// The loaded certificates and keys, for [`crate::crypto::decrypt`].
    pub(crate) fn entries(&self) -> &[SecretCert] {
        &self.inner
    }
}

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SecretKeys")
            .field(&self.fingerprints())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Signing

struct SignerInner {
    cert: Cert,
    key: SecretKey,
}

/// A secret key that signs manifests (the ops signing key).
#[derive(Clone)]
pub struct Signer {
    inner: Arc<SignerInner>,
}

impl Signer {
    /// Loads the signing key from `path` (same formats as [`SecretKeys::from_file`]): the
    /// first certificate with a secret, valid (alive, not revoked) signing-capable key. Only
    /// that key is unlocked with `passphrase`.
    pub fn from_file(path: &Path, passphrase: Option<&Passphrase>) -> Result<Self, KeyError> {
        let certs = read_certs(path)?;
        if !certs.iter().any(|c| c.is_tsk()) {
            return Err(KeyError::NoSecretKey {
                path: path.to_path_buf(),
            });
        }
        for cert in certs.iter().filter(|c| c.is_tsk()) {
            let Ok(vc) = cert.with_policy(policy(), None) else {
                continue;
            };
            let key = vc
                .keys()
                .secret()
                .supported()
                .alive()
                .revoked(false)
                .for_signing()
                .map(|ka| ka.key().clone().role_into_unspecified())
                .find(|k| !is_stub(k));
            if let Some(key) = key {
                let key = unlock(path, cert, key, passphrase)?;
                return Ok(Self {
                    inner: Arc::new(SignerInner {
                        cert: cert.clone().strip_secret_key_material(),
                        key,
                    }),
                });
            }
        }
        Err(KeyError::NoUsableSecretKey {
            path: path.to_path_buf(),
            purpose: "signing",
            fingerprints: join_list(certs.iter().map(fpr)),
        })
    }

    /// The signer's certificate fingerprint (uppercase hex; the primary key's, not the
    /// signing subkey's), as returned by [`crate::crypto::verify_detached`].
    pub fn fingerprint(&self) -> String {
        fpr(&self.inner.cert)
    }

    /// The unlocked signing key.
    pub(crate) fn key(&self) -> &SecretKey {
        &self.inner.key
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("fingerprint", &self.fingerprint())
            .field("key", &self.inner.key.fingerprint().to_hex())
            .finish()
    }
}

/// Certificates whose signing keys are trusted to sign manifests.
#[derive(Clone)]
pub struct TrustedSigners {
    inner: Arc<Vec<Cert>>,
}

impl TrustedSigners {
    /// Loads trusted signer certificates (public or secret key files; only the public part is
    /// kept). A certificate without any signing-capable key is an error naming the file and
    /// fingerprint. Expired signing keys are kept: signatures made while they were alive still
    /// verify.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self, KeyError> {
        let mut certs: Vec<Cert> = Vec::new();
        for path in paths {
            for cert in read_certs(path)? {
                let cert = cert.strip_secret_key_material();
                let vc = cert.with_policy(policy(), None).map_err(|e| {
                    KeyError::UnusableCertificate {
                        path: path.clone(),
                        fingerprint: fpr(&cert),
                        message: format!("{e:#}"),
                    }
                })?;
                if vc.keys().supported().for_signing().next().is_none() {
                    return Err(KeyError::NoSigningKey {
                        path: path.clone(),
                        fingerprint: fpr(&cert),
                    });
                }
                push_merged(&mut certs, cert);
            }
        }
        Ok(Self {
            inner: Arc::new(certs),
        })
    }

    /// The trusted certificates' fingerprints (uppercase hex).
    pub fn fingerprints(&self) -> Vec<String> {
        self.inner.iter().map(fpr).collect()
    }

    /// The trusted certificates.
    pub(crate) fn certs(&self) -> &[Cert] {
        &self.inner
    }
}

impl fmt::Debug for TrustedSigners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TrustedSigners")
            .field(&self.fingerprints())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::serialize::Serialize;

    fn write_cert(path: &Path, cert: &Cert, secret: bool) {
        let bytes = if secret {
            cert.as_tsk().armored().to_vec().unwrap()
        } else {
            cert.armored().to_vec().unwrap()
        };
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn name_validation() {
        for bad in ["", ".hidden", "a/b", "a b", "ä", "x\n"] {
            assert!(
                matches!(validate_name(bad), Err(KeyError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
        for good in ["acme", "acme-prod_2.key", "A9"] {
            validate_name(good).unwrap();
        }
    }

    #[test]
    fn generate_writes_files_and_refuses_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("new/keys");
        let g = generate_key("acme", &dir, None).unwrap();
        assert_eq!(g.public_path, dir.join("acme.pub.asc"));
        assert_eq!(g.secret_path, dir.join("acme.sec.asc"));
        assert_eq!(g.fingerprint.len(), 40);
        let public = fs::read_to_string(&g.public_path).unwrap();
        assert!(public.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
        let secret = fs::read_to_string(&g.secret_path).unwrap();
        assert!(secret.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&g.secret_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary files left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);

        // The certificate: v4, no expiry, SEIPD v1 only, sign + encrypt subkeys.
        let cert = Cert::from_file(&g.public_path).unwrap();
        assert_eq!(cert.primary_key().key().version(), 4);
        let vc = cert.with_policy(policy(), None).unwrap();
        assert_eq!(vc.primary_key().key_expiration_time(), None);
        {
            use openpgp::cert::Preferences;
            let f = vc.features().unwrap();
            assert!(f.supports_seipdv1() && !f.supports_seipdv2());
        }
        assert_eq!(vc.keys().for_signing().count(), 1);
        assert_eq!(vc.keys().for_storage_encryption().count(), 1);
        assert_eq!(
            vc.userids().next().unwrap().userid().value(),
            b"drp key acme"
        );

        let err = generate_key("acme", &dir, None).unwrap_err();
        assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains("acme.pub.asc"), "{err}");
        // The existing key is untouched.
        assert_eq!(fs::read_to_string(&g.public_path).unwrap(), public);

        // Only the secret file exists: refused too.
        let lone = tmp.path().join("lone");
        fs::create_dir(&lone).unwrap();
        fs::write(lone.join("x.sec.asc"), "keep me").unwrap();
        let err = generate_key("x", &lone, None).unwrap_err();
        assert!(err.to_string().contains("x.sec.asc"), "{err}");
        assert_eq!(
            fs::read_to_string(lone.join("x.sec.asc")).unwrap(),
            "keep me"
        );
        assert!(!lone.join("x.pub.asc").exists());

        let err = generate_key("../evil", &dir, None).unwrap_err();
        assert!(matches!(err, KeyError::InvalidName { .. }), "{err}");
    }

    #[test]
    fn passphrase_protection() {
        let tmp = tempfile::tempdir().unwrap();
        let pass = Passphrase::from("correct horse");
        let g = generate_key("p", tmp.path(), Some(&pass)).unwrap();

        // The secret material in the file is encrypted.
        let cert = Cert::from_file(&g.secret_path).unwrap();
        assert!(
            cert.keys()
                .secret()
                .all(|ka| !ka.key().has_unencrypted_secret())
        );

        SecretKeys::from_file(&g.secret_path, Some(&pass)).unwrap();
        Signer::from_file(&g.secret_path, Some(&pass)).unwrap();

        let err = SecretKeys::from_file(&g.secret_path, None).unwrap_err();
        assert!(matches!(err, KeyError::PassphraseRequired { .. }), "{err}");
        assert!(err.to_string().contains("--passphrase-env"), "{err}");
        assert!(err.to_string().contains("p.sec.asc"), "{err}");

        let wrong = Passphrase::from("wrong horse");
        let err = SecretKeys::from_file(&g.secret_path, Some(&wrong)).unwrap_err();
        assert!(matches!(err, KeyError::WrongPassphrase { .. }), "{err}");
        assert!(err.to_string().contains(&g.fingerprint), "{err}");
        assert!(!format!("{err} {err:?}").contains("wrong horse"));
        let err = Signer::from_file(&g.secret_path, Some(&wrong)).unwrap_err();
        assert!(matches!(err, KeyError::WrongPassphrase { .. }), "{err}");

        // A passphrase for an unprotected key is ignored.
        let g2 = generate_key("u", tmp.path(), None).unwrap();
        SecretKeys::from_file(&g2.secret_path, Some(&pass)).unwrap();
    }

    #[test]
    fn passphrase_sources_and_debug() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("pass");
        fs::write(&f, "s3cret\n").unwrap();
        let p = Passphrase::from_file(&f).unwrap();
        p.password().map(|b| assert_eq!(&b[..], b"s3cret"));
        fs::write(&f, "s3cret \r\n").unwrap();
        Passphrase::from_file(&f)
            .unwrap()
            .password()
            .map(|b| assert_eq!(&b[..], b"s3cret "));
        fs::write(&f, "\n").unwrap();
        let err = Passphrase::from_file(&f).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = Passphrase::from_file(&tmp.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");

        let err = Passphrase::from_env("DRP_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
        assert!(
            err.to_string()
                .contains("DRP_TEST_SURELY_UNSET_VARIABLE is not set"),
            "{err}"
        );
        // PATH is always set and non-empty.
        Passphrase::from_env("PATH").unwrap();

        assert_eq!(format!("{p:?}"), "Passphrase(***)");
    }

    #[test]
    fn secret_keys_loading_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let g = generate_key("k", tmp.path(), None).unwrap();

        let err = SecretKeys::from_file(&g.public_path, None).unwrap_err();
        assert!(matches!(err, KeyError::NoSecretKey { .. }), "{err}");
        assert!(
            err.to_string()
                .ends_with("k.pub.asc: contains no secret key"),
            "{err}"
        );
        let err = Signer::from_file(&g.public_path, None).unwrap_err();
        assert!(matches!(err, KeyError::NoSecretKey { .. }), "{err}");

        let empty = tmp.path().join("empty.asc");
        fs::write(&empty, "").unwrap();
        let err = SecretKeys::from_file(&empty, None).unwrap_err();
        assert!(matches!(err, KeyError::NoCertificate { .. }), "{err}");

        let garbage = tmp.path().join("garbage.asc");
        fs::write(&garbage, "this is not a key\n").unwrap();
        let err = Recipients::from_files(std::slice::from_ref(&garbage)).unwrap_err();
        assert!(err.to_string().contains("garbage.asc"), "{err}");

        let err = Recipients::from_files(&[tmp.path().join("nope.asc")]).unwrap_err();
        assert!(matches!(err, KeyError::Io { .. }), "{err}");
        assert!(err.to_string().contains("nope.asc"), "{err}");

        // Debug output of loaded keys shows fingerprints, never key material.
        let sk = SecretKeys::from_file(&g.secret_path, None).unwrap();
        let dbg = format!("{sk:?}");
        assert_eq!(dbg, format!("SecretKeys([\"{}\"])", g.fingerprint));
        let signer = Signer::from_file(&g.secret_path, None).unwrap();
        assert!(format!("{signer:?}").contains(&g.fingerprint));
        assert_eq!(signer.fingerprint(), g.fingerprint);
    }

    #[test]
    fn recipients_loading() {
        let tmp = tempfile::tempdir().unwrap();
        let a = generate_key("a", tmp.path(), None).unwrap();
        let b = generate_key("b", tmp.path(), None).unwrap();

        // A keyring file with two certificates, plus a secret key file (public part used),
        // plus a duplicate.
        let ring = tmp.path().join("ring.pgp");
        let mut bytes = Vec::new();
        for p in [&a.public_path, &b.public_path] {
            Cert::from_file(p).unwrap().serialize(&mut bytes).unwrap();
        }
        fs::write(&ring, bytes).unwrap();
        let r = Recipients::from_files(&[ring.clone(), a.secret_path.clone()]).unwrap();
        assert_eq!(
            r.fingerprints(),
            vec![a.fingerprint.clone(), b.fingerprint.clone()]
        );
        assert!(r.entries().iter().all(|e| !e.cert.is_tsk()));
        assert!(!r.all_support_seipdv2());

        // A certificate without encryption subkey.
        let (cert, _) = CertBuilder::new()
            .add_userid("sign only")
            .add_signing_subkey()
            .generate()
            .unwrap();
        let so = tmp.path().join("signonly.asc");
        write_cert(&so, &cert, false);
        let err = Recipients::from_files(std::slice::from_ref(&so)).unwrap_err();
        assert!(matches!(err, KeyError::NoEncryptionKey { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: certificate {} has no valid encryption-capable key",
                so.display(),
                cert.fingerprint().to_hex()
            )
        );
        // ... is fine as a trusted signer, but cannot decrypt.
        TrustedSigners::from_files(std::slice::from_ref(&so)).unwrap();
        let sso = tmp.path().join("signonly.sec.asc");
        write_cert(&sso, &cert, true);
        let err = SecretKeys::from_file(&sso, None).unwrap_err();
        assert!(matches!(err, KeyError::NoUsableSecretKey { .. }), "{err}");

        // An expired certificate cannot be encrypted to.
        let t0 = SystemTime::now() - std::time::Duration::from_secs(10 * 86400);
        let (cert, _) = CertBuilder::general_purpose(Some("old"))
            .set_creation_time(t0)
            .set_validity_period(std::time::Duration::from_secs(86400))
            .generate()
            .unwrap();
        let old = tmp.path().join("old.asc");
        write_cert(&old, &cert, false);
        let err = Recipients::from_files(std::slice::from_ref(&old)).unwrap_err();
        assert!(
            err.to_string().contains(&cert.fingerprint().to_hex()),
            "{err}"
        );

        let err = Recipients::from_files(&[]).unwrap_err();
        assert!(matches!(err, KeyError::NoRecipients), "{err}");
    }

    #[test]
    fn list_keys_merges_pairs_and_reports_bad_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let b = generate_key("bravo", dir, None).unwrap();
        let a = generate_key("alpha", dir, Some(&Passphrase::from("x"))).unwrap();
        // A public-only certificate under another name, in binary form.
        let c = generate_key("charlie", &dir.join("elsewhere"), None).unwrap();
        let mut bin = Vec::new();
        Cert::from_file(&c.public_path)
            .unwrap()
            .serialize(&mut bin)
            .unwrap();
        fs::write(dir.join("charlie.gpg"), bin).unwrap();
        fs::write(dir.join("notes.txt"), "ignored").unwrap();

        let keys = list_keys(dir).unwrap();
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["alpha", "bravo", "charlie"]);
        assert_eq!(keys[0].fingerprint, a.fingerprint);
        assert!(keys[0].has_secret);
        assert_eq!(keys[0].path, a.public_path);
        assert_eq!(keys[1].fingerprint, b.fingerprint);
        assert!(keys[1].has_secret);
        assert_eq!(keys[2].fingerprint, c.fingerprint);
        assert!(!keys[2].has_secret);
        assert_eq!(keys[2].user_ids, vec!["drp key charlie".to_string()]);
        assert_eq!(keys[2].expires, None);
        let age = jiff::Timestamp::now().as_second() - keys[2].created.as_second();
        assert!((0..600).contains(&age), "{age}");
        // Serializes (for `--json` output).
        let json = serde_json::to_string(&keys).unwrap();
        assert!(json.contains("\"has_secret\":true"), "{json}");

        fs::write(
            dir.join("broken.asc"),
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n",
        )
        .unwrap();
        let err = list_keys(dir).unwrap_err();
        assert!(err.to_string().contains("broken.asc"), "{err}");

        let err = list_keys(&dir.join("missing")).unwrap_err();
        assert!(matches!(err, KeyError::Io { .. }), "{err}");
    }

    #[test]
    fn key_types_are_send_sync_clone_debug() {
        fn check<T: Send + Sync + Clone + fmt::Debug + 'static>() {}
        check::<Passphrase>();
        check::<Recipients>();
        check::<SecretKeys>();
        check::<Signer>();
        check::<TrustedSigners>();
        check::<KeyInfo>();
        check::<GeneratedKey>();
        fn error<T: std::error::Error + Send + Sync + 'static>() {}
        error::<KeyError>();
    }
}
