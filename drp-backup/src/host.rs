//! The machine whose data is backed up and restored.
//!
//! [`LocalHost`] is this machine, the embedded default. drp-core implements [`Host`] for remote
//! machines on top of drp-provision's transports, so that this crate needs no SSH. The
//! methods are blocking: the backup and restore pipelines call them from their own threads.

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use crate::manifest::SourceKind;
use crate::pipe::copy_in_chunks;
use crate::source::SourceOrigin;

/// Bytes of a failed command's standard error kept for its error message.
pub const STDERR_TAIL: usize = 2048;

/// How the name of a staging directory inside a restore target begins (`TARGET/.drp-restore-XXXXXX`).
pub const STAGING_PREFIX: &str = ".drp-restore-";

/// How the name of a staging directory begins once a restore that could not move its data
/// into place kept it for the operator (`TARGET/.drp-kept-XXXXXX`): never removed by drp.
pub const KEPT_PREFIX: &str = ".drp-kept-";

/// How long an *empty* staging directory nobody holds a lock on is left alone: the moment
/// between its creation and its restore taking the lock (see [`Host::prepare_restore`]).
pub const EMPTY_STAGING_GRACE: Duration = Duration::from_secs(120);

/// A staging directory inside a restore target: restored sources wait there until every one
/// of them was checked, then move into the target.
///
/// While its restore runs, the staging directory is locked (`flock(2)` on the directory, held
/// by the restoring process, or on a remote host by a process of the restore's SSH session):
/// a staging directory that nobody holds a lock on belongs to a restore that ended without
/// cleaning up (killed, or cut off from the host), and the next restore into the same target
/// removes it — unless it is empty and younger than [`EMPTY_STAGING_GRACE`], the state of a
/// staging directory in the instant between its creation and its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staging {
    /// The restore target.
    pub target: PathBuf,
    /// The staging directory, inside the target (so moving out of it is a rename).
    pub dir: PathBuf,
    /// Whether preparing the restore created the target (and discarding removes it).
    pub created_target: bool,
}

impl Staging {
    /// Where a restore that cannot commit keeps its data for the operator:
    /// `TARGET/.drp-kept-XXXXXX` for `TARGET/.drp-restore-XXXXXX` (never removed by drp).
    pub fn kept_dir(&self) -> PathBuf {
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let suffix = name.strip_prefix(STAGING_PREFIX).unwrap_or(&name);
        self.target.join(format!("{KEPT_PREFIX}{suffix}"))
    }
}

/// Why a [`Host`] operation failed: a message that says what failed and where, and, when the
/// failure has a cause that callers tell apart, that error as its
/// [`source`](std::error::Error::source) (drp-core's remote hosts give their transport's
/// error when the host could not be reached or the connection was lost, so that a frontend
/// can report it as such). The message already says everything: the source is for matching
/// on, not for printing again.
#[derive(Debug)]
pub struct HostError {
    message: String,
    cause: Option<Box<dyn StdError + Send + Sync>>,
}

impl HostError {
    /// A failure with nothing below it worth keeping.
    pub fn new(message: impl Into<String>) -> Self {
        HostError {
            message: message.into(),
            cause: None,
        }
    }

