//! Backups and restores against a real S3 server (moto) whose network breaks: a TCP fault
//! proxy between drp and moto resets connections mid-upload, answers 503, drops large
//! transfers, or refuses everything for a while ("the server died"); moto stays alive
//! behind it. Each test checks what drp promises: transient errors are retried (with
//! object_store's exponential backoff and jitter) and the backup completes whole; a backup
//! that cannot complete fails with a message naming the store, no snapshot becomes visible,
//! its multipart upload is aborted when the store still answers, and the next backup
//! succeeds; an upload whose abort could not reach the store is aborted by the next prune
//! (past its grace period); permanent errors (403, 404) fail at once; a restore cut off
//! leaves the target as it was.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use drp_backup::keys::generate_key;
use drp_backup::store::UPLOAD_PART_SIZE;
use drp_backup::{
    BackupStore, CreateOptions, PruneReport, Recipients, Repository, RestoreDestination,
    RestoreOptions, RetentionPolicy, SecretKeys, SourceSpec, open_store_with,
};
use support::fault_proxy::{Fault, FaultProxy};
use support::s3::S3Server;

/// Size of the backed-up file: random, so encryption cannot shrink it: four 5 MiB parts.
const SOURCE_BYTES: usize = 18 * 1024 * 1024;

struct World {
    dir: tempfile::TempDir,
    s3: S3Server,
    proxy: FaultProxy,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        generate_key("acme", &dir.path().join("keys"), None).unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(&src).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let data: Vec<u8> = (0..SOURCE_BYTES)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        fs::write(src.join("data.bin"), data).unwrap();
        let s3 = S3Server::start();
        let proxy = FaultProxy::start(s3.addr());
        World { dir, s3, proxy }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The store through the proxy, with drp's retry bounds.
    fn store(&self, max_retries: &str, retry_timeout: &str) -> Arc<dyn BackupStore> {
        self.store_at(&self.s3.url("drp"), max_retries, retry_timeout, &[])
    }

    fn store_at(
        &self,
        url: &str,
        max_retries: &str,
        retry_timeout: &str,
        overrides: &[(&str, &str)],
    ) -> Arc<dyn BackupStore> {
        let mut options: BTreeMap<String, String> = self
            .s3
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        options.insert("aws_endpoint".into(), self.proxy.endpoint());
        options.insert("drp_max_retries".into(), max_retries.into());
        options.insert("drp_retry_timeout".into(), retry_timeout.into());
        for (k, v) in overrides {
            options.insert((*k).into(), (*v).into());
        }
        open_store_with(url, options).unwrap()
    }

    async fn backup(&self, store: &Arc<dyn BackupStore>) -> drp_backup::Result<String> {
        let spec: SourceSpec = format!("www={}", self.path("src").display())
            .parse()
            .unwrap();
        let recipients = Recipients::from_files(&[self.path("keys/acme.pub.asc")]).unwrap();
        let repo = Repository::new(store.clone(), "acme").unwrap();
        repo.create(CreateOptions::new(vec![spec], recipients))
            .await
            .map(|m| m.snapshot)
    }

    async fn snapshots(&self) -> Vec<String> {
        let repo = Repository::new(self.store("0", "1s"), "acme").unwrap();
        repo.snapshots()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.manifest.snapshot)
            .collect()
    }

    /// Every object key under the stack (data and manifests), read directly from moto.
    async fn objects(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .store("0", "1s")
            .list("acme")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.sort();
        keys
    }

    /// `drp backup prune --keep-last 10 --orphan-grace GRACE`.
    async fn prune(
        &self,
        store: &Arc<dyn BackupStore>,
        grace: jiff::SignedDuration,
        dry_run: bool,
    ) -> drp_backup::Result<PruneReport> {
        let policy = RetentionPolicy {
            keep_last: Some(10),
            ..RetentionPolicy::default()
        };
        Repository::new(store.clone(), "acme")
            .unwrap()
            .prune(&policy, grace, dry_run)
            .await
    }

    async fn restore(&self, store: &Arc<dyn BackupStore>, target: &Path) -> drp_backup::Result<()> {
        let keys = SecretKeys::from_file(&self.path("keys/acme.sec.asc"), None).unwrap();
        let repo = Repository::new(store.clone(), "acme").unwrap();
        repo.restore(RestoreOptions::new(
            keys,
            RestoreDestination::Directory(target.to_path_buf()),
        ))
        .await
        .map(|_| ())
    }
}

