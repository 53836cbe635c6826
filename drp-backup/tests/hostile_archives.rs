//! Hostile archives on restore: a directory source whose tar stream was made to escape the
//! restore directory (absolute names, `..`, writing through a symbolic link, hard links to
//! files outside, device files) is refused as a whole, names the stack, snapshot, source and
//! entry, writes nothing outside the target, and leaves the target as it was.
//!
//! The archives are built with the `tar` crate (raw header bytes where its builder refuses a
//! name), then compressed, encrypted to the customer and committed with a manifest signed by
//! the ops key, exactly as a backup stores them: what a compromised source host (whose `tar`
//! output a remote backup stores as is) or a holder of the signing key could put in the
//! bucket. Restores use the real `Repository` code with `--trust`, so the signature passes.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use drp_backup::keys::generate_key;
use drp_backup::manifest::{Layout, MANIFEST_FORMAT, new_snapshot_id};
use drp_backup::{
    BackupStore, CreateOptions, Manifest, Recipients, Repository, RestoreDestination,
    RestoreOptions, SecretKeys, Signer, SourceKind, SourceRecord, TrustedSigners, crypto,
    open_store,
};
use sha2::Digest;
use tar::{EntryType, Header};

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<dyn BackupStore>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&format!("file://{}/store", dir.path().display())).unwrap();
        for name in ["acme", "ops"] {
            generate_key(name, &dir.path().join("keys"), None).unwrap();
        }
        // What a hostile archive aims at: a directory beside the target, with a file in it.
        fs::create_dir_all(dir.path().join("outside")).unwrap();
        fs::write(dir.path().join("outside/victim.txt"), "precious\n").unwrap();
        fs::set_permissions(
            dir.path().join("outside"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        Self { dir, store }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn repo(&self) -> Repository {
        Repository::new(self.store.clone(), "acme").unwrap()
    }

    fn restore_options(&self, target: &Path) -> RestoreOptions {
        let keys = SecretKeys::from_file(&self.path("keys/acme.sec.asc"), None).unwrap();
        let mut options = RestoreOptions::new(keys, RestoreDestination::Directory(target.into()));
        options.trust = Some(TrustedSigners::from_files(&[self.path("keys/ops.pub.asc")]).unwrap());
        options
    }

    /// Stores `archive` as the directory source `www` of a new snapshot, as a backup would:
    /// zstd, OpenPGP to acme's certificate, SHA-256 and size in a manifest signed by ops.
    async fn commit_archive(&self, archive: Vec<u8>) -> Manifest {
        let compressed = zstd::encode_all(&archive[..], 3).unwrap();
        let recipients = Recipients::from_files(&[self.path("keys/acme.pub.asc")]).unwrap();
        let buffer = SharedBuffer::default();
        let mut writer = crypto::encrypt(&recipients, buffer.clone()).unwrap();
        writer.write_all(&compressed).unwrap();
        writer.finish().unwrap();
        let encrypted = buffer.0.lock().unwrap().clone();

        let time = jiff::Timestamp::now();
        let snapshot = new_snapshot_id(time);
        let object = Layout::new("acme").object(&snapshot, "www", SourceKind::Directory);
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            tool: "drp hostile-archive test".into(),
            stack: "acme".into(),
            snapshot: snapshot.clone(),
            time,
            finished: time,
            hostname: "compromised".into(),
            recipients: recipients.fingerprints(),
            signer: None,
            sources: vec![SourceRecord {
                name: "www".into(),
                kind: SourceKind::Directory,
                object: object.clone(),
                plain_bytes: archive.len() as u64,
                stored_bytes: encrypted.len() as u64,
                sha256: hex::encode(sha2::Sha256::digest(&encrypted)),
            }],
        };
        self.store.put(&object, encrypted.into()).await.unwrap();
        let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
        let signer = Signer::from_file(&self.path("keys/ops.sec.asc"), None).unwrap();
        let signature = crypto::sign_detached(&signer, &bytes).unwrap();
        let layout = Layout::new("acme");
        self.store
            .put(&layout.signature(&snapshot), signature.into())
            .await
            .unwrap();
        self.store
            .put(&layout.manifest(&snapshot), bytes.into())
            .await
            .unwrap();
        manifest
    }

    /// Commits `archive`, restores it into a target that holds the operator's notes, and
    /// checks: refused as an integrity failure naming stack, snapshot, source and each of
    /// `expected`; the target and the directory outside it exactly as they were; `verify`
    /// refuses it too.
    async fn assert_refused(&self, archive: Vec<u8>, expected: &[&str]) {
        let manifest = self.commit_archive(archive).await;
        let target = self.path("target");
        fs::create_dir_all(target.join("keep")).unwrap();
        fs::write(target.join("keep/notes.txt"), "operator notes").unwrap();
        let target_before = tree(&target);
        let outside_before = tree(&self.path("outside"));
        let outside_mode = mode(&self.path("outside"));

        let err = self
            .repo()
            .restore(self.restore_options(&target))
            .await
            .unwrap_err();
        let message = err.to_string();
        eprintln!("{message}");
        assert!(err.is_integrity_failure(), "{message}");
        let place = format!("stack acme, snapshot {}, source www", manifest.snapshot);
        assert!(message.contains(&place), "{message}");
        assert!(message.contains("archive refused"), "{message}");
        for part in expected {
            assert!(message.contains(part), "expected {part:?} in: {message}");
        }
        assert_eq!(
            tree(&target),
            target_before,
            "the target changed: {message}"
        );
        assert_eq!(tree(&self.path("outside")), outside_before, "{message}");
        assert_eq!(mode(&self.path("outside")), outside_mode, "{message}");
        assert_eq!(
            fs::metadata(self.path("outside/victim.txt"))
                .unwrap()
                .nlink(),
            1,
            "a hard link to the file outside was made: {message}"
        );
        // Nothing anywhere else in the test's directory either (store, keys, outside, target).
        let top: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut top = top;
        top.sort();
        assert_eq!(top, ["keys", "outside", "store", "target"], "{message}");

        let outcomes = self
            .repo()
            .verify(None, &self.restore_options(&target).keys, None)
            .await
            .unwrap();
        let verified = &outcomes[0].1;
        assert!(
            verified
                .as_ref()
                .is_err_and(|e| e.is_integrity_failure() && e.to_string().contains(&place)),
            "verify: {verified:?}"
        );
        assert_eq!(tree(&target), target_before);
    }
}

