//! Notifiers: Slack, generic JSON webhook, email (SMTP) and a JSON-lines log, and
//! [`Notifications`], which sends an [`Event`] through all of them.
//!
//! A notifier makes one attempt per [`Notifier::deliver`] call; retrying (with backoff, and
//! honouring `Retry-After`) is done in one place, by [`Notifications`], which never fails:
//! it returns a [`NotificationReport`] saying what was sent to whom and what failed.

mod email;
mod event;
mod log;
mod slack;
mod spec;
mod template;
mod webhook;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

pub use email::{EmailNotifier, EmailOptions, SmtpSecurity};
pub use event::{Addressee, Audience, Event, EventKind, FIELDS, StackRef};
pub use log::LogNotifier;
pub use slack::SlackNotifier;
pub use spec::{
    Contacts, EmailSpec, LogSpec, NotifierConfigError, NotifierSpec, NotifiersConfig, Reach,
    SlackSpec, WebhookSpec,
};
pub use template::{Template, TemplateError, TemplateSpec, TemplateSpecs, Templates};
pub use webhook::WebhookNotifier;

/// One rendered message, for one audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// What happened.
    pub event: EventKind,
    /// Who it is for.
    pub audience: Audience,
    /// Whose stacks (customer and partner messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The stacks it is about.
    pub stacks: Vec<String>,
    /// The run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Subject line.
    pub subject: String,
    /// Body text.
    pub body: String,
    /// The event's fields (as templates see them).
    pub fields: BTreeMap<String, String>,
}

/// What a successful delivery reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Email addresses; empty for channels (Slack, webhook, log).
    pub recipients: Vec<String>,
}

/// Something that tells people: a chat channel, an endpoint, a mailbox, a file.
#[async_trait]
pub trait Notifier: fmt::Debug + Send + Sync {
    /// Its name in reports (from the config).
    fn name(&self) -> &str;

    /// `slack`, `webhook`, `email`, `log`.
    fn kind(&self) -> &'static str;

    /// Whether it speaks to this audience about this customer's stacks.
    fn reaches(&self, audience: Audience, customer: Option<&str>) -> bool;

    /// The templates its messages are rendered with.
    fn templates(&self) -> &Templates;

    /// Sends one message, once. Retrying is the caller's business ([`Notifications`]).
    async fn deliver(&self, message: &Message) -> Result<Delivered, NotifyError>;
}

/// A delivery that failed. Never contains a secret: endpoints are named by host only.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The endpoint answered with an error status.
    #[error("HTTP {status} from {endpoint}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Http {
        /// The endpoint's host.
        endpoint: String,
        /// The status.
        status: u16,
        /// What `Retry-After` asked for.
        retry_after: Option<Duration>,
        /// The start of the response body.
        detail: String,
    },
    /// The endpoint could not be reached.
    #[error("cannot reach {endpoint}: {reason}")]
    Unreachable {
        /// The endpoint's host.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The SMTP server refused or failed.
    #[error("SMTP server {server}: {reason}")]
    Smtp {
        /// `host:port`.
        server: String,
        /// Why.
        reason: String,
        /// A permanent (5xx) refusal: retrying will not help.
        permanent: bool,
    },
    /// Anything else (a file that cannot be written, an invalid address...).
    #[error("{reason}")]
    Other {
        /// Why.
        reason: String,
        /// Whether another attempt might succeed.
        retryable: bool,
    },
}

impl NotifyError {
    /// Whether another attempt might succeed: rate limits, server errors, network errors,
    /// transient SMTP errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Http { status, .. } => *status == 429 || *status == 408 || *status >= 500,
            NotifyError::Unreachable { .. } => true,
            NotifyError::Smtp { permanent, .. } => !permanent,
            NotifyError::Other { retryable, .. } => *retryable,
        }
    }

    /// How long the endpoint asked to wait before the next attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            NotifyError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// How [`Notifications`] retries a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 4).
    pub max_attempts: u32,
    /// Wait before the first retry; doubles each time (default 1s).
    pub initial_backoff: Duration,
    /// Longest wait between attempts, `Retry-After` included (default 30s).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry), for this error.
    fn delay(&self, retry: u32, error: &NotifyError) -> Duration {
        let backoff = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
        error.retry_after().unwrap_or(backoff).min(self.max_backoff)
    }
}

