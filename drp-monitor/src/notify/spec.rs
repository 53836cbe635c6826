//! Notifier configuration (TOML, in plan files or `drp notify test --config`). Secrets are
//! given only by reference: `url_env` / `url_file`, `password_env` / `password_file`.
//!
//! ```toml
//! [[notifiers]]
//! name = "ops"
//! kind = "slack"
//! url_env = "DRP_SLACK_WEBHOOK"
//!
//! [[notifiers]]
//! name = "mail"
//! kind = "email"
//! server = "smtp.example.com"
//! username = "drp"
//! password_file = "/etc/drp/smtp-password"
//! from = "drp <drp@example.com>"
//! team = ["ops@example.com"]
//! contacts.acme = { customer = ["it@acme.example"], partner = ["support@integrator.example"] }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::email::{EmailNotifier, EmailOptions, SmtpSecurity};
use super::{
    Audience, LogNotifier, Notifications, Notifier, RetryPolicy, SlackNotifier, TemplateSpecs,
    Templates, WebhookNotifier,
};
use crate::secret::{SecretError, SecretSource};

/// Default time for one HTTP request or SMTP command of a notifier.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The file format: a list of `[[notifiers]]` tables, the same as in a recovery plan.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifiersConfig {
    /// The notifiers (`[[notifiers]]`, as in a recovery plan).
    #[serde(default)]
    pub notifiers: Vec<NotifierSpec>,
}

impl NotifiersConfig {
    /// Builds every notifier (reading secrets now) into a [`Notifications`].
    pub fn build(&self, retry: RetryPolicy) -> Result<Notifications, NotifierConfigError> {
        let mut notifications = Notifications::new(retry);
        let mut names = BTreeSet::new();
        for spec in &self.notifiers {
            if !names.insert(spec.name()) {
                return Err(NotifierConfigError {
                    notifier: spec.name().to_owned(),
                    kind: spec.kind(),
                    reason: "another notifier has the same name".into(),
                });
            }
            notifications.add(spec.build()?);
        }
        Ok(notifications)
    }
}

/// A notifier, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum NotifierSpec {
    /// A Slack incoming webhook.
    Slack(SlackSpec),
    /// A generic JSON webhook.
    Webhook(WebhookSpec),
    /// Email over SMTP.
    Email(EmailSpec),
    /// A JSON-lines file.
    Log(LogSpec),
}

/// A notifier that cannot be built. Never contains a secret.
#[derive(Debug, thiserror::Error)]
#[error("notifier '{notifier}' ({kind}): {reason}")]
pub struct NotifierConfigError {
    /// Its name.
    pub notifier: String,
    /// Its kind.
    pub kind: &'static str,
    /// Why.
    pub reason: String,
}

/// Which audiences (and customers) a channel-like notifier speaks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    audiences: Vec<Audience>,
    customers: Vec<String>,
}

impl Default for Reach {
    /// The team only.
    fn default() -> Self {
        Reach {
            audiences: vec![Audience::Team],
            customers: Vec::new(),
        }
    }
}

impl Reach {
    /// `audiences` (empty: the team only), restricted to `customers` for customer and
    /// partner messages (empty: all customers).
    pub fn new(audiences: Vec<Audience>, customers: Vec<String>) -> Self {
        Reach {
            audiences: if audiences.is_empty() {
                vec![Audience::Team]
            } else {
                audiences
            },
            customers,
        }
    }

    pub(crate) fn reaches(&self, audience: Audience, customer: Option<&str>) -> bool {
        self.audiences.contains(&audience)
            && (audience == Audience::Team
                || self.customers.is_empty()
                || customer.is_some_and(|c| self.customers.iter().any(|x| x == c)))
    }
}

/// A customer's addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contacts {
    /// The customer's own contacts (plain-language messages about their stacks).
    #[serde(default)]
    pub customer: Vec<String>,
    /// Its partners' contacts (the same, naming the customer).
    #[serde(default)]
    pub partner: Vec<String>,
}

/// `kind = "slack"`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSpec {
    /// Name in reports.
    pub name: String,
    /// Environment variable holding the webhook URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// File holding the webhook URL.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Who the channel is for (default `["team"]`).
    #[serde(default)]
    pub audiences: Vec<Audience>,
    /// For customer/partner messages: only these customers (default all).
    #[serde(default)]
    pub customers: Vec<String>,
    /// Time for one request (default 10s).
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
    /// Message overrides per audience and event.
    #[serde(default)]
    pub templates: TemplateSpecs,
}

