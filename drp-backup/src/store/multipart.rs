//! Multipart uploads that were started and never completed nor aborted.
//!
//! A backup aborts its upload when it fails, but the abort needs the store: if S3 is down at
//! that moment, or drp is killed, the upload and its parts stay in the bucket, invisible to
//! listings and billed. `drp backup prune` finds and aborts them. object_store 0.14 can abort
//! an upload (`MultipartStore::abort_multipart`) but not list them, so the listing (S3
//! `ListMultipartUploads`) is sent here, signed by object_store's own SigV4 signer over the
//! HTTP client object_store built for the store (same TLS, proxy and timeout settings).
//!
//! The local filesystem store has the same leftover in another form: a write in progress is a
//! staging file `KEY#N` beside its destination, removed on drop but not when the process is
//! killed, and never listed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use object_store::RetryConfig;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpErrorKind, HttpRequestBody, ReqwestConnector,
};
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A multipart upload under the store that was started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncompleteUpload {
    /// The key it was uploading to, relative to the store root like every key.
    pub key: String,
    /// The backend's id of the upload (S3 `UploadId`; the staging file's name locally).
    pub upload_id: String,
    /// When it was started (locally: when its staging file was last written).
    pub initiated: jiff::Timestamp,
}

const STORE: &str = "S3";

/// Records the HTTP clients object_store builds for an `AmazonS3`, so that requests it cannot
/// send (the listing) go out through the same client. The S3 client is the last one
/// `AmazonS3Builder::build` makes (credential providers' clients come first).
#[derive(Debug, Default, Clone)]
pub(super) struct RecordingConnector(Arc<Mutex<Option<HttpClient>>>);

impl HttpConnector for RecordingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = ReqwestConnector::default().connect(options)?;
        *self.0.lock().expect("connector lock") = Some(client.clone());
        Ok(client)
    }
}

/// What listing and aborting an S3 store's uploads needs.
#[derive(Debug)]
pub(super) struct S3Uploads {
    s3: AmazonS3,
    client: HttpClient,
    /// `https://bucket.s3.region.amazonaws.com`, or `ENDPOINT/bucket` (path style).
    bucket_url: String,
    region: String,
    sign: bool,
    /// The store URL's prefix in the bucket (`prod` of `s3://bucket/prod`), or empty.
    root: String,
    retry: RetryConfig,
}

