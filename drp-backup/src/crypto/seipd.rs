//! A streaming writer of one SEIPD v1 packet (RFC 4880 §5.13, with the MDC of §5.14) holding
//! one binary literal data packet (§5.9), and [`SeipdReader`], which reads such packets.
//!
//! Why not sequoia's `Encryptor`: it hashes the MDC with SHA-1 *collision detection* (SHA1CD),
//! which is essential when verifying other people's signatures but buys nothing for the MDC of
//! a message we write ourselves, and it halves backup throughput (the encrypt stage is the
//! bottleneck of a backup of incompressible data). Here the session key, the PKESK packets and
//! all parsing stay with sequoia; this module only frames bytes, using OpenSSL's AES-CFB and
//! SHA-1. GnuPG and sequoia both read its output (tests in `crypto` and `tests/gpg_interop.rs`).
//!
//! Layout written:
//!
//! ```text
//! SEIPD header (tag 18, partial lengths) | 0x01 | CFB( prefix | literal packet | MDC packet )
//! prefix  = 16 random bytes + their last two repeated
//! literal = tag 11 header (partial lengths) | 'b' | 0 (no file name) | 0u32 (no date) | data
//! MDC     = 0xD3 0x14 | SHA-1(prefix | literal packet | 0xD3 0x14)
//! ```
//!
//! CFB runs with a zero IV and no resynchronisation, as SEIPD requires.

use std::fmt;
use std::io::{self, Read, Write};

use openssl::sha::Sha1;
use openssl::symm::{Cipher, Crypter, Mode};
use sequoia_openpgp as openpgp;

/// Bytes per partial body chunk, as a power of two (64 KiB): a 1-byte header per chunk.
const CHUNK_LOG2: u8 = 16;
const CHUNK: usize = 1 << CHUNK_LOG2;

/// New-format packet tags.
const TAG_SEIPD: u8 = 0xC0 | 18;
const TAG_LITERAL: u8 = 0xC0 | 11;
const TAG_MDC: u8 = 0xC0 | 19;

/// Writes a SEIPD v1 packet with AES-256 to `sink` as data comes in; [`SeipdWriter::finish`]
/// writes the MDC and the final lengths.
pub(crate) struct SeipdWriter {
    sink: Box<dyn Write + Send + Sync>,
    crypter: Crypter,
    mdc: Sha1,
    /// Literal packet body not yet framed (the last chunk needs a definite length).
    literal: Vec<u8>,
    /// Whether the literal packet's tag was written (it precedes its first length header).
    literal_started: bool,
    /// SEIPD body not yet framed: ciphertext (and the leading version byte).
    body: Vec<u8>,
}

impl fmt::Debug for SeipdWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeipdWriter").finish_non_exhaustive()
    }
}

impl SeipdWriter {
    /// Starts the packet with an AES-256 `session_key` (32 bytes).
    pub(crate) fn new(
        mut sink: Box<dyn Write + Send + Sync>,
        session_key: &[u8],
    ) -> io::Result<Self> {
        let cipher = Cipher::aes_256_cfb128();
        if session_key.len() != cipher.key_len() {
            return Err(io::Error::other("the session key is not an AES-256 key"));
        }
        let iv = [0u8; 16];
        let crypter = Crypter::new(cipher, Mode::Encrypt, session_key, Some(&iv))
            .map_err(io::Error::other)?;
        sink.write_all(&[TAG_SEIPD])?;
        let mut writer = Self {
            sink,
            crypter,
            mdc: Sha1::new(),
            literal: Vec::with_capacity(2 * CHUNK),
            literal_started: false,
            body: Vec::with_capacity(2 * CHUNK),
        };
        writer.body.push(1); // SEIPD version
        let mut prefix = [0u8; 18];
        openssl::rand::rand_bytes(&mut prefix[..16]).map_err(io::Error::other)?;
        prefix[16] = prefix[14];
        prefix[17] = prefix[15];
        writer.encrypt_hashed(&prefix)?;
        writer.literal.extend_from_slice(&[b'b', 0, 0, 0, 0, 0]);
        Ok(writer)
    }

    /// Hashes `data` into the MDC and encrypts it into the body.
    fn encrypt_hashed(&mut self, data: &[u8]) -> io::Result<()> {
        self.mdc.update(data);
        self.encrypt(data)
    }

    fn encrypt(&mut self, data: &[u8]) -> io::Result<()> {
        // Straight into the body: CFB output is as long as its input (OpenSSL wants one block
        // of slack).
        let start = self.body.len();
        self.body.resize(start + data.len() + 16, 0);
        let n = self
            .crypter
            .update(data, &mut self.body[start..])
            .map_err(io::Error::other)?;
        self.body.truncate(start + n);
        // Only chunks known not to be the last go out: the last needs a definite length.
        emit_partial_chunks(&mut self.sink, &mut self.body)
    }

