//! Streaming OpenPGP encryption/decryption and detached signatures.
//!
//! Encrypted objects are standard binary OpenPGP messages that GnuPG 2.2 reads:
//! one PKESK v3 per recipient encryption key, then a SEIPD v1 packet (AES-256, with MDC)
//! holding one binary literal data packet, without OpenPGP compression (the payload is
//! already zstd). `gpg --decrypt` therefore prints exactly the plaintext bytes.
//!
//! SEIPD v1 is chosen unconditionally, whatever the recipients advertise: drp writes the PKESK
//! packets itself and hands sequoia's `Encryptor` only the session key, so sequoia cannot pick
//! SEIPD v2 (which it would for certificates that advertise it, and which GnuPG 2.2 cannot
//! read). This also lets [`EncryptingWriter`] own everything it needs (`'static`, `Send`).

use std::fmt;
use std::io::{self, Read, Write};

use sequoia_openpgp as openpgp;

use openpgp::KeyHandle;
use openpgp::armor;
use openpgp::cert::Cert;
use openpgp::crypto::SessionKey;
use openpgp::packet::pkesk::PKESK3;
use openpgp::packet::{PKESK, Packet, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, DetachedVerifierBuilder, MessageLayer, MessageStructure,
    VerificationHelper,
};
use openpgp::serialize::Serialize;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message};
use openpgp::types::SymmetricAlgorithm;

use crate::keys::{
    KeyError, PgpError, Recipients, SecretKeys, Signer, TrustedSigners, join_list, policy,
};

/// The symmetric cipher of every message drp writes (supported by GnuPG since forever).
const SYMMETRIC_ALGO: SymmetricAlgorithm = SymmetricAlgorithm::AES256;

/// How much decrypted data [`DecryptingReader`] holds back (sequoia's default is 25 MiB).
/// Memory use of one reader is about twice this.
pub const DECRYPT_BUFFER_SIZE: usize = 256 * 1024;

/// The error text of a [`DecryptingReader`] read whose data is not intact.
const CORRUPT: &str = "encrypted data is corrupt or truncated";

fn pgp_err(operation: &'static str) -> impl Fn(PgpError) -> KeyError {
    move |e| KeyError::OpenPgp {
        operation,
        message: format!("{e:#}"),
    }
}