    /// A failure caused by `cause` (its text is part of `message`).
    pub fn caused_by(
        message: impl Into<String>,
        cause: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        HostError {
            message: message.into(),
            cause: Some(cause.into()),
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for HostError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause as &(dyn StdError + 'static))
    }
}

impl From<String> for HostError {
    fn from(message: String) -> Self {
        HostError::new(message)
    }
}

/// Where sources are read and restored data is written.
pub trait Host: Send + Sync + fmt::Debug + fmt::Display {
    /// How a path source will be stored: a directory or a regular file; else why not.
    fn path_kind(&self, path: &Path) -> Result<SourceKind, HostError>;

    /// Writes a source's bytes (a tar stream for a directory) into `out`. A command that exits
    /// non-zero is an error carrying its status and the tail of its standard error.
    fn read_source(
        &self,
        origin: &SourceOrigin,
        kind: SourceKind,
        out: &mut dyn Write,
    ) -> Result<(), HostError>;

    /// Refuses if any `target/NAME` exists, creates `target` if missing, removes the staging
    /// directories of earlier restores into `target` that were abandoned (see [`Staging`]:
    /// nobody holds their lock), and makes a new, empty staging directory inside it, locked
    /// until the restore is committed or discarded.
    fn prepare_restore(&self, target: &Path, names: &[&str]) -> Result<Staging, HostError>;

    /// Writes one source's plaintext, read to the end, to `path` (inside the staging
    /// directory): a tar stream is extracted into the new directory `path`, anything else
    /// becomes the file `path`. A read error is returned as is.
    fn write_restored(&self, kind: SourceKind, path: &Path, plain: &mut dyn Read)
    -> io::Result<()>;

    /// Moves `staging.dir/NAME` to `staging.target/NAME` for every name, then removes the
    /// staging directory. If a name appeared in the target meanwhile, the staging directory
    /// is renamed `target/.drp-kept-XXXXXX` (which the error names) and kept for the operator.
    fn commit_restore(&self, staging: &Staging, names: &[&str]) -> Result<(), HostError>;

    /// Removes the staging directory, and the target if it was created for this restore and
    /// is empty again. Best effort: it runs on the way out of a failure.
    fn discard_restore(&self, staging: &Staging);

    /// Streams plaintext into the standard input of `sh -c command`. If reading fails, the
    /// command is killed before it sees the end of its input, so that it cannot take
    /// truncated data for complete; a non-zero exit is an error.
    fn pipe_to(&self, command: &str, plain: &mut dyn Read) -> io::Result<()>;
}

/// This machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalHost;

impl fmt::Display for LocalHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("local")
    }
}

impl Host for LocalHost {
    fn path_kind(&self, path: &Path) -> Result<SourceKind, HostError> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            Ok(SourceKind::Directory)
        } else if meta.is_file() {
            Ok(SourceKind::File)
        } else {
            Err(HostError::new(format!(
                "{}: neither a directory nor a regular file",
                path.display()
            )))
        }
    }

    fn read_source(
        &self,
        origin: &SourceOrigin,
        kind: SourceKind,
        out: &mut dyn Write,
    ) -> Result<(), HostError> {
        let failed = |path: &Path, e: io::Error| HostError::new(format!("{}: {e}", path.display()));
        match (origin, kind) {
            (SourceOrigin::Path(path), SourceKind::Directory) => {
                archive_directory(path, out).map_err(|e| failed(path, e))
            }
            (SourceOrigin::Path(path), _) => {
                let mut file = std::fs::File::open(path).map_err(|e| failed(path, e))?;
                copy_in_chunks(&mut file, out)
                    .map(drop)
                    .map_err(|e| failed(path, e))
            }
            (SourceOrigin::Command(command), _) => {
                run_command(command, out).map_err(HostError::new)
            }
        }
    }

    fn prepare_restore(&self, target: &Path, names: &[&str]) -> Result<Staging, HostError> {
        for name in names {
            let destination = target.join(name);
            if destination.symlink_metadata().is_ok() {
                return Err(HostError::new(format!(
                    "{} already exists; restore into another directory or move it away first",
                    destination.display()
                )));
            }
        }
        let created_target = !target.exists();
        std::fs::create_dir_all(target).map_err(|e| format!("cannot create it: {e}"))?;
        for removed in remove_abandoned_stagings(target) {
            tracing::warn!(
                "removed {}, the staging directory of an earlier restore that did not finish",
                removed.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(target)
            .map_err(|e| format!("cannot create a staging directory in it: {e}"))?
            // Kept until commit or discard; a killed restore leaves only this hidden directory,
            // unlocked, which the next restore into the target removes.
            .keep();
        lock_staging(&dir);
        Ok(Staging {
            target: target.to_path_buf(),
            dir,
            created_target,
        })
    }

    fn write_restored(
        &self,
        kind: SourceKind,
        path: &Path,
        plain: &mut dyn Read,
    ) -> io::Result<()> {
        match kind {
            SourceKind::Directory => {
                std::fs::create_dir(path)?;
                extract_archive(&mut *plain, path)?;
            }
            SourceKind::File | SourceKind::Command => {
                let mut file = WritebackFile::new(std::fs::File::create_new(path)?);
                copy_in_chunks(plain, &mut file)?;
                file.sync_all()?;
            }
        }
        // Read to the end: only the end of the stream proves it was complete and authentic.
        io::copy(plain, &mut io::sink())?;
        Ok(())
    }

    fn commit_restore(&self, staging: &Staging, names: &[&str]) -> Result<(), HostError> {
        for name in names {
            let destination = staging.target.join(name);
            if destination.symlink_metadata().is_ok() {
                let kept = staging.kept_dir();
                let left_in = match std::fs::rename(&staging.dir, &kept) {
                    Ok(()) => kept,
                    Err(_) => staging.dir.clone(),
                };
                unlock_staging(&staging.dir);
                return Err(HostError::new(format!(
                    "{} appeared during the restore; the restored data was left in {}",
                    destination.display(),
                    left_in.display()
                )));
            }
            std::fs::rename(staging.dir.join(name), &destination).map_err(|e| {
                unlock_staging(&staging.dir);
                format!("moving {name} into place: {e}")
            })?;
        }
        let removed = std::fs::remove_dir(&staging.dir)
            .map_err(|e| HostError::new(format!("removing {}: {e}", staging.dir.display())));
        unlock_staging(&staging.dir);
        removed
    }

    fn discard_restore(&self, staging: &Staging) {
        let _ = std::fs::remove_dir_all(&staging.dir);
        unlock_staging(&staging.dir);
        if staging.created_target {
            let _ = std::fs::remove_dir(&staging.target);
        }
    }

    fn pipe_to(&self, command: &str, plain: &mut dyn Read) -> io::Result<()> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = collect_tail(child.stderr.take().expect("stderr is piped"));
        let mut stdin = child.stdin.take().expect("stdin is piped");
        if let Err(e) = copy_in_chunks(plain, &mut stdin) {
            // Kill first, close stdin after: the command must not see a clean end of input.
            let _ = child.kill();
            let _ = child.wait();
            drop(stdin);
            return Err(e);
        }
        drop(stdin);
        let status = child.wait()?;
        let tail = stderr.join().unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(failure_message(
                "the command",
                &status_text(status),
                &tail,
            )))
        }
    }
}