    /// Frames the full literal chunks that are known not to be the last.
    fn frame_literal(&mut self) -> io::Result<()> {
        if !self.literal_started {
            self.encrypt_hashed(&[TAG_LITERAL])?;
            self.literal_started = true;
        }
        let mut pending = std::mem::take(&mut self.literal);
        let mut start = 0;
        while pending.len() - start > CHUNK {
            self.encrypt_hashed(&[0xE0 | CHUNK_LOG2])?;
            self.encrypt_hashed(&pending[start..start + CHUNK])?;
            start += CHUNK;
        }
        pending.drain(..start);
        self.literal = pending;
        Ok(())
    }

    /// Writes the last literal chunk, the MDC and the last body chunk, then flushes the sink.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        if !self.literal_started {
            self.encrypt_hashed(&[TAG_LITERAL])?;
        }
        let last = std::mem::take(&mut self.literal);
        self.encrypt_hashed(&definite_length(last.len()))?;
        self.encrypt_hashed(&last)?;
        self.encrypt_hashed(&[TAG_MDC, 20])?;
        let digest = std::mem::replace(&mut self.mdc, Sha1::new()).finish();
        self.encrypt(&digest)?;
        let mut tail = [0u8; 16];
        let n = self.crypter.finalize(&mut tail).map_err(io::Error::other)?;
        self.body.extend_from_slice(&tail[..n]);
        let body = std::mem::take(&mut self.body);
        self.sink.write_all(&definite_length(body.len()))?;
        self.sink.write_all(&body)?;
        self.sink.flush()
    }
}

