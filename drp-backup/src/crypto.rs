//! Streaming OpenPGP encryption/decryption and detached signatures.
//!
//! Encrypted objects are standard binary OpenPGP messages that GnuPG 2.2 reads:
//! one PKESK v3 per recipient encryption key, then a SEIPD v1 packet (AES-256, with MDC)
//! holding one binary literal data packet, without OpenPGP compression (the payload is
//! already zstd). `gpg --decrypt` therefore prints exactly the plaintext bytes.
//!
//! SEIPD v1 is chosen unconditionally, whatever the recipients advertise (sequoia would pick
//! SEIPD v2 for certificates that advertise it, and GnuPG 2.2 cannot read that): sequoia makes
//! the session key and the PKESK packets, and [`seipd`] frames and encrypts the data with
//! OpenSSL (see there why not sequoia's `Encryptor`). [`EncryptingWriter`] owns everything it
//! needs (`'static`, `Send`).

mod seipd;

use std::fmt;
use std::io::{self, Read, Write};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sequoia_openpgp as openpgp;

use openpgp::KeyHandle;
use openpgp::armor;
use openpgp::cert::Cert;
use openpgp::crypto::{KeyPair, SessionKey};
use openpgp::packet::pkesk::PKESK3;
use openpgp::packet::{PKESK, Packet, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, DetachedVerifierBuilder, MessageLayer, MessageStructure,
    VerificationHelper,
};
use openpgp::serialize::Serialize;
use openpgp::serialize::stream::{Armorer, Message};
use openpgp::types::SymmetricAlgorithm;
use openssl::symm::Cipher;

use self::seipd::{SeipdReader, SeipdWriter};
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

// ---------------------------------------------------------------------------------------------
// Encryption

/// A streaming encryptor: everything written to it is encrypted and written to the sink.
///
/// Create it with [`encrypt`], write the plaintext, then call [`EncryptingWriter::finish`];
/// dropping it without `finish` leaves an incomplete (undecryptable) message in the sink.
/// Memory use is bounded (a few buffers of some KiB), whatever the size of the data.
pub struct EncryptingWriter {
    /// The SEIPD v1 packet being written. `None` once finished.
    seipd: Option<SeipdWriter>,
    /// Total plaintext bytes written (for `Debug`).
    written: u64,
}

impl fmt::Debug for EncryptingWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptingWriter")
            .field("written", &self.written)
            .field("finished", &self.seipd.is_none())
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
    let mut sink: Box<dyn Write + Send + Sync> = Box::new(sink);
    let session_key = SessionKey::new(SYMMETRIC_ALGO.key_size().map_err(&err)?).map_err(&err)?;
    for entry in recipients.entries() {
        for key in &entry.keys {
            let mut pkesk =
                PKESK3::for_recipient(SYMMETRIC_ALGO, &session_key, key).map_err(&err)?;
            pkesk.set_recipient(Some(key.keyid()));
            Packet::from(PKESK::from(pkesk))
                .serialize(&mut sink)
                .map_err(&err)?;
        }
    }
    let seipd = SeipdWriter::new(sink, &session_key).map_err(|e| KeyError::OpenPgp {
        operation: "encryption",
        message: e.to_string(),
    })?;
    Ok(EncryptingWriter {
        seipd: Some(seipd),
        written: 0,
    })
}

impl EncryptingWriter {
    /// Writes the end of the message (MDC, final packet lengths) and flushes the sink.
    pub fn finish(mut self) -> io::Result<()> {
        self.seipd
            .take()
            .ok_or_else(|| io::Error::other("EncryptingWriter already finished"))?
            .finish()
    }
}