fn pgp_io_err(e: PgpError) -> io::Error {
    match e.downcast::<io::Error>() {
        Ok(e) => e,
        Err(e) => io::Error::other(format!("OpenPGP encryption failed: {e:#}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Encryption

/// A streaming encryptor: everything written to it is encrypted and written to the sink.
///
/// Create it with [`encrypt`], write the plaintext, then call [`EncryptingWriter::finish`];
/// dropping it without `finish` leaves an incomplete (undecryptable) message in the sink.
/// Memory use is bounded (a few buffers of some KiB), whatever the size of the data.
pub struct EncryptingWriter {
    /// The writer stack: literal data → SEIPD v1 encryptor → sink. `None` once finished.
    message: Option<Message<'static>>,
    /// Total plaintext bytes written (for `Debug`).
    written: u64,
}

impl fmt::Debug for EncryptingWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptingWriter")
            .field("written", &self.written)
            .field("finished", &self.message.is_none())
            .finish()
    }
}

/// Starts a binary OpenPGP message encrypted to every valid encryption key of every
/// recipient, written to `sink` as data comes in. See the module documentation for the
/// exact format.
pub fn encrypt<W: Write + Send + Sync + 'static>(
    recipients: &Recipients,
    sink: W,
) -> Result<EncryptingWriter, KeyError> {
    if recipients.entries().is_empty() {
        return Err(KeyError::NoRecipients);
    }
    let err = pgp_err("encryption");
    let sink: Box<dyn Write + Send + Sync> = Box::new(sink);
    let mut message = Message::new(sink);

    let session_key = SessionKey::new(SYMMETRIC_ALGO.key_size().map_err(&err)?).map_err(&err)?;
    for entry in recipients.entries() {
        for key in &entry.keys {
            let mut pkesk =
                PKESK3::for_recipient(SYMMETRIC_ALGO, &session_key, key).map_err(&err)?;
            pkesk.set_recipient(Some(key.keyid()));
            Packet::from(PKESK::from(pkesk))
                .serialize(&mut message)
                .map_err(&err)?;
        }
    }
    // No recipients here: with only a session key, sequoia's Encryptor writes SEIPD v1.
    let message = Encryptor::with_session_key(message, SYMMETRIC_ALGO, session_key)
        .map_err(&err)?
        .build()
        .map_err(&err)?;
    let message = LiteralWriter::new(message).build().map_err(&err)?;
    Ok(EncryptingWriter {
        message: Some(message),
        written: 0,
    })
}

impl EncryptingWriter {
    /// Writes the end of the message (MDC, final packet lengths) and flushes the sink.
    pub fn finish(mut self) -> io::Result<()> {
        let message = self
            .message
            .take()
            .ok_or_else(|| io::Error::other("EncryptingWriter already finished"))?;
        // The stack is LiteralWriter → Encryptor → sink. Popping a layer finalizes it; the
        // last pop drops the sink without flushing it, so flush before that.
        let mut message = message
            .finalize_one()
            .map_err(pgp_io_err)?
            .ok_or_else(|| io::Error::other("OpenPGP writer stack too short"))?;
        message = message
            .finalize_one()
            .map_err(pgp_io_err)?
            .ok_or_else(|| io::Error::other("OpenPGP writer stack too short"))?;
        message.flush()?;
        message.finalize().map_err(pgp_io_err)
    }
}

impl Write for EncryptingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let message = self
            .message
            .as_mut()
            .ok_or_else(|| io::Error::other("EncryptingWriter already finished"))?;
        let n = message.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.message.as_mut() {
            Some(m) => m.flush(),
            None => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decryption

/// Finds and uses the session key; rejects messages that are not encrypted.
struct DecryptHelper {
    keys: SecretKeys,
}

impl VerificationHelper for DecryptHelper {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        // drp's objects are not signed (the signed manifest holds their hashes).
        Ok(Vec::new())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        // The outermost layer must be the encryption container; an unencrypted message in
        // place of a backup object is refused.
        match structure.iter().next() {
            Some(MessageLayer::Encryption { .. }) => Ok(()),
            _ => Err(KeyError::MalformedMessage {
                message: "the message is not encrypted".to_string(),
            }
            .into()),
        }
    }
}

impl DecryptionHelper for DecryptHelper {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        for pkesk in pkesks {
            let recipient = pkesk.recipient();
            for entry in self.keys.entries() {
                for key in &entry.keys {
                    // A missing or wildcard recipient (anonymous PKESK) matches every key.
                    let matches = match &recipient {
                        None => true,
                        Some(KeyHandle::KeyID(id)) if id.is_wildcard() => true,
                        Some(h) => h.aliases(key.key_handle()),
                    };
                    if !matches {
                        continue;
                    }
                    let Ok(mut keypair) = key.clone().into_keypair() else {
                        continue;
                    };
                    if let Some((algo, sk)) = pkesk.decrypt(&mut keypair, sym_algo) {
                        if decrypt(algo, &sk) {
                            return Ok(Some(entry.cert.clone()));
                        }
                    }
                }
            }
        }
        let recipients = if pkesks.is_empty() {
            "no public key (it has no PKESK packet)".to_string()
        } else {
            join_list(pkesks.iter().map(|p| match p.recipient() {
                None => "an anonymous recipient".to_string(),
                Some(KeyHandle::KeyID(id)) if id.is_wildcard() => {
                    "an anonymous recipient".to_string()
                }
                Some(h) => h.to_hex(),
            }))
        };
        Err(KeyError::NoMatchingKey {
            recipients,
            available: join_list(self.keys.fingerprints()),
        }
        .into())
    }
}

/// A streaming decryptor: reads an encrypted message from the source, yields the plaintext.
///
/// Data is released before the whole message has been authenticated (only the last
/// [`DECRYPT_BUFFER_SIZE`] bytes are held back). `read` returns `Ok(0)` (end of data) only
/// once the whole message has been read and its integrity (MDC) verified; a truncated,
/// corrupted or tampered message makes `read` fail with an [`io::ErrorKind::InvalidData`]
/// error saying the data is corrupt or truncated. So: write the plaintext somewhere
/// temporary and commit it only after end of data.
pub struct DecryptingReader {
    state: ReaderState,
}

enum ReaderState {
    Reading(Box<openpgp::parse::stream::Decryptor<'static, DecryptHelper>>),
    /// The data was found to be bad while setting up; the next read reports it.
    Failed(Option<io::Error>),
    /// A read failed; further reads fail too (never a clean end of data).
    Poisoned,
}

impl fmt::Debug for DecryptingReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ReaderState::Reading(_) => "reading",
            ReaderState::Failed(_) | ReaderState::Poisoned => "failed",
        };
        f.debug_struct("DecryptingReader")
            .field("state", &state)
            .finish()
    }
}

/// Turns a decryption error into the `read` error: integrity problems become
/// `InvalidData` "corrupt or truncated"; I/O errors of the source keep their kind.
fn read_error(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData | io::ErrorKind::Other => {
            io::Error::new(io::ErrorKind::InvalidData, format!("{CORRUPT}: {e:#}"))
        }
        kind => io::Error::new(kind, format!("reading encrypted data: {e}")),
    }
}

fn pgp_to_io(e: PgpError) -> io::Error {
    match e.downcast::<io::Error>() {
        Ok(e) => e,
        Err(e) => io::Error::other(format!("{e:#}")),
    }
}

