//! Where backups live: the [`BackupStore`] trait and its object_store-backed implementation.
//!
//! The trait is deliberately small (after object_store's `ObjectStore`): keys are
//! `/`-separated strings relative to the store URL; small objects are written atomically with
//! [`BackupStore::put`]; large ones are streamed with [`BackupStore::put_stream`] and become
//! visible only when [`Upload::complete`] succeeds.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    GetResultPayload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    WriteMultipart,
};
use url::Url;

mod multipart;
pub use multipart::IncompleteUpload;
use multipart::{RecordingConnector, S3Uploads};

/// Size of one part of a streamed upload to a cloud store. S3 requires at least 5 MiB for
/// every part but the last; larger parts would only cost memory.
pub const UPLOAD_PART_SIZE: usize = 5 * 1024 * 1024;

/// Size of one part of a streamed write to the local filesystem, which has no minimum: small
/// parts leave the memory to the compressor.
const LOCAL_PART_SIZE: usize = 1024 * 1024;

/// Parts of one upload in flight at once. One part travels while the next is produced, which
/// keeps the network busy; memory per upload is `(1 + this)` parts, and several sources
/// upload at once, so this stays at one (peak RSS goal: 64 MiB for a backup).
const UPLOAD_PARTS_IN_FLIGHT: usize = 1;

/// Errors from a [`BackupStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object does not exist.
    #[error("{store}: object {key} not found")]
    NotFound { store: String, key: String },
    /// The bucket (or container) itself does not exist: S3 answered `404 NoSuchBucket`. Not
    /// a missing object, so callers that treat a missing object as "absent" (a free lock, no
    /// snapshot yet) do not mistake a wrong bucket name for an empty store.
    #[error("{store}: {operation} {key}: the bucket does not exist (S3 NoSuchBucket)")]
    BucketNotFound {
        store: String,
        operation: &'static str,
        key: String,
    },
    /// The store URL cannot be used.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The backend failed (network, permissions, disk, ...).
    #[error("{store}: {operation} {key}: {source}")]
    Backend {
        store: String,
        operation: &'static str,
        key: String,
        #[source]
        source: Box<object_store::Error>,
    },
}

/// A stream of an object's bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// What a listing returns about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the store root.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written.
    pub last_modified: jiff::Timestamp,
}