impl Write for EncryptingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let seipd = self
            .seipd
            .as_mut()
            .ok_or_else(|| io::Error::other("EncryptingWriter already finished"))?;
        let n = seipd.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.seipd.as_mut() {
            Some(seipd) => seipd.flush(),
            None => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decryption

/// Finds and uses the session key; rejects messages that are not encrypted.
struct DecryptHelper {
    keys: SecretKeys,
    /// Set once a session key decrypted the encryption container: from then on, every
    /// error is about the encrypted data, not about keys or the message format.
    decrypted: Arc<AtomicBool>,
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
            for (cert, mut keypair) in keypairs_for(&self.keys, pkesk) {
                if let Some((algo, sk)) = pkesk.decrypt(&mut keypair, sym_algo) {
                    // sequoia 2.4 panics (instead of failing) when a SEIPD v1 body is shorter
                    // than IV + 2 + MDC; `decrypt` screens short messages for that, and this
                    // turns any remaining panic into an error.
                    let ok = std::panic::catch_unwind(AssertUnwindSafe(|| decrypt(algo, &sk)))
                        .map_err(|_| {
                            self.decrypted.store(true, Ordering::SeqCst);
                            openpgp::Error::ManipulatedMessage
                        })?;
                    if ok {
                        self.decrypted.store(true, Ordering::SeqCst);
                        return Ok(Some(cert.clone()));
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

/// The secret keys among `keys` that may decrypt `pkesk`, as key pairs, with their
/// certificates. A missing or wildcard recipient (an anonymous PKESK) matches every key.
fn keypairs_for<'a>(keys: &'a SecretKeys, pkesk: &PKESK) -> Vec<(&'a Cert, KeyPair)> {
    let recipient = pkesk.recipient();
    let mut pairs = Vec::new();
    for entry in keys.entries() {
        for key in &entry.keys {
            let matches = match &recipient {
                None => true,
                Some(KeyHandle::KeyID(id)) if id.is_wildcard() => true,
                Some(h) => h.aliases(key.key_handle()),
            };
            if let (true, Ok(keypair)) = (matches, key.clone().into_keypair()) {
                pairs.push((&entry.cert, keypair));
            }
        }
    }
    pairs
}

/// Where [`decrypt`]'s fast path starts: the message in `prefix` (its first bytes) is
/// `PKESK… SEIPDv1` with AES, one of `keys` finds the session key, and the encrypted data
/// holds a literal data packet, i.e. what drp writes. Returns the SEIPD packet's offset, its
/// cipher and the session key; `None` leaves the message to sequoia (other shapes, and every
/// error, which sequoia then reports in its own words).
fn seipd_session(keys: &SecretKeys, prefix: &[u8]) -> Option<(usize, Cipher, SessionKey)> {
    let mut pos = 0;
    let mut pkesks = Vec::new();
    loop {
        let (tag, header, body) = seipd::packet_at(&prefix[pos..])?;
        let end = pos + header;
        match tag {
            1 => {
                let end = end + body?;
                match Packet::from_bytes(prefix.get(pos..end)?).ok()? {
                    Packet::PKESK(pkesk) => pkesks.push(pkesk),
                    _ => return None,
                }
                pos = end;
            }
            10 => pos = end + body?, // a marker packet: ignored, as RFC 4880 says
            18 => break,
            _ => return None,
        }
    }
    for pkesk in &pkesks {
        for (_, mut keypair) in keypairs_for(keys, pkesk) {
            let Some((algo, session_key)) = pkesk.decrypt(&mut keypair, None) else {
                continue;
            };
            let cipher = seipd::cfb_cipher(algo?)?;
            let Ok(mut probe) = SeipdReader::new(&prefix[pos..], cipher, &session_key) else {
                return None;
            };
            match probe.start() {
                Ok(true) => return Some((pos, cipher, session_key)),
                Ok(false) => return None,
                // Not this key (the prefix's check bytes differ), or a message cut short.
                Err(_) => continue,
            }
        }
    }
    None
}

/// A [`SeipdReader`] error as a `read` error (see [`read_error`]).
fn seipd_error(e: seipd::ReadError) -> io::Error {
    match e {
        seipd::ReadError::Io(e) => read_error(e),
        seipd::ReadError::Corrupt(message) => {
            io::Error::new(io::ErrorKind::InvalidData, format!("{CORRUPT}: {message}"))
        }
    }
}

/// A streaming decryptor: reads an encrypted message from the source, yields the plaintext.
///
/// Data is released before the whole message has been authenticated (only the last
/// [`DECRYPT_BUFFER_SIZE`] bytes are held back). `read` returns `Ok(0)` (end of data) only
/// once the whole message has been read and its integrity (MDC) verified; a truncated,
/// corrupted or tampered message makes `read` fail with an [`io::ErrorKind::InvalidData`]
/// error saying the data is corrupt or truncated, and every later `read` fails too. An I/O
/// error of the source keeps its kind. So: write the plaintext somewhere temporary and
/// commit it only after end of data.
pub struct DecryptingReader {
    state: ReaderState,
}

enum ReaderState {
    /// drp's own format (see [`seipd_session`]).
    Seipd(Box<SeipdReader<Box<dyn Read + Send + Sync>>>),
    /// Every other message: sequoia.
    Reading(Box<openpgp::parse::stream::Decryptor<'static, DecryptHelper>>),
    /// The data was found to be bad while setting up; the next read reports it.
    Failed(Option<io::Error>),
    /// A read failed; further reads fail too (never a clean end of data).
    Poisoned,
}

impl fmt::Debug for DecryptingReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ReaderState::Seipd(_) | ReaderState::Reading(_) => "reading",
            ReaderState::Failed(_) | ReaderState::Poisoned => "failed",
        };
        f.debug_struct("DecryptingReader")
            .field("state", &state)
            .finish()
    }
}

impl DecryptingReader {
    fn failed(e: io::Error) -> Self {
        Self {
            state: ReaderState::Failed(Some(e)),
        }
    }
}

/// Marks I/O errors of the source, so that they are not reported as corrupt data.
#[derive(Debug)]
struct SourceError(io::Error);

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The source, with its errors marked as [`SourceError`].
struct MarkedSource<R>(R);

impl<R: Read> Read for MarkedSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                e
            } else {
                io::Error::new(e.kind(), SourceError(e))
            }
        })
    }
}