/// The locks this process holds on the staging directories of its restores (see [`Staging`]),
/// by directory: released by commit or discard, or by the end of the process however it ends.
static STAGING_LOCKS: Mutex<Option<HashMap<PathBuf, Flock<File>>>> = Mutex::new(None);

/// Takes the lock that marks `dir` as the staging directory of a running restore. Best effort:
/// where the file system has no `flock(2)`, restores run unlocked and nothing is ever found
/// abandoned there (a lock that cannot be tested is never taken for a free one).
fn lock_staging(dir: &Path) {
    let Ok(file) = File::open(dir) else { return };
    if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        let mut locks = STAGING_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        locks
            .get_or_insert_with(HashMap::new)
            .insert(dir.to_path_buf(), lock);
    }
}

fn unlock_staging(dir: &Path) {
    let mut locks = STAGING_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(locks) = locks.as_mut() {
        locks.remove(dir);
    }
}

/// Removes the staging directories in `target` that are abandoned by the rule of [`Staging`]
/// (a directory named `.drp-restore-*`, not a link, that this call could lock, and that is not
/// empty or is older than [`EMPTY_STAGING_GRACE`]); returns those it removed. The lock is held
/// while removing, so two restores never remove the same directory, nor a live one.
pub fn remove_abandoned_stagings(target: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(target) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
            || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let dir = entry.path();
        let Ok(file) = File::open(&dir) else { continue };
        let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            // Held by a running restore (or locks do not work here): not ours to judge.
            continue;
        };
        let empty = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none());
        let young = lock
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < EMPTY_STAGING_GRACE);
        if empty && young {
            continue;
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

/// An archive entry that a restore refuses: extracting it could write outside the restore
/// directory, or create what drp never restores (a device file). Such an entry means the
/// archive is not what `tar` makes of a directory; the whole source is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeEntry {
    /// The entry's name, as the archive gives it.
    pub path: String,
    /// Why it is refused.
    pub reason: String,
}

impl fmt::Display for UnsafeEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unsafe archive entry {:?}: {}", self.path, self.reason)
    }
}