/// How one delivery went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Sent.
    Sent,
    /// Every attempt failed, or the error was not worth retrying.
    Failed,
    /// The notifier reaches nobody this event is for.
    Skipped,
}

/// One notifier, one audience (and customer): what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryReport {
    /// The notifier's name.
    pub notifier: String,
    /// Its kind.
    pub kind: &'static str,
    /// Who the message was for (none when skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<Audience>,
    /// Whose stacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The email addresses reached.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// How it went.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The last error, when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything one event's notification did, for the run journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationReport {
    /// The event.
    pub event: EventKind,
    /// Its run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// One entry per notifier and addressee.
    pub deliveries: Vec<DeliveryReport>,
}

impl NotificationReport {
    /// The deliveries that failed.
    pub fn failures(&self) -> impl Iterator<Item = &DeliveryReport> {
        self.deliveries
            .iter()
            .filter(|d| d.status == DeliveryStatus::Failed)
    }

    /// True when nothing failed.
    pub fn all_sent(&self) -> bool {
        self.failures().next().is_none()
    }
}

/// Sends events through every notifier, concurrently, with retries. Never fails.
#[derive(Debug, Clone, Default)]
pub struct Notifications {
    notifiers: Vec<Arc<dyn Notifier>>,
    retry: RetryPolicy,
}

impl Notifications {
    /// No notifiers yet.
    pub fn new(retry: RetryPolicy) -> Self {
        Notifications {
            notifiers: Vec::new(),
            retry,
        }
    }

    /// Adds a notifier.
    pub fn add(&mut self, notifier: Arc<dyn Notifier>) -> &mut Self {
        self.notifiers.push(notifier);
        self
    }

    /// The notifiers.
    pub fn notifiers(&self) -> &[Arc<dyn Notifier>] {
        &self.notifiers
    }

    /// Tells everyone concerned about `event`. Each notifier renders its own messages and
    /// delivers them one addressee after another; notifiers run concurrently. Failures are
    /// logged (`tracing`) and reported, never returned.
    pub async fn send(&self, event: &Event) -> NotificationReport {
        let addressees = event.addressees();
        let per_notifier = futures::future::join_all(
            self.notifiers
                .iter()
                .map(|notifier| self.send_through(notifier.as_ref(), event, &addressees)),
        )
        .await;
        NotificationReport {
            event: event.kind(),
            run_id: event.run_id().map(str::to_owned),
            deliveries: per_notifier.into_iter().flatten().collect(),
        }
    }

    async fn send_through(
        &self,
        notifier: &dyn Notifier,
        event: &Event,
        addressees: &[Addressee],
    ) -> Vec<DeliveryReport> {
        let mut reports = Vec::new();
        for addressee in addressees {
            if !notifier.reaches(addressee.audience, addressee.customer.as_deref()) {
                continue;
            }
            let Some(message) = notifier.templates().render(event, addressee) else {
                continue;
            };
            reports.push(self.deliver_with_retries(notifier, &message).await);
        }
        if reports.is_empty() {
            reports.push(DeliveryReport {
                notifier: notifier.name().to_owned(),
                kind: notifier.kind(),
                audience: None,
                customer: None,
                recipients: Vec::new(),
                status: DeliveryStatus::Skipped,
                attempts: 0,
                error: None,
            });
        }
        reports
    }

