//! Snapshot manifests, snapshot ids, names and the object layout.
//!
//! Layout under the store URL (documented in the README, and stable):
//!
//! ```text
//! STACK/data/SNAPSHOT/SOURCE.tar.zst.pgp   a directory source: tar → zstd → OpenPGP
//! STACK/data/SNAPSHOT/SOURCE.zst.pgp       a file or command source: zstd → OpenPGP
//! STACK/snapshots/SNAPSHOT.json.sig        detached OpenPGP signature of the manifest (optional)
//! STACK/snapshots/SNAPSHOT.json            the manifest, written last
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The manifest format this version writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// What a source was read from, which decides how it is restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A directory, stored as a tar archive; restored as a directory.
    Directory,
    /// A regular file; restored as a file.
    File,
    /// The standard output of a command; restored as a file.
    Command,
}

impl SourceKind {
    /// Suffix of the stored object.
    pub fn object_suffix(self) -> &'static str {
        match self {
            SourceKind::Directory => "tar.zst.pgp",
            SourceKind::File | SourceKind::Command => "zst.pgp",
        }
    }
}

/// One source of a snapshot, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Source name, unique in the snapshot.
    pub name: String,
    /// What it was read from.
    pub kind: SourceKind,
    /// The stored object's key, relative to the store URL.
    pub object: String,
    /// Bytes before compression (the tar stream for directories).
    pub plain_bytes: u64,
    /// Bytes of the stored (compressed, encrypted) object.
    pub stored_bytes: u64,
    /// SHA-256 of the stored object, lowercase hex.
    pub sha256: String,
}

/// The record of one snapshot; its presence is what makes the snapshot exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`] of the writer.
    pub format: u32,
    /// Name and version of the tool that wrote it.
    pub tool: String,
    /// Stack the snapshot belongs to.
    pub stack: String,
    /// Snapshot id.
    pub snapshot: String,
    /// When the backup started.
    pub time: jiff::Timestamp,
    /// When the last source was stored.
    pub finished: jiff::Timestamp,
    /// Host that made the backup.
    pub hostname: String,
    /// Fingerprints of the certificates the data is encrypted to.
    pub recipients: Vec<String>,
    /// Fingerprint of the key that signed this manifest, if any.
    pub signer: Option<String>,
    /// The sources, in the order given.
    pub sources: Vec<SourceRecord>,
}

impl Manifest {
    /// Parses a manifest and checks that it belongs to `stack`/`snapshot`, so a manifest copied
    /// from another stack or snapshot is refused.
    pub fn parse(bytes: &[u8], stack: &str, snapshot: &str) -> Result<Self> {
        let refuse = |reason: String| Error::ManifestRefused {
            stack: stack.to_string(),
            snapshot: snapshot.to_string(),
            reason,
        };
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| refuse(format!("not a drp manifest: {e}")))?;
        if manifest.format > MANIFEST_FORMAT {
            return Err(refuse(format!(
                "format {} is newer than this drp understands ({MANIFEST_FORMAT})",
                manifest.format
            )));
        }
        if manifest.stack != stack || manifest.snapshot != snapshot {
            return Err(refuse(format!(
                "it describes stack {}, snapshot {}",
                manifest.stack, manifest.snapshot
            )));
        }
        let mut names = std::collections::BTreeSet::new();
        for source in &manifest.sources {
            // Source names become paths on restore (`TARGET/NAME`): one that backups would
            // refuse (`..`, `a/b`, `/etc/x`) is refused here too, whatever else it says.
            if let Err(e) = validate_name("source", &source.name) {
                return Err(refuse(e.to_string()));
            }
            if !names.insert(source.name.as_str()) {
                return Err(refuse(format!("source {} is listed twice", source.name)));
            }
            let expected = Layout::new(stack).object(snapshot, &source.name, source.kind);
            if source.object != expected {
                return Err(refuse(format!(
                    "source {} points at {}, expected {expected}",
                    source.name, source.object
                )));
            }
        }
        Ok(manifest)
    }

    /// Total stored bytes.
    pub fn stored_bytes(&self) -> u64 {
        self.sources
            .iter()
            .fold(0, |sum, s| sum.saturating_add(s.stored_bytes))
    }

    /// Total plain bytes.
    pub fn plain_bytes(&self) -> u64 {
        self.sources
            .iter()
            .fold(0, |sum, s| sum.saturating_add(s.plain_bytes))
    }
}