impl std::error::Error for UnsafeEntry {}

impl UnsafeEntry {
    fn error(path: &Path, reason: impl Into<String>) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            UnsafeEntry {
                path: path.to_string_lossy().into_owned(),
                reason: reason.into(),
            },
        )
    }

    /// The refused entry an I/O error carries, if it is one.
    pub fn of(error: &io::Error) -> Option<&UnsafeEntry> {
        error.get_ref()?.downcast_ref::<UnsafeEntry>()
    }
}

/// What an archive entry will be on disk, once [`ArchiveRules`] accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepted {
    /// The restore directory itself (`./`): nothing to create.
    Root,
    Directory,
    Fifo,
    /// A regular file, a symbolic link or a hard link: tar creates it.
    Other,
    /// Metadata for the entries after it (a pax global header).
    Skip,
}

/// The checks every entry of a directory source's archive passes before anything is written
/// (and that `verify` applies without writing): names stay inside the restore directory (no
/// absolute names, no `..`), nothing is written through a symbolic link the archive made
/// (nor does a link replace a directory), hard links stay inside and point at no link, and
/// there are no device files. Symbolic links themselves may point anywhere: they are
/// restored as links, never followed. What it remembers grows with the links and directories
/// of the archive, not with its files.
#[derive(Debug, Default)]
struct ArchiveRules {
    /// Symbolic links the archive made, by relative path.
    symlinks: HashSet<PathBuf>,
    /// Directories the archive made or implied (parents of its entries).
    directories: HashSet<PathBuf>,
}

impl ArchiveRules {
    fn check<R: Read>(&mut self, entry: &tar::Entry<'_, R>) -> io::Result<(PathBuf, Accepted)> {
        use tar::EntryType;

        let name = entry.path()?.into_owned();
        let relative = inside(&name).map_err(|reason| UnsafeEntry::error(&name, reason))?;
        let refuse = |reason: String| Err(UnsafeEntry::error(&name, reason));
        let kind = entry.header().entry_type();
        let accepted = match kind {
            EntryType::Directory => Accepted::Directory,
            EntryType::Fifo => Accepted::Fifo,
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Symlink
            | EntryType::Link => Accepted::Other,
            EntryType::XGlobalHeader => return Ok((relative, Accepted::Skip)),
            EntryType::Char | EntryType::Block => {
                let device = if kind == EntryType::Char {
                    "a character device"
                } else {
                    "a block device"
                };
                return refuse(format!(
                    "{device} (major {}, minor {}): drp does not create device files; to \
                     restore them anyway, pipe the source into tar as root (--pipe-to 'tar -x \
                     -C DIR')",
                    entry.header().device_major().ok().flatten().unwrap_or(0),
                    entry.header().device_minor().ok().flatten().unwrap_or(0)
                ));
            }
            other => {
                return refuse(format!(
                    "entries of type {:?} are not restored",
                    other.as_byte() as char
                ));
            }
        };
        if relative.as_os_str().is_empty() {
            return if accepted == Accepted::Directory {
                Ok((relative, Accepted::Root))
            } else {
                refuse("it names the restore directory itself".into())
            };
        }
        for parent in relative.ancestors().skip(1) {
            if self.symlinks.contains(parent) {
                return refuse(format!(
                    "its parent {} is a symbolic link in the archive; writing through it \
                     could leave the restore directory",
                    parent.display()
                ));
            }
        }
        if accepted != Accepted::Directory && self.directories.contains(&relative) {
            return refuse("it would replace a directory of the archive".into());
        }
        if accepted == Accepted::Directory && self.symlinks.contains(&relative) {
            return refuse("it would turn a symbolic link of the archive into a directory".into());
        }
        if kind == EntryType::Link {
            let target = entry.link_name()?.unwrap_or_default().into_owned();
            let target_inside = inside(&target).map_err(|reason| {
                UnsafeEntry::error(
                    &name,
                    format!("a hard link to {}: {reason}", target.display()),
                )
            })?;
            if target_inside.ancestors().any(|p| self.symlinks.contains(p)) {
                return refuse(format!(
                    "a hard link to {}, which is or lies under a symbolic link in the archive",
                    target.display()
                ));
            }
            if target_inside.as_os_str().is_empty() || self.directories.contains(&target_inside) {
                return refuse(format!("a hard link to {}, a directory", target.display()));
            }
        }

        self.symlinks.remove(&relative);
        let parents = relative
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty());
        self.directories.extend(parents.map(Path::to_path_buf));
        match kind {
            EntryType::Directory => {
                self.directories.insert(relative.clone());
            }
            EntryType::Symlink => {
                self.symlinks.insert(relative.clone());
            }
            _ => {}
        }
        Ok((relative, accepted))
    }
}