/// An object storage location for backups.
#[async_trait]
pub trait BackupStore: fmt::Debug + fmt::Display + Send + Sync + 'static {
    /// Writes a small object atomically: readers see the old object or the whole new one.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError>;
    /// Starts a streamed upload to `key`; nothing is visible there until it completes.
    async fn put_stream(&self, key: &str) -> Result<Box<dyn Upload>, StoreError>;
    /// Streams an object's bytes.
    async fn get(&self, key: &str) -> Result<ByteStream, StoreError>;
    /// Size and time of one object.
    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError>;
    /// Every object whose key starts with `prefix/` (a whole path segment), in no order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;
    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Writes a small object only if nothing is at `key`, atomically (the primitive of
    /// locks and leases): `Ok(true)` if this call created it, `Ok(false)` if an object was
    /// already there (left untouched). Of concurrent calls for one key, exactly one wins.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError>;
    /// Streamed uploads under `prefix/` that were started and never completed nor aborted
    /// (a backup killed, or whose abort could not reach the store), in no order. They are
    /// invisible to [`BackupStore::list`] but may hold data (S3 keeps, and bills, their
    /// parts). Stores that keep nothing of an unfinished upload return none.
    async fn incomplete_uploads(&self, _prefix: &str) -> Result<Vec<IncompleteUpload>, StoreError> {
        Ok(Vec::new())
    }
    /// Aborts an upload [`BackupStore::incomplete_uploads`] returned, freeing what it holds.
    /// One that is already gone (completed or aborted meanwhile) is not an error; aborting
    /// one still being written makes that writer fail.
    async fn abort_incomplete_upload(&self, _upload: &IncompleteUpload) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Convenience methods for every [`BackupStore`].
#[async_trait]
pub trait BackupStoreExt: BackupStore {
    /// Reads a whole (small) object into memory.
    async fn get_bytes(&self, key: &str) -> Result<Bytes, StoreError> {
        let chunks: Vec<Bytes> = self.get(key).await?.try_collect().await?;
        Ok(chunks.concat().into())
    }
}

impl<T: BackupStore + ?Sized> BackupStoreExt for T {}

/// A streamed upload in progress. Dropping it without [`Upload::complete`] leaves nothing
/// visible; [`Upload::abort`] also frees what the backend kept of it.
#[async_trait]
pub trait Upload: Send {
    /// Appends bytes; waits while too many parts are in flight.
    async fn write(&mut self, data: Bytes) -> Result<(), StoreError>;
    /// Makes the object visible, whole.
    async fn complete(self: Box<Self>) -> Result<(), StoreError>;
    /// Gives up the upload.
    async fn abort(self: Box<Self>) -> Result<(), StoreError>;
}

/// Opens the store a URL names: `file:///path` (created if missing), `s3://bucket/prefix`
/// (credentials, region and endpoint from the usual `AWS_*` environment variables), or
/// `memory://` (process-local, for tests).
pub fn open_store(url: &str) -> Result<Arc<dyn BackupStore>, StoreError> {
    open_store_with(url, std::iter::empty::<(&str, &str)>())
}

/// Like [`open_store`], with backend options that override the environment, named like the
/// environment variables in lower case (e.g. `aws_endpoint`, `aws_access_key_id`). Unknown
/// options are an error, so a typo does not silently fall back to the environment.
///
/// Two options are drp's own and bound how long an S3 request is retried after a transient
/// failure (connection refused or reset, timeout, 5xx, 429), with exponential backoff and
/// jitter (100 ms doubling up to 15 s): `drp_max_retries` (a count, default 10) and
/// `drp_retry_timeout` (a duration such as `30s` or `3m`, default 3m; no retry starts after
/// it). Permanent errors (403, 404, ...) are never retried.
pub fn open_store_with<I, K, V>(url: &str, options: I) -> Result<Arc<dyn BackupStore>, StoreError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: Into<String>,
{
    let invalid = |reason: String| StoreError::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    let options: Vec<(String, String)> = options
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_string(), v.into()))
        .collect();
    let parsed = Url::parse(url).map_err(|e| {
        invalid(format!(
            "{e} (expected file:///path, s3://bucket/prefix or memory://)"
        ))
    })?;
    if let Some((key, _)) = options.first().filter(|_| parsed.scheme() != "s3") {
        return Err(invalid(format!(
            "option {key:?} applies to no {} store",
            parsed.scheme()
        )));
    }
    let mut leftovers = Leftovers::None;
    let inner: Arc<dyn ObjectStore> = match parsed.scheme() {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|()| invalid("not an absolute local path".into()))?;
            std::fs::create_dir_all(&path)
                .map_err(|e| invalid(format!("cannot create {}: {e}", path.display())))?;
            let fs = LocalFileSystem::new_with_prefix(&path)
                .map_err(|e| invalid(e.to_string()))?
                .with_automatic_cleanup(true);
            leftovers = Leftovers::Local(path);
            Arc::new(fs)
        }
        "s3" => {
            let bucket = parsed
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| invalid("no bucket name".into()))?;
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            let mut retry = RetryConfig::default();
            for (key, value) in options {
                match key.to_ascii_lowercase().as_str() {
                    "drp_max_retries" => {
                        retry.max_retries = value.trim().parse().map_err(|_| {
                            invalid(format!(
                                "option drp_max_retries: {value:?} is not a count of retries"
                            ))
                        })?;
                        continue;
                    }
                    "drp_retry_timeout" => {
                        retry.retry_timeout = parse_duration(&value).ok_or_else(|| {
                            invalid(format!(
                                "option drp_retry_timeout: {value:?} is not a duration \
                                 (e.g. 30s, 3m, 500ms)"
                            ))
                        })?;
                        continue;
                    }
                    _ => {}
                }
                let config_key = key
                    .to_ascii_lowercase()
                    .parse()
                    .map_err(|_| invalid(format!("unknown S3 option {key:?}")))?;
                builder = builder.with_config(config_key, value);
            }
            let connector = RecordingConnector::default();
            let config = S3Uploads::config(&builder);
            let s3 = builder
                .with_retry(retry.clone())
                .with_http_connector(connector.clone())
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            let prefix = parsed.path().trim_matches('/');
            leftovers = S3Uploads::new(s3.clone(), &connector, config, prefix, retry)
                .map(|uploads| Leftovers::S3(Arc::new(uploads)))
                .unwrap_or(Leftovers::None);
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            }
        }
        "memory" => Arc::new(InMemory::new()),
        other => {
            return Err(invalid(format!(
                "unsupported scheme {other:?} (expected file, s3 or memory)"
            )));
        }
    };
    let part_size = match parsed.scheme() {
        "file" | "memory" => LOCAL_PART_SIZE,
        _ => UPLOAD_PART_SIZE,
    };
    Ok(Arc::new(ObjectBackupStore {
        inner,
        url: url.trim_end_matches('/').to_string(),
        part_size,
        leftovers,
    }))
}