/// Where a stack's objects live in the store.
#[derive(Debug, Clone)]
pub struct Layout {
    stack: String,
}

impl Layout {
    /// The layout of `stack` (assumed valid, see [`validate_name`]).
    pub fn new(stack: &str) -> Self {
        Self {
            stack: stack.to_string(),
        }
    }

    /// Prefix of all manifests and signatures.
    pub fn snapshots_prefix(&self) -> String {
        format!("{}/snapshots", self.stack)
    }

    /// Prefix of all data objects.
    pub fn data_prefix(&self) -> String {
        format!("{}/data", self.stack)
    }

    /// Prefix of one snapshot's data objects.
    pub fn snapshot_data_prefix(&self, snapshot: &str) -> String {
        format!("{}/data/{snapshot}", self.stack)
    }

    /// The manifest's key.
    pub fn manifest(&self, snapshot: &str) -> String {
        format!("{}/snapshots/{snapshot}.json", self.stack)
    }

    /// The manifest signature's key.
    pub fn signature(&self, snapshot: &str) -> String {
        format!("{}/snapshots/{snapshot}.json.sig", self.stack)
    }

    /// A source object's key.
    pub fn object(&self, snapshot: &str, source: &str, kind: SourceKind) -> String {
        format!(
            "{}/data/{snapshot}/{source}.{}",
            self.stack,
            kind.object_suffix()
        )
    }
}

