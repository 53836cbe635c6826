//! Throughput of drp's backup pipeline, in-process: `Repository::create` (read → zstd →
//! OpenPGP → store) and `Repository::verify` (store → OpenPGP → zstd → check) of one 64 MiB
//! file source (half random, half repeated text) into an in-memory store, so that neither
//! the disk nor the network is measured. Run with `cargo bench -p drp-benches`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use drp_backup::keys::generate_key;
use drp_backup::{
    CreateOptions, Recipients, Repository, SecretKeys, SnapshotSelector, SourceOrigin, SourceSpec,
    open_store,
};
use tokio::runtime::Runtime;

/// Size of the file backed up.
const SOURCE_BYTES: u64 = 64 * 1024 * 1024;

struct Fixture {
    _dir: tempfile::TempDir,
    spec: SourceSpec,
    recipients: Recipients,
    keys: SecretKeys,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = generate_key("bench", &dir.path().join("keys"), None).expect("a new key");
    let recipients = Recipients::from_files(std::slice::from_ref(&key.public_path))
        .expect("the new certificate loads");
    let keys = SecretKeys::from_file(&key.secret_path, None).expect("the new secret key loads");
    let source = dir.path().join("data.bin");
    drp_benches::write_mixed_file(&source, SOURCE_BYTES).expect("the source file is written");
    Fixture {
        spec: SourceSpec {
            name: "data".into(),
            origin: SourceOrigin::Path(source),
        },
        _dir: dir,
        recipients,
        keys,
    }
}

/// A repository in a fresh in-memory store (dropped with it, so memory does not pile up).
fn fresh_repository() -> Repository {
    Repository::new(open_store("memory://").expect("memory store"), "bench").expect("stack")
}

fn create_snapshot(rt: &Runtime, repo: &Repository, f: &Fixture) {
    let options = CreateOptions::new(vec![f.spec.clone()], f.recipients.clone());
    let manifest = rt.block_on(repo.create(options)).expect("backup succeeds");
    assert_eq!(manifest.sources[0].plain_bytes, SOURCE_BYTES);
    black_box(manifest);
}

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let f = fixture();
    warm_page_cache(&f.spec);

    let mut group = c.benchmark_group("pipeline_64MiB");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Bytes(SOURCE_BYTES));

    group.bench_function("create", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // The store is set up and dropped outside the timed part.
                let repo = fresh_repository();
                let start = Instant::now();
                create_snapshot(&rt, &repo, &f);
                total += start.elapsed();
            }
            total
        })
    });

    let repo = fresh_repository();
    create_snapshot(&rt, &repo, &f);
    group.bench_function("verify", |b| {
        b.iter(|| {
            let outcomes = rt
                .block_on(repo.verify(Some(&SnapshotSelector::Latest), &f.keys, None))
                .expect("the snapshot is found");
            for (id, outcome) in &outcomes {
                let verified = outcome.as_ref().unwrap_or_else(|e| panic!("{id}: {e}"));
                assert_eq!(verified.sources[0].plain_bytes, SOURCE_BYTES);
            }
            black_box(outcomes)
        })
    });
    group.finish();
}

/// Reads the source once so that every sample sees it in the page cache.
fn warm_page_cache(spec: &SourceSpec) {
    if let SourceOrigin::Path(path) = &spec.origin {
        read_all(path);
    }
}

fn read_all(path: &Path) {
    let mut file = std::fs::File::open(path).expect("the source opens");
    std::io::copy(&mut file, &mut std::io::sink()).expect("the source reads");
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