    async fn deliver_with_retries(
        &self,
        notifier: &dyn Notifier,
        message: &Message,
    ) -> DeliveryReport {
        let mut report = DeliveryReport {
            notifier: notifier.name().to_owned(),
            kind: notifier.kind(),
            audience: Some(message.audience),
            customer: message.customer.clone(),
            recipients: Vec::new(),
            status: DeliveryStatus::Failed,
            attempts: 0,
            error: None,
        };
        loop {
            report.attempts += 1;
            match notifier.deliver(message).await {
                Ok(delivered) => {
                    tracing::info!(
                        notifier = notifier.name(),
                        event = %message.event,
                        audience = %message.audience,
                        attempts = report.attempts,
                        "notification sent"
                    );
                    report.status = DeliveryStatus::Sent;
                    report.recipients = delivered.recipients;
                    report.error = None;
                    return report;
                }
                Err(error) => {
                    let give_up =
                        !error.is_retryable() || report.attempts >= self.retry.max_attempts.max(1);
                    tracing::warn!(
                        notifier = notifier.name(),
                        event = %message.event,
                        audience = %message.audience,
                        attempt = report.attempts,
                        "notification failed{}: {error}",
                        if give_up { ", giving up" } else { ", will retry" }
                    );
                    let delay = self.retry.delay(report.attempts, &error);
                    report.error = Some(error.to_string());
                    if give_up {
                        return report;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// A URL that is a secret (a Slack webhook's path is its token). `Debug` shows only the host.
#[derive(Clone)]
pub(crate) struct SecretUrl(reqwest::Url);

impl SecretUrl {
    /// Parses the secret as an http(s) URL; the error never repeats it.
    pub(crate) fn parse(secret: &crate::secret::Secret) -> Result<SecretUrl, String> {
        let url = reqwest::Url::parse(secret.expose())
            .map_err(|e| format!("the URL is not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("the URL is not an http(s) URL".into());
        }
        Ok(SecretUrl(url))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/***", self.0.scheme(), endpoint_of(&self.0))
    }
}

/// `hooks.slack.com` or `127.0.0.1:8080`: enough to say where, never the secret path.
pub(crate) fn endpoint_of(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => "the configured endpoint".to_owned(),
    }
}

/// POSTs JSON, mapping the outcome to [`NotifyError`] without ever showing the URL.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    SecretUrl(url): &SecretUrl,
    headers: &reqwest::header::HeaderMap,
    body: String,
) -> Result<(), NotifyError> {
    let endpoint = endpoint_of(url);
    let response = client
        .post(url.clone())
        .headers(headers.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| NotifyError::Unreachable {
            endpoint: endpoint.clone(),
            // without_url: the URL is the secret.
            reason: crate::probe::error_chain(&e.without_url()),
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let detail = response.text().await.unwrap_or_default();
    Err(NotifyError::Http {
        endpoint,
        status: status.as_u16(),
        retry_after,
        detail: crate::probe::excerpt(&detail, 200),
    })
}

/// The HTTP client notifiers share settings with: bounded time, no secrets in errors.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("drp/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::probe::error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, retry_after: Option<u64>) -> NotifyError {
        NotifyError::Http {
            endpoint: "hooks.example".into(),
            status,
            retry_after: retry_after.map(Duration::from_secs),
            detail: String::new(),
        }
    }

    #[test]
    fn backoff_doubles_and_retry_after_wins_within_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        };
        let server_error = http(503, None);
        assert_eq!(policy.delay(1, &server_error), Duration::from_secs(1));
        assert_eq!(policy.delay(2, &server_error), Duration::from_secs(2));
        assert_eq!(policy.delay(3, &server_error), Duration::from_secs(4));
        assert_eq!(policy.delay(10, &server_error), Duration::from_secs(30));
        assert_eq!(policy.delay(1, &http(429, Some(7))), Duration::from_secs(7));
        assert_eq!(
            policy.delay(1, &http(429, Some(3600))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn only_errors_that_may_pass_are_retried() {
        assert!(http(429, None).is_retryable());
        assert!(http(500, None).is_retryable());
        assert!(http(503, None).is_retryable());
        assert!(!http(400, None).is_retryable());
        assert!(!http(404, None).is_retryable());
        let smtp = |permanent| NotifyError::Smtp {
            server: "smtp:587".into(),
            reason: "x".into(),
            permanent,
        };
        assert!(smtp(false).is_retryable());
        assert!(!smtp(true).is_retryable());
    }
}
