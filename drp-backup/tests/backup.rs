//! Backups end to end through the library on a local filesystem store: round trips, refusal
//! of bad data without touching the target, customer isolation, retention.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use drp_backup::keys::generate_key;
use drp_backup::{
    BackupStore, CreateOptions, Error, Manifest, Recipients, Repository, RestoreDestination,
    RestoreOptions, RetentionPolicy, SecretKeys, Signer, SnapshotSelector, SourceSpec,
    TrustedSigners, open_store,
};

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<dyn BackupStore>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&format!("file://{}/store", dir.path().display())).unwrap();
        for name in ["acme", "globex", "ops", "mallory"] {
            generate_key(name, &dir.path().join("keys"), None).unwrap();
        }
        Self { dir, store }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn cert(&self, name: &str) -> PathBuf {
        self.path(&format!("keys/{name}.pub.asc"))
    }

    fn recipients(&self, name: &str) -> Recipients {
        Recipients::from_files(&[self.cert(name)]).unwrap()
    }

    fn secret(&self, name: &str) -> SecretKeys {
        SecretKeys::from_file(&self.path(&format!("keys/{name}.sec.asc")), None).unwrap()
    }

    fn trust(&self, name: &str) -> TrustedSigners {
        TrustedSigners::from_files(&[self.cert(name)]).unwrap()
    }

    fn signer(&self, name: &str) -> Signer {
        Signer::from_file(&self.path(&format!("keys/{name}.sec.asc")), None).unwrap()
    }

    fn repo(&self, stack: &str) -> Repository {
        Repository::new(self.store.clone(), stack).unwrap()
    }

    /// A directory with nested files, an empty file, a symlink and an executable.
    fn sample_tree(&self) -> PathBuf {
        let root = self.path("src/www");
        fs::create_dir_all(root.join("static/css")).unwrap();
        fs::write(root.join("index.html"), "<h1>acme</h1>\n").unwrap();
        fs::write(root.join("static/css/site.css"), "body{}\n".repeat(5000)).unwrap();
        fs::write(root.join("empty"), "").unwrap();
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        fs::write(root.join("static/blob.bin"), data).unwrap();
        std::os::unix::fs::symlink("index.html", root.join("home.html")).unwrap();
        fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
        root
    }

    async fn backup(
        &self,
        stack: &str,
        recipient: &str,
        signer: Option<&str>,
        sources: &[&str],
    ) -> Manifest {
        let sources = sources
            .iter()
            .map(|s| s.parse::<SourceSpec>().unwrap())
            .collect();
        let mut options = CreateOptions::new(sources, self.recipients(recipient));
        options.signer = signer.map(|s| self.signer(s));
        self.repo(stack).create(options).await.unwrap()
    }

    fn restore_options(&self, key: &str, target: &Path) -> RestoreOptions {
        RestoreOptions::new(
            self.secret(key),
            RestoreDestination::Directory(target.to_path_buf()),
        )
    }

    fn object_path(&self, manifest: &Manifest, source: &str) -> PathBuf {
        let record = manifest.sources.iter().find(|s| s.name == source).unwrap();
        self.path("store").join(&record.object)
    }
}