/// Turns a decryption error into the `read` error: errors of the source keep their kind;
/// everything else (truncation, corruption, failed integrity check) is `InvalidData`
/// "corrupt or truncated".
fn read_error(e: io::Error) -> io::Error {
    let from_source = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<SourceError>())
        .map(|s| s.0.to_string());
    match from_source {
        Some(msg) => io::Error::new(e.kind(), format!("reading encrypted data: {msg}")),
        None => io::Error::new(io::ErrorKind::InvalidData, format!("{CORRUPT}: {e:#}")),
    }
}

fn pgp_to_io(e: PgpError) -> io::Error {
    match e.downcast::<io::Error>() {
        Ok(e) => e,
        Err(e) => io::Error::other(format!("{e:#}")),
    }
}

/// How much of the source [`decrypt`] reads ahead to screen short messages.
const LOOKAHEAD: usize = 64 * 1024;

/// Screens a complete, short message for SEIPD packets too short to be valid (which make
/// sequoia 2.4 panic). `Err` names the problem.
fn screen_short_message(message: &[u8]) -> Result<(), String> {
    use openpgp::parse::{PacketParser, PacketParserResult};
    // IV (at most 16 bytes) + 2 quick-check bytes + MDC packet (22 bytes).
    const MIN_SEIPD_V1_BODY: usize = 16 + 2 + 22;
    let Ok(mut ppr) = PacketParser::from_bytes(message) else {
        return Ok(()); // Not our problem here; the decryptor reports it.
    };
    while let PacketParserResult::Some(mut pp) = ppr {
        if let Packet::SEIP(openpgp::packet::SEIP::V1(_)) = &pp.packet {
            match pp.buffer_unread_content() {
                Ok(body) if body.len() >= MIN_SEIPD_V1_BODY => (),
                Ok(body) => {
                    return Err(format!(
                        "the encrypted data packet has only {} bytes",
                        body.len()
                    ));
                }
                Err(e) => return Err(format!("{e:#}")),
            }
        }
        ppr = match pp.next() {
            Ok((_, next)) => next,
            Err(_) => return Ok(()),
        };
    }
    Ok(())
}