impl S3Uploads {
    /// Reads what the request needs from `builder` (before it is consumed by `build`).
    pub(super) fn config(builder: &AmazonS3Builder) -> (String, String, bool) {
        let get = |key| builder.get_config_value(&key);
        let truthy = |key| {
            get(key).is_some_and(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
            })
        };
        let bucket = get(AmazonS3ConfigKey::Bucket).unwrap_or_default();
        let region = get(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        // The same rule as AmazonS3Builder::build.
        let endpoint = get(AmazonS3ConfigKey::S3Endpoint).or(get(AmazonS3ConfigKey::Endpoint));
        let bucket_url = match (
            endpoint,
            truthy(AmazonS3ConfigKey::VirtualHostedStyleRequest),
        ) {
            (Some(endpoint), true) => endpoint,
            (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        (
            bucket_url,
            region,
            !truthy(AmazonS3ConfigKey::SkipSignature),
        )
    }

    pub(super) fn new(
        s3: AmazonS3,
        connector: &RecordingConnector,
        (bucket_url, region, sign): (String, String, bool),
        root: &str,
        retry: RetryConfig,
    ) -> Option<Self> {
        let client = connector.0.lock().expect("connector lock").take()?;
        Some(Self {
            s3,
            client,
            bucket_url: bucket_url.trim_end_matches('/').to_string(),
            region,
            sign,
            root: root.to_string(),
            retry,
        })
    }

    fn bucket_key(&self, key: &str) -> String {
        match self.root.as_str() {
            "" => key.to_string(),
            root => format!("{root}/{key}"),
        }
    }

    /// Uploads whose key starts with `prefix/`, following S3's pagination.
    pub(super) async fn list(&self, prefix: &str) -> object_store::Result<Vec<IncompleteUpload>> {
        let bucket_prefix = format!("{}/", self.bucket_key(prefix.trim_end_matches('/')));
        let root = match self.root.as_str() {
            "" => String::new(),
            root => format!("{root}/"),
        };
        let mut uploads = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = format!("uploads=&prefix={}", encode(&bucket_prefix));
            if let Some((key, id)) = &markers {
                query += &format!(
                    "&key-marker={}&upload-id-marker={}",
                    encode(key),
                    encode(id)
                );
            }
            let body = self.get(&format!("{}?{query}", self.bucket_url)).await?;
            let page: ListPage = quick_xml::de::from_reader(body.as_ref())
                .map_err(|e| generic(format!("ListMultipartUploads: unreadable answer: {e}")))?;
            for upload in page.uploads {
                let initiated = upload.initiated.parse().map_err(|e| {
                    generic(format!(
                        "ListMultipartUploads: initiation time {:?}: {e}",
                        upload.initiated
                    ))
                })?;
                if let Some(key) = upload.key.strip_prefix(&root) {
                    uploads.push(IncompleteUpload {
                        key: key.to_string(),
                        upload_id: upload.upload_id,
                        initiated,
                    });
                }
            }
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(key), Some(id)) if !key.is_empty() => markers = Some((key, id)),
                _ => return Ok(uploads),
            }
        }
    }

    /// Aborts `upload`; one already gone (completed, aborted by someone else) is not an error.
    pub(super) async fn abort(&self, upload: &IncompleteUpload) -> object_store::Result<()> {
        let path = ObjectPath::parse(self.bucket_key(&upload.key))?;
        match self.s3.abort_multipart(&path, &upload.upload_id).await {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    /// A signed GET, retried like object_store retries (transient errors, 5xx and 429, with
    /// exponential backoff and jitter, within `drp_max_retries` and `drp_retry_timeout`).
    async fn get(&self, url: &str) -> object_store::Result<Bytes> {
        let start = Instant::now();
        let mut backoff = self.retry.backoff.init_backoff;
        let mut retries = 0;
        loop {
            let mut request = http::Request::get(url)
                .body(HttpRequestBody::empty())
                .map_err(|e| generic(format!("ListMultipartUploads: {e}")))?;
            if self.sign {
                let credential = self.s3.credentials().get_credential().await?;
                AwsAuthorizer::new(&credential, "s3", &self.region)
                    .try_authorize(&mut request, None)?;
            }
            let failure = match self.client.execute(request).await {
                Ok(response) if response.status().is_success() => {
                    match response.into_body().bytes().await {
                        Ok(body) => return Ok(body),
                        Err(e) => format!("ListMultipartUploads: reading the answer: {e}"),
                    }
                }
                Ok(response) => {
                    let status = response.status();
                    let body = response.into_body().bytes().await.unwrap_or_default();
                    let body = String::from_utf8_lossy(&body);
                    let message = format!(
                        "ListMultipartUploads answered {status}: {}",
                        s3_error(&body)
                    );
                    if status == http::StatusCode::NOT_FOUND {
                        return Err(object_store::Error::NotFound {
                            path: self.bucket_url.clone(),
                            source: message.into(),
                        });
                    }
                    if !(status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS)
                    {
                        return Err(generic(message));
                    }
                    message
                }
                Err(e) if matches!(e.kind(), HttpErrorKind::Decode | HttpErrorKind::Unknown) => {
                    return Err(generic(format!("ListMultipartUploads: {e}")));
                }
                Err(e) => format!("ListMultipartUploads: {e}"),
            };
            if retries >= self.retry.max_retries || start.elapsed() >= self.retry.retry_timeout {
                return Err(generic(format!(
                    "{failure} (after {retries} retries, {:?})",
                    start.elapsed()
                )));
            }
            retries += 1;
            let jittered = rand::rng().random_range(self.retry.backoff.init_backoff..=backoff);
            tracing::debug!("{failure}; retry {retries} in {jittered:?}");
            tokio::time::sleep(jittered).await;
            backoff = backoff
                .mul_f64(self.retry.backoff.base)
                .min(self.retry.backoff.max_backoff);
        }
    }
}

/// Staging files of writes that never finished under `root/prefix/` of a local store.
pub(super) fn local_staging_files(
    root: &Path,
    prefix: &str,
) -> std::io::Result<Vec<IncompleteUpload>> {
    let mut found = Vec::new();
    let mut dirs: Vec<PathBuf> = vec![root.join(prefix.trim_end_matches('/'))];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            // object_store's staging name: `NAME#DIGITS` (and never lists such files).
            let Some((_, suffix)) = name.rsplit_once('#') else {
                continue;
            };
            if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            let relative = relative.to_string_lossy();
            let key = relative[..relative.len() - suffix.len() - 1].to_string();
            let modified = entry.metadata()?.modified()?;
            found.push(IncompleteUpload {
                key,
                upload_id: name,
                initiated: jiff::Timestamp::try_from(modified)
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            });
        }
    }
    Ok(found)
}