/// `name` as a path inside the restore directory (`.` components dropped), or why it is not.
fn inside(name: &Path) -> Result<PathBuf, &'static str> {
    let mut relative = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("an absolute name would be written outside the restore directory");
            }
            Component::ParentDir => {
                return Err("a `..` component would leave the restore directory");
            }
        }
    }
    Ok(relative)
}

/// Walks a directory source's archive to its end, applying the restore's rules to every entry
/// without writing anything (what `verify` does).
pub(crate) fn check_archive(plain: &mut dyn Read) -> io::Result<()> {
    let mut rules = ArchiveRules::default();
    let mut archive = tar::Archive::new(plain);
    for entry in archive.entries()? {
        let mut entry = entry?;
        rules.check(&entry)?;
        io::copy(&mut entry, &mut io::sink())?;
    }
    Ok(())
}

/// Extracts a directory source's archive into `dir` (new and empty), refusing the archive at
/// the first entry that breaks [`ArchiveRules`]: then the caller discards the staging
/// directory, so nothing of it reaches the target. Directories get their permissions and
/// times last, so that a read-only directory does not stop its own entries.
fn extract_archive(plain: &mut dyn Read, dir: &Path) -> io::Result<()> {
    let root = running_as_root();
    let mut archive = tar::Archive::new(plain);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_preserve_ownerships(root);
    let mut rules = ArchiveRules::default();
    let mut directories = Vec::new();
    // Directories made for the entries so far (relative): each is created once, not once per
    // entry below it.
    let mut made: HashSet<PathBuf> = HashSet::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let (relative, accepted) = rules.check(&entry)?;
        match accepted {
            Accepted::Root | Accepted::Skip => {}
            Accepted::Directory => directories.push((relative, entry)),
            Accepted::Fifo => make_fifo(&entry, &dir.join(&relative), root).map_err(|e| {
                with_causes(e, &format!("creating the fifo {}", relative.display()))
            })?,
            // Files and symbolic links, checked by `rules`, go straight to their place.
            // `unpack_in` would check each path again by resolving the restore directory and
            // the entry's parent (two `canonicalize`, some thirty system calls an entry),
            // which made restoring a tree of 50,000 files a third slower than `tar -x`; the
            // rules already guarantee what that check does, because `dir` is a new, empty
            // directory that only this archive writes to and the rules refuse every path
            // through a symbolic link the archive made. Hard links keep `unpack_in`, which
            // resolves their target inside `dir`.
            Accepted::Other if entry.header().entry_type() != tar::EntryType::Link => {
                if let Some(parent) = relative.parent().filter(|p| !made.contains(*p)) {
                    std::fs::create_dir_all(dir.join(parent))
                        .map_err(|e| with_causes(e, &format!("creating {}", parent.display())))?;
                    made.extend(parent.ancestors().map(Path::to_path_buf));
                }
                entry
                    .unpack(dir.join(&relative))
                    .map_err(|e| with_causes(e, &format!("restoring {}", relative.display())))?;
            }
            Accepted::Other => {
                if !entry.unpack_in(dir).map_err(|e| with_causes(e, ""))? {
                    // tar's own checks agree with ours; this is a second line of defence.
                    return Err(UnsafeEntry::error(&relative, "tar refused to extract it"));
                }
            }
        }
    }
    directories.sort_by(|a, b| b.0.cmp(&a.0));
    for (relative, mut entry) in directories {
        if !entry.unpack_in(dir).map_err(|e| with_causes(e, ""))? {
            return Err(UnsafeEntry::error(&relative, "tar refused to extract it"));
        }
    }
    Ok(())
}

