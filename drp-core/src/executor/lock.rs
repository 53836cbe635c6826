//! The run lock: one object, `.drp/lock`, in the plan's store. Whoever creates it runs the
//! plan; a second operator (on any machine) is refused and told who holds it. A crashed run
//! leaves its lock behind on purpose: only a person knows the other run is really dead, so
//! breaking a lock is an explicit command ([`break_lock`]).
//!
//! Taking the lock is one atomic "create if absent" in the store
//! ([`BackupStore::put_if_absent`]: S3 `If-None-Match: *`, an exclusive link locally), so two
//! operators can never both get it.
//!
//! A resumed run ([`acquire_for_resume`]) takes over a lock left by *the same run id*: a
//! killed run must be resumable without breaking its lock by hand, but only by naming that
//! run. A lock of another run is never taken over.

use bytes::Bytes;
use drp_backup::{BackupStore, BackupStoreExt, StoreError};
use serde::{Deserialize, Serialize};

/// The key of the lock object.
pub const LOCK_KEY: &str = ".drp/lock";

/// Who holds the lock (the lock object's content, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// The run.
    pub run_id: String,
    /// `user@hostname`.
    pub holder: String,
    /// The process.
    pub pid: u32,
    /// Since when.
    pub acquired_at: jiff::Timestamp,
}

impl LockRecord {
    /// A record for `run_id`, held by this process.
    pub fn for_this_process(run_id: impl Into<String>) -> LockRecord {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown-host".into());
        LockRecord {
            run_id: run_id.into(),
            holder: format!("{user}@{host}"),
            pid: std::process::id(),
            acquired_at: jiff::Timestamp::now(),
        }
    }
}

/// Errors of the lock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Someone holds it.
    #[error(
        "the plan is locked by run {run} ({holder}, pid {pid}, since {since}): another \
         recovery is running. If that run is dead, resume it with `drp recover --resume \
         {run}`, or break the lock explicitly with `drp recover --break-lock`",
        run = .0.run_id, holder = .0.holder, pid = .0.pid, since = .0.acquired_at
    )]
    Held(LockRecord),
    /// The lock object exists but is not a lock record.
    #[error("{LOCK_KEY} in the store is not a lock record: {0}")]
    Corrupt(String),
    /// The lock is held by another run than the one releasing or breaking it.
    #[error("the lock is held by run {actual}, not {expected}")]
    NotHolder {
        /// The run that tried.
        expected: String,
        /// The holder.
        actual: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Takes the lock for `record.run_id`, or says who holds it.
pub async fn acquire(store: &dyn BackupStore, record: &LockRecord) -> Result<(), LockError> {
    let data = serde_json::to_vec(record).map_err(|e| LockError::Corrupt(e.to_string()))?;
    if store.put_if_absent(LOCK_KEY, Bytes::from(data)).await? {
        return Ok(());
    }
    match current(store).await? {
        Some(holder) => Err(LockError::Held(holder)),
        // Released between our attempt and the read: try once more.
        None => {
            let data = serde_json::to_vec(record).map_err(|e| LockError::Corrupt(e.to_string()))?;
            if store.put_if_absent(LOCK_KEY, Bytes::from(data)).await? {
                Ok(())
            } else {
                Err(LockError::Held(current(store).await?.ok_or_else(|| {
                    LockError::Corrupt("the lock changed hands twice while being read".into())
                })?))
            }
        }
    }
}

/// Takes the lock to resume run `record.run_id`: like [`acquire`], but a lock held by that
/// same run (left by a killed attempt) is taken over, the record rewritten to this process.
/// Returns the record taken over, if any.
pub async fn acquire_for_resume(
    store: &dyn BackupStore,
    record: &LockRecord,
) -> Result<Option<LockRecord>, LockError> {
    match acquire(store, record).await {
        Ok(()) => Ok(None),
        Err(LockError::Held(holder)) if holder.run_id == record.run_id => {
            let data = serde_json::to_vec(record).map_err(|e| LockError::Corrupt(e.to_string()))?;
            store.put(LOCK_KEY, Bytes::from(data)).await?;
            Ok(Some(holder))
        }
        Err(e) => Err(e),
    }
}

/// Who holds the lock, if anyone.
pub async fn current(store: &dyn BackupStore) -> Result<Option<LockRecord>, LockError> {
    match store.get_bytes(LOCK_KEY).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LockError::Corrupt(e.to_string())),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Gives the lock of `run_id` back. Releasing a lock that is gone is fine; one held by
/// another run is refused.
pub async fn release(store: &dyn BackupStore, run_id: &str) -> Result<(), LockError> {
    match current(store).await? {
        None => Ok(()),
        Some(holder) if holder.run_id == run_id => Ok(store.delete(LOCK_KEY).await?),
        Some(holder) => Err(LockError::NotHolder {
            expected: run_id.to_string(),
            actual: holder.run_id,
        }),
    }
}

/// Breaks the lock (an operator's explicit decision that its run is dead). With
/// `expected_run`, only that run's lock is broken. Returns what was broken.
pub async fn break_lock(
    store: &dyn BackupStore,
    expected_run: Option<&str>,
) -> Result<Option<LockRecord>, LockError> {
    let Some(holder) = current(store).await? else {
        return Ok(None);
    };
    if let Some(expected) = expected_run
        && holder.run_id != expected
    {
        return Err(LockError::NotHolder {
            expected: expected.to_string(),
            actual: holder.run_id,
        });
    }
    store.delete(LOCK_KEY).await?;
    Ok(Some(holder))
}