/// Checks a stack or source name: it becomes a path segment in the store and on disk.
pub fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 128 {
        Some("it is longer than 128 characters")
    } else if name.starts_with('.') || name.starts_with('-') {
        Some("it must not start with '.' or '-'")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Some("use only letters, digits, '.', '_' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            what,
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A new snapshot id: the UTC start time to the millisecond (so ids sort by time, also for
/// backups made in the same second) and 32 random bits (so two hosts backing up the same stack
/// at the same moment do not collide), e.g. `20261129T101500.123Z-1a2b3c4d`.
pub fn new_snapshot_id(time: jiff::Timestamp) -> String {
    format!(
        "{}-{:08x}",
        time.strftime("%Y%m%dT%H%M%S%.3fZ"),
        rand::random::<u32>()
    )
}

/// True if `id` has the shape [`new_snapshot_id`] gives.
pub fn is_snapshot_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 29
        && bytes[8] == b'T'
        && bytes[15] == b'.'
        && bytes[19] == b'Z'
        && bytes[20] == b'-'
        && bytes[..8].iter().all(u8::is_ascii_digit)
        && bytes[9..15].iter().all(u8::is_ascii_digit)
        && bytes[16..19].iter().all(u8::is_ascii_digit)
        && bytes[21..].iter().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_ids_sort_by_time_and_are_recognised() {
        let early = new_snapshot_id("2026-01-02T03:04:05Z".parse().unwrap());
        let late = new_snapshot_id("2026-11-02T03:04:05Z".parse().unwrap());
        assert!(early.starts_with("20260102T030405.000Z-"), "{early}");
        let same_second = new_snapshot_id("2026-01-02T03:04:05.5Z".parse().unwrap());
        assert!(early < same_second, "{early} {same_second}");
        assert!(early < late);
        assert!(is_snapshot_id(&early));
        assert!(!is_snapshot_id("20260102T030405.000Z"));
        assert!(!is_snapshot_id("../../etc/passwd-aaaaaaaa"));
    }

    #[test]
    fn names_that_would_escape_a_path_are_refused() {
        for bad in ["", "..", ".hidden", "a/b", "a b", "-rf", "ü"] {
            let err = validate_name("source", bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid source name"), "{bad:?}: {err}");
        }
        for good in ["db", "web-files", "acme_corp.prod", "A1"] {
            validate_name("stack", good).unwrap();
        }
    }

    fn manifest() -> Manifest {
        let layout = Layout::new("acme");
        Manifest {
            format: MANIFEST_FORMAT,
            tool: "drp test".into(),
            stack: "acme".into(),
            snapshot: "20260102T030405.000Z-0000abcd".into(),
            time: jiff::Timestamp::UNIX_EPOCH,
            finished: jiff::Timestamp::UNIX_EPOCH,
            hostname: "h".into(),
            recipients: vec![],
            signer: None,
            sources: vec![SourceRecord {
                name: "db".into(),
                kind: SourceKind::Command,
                object: layout.object("20260102T030405.000Z-0000abcd", "db", SourceKind::Command),
                plain_bytes: 1,
                stored_bytes: 2,
                sha256: "00".into(),
            }],
        }
    }

    #[test]
    fn a_manifest_copied_to_another_stack_or_snapshot_is_refused() {
        let bytes = serde_json::to_vec(&manifest()).unwrap();
        Manifest::parse(&bytes, "acme", "20260102T030405.000Z-0000abcd").unwrap();
        let err = Manifest::parse(&bytes, "other", "20260102T030405.000Z-0000abcd").unwrap_err();
        assert!(err.to_string().contains("it describes stack acme"), "{err}");
        let err = Manifest::parse(&bytes, "acme", "20270102T030405.000Z-0000abcd").unwrap_err();
        assert!(err.is_integrity_failure());
    }

    #[test]
    fn source_names_that_would_be_paths_outside_the_target_are_refused() {
        // Each is consistent with its own object key, so only the name check refuses it.
        for bad in [
            "..",
            "../../etc/cron.d/x",
            "a/b",
            "/etc/passwd",
            ".hidden",
            "",
        ] {
            let mut m = manifest();
            m.sources[0].name = bad.into();
            m.sources[0].object = Layout::new("acme").object(&m.snapshot, bad, SourceKind::Command);
            let bytes = serde_json::to_vec(&m).unwrap();
            let err = Manifest::parse(&bytes, "acme", &m.snapshot).unwrap_err();
            assert!(err.is_integrity_failure(), "{bad:?}: {err}");
            assert!(
                err.to_string().contains("invalid source name"),
                "{bad:?}: {err}"
            );
        }
        let mut m = manifest();
        m.sources.push(m.sources[0].clone());
        let bytes = serde_json::to_vec(&m).unwrap();
        let err = Manifest::parse(&bytes, "acme", &m.snapshot).unwrap_err();
        assert!(
            err.to_string().contains("source db is listed twice"),
            "{err}"
        );
    }

    #[test]
    fn totals_of_huge_sizes_saturate() {
        let mut m = manifest();
        m.sources[0].stored_bytes = u64::MAX;
        m.sources[0].plain_bytes = u64::MAX;
        m.sources.push(m.sources[0].clone());
        assert_eq!(m.stored_bytes(), u64::MAX);
        assert_eq!(m.plain_bytes(), u64::MAX);
    }

    #[test]
    fn a_source_pointing_outside_its_snapshot_is_refused() {
        let mut m = manifest();
        m.sources[0].object = "other/data/x/db.zst.pgp".into();
        let bytes = serde_json::to_vec(&m).unwrap();
        let err = Manifest::parse(&bytes, "acme", &m.snapshot).unwrap_err();
        assert!(
            err.to_string()
                .contains("points at other/data/x/db.zst.pgp"),
            "{err}"
        );
    }
}
