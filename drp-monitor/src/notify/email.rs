//! Email over SMTP (lettre, rustls): STARTTLS (default), implicit TLS, or plain for a local
//! relay. One email per audience and customer, to that audience's addresses only.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;

use super::spec::Contacts;
use super::{Audience, Delivered, Message, Notifier, NotifyError, Templates};
use crate::secret::Secret;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (port 587 by default).
    #[default]
    Starttls,
    /// TLS from the first byte, "SMTPS" (port 465 by default).
    Tls,
    /// No TLS at all (port 25 by default): only for a relay on the same host or in tests.
    Plain,
}

impl SmtpSecurity {
    fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::Plain => 25,
        }
    }
}

/// Everything an [`EmailNotifier`] needs.
#[derive(Debug, Clone)]
pub struct EmailOptions {
    /// SMTP server host.
    pub server: String,
    /// Port (default by `security`: 587, 465 or 25).
    pub port: Option<u16>,
    /// Connection protection.
    pub security: SmtpSecurity,
    /// Login, if the server wants one.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<Secret>,
    /// Sender, `Name <address>` or `address`.
    pub from: String,
    /// The team's addresses (technical messages).
    pub team: Vec<String>,
    /// Per customer: its own and its partners' addresses.
    pub contacts: BTreeMap<String, Contacts>,
    /// PEM file of extra trusted CA certificates for the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// Time allowed for each SMTP command.
    pub timeout: Duration,
}

/// Sends messages by email.
pub struct EmailNotifier {
    name: String,
    server: String,
    security: SmtpSecurity,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    team: Vec<Mailbox>,
    customers: BTreeMap<String, Vec<Mailbox>>,
    partners: BTreeMap<String, Vec<Mailbox>>,
    templates: Templates,
}

// By hand: the transport holds the credentials, and its Debug would print them.
impl fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("security", &self.security)
            .field("from", &self.from.to_string())
            .field("team", &self.team.len())
            .field("customers", &self.customers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn mailboxes(field: &str, addresses: &[String]) -> Result<Vec<Mailbox>, String> {
    addresses
        .iter()
        .map(|a| {
            a.parse::<Mailbox>()
                .map_err(|e| format!("{field}: '{a}' is not an email address ({e})"))
        })
        .collect()
}

impl EmailNotifier {
    /// Checks the addresses and sets up the transport (no connection is made yet).
    pub fn new(
        name: impl Into<String>,
        options: EmailOptions,
        templates: Templates,
    ) -> Result<EmailNotifier, String> {
        let port = options.port.unwrap_or(options.security.default_port());
        let tls_parameters = || -> Result<TlsParameters, String> {
            let mut builder = TlsParameters::builder(options.server.clone());
            if let Some(path) = &options.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("ca_file: cannot read {}: {e}", path.display()))?;
                let certificate = Certificate::from_pem(&pem)
                    .map_err(|e| format!("ca_file: {}: {e}", path.display()))?;
                builder = builder.add_root_certificate(certificate);
            }
            builder
                .build_rustls()
                .map_err(|e| format!("cannot set up TLS: {}", crate::probe::error_chain(&e)))
        };
        let tls = match options.security {
            SmtpSecurity::Starttls => Tls::Required(tls_parameters()?),
            SmtpSecurity::Tls => Tls::Wrapper(tls_parameters()?),
            SmtpSecurity::Plain => Tls::None,
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(options.server.clone())
                .port(port)
                .tls(tls)
                .timeout(Some(options.timeout));
        match (&options.username, &options.password) {
            (Some(user), Some(password)) => {
                builder = builder
                    .credentials(Credentials::new(user.clone(), password.expose().to_owned()));
            }
            (Some(_), None) => {
                return Err("username is set but no password_env or password_file".into());
            }
            (None, Some(_)) => return Err("a password is set but no username".into()),
            (None, None) => {}
        }
        let mut customers = BTreeMap::new();
        let mut partners = BTreeMap::new();
        for (customer, contacts) in &options.contacts {
            customers.insert(
                customer.clone(),
                mailboxes(&format!("contacts.{customer}.customer"), &contacts.customer)?,
            );
            partners.insert(
                customer.clone(),
                mailboxes(&format!("contacts.{customer}.partner"), &contacts.partner)?,
            );
        }
        Ok(EmailNotifier {
            name: name.into(),
            server: crate::probe::tcp_host_port(&options.server, port),
            security: options.security,
            transport: builder.build(),
            from: options
                .from
                .parse()
                .map_err(|e| format!("from: '{}' is not an email address ({e})", options.from))?,
            team: mailboxes("team", &options.team)?,
            customers,
            partners,
            templates,
        })
    }

    fn recipients(&self, audience: Audience, customer: Option<&str>) -> &[Mailbox] {
        let map = match audience {
            Audience::Team => return &self.team,
            Audience::Customer => &self.customers,
            Audience::Partner => &self.partners,
        };
        customer.and_then(|c| map.get(c)).map_or(&[], Vec::as_slice)
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "email"
    }

    fn reaches(&self, audience: Audience, customer: Option<&str>) -> bool {
        !self.recipients(audience, customer).is_empty()
    }

    fn templates(&self) -> &Templates {
        &self.templates
    }

    async fn deliver(&self, message: &Message) -> Result<Delivered, NotifyError> {
        let recipients = self.recipients(message.audience, message.customer.as_deref());
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(message.subject.clone())
            .header(ContentType::TEXT_PLAIN);
        for recipient in recipients {
            builder = builder.to(recipient.clone());
        }
        let email = builder
            .body(message.body.clone())
            .map_err(|e| NotifyError::Other {
                reason: format!("cannot build the email: {e}"),
                retryable: false,
            })?;
        self.transport
            .send(email)
            .await
            .map_err(|e| NotifyError::Smtp {
                server: self.server.clone(),
                reason: crate::probe::error_chain(&e),
                permanent: e.is_permanent(),
            })?;
        Ok(Delivered {
            recipients: recipients.iter().map(|m| m.email.to_string()).collect(),
        })
    }
}