/// Starts decrypting the message read from `source` with any of `keys`.
///
/// Fails right away if no key can decrypt the message ([`KeyError::NoMatchingKey`], naming
/// the key IDs it is encrypted to) or if the input is not an encrypted OpenPGP message
/// ([`KeyError::MalformedMessage`]). Problems with the encrypted data itself (truncation,
/// corruption, failed integrity check) and I/O errors of the source are reported by `read`,
/// even if they are found already here. Reads up to 64 KiB plus [`DECRYPT_BUFFER_SIZE`] of
/// the source before returning.
pub fn decrypt<R: Read + Send + Sync + 'static>(
    keys: &SecretKeys,
    source: R,
) -> Result<DecryptingReader, KeyError> {
    let mut source = MarkedSource(source);
    let mut prefix = Vec::new();
    if let Err(e) = (&mut source)
        .take(LOOKAHEAD as u64)
        .read_to_end(&mut prefix)
    {
        return Ok(DecryptingReader::failed(read_error(e)));
    }
    if prefix.len() < LOOKAHEAD
        && let Err(msg) = screen_short_message(&prefix)
    {
        return Ok(DecryptingReader::failed(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{CORRUPT}: {msg}"),
        )));
    }
    if let Some((at, cipher, session_key)) = seipd_session(keys, &prefix) {
        let mut message = io::Cursor::new(prefix);
        message.set_position(at as u64);
        let message: Box<dyn Read + Send + Sync> = Box::new(message.chain(source));
        let state = SeipdReader::new(message, cipher, &session_key).and_then(|mut reader| {
            // Reads the same bytes again as in `seipd_session`, this time to go on.
            match reader.start()? {
                true => Ok(ReaderState::Seipd(Box::new(reader))),
                false => Err(seipd::ReadError::Corrupt("unexpected packet".into())),
            }
        });
        return Ok(match state {
            Ok(state) => DecryptingReader { state },
            Err(e) => DecryptingReader::failed(seipd_error(e)),
        });
    }
    let source = io::Cursor::new(prefix).chain(source);

    let decrypted = Arc::new(AtomicBool::new(false));
    let helper = DecryptHelper {
        keys: keys.clone(),
        decrypted: decrypted.clone(),
    };
    let malformed = |e: PgpError| KeyError::MalformedMessage {
        message: format!("{e:#}"),
    };
    let result = DecryptorBuilder::from_reader(source)
        .map_err(malformed)?
        .buffer_size(DECRYPT_BUFFER_SIZE)
        .with_policy(policy(), None, helper);
    match result {
        Ok(d) => Ok(DecryptingReader {
            state: ReaderState::Reading(Box::new(d)),
        }),
        Err(e) if decrypted.load(Ordering::SeqCst) => {
            // The key worked: whatever failed is about the data.
            match e.downcast::<KeyError>() {
                Ok(ke) => Ok(DecryptingReader::failed(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{CORRUPT}: {ke}"),
                ))),
                Err(e) => Ok(DecryptingReader::failed(read_error(pgp_to_io(e)))),
            }
        }
        Err(e) => match e.downcast::<KeyError>() {
            Ok(ke) => Err(ke),
            Err(e) => match e.downcast::<io::Error>() {
                // The source failed before anything could be decrypted.
                Ok(io) if io.get_ref().is_some_and(|i| i.is::<SourceError>()) => {
                    Ok(DecryptingReader::failed(read_error(io)))
                }
                Ok(io) => Err(malformed(io.into())),
                Err(e) => Err(malformed(e)),
            },
        },
    }
}

impl Read for DecryptingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.state {
            ReaderState::Seipd(r) => r.read_data(buf).map_err(|e| {
                self.state = ReaderState::Poisoned;
                seipd_error(e)
            }),
            ReaderState::Reading(d) => match d.read(buf) {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{GeneratedKey, Passphrase, generate_key};
    use std::path::Path;
    use std::sync::Mutex;

    /// Deterministic pseudo-random bytes (xorshift64*), incompressible enough.
    pub(crate) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// A `Write + 'static` sink whose bytes the test can read afterwards.
    #[derive(Clone, Default)]
    struct SharedSink(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn encrypt_bytes(recipients: &Recipients, data: &[u8]) -> Vec<u8> {
        let sink = SharedSink::default();
        let mut w = encrypt(recipients, sink.clone()).unwrap();
        // Uneven chunk sizes.
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = rest.len().min([1, 4095, 65536, 100_000, 1 << 20][i % 5]);
            w.write_all(&rest[..n]).unwrap();
            rest = &rest[n..];
            i += 1;
        }
        w.finish().unwrap();
        sink.0.lock().unwrap().clone()
    }

    fn decrypt_bytes(keys: &SecretKeys, ciphertext: Vec<u8>) -> Result<Vec<u8>, String> {
        let mut r = decrypt(keys, io::Cursor::new(ciphertext)).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    fn key(
        dir: &Path,
        name: &str,
        pass: Option<&Passphrase>,
    ) -> (GeneratedKey, Recipients, SecretKeys) {
        let g = generate_key(name, dir, pass).unwrap();
        let r = Recipients::from_files(std::slice::from_ref(&g.public_path)).unwrap();
        let s = SecretKeys::from_file(&g.secret_path, pass).unwrap();
        (g, r, s)
    }

    #[test]
    fn round_trip_without_passphrase() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, r, s) = key(tmp.path(), "a", None);
        let data = pseudo_random(5 * 1024 * 1024 + 17, 1);
        let ct = encrypt_bytes(&r, &data);
        assert!(ct.len() > data.len() && ct.len() < data.len() + 4096);
        assert_eq!(decrypt_bytes(&s, ct).unwrap(), data);
    }

    #[test]
    fn round_trip_with_passphrase() {
        let tmp = tempfile::tempdir().unwrap();
        let pass = Passphrase::from("pass phrase");
        let (_, r, s) = key(tmp.path(), "a", Some(&pass));
        let data = pseudo_random(3 * 1024 * 1024, 2);
        let ct = encrypt_bytes(&r, &data);
        assert_eq!(decrypt_bytes(&s, ct).unwrap(), data);
    }

