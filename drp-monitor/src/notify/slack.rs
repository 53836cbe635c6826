//! Slack incoming webhook: `text` (the fallback shown in notifications) and `blocks`.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::spec::Reach;
use super::{
    Audience, Delivered, Message, Notifier, NotifyError, SecretUrl, Templates, http_client,
    post_json,
};
use crate::secret::Secret;

/// Posts messages to a Slack incoming webhook. The webhook URL is a secret: it is never
/// printed (`Debug` shows `***`) and errors name only the host.
#[derive(Debug)]
pub struct SlackNotifier {
    name: String,
    url: SecretUrl,
    client: reqwest::Client,
    reach: Reach,
    templates: Templates,
}

impl SlackNotifier {
    /// A notifier posting to `webhook_url`, for the team unless `reach` says otherwise.
    pub fn new(
        name: impl Into<String>,
        webhook_url: Secret,
        reach: Reach,
        templates: Templates,
        timeout: Duration,
    ) -> Result<SlackNotifier, String> {
        Ok(SlackNotifier {
            name: name.into(),
            url: SecretUrl::parse(&webhook_url)?,
            client: http_client(timeout)?,
            reach,
            templates,
        })
    }
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn mrkdwn_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters (Slack refuses longer block texts).
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if text.chars().count() > max => format!("{}…", &text[..cut]),
        _ => text.to_owned(),
    }
}

/// The JSON a message becomes.
pub(crate) fn payload(message: &Message) -> serde_json::Value {
    let mut context = format!("drp · {}", message.event);
    if let Some(run_id) = &message.run_id {
        context.push_str(&format!(" · run `{}`", mrkdwn_escape(run_id)));
    }
    json!({
        "text": clip(&format!("{}\n{}", message.subject, message.body), 3000),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": clip(&message.subject, 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": clip(&mrkdwn_escape(&message.body), 3000)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    })
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "slack"
    }

    fn reaches(&self, audience: Audience, customer: Option<&str>) -> bool {
        self.reach.reaches(audience, customer)
    }

    fn templates(&self) -> &Templates {
        &self.templates
    }

    async fn deliver(&self, message: &Message) -> Result<Delivered, NotifyError> {
        post_json(
            &self.client,
            &self.url,
            &reqwest::header::HeaderMap::new(),
            payload(message).to_string(),
        )
        .await?;
        Ok(Delivered::default())
    }
}
