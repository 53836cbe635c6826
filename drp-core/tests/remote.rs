//! Backups read on one SSH host and restored onto another, through real OpenSSH sshd servers
//! on loopback: streamed end to end, byte-identical, and bad data refused on the remote side
//! too; a host that cannot be reached or trusted is a transport failure behind the error.

#[path = "../../drp-provision/tests/support/sshd.rs"]
mod sshd;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use drp_core::backup::keys::generate_key;
use drp_core::backup::{
    CreateOptions, Error, Host, Recipients, Repository, RestoreDestination, RestoreOptions,
    SecretKeys, SourceSpec, open_store,
};
use drp_core::provision::{SshOptions, SshTransport, TransportError};
use drp_core::remote::{TransportHost, transport_cause};
use sshd::Sshd;

fn host(server: &Sshd) -> Arc<dyn Host> {
    host_at(server, server.port(), &server.known_hosts())
}

/// `server`'s user and client key, at `port` of 127.0.0.1, checked against `known_hosts`.
fn host_at(server: &Sshd, port: u16, known_hosts: &Path) -> Arc<dyn Host> {
    let options = SshOptions::new("127.0.0.1")
        .with_port(port)
        .with_user(server.user())
        .with_identity_file(server.client_key())
        .with_known_hosts(known_hosts)
        .with_connect_timeout(std::time::Duration::from_secs(5));
    Arc::new(TransportHost::new(Arc::new(SshTransport::new(options))))
}