/// `500ms`, `30s`, `3m`, `1h` (one number and one unit).
fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    Some(std::time::Duration::from_millis(
        number.checked_mul(millis)?,
    ))
}

/// A [`BackupStore`] on any object_store backend.
#[derive(Debug, Clone)]
pub struct ObjectBackupStore {
    inner: Arc<dyn ObjectStore>,
    url: String,
    part_size: usize,
    leftovers: Leftovers,
}

/// Where unfinished uploads leave something behind that object_store cannot list.
#[derive(Debug, Clone)]
enum Leftovers {
    None,
    /// Incomplete multipart uploads in the bucket.
    S3(Arc<S3Uploads>),
    /// Staging files of a killed process under this directory.
    Local(std::path::PathBuf),
}

impl ObjectBackupStore {
    /// Wraps an object_store backend; `url` is only used in messages. Streamed uploads go in
    /// parts of [`UPLOAD_PART_SIZE`], which every cloud store accepts.
    pub fn new(inner: Arc<dyn ObjectStore>, url: impl Into<String>) -> Self {
        Self {
            inner,
            url: url.into(),
            part_size: UPLOAD_PART_SIZE,
            leftovers: Leftovers::None,
        }
    }

    fn error(&self, operation: &'static str, key: &str, source: object_store::Error) -> StoreError {
        match source {
            object_store::Error::NotFound { ref source, .. }
                if source.to_string().contains("NoSuchBucket") =>
            {
                StoreError::BucketNotFound {
                    store: self.url.clone(),
                    operation,
                    key: key.to_string(),
                }
            }
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                store: self.url.clone(),
                key: key.to_string(),
            },
            source => StoreError::Backend {
                store: self.url.clone(),
                operation,
                key: key.to_string(),
                source: Box::new(source),
            },
        }
    }

    fn io_error(&self, operation: &'static str, key: &str, e: std::io::Error) -> StoreError {
        self.error(
            operation,
            key,
            object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            },
        )
    }

    fn path(&self, key: &str) -> Result<ObjectPath, StoreError> {
        ObjectPath::parse(key).map_err(|e| StoreError::Backend {
            store: self.url.clone(),
            operation: "parse key",
            key: key.to_string(),
            source: Box::new(e.into()),
        })
    }
}

impl fmt::Display for ObjectBackupStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

fn info(meta: object_store::ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        key: meta.location.to_string(),
        size: meta.size,
        last_modified: jiff::Timestamp::new(
            meta.last_modified.timestamp(),
            meta.last_modified.timestamp_subsec_nanos() as i32,
        )
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    }
}

