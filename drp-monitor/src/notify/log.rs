//! A JSON-lines file: one line per message, appended.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::spec::Reach;
use super::{Audience, Delivered, Message, Notifier, NotifyError, Templates};

/// Appends each message as one JSON line to a file (created if missing).
#[derive(Debug)]
pub struct LogNotifier {
    name: String,
    path: PathBuf,
    reach: Reach,
    templates: Templates,
}

impl LogNotifier {
    /// A notifier appending to `path`.
    pub fn new(
        name: impl Into<String>,
        path: impl AsRef<Path>,
        reach: Reach,
        templates: Templates,
    ) -> Self {
        LogNotifier {
            name: name.into(),
            path: path.as_ref().to_owned(),
            reach,
            templates,
        }
    }
}

#[async_trait]
impl Notifier for LogNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "log"
    }

    fn reaches(&self, audience: Audience, customer: Option<&str>) -> bool {
        self.reach.reaches(audience, customer)
    }

    fn templates(&self) -> &Templates {
        &self.templates
    }

    async fn deliver(&self, message: &Message) -> Result<Delivered, NotifyError> {
        let mut line = json!({
            "time": jiff::Timestamp::now(),
            "notifier": self.name,
            "message": message,
        })
        .to_string();
        line.push('\n');
        let failed = |e: std::io::Error| NotifyError::Other {
            reason: format!("cannot append to {}: {e}", self.path.display()),
            retryable: false,
        };
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(failed)?;
        // One write of the whole line: with O_APPEND, concurrent writers do not interleave.
        file.write_all(line.as_bytes()).await.map_err(failed)?;
        file.flush().await.map_err(failed)?;
        Ok(Delivered::default())
    }
}
