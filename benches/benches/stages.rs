//! The backup pipeline's two expensive stages alone, in memory, so that `pipeline.rs`'s
//! figures can be split between them: the OpenPGP stream (`drp_backup::crypto::encrypt` to one
//! recipient, `crypto::decrypt` with its secret key, MDC checked) and zstd (level 3 with the
//! settings `Repository::create` uses; decompression as a restore does it). Input: the same
//! 64 MiB of half random, half repeated text as `pipeline.rs`, held in memory; output goes to
//! `io::sink()`. Run with `cargo bench -p drp-benches --bench stages`.

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};
use drp_backup::keys::generate_key;
use drp_backup::{Recipients, SecretKeys, crypto};

/// Size of the plaintext each benchmark processes.
const DATA_BYTES: u64 = 64 * 1024 * 1024;

/// The pipeline hands its stages chunks of this size (`pipe::CHUNK_SIZE` in drp-backup).
const CHUNK: usize = 256 * 1024;

/// zstd settings of `Repository::create` (drp-backup/src/repo.rs: `DEFAULT_COMPRESSION_LEVEL`,
/// `compression_workers`, `ZSTD_JOB_SIZE`, `ZSTD_OVERLAP_LOG`); keep them in step.
const ZSTD_LEVEL: i32 = 3;
const ZSTD_JOB_SIZE: u32 = 1 << 20;
const ZSTD_OVERLAP_LOG: u32 = 4;

fn zstd_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4) as u32)
}

/// A `'static` reader over shared bytes (`crypto::decrypt` wants to own its source).
struct Shared {
    data: Arc<[u8]>,
    pos: usize,
}

impl Read for Shared {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = out.len().min(self.data.len() - self.pos);
        out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A `'static` sink whose bytes can be taken back (`crypto::encrypt` owns its sink).
#[derive(Clone, Default)]
struct SharedVec(Arc<Mutex<Vec<u8>>>);

impl Write for SharedVec {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn shared(data: &Arc<[u8]>) -> Shared {
    Shared {
        data: data.clone(),
        pos: 0,
    }
}

/// Writes `data` to `to` in pipeline-sized chunks.
fn write_chunks(data: &[u8], to: &mut impl Write) {
    for chunk in data.chunks(CHUNK) {
        to.write_all(chunk).expect("the write succeeds");
    }
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Bytes(DATA_BYTES));
    group
}

fn stages(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = generate_key("bench", &dir.path().join("keys"), None).expect("a new key");
    let recipients = Recipients::from_files(std::slice::from_ref(&key.public_path))
        .expect("the new certificate loads");
    let keys = SecretKeys::from_file(&key.secret_path, None).expect("the new secret key loads");
    let source = dir.path().join("data.bin");
    drp_benches::write_mixed_file(&source, DATA_BYTES).expect("the data is written");
    let plain: Arc<[u8]> = std::fs::read(&source).expect("the data reads").into();

    let mut openpgp = group(c, "openpgp_64MiB");
    openpgp.bench_function("encrypt", |b| {
        b.iter(|| {
            let mut writer = crypto::encrypt(&recipients, io::sink()).expect("encryption starts");
            write_chunks(&plain, &mut writer);
            writer.finish().expect("encryption finishes");
        })
    });
    let out = SharedVec::default();
    let mut writer = crypto::encrypt(&recipients, out.clone()).expect("encryption starts");
    write_chunks(&plain, &mut writer);
    writer.finish().expect("encryption finishes");
    let message: Arc<[u8]> = std::mem::take(&mut *out.0.lock().expect("not poisoned")).into();
    openpgp.bench_function("decrypt", |b| {
        b.iter(|| {
            let mut reader = crypto::decrypt(&keys, shared(&message)).expect("the key fits");
            let n = io::copy(&mut reader, &mut io::sink()).expect("the message is intact");
            assert_eq!(n, DATA_BYTES);
        })
    });
    openpgp.finish();

    let mut zstd_group = group(c, "zstd_64MiB");
    zstd_group.bench_function("compress", |b| {
        b.iter(|| black_box(compress(&plain, io::sink())))
    });
    let compressed: Arc<[u8]> = compress(&plain, Vec::new()).into();
    zstd_group.bench_function("decompress", |b| {
        b.iter(|| {
            let mut decoder = zstd::Decoder::new(shared(&compressed)).expect("a decoder");
            let n = io::copy(&mut decoder, &mut io::sink()).expect("the frames decode");
            assert_eq!(n, DATA_BYTES);
        })
    });
    zstd_group.finish();
}

/// zstd as `Repository::create` runs it; returns the output.
fn compress<W: Write>(data: &[u8], out: W) -> W {
    let mut encoder = zstd::Encoder::new(out, ZSTD_LEVEL).expect("an encoder");
    let workers = zstd_workers();
    if workers > 1 {
        encoder.multithread(workers).expect("zstd threads");
        encoder
            .set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))
            .expect("job size");
        encoder
            .set_parameter(zstd::stream::raw::CParameter::OverlapSizeLog(
                ZSTD_OVERLAP_LOG,
            ))
            .expect("overlap");
    }
    write_chunks(data, &mut encoder);
    encoder.finish().expect("zstd finishes")
}

criterion_group!(benches, stages);
criterion_main!(benches);