/// Every entry under `root`: relative path → (mode, symlink target or content).
fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let mode = meta.permissions().mode();
            if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    (
                        mode,
                        fs::read_link(&path)
                            .unwrap()
                            .into_os_string()
                            .into_encoded_bytes(),
                    ),
                );
            } else if meta.is_dir() {
                out.insert(rel, (mode, b"<dir>".to_vec()));
                walk(root, &path, out);
            } else {
                out.insert(rel, (mode, fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_file_and_command_sources_round_trip_byte_for_byte() {
    let f = Fixture::new();
    let www = f.sample_tree();
    fs::write(f.path("src/app.conf"), "listen 8080\n").unwrap();
    let manifest = f
        .backup(
            "acme",
            "acme",
            None,
            &[
                &format!("www={}", www.display()),
                &format!("conf={}", f.path("src/app.conf").display()),
                "db=cmd:printf 'CREATE TABLE t;\\n'; seq 1 50000",
            ],
        )
        .await;

    assert_eq!(manifest.stack, "acme");
    let names: Vec<_> = manifest
        .sources
        .iter()
        .map(|s| (s.name.as_str(), s.kind))
        .collect();
    use drp_backup::SourceKind::*;
    assert_eq!(names, [("www", Directory), ("conf", File), ("db", Command)]);
    for source in &manifest.sources {
        let object = f.path("store").join(&source.object);
        let bytes = fs::read(&object).unwrap();
        assert_eq!(bytes.len() as u64, source.stored_bytes, "{}", source.name);
        assert_eq!(sha256_hex(&bytes), source.sha256, "{}", source.name);
    }
    assert_eq!(manifest.sources[1].plain_bytes, 12);

    let target = f.path("restored");
    let report = f
        .repo("acme")
        .restore(f.restore_options("acme", &target))
        .await
        .unwrap();
    assert_eq!(report.snapshot, manifest.snapshot);
    assert_eq!(tree(&target.join("www")), tree(&www));
    assert_eq!(fs::read(target.join("conf")).unwrap(), b"listen 8080\n");
    let expected_dump: String = std::iter::once("CREATE TABLE t;\n".to_string())
        .chain((1..=50000).map(|i| format!("{i}\n")))
        .collect();
    assert_eq!(
        fs::read_to_string(target.join("db")).unwrap(),
        expected_dump
    );
    // Nothing of the staging directory is left behind.
    let mut entries: Vec<_> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    entries.sort();
    assert_eq!(entries, ["conf", "db", "www"]);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dump_command_commits_nothing() {
    let f = Fixture::new();
    let www = f.sample_tree();
    let sources = vec![
        format!("www={}", www.display()).parse().unwrap(),
        "db=cmd:echo 'half a dump'; echo 'pg_dump: connection refused' >&2; exit 2"
            .parse()
            .unwrap(),
    ];
    let err = f
        .repo("acme")
        .create(CreateOptions::new(sources, f.recipients("acme")))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::SourceFailed { .. }), "{message}");
    assert!(message.contains("stack acme, source db"), "{message}");
    assert!(
        message.contains("exit status 2") && message.contains("connection refused"),
        "{message}"
    );
    assert!(f.repo("acme").snapshots().await.unwrap().is_empty());
    assert!(
        f.store.list("acme").await.unwrap().is_empty(),
        "objects left behind"
    );
}

/// Backs up, damages the store with `damage`, restores into a target that already holds a
/// file, and checks the error (an integrity failure) and that the target is exactly as it was.
async fn assert_refused<D>(
    trust: Option<&str>,
    key: &str,
    signer: Option<&str>,
    damage: D,
    expected: &[&str],
) where
    D: FnOnce(&Fixture, &Manifest),
{
    assert_refused_as(true, trust, key, signer, damage, expected).await;
}

/// [`assert_refused`], where the error is an integrity failure or, with `integrity` false,
/// not one (the data is fine, the key is wrong).
async fn assert_refused_as<D>(
    integrity: bool,
    trust: Option<&str>,
    key: &str,
    signer: Option<&str>,
    damage: D,
    expected: &[&str],
) where
    D: FnOnce(&Fixture, &Manifest),
{
    let f = Fixture::new();
    let www = f.sample_tree();
    let manifest = f
        .backup(
            "acme",
            "acme",
            signer,
            &[&format!("www={}", www.display()), "db=cmd:seq 1 100000"],
        )
        .await;
    damage(&f, &manifest);

    let target = f.path("target");
    fs::create_dir_all(target.join("keep")).unwrap();
    fs::write(target.join("keep/notes.txt"), "operator notes").unwrap();
    let before = tree(&target);

    let mut options = f.restore_options(key, &target);
    options.trust = trust.map(|t| f.trust(t));
    let err = f.repo("acme").restore(options).await.unwrap_err();
    let message = err.to_string();
    assert_eq!(
        err.is_integrity_failure(),
        integrity,
        "integrity failure or not: {message}"
    );
    assert!(
        message.contains(&format!("stack acme, snapshot {}", manifest.snapshot)),
        "{message}"
    );
    for part in expected {
        assert!(message.contains(part), "expected {part:?} in: {message}");
    }
    assert_eq!(tree(&target), before, "the restore target changed");

    // verify refuses the same snapshot, and writes nothing.
    let outcomes = f
        .repo("acme")
        .verify(None, &f.secret(key), trust.map(|t| f.trust(t)).as_ref())
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    let verified = outcomes[0].1.as_ref();
    assert!(
        verified.is_err_and(|e| e.is_integrity_failure() == integrity),
        "{verified:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_object_is_refused_and_the_target_left_as_it_was() {
    assert_refused(
        None,
        "acme",
        None,
        |f, m| {
            let path = f.object_path(m, "www");
            let bytes = fs::read(&path).unwrap();
            fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        },
        &["source www", "truncated or replaced"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bit_flipped_object_is_refused_and_the_target_left_as_it_was() {
    assert_refused(
        None,
        "acme",
        None,
        |f, m| {
            let path = f.object_path(m, "www");
            let mut bytes = fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
            fs::write(&path, &bytes).unwrap();
        },
        &["source www", "SHA-256", "corrupted or replaced"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_object_is_refused_and_the_target_left_as_it_was() {
    assert_refused(
        None,
        "acme",
        None,
        |f, m| {
            // Same stack, same key, valid OpenPGP: only the manifest can tell it is not `www`.
            fs::copy(f.object_path(m, "db"), f.object_path(m, "www")).unwrap();
        },
        &["source www", "truncated or replaced"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_and_the_target_left_as_it_was() {
    // Not an integrity failure: the data matches its manifest, the key is the problem.
    assert_refused_as(
        false,
        None,
        "globex",
        None,
        |_, _| {},
        &["cannot decrypt", "none of the given secret keys"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_trust_an_unsigned_manifest_is_refused() {
    assert_refused(
        Some("ops"),
        "acme",
        None,
        |_, _| {},
        &["manifest refused", "not signed"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_trust_a_forged_manifest_is_refused() {
    assert_refused(
        Some("ops"),
        "acme",
        Some("ops"),
        |f, m| {
            // An attacker swaps the data and fixes the hash and size in the manifest.
            fs::copy(f.object_path(m, "db"), f.object_path(m, "www")).unwrap();
            let path = f.path(&format!("store/acme/snapshots/{}.json", m.snapshot));
            let mut forged: Manifest = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
            let db = forged.sources[1].clone();
            forged.sources[0].sha256 = db.sha256;
            forged.sources[0].stored_bytes = db.stored_bytes;
            fs::write(&path, serde_json::to_vec_pretty(&forged).unwrap()).unwrap();
        },
        &["manifest refused", "signature"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_trust_a_manifest_signed_by_an_untrusted_key_is_refused() {
    assert_refused(
        Some("ops"),
        "acme",
        Some("mallory"),
        |_, _| {},
        &["manifest refused", "signature"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_manifest_passes_the_trust_check() {
    let f = Fixture::new();
    f.backup("acme", "acme", Some("ops"), &["db=cmd:echo ok"])
        .await;
    let mut options = f.restore_options("acme", &f.path("t"));
    options.trust = Some(f.trust("ops"));
    let report = f.repo("acme").restore(options).await.unwrap();
    assert!(report.verified_signer.is_some());
    assert_eq!(fs::read(f.path("t/db")).unwrap(), b"ok\n");
    let listed = f.repo("acme").snapshots().await.unwrap();
    assert!(listed[0].signed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_customers_key_cannot_open_another_customers_backup() {
    let f = Fixture::new();
    // The backup host holds certificates only: copy them to a directory without secret keys.
    let host_keys = f.path("backup-host");
    fs::create_dir_all(&host_keys).unwrap();
    for name in ["acme", "globex"] {
        fs::copy(f.cert(name), host_keys.join(format!("{name}.pub.asc"))).unwrap();
    }
    assert!(
        fs::read_dir(&host_keys).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("sec"))
    );
    for stack in ["acme", "globex"] {
        let recipients =
            Recipients::from_files(&[host_keys.join(format!("{stack}.pub.asc"))]).unwrap();
        let spec = format!("db=cmd:echo {stack} secrets").parse().unwrap();
        f.repo(stack)
            .create(CreateOptions::new(vec![spec], recipients))
            .await
            .unwrap();
    }

    let err = f
        .repo("globex")
        .restore(f.restore_options("acme", &f.path("stolen")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stack globex"), "{err}");
    assert!(err.to_string().contains("cannot decrypt"), "{err}");
    assert!(!f.path("stolen").exists());

    f.repo("globex")
        .restore(f.restore_options("globex", &f.path("ok")))
        .await
        .unwrap();
    assert_eq!(fs::read(f.path("ok/db")).unwrap(), b"globex secrets\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_never_overwrites_and_selects_sources_by_name() {
    let f = Fixture::new();
    f.backup("acme", "acme", None, &["a=cmd:echo A", "b=cmd:echo B"])
        .await;
    let target = f.path("t");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("a"), "live data").unwrap();

    let err = f
        .repo("acme")
        .restore(f.restore_options("acme", &target))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Target { .. }), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(fs::read(target.join("a")).unwrap(), b"live data");
    assert!(!target.join("b").exists());

    let mut options = f.restore_options("acme", &target);
    options.sources = vec!["b".into()];
    f.repo("acme").restore(options).await.unwrap();
    assert_eq!(fs::read(target.join("b")).unwrap(), b"B\n");

    let mut options = f.restore_options("acme", &target);
    options.sources = vec!["nope".into()];
    let err = f
        .repo("acme")
        .restore(options)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no source \"nope\" (it has: a, b)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_listed_newest_first_and_selected_by_id_prefix() {
    let f = Fixture::new();
    let first = f.backup("acme", "acme", None, &["v=cmd:echo 1"]).await;
    let second = f.backup("acme", "acme", None, &["v=cmd:echo 2"]).await;
    let listed = f.repo("acme").snapshots().await.unwrap();
    let ids: Vec<_> = listed.iter().map(|e| e.manifest.snapshot.clone()).collect();
    let mut expected = vec![first.snapshot.clone(), second.snapshot.clone()];
    expected.sort();
    expected.reverse();
    assert_eq!(ids, expected);

    let mut options = f.restore_options("acme", &f.path("t"));
    options.snapshot = SnapshotSelector::Id(first.snapshot[..24].to_string());
    let report = f.repo("acme").restore(options).await.unwrap();
    assert_eq!(report.snapshot, first.snapshot);
    assert_eq!(fs::read(f.path("t/v")).unwrap(), b"1\n");

    let missing = f
        .repo("acme")
        .resolve(&SnapshotSelector::Id("1999".into()))
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("no snapshot 1999"),
        "{missing}"
    );
    assert!(
        f.repo("globex")
            .resolve(&SnapshotSelector::Latest)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_what_no_rule_keeps_and_interrupted_backups() {
    let f = Fixture::new();
    let mut made = Vec::new();
    for i in 0..3 {
        made.push(
            f.backup("acme", "acme", Some("ops"), &[&format!("v=cmd:echo {i}")])
                .await,
        );
    }
    // An interrupted backup: data but no manifest.
    let orphan = "20200101T000000.000Z-deadbeef";
    f.store
        .put(
            &format!("acme/data/{orphan}/v.zst.pgp"),
            bytes::Bytes::from_static(b"partial"),
        )
        .await
        .unwrap();

    let repo = f.repo("acme");
    let policy = RetentionPolicy {
        keep_last: Some(1),
        ..Default::default()
    };
    let hour = jiff::SignedDuration::from_hours(1);

    let dry = repo
        .prune(&policy, jiff::SignedDuration::ZERO, true)
        .await
        .unwrap();
    assert_eq!(dry.decisions.iter().filter(|d| !d.keep).count(), 2);
    assert_eq!(dry.orphans, [orphan]);
    assert_eq!(
        repo.snapshots().await.unwrap().len(),
        3,
        "a dry run removed something"
    );

    // A recent interrupted backup may still be running: the grace period protects it.
    let report = repo
        .prune(&policy, hour * 24 * 365 * 100, false)
        .await
        .unwrap();
    assert!(report.orphans.is_empty());
    let left = repo.snapshots().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].manifest.snapshot, made[2].snapshot);
    // Removed snapshots are gone whole: manifest, signature and data.
    for m in &made[..2] {
        assert!(
            f.store
                .list(&format!("acme/data/{}", m.snapshot))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            !f.path(&format!("store/acme/snapshots/{}.json.sig", m.snapshot))
                .exists()
        );
    }
    assert_eq!(
        f.store
            .list(&format!("acme/data/{orphan}"))
            .await
            .unwrap()
            .len(),
        1
    );

    let report = repo
        .prune(&policy, jiff::SignedDuration::ZERO, false)
        .await
        .unwrap();
    assert_eq!(report.orphans, [orphan]);
    assert!(
        f.store
            .list(&format!("acme/data/{orphan}"))
            .await
            .unwrap()
            .is_empty()
    );

    let err = repo
        .prune(&RetentionPolicy::default(), hour, false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::EmptyRetentionPolicy));
    assert_eq!(repo.snapshots().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_all_reports_each_snapshot_on_its_own() {
    let f = Fixture::new();
    let good = f.backup("acme", "acme", None, &["v=cmd:seq 1 1000"]).await;
    let bad = f.backup("acme", "acme", None, &["v=cmd:seq 1 2000"]).await;
    let path = f.object_path(&bad, "v");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    fs::write(&path, bytes).unwrap();

    let outcomes = f
        .repo("acme")
        .verify(None, &f.secret("acme"), None)
        .await
        .unwrap();
    let by_id: BTreeMap<_, _> = outcomes.into_iter().collect();
    assert_eq!(
        by_id[&good.snapshot].as_ref().unwrap().sources[0].plain_bytes,
        3893
    );
    let err = by_id[&bad.snapshot].as_ref().unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("snapshot {}, source v", bad.snapshot)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_to_streams_one_source_into_a_command() {
    let f = Fixture::new();
    let www = f.sample_tree();
    f.backup(
        "acme",
        "acme",
        None,
        &[&format!("www={}", www.display()), "db=cmd:seq 1 100000"],
    )
    .await;
    let dump = f.path("dump.sql");
    let mut options = f.restore_options("acme", &f.path("unused"));
    options.destination = RestoreDestination::Command(format!("cat > '{}'", dump.display()));
    options.sources = vec!["db".into()];
    let report = f.repo("acme").restore(options).await.unwrap();
    assert_eq!(report.sources[0].path, None);
    let expected: String = (1..=100000).map(|i| format!("{i}\n")).collect();
    assert_eq!(fs::read_to_string(&dump).unwrap(), expected);

    // A directory source arrives as a tar stream.
    let unpacked = f.path("unpacked");
    fs::create_dir_all(&unpacked).unwrap();
    let mut options = f.restore_options("acme", &f.path("unused"));
    options.destination =
        RestoreDestination::Command(format!("tar -x -C '{}'", unpacked.display()));
    options.sources = vec!["www".into()];
    f.repo("acme").restore(options).await.unwrap();
    assert_eq!(tree(&unpacked), tree(&www));

    let mut options = f.restore_options("acme", &f.path("unused"));
    options.destination = RestoreDestination::Command("cat".into());
    let err = f
        .repo("acme")
        .restore(options)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a command takes exactly one source; pick one of www, db with --source"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_to_never_lets_a_command_see_the_end_of_bad_data() {
    let f = Fixture::new();
    let manifest = f
        .backup("acme", "acme", None, &["db=cmd:seq 1 300000"])
        .await;
    let path = f.object_path(&manifest, "db");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 30;
    bytes[last] ^= 0x04;
    fs::write(&path, bytes).unwrap();

    // The command marks whether its input ended cleanly, as a database import would commit.
    let committed = f.path("committed");
    let mut options = f.restore_options("acme", &f.path("unused"));
    options.destination = RestoreDestination::Command(format!(
        "cat > /dev/null && touch '{}'",
        committed.display()
    ));
    let err = f.repo("acme").restore(options).await.unwrap_err();
    assert!(err.is_integrity_failure(), "{err}");
    assert!(err.to_string().contains("source db"), "{err}");
    assert!(
        !committed.exists(),
        "the command saw a clean end of corrupt input"
    );
}