/// `kind = "webhook"`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Name in reports.
    pub name: String,
    /// Environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// File holding the URL.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Extra request headers (not secrets: put tokens in the URL's file).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body with `{{field}}`s inside strings (default: a JSON document of the message).
    #[serde(default)]
    pub template: Option<String>,
    /// Who the endpoint is for (default `["team"]`).
    #[serde(default)]
    pub audiences: Vec<Audience>,
    /// For customer/partner messages: only these customers (default all).
    #[serde(default)]
    pub customers: Vec<String>,
    /// Time for one request (default 10s).
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
    /// Message overrides per audience and event.
    #[serde(default)]
    pub templates: TemplateSpecs,
}

/// `kind = "email"`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    /// Name in reports.
    pub name: String,
    /// SMTP server host.
    pub server: String,
    /// Port (default 587, 465 or 25 by `security`).
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `plain`.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// Login.
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Sender.
    pub from: String,
    /// The team's addresses.
    #[serde(default)]
    pub team: Vec<String>,
    /// Per customer (the customer names of the stacks): their addresses.
    #[serde(default)]
    pub contacts: BTreeMap<String, Contacts>,
    /// PEM file of extra trusted CA certificates.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Time for each SMTP command (default 10s).
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
    /// Message overrides per audience and event.
    #[serde(default)]
    pub templates: TemplateSpecs,
}

/// `kind = "log"`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// Name in reports.
    pub name: String,
    /// The file to append to.
    pub path: PathBuf,
    /// Whose messages to record (default `["team"]`; all three keep a full record).
    #[serde(default)]
    pub audiences: Vec<Audience>,
    /// Message overrides per audience and event.
    #[serde(default)]
    pub templates: TemplateSpecs,
}

impl NotifierSpec {
    /// Its name.
    pub fn name(&self) -> &str {
        match self {
            NotifierSpec::Slack(s) => &s.name,
            NotifierSpec::Webhook(s) => &s.name,
            NotifierSpec::Email(s) => &s.name,
            NotifierSpec::Log(s) => &s.name,
        }
    }

    /// Its kind.
    pub fn kind(&self) -> &'static str {
        match self {
            NotifierSpec::Slack(_) => "slack",
            NotifierSpec::Webhook(_) => "webhook",
            NotifierSpec::Email(_) => "email",
            NotifierSpec::Log(_) => "log",
        }
    }

    /// Builds the notifier, reading its secret now.
    pub fn build(&self) -> Result<Arc<dyn Notifier>, NotifierConfigError> {
        let error = |reason: String| NotifierConfigError {
            notifier: self.name().to_owned(),
            kind: self.kind(),
            reason,
        };
        let secret_error = |e: SecretError| error(e.to_string());
        if self.name().trim().is_empty() {
            return Err(error("name is empty".into()));
        }
        let templates = |specs: &TemplateSpecs| {
            Templates::with_overrides(specs).map_err(|e| error(e.to_string()))
        };
        Ok(match self {
            NotifierSpec::Slack(spec) => {
                let url = SecretSource::required(
                    "url",
                    spec.url_env.as_deref(),
                    spec.url_file.as_deref(),
                )
                .and_then(|s| s.resolve())
                .map_err(secret_error)?;
                Arc::new(
                    SlackNotifier::new(
                        &spec.name,
                        url,
                        Reach::new(spec.audiences.clone(), spec.customers.clone()),
                        templates(&spec.templates)?,
                        spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
                    )
                    .map_err(error)?,
                )
            }
            NotifierSpec::Webhook(spec) => {
                let url = SecretSource::required(
                    "url",
                    spec.url_env.as_deref(),
                    spec.url_file.as_deref(),
                )
                .and_then(|s| s.resolve())
                .map_err(secret_error)?;
                Arc::new(
                    WebhookNotifier::new(
                        &spec.name,
                        url,
                        &spec.headers,
                        spec.template.as_deref(),
                        Reach::new(spec.audiences.clone(), spec.customers.clone()),
                        templates(&spec.templates)?,
                        spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
                    )
                    .map_err(error)?,
                )
            }
            NotifierSpec::Email(spec) => {
                let password = SecretSource::from_fields(
                    "password",
                    spec.password_env.as_deref(),
                    spec.password_file.as_deref(),
                )
                .map_err(secret_error)?
                .map(|s| s.resolve())
                .transpose()
                .map_err(secret_error)?;
                let options = EmailOptions {
                    server: spec.server.clone(),
                    port: spec.port,
                    security: spec.security,
                    username: spec.username.clone(),
                    password,
                    from: spec.from.clone(),
                    team: spec.team.clone(),
                    contacts: spec.contacts.clone(),
                    ca_file: spec.ca_file.clone(),
                    timeout: spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
                };
                Arc::new(
                    EmailNotifier::new(&spec.name, options, templates(&spec.templates)?)
                        .map_err(error)?,
                )
            }
            NotifierSpec::Log(spec) => Arc::new(LogNotifier::new(
                &spec.name,
                &spec.path,
                Reach::new(spec.audiences.clone(), Vec::new()),
                templates(&spec.templates)?,
            )),
        })
    }
}
