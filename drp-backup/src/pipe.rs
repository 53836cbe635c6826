//! Bounded byte pipes between pipeline stages.
//!
//! Each stage of a backup or restore runs on its own thread; a pipe carries chunks of at most
//! [`CHUNK_SIZE`] bytes, at most [`PIPE_DEPTH`] in flight, so memory stays bounded whatever the
//! size of the data. The ends are tokio channels so that an async task (the uploader, the
//! downloader) can sit at either end.

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

/// Bytes per chunk.
pub(crate) const CHUNK_SIZE: usize = 256 * 1024;
/// Chunks buffered in one pipe.
pub(crate) const PIPE_DEPTH: usize = 4;

/// What travels through a pipe: chunks, or an error that the reader returns instead of the end
/// of data (so a stage never mistakes a failure upstream for a complete stream).
pub(crate) type Chunk = io::Result<Bytes>;

/// A new pipe: a blocking writer and a blocking reader.
pub(crate) fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = mpsc::channel(PIPE_DEPTH);
    (PipeWriter::new(tx), PipeReader::new(rx))
}

/// The error a stage sees when the stage after it has stopped (and reported its own error).
pub(crate) fn downstream_stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the next pipeline stage stopped")
}

/// Writes into a pipe from a blocking thread. Call [`PipeWriter::finish`] (or `flush`) at the
/// end: dropping it closes the pipe too, but loses what is still buffered.
#[derive(Debug)]
pub(crate) struct PipeWriter {
    tx: mpsc::Sender<Chunk>,
    buffer: BytesMut,
}

impl PipeWriter {
    pub(crate) fn new(tx: mpsc::Sender<Chunk>) -> Self {
        Self {
            tx,
            buffer: BytesMut::with_capacity(CHUNK_SIZE),
        }
    }

    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = self.buffer.split().freeze();
        self.buffer.reserve(CHUNK_SIZE);
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| downstream_stopped())
    }

    /// Sends what is buffered and closes the pipe.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK_SIZE - self.buffer.len());
        self.buffer.extend_from_slice(&data[..n]);
        if self.buffer.len() == CHUNK_SIZE {
            self.send_buffer()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

/// Reads from a pipe on a blocking thread; end of data when the writer is gone.
#[derive(Debug)]
pub(crate) struct PipeReader {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
}

impl PipeReader {
    pub(crate) fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl PipeReader {
    /// The next chunk as it arrived (what `read` has not yet returned of it), without copying;
    /// `None` at the end of data.
    pub(crate) fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if !self.current.is_empty() {
            return Ok(Some(std::mem::take(&mut self.current)));
        }
        match self.rx.blocking_recv() {
            Some(chunk) => chunk.map(Some),
            None => Ok(None),
        }
    }
}

/// `io::copy` with a [`CHUNK_SIZE`] buffer instead of its 8 KiB one: a backup or restore of
/// a large file then makes a thirty-second of the read and write calls, and each stage of the
/// pipeline gets whole chunks to work on.
pub(crate) fn copy_in_chunks(from: &mut dyn Read, to: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Copies a pipe into a writer chunk by chunk: no intermediate buffer, and large writes (the
/// compressor and the cipher work best on whole chunks rather than `io::copy`'s 8 KiB).
pub(crate) fn pump(from: &mut PipeReader, to: &mut dyn Write) -> io::Result<u64> {
    let mut total = 0;
    while let Some(chunk) = from.next_chunk()? {
        to.write_all(&chunk)?;
        total += chunk.len() as u64;
    }
    Ok(total)
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Counts the bytes that pass through a writer.
#[derive(Debug)]
pub(crate) struct CountingWriter<W> {
    pub(crate) inner: W,
    pub(crate) count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_cross_a_pipe_unchanged_in_order() {
        let data: Vec<u8> = (0..3 * CHUNK_SIZE + 17).map(|i| (i % 253) as u8).collect();
        let (mut writer, mut reader) = pipe();
        let expected = data.clone();
        let producer = std::thread::spawn(move || {
            for piece in data.chunks(10_000) {
                writer.write_all(piece).unwrap();
            }
            writer.finish().unwrap();
        });
        let mut back = Vec::new();
        reader.read_to_end(&mut back).unwrap();
        producer.join().unwrap();
        assert!(back == expected);
    }

    #[test]
    fn an_error_sent_down_the_pipe_replaces_the_end_of_data() {
        let (tx, rx) = mpsc::channel(PIPE_DEPTH);
        let mut reader = PipeReader::new(rx);
        tx.blocking_send(Ok(Bytes::from_static(b"abc"))).unwrap();
        tx.blocking_send(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "hash mismatch",
        )))
        .unwrap();
        drop(tx);
        let mut back = Vec::new();
        let err = reader.read_to_end(&mut back).unwrap_err();
        assert_eq!(err.to_string(), "hash mismatch");
        assert_eq!(back, b"abc");
    }

    #[test]
    fn pump_moves_whole_chunks_after_a_partial_read() {
        let (mut writer, mut reader) = pipe();
        let producer = std::thread::spawn(move || {
            writer.write_all(&vec![5u8; CHUNK_SIZE + 10]).unwrap();
            writer.finish().unwrap();
        });
        let mut first = [0u8; 3];
        reader.read_exact(&mut first).unwrap();
        let mut rest = Vec::new();
        assert_eq!(
            pump(&mut reader, &mut rest).unwrap(),
            (CHUNK_SIZE + 7) as u64
        );
        producer.join().unwrap();
        assert!(rest.iter().all(|&b| b == 5));
    }

    #[test]
    fn a_writer_learns_when_the_reader_is_gone() {
        let (mut writer, reader) = pipe();
        drop(reader);
        let err = writer.write_all(&vec![0u8; CHUNK_SIZE]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