#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode()
}

/// Every entry under `root` (not following links): relative path → (mode, link or content).
fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let kind = meta.file_type();
            let content = if kind.is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if kind.is_file() {
                fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            out.insert(rel, (meta.mode(), content));
            if kind.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

/// A tar stream built entry by entry; names and link names are written as raw header bytes,
/// so that the names `tar::Builder` would refuse (absolute, `..`) can be made.
struct Archive(tar::Builder<Vec<u8>>);

impl Archive {
    fn new() -> Self {
        Archive(tar::Builder::new(Vec::new()))
    }

    fn entry(mut self, kind: EntryType, name: &str, link: Option<&str>, data: &[u8]) -> Self {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(if kind == EntryType::Directory {
            0o777
        } else {
            0o644
        });
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        if matches!(kind, EntryType::Char | EntryType::Block) {
            header.set_device_major(1).unwrap();
            header.set_device_minor(3).unwrap();
        }
        let gnu = header.as_gnu_mut().unwrap();
        assert!(name.len() < 100 && link.is_none_or(|l| l.len() < 100));
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            gnu.linkname = [0; 100];
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        self.0.append(&header, data).unwrap();
        self
    }

    fn file(self, name: &str, data: &str) -> Self {
        self.entry(EntryType::Regular, name, None, data.as_bytes())
    }

    fn dir(self, name: &str) -> Self {
        self.entry(EntryType::Directory, name, None, b"")
    }

    fn symlink(self, name: &str, to: &str) -> Self {
        self.entry(EntryType::Symlink, name, Some(to), b"")
    }

    fn hard_link(self, name: &str, to: &str) -> Self {
        self.entry(EntryType::Link, name, Some(to), b"")
    }

    fn build(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A harmless start, as `tar -C DIR .` and drp's own archives begin: the restore must be
/// refused as a whole even though these came first (they sit in the staging directory, which
/// is discarded).
fn benign() -> Archive {
    Archive::new()
        .dir("./")
        .file("./index.html", "<h1>acme</h1>\n")
}

/// From the staging directory `TARGET/.drp-restore-XXX/www`, the test's `outside` directory.
const UP_TO_OUTSIDE: &str = "../../../outside";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_name_is_refused() {
    let f = Fixture::new();
    let victim = f.path("outside/victim.txt");
    let archive = benign()
        .file(&victim.display().to_string(), "overwritten\n")
        .build();
    f.assert_refused(
        archive,
        &["an absolute name", &victim.display().to_string()],
    )
    .await;
    assert_eq!(fs::read_to_string(victim).unwrap(), "precious\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dot_dot_name_is_refused() {
    let f = Fixture::new();
    for name in [
        format!("{UP_TO_OUTSIDE}/planted.txt"),
        format!("./static/../{UP_TO_OUTSIDE}/planted.txt"),
        "../sibling-source".to_string(),
    ] {
        let archive = benign().file(&name, "planted\n").build();
        f.assert_refused(archive, &["`..`", &name]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_through_a_symlink_to_outside_is_refused() {
    let f = Fixture::new();
    let outside = f.path("outside").display().to_string();
    for (link, to) in [("./escape", outside.as_str()), ("./up", UP_TO_OUTSIDE)] {
        // The link alone is fine; the file written through it is what is refused.
        let archive = benign()
            .symlink(link, to)
            .file(&format!("{link}/planted.txt"), "planted\n")
            .build();
        f.assert_refused(archive, &["is a symbolic link in the archive", link])
            .await;
        // Also when the link points inside: nothing is ever written through a link.
        let archive = benign()
            .dir("./real")
            .symlink(link, "real")
            .file(&format!("{link}/x"), "x")
            .build();
        f.assert_refused(archive, &["is a symbolic link in the archive"])
            .await;
    }
    assert!(!f.path("outside/planted.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_entry_over_a_symlink_to_outside_is_refused() {
    // tar would chmod (0777) and chown what the link points to.
    let f = Fixture::new();
    let outside = f.path("outside").display().to_string();
    let archive = benign().symlink("./d", &outside).dir("./d").build();
    f.assert_refused(archive, &["would turn a symbolic link", "./d"])
        .await;
    assert_eq!(mode(&f.path("outside")) & 0o777, 0o755);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_link_to_a_file_outside_is_refused() {
    let f = Fixture::new();
    let victim = f.path("outside/victim.txt").display().to_string();
    let up = format!("{UP_TO_OUTSIDE}/victim.txt");
    for (to, reason) in [
        (victim.as_str(), "an absolute name"),
        (up.as_str(), "`..`"),
        // Through a symlink the archive made, or to the link itself.
        (
            "./escape/victim.txt",
            "lies under a symbolic link in the archive",
        ),
        ("./escape", "is or lies under a symbolic link"),
        // To a directory (here the restore directory itself).
        ("./", "a directory"),
    ] {
        let archive = benign()
            .symlink("./escape", &f.path("outside").display().to_string())
            .hard_link("./h", to)
            .build();
        f.assert_refused(archive, &["a hard link to", reason, "./h"])
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_files_are_refused() {
    let f = Fixture::new();
    for (kind, what) in [
        (EntryType::Char, "a character device (major 1, minor 3)"),
        (EntryType::Block, "a block device (major 1, minor 3)"),
    ] {
        let archive = benign().entry(kind, "./dev-null", None, b"").build();
        f.assert_refused(archive, &[what, "./dev-null", "--pipe-to"])
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_safe_restores_links_as_links_and_fifos_as_fifos() {
    // A real backup of a directory with a fifo, a link to outside and a hard link: restored
    // faithfully, and the link to outside is a link (never followed).
    let f = Fixture::new();
    let src = f.path("src");
    fs::create_dir_all(src.join("spool")).unwrap();
    fs::write(src.join("data.txt"), "data\n").unwrap();
    fs::hard_link(src.join("data.txt"), src.join("data-again.txt")).unwrap();
    std::os::unix::fs::symlink(f.path("outside"), src.join("to-outside")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg("-m")
        .arg("0620")
        .arg(src.join("spool/pickup"))
        .status()
        .unwrap();
    assert!(status.success());
    let recipients = Recipients::from_files(&[f.path("keys/acme.pub.asc")]).unwrap();
    let spec = format!("www={}", src.display()).parse().unwrap();
    let mut options = CreateOptions::new(vec![spec], recipients);
    options.signer = Some(Signer::from_file(&f.path("keys/ops.sec.asc"), None).unwrap());
    f.repo().create(options).await.unwrap();

    let target = f.path("target");
    f.repo().restore(f.restore_options(&target)).await.unwrap();
    let www = target.join("www");
    let fifo = fs::symlink_metadata(www.join("spool/pickup")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o620);
    assert_eq!(
        fifo.mtime(),
        fs::symlink_metadata(src.join("spool/pickup"))
            .unwrap()
            .mtime()
    );
    assert_eq!(
        fs::read_link(www.join("to-outside")).unwrap(),
        f.path("outside")
    );
    assert_eq!(
        fs::read_to_string(www.join("data-again.txt")).unwrap(),
        "data\n"
    );
    assert_eq!(tree(&www), tree(&src));
    assert_eq!(fs::read_dir(f.path("outside")).unwrap().count(), 1);

    // An archive made elsewhere with an absolute link: kept as the link it is.
    let archive = benign()
        .symlink("./etc-link", "/etc")
        .symlink("./up-link", "../../..")
        .build();
    f.commit_archive(archive).await;
    let target = f.path("second");
    f.repo().restore(f.restore_options(&target)).await.unwrap();
    assert_eq!(
        fs::read_link(target.join("www/etc-link")).unwrap(),
        Path::new("/etc")
    );
    assert_eq!(
        fs::read_link(target.join("www/up-link")).unwrap(),
        Path::new("../../..")
    );
    assert_eq!(
        fs::read_to_string(target.join("www/index.html")).unwrap(),
        "<h1>acme</h1>\n"
    );
}
