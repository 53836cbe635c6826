//! A restore whose target fills up: the target is on a 1 MiB tmpfs that this test mounts (it
//! needs root, and fails, not skips, without it). The restore must fail with a clear error
//! (ENOSPC by name, and stack, snapshot and source), remove its staging directory, and leave
//! the target as it was, so the space is free again.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use drp_backup::keys::generate_key;
use drp_backup::{
    BackupStore, CreateOptions, Error, Manifest, Recipients, Repository, RestoreDestination,
    RestoreOptions, SecretKeys, open_store,
};

/// A tmpfs mounted for the test, unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        assert_eq!(
            fs::metadata("/proc/self").unwrap().uid(),
            0,
            "this test mounts a tmpfs to fill it up: run it as root (CI does)"
        );
        fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "drp-test",
            ])
            .arg(path)
            .status()
            .expect("running mount");
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_file() {
                fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            out.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                (meta.mode(), content),
            );
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Blocks in use on the filesystem of `path` (`df`'s used column, in 1 KiB blocks).
fn used_kib(path: &Path) -> u64 {
    let out = Command::new("df")
        .arg("--output=used")
        .arg("-k")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_into_a_full_disk_fails_clearly_and_leaves_the_target_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn BackupStore> =
        open_store(&format!("file://{}/store", dir.path().display())).unwrap();
    generate_key("acme", &dir.path().join("keys"), None).unwrap();

    // 3 MiB that zstd cannot shrink, as a directory source and as a dump; 1 MiB of room.
    let www = dir.path().join("src/www");
    fs::create_dir_all(www.join("static")).unwrap();
    fs::write(www.join("index.html"), "<h1>acme</h1>\n").unwrap();
    let noise: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(www.join("static/blob.bin"), &noise).unwrap();
    let specs = [
        format!("www={}", www.display()),
        format!("db=cmd:cat {}", www.join("static/blob.bin").display()),
    ];
    let recipients = Recipients::from_files(&[dir.path().join("keys/acme.pub.asc")]).unwrap();
    let repo = Repository::new(store, "acme").unwrap();
    let manifest: Manifest = repo
        .create(CreateOptions::new(
            specs.iter().map(|s| s.parse().unwrap()).collect(),
            recipients,
        ))
        .await
        .unwrap();

    let small = dir.path().join("small");
    let _tmpfs = Tmpfs::mount(&small, "1m");
    let empty = used_kib(&small);
    let keys = SecretKeys::from_file(&dir.path().join("keys/acme.sec.asc"), None).unwrap();
    let restore = |target: PathBuf, source: &str| {
        let mut options =
            RestoreOptions::new(keys.clone(), RestoreDestination::Directory(target.clone()));
        options.sources = vec![source.to_string()];
        options
    };

    for source in ["www", "db"] {
        // A target that exists and holds the operator's notes: left exactly as it was.
        let target = small.join("existing");
        fs::create_dir_all(target.join("keep")).unwrap();
        fs::write(target.join("keep/notes.txt"), "operator notes").unwrap();
        let before = tree(&target);
        let used_before = used_kib(&small);

        let err = repo
            .restore(restore(target.clone(), source))
            .await
            .unwrap_err();
        let message = err.to_string();
        eprintln!("{source}: {message}");
        assert!(
            matches!(&err, Error::Io { source: e, .. } if e.kind() == std::io::ErrorKind::StorageFull),
            "{source}: {err:?}"
        );
        // The disk is full: the operator's problem, not the backup's.
        assert!(!err.is_integrity_failure(), "{message}");
        for part in [
            format!(
                "stack acme, snapshot {}, source {source}",
                manifest.snapshot
            ),
            "No space left on device".to_string(),
        ] {
            assert!(message.contains(&part), "expected {part:?} in: {message}");
        }
        assert_eq!(tree(&target), before, "{source}: the target changed");
        assert_eq!(
            used_kib(&small),
            used_before,
            "{source}: space not given back"
        );

        // A target the restore creates: removed again.
        let fresh = small.join("fresh");
        let err = repo
            .restore(restore(fresh.clone(), source))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("No space left on device"), "{err}");
        assert!(
            !fresh.exists(),
            "{source}: the created target was left behind"
        );
        fs::remove_dir_all(&target).unwrap();
        assert_eq!(used_kib(&small), empty, "{source}");
    }

    // With room, the same snapshot restores: the failure was the disk's, not the data's.
    drop(_tmpfs);
    let target = dir.path().join("roomy");
    let keys = SecretKeys::from_file(&dir.path().join("keys/acme.sec.asc"), None).unwrap();
    repo.restore(RestoreOptions::new(
        keys,
        RestoreDestination::Directory(target.clone()),
    ))
    .await
    .unwrap();
    assert_eq!(fs::read(target.join("www/static/blob.bin")).unwrap(), noise);
    assert_eq!(fs::read(target.join("db")).unwrap(), noise);
}