fn make_fifo<R: Read>(entry: &tar::Entry<'_, R>, path: &Path, root: bool) -> io::Result<()> {
    use nix::sys::stat::{Mode, UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    use std::os::unix::fs::PermissionsExt;

    let header = entry.header();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a directory is in the way",
            ));
        }
        Ok(_) => std::fs::remove_file(path)?,
        Err(_) => {}
    }
    nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR)?;
    if root {
        std::os::unix::fs::lchown(path, Some(header.uid()? as u32), Some(header.gid()? as u32))?;
    }
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(header.mode()? & 0o7777),
    )?;
    let mtime = TimeSpec::new(header.mtime()? as i64, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &mtime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// `error` with the causes tar keeps behind its own message ("failed to unpack `x`") in its
/// text, so that the reason (e.g. "No space left on device") reaches the operator; the kind is
/// kept.
fn with_causes(error: io::Error, context: &str) -> io::Error {
    if UnsafeEntry::of(&error).is_some() {
        return error;
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = inner.source();
    }
    if !context.is_empty() {
        text = format!("{context}: {text}");
    }
    io::Error::new(error.kind(), text)
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Bytes written to a [`WritebackFile`] between two background flushes.
const WRITEBACK_STEP: u64 = 32 * 1024 * 1024;

/// A restored file whose data goes to disk while it is still being written: every
/// [`WRITEBACK_STEP`] bytes, a helper thread flushes it (`fdatasync` on a second handle), so
/// the disk works while the rest is still being decrypted, and the `fsync` at the end has
/// only the last piece left. (With one `fsync` at the end, that call was 1.9 s of a 4.1 s
/// restore of 1 GiB.) The writer never waits for a flush: one still running skips the next.
struct WritebackFile {
    file: std::fs::File,
    since_flush: u64,
    flusher: Option<(std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>)>,
}

impl WritebackFile {
    fn new(file: std::fs::File) -> Self {
        let flusher = file.try_clone().ok().map(|handle| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<()>(0);
            let thread = std::thread::spawn(move || {
                // Errors are left to the final `sync_all`, which reports them.
                while rx.recv().is_ok() {
                    let _ = handle.sync_data();
                }
            });
            (tx, thread)
        });
        Self {
            file,
            since_flush: 0,
            flusher,
        }
    }

    /// Waits for the helper thread, then makes the whole file durable.
    fn sync_all(mut self) -> io::Result<()> {
        self.stop_flusher();
        self.file.sync_all()
    }

    fn stop_flusher(&mut self) {
        if let Some((tx, thread)) = self.flusher.take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

impl Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.since_flush += n as u64;
        if self.since_flush >= WRITEBACK_STEP
            && let Some((tx, _)) = &self.flusher
            && tx.try_send(()).is_ok()
        {
            self.since_flush = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for WritebackFile {
    fn drop(&mut self) {
        self.stop_flusher();
    }
}

fn archive_directory(dir: &Path, out: &mut dyn Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    // Symlinks are stored as links; following them could leave the tree or loop.
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    builder.append_dir_all(".", dir)?;
    builder.into_inner()?.flush()
}

fn run_command(command: &str, out: &mut dyn Write) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the command: {e}"))?;
    let stderr = collect_tail(child.stderr.take().expect("stderr is piped"));
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let copied = copy_in_chunks(&mut stdout, out);
    drop(stdout);
    if copied.is_err() {
        // The pipeline stopped: do not leave the command running or a zombie behind.
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for the command: {e}"))?;
    let tail = stderr.join().unwrap_or_default();
    copied.map_err(|e| format!("reading the command's output: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(failure_message("the command", &status_text(status), &tail))
    }
}

/// Reads a stream to its end on a thread of its own, keeping its last [`STDERR_TAIL`] bytes.
pub fn collect_tail<R: Read + Send + 'static>(mut stream: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 2 * STDERR_TAIL {
                tail.drain(..tail.len() - STDERR_TAIL);
            }
        }
        tail
    })
}

fn status_text(status: std::process::ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => status.to_string(),
    }
}

