//! A stack's backups in a store: create, list, restore, verify and prune snapshots.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::spawn_blocking;

use crate::crypto;
use crate::error::{Error, Result};
use crate::host::{Host, HostError, LocalHost, UnsafeEntry};
use crate::keys::{Recipients, SecretKeys, Signer, TrustedSigners};
use crate::manifest::{
    Layout, MANIFEST_FORMAT, Manifest, SourceKind, SourceRecord, is_snapshot_id, new_snapshot_id,
    validate_name,
};
use crate::pipe::{
    Chunk, CountingWriter, PIPE_DEPTH, PipeReader, PipeWriter, copy_in_chunks, pipe, pump,
};
use crate::retention::{RetentionDecision, RetentionPolicy};
use crate::source::SourceSpec;
use crate::store::{BackupStore, BackupStoreExt, IncompleteUpload, ObjectInfo, StoreError};

/// zstd level of backups: zstd's default, the best speed/ratio trade-off for mixed data.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;

/// Which snapshot an operation is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotSelector {
    /// The newest snapshot of the stack.
    Latest,
    /// A snapshot id, or a prefix of exactly one.
    Id(String),
}

impl FromStr for SnapshotSelector {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match s {
            "latest" => SnapshotSelector::Latest,
            id => SnapshotSelector::Id(id.to_string()),
        })
    }
}

/// What to back up and for whom.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// The sources; names must be unique.
    pub sources: Vec<SourceSpec>,
    /// Certificates every object is encrypted to.
    pub recipients: Recipients,
    /// Key that signs the manifest, if any.
    pub signer: Option<Signer>,
    /// Sources processed at once.
    pub parallelism: usize,
    /// zstd level.
    pub compression_level: i32,
    /// Where the sources are read.
    pub host: Arc<dyn Host>,
}

impl CreateOptions {
    /// Options with the defaults: sources in parallel up to the number of cores, zstd level 3.
    pub fn new(sources: Vec<SourceSpec>, recipients: Recipients) -> Self {
        Self {
            sources,
            recipients,
            signer: None,
            parallelism: default_parallelism(),
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            host: Arc::new(LocalHost),
        }
    }
}

/// Bytes per zstd job: zstd keeps about seven jobs' worth of buffers, so small jobs keep a
/// backup within its memory budget even when the store is slower than the compressor. 2 MiB
/// measured 5% faster on a tree of text but peaked at 67 MiB with a slow consumer.
const ZSTD_JOB_SIZE: u32 = 1 << 20;

/// How much of the previous job each zstd job re-reads as history (log scale, 1 = none, 9 =
/// the whole window). With small jobs, re-hashing that history is a good part of the cost.
const ZSTD_OVERLAP_LOG: u32 = 4;

fn compression_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4) as u32)
}

fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(4))
}

/// A snapshot as listed.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotEntry {
    /// Its manifest.
    pub manifest: Manifest,
    /// Whether a signature object exists (checked only where trusted signers are given).
    pub signed: bool,
}

/// Where restored data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreDestination {
    /// A directory that receives `NAME/` (directory sources) or the file `NAME` (others).
    Directory(PathBuf),
    /// The standard input of `sh -c COMMAND` (e.g. `psql` or `mongorestore --archive`): the
    /// source's plaintext, a tar stream for a directory. Exactly one source.
    Command(String),
}

/// What to restore and where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Which snapshot.
    pub snapshot: SnapshotSelector,
    /// Which sources; empty means all.
    pub sources: Vec<String>,
    /// Where the data goes.
    pub destination: RestoreDestination,
    /// Keys that can decrypt the stack's data.
    pub keys: SecretKeys,
    /// If given, the manifest must carry a valid signature by one of these.
    pub trust: Option<TrustedSigners>,
    /// The machine the destination is on.
    pub host: Arc<dyn Host>,
}

impl RestoreOptions {
    /// Every source of the latest snapshot, on this machine, without a signature check.
    pub fn new(keys: SecretKeys, destination: RestoreDestination) -> Self {
        Self {
            snapshot: SnapshotSelector::Latest,
            sources: Vec::new(),
            destination,
            keys,
            trust: None,
            host: Arc::new(LocalHost),
        }
    }
}

/// One restored source.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredSource {
    /// Source name.
    pub name: String,
    /// What it was.
    pub kind: SourceKind,
    /// Where it now is (none when piped into a command).
    pub path: Option<PathBuf>,
    /// Plain bytes restored.
    pub plain_bytes: u64,
}

