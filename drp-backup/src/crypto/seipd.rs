//! A streaming writer of one SEIPD v1 packet (RFC 4880 §5.13, with the MDC of §5.14) holding
//! one binary literal data packet (§5.9).
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
use std::io::{self, Write};

use openssl::sha::Sha1;
use openssl::symm::{Cipher, Crypter, Mode};

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