/// `WHAT failed (STATUS): STDERR-TAIL`, the shape of every command failure message.
pub fn failure_message(what: &str, status: &str, stderr: &[u8]) -> String {
    let tail = String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(STDERR_TAIL)..])
        .trim()
        .to_string();
    if tail.is_empty() {
        format!("{what} failed ({status})")
    } else {
        format!("{what} failed ({status}): {tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_reports_its_status_and_stderr() {
        let origin =
            SourceOrigin::Command("echo partial; echo 'connection refused' >&2; exit 3".into());
        let mut out = Vec::new();
        let err = LocalHost
            .read_source(&origin, SourceKind::Command, &mut out)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the command failed (exit status 3): connection refused"
        );
        assert!(err.source().is_none());
        assert_eq!(out, b"partial\n");
    }

    #[test]
    fn pipe_to_kills_the_command_when_the_input_fails() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt"));
                }
                self.0 -= 1;
                buf[0] = b'x';
                Ok(1)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("saw-eof");
        // The command records whether it ever saw the end of its input.
        let command = format!("cat > /dev/null && touch '{}'", marker.display());
        let err = LocalHost.pipe_to(&command, &mut Failing(10)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(!marker.exists(), "the command saw a clean end of input");

        LocalHost.pipe_to(&command, &mut &b"ok"[..]).unwrap();
        assert!(marker.exists());
        let err = LocalHost
            .pipe_to("cat >/dev/null; echo nope >&2; exit 4", &mut &b"x"[..])
            .unwrap_err();
        assert_eq!(err.to_string(), "the command failed (exit status 4): nope");
    }

    /// A tar stream with one entry per (type, name, link name), names as raw header bytes.
    fn raw_archive(entries: &[(tar::EntryType, &str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (kind, name, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(0);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1);
            let gnu = header.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            header.set_cksum();
            builder.append(&header, &[][..]).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn tar_alone_keeps_writes_inside_but_changes_hostile_archives_silently() {
        // Why drp checks entries itself (tar 0.4's `Archive::unpack`, as restores used it):
        // nothing is written outside, but some entries are quietly changed or dropped and the
        // restore "succeeds", and the refusals it does make read like local failures.
        use tar::EntryType::*;
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        let absolute = format!("{}/abs", outside.display());
        let archive = raw_archive(&[
            (Regular, &absolute, ""),
            (Regular, "../outside/dotdot", ""),
            (Char, "./null", ""),
        ]);
        let into = dir.path().join("plain");
        tar::Archive::new(&archive[..]).unpack(&into).unwrap();
        assert!(!outside.exists());
        // The absolute name was extracted inside, its leading `/` stripped.
        assert!(into.join(absolute.trim_start_matches('/')).is_file());
        // The `..` entry was skipped without a word; the device became an empty regular file.
        assert!(
            std::fs::symlink_metadata(into.join("null"))
                .unwrap()
                .is_file()
        );

        // drp's rules refuse each, naming it.
        for (entries, reason) in [
            (vec![(Regular, absolute.as_str(), "")], "an absolute name"),
            (vec![(Regular, "../outside/dotdot", "")], "`..`"),
            (vec![(Char, "./null", "")], "a character device"),
            (
                vec![(Symlink, "./l", "/"), (Regular, "./l/etc-file", "")],
                "is a symbolic link in the archive",
            ),
            (
                vec![(Link, "./h", "/etc/passwd")],
                "a hard link to /etc/passwd",
            ),
        ] {
            let archive = raw_archive(&entries);
            let into = dir.path().join("drp");
            std::fs::create_dir(&into).unwrap();
            let err = extract_archive(&mut &archive[..], &into).unwrap_err();
            let refused = UnsafeEntry::of(&err).unwrap_or_else(|| panic!("{err}"));
            assert!(refused.reason.contains(reason), "{refused}");
            let err = check_archive(&mut &archive[..]).unwrap_err();
            assert!(UnsafeEntry::of(&err).is_some(), "{err}");
            std::fs::remove_dir_all(&into).unwrap();
        }
        assert!(!outside.exists());
    }

    #[test]
    fn a_restore_is_staged_then_committed_or_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("new-target");
        let staging = LocalHost.prepare_restore(&target, &["a"]).unwrap();
        assert!(staging.created_target && staging.dir.starts_with(&target));
        LocalHost
            .write_restored(SourceKind::File, &staging.dir.join("a"), &mut &b"data"[..])
            .unwrap();
        LocalHost.discard_restore(&staging);
        assert!(!target.exists());

        let staging = LocalHost.prepare_restore(&target, &["a"]).unwrap();
        LocalHost
            .write_restored(SourceKind::File, &staging.dir.join("a"), &mut &b"data"[..])
            .unwrap();
        LocalHost.commit_restore(&staging, &["a"]).unwrap();
        assert_eq!(std::fs::read(target.join("a")).unwrap(), b"data");
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1);

        let err = LocalHost.prepare_restore(&target, &["a"]).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_restore_removes_abandoned_staging_directories_and_no_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("srv");
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        // A killed restore's staging: data, and nobody holds its lock.
        std::fs::create_dir_all(target.join(".drp-restore-killed/www")).unwrap();
        std::fs::write(target.join(".drp-restore-killed/www/f"), "partial").unwrap();
        // One that died before writing anything, an hour ago.
        std::fs::create_dir(target.join(".drp-restore-old")).unwrap();
        File::open(target.join(".drp-restore-old"))
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        // A restore that just created its staging directory and has not locked it yet.
        std::fs::create_dir(target.join(".drp-restore-new")).unwrap();
        // A running restore of another process, an hour long already (the lock is per open
        // file, as a lock of another process would be).
        std::fs::create_dir_all(target.join(".drp-restore-live/www")).unwrap();
        let live = File::open(target.join(".drp-restore-live")).unwrap();
        live.set_modified(hour_ago).unwrap();
        let live = Flock::lock(live, FlockArg::LockExclusive).unwrap();
        // A running restore of this process.
        let mine = LocalHost.prepare_restore(&target, &["db"]).unwrap();
        LocalHost
            .write_restored(SourceKind::File, &mine.dir.join("db"), &mut &b"data"[..])
            .unwrap();
        // Not staging directories: a link to elsewhere, kept data, the operator's files.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("keep"), "keep").unwrap();
        std::os::unix::fs::symlink(&elsewhere, target.join(".drp-restore-link")).unwrap();
        std::fs::create_dir_all(target.join(".drp-kept-abc/www")).unwrap();
        std::fs::write(target.join("index.html"), "x").unwrap();

        let staging = LocalHost.prepare_restore(&target, &["www"]).unwrap();
        let mut expected = vec![
            ".drp-kept-abc".to_string(),
            ".drp-restore-link".into(),
            ".drp-restore-live".into(),
            ".drp-restore-new".into(),
            mine.dir.file_name().unwrap().to_string_lossy().into_owned(),
            staging
                .dir
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            "index.html".into(),
        ];
        expected.sort();
        assert_eq!(names(&target), expected);
        assert_eq!(names(&elsewhere), ["keep"]);

        // Once their restores end, what they left is removed by the next restore.
        drop(live);
        LocalHost.commit_restore(&mine, &["db"]).unwrap();
        LocalHost.discard_restore(&staging);
        File::open(target.join(".drp-restore-new"))
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        let staging = LocalHost.prepare_restore(&target, &["www"]).unwrap();
        LocalHost.discard_restore(&staging);
        assert_eq!(
            names(&target),
            [".drp-kept-abc", ".drp-restore-link", "db", "index.html"]
        );
    }

    #[test]
    fn a_commit_that_finds_its_name_taken_keeps_the_data_out_of_the_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("srv");
        let staging = LocalHost.prepare_restore(&target, &["a"]).unwrap();
        LocalHost
            .write_restored(SourceKind::File, &staging.dir.join("a"), &mut &b"data"[..])
            .unwrap();
        std::fs::write(target.join("a"), "someone else's").unwrap();
        let err = LocalHost.commit_restore(&staging, &["a"]).unwrap_err();
        let kept = staging.kept_dir();
        assert!(
            err.to_string()
                .ends_with(&format!("the restored data was left in {}", kept.display())),
            "{err}"
        );
        let again = LocalHost.prepare_restore(&target, &["b"]).unwrap();
        LocalHost.discard_restore(&again);
        assert_eq!(std::fs::read(kept.join("a")).unwrap(), b"data");
    }
}