    #[test]
    fn round_trip_empty_and_small() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, r, s) = key(tmp.path(), "a", None);
        for data in [&b""[..], b"x", b"hello world\n"] {
            let ct = encrypt_bytes(&r, data);
            assert_eq!(decrypt_bytes(&s, ct).unwrap(), data);
        }
    }

    #[test]
    fn message_is_pkesk3_seipdv1_for_every_recipient() {
        use openpgp::PacketPile;
        use openpgp::cert::CertBuilder;
        let tmp = tempfile::tempdir().unwrap();
        let (ga, ra, sa) = key(tmp.path(), "a", None);
        // A certificate with sequoia's default features (advertises SEIPD v2): sequoia's own
        // Encryptor would pick SEIPD v2 for it alone; drp still writes v1.
        let (cert, _) = CertBuilder::general_purpose(Some("v2 capable"))
            .generate()
            .unwrap();
        let v2_pub = tmp.path().join("v2.pub.asc");
        let v2_sec = tmp.path().join("v2.sec.asc");
        std::fs::write(
            &v2_pub,
            openpgp::serialize::SerializeInto::to_vec(&cert.armored()).unwrap(),
        )
        .unwrap();
        std::fs::write(
            &v2_sec,
            openpgp::serialize::SerializeInto::to_vec(&cert.as_tsk().armored()).unwrap(),
        )
        .unwrap();
        let rv2 = Recipients::from_files(std::slice::from_ref(&v2_pub)).unwrap();
        assert!(rv2.all_support_seipdv2());
        let sv2 = SecretKeys::from_file(&v2_sec, None).unwrap();

        let both = Recipients::from_files(&[ga.public_path.clone(), v2_pub.clone()]).unwrap();
        for (recipients, n_pkesk) in [(&ra, 1), (&rv2, 1), (&both, 2)] {
            let ct = encrypt_bytes(recipients, b"payload");
            assert_ne!(ct[0], b'-', "armored output");
            let pile = PacketPile::from_bytes(&ct).unwrap();
            let top: Vec<&Packet> = pile.children().collect();
            assert_eq!(top.len(), n_pkesk + 1);
            for p in &top[..n_pkesk] {
                match p {
                    Packet::PKESK(PKESK::V3(_)) => (),
                    p => panic!("expected PKESK v3, got {p:?}"),
                }
            }
            match top[n_pkesk] {
                Packet::SEIP(s) => assert_eq!(s.version(), 1),
                p => panic!("expected SEIP, got {p:?}"),
            }
        }
        let ct = encrypt_bytes(&both, b"payload");
        assert_eq!(decrypt_bytes(&sa, ct.clone()).unwrap(), b"payload");
        assert_eq!(decrypt_bytes(&sv2, ct).unwrap(), b"payload");

        // No compression layer inside.
        let ct = encrypt_bytes(&ra, b"payload");
        let mut d = DecryptorBuilder::from_bytes(&ct)
            .unwrap()
            .with_policy(policy(), None, StructureProbe(sa.clone(), Vec::new()))
            .unwrap();
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        assert_eq!(d.helper_ref().1, vec!["encryption"]);
    }

    /// Which reader `decrypt` chose for a message.
    fn reader_kind(keys: &SecretKeys, ciphertext: &[u8]) -> &'static str {
        match decrypt(keys, io::Cursor::new(ciphertext.to_vec()))
            .unwrap()
            .state
        {
            ReaderState::Seipd(_) => "drp",
            ReaderState::Reading(_) => "sequoia",
            ReaderState::Failed(_) | ReaderState::Poisoned => "failed",
        }
    }

    /// A message written by sequoia's own streaming writers to `cert`'s encryption keys,
    /// with SEIPD v1 and, if asked, a compression layer.
    fn sequoia_message(cert: &Cert, data: &[u8], compressed: bool) -> Vec<u8> {
        use openpgp::serialize::stream::{Compressor, Encryptor, LiteralWriter};
        let recipients = cert
            .keys()
            .with_policy(policy(), None)
            .supported()
            .for_transport_encryption();
        let mut out = Vec::new();
        let message = Message::new(&mut out);
        let message = Encryptor::for_recipients(message, recipients)
            .symmetric_algo(SymmetricAlgorithm::AES128)
            .build()
            .unwrap();
        let message = if compressed {
            Compressor::new(message).build().unwrap()
        } else {
            message
        };
        let mut literal = LiteralWriter::new(message).build().unwrap();
        literal.write_all(data).unwrap();
        literal.finalize().unwrap();
        out
    }

    /// drp's messages (and any `PKESK… SEIPDv1(literal)` one) take the fast reader; others
    /// (compressed, armored) go to sequoia; both give back the same bytes.
    #[test]
    fn the_fast_reader_takes_literal_seipd_v1_messages_and_sequoia_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let (g, r, s) = key(tmp.path(), "a", None);
        let cert = Cert::from_file(&g.public_path).unwrap();
        let data = pseudo_random(3 * DECRYPT_BUFFER_SIZE + 77, 9);

        let ours = encrypt_bytes(&r, &data);
        assert_eq!(reader_kind(&s, &ours), "drp");
        assert!(decrypt_bytes(&s, ours).unwrap() == data);

        // sequoia's writer (SEIPD v1: drp's certificates do not advertise v2): other chunk
        // sizes of the partial lengths, AES-128.
        let plain = sequoia_message(&cert, &data, false);
        assert_eq!(reader_kind(&s, &plain), "drp");
        assert!(decrypt_bytes(&s, plain).unwrap() == data);

        let compressed = sequoia_message(&cert, &data, true);
        assert_eq!(reader_kind(&s, &compressed), "sequoia");
        assert!(decrypt_bytes(&s, compressed).unwrap() == data);

        let mut armored = Vec::new();
        let mut w = armor::Writer::new(&mut armored, armor::Kind::Message).unwrap();
        w.write_all(&encrypt_bytes(&r, &data)).unwrap();
        w.finalize().unwrap();
        assert_eq!(reader_kind(&s, &armored), "sequoia");
        assert!(decrypt_bytes(&s, armored).unwrap() == data);
    }

    /// Anything after the encrypted packet, or an MDC that does not match, is refused by the
    /// fast reader after the data, never a clean end.
    #[test]
    fn the_fast_reader_refuses_trailing_data_and_a_wrong_mdc() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, r, s) = key(tmp.path(), "a", None);
        let data = pseudo_random(200_000, 10);
        let mut trailing = encrypt_bytes(&r, &data);
        trailing.extend_from_slice(&[0xC0 | 10, 3, b'P', b'G', b'P']); // a marker packet
        assert_eq!(reader_kind(&s, &trailing), "drp");
        let err = decrypt_bytes(&s, trailing).unwrap_err();
        assert!(err.contains(CORRUPT) && err.contains("follows"), "{err}");

        // CFB: flipping a ciphertext bit flips the same plaintext bit (and garbles the next
        // block); in the MDC's last block only the digest changes.
        let mut wrong_mdc = encrypt_bytes(&r, &data);
        let last = wrong_mdc.len() - 1;
        wrong_mdc[last] ^= 0x80;
        assert_eq!(reader_kind(&s, &wrong_mdc), "drp");
        let err = decrypt_bytes(&s, wrong_mdc).unwrap_err();
        assert!(err.contains("integrity check (MDC) failed"), "{err}");
    }

    /// Every single-byte change of a message — in its headers, the session key packet, the
    /// lengths, the data and the MDC — is an error, never a panic and never different data.
    #[test]
    fn any_changed_byte_is_refused_without_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, r, s) = key(tmp.path(), "a", None);
        // Longer than the look-ahead, so the fast reader also reads past the screened prefix.
        let data = pseudo_random(LOOKAHEAD + 5_000, 11);
        let ct = encrypt_bytes(&r, &data);
        let positions = (0..600).chain((600..ct.len()).step_by(397));
        for pos in positions {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut bad = ct.clone();
                bad[pos] ^= flip;
                match decrypt_bytes(&s, bad) {
                    Err(_) => {}
                    Ok(out) => assert!(
                        out == data,
                        "byte {pos} ^ {flip:#04x}: different data without an error"
                    ),
                }
            }
        }
    }

    /// Records the layers of a decrypted message.
    struct StructureProbe(SecretKeys, Vec<&'static str>);
    impl VerificationHelper for StructureProbe {
        fn get_certs(&mut self, _: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
            Ok(Vec::new())
        }
        fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
            for layer in structure.iter() {
                self.1.push(match layer {
                    MessageLayer::Encryption { .. } => "encryption",
                    MessageLayer::Compression { .. } => "compression",
                    MessageLayer::SignatureGroup { .. } => "signatures",
                });
            }
            Ok(())
        }
    }
    impl DecryptionHelper for StructureProbe {
        fn decrypt(
            &mut self,
            pkesks: &[PKESK],
            skesks: &[SKESK],
            sym_algo: Option<SymmetricAlgorithm>,
            decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
        ) -> openpgp::Result<Option<Cert>> {
            DecryptHelper {
                keys: self.0.clone(),
                decrypted: Default::default(),
            }
            .decrypt(pkesks, skesks, sym_algo, decrypt)
        }
    }

    #[test]
    fn wrong_key_is_refused_with_key_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, ra, _) = key(tmp.path(), "a", None);
        let (gb, _, sb) = key(tmp.path(), "b", None);
        let ct = encrypt_bytes(&ra, b"secret");
        let err = decrypt(&sb, io::Cursor::new(ct)).unwrap_err();
        assert!(matches!(err, KeyError::NoMatchingKey { .. }), "{err}");
        let keyid = ra.entries()[0].keys[0].keyid().to_hex();
        assert_eq!(
            err.to_string(),
            format!(
                "message is encrypted to {keyid}, but none of the given secret keys ({}) can \
                 decrypt it",
                gb.fingerprint
            )
        );
    }

    #[test]
    fn several_secret_keys_are_tried() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, ra, sa) = key(tmp.path(), "a", None);
        let (_, _, sb) = key(tmp.path(), "b", None);
        let both = SecretKeys::combine([sb, sa]);
        assert_eq!(both.fingerprints().len(), 2);
        let ct = encrypt_bytes(&ra, b"secret");
        assert_eq!(decrypt_bytes(&both, ct).unwrap(), b"secret");
    }

    /// Every truncation of a message must fail, never end cleanly.
    #[test]
    fn truncated_ciphertext_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, r, s) = key(tmp.path(), "a", None);
        for len in [0usize, 1000, 3 * DECRYPT_BUFFER_SIZE + 123] {
            let data = pseudo_random(len, 3);
            let ct = encrypt_bytes(&r, &data);
            let mut cuts: Vec<usize> = (1..=64).map(|i| ct.len() - i).collect();
            cuts.extend([ct.len() / 2, ct.len() / 3, 200, 150, 100, 1]);
            for cut in cuts {
                if cut >= ct.len() {
                    continue;
                }
                match decrypt(&s, io::Cursor::new(ct[..cut].to_vec())) {
                    Err(_) => (),
                    Ok(mut reader) => {
                        let mut out = Vec::new();
                        let err = reader
                            .read_to_end(&mut out)
                            .expect_err(&format!("len {len}, cut {cut}: clean EOF"));
                        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
                        assert!(err.to_string().contains(CORRUPT), "{err}");
                        // And it stays failed.
                        assert!(reader.read(&mut [0u8; 16]).is_err());
                    }
                }
            }
        }
    }

    /// A SEIPD packet too short to hold IV + MDC makes sequoia 2.4 panic; it must be an
    /// error instead, both for short messages (screened) and long ones (panic caught).
    #[test]
    fn tiny_encrypted_packet_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, r, s) = key(tmp.path(), "a", None);
        let ct = encrypt_bytes(&r, b"");
        let pile = openpgp::PacketPile::from_bytes(&ct).unwrap();
        let top: Vec<&Packet> = pile.children().collect();
        let mut pkesk = Vec::new();
        top[0].serialize(&mut pkesk).unwrap();
        // The whole message minus its last 20 bytes: the SEIP body is 26 bytes.
        let short = ct[..ct.len() - 20].to_vec();
        let err = decrypt_bytes(&s, short.clone()).unwrap_err();
        assert!(err.contains(CORRUPT), "{err}");
        // The same after 64 KiB of marker packets, so that the look-ahead does not see it.
        let mut long = Vec::new();
        let marker = Packet::Marker(Default::default());
        while long.len() < LOOKAHEAD {
            marker.serialize(&mut long).unwrap();
        }
        long.extend_from_slice(&short);
        let err = decrypt_bytes(&s, long).unwrap_err();
        assert!(err.contains(CORRUPT), "{err}");
    }

    #[test]
    fn flipped_byte_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, r, s) = key(tmp.path(), "a", None);
        for len in [100usize, 4 * 1024 * 1024] {
            let data = pseudo_random(len, 4);
            let ct = encrypt_bytes(&r, &data);
            for pos in [ct.len() / 2, ct.len() - 5, ct.len() - 30] {
                let mut bad = ct.clone();
                bad[pos] ^= 0x01;
                let res = decrypt_bytes(&s, bad);
                let err = res.expect_err(&format!("len {len}, flipped byte {pos} accepted"));
                assert!(err.contains("corrupt") || err.contains("OpenPGP"), "{err}");
            }
        }
    }

    #[test]
    fn every_length_around_the_packet_chunk_boundaries_round_trips() {
        // The literal body is 6 header bytes plus the data; chunks are 64 KiB; the SEIPD body
        // adds 1 version byte, 18 prefix bytes and 22 MDC bytes.
        let tmp = tempfile::tempdir().unwrap();
        let (_, r, s) = key(tmp.path(), "a", None);
        let chunk = 1usize << 16;
        let mut lengths = vec![0, 1, 185, 186, 8377, 8378];
        for base in [chunk, 2 * chunk, 3 * chunk] {
            for delta in [-48isize, -47, -41, -7, -6, -5, 0, 1] {
                lengths.push((base as isize + delta) as usize);
            }
        }
        for len in lengths {
            let data = pseudo_random(len, len as u64);
            let back = decrypt_bytes(&s, encrypt_bytes(&r, &data)).unwrap();
            assert!(back == data, "length {len} did not round-trip");
        }
    }

    #[test]
    fn unencrypted_message_is_refused() {
        let mut plain = Vec::new();
        {
            let m = Message::new(&mut plain);
            let mut m = openpgp::serialize::stream::LiteralWriter::new(m)
                .build()
                .unwrap();
            m.write_all(b"not encrypted").unwrap();
            m.finalize().unwrap();
        }
        let tmp = tempfile::tempdir().unwrap();
        let (_, _, s) = key(tmp.path(), "a", None);
        let err = decrypt_bytes(&s, plain).unwrap_err();
        assert!(err.contains("not encrypted"), "{err}");
        let err = decrypt_bytes(&s, b"garbage garbage garbage".to_vec()).unwrap_err();
        assert!(err.contains("not a readable OpenPGP"), "{err}");
    }

    #[test]
    fn sign_and_verify() {
        let tmp = tempfile::tempdir().unwrap();
        let pass = Passphrase::from("ops");
        let g = generate_key("ops", tmp.path(), Some(&pass)).unwrap();
        let other = generate_key("other", tmp.path(), None).unwrap();
        let signer = Signer::from_file(&g.secret_path, Some(&pass)).unwrap();
        let trusted = TrustedSigners::from_files(std::slice::from_ref(&g.public_path)).unwrap();

        let data = b"{\"manifest\": 1}";
        let sig = sign_detached(&signer, data).unwrap();
        assert!(sig.starts_with(b"-----BEGIN PGP SIGNATURE-----"));
        assert_eq!(
            verify_detached(&trusted, data, &sig).unwrap(),
            g.fingerprint
        );

        // Data changed.
        let err = verify_detached(&trusted, b"{\"manifest\": 2}", &sig).unwrap_err();
        assert!(matches!(err, KeyError::BadSignature { .. }), "{err}");
        assert!(err.to_string().contains(&g.fingerprint), "{err}");

        // Signed by a key that is not trusted.
        let other_signer = Signer::from_file(&other.secret_path, None).unwrap();
        let sig2 = sign_detached(&other_signer, data).unwrap();
        let err = verify_detached(&trusted, data, &sig2).unwrap_err();
        assert!(matches!(err, KeyError::BadSignature { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("signature does not verify against any trusted signer"),
            "{err}"
        );

        // Both trusted: the right one is named.
        let both = TrustedSigners::from_files(&[g.public_path.clone(), other.public_path.clone()])
            .unwrap();
        assert_eq!(
            verify_detached(&both, data, &sig2).unwrap(),
            other.fingerprint
        );

        // Missing and garbage signatures.
        let err = verify_detached(&trusted, data, b"").unwrap_err();
        assert!(matches!(err, KeyError::NotSigned), "{err}");
        assert_eq!(err.to_string(), "manifest is not signed");
        let err = verify_detached(&trusted, data, b"not a signature").unwrap_err();
        assert!(matches!(err, KeyError::BadSignature { .. }), "{err}");

        // A binary signature is accepted too.
        let pile = openpgp::PacketPile::from_bytes(&sig).unwrap();
        let mut bin = Vec::new();
        for p in pile.children() {
            p.serialize(&mut bin).unwrap();
        }
        assert_eq!(
            verify_detached(&trusted, data, &bin).unwrap(),
            g.fingerprint
        );
    }

    #[test]
    fn crypto_types_are_send() {
        fn check<T: Send + Sync + fmt::Debug + 'static>() {}
        check::<EncryptingWriter>();
        check::<DecryptingReader>();
    }
}