#[async_trait]
impl BackupStore for ObjectBackupStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        self.inner
            .put(&path, PutPayload::from_bytes(data))
            .await
            .map_err(|e| self.error("put", key, e))?;
        Ok(())
    }

    async fn put_stream(&self, key: &str) -> Result<Box<dyn Upload>, StoreError> {
        let path = self.path(key)?;
        let upload = self
            .inner
            .put_multipart(&path)
            .await
            .map_err(|e| self.error("start upload", key, e))?;
        Ok(Box::new(ObjectUpload {
            store: self.clone(),
            key: key.to_string(),
            writer: WriteMultipart::new_with_chunk_size(upload, self.part_size),
        }))
    }

    async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
        let path = self.path(key)?;
        let result = self
            .inner
            .get(&path)
            .await
            .map_err(|e| self.error("get", key, e))?;
        let store = self.clone();
        let key = key.to_string();
        let stream = match result.payload {
            GetResultPayload::File(file, _) => {
                let range = result.range;
                local_file_stream(file, range)
                    .map(move |chunk| chunk.map_err(|e| store.io_error("read", &key, e)))
                    .boxed()
            }
            GetResultPayload::Stream(stream) => stream
                .map(move |chunk| chunk.map_err(|e| store.error("read", &key, e)))
                .boxed(),
        };
        Ok(stream)
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        let path = self.path(key)?;
        let meta = self
            .inner
            .head(&path)
            .await
            .map_err(|e| self.error("head", key, e))?;
        Ok(info(meta))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let path = self.path(prefix)?;
        self.inner
            .list(Some(&path))
            .map_ok(info)
            .map_err(|e| self.error("list", prefix, e))
            .try_collect()
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) => Ok(()),
            Err(e) => match self.error("delete", key, e) {
                StoreError::NotFound { .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError> {
        // PutMode::Create: `O_EXCL`-style link locally, an atomic check in memory, and on S3
        // `If-None-Match: *` (object_store's default conditional put, `etag`).
        let path = self.path(key)?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .inner
            .put_opts(&path, PutPayload::from_bytes(data), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.error("create", key, e)),
        }
    }

    async fn incomplete_uploads(&self, prefix: &str) -> Result<Vec<IncompleteUpload>, StoreError> {
        const OPERATION: &str = "list incomplete uploads under";
        match &self.leftovers {
            Leftovers::None => Ok(Vec::new()),
            Leftovers::S3(s3) => s3
                .list(prefix)
                .await
                .map_err(|e| self.error(OPERATION, prefix, e)),
            Leftovers::Local(root) => {
                let root = root.clone();
                let key = prefix.to_string();
                tokio::task::spawn_blocking(move || multipart::local_staging_files(&root, &key))
                    .await
                    .expect("listing staging files panicked")
                    .map_err(|e| self.io_error(OPERATION, prefix, e))
            }
        }
    }

    async fn abort_incomplete_upload(&self, upload: &IncompleteUpload) -> Result<(), StoreError> {
        const OPERATION: &str = "abort incomplete upload of";
        match &self.leftovers {
            Leftovers::None => Ok(()),
            Leftovers::S3(s3) => s3
                .abort(upload)
                .await
                .map_err(|e| self.error(OPERATION, &upload.key, e)),
            Leftovers::Local(root) => multipart::remove_local_staging_file(root, upload)
                .map_err(|e| self.io_error(OPERATION, &upload.key, e)),
        }
    }
}

/// Bytes of a local object read at a time by [`local_file_stream`].
const LOCAL_READ_SIZE: usize = 256 * 1024;

/// The bytes of `range` of a local file, [`LOCAL_READ_SIZE`] at a time, each read on a
/// blocking thread. Why not object_store's own stream: it reads 8 KiB at a time, each on a
/// blocking thread of its own, and a restore from a local store then spent more time handing
/// pieces between threads than decrypting them.
fn local_file_stream(
    file: std::fs::File,
    range: std::ops::Range<u64>,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    use std::io::{Read, Seek, SeekFrom};
    futures::stream::try_unfold(
        (file, range, false),
        |(mut file, range, positioned)| async move {
            if range.is_empty() {
                return Ok(None);
            }
            tokio::task::spawn_blocking(move || {
                if !positioned {
                    file.seek(SeekFrom::Start(range.start))?;
                }
                let want = (range.end - range.start).min(LOCAL_READ_SIZE as u64);
                let mut chunk = Vec::with_capacity(want as usize);
                (&mut file).take(want).read_to_end(&mut chunk)?;
                if chunk.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file is shorter than when it was opened",
                    ));
                }
                let next = range.start + chunk.len() as u64..range.end;
                Ok(Some((Bytes::from(chunk), (file, next, true))))
            })
            .await
            .map_err(std::io::Error::other)?
        },
    )
    .boxed()
}

struct ObjectUpload {
    store: ObjectBackupStore,
    key: String,
    writer: WriteMultipart,
}

#[async_trait]
impl Upload for ObjectUpload {
    async fn write(&mut self, data: Bytes) -> Result<(), StoreError> {
        self.writer
            .wait_for_capacity(UPLOAD_PARTS_IN_FLIGHT)
            .await
            .map_err(|e| self.store.error("upload part of", &self.key, e))?;
        self.writer.put(data);
        Ok(())
    }

    async fn complete(self: Box<Self>) -> Result<(), StoreError> {
        let Self { store, key, writer } = *self;
        writer
            .finish()
            .await
            .map_err(|e| store.error("complete upload of", &key, e))?;
        Ok(())
    }

    async fn abort(self: Box<Self>) -> Result<(), StoreError> {
        let Self { store, key, writer } = *self;
        writer
            .abort()
            .await
            .map_err(|e| store.error("abort upload of", &key, e))
    }
}

pub mod conformance;
