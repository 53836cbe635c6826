//! Generic JSON webhook: a default JSON document, or a body template whose `{{field}}`s are
//! JSON-escaped.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::spec::Reach;
use super::template::json_escape;
use super::{
    Audience, Delivered, FIELDS, Message, Notifier, NotifyError, SecretUrl, Template, Templates,
    http_client, post_json,
};
use crate::secret::Secret;

/// Fields a webhook body template can use beyond the event's: the rendered message.
const MESSAGE_FIELDS: &[&str] = &["subject", "body"];

/// POSTs each message as JSON to a URL (a secret, like a Slack webhook's).
#[derive(Debug)]
pub struct WebhookNotifier {
    name: String,
    url: SecretUrl,
    client: reqwest::Client,
    headers: reqwest::header::HeaderMap,
    body: Option<Template>,
    reach: Reach,
    templates: Templates,
}

impl WebhookNotifier {
    /// A notifier posting to `url`. `body_template` (JSON with `{{field}}`s inside strings) is
    /// checked now: rendered with sample values, it must be valid JSON.
    pub fn new(
        name: impl Into<String>,
        url: Secret,
        headers: &std::collections::BTreeMap<String, String>,
        body_template: Option<&str>,
        reach: Reach,
        templates: Templates,
        timeout: Duration,
    ) -> Result<WebhookNotifier, String> {
        let parsed = SecretUrl::parse(&url)?;
        let mut header_map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: '{name}' is not a header name"))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| format!("headers: the value of {name} is not a valid header value"))?;
            header_map.append(name, value);
        }
        let body = body_template
            .map(|text| {
                let known: Vec<&str> = FIELDS.iter().chain(MESSAGE_FIELDS).copied().collect();
                let template = Template::parse(text, &known).map_err(|e| e.to_string())?;
                let sample = known.iter().map(|f| (*f, "sample \"value\"".to_owned())).collect();
                serde_json::from_str::<serde_json::Value>(&template.render(&sample, json_escape))
                    .map_err(|e| format!("template: not JSON once filled in ({e}); put {{{{field}}}}s inside JSON strings"))?;
                Ok::<_, String>(template)
            })
            .transpose()?;
        Ok(WebhookNotifier {
            name: name.into(),
            url: parsed,
            client: http_client(timeout)?,
            headers: header_map,
            body,
            reach,
            templates,
        })
    }

    fn render(&self, message: &Message) -> String {
        match &self.body {
            Some(template) => {
                let mut fields: std::collections::BTreeMap<&str, String> = message
                    .fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                fields.insert("subject", message.subject.clone());
                fields.insert("body", message.body.clone());
                template.render(&fields, json_escape)
            }
            None => json!({
                "event": message.event,
                "audience": message.audience,
                "customer": message.customer,
                "stacks": message.stacks,
                "run_id": message.run_id,
                "subject": message.subject,
                "text": message.body,
                "fields": message.fields,
            })
            .to_string(),
        }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn reaches(&self, audience: Audience, customer: Option<&str>) -> bool {
        self.reach.reaches(audience, customer)
    }

    fn templates(&self) -> &Templates {
        &self.templates
    }

    async fn deliver(&self, message: &Message) -> Result<Delivered, NotifyError> {
        post_json(&self.client, &self.url, &self.headers, self.render(message)).await?;
        Ok(Delivered::default())
    }
}