/// The outcome of a restore.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// Snapshot id.
    pub snapshot: String,
    /// Signer whose signature was checked, if trusted signers were given.
    pub verified_signer: Option<String>,
    /// Restored sources.
    pub sources: Vec<RestoredSource>,
}

/// One verified snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedSnapshot {
    /// Snapshot id.
    pub snapshot: String,
    /// Signer whose signature was checked, if trusted signers were given.
    pub verified_signer: Option<String>,
    /// Fingerprints of the certificates its data is encrypted to: the secret key of any of
    /// them restores it (after a key rotation, old snapshots need the old key).
    pub recipients: Vec<String>,
    /// Sources read back, decrypted and decompressed in full.
    pub sources: Vec<RestoredSource>,
}

/// What prune decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// Decision per snapshot, newest first.
    pub decisions: Vec<RetentionDecision>,
    /// Snapshot data left by interrupted backups (no manifest), older than the grace period.
    pub orphans: Vec<String>,
    /// Objects removed (or that would be, on a dry run).
    pub removed_objects: Vec<String>,
    /// Uploads under the stack's data started before the grace period and never completed
    /// nor aborted (a backup killed, or whose abort could not reach the store): aborted, so
    /// the store frees their parts (or that would be, on a dry run).
    pub aborted_uploads: Vec<IncompleteUpload>,
    /// True when nothing was removed because it was a dry run.
    pub dry_run: bool,
}

/// A stack's backups in a store.
#[derive(Debug, Clone)]
pub struct Repository {
    store: Arc<dyn BackupStore>,
    stack: String,
    layout: Layout,
}

impl Repository {
    /// The backups of `stack` in `store`.
    pub fn new(store: Arc<dyn BackupStore>, stack: &str) -> Result<Self> {
        validate_name("stack", stack)?;
        Ok(Self {
            store,
            stack: stack.to_string(),
            layout: Layout::new(stack),
        })
    }

    /// The stack's name.
    pub fn stack(&self) -> &str {
        &self.stack
    }

