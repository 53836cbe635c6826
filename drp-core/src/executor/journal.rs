//! The run journal: every event of a run, kept in the plan's object store (so another
//! machine can resume the run) and in a local file (so the operator has it even when the
//! store is what broke).
//!
//! # Layout
//!
//! ```text
//! .drp/runs/RUN_ID/events/SEQ.json   one event (JSON), SEQ zero-padded to 12 digits
//! ```
//!
//! Object stores cannot append, so each event is its own small object, written atomically
//! with `put` before the executor goes on: after a crash (`kill -9` included) the journal
//! holds every event whose step boundary was passed. Events of concurrent stacks may land
//! out of order, and a crash may lose one in flight; readers sort by `SEQ` and tolerate
//! gaps. `.drp` cannot clash with a stack: stack names never start with `.`.
//!
//! The local copy is JSON Lines, appended with one `write` per event (`O_APPEND`), so a
//! killed process leaves at most a truncated last line, which the reader ignores.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use drp_backup::{BackupStore, BackupStoreExt, StoreError};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::event::{Event, EventSink, SinkError};

/// Where runs live in the store.
pub const RUNS_PREFIX: &str = ".drp/runs";

/// Events read at once when loading a journal.
const READ_CONCURRENCY: usize = 16;

/// A new run id: UTC start time and 32 random bits, `20261129T101500Z-1a2b3c4d`, so ids
/// sort by time.
pub fn new_run_id() -> String {
    let now = jiff::Timestamp::now();
    format!(
        "{}-{:08x}",
        now.strftime("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    )
}

/// Whether `id` can be a run id (it becomes part of object keys and file names).
pub fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The key of event `seq` of run `run_id`.
pub fn event_key(run_id: &str, seq: u64) -> String {
    format!("{RUNS_PREFIX}/{run_id}/events/{seq:012}.json")
}

/// Errors reading a journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The local file could not be read.
    #[error("{}: {source}", path.display())]
    Local {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// An event does not parse.
    #[error("{location}: not a journal event: {message}")]
    Corrupt {
        /// Object key or `file:line`.
        location: String,
        /// What the parser said.
        message: String,
    },
    /// The run has no events.
    #[error("no run {0} in the journal")]
    NoSuchRun(String),
    /// Not a valid run id.
    #[error("invalid run id {0:?}")]
    InvalidRunId(String),
}

/// Records a run's events in the store, and optionally in a local JSON Lines file first.
pub struct Journal {
    store: Arc<dyn BackupStore>,
    local: Option<(PathBuf, Mutex<File>)>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("store", &self.store.to_string())
            .field("local", &self.local.as_ref().map(|(p, _)| p))
            .finish()
    }
}

impl Journal {
    /// A journal in `store`.
    pub fn new(store: Arc<dyn BackupStore>) -> Journal {
        Journal { store, local: None }
    }

    /// Also appends every event to `path` (created if missing, with its directory).
    pub fn with_local_copy(mut self, path: impl Into<PathBuf>) -> io::Result<Journal> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        self.local = Some((path, Mutex::new(file)));
        Ok(self)
    }
}

#[async_trait]
impl EventSink for Journal {
    async fn record(&self, event: &Event) -> Result<(), SinkError> {
        let mut line = serde_json::to_vec(event).map_err(|e| SinkError(e.to_string()))?;
        if let Some((path, file)) = &self.local {
            line.push(b'\n');
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            // One write call per line: with O_APPEND, lines of concurrent writers do not mix.
            file.write_all(&line)
                .map_err(|e| SinkError(format!("{}: {e}", path.display())))?;
            line.pop();
        }
        self.store
            .put(&event_key(&event.run, event.seq), Bytes::from(line))
            .await
            .map_err(|e| SinkError(e.to_string()))
    }
}

/// Reads every event of run `run_id` from the store, by `seq`.
pub async fn read_journal(
    store: &dyn BackupStore,
    run_id: &str,
) -> Result<Vec<Event>, JournalError> {
    if !valid_run_id(run_id) {
        return Err(JournalError::InvalidRunId(run_id.to_string()));
    }
    let prefix = format!("{RUNS_PREFIX}/{run_id}/events");
    let mut keys: Vec<String> = store
        .list(&prefix)
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(".json"))
        .collect();
    if keys.is_empty() {
        return Err(JournalError::NoSuchRun(run_id.to_string()));
    }
    keys.sort();
    let mut events: Vec<Event> = stream::iter(keys)
        .map(|key| async move {
            let bytes = store.get_bytes(&key).await?;
            serde_json::from_slice::<Event>(&bytes).map_err(|e| JournalError::Corrupt {
                location: key,
                message: e.to_string(),
            })
        })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    events.sort_by_key(|e| e.seq);
    Ok(events)
}

/// Reads a local journal copy. A truncated last line (a process killed mid-write) is
/// ignored; any other bad line is an error.
pub fn read_local_journal(path: &Path) -> Result<Vec<Event>, JournalError> {
    let text = std::fs::read_to_string(path).map_err(|source| JournalError::Local {
        path: path.to_path_buf(),
        source,
    })?;
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut events = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(line) {
            Ok(event) => events.push(event),
            Err(_) if i + 1 == lines.len() && !complete => break,
            Err(e) => {
                return Err(JournalError::Corrupt {
                    location: format!("{}:{}", path.display(), i + 1),
                    message: e.to_string(),
                });
            }
        }
    }
    events.sort_by_key(|e| e.seq);
    Ok(events)
}

/// The ids of the runs in the store, oldest first.
pub async fn list_runs(store: &dyn BackupStore) -> Result<Vec<String>, JournalError> {
    let mut runs: Vec<String> = store
        .list(RUNS_PREFIX)
        .await?
        .into_iter()
        .filter_map(|o| {
            o.key
                .strip_prefix(&format!("{RUNS_PREFIX}/"))
                .and_then(|rest| rest.split('/').next())
                .map(str::to_string)
        })
        .collect();
    runs.sort();
    runs.dedup();
    Ok(runs)
}
