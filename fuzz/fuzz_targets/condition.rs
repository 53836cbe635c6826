//! The probe condition language (`[STATUS] == 200`, `[BODY].a[0] == pat(*up*)`): any text
//! parses or gives an error whose position lies inside the text; a condition that parses
//! gives its (trimmed) text back and evaluates against any body without a panic.
//!
//! Input: the condition on the first line, the observed body after it.
#![no_main]

use std::time::Duration;

use drp_monitor::Condition;
use drp_monitor::probe::{CertificateInfo, Observation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (condition, body) = text.split_once('\n').unwrap_or((text, ""));
    match Condition::parse(condition) {
        Err(error) => {
            let offset = error.byte_offset();
            assert!(offset <= condition.len(), "{error}: offset {offset}");
            assert!(
                condition.is_char_boundary(offset),
                "{error}: offset {offset}"
            );
            assert!(error.position() >= 1);
            let _ = error.to_string();
        }
        Ok(parsed) => {
            // The text it was parsed from, without surrounding white space.
            assert_eq!(parsed.as_str(), condition.trim());
            let observation = Observation {
                status: Some(200),
                response_time: Duration::from_millis(body.len() as u64),
                body: Some(body.to_owned()),
                connected: Some(!body.is_empty()),
                certificate: Some(CertificateInfo {
                    subject: "CN=fuzz".into(),
                    not_after: jiff::Timestamp::UNIX_EPOCH,
                    expires_in_ms: -(body.len() as i64) * 1_000_000_007,
                }),
                addresses: vec!["127.0.0.1".parse().unwrap()],
                exit_code: Some(body.len() as i32 - 3),
                ..Observation::default()
            };
            let result = parsed.evaluate(&observation);
            assert_eq!(result.condition, parsed.as_str());
            let _ = parsed.evaluate(&Observation::default());
        }
    }
});