/// Removes a staging file found by [`local_staging_files`]; one already gone is fine.
pub(super) fn remove_local_staging_file(
    root: &Path,
    upload: &IncompleteUpload,
) -> std::io::Result<()> {
    let key_dir = Path::new(&upload.key).parent().unwrap_or(Path::new(""));
    match std::fs::remove_file(root.join(key_dir).join(&upload.upload_id)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListPage {
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<UploadEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadEntry {
    key: String,
    upload_id: String,
    initiated: String,
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: message.into(),
    }
}

/// `Code: Message` of an S3 error body, or the start of the body.
fn s3_error(body: &str) -> String {
    let tag = |name: &str| {
        body.split_once(&format!("<{name}>"))
            .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
            .map(|(value, _)| value.to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => body.chars().take(200).collect(),
    }
}

/// Percent-encodes a query value as SigV4 canonicalizes it (unreserved characters stay).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_page_is_read_with_its_markers() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/acme/data/2/www.tar.zst.pgp</NextKeyMarker>
  <NextUploadIdMarker>id-2</NextUploadIdMarker>
  <MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>p/acme/data/1/www.tar.zst.pgp</Key><UploadId>id-1</UploadId>
    <Initiator><ID>x</ID></Initiator><StorageClass>STANDARD</StorageClass>
    <Initiated>2026-11-20T10:00:00.000Z</Initiated></Upload>
  <Upload><Key>p/acme/data/2/www.tar.zst.pgp</Key><UploadId>id-2</UploadId>
    <Initiated>2026-11-20T11:00:00Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let page: ListPage = quick_xml::de::from_str(xml).unwrap();
        assert!(page.is_truncated);
        assert_eq!(
            page.next_key_marker.as_deref(),
            Some("p/acme/data/2/www.tar.zst.pgp")
        );
        assert_eq!(page.next_upload_id_marker.as_deref(), Some("id-2"));
        assert_eq!(page.uploads.len(), 2);
        assert_eq!(page.uploads[1].upload_id, "id-2");
        let empty: ListPage = quick_xml::de::from_str(
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>\
             </ListMultipartUploadsResult>",
        )
        .unwrap();
        assert!(empty.uploads.is_empty() && !empty.is_truncated);
    }

    #[test]
    fn query_values_are_encoded_as_sigv4_canonicalizes_them() {
        assert_eq!(encode("prod/acme data/+x~"), "prod%2Facme%20data%2F%2Bx~");
    }

    #[test]
    fn s3_error_bodies_are_shortened_to_code_and_message() {
        let body = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
        assert_eq!(s3_error(body), "AccessDenied: Access Denied");
    }
}