fn diff(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trees differ:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

struct Setup {
    dir: tempfile::TempDir,
    repo: Repository,
    recipients: Recipients,
    keys: SecretKeys,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = generate_key("acme", &dir.path().join("keys"), None).unwrap();
        let store = open_store(&format!("file://{}/store", dir.path().display())).unwrap();
        Setup {
            repo: Repository::new(store, "acme").unwrap(),
            recipients: Recipients::from_files(&[key.public_path]).unwrap(),
            keys: SecretKeys::from_file(&key.secret_path, None).unwrap(),
            dir,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The "application data" that lives on host A.
    fn sample(&self) -> PathBuf {
        let root = self.path("host-a/srv/www");
        fs::create_dir_all(root.join("assets")).unwrap();
        fs::write(root.join("index.html"), "<h1>acme</h1>\n").unwrap();
        let blob: Vec<u8> = (0..4_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        fs::write(root.join("assets/blob.bin"), blob).unwrap();
        std::os::unix::fs::symlink("index.html", root.join("home.html")).unwrap();
        root
    }

    fn restore(
        &self,
        to: &Sshd,
        destination: RestoreDestination,
        sources: &[&str],
    ) -> RestoreOptions {
        let mut options = RestoreOptions::new(self.keys.clone(), destination);
        options.host = host(to);
        options.sources = sources.iter().map(|s| s.to_string()).collect();
        options
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_one_host_restores_onto_another_byte_identical() {
    let (a, b) = (Sshd::start(), Sshd::start());
    let s = Setup::new();
    let www = s.sample();
    let sources: Vec<SourceSpec> = vec![
        format!("www={}", www.display()).parse().unwrap(),
        // Runs on host A: its marker proves where.
        "db=cmd:echo \"dump from $SSH_CONNECTION\" | cut -d' ' -f1-3; seq 1 200000"
            .parse()
            .unwrap(),
    ];
    let mut options = CreateOptions::new(sources, s.recipients.clone());
    options.host = host(&a);
    let manifest = s.repo.create(options).await.unwrap();
    assert_eq!(manifest.sources.len(), 2);

    let target = s.path("host-b/restored");
    let report = s
        .repo
        .restore(s.restore(&b, RestoreDestination::Directory(target.clone()), &[]))
        .await
        .unwrap();
    assert_eq!(report.sources.len(), 2);
    diff(&www, &target.join("www"));
    let dump = fs::read_to_string(target.join("db")).unwrap();
    assert!(dump.starts_with("dump from 127.0.0.1"), "{}", &dump[..40]);
    assert!(dump.ends_with("199999\n200000\n"));
    let mut entries: Vec<_> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    entries.sort();
    assert_eq!(entries, ["db", "www"], "staging left behind");

    // --pipe-to on host B: the dump into a command's stdin, the directory as a tar stream.
    let piped = s.path("host-b/piped.sql");
    s.repo
        .restore(s.restore(
            &b,
            RestoreDestination::Command(format!("cat > '{}'", piped.display())),
            &["db"],
        ))
        .await
        .unwrap();
    assert_eq!(fs::read_to_string(&piped).unwrap(), dump);
    let untarred = s.path("host-b/untarred");
    fs::create_dir_all(&untarred).unwrap();
    s.repo
        .restore(s.restore(
            &b,
            RestoreDestination::Command(format!("tar -xf - -C '{}'", untarred.display())),
            &["www"],
        ))
        .await
        .unwrap();
    diff(&www, &untarred);

    // Restoring again into the same target is refused on the remote side, nothing touched.
    let err = s
        .repo
        .restore(s.restore(&b, RestoreDestination::Directory(target.clone()), &["db"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(fs::read_to_string(target.join("db")).unwrap(), dump);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_leaves_a_remote_target_untouched_and_a_remote_command_uncommitted() {
    let (a, b) = (Sshd::start(), Sshd::start());
    let s = Setup::new();
    let www = s.sample();
    let mut options = CreateOptions::new(
        vec![
            format!("www={}", www.display()).parse().unwrap(),
            "db=cmd:seq 1 300000".parse().unwrap(),
        ],
        s.recipients.clone(),
    );
    options.host = host(&a);
    let manifest = s.repo.create(options).await.unwrap();
    for source in &manifest.sources {
        let path = s.path("store").join(&source.object);
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.len() * 2 / 3;
        bytes[at] ^= 0x10;
        fs::write(&path, bytes).unwrap();
    }

    let target = s.path("host-b/target");
    let err = s
        .repo
        .restore(s.restore(&b, RestoreDestination::Directory(target.clone()), &[]))
        .await
        .unwrap_err();
    assert!(err.is_integrity_failure(), "{err}");
    assert!(
        !target.exists(),
        "the remote target was created or left behind"
    );

    let committed = s.path("host-b/committed");
    let command = format!("cat > /dev/null && touch '{}'", committed.display());
    let err = s
        .repo
        .restore(s.restore(&b, RestoreDestination::Command(command), &["db"]))
        .await
        .unwrap_err();
    assert!(err.is_integrity_failure(), "{err}");
    assert!(
        !committed.exists(),
        "the remote command saw a clean end of bad data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_sources_that_fail_name_the_host_and_commit_nothing() {
    let a = Sshd::start();
    let s = Setup::new();
    for (spec, expected) in [
        ("gone=/nonexistent/drp", "No such file or directory"),
        (
            "db=cmd:echo 'FATAL: role missing' >&2; exit 5",
            "FATAL: role missing",
        ),
    ] {
        let mut options = CreateOptions::new(vec![spec.parse().unwrap()], s.recipients.clone());
        options.host = host(&a);
        let err = s.repo.create(options).await.unwrap_err().to_string();
        assert!(
            err.contains("ssh://") && err.contains(expected),
            "{spec}: {err}"
        );
    }
    assert!(s.repo.snapshots().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_cannot_be_reached_or_trusted_is_a_transport_failure_behind_the_error() {
    let a = Sshd::start();
    let s = Setup::new();
    let www = s.sample();
    let spec = || -> SourceSpec { format!("www={}", www.display()).parse().unwrap() };
    let nothing_listens = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refusing = host_at(&a, nothing_listens, &a.known_hosts());
    let unknown_key = {
        fs::write(s.path("known_hosts.empty"), "").unwrap();
        host_at(&a, a.port(), &s.path("known_hosts.empty"))
    };

    // Reading the sources: the source's error, with the transport's as its cause; the
    // message is the source's, naming the transport's failure once.
    for (unreachable, expected) in [
        (&refusing, "connection refused"),
        (&unknown_key, "host key"),
    ] {
        let mut options = CreateOptions::new(vec![spec()], s.recipients.clone());
        options.host = unreachable.clone();
        let err = s.repo.create(options).await.unwrap_err();
        assert!(matches!(err, Error::SourceFailed { .. }), "{err}");
        let cause = transport_cause(&err).expect("a transport failure");
        assert!(cause.to_string().contains(expected), "{cause}");
        assert_eq!(err.to_string(), format!("stack acme, source www: {cause}"));
    }
    assert!(s.repo.snapshots().await.unwrap().is_empty());

    // Restoring into a directory (the target's error) or a command (an I/O error carrying
    // the transport's): the same.
    let mut options = CreateOptions::new(vec![spec()], s.recipients.clone());
    options.host = host(&a);
    s.repo.create(options).await.unwrap();
    let target = s.path("restored");
    let mut options = RestoreOptions::new(
        s.keys.clone(),
        RestoreDestination::Directory(target.clone()),
    );
    options.host = refusing.clone();
    let err = s.repo.restore(options).await.unwrap_err();
    assert!(matches!(err, Error::Target { .. }), "{err}");
    let cause = transport_cause(&err).expect("a transport failure");
    assert!(
        matches!(cause, TransportError::ConnectionRefused { .. }),
        "{cause:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("restore target {}: {cause}", target.display())
    );
    let mut options =
        RestoreOptions::new(s.keys.clone(), RestoreDestination::Command("cat".into()));
    options.host = refusing;
    let err = s.repo.restore(options).await.unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let cause = transport_cause(&err).expect("a transport failure");
    assert!(err.to_string().ends_with(&cause.to_string()), "{err}");
    assert!(!target.exists());

    // A command that ran on the host and failed is not one.
    let mut options = CreateOptions::new(
        vec![
            "db=cmd:echo 'FATAL: role missing' >&2; exit 5"
                .parse()
                .unwrap(),
        ],
        s.recipients.clone(),
    );
    options.host = host(&a);
    let err = s.repo.create(options).await.unwrap_err();
    assert!(matches!(err, Error::SourceFailed { .. }), "{err}");
    assert!(transport_cause(&err).is_none(), "{err}");
}

/// Kills, by pid, the processes `server`'s sshd forked for its connections (its listener
/// stays): every connection to it is cut as a failing network would.
fn cut_connections(server: &Sshd) -> usize {
    let listener = fs::read_to_string(server.dir().join("sshd.pid")).unwrap();
    let listener = listener.trim();
    let mut cut = 0;
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        if after_comm.split(' ').nth(1) == Some(listener) {
            let pid = entry.file_name().into_string().unwrap();
            Command::new("kill").args(["-KILL", &pid]).status().unwrap();
            cut += 1;
        }
    }
    cut
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_mid_stream_is_a_transport_failure() {
    let a = Sshd::start();
    let s = Setup::new();

    // A backup whose source is still being read when the connection goes.
    let mut options = CreateOptions::new(
        vec!["db=cmd:echo begin; sleep 5; echo end".parse().unwrap()],
        s.recipients.clone(),
    );
    options.host = host(&a);
    let (err, cut) = tokio::join!(s.repo.create(options), cut_soon(&a));
    assert!(cut > 0, "no connection to cut");
    let err = err.unwrap_err();
    assert!(matches!(err, Error::SourceFailed { .. }), "{err}");
    let cause = transport_cause(&err).expect("a transport failure");
    assert!(cause.to_string().contains("connection lost"), "{cause}");
    assert!(err.to_string().ends_with(&cause.to_string()), "{err}");
    assert!(s.repo.snapshots().await.unwrap().is_empty());

    // A restore into a command that is still being fed when the connection goes: 16 MB
    // that it does not read yet, far more than the SSH window and the pipes hold.
    let options = CreateOptions::new(
        vec!["zeros=cmd:head -c 16000000 /dev/zero".parse().unwrap()],
        s.recipients.clone(),
    );
    s.repo.create(options).await.unwrap();
    let mut options = RestoreOptions::new(
        s.keys.clone(),
        RestoreDestination::Command("sleep 5; cat > /dev/null".into()),
    );
    options.host = host(&a);
    let (err, cut) = tokio::join!(s.repo.restore(options), cut_soon(&a));
    assert!(cut > 0, "no connection to cut");
    let err = err.unwrap_err();
    // The message says what the restore saw (its command's input closed); the cause, why.
    assert!(
        err.to_string().contains("stopped reading its input"),
        "{err}"
    );
    let cause = transport_cause(&err).expect("a transport failure");
    assert!(cause.to_string().contains("connection lost"), "{cause}");
}

/// [`cut_connections`] after a second and a half (while a stream is going).
async fn cut_soon(server: &Sshd) -> usize {
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    cut_connections(server)
}

/// Runs a blocking [`Host`] call off the runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Every process under `pid` (children, theirs, ...), from /proc.
fn descendants(pid: &str) -> Vec<String> {
    let mut parents = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        if let Some(ppid) = after_comm.split(' ').nth(1) {
            parents.push((entry.file_name().into_string().unwrap(), ppid.to_string()));
        }
    }
    let mut all = Vec::new();
    let mut next = vec![pid.to_string()];
    while let Some(parent) = next.pop() {
        for (child, _) in parents.iter().filter(|(_, p)| *p == parent) {
            all.push(child.clone());
            next.push(child.clone());
        }
    }
    all
}

fn signal(signal: &str, pids: &[String]) {
    for pid in pids {
        let _ = Command::new("kill")
            .args([signal, pid])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed().as_secs() < 30,
            "waited in vain until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_keeps_a_concurrent_restores_staging_and_a_cut_one_cleans_up_on_the_host() {
    let a = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("srv");

    // Two restores into one target, from two "processes": the second leaves the first's
    // staging directory (locked by its lease, and full of data) alone.
    let (one, two) = (host(&a), host(&a));
    let first = {
        let (one, target) = (one.clone(), target.clone());
        blocking(move || one.prepare_restore(&target, &["www"]))
            .await
            .unwrap()
    };
    fs::write(first.dir.join("www"), "restored").unwrap();
    let second = {
        let (two, target) = (two.clone(), target.clone());
        blocking(move || two.prepare_restore(&target, &["db"]))
            .await
            .unwrap()
    };
    assert_eq!(fs::read(first.dir.join("www")).unwrap(), b"restored");
    {
        let (one, first) = (one.clone(), first.clone());
        blocking(move || one.commit_restore(&first, &["www"]))
            .await
            .unwrap();
    }
    {
        let (two, second) = (two.clone(), second.clone());
        blocking(move || two.discard_restore(&second)).await;
    }
    let mut names: Vec<_> = fs::read_dir(&target).unwrap().flatten().collect();
    assert_eq!(names.len(), 1);
    assert_eq!(names.pop().unwrap().file_name(), "www");

    // A restore whose connection is cut: its lease, its session gone, removes the staging
    // directory on the host, without a new connection from drp.
    let three = host(&a);
    let cut = {
        let (three, target) = (three.clone(), target.clone());
        blocking(move || three.prepare_restore(&target, &["db"]))
            .await
            .unwrap()
    };
    fs::write(cut.dir.join("db"), "partial").unwrap();
    assert!(cut_connections(&a) > 0);
    wait_until("the lease removed the staging directory", || {
        !cut.dir.exists()
    });
    {
        let (three, cut) = (three.clone(), cut.clone());
        blocking(move || three.discard_restore(&cut)).await;
    }
    assert_eq!(fs::read_dir(&target).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_directory_the_host_did_not_answer_to_discard_goes_with_the_next_restore() {
    let a = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("srv");
    let restorer = host(&a);
    let staging = {
        let (restorer, target) = (restorer.clone(), target.clone());
        blocking(move || restorer.prepare_restore(&target, &["www"]))
            .await
            .unwrap()
    };
    fs::write(staging.dir.join("www"), "partial").unwrap();

    // The host stops answering (everything of sshd frozen, the lease too, which keeps its
    // lock): discarding gives up without removing anything.
    let listener = fs::read_to_string(a.dir().join("sshd.pid")).unwrap();
    let listener = listener.trim().to_string();
    let sessions = descendants(&listener);
    signal("-STOP", std::slice::from_ref(&listener));
    signal("-STOP", &sessions);
    {
        let (restorer, staging) = (restorer.clone(), staging.clone());
        blocking(move || restorer.discard_restore(&staging)).await;
    }
    assert!(staging.dir.join("www").exists());

    // The connection dies for good and the host answers again; the frozen lease still holds
    // the lock (as a session the host has not noticed is dead would).
    let connections: Vec<String> = sessions
        .iter()
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat[stat.rfind(')').unwrap() + 2..].split(' ').nth(1) == Some(listener.as_str())
            })
        })
        .cloned()
        .collect();
    signal("-KILL", &connections);
    signal("-CONT", std::slice::from_ref(&listener));

    // Another restore into the target leaves it: for all it can tell, it is a live restore's.
    let other = host(&a);
    let elsewhere = {
        let (other, target) = (other.clone(), target.clone());
        blocking(move || other.prepare_restore(&target, &["db"]))
            .await
            .unwrap()
    };
    assert!(staging.dir.join("www").exists());
    blocking(move || other.discard_restore(&elsewhere)).await;

    // The next restore of the process that made it knows better, and removes it.
    let next = {
        let (restorer, target) = (restorer.clone(), target.clone());
        blocking(move || restorer.prepare_restore(&target, &["www"]))
            .await
            .unwrap()
    };
    assert!(!staging.dir.exists());
    blocking(move || restorer.discard_restore(&next)).await;
    // The restores created the target; with all of them gone, so is it.
    assert!(!target.exists());
    signal("-KILL", &sessions);
}