    /// Backs up every source into a new snapshot and returns its manifest. On any failure
    /// nothing becomes visible: objects already stored are removed and no manifest is written.
    pub async fn create(&self, options: CreateOptions) -> Result<Manifest> {
        let CreateOptions {
            sources,
            recipients,
            signer,
            parallelism,
            compression_level,
            host,
        } = options;
        if sources.is_empty() {
            return Err(Error::InvalidSourceSpec {
                spec: String::new(),
                reason: "no sources given".into(),
            });
        }
        let mut names = BTreeSet::new();
        for spec in &sources {
            if !names.insert(spec.name.clone()) {
                return Err(Error::InvalidSourceSpec {
                    spec: spec.to_string(),
                    reason: format!("source name {:?} is given twice", spec.name),
                });
            }
        }
        // Every source is checked before anything is uploaded (host methods block).
        let planned = {
            let (host, stack) = (host.clone(), self.stack.clone());
            spawn_blocking(move || {
                sources
                    .into_iter()
                    .map(|spec| {
                        let kind = spec.kind(host.as_ref(), &stack)?;
                        Ok((spec, kind))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await
            .expect("checking sources does not panic")?
        };

        let time = jiff::Timestamp::now();
        let snapshot = new_snapshot_id(time);
        let records: Result<Vec<SourceRecord>> = stream::iter(planned)
            .map(|(spec, kind)| {
                self.store_source(&snapshot, spec, kind, &host, &recipients, compression_level)
            })
            .buffered(parallelism.max(1))
            .try_collect()
            .await;
        let records = match records {
            Ok(records) => records,
            Err(e) => {
                self.remove_prefix(&self.layout.snapshot_data_prefix(&snapshot))
                    .await;
                return Err(e);
            }
        };

        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            tool: concat!("drp ", env!("CARGO_PKG_VERSION")).to_string(),
            stack: self.stack.clone(),
            snapshot: snapshot.clone(),
            time,
            finished: jiff::Timestamp::now(),
            hostname: hostname(),
            recipients: recipients.fingerprints(),
            signer: signer.as_ref().map(Signer::fingerprint),
            sources: records,
        };
        let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        let committed = self
            .commit_manifest(&snapshot, bytes, signer.as_ref())
            .await;
        if let Err(e) = committed {
            self.remove_prefix(&self.layout.snapshot_data_prefix(&snapshot))
                .await;
            return Err(e);
        }
        Ok(manifest)
    }

    async fn commit_manifest(
        &self,
        snapshot: &str,
        bytes: Vec<u8>,
        signer: Option<&Signer>,
    ) -> Result<()> {
        if let Some(signer) = signer {
            let signature = crypto::sign_detached(signer, &bytes)?;
            self.store
                .put(&self.layout.signature(snapshot), signature.into())
                .await?;
        }
        // Written last: from here on the snapshot exists.
        self.store
            .put(&self.layout.manifest(snapshot), bytes.into())
            .await?;
        Ok(())
    }

    /// Best effort: a failure here leaves only invisible objects, which prune removes later.
    async fn remove_prefix(&self, prefix: &str) {
        if let Ok(objects) = self.store.list(prefix).await {
            for object in objects {
                let _ = self.store.delete(&object.key).await;
            }
        }
    }

    /// source → (thread) read → (thread) zstd → (thread) OpenPGP → upload, with SHA-256 and
    /// byte counts taken on the way. The object is completed only when every stage succeeded.
    async fn store_source(
        &self,
        snapshot: &str,
        spec: SourceSpec,
        kind: SourceKind,
        host: &Arc<dyn Host>,
        recipients: &Recipients,
        level: i32,
    ) -> Result<SourceRecord> {
        let name = spec.name.clone();
        let object = self.layout.object(snapshot, &name, kind);
        let mut upload = self.store.put_stream(&object).await?;

        let (mut plain_out, mut plain_in) = pipe();
        let (compressed_out, mut compressed_in) = pipe();
        let (cipher_tx, mut cipher_rx) = mpsc::channel::<Chunk>(PIPE_DEPTH);

        let stack = self.stack.clone();
        let host = host.clone();
        let read = spawn_blocking(move || {
            let mut counted = CountingWriter {
                inner: &mut plain_out,
                count: 0,
            };
            host.read_source(&spec.origin, kind, &mut counted)
                .map_err(|m| spec.failed(&stack, m))?;
            let n = counted.count;
            plain_out
                .finish()
                .map_err(|e| Error::io("backup pipeline", e))?;
            Ok::<u64, Error>(n)
        });
        let compress = spawn_blocking(move || {
            let mut encoder = zstd::Encoder::new(compressed_out, level)?;
            let workers = compression_workers();
            if workers > 1 {
                // zstd's own worker threads: compressible data (a directory of text) is bound
                // by zstd, and one core of it is slower than tar and the cipher together.
                encoder.multithread(workers)?;
                encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                encoder.set_parameter(zstd::stream::raw::CParameter::OverlapSizeLog(
                    ZSTD_OVERLAP_LOG,
                ))?;
            }
            pump(&mut plain_in, &mut encoder)?;
            encoder.finish()?.finish()
        });
        let recipients = recipients.clone();
        let encrypt = spawn_blocking(move || {
            let mut writer = crypto::encrypt(&recipients, PipeWriter::new(cipher_tx))?;
            pump(&mut compressed_in, &mut writer).map_err(|e| Error::io("encrypting", e))?;
            writer.finish().map_err(|e| Error::io("encrypting", e))
        });

        let mut hasher = Sha256::new();
        let mut stored_bytes = 0u64;
        let mut upload_error = None;
        while let Some(Ok(chunk)) = cipher_rx.recv().await {
            hasher.update(&chunk);
            stored_bytes += chunk.len() as u64;
            if let Err(e) = upload.write(chunk).await {
                upload_error = Some(e);
                break;
            }
        }
        drop(cipher_rx);

        let read = read.await.expect("the read stage does not panic");
        let compress = compress.await.expect("the compress stage does not panic");
        let encrypt = encrypt.await.expect("the encrypt stage does not panic");
        // A stage stopped by the stage after it reports a broken pipe; the cause is downstream.
        let failure = upload_error
            .map(Error::from)
            .or(encrypt.err().filter(|e| !is_broken_pipe(e)))
            .or(compress
                .err()
                .filter(|e| e.kind() != io::ErrorKind::BrokenPipe)
                .map(|e| {
                    Error::io(
                        format!("stack {}, source {name}: compressing", self.stack),
                        e,
                    )
                }));
        let plain_bytes = match (failure, read) {
            (Some(e), _) | (None, Err(e)) => {
                let _ = upload.abort().await;
                return Err(e);
            }
            (None, Ok(n)) => n,
        };
        upload.complete().await?;
        Ok(SourceRecord {
            name,
            kind,
            object,
            plain_bytes,
            stored_bytes,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Snapshot ids present (those with a manifest), oldest first.
    async fn snapshot_ids(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .store
            .list(&self.layout.snapshots_prefix())
            .await?
            .into_iter()
            .filter_map(|o| snapshot_of_manifest_key(&o.key).map(str::to_string))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every snapshot of the stack, newest first.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotEntry>> {
        let objects = self.store.list(&self.layout.snapshots_prefix()).await?;
        self.snapshots_listed(&objects).await
    }

    /// The snapshots among `objects`, a listing of the snapshots prefix, newest first.
    async fn snapshots_listed(&self, objects: &[ObjectInfo]) -> Result<Vec<SnapshotEntry>> {
        let signed: BTreeSet<&str> = objects
            .iter()
            .filter_map(|o| snapshot_of_signature_key(&o.key))
            .collect();
        let mut ids: Vec<&str> = objects
            .iter()
            .filter_map(|o| snapshot_of_manifest_key(&o.key))
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let signed = &signed;
        stream::iter(ids)
            .map(|id| async move {
                let manifest = self.load_manifest(id, None).await?;
                Ok(SnapshotEntry {
                    manifest,
                    signed: signed.contains(id),
                })
            })
            .buffered(8)
            .try_collect()
            .await
    }

    /// The id a selector names.
    pub async fn resolve(&self, selector: &SnapshotSelector) -> Result<String> {
        let ids = self.snapshot_ids().await?;
        let not_found = |message: String| Error::SnapshotNotFound {
            stack: self.stack.clone(),
            message,
        };
        match selector {
            SnapshotSelector::Latest => ids
                .last()
                .cloned()
                .ok_or_else(|| not_found(format!("no snapshots in {}", self.store))),
            SnapshotSelector::Id(wanted) => {
                let matches: Vec<&String> = ids
                    .iter()
                    .filter(|id| id.starts_with(wanted.as_str()))
                    .collect();
                match matches.as_slice() {
                    [one] => Ok((*one).clone()),
                    [] => Err(not_found(format!(
                        "no snapshot {wanted} in {} ({} snapshots{})",
                        self.store,
                        ids.len(),
                        ids.last()
                            .map(|l| format!(", latest {l}"))
                            .unwrap_or_default()
                    ))),
                    many => Err(not_found(format!(
                        "{wanted} matches {} snapshots; give more of the id",
                        many.len()
                    ))),
                }
            }
        }
    }

    /// Reads a snapshot's manifest; with `trust`, refuses it unless it is signed by one of them.
    pub async fn load_manifest(
        &self,
        snapshot: &str,
        trust: Option<&TrustedSigners>,
    ) -> Result<Manifest> {
        Ok(self.load_checked_manifest(snapshot, trust).await?.0)
    }

    async fn load_checked_manifest(
        &self,
        snapshot: &str,
        trust: Option<&TrustedSigners>,
    ) -> Result<(Manifest, Option<String>)> {
        let refuse = |reason: String| Error::ManifestRefused {
            stack: self.stack.clone(),
            snapshot: snapshot.to_string(),
            reason,
        };
        let bytes = match self.store.get_bytes(&self.layout.manifest(snapshot)).await {
            Ok(bytes) => bytes,
            Err(StoreError::NotFound { .. }) => {
                return Err(Error::SnapshotNotFound {
                    stack: self.stack.clone(),
                    message: format!("no snapshot {snapshot} in {}", self.store),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let verified_signer = match trust {
            None => None,
            Some(trust) => {
                let signature = match self.store.get_bytes(&self.layout.signature(snapshot)).await {
                    Ok(signature) => signature,
                    Err(StoreError::NotFound { .. }) => {
                        return Err(refuse(
                            "it is not signed, and trusted signers were given".into(),
                        ));
                    }
                    Err(e) => return Err(e.into()),
                };
                let signer = crypto::verify_detached(trust, &bytes, &signature)
                    .map_err(|e| refuse(format!("signature check failed: {e}")))?;
                Some(signer)
            }
        };
        let manifest = Manifest::parse(&bytes, &self.stack, snapshot)?;
        Ok((manifest, verified_signer))
    }

    /// Restores a snapshot's sources. Into a directory, every source is first restored into a
    /// staging directory inside it and moved into place only when all of them were read,
    /// checked and decrypted in full; on failure the directory is left as it was. Into a
    /// command, the plaintext is streamed as it is checked; on failure the command is killed
    /// before it sees the end of its input.
    pub async fn restore(&self, options: RestoreOptions) -> Result<RestoreReport> {
        let RestoreOptions {
            snapshot,
            sources,
            destination,
            keys,
            trust,
            host,
        } = options;
        let snapshot = self.resolve(&snapshot).await?;
        let (manifest, verified_signer) = self
            .load_checked_manifest(&snapshot, trust.as_ref())
            .await?;
        let records = self.select_sources(&manifest, &sources)?;

        let sources = match destination {
            RestoreDestination::Command(command) => {
                let [record] = records.as_slice() else {
                    return Err(Error::OneSourceForCommand {
                        stack: self.stack.clone(),
                        snapshot: manifest.snapshot.clone(),
                        available: manifest
                            .sources
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                };
                let sink = Sink::Command { host, command };
                vec![self.fetch_source(&manifest, record, &keys, sink).await?]
            }
            RestoreDestination::Directory(target) => {
                self.restore_into_directory(&manifest, &records, &keys, host, target)
                    .await?
            }
        };
        Ok(RestoreReport {
            snapshot,
            verified_signer,
            sources,
        })
    }

    async fn restore_into_directory(
        &self,
        manifest: &Manifest,
        records: &[&SourceRecord],
        keys: &SecretKeys,
        host: Arc<dyn Host>,
        target: PathBuf,
    ) -> Result<Vec<RestoredSource>> {
        let names: Vec<String> = records.iter().map(|r| r.name.clone()).collect();
        let target_error = {
            let path = target.clone();
            move |reason: HostError| Error::Target {
                path: path.clone(),
                reason,
            }
        };
        let staging = {
            let (host, target, names) = (host.clone(), target.clone(), names.clone());
            spawn_blocking(move || host.prepare_restore(&target, &str_refs(&names)))
                .await
                .expect("preparing a restore does not panic")
                .map_err(&target_error)?
        };
        let staged: Result<Vec<RestoredSource>> = stream::iter(records)
            .map(|record| {
                let sink = Sink::Directory {
                    host: host.clone(),
                    path: staging.dir.join(&record.name),
                };
                self.fetch_source(manifest, record, keys, sink)
            })
            .buffered(default_parallelism())
            .try_collect()
            .await;
        let committed = match staged {
            Ok(staged) => {
                let (host, staging) = (host.clone(), staging.clone());
                spawn_blocking(move || host.commit_restore(&staging, &str_refs(&names)))
                    .await
                    .expect("committing a restore does not panic")
                    .map_err(&target_error)
                    .map(|()| staged)
            }
            Err(e) => {
                let _ = spawn_blocking(move || host.discard_restore(&staging)).await;
                return Err(e);
            }
        };
        let mut restored = committed?;
        for source in &mut restored {
            source.path = Some(target.join(&source.name));
        }
        Ok(restored)
    }

    /// Reads snapshots back in full (hashes, signature if `trust` is given, OpenPGP integrity,
    /// decompression, tar structure) without writing anything. Returns one outcome per
    /// snapshot, newest first, so that one bad snapshot does not hide the state of the others.
    pub async fn verify(
        &self,
        selector: Option<&SnapshotSelector>,
        keys: &SecretKeys,
        trust: Option<&TrustedSigners>,
    ) -> Result<Vec<(String, Result<VerifiedSnapshot>)>> {
        let ids = match selector {
            Some(selector) => vec![self.resolve(selector).await?],
            None => {
                let mut ids = self.snapshot_ids().await?;
                ids.reverse();
                ids
            }
        };
        let mut outcomes = Vec::with_capacity(ids.len());
        for id in ids {
            let outcome = async {
                let (manifest, verified_signer) = self.load_checked_manifest(&id, trust).await?;
                let sources = stream::iter(&manifest.sources)
                    .map(|record| self.fetch_source(&manifest, record, keys, Sink::Check))
                    .buffered(default_parallelism())
                    .try_collect()
                    .await?;
                Ok(VerifiedSnapshot {
                    snapshot: id.clone(),
                    verified_signer,
                    recipients: manifest.recipients.clone(),
                    sources,
                })
            }
            .await;
            outcomes.push((id, outcome));
        }
        Ok(outcomes)
    }

    fn select_sources<'m>(
        &self,
        manifest: &'m Manifest,
        wanted: &[String],
    ) -> Result<Vec<&'m SourceRecord>> {
        if wanted.is_empty() {
            return Ok(manifest.sources.iter().collect());
        }
        wanted
            .iter()
            .map(|name| {
                manifest
                    .sources
                    .iter()
                    .find(|s| &s.name == name)
                    .ok_or_else(|| Error::SourceNotFound {
                        stack: self.stack.clone(),
                        snapshot: manifest.snapshot.clone(),
                        source_name: name.clone(),
                        available: manifest
                            .sources
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            })
            .collect()
    }

    /// object → (async) SHA-256 → (thread) OpenPGP decrypt → (thread) zstd → sink.
    ///
    /// The object is hashed as it streams; if the hash differs from the manifest, the stages
    /// after it get an error instead of the end of data, so no sink ever takes bad data for
    /// complete. Errors tell refused data (size, hash, key, integrity) from local failures.
    async fn fetch_source(
        &self,
        manifest: &Manifest,
        record: &SourceRecord,
        keys: &SecretKeys,
        sink: Sink,
    ) -> Result<RestoredSource> {
        let refuse = |reason: String| Error::DataRefused {
            stack: self.stack.clone(),
            snapshot: manifest.snapshot.clone(),
            source_name: record.name.clone(),
            reason,
        };
        let stored = match self.store.head(&record.object).await {
            Ok(info) => info,
            Err(StoreError::NotFound { .. }) => {
                return Err(refuse(format!("object {} is missing", record.object)));
            }
            Err(e) => return Err(e.into()),
        };
        if stored.size != record.stored_bytes {
            return Err(refuse(format!(
                "object {} has {} bytes, the manifest says {}: truncated or replaced",
                record.object, stored.size, record.stored_bytes
            )));
        }
        let mut object = self.store.get(&record.object).await?;

        let (cipher_tx, cipher_rx) = mpsc::channel::<Chunk>(PIPE_DEPTH);
        let (mut plain_out, plain_in) = pipe();
        // Set when the key cannot open the message: reading the rest would prove nothing.
        let key_failed = Arc::new(AtomicBool::new(false));

        let keys_are_recipients = keys
            .fingerprints()
            .iter()
            .any(|fingerprint| manifest.recipients.contains(fingerprint));
        let keys = keys.clone();
        let key_failed_flag = key_failed.clone();
        let decrypt = spawn_blocking(move || {
            let mut reader = match crypto::decrypt(&keys, PipeReader::new(cipher_rx)) {
                Ok(reader) => reader,
                Err(e) => {
                    key_failed_flag.store(true, Ordering::SeqCst);
                    return Err(DecryptFailure::Key(e));
                }
            };
            copy_in_chunks(&mut reader, &mut plain_out).map_err(DecryptFailure::Data)?;
            plain_out.finish().map_err(DecryptFailure::Data)
        });
        let kind = record.kind;
        let unpack = spawn_blocking(move || sink.consume(kind, plain_in));

        // Hash the whole object even if a later stage stops early: only a matching hash lets a
        // later failure be blamed on this machine rather than on the stored data.
        let mut hasher = Sha256::new();
        let mut read_error = None;
        let mut forward = Some(cipher_tx);
        while let Some(chunk) = object.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            };
            hasher.update(&chunk);
            if let Some(tx) = &forward
                && tx.send(Ok(chunk)).await.is_err()
            {
                forward = None;
            }
            if key_failed.load(Ordering::SeqCst) {
                break;
            }
        }
        let sha256 = hex::encode(hasher.finalize());
        let hash_matches = read_error.is_none() && sha256 == record.sha256;
        if let Some(tx) = forward
            && !hash_matches
        {
            let _ = tx
                .send(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the stored object does not match the manifest",
                )))
                .await;
        }

        let decrypted = decrypt.await.expect("the decrypt stage does not panic");
        let unpacked = unpack.await.expect("the unpack stage does not panic");
        if let Some(e) = read_error {
            return Err(e.into());
        }
        if let Err(DecryptFailure::Key(e)) = decrypted {
            // Which key it needs: after a key rotation, old snapshots need the old one.
            let reason = format!(
                "cannot decrypt: {e}; it needs the secret key of {}",
                manifest.recipients.join(" or ")
            );
            // Keys of none of the certificates the snapshot was made for: the operator's
            // mistake, not the backup's. A key the snapshot was made for that cannot open the
            // object means the object is not what the manifest says.
            return Err(if keys_are_recipients {
                refuse(reason)
            } else {
                Error::WrongKey {
                    stack: self.stack.clone(),
                    snapshot: manifest.snapshot.clone(),
                    source_name: record.name.clone(),
                    reason,
                }
            });
        }
        if !hash_matches {
            return Err(refuse(format!(
                "object {} has SHA-256 {sha256}, the manifest says {}: corrupted or replaced",
                record.object, record.sha256
            )));
        }
        match decrypted {
            Err(DecryptFailure::Data(e)) if e.kind() != io::ErrorKind::BrokenPipe => {
                return Err(refuse(format!("OpenPGP decryption failed: {e}")));
            }
            _ => {}
        }
        let plain_bytes = unpacked.map_err(|failure| match failure {
            SinkFailure::Data(e) => refuse(format!("the decrypted data does not unpack: {e}")),
            SinkFailure::Unsafe(e) => refuse(format!("archive refused: {e}")),
            SinkFailure::Local(e, place) => Error::io(
                format!(
                    "stack {}, snapshot {}, source {}: {place}",
                    self.stack, manifest.snapshot, record.name
                ),
                e,
            ),
        })?;
        Ok(RestoredSource {
            name: record.name.clone(),
            kind: record.kind,
            path: None,
            plain_bytes,
        })
    }

    /// Applies `policy`, removes what it does not keep (manifest first, so a snapshot vanishes
    /// whole even if prune is interrupted), and removes data of interrupted backups older
    /// than `orphan_grace` (younger ones may belong to a backup still running): their
    /// objects, and their uploads that were never completed nor aborted.
    pub async fn prune(
        &self,
        policy: &RetentionPolicy,
        orphan_grace: jiff::SignedDuration,
        dry_run: bool,
    ) -> Result<PruneReport> {
        let snapshot_objects = self.store.list(&self.layout.snapshots_prefix()).await?;
        let entries = self.snapshots_listed(&snapshot_objects).await?;
        let times: Vec<(String, jiff::Timestamp)> = entries
            .iter()
            .map(|e| (e.manifest.snapshot.clone(), e.manifest.time))
            .collect();
        let decisions = policy.apply(&times)?;

        let data = self.store.list(&self.layout.data_prefix()).await?;
        let mut by_snapshot: BTreeMap<String, Vec<ObjectInfo>> = BTreeMap::new();
        for object in data.into_iter().chain(
            snapshot_objects
                .iter()
                .filter(|o| o.key.ends_with(".json.sig"))
                .cloned(),
        ) {
            if let Some(id) = snapshot_of_object_key(&self.layout, &object.key) {
                by_snapshot.entry(id.to_string()).or_default().push(object);
            }
        }
        let present: BTreeSet<&str> = times.iter().map(|(id, _)| id.as_str()).collect();
        let cutoff = jiff::Timestamp::now() - orphan_grace;
        let orphans: Vec<String> = by_snapshot
            .iter()
            .filter(|(id, objects)| {
                !present.contains(id.as_str()) && objects.iter().all(|o| o.last_modified <= cutoff)
            })
            .map(|(id, _)| id.clone())
            .collect();

        let mut removed_objects = Vec::new();
        for decision in decisions.iter().filter(|d| !d.keep) {
            removed_objects.push(self.layout.manifest(&decision.snapshot));
            removed_objects.extend(
                by_snapshot
                    .get(&decision.snapshot)
                    .into_iter()
                    .flatten()
                    .map(|o| o.key.clone()),
            );
        }
        for id in &orphans {
            removed_objects.extend(by_snapshot[id].iter().map(|o| o.key.clone()));
        }
        let mut aborted_uploads: Vec<IncompleteUpload> = self
            .store
            .incomplete_uploads(&self.layout.data_prefix())
            .await?
            .into_iter()
            .filter(|upload| {
                // Both clocks must agree that it is old: the store's (its initiation time; some
                // S3-compatible servers answer a constant) and the backup's own (its
                // snapshot id is the time the backup started).
                let started =
                    snapshot_of_object_key(&self.layout, &upload.key).and_then(snapshot_start_time);
                upload.initiated <= cutoff && started.is_none_or(|t| t <= cutoff)
            })
            .collect();
        aborted_uploads.sort_by(|a, b| (&a.key, a.initiated).cmp(&(&b.key, b.initiated)));
        if !dry_run {
            for key in &removed_objects {
                self.store.delete(key).await?;
            }
            for upload in &aborted_uploads {
                self.store.abort_incomplete_upload(upload).await?;
            }
        }
        Ok(PruneReport {
            decisions,
            orphans,
            removed_objects,
            aborted_uploads,
            dry_run,
        })
    }
}

enum DecryptFailure {
    Key(crate::keys::KeyError),
    Data(io::Error),
}

fn is_broken_pipe(error: &Error) -> bool {
    matches!(error, Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
}

/// `STACK/snapshots/ID.json` → `ID`.
fn snapshot_of_manifest_key(key: &str) -> Option<&str> {
    let id = key.rsplit_once('/')?.1.strip_suffix(".json")?;
    is_snapshot_id(id).then_some(id)
}

/// `STACK/snapshots/ID.json.sig` → `ID`.
fn snapshot_of_signature_key(key: &str) -> Option<&str> {
    let id = key.rsplit_once('/')?.1.strip_suffix(".json.sig")?;
    is_snapshot_id(id).then_some(id)
}

/// `STACK/data/ID/...` or `STACK/snapshots/ID.json.sig` → `ID`.
fn snapshot_of_object_key<'k>(layout: &Layout, key: &'k str) -> Option<&'k str> {
    match key.strip_prefix(&format!("{}/", layout.data_prefix())) {
        Some(rest) => rest.split('/').next().filter(|id| is_snapshot_id(id)),
        None => snapshot_of_signature_key(key),
    }
}

/// `20261129T101500.123Z-1a2b3c4d` → 2026-11-29T10:15:00.123Z.
fn snapshot_start_time(id: &str) -> Option<jiff::Timestamp> {
    let t = id.get(..19)?;
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &t[0..4],
        &t[4..6],
        &t[6..8],
        &t[9..11],
        &t[11..13],
        &t[13..19]
    )
    .parse()
    .ok()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn str_refs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

/// Where one source's plaintext goes.
#[derive(Debug)]
enum Sink {
    /// Nowhere: read, decompress and (for tar) walk everything, write nothing.
    Check,
    /// Restored to `path` on `host` (inside a staging directory).
    Directory { host: Arc<dyn Host>, path: PathBuf },
    /// Into the standard input of a command on `host`.
    Command {
        host: Arc<dyn Host>,
        command: String,
    },
}

/// Why a sink failed: the data it read, or the place it wrote to.
enum SinkFailure {
    Data(io::Error),
    /// An archive entry refused by the restore's rules (see [`UnsafeEntry`]).
    Unsafe(io::Error),
    Local(io::Error, String),
}

impl Sink {
    /// zstd-decodes `plain` into the sink; returns the plain bytes. Reads to the end in every
    /// case, so the stages before it see the whole message (and OpenPGP checks its integrity).
    fn consume(self, kind: SourceKind, plain: PipeReader) -> Result<u64, SinkFailure> {
        let decoder = zstd::Decoder::new(plain).map_err(SinkFailure::Data)?;
        let mut data = DataReader {
            inner: decoder,
            count: 0,
            failed: false,
        };
        let written = match &self {
            Sink::Check => check(kind, &mut data),
            Sink::Directory { host, path } => host.write_restored(kind, path, &mut data),
            Sink::Command { host, command } => host.pipe_to(command, &mut data),
        };
        if let Err(e) = written {
            return Err(if data.failed {
                SinkFailure::Data(e)
            } else if UnsafeEntry::of(&e).is_some() {
                SinkFailure::Unsafe(e)
            } else {
                let place = match &self {
                    Sink::Check => "reading".to_string(),
                    Sink::Directory { host, path } => {
                        format!("writing {} on {host}", path.display())
                    }
                    // The command is not repeated: it may hold credentials.
                    Sink::Command { host, .. } => format!("the restore command on {host}"),
                };
                SinkFailure::Local(e, place)
            });
        }
        let count = data.count;
        // Whatever follows the zstd frames (nothing, normally) must still pass through decryption.
        io::copy(&mut data.inner.finish(), &mut io::sink()).map_err(SinkFailure::Data)?;
        Ok(count)
    }
}

fn check(kind: SourceKind, data: &mut dyn Read) -> io::Result<()> {
    if kind == SourceKind::Directory {
        crate::host::check_archive(&mut *data)?;
    }
    io::copy(data, &mut io::sink()).map(drop)
}

/// The decompressed stream: counts bytes, and remembers whether reading it failed, which puts
/// the blame for a sink's failure on the data rather than on the sink.
struct DataReader<R> {
    inner: R,
    count: u64,
    failed: bool,
}

impl<R: Read> Read for DataReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.count += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_id_gives_the_time_its_backup_started() {
        let time: jiff::Timestamp = "2026-11-29T10:15:00.123Z".parse().unwrap();
        let id = crate::manifest::new_snapshot_id(time);
        assert_eq!(snapshot_start_time(&id), Some(time));
        assert_eq!(snapshot_start_time("20261129T1015"), None);
    }
}