impl Write for SeipdWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.literal.extend_from_slice(data);
        if self.literal.len() > CHUNK {
            self.frame_literal()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

/// Writes `0xE0 | CHUNK_LOG2` + CHUNK bytes for every full chunk of `body` that is followed by
/// at least one more byte, and keeps the rest.
fn emit_partial_chunks(sink: &mut dyn Write, body: &mut Vec<u8>) -> io::Result<()> {
    let mut start = 0;
    while body.len() - start > CHUNK {
        sink.write_all(&[0xE0 | CHUNK_LOG2])?;
        sink.write_all(&body[start..start + CHUNK])?;
        start += CHUNK;
    }
    body.drain(..start);
    Ok(())
}

/// A new-format definite body length (RFC 4880 §4.2.2.1–3).
fn definite_length(len: usize) -> Vec<u8> {
    match len {
        0..=191 => vec![len as u8],
        192..=8383 => {
            let l = len - 192;
            vec![(l >> 8) as u8 + 192, l as u8]
        }
        _ => {
            let mut out = vec![0xFF];
            out.extend_from_slice(&(len as u32).to_be_bytes());
            out
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Plaintext or ciphertext bytes asked of the source per read.
const READ_SIZE: usize = 256 * 1024;

/// What went wrong while reading a SEIPD packet. `Io` carries the source's own errors
/// unchanged; everything else means the data is not a valid, intact message.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The source failed.
    Io(io::Error),
    /// The data is truncated, corrupt or not in the expected form.
    Corrupt(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// The symmetric ciphers [`SeipdReader`] handles itself (the AES family, which is what drp
/// and GnuPG write); anything else is left to sequoia.
pub(crate) fn cfb_cipher(algo: openpgp::types::SymmetricAlgorithm) -> Option<Cipher> {
    use openpgp::types::SymmetricAlgorithm::*;
    match algo {
        AES128 => Some(Cipher::aes_128_cfb128()),
        AES192 => Some(Cipher::aes_192_cfb128()),
        AES256 => Some(Cipher::aes_256_cfb128()),
        _ => None,
    }
}

/// One packet's body length (RFC 4880 §4.2): how many bytes follow, and whether another
/// length header follows them (partial body lengths) or the body runs to the end of the
/// input (old format, indeterminate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLength {
    Definite(u64),
    Partial(u64),
    Indeterminate,
}

/// Parses a new-format length whose first octet is `first`; `next` yields the following
/// octets.
fn new_format_length(
    first: u8,
    mut next: impl FnMut() -> Result<u8, ReadError>,
) -> Result<BodyLength, ReadError> {
    Ok(match first {
        0..=191 => BodyLength::Definite(u64::from(first)),
        192..=223 => {
            BodyLength::Definite(((u64::from(first) - 192) << 8) + u64::from(next()?) + 192)
        }
        224..=254 => BodyLength::Partial(1 << (first & 0x1F)),
        255 => {
            let mut len = 0u64;
            for _ in 0..4 {
                len = (len << 8) | u64::from(next()?);
            }
            BodyLength::Definite(len)
        }
    })
}

/// Parses a packet header's tag octet and length; `next` yields the header's octets.
fn packet_header(
    mut next: impl FnMut() -> Result<u8, ReadError>,
) -> Result<(u8, BodyLength), ReadError> {
    let ctb = next()?;
    if ctb & 0x80 == 0 {
        return Err(ReadError::Corrupt(format!(
            "byte {ctb:#04x} does not start an OpenPGP packet"
        )));
    }
    if ctb & 0x40 != 0 {
        let tag = ctb & 0x3F;
        let first = next()?;
        return Ok((tag, new_format_length(first, next)?));
    }
    let tag = (ctb >> 2) & 0x0F;
    let octets = match ctb & 0x03 {
        0 => 1,
        1 => 2,
        2 => 4,
        _ => return Ok((tag, BodyLength::Indeterminate)),
    };
    let mut len = 0u64;
    for _ in 0..octets {
        len = (len << 8) | u64::from(next()?);
    }
    Ok((tag, BodyLength::Definite(len)))
}

/// Where one packet of a message held in memory starts and ends: `(tag, header length, body
/// length)`, the body length `None` when it is not definite.
pub(crate) fn packet_at(message: &[u8]) -> Option<(u8, usize, Option<usize>)> {
    let mut pos = 0;
    let (tag, length) = packet_header(|| {
        let byte = message.get(pos).copied();
        pos += 1;
        byte.ok_or_else(|| ReadError::Corrupt("truncated header".into()))
    })
    .ok()?;
    let body = match length {
        BodyLength::Definite(n) => usize::try_from(n).ok(),
        _ => None,
    };
    Some((tag, pos, body))
}

/// Reads a SEIPD v1 packet (RFC 4880 §5.13) that holds exactly one literal data packet and
/// the MDC, and yields the literal data: the counterpart of [`SeipdWriter`], for drp's own
/// objects and for any message of that shape (GnuPG's with `-z 0`, sequoia's).
///
/// Why not sequoia's `Decryptor` for these: it checks the MDC with SHA-1 collision detection
/// (see the top of this module) and copies every byte through several buffers, which made a
/// restore three times slower than `gpg --decrypt | zstd -d`. Finding the session key stays
/// with sequoia; messages of other shapes (compressed, signed, armored) go to sequoia whole.
///
/// Data is released as it is decrypted, before the MDC at the end has been checked: `read`
/// returns end of data only after the MDC matched and nothing follows the packet; a
/// truncated or altered message fails a read (and every later read) instead.
pub(crate) struct SeipdReader<R> {
    source: R,
    /// Ciphertext left in the current piece of the SEIPD body.
    body_left: u64,
    /// How the current piece ends: another length header (`Partial`), the end of the packet
    /// (`Definite`), or the end of the input (`Indeterminate`).
    body_framing: BodyLength,
    crypter: Crypter,
    cipher_block: usize,
    mdc: Sha1,
    ciphertext: Vec<u8>,
    /// Decrypted bytes; `plain[pos..]` are not consumed yet.
    plain: Vec<u8>,
    pos: usize,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the random prefix.
    Start,
    /// Inside the literal packet's body: `left` bytes of this piece, then `framing`.
    Literal { left: u64, framing: BodyLength },
    /// The literal data has been read; the MDC comes next.
    Mdc,
    /// The MDC matched and the input ended.
    Done,
}

impl<R: Read> SeipdReader<R> {
    /// Starts reading at the SEIPD packet's header with the session key of cipher `cipher`.
    pub(crate) fn new(
        mut source: R,
        cipher: Cipher,
        session_key: &[u8],
    ) -> Result<Self, ReadError> {
        if session_key.len() != cipher.key_len() {
            return Err(ReadError::Corrupt(
                "the session key does not fit the cipher".into(),
            ));
        }
        let (tag, framing) = packet_header(|| read_byte(&mut source))?;
        if tag != 18 {
            return Err(ReadError::Corrupt(format!(
                "packet {tag} where the encrypted data was expected"
            )));
        }
        // OpenSSL calls CFB a stream mode (block size 1); OpenPGP's prefix is one cipher
        // block, the IV's length.
        let block = cipher.iv_len().unwrap_or(16);
        let iv = vec![0u8; block];
        let crypter = Crypter::new(cipher, Mode::Decrypt, session_key, Some(&iv))
            .map_err(|e| ReadError::Corrupt(e.to_string()))?;
        let mut reader = Self {
            source,
            body_left: 0,
            body_framing: framing,
            crypter,
            cipher_block: block,
            mdc: Sha1::new(),
            ciphertext: vec![0; READ_SIZE],
            plain: Vec::with_capacity(READ_SIZE + 64),
            pos: 0,
            state: State::Start,
        };
        reader.body_left = match framing {
            BodyLength::Definite(n) | BodyLength::Partial(n) => n,
            BodyLength::Indeterminate => u64::MAX,
        };
        let mut version = [0u8; 1];
        if reader.read_body(&mut version)? != 1 || version[0] != 1 {
            return Err(ReadError::Corrupt(
                "not a version 1 encrypted data packet".into(),
            ));
        }
        Ok(reader)
    }

    /// Decrypts the random prefix and checks its two repeated bytes, which tells (with
    /// probability 1 - 2^-16) whether the session key is right. Then tells whether the
    /// message holds a literal data packet that this reader can stream (`false`: another
    /// shape, e.g. compressed data, which sequoia has to read).
    pub(crate) fn start(&mut self) -> Result<bool, ReadError> {
        debug_assert_eq!(self.state, State::Start);
        let prefix_len = self.cipher_block + 2;
        let prefix = self.take(prefix_len)?.to_vec();
        if prefix[prefix_len - 2..] != prefix[prefix_len - 4..prefix_len - 2] {
            return Err(ReadError::Corrupt(
                "the session key does not decrypt the data".into(),
            ));
        }
        self.fill(1)?;
        let ctb = self.plain.get(self.pos).copied().unwrap_or(0);
        // Tag 11, new format, or old format with a definite length.
        if ctb != 0xC0 | 11 && !matches!(ctb, 0xAC..=0xAE) {
            return Ok(false);
        }
        let (_, framing) = packet_header(|| self.take(1).map(|b| b[0]))?;
        self.state = State::Literal {
            left: match framing {
                BodyLength::Definite(n) | BodyLength::Partial(n) => n,
                BodyLength::Indeterminate => unreachable!("refused above"),
            },
            framing,
        };
        // The literal body starts with format, file name and date; the data follows.
        let mut head = [0u8; 2];
        self.read_literal_exact(&mut head)?;
        let mut rest = vec![0u8; usize::from(head[1]) + 4];
        self.read_literal_exact(&mut rest)?;
        Ok(true)
    }

    /// Reads ciphertext of the SEIPD body, across its partial length headers; 0 at its end.
    fn read_body(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        while self.body_left == 0 {
            match self.body_framing {
                BodyLength::Partial(_) => {
                    let first = read_byte(&mut self.source)?;
                    self.body_framing = new_format_length(first, || read_byte(&mut self.source))?;
                    if let BodyLength::Definite(n) | BodyLength::Partial(n) = self.body_framing {
                        self.body_left = n;
                    }
                }
                _ => return Ok(0),
            }
        }
        let want = buf
            .len()
            .min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
        let n = loop {
            match self.source.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => break result?,
            }
        };
        if n == 0 {
            if self.body_framing == BodyLength::Indeterminate {
                self.body_left = 0;
                self.body_framing = BodyLength::Definite(0);
                return Ok(0);
            }
            return Err(truncated());
        }
        self.body_left -= n as u64;
        Ok(n)
    }

    /// Makes at least `n` decrypted bytes available; `Ok(false)` if the body ends first.
    fn fill(&mut self, n: usize) -> Result<bool, ReadError> {
        while self.plain.len() - self.pos < n {
            if self.pos > 0 {
                self.plain.drain(..self.pos);
                self.pos = 0;
            }
            let mut ciphertext = std::mem::take(&mut self.ciphertext);
            let read = self.read_body(&mut ciphertext);
            let got = match read {
                Ok(0) => {
                    self.ciphertext = ciphertext;
                    return Ok(false);
                }
                Ok(got) => got,
                Err(e) => {
                    self.ciphertext = ciphertext;
                    return Err(e);
                }
            };
            let start = self.plain.len();
            self.plain.resize(start + got + self.cipher_block, 0);
            let out = self
                .crypter
                .update(&ciphertext[..got], &mut self.plain[start..])
                .map_err(|e| ReadError::Corrupt(e.to_string()));
            self.ciphertext = ciphertext;
            self.plain.truncate(start + out?);
        }
        Ok(true)
    }

    /// Consumes `n` decrypted bytes (hashing them into the MDC).
    fn take(&mut self, n: usize) -> Result<&[u8], ReadError> {
        if !self.fill(n)? {
            return Err(truncated());
        }
        let bytes = &self.plain[self.pos..self.pos + n];
        self.mdc.update(bytes);
        self.pos += n;
        Ok(bytes)
    }

    /// Reads literal data, across the literal packet's partial length headers; 0 at its end.
    fn read_literal(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        loop {
            let State::Literal { left, framing } = self.state else {
                return Ok(0);
            };
            if left > 0 {
                if !self.fill(1)? {
                    return Err(truncated());
                }
                let available = self.plain.len() - self.pos;
                let n = buf
                    .len()
                    .min(available)
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                buf[..n].copy_from_slice(self.take(n)?);
                self.state = State::Literal {
                    left: left - n as u64,
                    framing,
                };
                return Ok(n);
            }
            self.state = match framing {
                BodyLength::Partial(_) => {
                    let first = self.take(1)?[0];
                    let framing = new_format_length(first, || self.take(1).map(|b| b[0]))?;
                    match framing {
                        BodyLength::Definite(left) | BodyLength::Partial(left) => {
                            State::Literal { left, framing }
                        }
                        BodyLength::Indeterminate => unreachable!("not a new-format length"),
                    }
                }
                _ => State::Mdc,
            };
        }
    }

    fn read_literal_exact(&mut self, mut buf: &mut [u8]) -> Result<(), ReadError> {
        while !buf.is_empty() {
            match self.read_literal(buf)? {
                0 => return Err(truncated()),
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }

    /// Checks the MDC packet that must follow the literal packet, and that nothing follows it.
    fn finish(&mut self) -> Result<(), ReadError> {
        if self.take(2)? != [TAG_MDC, 20] {
            return Err(ReadError::Corrupt(
                "something other than the integrity check (MDC) follows the data".into(),
            ));
        }
        let expected = std::mem::replace(&mut self.mdc, Sha1::new()).finish();
        if !self.fill(20)? {
            return Err(truncated());
        }
        let digest = &self.plain[self.pos..self.pos + 20];
        let digest_matches = digest == expected;
        self.pos += 20;
        if !digest_matches {
            return Err(ReadError::Corrupt(
                "the integrity check (MDC) failed".into(),
            ));
        }
        let mut tail = [0u8; 16];
        let n = self
            .crypter
            .finalize(&mut tail)
            .map_err(|e| ReadError::Corrupt(e.to_string()))?;
        if n > 0 || self.fill(1)? {
            return Err(ReadError::Corrupt(
                "data follows the integrity check (MDC)".into(),
            ));
        }
        let mut after = [0u8; 1];
        let more = loop {
            match self.source.read(&mut after) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => break result?,
            }
        };
        if more != 0 {
            return Err(ReadError::Corrupt(
                "data follows the encrypted packet".into(),
            ));
        }
        self.state = State::Done;
        Ok(())
    }

    /// Reads literal data into `buf`; 0 only once the message was checked whole.
    pub(crate) fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Start => {
                    return Err(ReadError::Corrupt("the reader was not started".into()));
                }
                State::Literal { .. } => match self.read_literal(buf)? {
                    0 => continue,
                    n => return Ok(n),
                },
                State::Mdc => self.finish()?,
                State::Done => return Ok(0),
            }
        }
    }
}

fn read_byte(source: &mut impl Read) -> Result<u8, ReadError> {
    let mut byte = [0u8; 1];
    match source.read_exact(&mut byte) {
        Ok(()) => Ok(byte[0]),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(truncated()),
        Err(e) => Err(ReadError::Io(e)),
    }
}

fn truncated() -> ReadError {
    ReadError::Corrupt("the message ends early".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definite_lengths_use_the_shortest_form() {
        assert_eq!(definite_length(0), [0]);
        assert_eq!(definite_length(191), [191]);
        assert_eq!(definite_length(192), [192, 0]);
        assert_eq!(definite_length(8383), [223, 255]);
        assert_eq!(definite_length(8384), [0xFF, 0, 0, 0x20, 0xC0]);
    }

    #[test]
    fn partial_chunks_keep_the_last_one_back() {
        let mut out = Vec::new();
        let mut body = vec![7u8; 2 * CHUNK];
        emit_partial_chunks(&mut out, &mut body).unwrap();
        assert_eq!(out.len(), 1 + CHUNK);
        assert_eq!(out[0], 0xE0 | CHUNK_LOG2);
        assert_eq!(
            body.len(),
            CHUNK,
            "the last full chunk must wait for the end"
        );
    }
}