/// Starts decrypting the message read from `source` with any of `keys`.
///
/// Fails right away if no key can decrypt the message ([`KeyError::NoMatchingKey`], naming
/// the key IDs it is encrypted to) or if the input is not an encrypted OpenPGP message.
/// Problems with the encrypted data itself (truncation, corruption, failed integrity check)
/// are reported by `read`, even if they are found already here.
pub fn decrypt<R: Read + Send + Sync + 'static>(
    keys: &SecretKeys,
    source: R,
) -> Result<DecryptingReader, KeyError> {
    let malformed = |e: PgpError| KeyError::MalformedMessage {
        message: format!("{e:#}"),
    };
    let helper = DecryptHelper { keys: keys.clone() };
    let result = DecryptorBuilder::from_reader(source)
        .map_err(malformed)?
        .buffer_size(DECRYPT_BUFFER_SIZE)
        .with_policy(policy(), None, helper);
    match result {
        Ok(d) => Ok(DecryptingReader {
            state: ReaderState::Reading(Box::new(d)),
        }),
        Err(e) => match e.downcast::<KeyError>() {
            Ok(ke @ KeyError::NoMatchingKey { .. }) => Err(ke),
            Ok(ke) => Err(ke),
            Err(e) => {
                if is_data_error(&e) {
                    Ok(DecryptingReader {
                        state: ReaderState::Failed(Some(read_error(pgp_to_io(e)))),
                    })
                } else {
                    Err(malformed(e))
                }
            }
        },
    }
}

/// Whether a setup error is about the encrypted data (truncated, tampered) rather than
/// about the input not being an encrypted message at all.
fn is_data_error(e: &PgpError) -> bool {
    if let Some(io) = e.downcast_ref::<io::Error>() {
        return io.kind() == io::ErrorKind::UnexpectedEof;
    }
    matches!(
        e.downcast_ref::<openpgp::Error>(),
        Some(openpgp::Error::ManipulatedMessage)
    )
}

impl Read for DecryptingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.state {
            ReaderState::Reading(d) => match d.read(buf) {
                Ok(n) => Ok(n),
                Err(e) => {
                    self.state = ReaderState::Poisoned;
                    Err(read_error(e))
                }
            },
            ReaderState::Failed(e) => {
                let e = e
                    .take()
                    .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidData, CORRUPT));
                self.state = ReaderState::Poisoned;
                Err(e)
            }
            ReaderState::Poisoned => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{CORRUPT} (an earlier read failed)"),
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Signatures

/// Makes an armored detached signature of `data` with the signer's key.
pub fn sign_detached(signer: &Signer, data: &[u8]) -> Result<Vec<u8>, KeyError> {
    let err = pgp_err("signing");
    let keypair = signer.key().clone().into_keypair().map_err(&err)?;
    let mut out = Vec::new();
    {
        let message = Message::new(&mut out);
        let message = Armorer::new(message)
            .kind(armor::Kind::Signature)
            .build()
            .map_err(&err)?;
        let mut message = openpgp::serialize::stream::Signer::new(message, keypair)
            .map_err(&err)?
            .detached()
            .build()
            .map_err(&err)?;
        message.write_all(data).map_err(|e| err(e.into()))?;
        message.finalize().map_err(&err)?;
    }
    Ok(out)
}

/// Collects the verification results of a detached signature.
struct VerifyHelper {
    certs: Vec<Cert>,
    good: Option<String>,
    problems: Vec<String>,
    seen: usize,
}

impl VerificationHelper for VerifyHelper {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.certs.clone())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure.iter() {
            if let MessageLayer::SignatureGroup { results } = layer {
                for result in results {
                    self.seen += 1;
                    match result {
                        Ok(good) => {
                            if self.good.is_none() {
                                self.good = Some(good.ka.cert().fingerprint().to_hex());
                            }
                        }
                        Err(e) => self.problems.push(e.to_string()),
                    }
                }
            }
        }
        Ok(())
    }
}

/// Verifies the detached `signature` (armored or binary) of `data` against the trusted
/// signers. Returns the fingerprint of the certificate that made a good signature (as
/// [`Signer::fingerprint`] gives it). Fails if there is no signature
/// ([`KeyError::NotSigned`]), or no signature is good and made by a trusted, at the time
/// valid signing key ([`KeyError::BadSignature`]).
pub fn verify_detached(
    trusted: &TrustedSigners,
    data: &[u8],
    signature: &[u8],
) -> Result<String, KeyError> {
    if signature.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(KeyError::NotSigned);
    }
    let trusted_list = join_list(trusted.fingerprints());
    let bad = |detail: String| KeyError::BadSignature {
        trusted: trusted_list.clone(),
        detail,
    };
    let helper = VerifyHelper {
        certs: trusted.certs().to_vec(),
        good: None,
        problems: Vec::new(),
        seen: 0,
    };
    let mut verifier = DetachedVerifierBuilder::from_bytes(signature)
        .map_err(|e| bad(format!("malformed signature: {e:#}")))?
        .with_policy(policy(), None, helper)
        .map_err(|e| bad(format!("malformed signature: {e:#}")))?;
    verifier
        .verify_bytes(data)
        .map_err(|e| bad(format!("{e:#}")))?;
    let helper = verifier.into_helper();
    match helper.good {
        Some(fpr) => Ok(fpr),
        None if helper.seen == 0 => Err(KeyError::NotSigned),
        None => Err(bad(helper.problems.join("; "))),
    }
}