/// Every entry under `root`: relative path → content (`<dir>` for directories).
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                out.insert(rel, b"<dir>".to_vec());
                walk(root, &path, out);
            } else {
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Resets every open connection once `proxy` has carried `after` bytes upstream.
fn reset_once_after(proxy: &FaultProxy, after: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.upstream_bytes() < after {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    proxy.reset_all();
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_503s_mid_upload_are_retried_and_the_backup_completes_whole() {
    let world = Arc::new(World::new());
    let store = world.store("10", "60s");
    // The first three requests (the start of the multipart upload among them) are throttled.
    world.proxy.set(Fault::ServiceUnavailable { remaining: 3 });
    // Once 7 MiB went up (inside the second part), every connection is reset, once.
    let resetter = {
        let world = world.clone();
        std::thread::spawn(move || reset_once_after(&world.proxy, 7 * 1024 * 1024))
    };
    let start = Instant::now();
    let snapshot = world
        .backup(&store)
        .await
        .expect("the backup rides out the faults");
    let elapsed = start.elapsed();
    assert!(resetter.join().unwrap(), "the upload never reached 7 MiB");
    assert_eq!(world.proxy.served_503(), 3);
    assert!(world.proxy.resets() >= 1);
    // More went up than the object's size: the part cut off was sent again.
    let stored: u64 = world.proxy.upstream_bytes();
    assert!(stored > SOURCE_BYTES as u64 + 1024 * 1024, "{stored}");
    eprintln!(
        "backup of {SOURCE_BYTES} bytes through 3 × 503 and {} reset(s): {elapsed:?}, \
         {stored} bytes sent upstream, {} connections",
        world.proxy.resets(),
        world.proxy.connections()
    );

    assert_eq!(world.snapshots().await, [snapshot]);
    assert_eq!(world.s3.incomplete_uploads(), Vec::<String>::new());
    let target = world.path("restored");
    world.restore(&store, &target).await.unwrap();
    assert_eq!(tree(&target.join("www")), tree(&world.path("src")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_drops_every_large_transfer_fails_the_backup_cleanly_and_the_next_succeeds() {
    let world = World::new();
    let store = world.store("2", "60s");
    // Small requests (start, abort, list, delete) pass; every part upload is cut at 1 MiB.
    world.proxy.set(Fault::ResetUpstreamAfter(1024 * 1024));
    let start = Instant::now();
    let error = world.backup(&store).await.unwrap_err().to_string();
    let elapsed = start.elapsed();
    eprintln!(
        "failed after {elapsed:?}, {} resets: {error}",
        world.proxy.resets()
    );
    // The part was tried 1 + 2 times.
    assert!(world.proxy.resets() >= 3, "{}", world.proxy.resets());
    assert!(error.contains(&world.s3.url("drp")), "{error}");
    assert!(error.contains("upload part"), "{error}");
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");

    world.proxy.set(Fault::None);
    // Nothing visible, nothing stored, and the upload was aborted (its parts freed).
    assert_eq!(world.snapshots().await, Vec::<String>::new());
    assert_eq!(world.objects().await, Vec::<String>::new());
    assert_eq!(world.s3.incomplete_uploads(), Vec::<String>::new());

    let snapshot = world.backup(&store).await.unwrap();
    assert_eq!(world.snapshots().await, [snapshot]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_dying_mid_upload_fails_within_the_retry_budget_and_the_next_backup_succeeds() {
    let world = Arc::new(World::new());
    let store = world.store("10", "3s");
    // Inside the second part, the server "dies": every connection is reset, new ones are
    // refused, until the backup gave up.
    let killer = {
        let world = world.clone();
        std::thread::spawn(move || {
            let ok = reset_once_after(&world.proxy, 7 * 1024 * 1024);
            world.proxy.set(Fault::Refuse);
            world.proxy.reset_all();
            ok
        })
    };
    let start = Instant::now();
    let error = world.backup(&store).await.unwrap_err().to_string();
    let elapsed = start.elapsed();
    assert!(killer.join().unwrap());
    eprintln!(
        "failed after {elapsed:?} ({} connections refused or reset): {error}",
        world.proxy.resets()
    );
    assert!(error.contains(&world.s3.url("drp")), "{error}");
    // Retried for the 3 s budget (a backoff may start just before it ends), not longer.
    assert!(world.proxy.resets() >= 3, "{}", world.proxy.resets());
    assert!(elapsed < Duration::from_secs(40), "{elapsed:?}");

    // The server is back.
    world.proxy.set(Fault::None);
    assert_eq!(world.snapshots().await, Vec::<String>::new());
    // Objects of the failed snapshot could not be removed while the store was down: none
    // exists here (the only source failed), and prune removes such leftovers later.
    assert_eq!(world.objects().await, Vec::<String>::new());
    // The abort was sent while the server was down: its upload stays incomplete, its parts
    // kept (and billed) by the server.
    let leftover = world.s3.incomplete_uploads();
    eprintln!("incomplete uploads left by the outage: {leftover:?}");
    assert_eq!(leftover.len(), 1, "{leftover:?}");
    assert!(
        leftover[0].starts_with("drp/acme/data/") && leftover[0].ends_with("/www.tar.zst.pgp"),
        "{leftover:?}"
    );

    // Younger than the default grace: it may be a backup still running, prune leaves it.
    let report = world.prune(&store, jiff::SignedDuration::from_hours(24), false);
    assert_eq!(report.await.unwrap().aborted_uploads, []);
    assert_eq!(world.s3.incomplete_uploads(), leftover);
    // With no grace it is aborted; the report names it relative to the store, as every key.
    let report = world
        .prune(&store, jiff::SignedDuration::ZERO, false)
        .await
        .unwrap();
    let aborted: Vec<&str> = report
        .aborted_uploads
        .iter()
        .map(|u| u.key.as_str())
        .collect();
    assert_eq!(aborted, [leftover[0].strip_prefix("drp/").unwrap()]);
    assert_eq!(world.s3.incomplete_uploads(), Vec::<String>::new());

    let snapshot = world.backup(&store).await.unwrap();
    assert_eq!(world.snapshots().await, [snapshot]);
    let target = world.path("restored");
    world.restore(&store, &target).await.unwrap();
    assert_eq!(tree(&target.join("www")), tree(&world.path("src")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_leaves_an_upload_in_progress_alone_until_its_grace_has_passed() {
    let world = World::new();
    let store = world.store("3", "30s");
    // A backup still running: its upload started, one part sent. (moto gives every upload
    // the same old initiation time; the snapshot id in the key still says "just now".)
    let snapshot = drp_backup::manifest::new_snapshot_id(jiff::Timestamp::now());
    let key = &format!("acme/data/{snapshot}/www.tar.zst.pgp");
    let mut upload = store.put_stream(key).await.unwrap();
    upload
        .write(Bytes::from(vec![7; UPLOAD_PART_SIZE + 1]))
        .await
        .unwrap();
    upload.write(Bytes::from_static(b"more")).await.unwrap();
    assert_eq!(world.s3.incomplete_uploads(), [format!("drp/{key}")]);

    let report = world
        .prune(&store, jiff::SignedDuration::from_hours(24), false)
        .await
        .unwrap();
    assert_eq!(report.aborted_uploads, []);
    assert_eq!(world.s3.incomplete_uploads(), [format!("drp/{key}")]);

    // A dry run lists it and keeps it; the listing rides out two 503s.
    world.proxy.set(Fault::ServiceUnavailable { remaining: 2 });
    let report = world
        .prune(&store, jiff::SignedDuration::ZERO, true)
        .await
        .unwrap();
    assert_eq!(world.proxy.served_503(), 2);
    assert!(report.dry_run);
    assert_eq!(report.aborted_uploads.len(), 1, "{report:?}");
    assert_eq!(&report.aborted_uploads[0].key, key);
    assert_eq!(world.s3.incomplete_uploads(), [format!("drp/{key}")]);

    let report = world
        .prune(&store, jiff::SignedDuration::ZERO, false)
        .await
        .unwrap();
    assert_eq!(report.aborted_uploads.len(), 1, "{report:?}");
    assert_eq!(world.s3.incomplete_uploads(), Vec::<String>::new());
    // Its writer finds out: the upload cannot be completed any more.
    assert!(upload.complete().await.is_err());
    assert_eq!(world.objects().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_and_missing_bucket_fail_fast_with_the_store_named() {
    let world = World::new();
    // Retries allowed for minutes: a permanent error must not use them.
    let budget = ("10", "5m");

    // 404: a bucket that does not exist (real moto answer: NoSuchBucket).
    let missing = format!("s3://no-such-bucket-{}/drp", std::process::id());
    let store = world.store_at(&missing, budget.0, budget.1, &[]);
    let start = Instant::now();
    let error = world.backup(&store).await.unwrap_err().to_string();
    let elapsed = start.elapsed();
    eprintln!("missing bucket, after {elapsed:?}: {error}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(error.contains(&missing), "{error}");
    assert!(error.contains("the bucket does not exist"), "{error}");
    let restore = world
        .restore(&store, &world.path("restored"))
        .await
        .unwrap_err()
        .to_string();
    assert!(restore.contains(&missing), "{restore}");
    assert!(!world.path("restored").exists());

    // 403: the server refuses the credentials. moto accepts any credentials, so the proxy
    // answers as S3 does to a wrong secret key.
    world.proxy.set(Fault::Status {
        code: 403,
        reason: "Forbidden",
        error: "SignatureDoesNotMatch",
    });
    let store = world.store("10", "5m");
    let start = Instant::now();
    let error = world.backup(&store).await.unwrap_err().to_string();
    let elapsed = start.elapsed();
    eprintln!(
        "forbidden, after {elapsed:?} and {} requests: {error}",
        world.proxy.served_status()
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(error.contains(&world.s3.url("drp")), "{error}");
    assert!(error.contains("403"), "{error}");
    assert!(error.contains("SignatureDoesNotMatch"), "{error}");
    // One answer for the start of the upload, one for the cleanup's listing: none retried.
    assert!(
        world.proxy.served_status() <= 2,
        "{}",
        world.proxy.served_status()
    );
    // Listing incomplete uploads (prune's own request) fails alike, at once.
    let served = world.proxy.served_status();
    let error = store
        .incomplete_uploads("acme/data")
        .await
        .unwrap_err()
        .to_string();
    eprintln!("forbidden listing of incomplete uploads: {error}");
    assert!(error.contains(&world.s3.url("drp")), "{error}");
    assert!(
        error.contains("list incomplete uploads under acme/data"),
        "{error}"
    );
    assert!(error.contains("403"), "{error}");
    assert!(error.contains("SignatureDoesNotMatch"), "{error}");
    assert_eq!(world.proxy.served_status(), served + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_cut_off_by_the_store_leaves_the_target_as_it_was() {
    let world = World::new();
    let store = world.store("2", "60s");
    world.backup(&store).await.unwrap();

    let target = world.path("target");
    fs::create_dir_all(target.join("old")).unwrap();
    fs::write(target.join("old/keep.txt"), "the previous contents\n").unwrap();
    let before = tree(&target);
    // Every response is cut after 2 MiB; resuming the object with a range request is retried
    // twice, then the read fails.
    world
        .proxy
        .set(Fault::ResetDownstreamAfter(2 * 1024 * 1024));
    let start = Instant::now();
    let error = world
        .restore(&store, &target)
        .await
        .unwrap_err()
        .to_string();
    eprintln!(
        "restore failed after {:?}, {} resets: {error}",
        start.elapsed(),
        world.proxy.resets()
    );
    assert!(error.contains(&world.s3.url("drp")), "{error}");
    assert_eq!(tree(&target), before, "the target changed");

    world.proxy.set(Fault::None);
    world.restore(&store, &target).await.unwrap();
    assert_eq!(tree(&target.join("www")), tree(&world.path("src")));
    assert_eq!(
        fs::read_to_string(target.join("old/keep.txt")).unwrap(),
        "the previous contents\n"
    );
}
