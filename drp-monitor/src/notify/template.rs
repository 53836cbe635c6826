//! `{{field}}` templates: the built-in messages per audience, and overrides from config.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Message;
use super::event::{Addressee, Audience, Event, EventKind, FIELDS, default_template};

/// A text with `{{field}}` placeholders, checked against the known fields when parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: {0}")]
pub struct TemplateError(String);

impl Template {
    /// Parses `text`, allowing the fields in `known`.
    pub fn parse(text: &str, known: &[&str]) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| TemplateError(format!("'{{{{' without '}}}}' in {text:?}")))?;
            let name = after[..close].trim();
            if !known.contains(&name) {
                return Err(TemplateError(format!(
                    "unknown field {{{{{name}}}}}; known fields: {}",
                    known.join(", ")
                )));
            }
            parts.push(Part::Field(name.to_owned()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// Fills in the fields, passing each value through `escape`.
    pub fn render(
        &self,
        fields: &BTreeMap<&str, String>,
        escape: impl Fn(&str) -> String,
    ) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(name) => {
                    out.push_str(&escape(
                        fields.get(name.as_str()).map_or("-", String::as_str),
                    ));
                }
            }
        }
        out
    }
}

/// Subject and body overrides for one event and audience.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// Subject (email subject, Slack header).
    #[serde(default)]
    pub subject: Option<String>,
    /// Body.
    #[serde(default)]
    pub body: Option<String>,
}

/// Per audience, per event kind: `[notifiers.templates.customer.stack_recovered]`.
pub type TemplateSpecs = BTreeMap<Audience, BTreeMap<EventKind, TemplateSpec>>;

/// The messages a notifier sends: the built-in ones, with any overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Templates {
    overrides: BTreeMap<(Audience, EventKind), (Option<Template>, Option<Template>)>,
}

impl Templates {
    /// The built-in templates.
    pub fn builtin() -> Templates {
        Templates::default()
    }

    /// Built-in templates with the given overrides, checked now.
    pub fn with_overrides(specs: &TemplateSpecs) -> Result<Templates, TemplateError> {
        let mut overrides = BTreeMap::new();
        for (audience, kinds) in specs {
            for (kind, spec) in kinds {
                if *audience != Audience::Team && !kind.reaches_customers() {
                    return Err(TemplateError(format!(
                        "{audience}.{kind}: {audience}s are never told about {kind} events (only \
                         recovery_started and stack_recovered)"
                    )));
                }
                let parse = |text: &Option<String>| {
                    text.as_deref()
                        .map(|t| Template::parse(t, FIELDS))
                        .transpose()
                        .map_err(|TemplateError(e)| {
                            TemplateError(format!("{audience}.{kind}: {e}"))
                        })
                };
                overrides.insert(
                    (*audience, *kind),
                    (parse(&spec.subject)?, parse(&spec.body)?),
                );
            }
        }
        Ok(Templates { overrides })
    }

    /// The message for one addressee of an event, or `None` if that audience never hears of
    /// this kind of event.
    pub fn render(&self, event: &Event, addressee: &Addressee) -> Option<Message> {
        let kind = event.kind();
        let (subject, body) = default_template(kind, addressee.audience)?;
        let fields = event.fields(addressee);
        let overrides = self.overrides.get(&(addressee.audience, kind));
        let render = |custom: Option<&Template>, builtin: &str| match custom {
            Some(template) => template.render(&fields, str::to_owned),
            None => Template::parse(builtin, FIELDS)
                .expect("built-in templates use known fields")
                .render(&fields, str::to_owned),
        };
        Some(Message {
            event: kind,
            audience: addressee.audience,
            customer: addressee.customer.clone(),
            stacks: addressee.stacks.iter().map(|s| s.name.clone()).collect(),
            run_id: event.run_id().map(str::to_owned),
            subject: render(overrides.and_then(|o| o.0.as_ref()), subject),
            body: render(overrides.and_then(|o| o.1.as_ref()), body),
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        })
    }
}

/// `value` escaped for the inside of a JSON string.
pub(crate) fn json_escape(value: &str) -> String {
    let quoted = serde_json::to_string(value).expect("strings serialize");
    quoted[1..quoted.len() - 1].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::StackRef;

    #[test]
    fn fills_fields_and_refuses_unknown_ones() {
        let template = Template::parse("run {{run_id}}: {{ stack }}", FIELDS).unwrap();
        let fields = BTreeMap::from([("run_id", "r1".to_owned()), ("stack", "acme".to_owned())]);
        assert_eq!(template.render(&fields, str::to_owned), "run r1: acme");
        let error = Template::parse("{{stak}}", FIELDS).unwrap_err().to_string();
        assert!(
            error.starts_with("template: unknown field {{stak}}; known fields: event"),
            "{error}"
        );
        let error = Template::parse("{{stack", FIELDS).unwrap_err().to_string();
        assert!(error.contains("without '}}'"), "{error}");
    }

    #[test]
    fn escapes_for_json() {
        let template = Template::parse(r#"{"text": "{{error}}"}"#, FIELDS).unwrap();
        let fields = BTreeMap::from([("error", "bad \"quote\"\nnew line".to_owned())]);
        let rendered = template.render(&fields, json_escape);
        let value: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        assert_eq!(value["text"], "bad \"quote\"\nnew line");
    }

    #[test]
    fn customers_get_plain_words_and_the_team_gets_the_cause() {
        let event = Event::RecoveryStarted {
            run_id: "run-1".into(),
            stacks: vec![
                StackRef::new("acme-web", "acme"),
                StackRef::new("beta-web", "beta"),
            ],
            cause: Some("probe https://acme.example/health: HTTP 502".into()),
        };
        let templates = Templates::builtin();
        let messages: Vec<Message> = event
            .addressees()
            .iter()
            .filter_map(|a| templates.render(&event, a))
            .collect();
        // The team, then a customer and a partner message per customer.
        assert_eq!(messages.len(), 5);
        let team = &messages[0];
        assert_eq!(team.audience, Audience::Team);
        assert!(team.body.contains("HTTP 502"), "{}", team.body);
        assert!(team.body.contains("acme-web, beta-web"), "{}", team.body);
        let acme_customer = messages
            .iter()
            .find(|m| m.audience == Audience::Customer && m.customer.as_deref() == Some("acme"))
            .unwrap();
        assert_eq!(
            acme_customer.subject,
            "Service interruption: we are restoring acme-web"
        );
        assert!(
            !acme_customer.body.contains("502"),
            "{}",
            acme_customer.body
        );
        assert!(
            !acme_customer.body.contains("beta"),
            "{}",
            acme_customer.body
        );
    }

    #[test]
    fn overrides_are_checked() {
        let specs: TemplateSpecs =
            toml::from_str("[customer.stack_recovered]\nsubject = \"{{stack}} is up again\"")
                .unwrap();
        let templates = Templates::with_overrides(&specs).unwrap();
        let event = Event::StackRecovered {
            run_id: "r".into(),
            stack: StackRef::new("acme-web", "acme"),
            elapsed: std::time::Duration::from_secs(60),
        };
        let customer = &event.addressees()[1];
        let message = templates.render(&event, customer).unwrap();
        assert_eq!(message.subject, "acme-web is up again");
        assert!(message.body.starts_with("Hello,"), "{}", message.body);

        let specs: TemplateSpecs =
            toml::from_str("[customer.step_failed]\nbody = \"{{error}}\"").unwrap();
        let error = Templates::with_overrides(&specs).unwrap_err().to_string();
        assert!(
            error.contains("customers are never told about step_failed"),
            "{error}"
        );
    }
}
