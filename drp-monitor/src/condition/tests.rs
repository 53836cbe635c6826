//! Every operator, every placeholder type and every error case of the condition language.

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::probe::{CertificateInfo, Observation};

fn http(status: u16, body: &str, millis: u64) -> Observation {
    Observation {
        status: Some(status),
        response_time: Duration::from_millis(millis),
        body: Some(body.to_owned()),
        connected: Some(true),
        ..Observation::default()
    }
}

fn holds(condition: &str, observation: &Observation) -> bool {
    let result = Condition::parse(condition)
        .unwrap_or_else(|e| panic!("{condition}: {e}"))
        .evaluate(observation);
    result.ok
}

#[test]
fn every_operator_on_numbers() {
    let o = http(200, "", 0);
    let cases = [
        ("[STATUS] == 200", true),
        ("[STATUS] == 201", false),
        ("[STATUS] != 200", false),
        ("[STATUS] != 500", true),
        ("[STATUS] < 300", true),
        ("[STATUS] < 200", false),
        ("[STATUS] <= 200", true),
        ("[STATUS] <= 199", false),
        ("[STATUS] > 199", true),
        ("[STATUS] > 200", false),
        ("[STATUS] >= 200", true),
        ("[STATUS] >= 201", false),
        ("[STATUS]==200", true),
        ("  [STATUS]   ==   200  ", true),
    ];
    for (condition, expected) in cases {
        assert_eq!(holds(condition, &o), expected, "{condition}");
    }
}

#[test]
fn any_matches_one_of_several_values() {
    assert!(holds("[STATUS] == any(200, 204)", &http(204, "", 0)));
    assert!(!holds("[STATUS] == any(200, 204)", &http(502, "", 0)));
    assert!(holds("[STATUS] != any(500, 502, 503)", &http(200, "", 0)));
    assert!(!holds("[STATUS] != any(500, 502, 503)", &http(502, "", 0)));
    assert!(holds(
        "[BODY].state == any(UP, DEGRADED)",
        &http(200, r#"{"state":"DEGRADED"}"#, 0)
    ));
}

#[test]
fn response_time_takes_milliseconds_or_a_duration() {
    let o = http(200, "", 120);
    assert!(holds("[RESPONSE_TIME] < 500", &o));
    assert!(holds("[RESPONSE_TIME] < 1s", &o));
    assert!(holds("[RESPONSE_TIME] > 100ms", &o));
    assert!(!holds("[RESPONSE_TIME] < 120", &o));
    assert!(holds("[RESPONSE_TIME] <= 120", &o));
}

#[test]
fn json_paths_reach_nested_fields_and_array_items() {
    let body = r#"{"status":"UP","db":{"ok":true,"latency":12.5},"items":[{"name":"web"},{"name":"db"}],"count":"3"}"#;
    let o = http(200, body, 0);
    assert!(holds("[BODY].status == UP", &o));
    assert!(!holds("[BODY].status == DOWN", &o));
    assert!(holds("[BODY].status != DOWN", &o));
    assert!(holds("[BODY].db.ok == true", &o));
    assert!(holds("[BODY].db.latency < 20", &o));
    assert!(holds("[BODY].items[0].name == web", &o));
    assert!(holds("[BODY].items[1].name == db", &o));
    assert!(holds("len([BODY].items) > 0", &o));
    assert!(holds("len([BODY].items) == 2", &o));
    assert!(holds("len([BODY].status) == 2", &o));
    // A number held as a string still compares as a number.
    assert!(holds("[BODY].count >= 3", &o));
    // ... unless the expected value is quoted.
    assert!(!holds("[BODY].count > \"2\"", &o));
    // Text has no order.
    assert!(!holds("[BODY].status > A", &o));
    assert!(!holds("[BODY].status < Z", &o));
}

#[test]
fn a_missing_field_or_a_body_that_is_not_json_fails_and_says_why() {
    let o = http(200, r#"{"items":[]}"#, 0);
    let result = Condition::parse("[BODY].items[0].name == web")
        .unwrap()
        .evaluate(&o);
    assert!(!result.ok);
    assert!(!result.observed);
    assert_eq!(result.actual, "nothing: the body has no [BODY].items[0]");
    assert!(!holds("len([BODY].items) > 0", &o));

    let result = Condition::parse("[BODY].status == UP")
        .unwrap()
        .evaluate(&http(502, "<html>Bad Gateway</html>", 0));
    assert!(!result.ok);
    assert!(
        result.actual.starts_with("a body that is not JSON"),
        "{}",
        result.actual
    );

    let result = Condition::parse("[STATUS] == 200")
        .unwrap()
        .evaluate(&Observation::default());
    assert!(!result.ok);
    assert_eq!(result.actual, "nothing: no [STATUS] observed");
}

#[test]
fn patterns_glob_over_the_body() {
    let o = http(200, "service is ready\n", 0);
    assert!(holds("[BODY] == pat(*ready*)", &o));
    assert!(!holds("[BODY] == pat(*starting*)", &o));
    assert!(holds("[BODY] != pat(*starting*)", &o));
    assert!(holds("[BODY] == pat(service?is*)", &o));
    assert!(holds(r#"[BODY] == pat("*is ready*")"#, &o));
    assert!(holds("[STATUS] == pat(2*)", &http(204, "", 0)));
    assert!(!holds("[STATUS] == pat(2*)", &http(502, "", 0)));
    assert!(glob_matches("a*b*c", "aXXbYYc"));
    assert!(glob_matches("*", ""));
    assert!(!glob_matches("a*b", "aXXc"));
}

#[test]
fn booleans_certificates_addresses_and_exit_codes() {
    let tcp = Observation {
        connected: Some(false),
        addresses: vec!["127.0.0.1".parse::<IpAddr>().unwrap()],
        ..Observation::default()
    };
    assert!(holds("[CONNECTED] == false", &tcp));
    assert!(!holds("[CONNECTED] == true", &tcp));
    assert!(holds("[CONNECTED] != true", &tcp));
    assert!(holds("[IP] == 127.0.0.1", &tcp));
    assert!(holds("[IP] == pat(127.*)", &tcp));

    let tls = Observation {
        certificate: Some(CertificateInfo {
            subject: "CN=acme".into(),
            not_after: jiff::Timestamp::UNIX_EPOCH,
            expires_in_ms: 48 * 3_600_000,
        }),
        ..Observation::default()
    };
    assert!(!holds("[CERTIFICATE_EXPIRATION] > 72h", &tls));
    assert!(holds("[CERTIFICATE_EXPIRATION] > 47h", &tls));
    assert!(holds("[CERTIFICATE_EXPIRATION] < 3d", &tls));
    let result = Condition::parse("[CERTIFICATE_EXPIRATION] > 72h")
        .unwrap()
        .evaluate(&tls);
    assert_eq!(result.actual, "2d");

    let command = Observation {
        exit_code: Some(3),
        body: Some("3 jobs queued\n".into()),
        ..Observation::default()
    };
    assert!(holds("[EXIT_CODE] != 0", &command));
    assert!(holds("[EXIT_CODE] == 3", &command));
    assert!(holds("[BODY] == pat(*queued*)", &command));
}

#[test]
fn conditions_keep_their_text_and_expose_their_parts() {
    let condition = Condition::parse("  [BODY].items[0].name == web ").unwrap();
    assert_eq!(condition.to_string(), "[BODY].items[0].name == web");
    assert_eq!(condition.placeholder(), Placeholder::Body);
    assert_eq!(condition.operator(), Operator::Eq);
    assert_eq!(
        condition.subject.path,
        vec![
            PathSegment::Field("items".into()),
            PathSegment::Index(0),
            PathSegment::Field("name".into())
        ]
    );
    assert_eq!(
        "[STATUS] == 200"
            .parse::<Condition>()
            .unwrap()
            .placeholder(),
        Placeholder::Status
    );
}

/// (condition, column, full message)
const ERRORS: &[(&str, usize, &str)] = &[
    (
        "",
        1,
        "empty condition at column 1: expected a placeholder such as [STATUS], or len(...)",
    ),
    (
        "   ",
        1,
        "empty condition at column 1: expected a placeholder such as [STATUS], or len(...)",
    ),
    (
        "200 == [STATUS]",
        1,
        "unexpected '200' at column 1: expected a placeholder such as [STATUS], or len(...)",
    ),
    (
        "[STATU] == 200",
        1,
        "unknown placeholder [STATU] at column 1: expected one of [STATUS], [RESPONSE_TIME], \
         [BODY], [CONNECTED], [CERTIFICATE_EXPIRATION], [IP], [EXIT_CODE]",
    ),
    (
        "[STATUS == 200",
        9,
        "unexpected '==' at column 9: expected ']' to close the placeholder",
    ),
    (
        "[STATUS",
        8,
        "end of condition at column 8: expected ']' to close the placeholder",
    ),
    (
        "[STATUS] 200",
        10,
        "unexpected '200' at column 10: expected an operator (==, !=, <, <=, >, >=)",
    ),
    (
        "[STATUS] = 200",
        10,
        "unexpected '=' at column 10: expected an operator (==, !=, <, <=, >, >=); did you mean '=='?",
    ),
    (
        "[STATUS]",
        9,
        "end of condition at column 9: expected an operator (==, !=, <, <=, >, >=)",
    ),
    (
        "[STATUS] ==",
        12,
        "end of condition at column 12: expected a value",
    ),
    (
        "[STATUS] == any()",
        17,
        "unexpected ')' at column 17: expected a value",
    ),
    (
        "[STATUS] == any(200,)",
        21,
        "unexpected ')' at column 21: expected a value",
    ),
    (
        "[STATUS] == any(200",
        20,
        "end of condition at column 20: expected ',' or ')'",
    ),
    (
        "[STATUS] == any(200 204)",
        21,
        "unexpected '204' at column 21: expected ',' or ')'",
    ),
    (
        "[BODY] == pat(*x*",
        18,
        "end of condition at column 18: expected ')' to close pat(",
    ),
    (
        "[STATUS] < any(200, 204)",
        12,
        "unexpected 'any(' at column 12: expected a single value: any() goes with == or != only",
    ),
    (
        "[BODY] >= pat(*up*)",
        11,
        "unexpected 'pat(' at column 11: expected a single value: pat() goes with == or != only",
    ),
    (
        "[STATUS] == 200 OK",
        17,
        "unexpected 'OK' at column 17: expected the end of the condition",
    ),
    (
        "[STATUS] == OK",
        13,
        "unexpected 'OK' at column 13: expected a number ([STATUS] is a number)",
    ),
    (
        "[STATUS] == any(200, OK)",
        22,
        "unexpected 'OK' at column 22: expected a number ([STATUS] is a number)",
    ),
    (
        "[EXIT_CODE] == \"0\"",
        16,
        "unexpected '\"0\"' at column 16: expected a number ([EXIT_CODE] is a number)",
    ),
    (
        "[RESPONSE_TIME] < fast",
        19,
        "unexpected 'fast' at column 19: expected a duration such as 500ms or 72h, or a number \
         of milliseconds ([RESPONSE_TIME] is a duration)",
    ),
    (
        "[CERTIFICATE_EXPIRATION] > 3 days",
        30,
        "unexpected 'days' at column 30: expected the end of the condition",
    ),
    (
        "[CONNECTED] == yes",
        16,
        "unexpected 'yes' at column 16: expected true or false ([CONNECTED] is true or false)",
    ),
    (
        "[CONNECTED] > true",
        13,
        "unexpected '>' at column 13: expected == or != ([CONNECTED] is true or false)",
    ),
    (
        "[BODY]. == UP",
        8,
        "unexpected ' ' at column 8: expected a field name after '.'",
    ),
    (
        "[BODY].",
        8,
        "end of condition at column 8: expected a field name after '.'",
    ),
    (
        "[BODY].items[x] > 0",
        14,
        "unexpected 'x' at column 14: expected an array index such as [0]",
    ),
    (
        "[BODY].items[0 > 0",
        15,
        "unexpected ' ' at column 15: expected ']' after the array index",
    ),
    (
        "[STATUS].code == 200",
        9,
        "unexpected '.code' at column 9: expected an operator (==, !=, <, <=, >, >=): only [BODY] \
         has fields, not [STATUS]",
    ),
    (
        "len([STATUS]) > 0",
        5,
        "[STATUS] has no length at column 5: expected [BODY] or a JSON path in it, such as \
         len([BODY].items)",
    ),
    (
        "len(items) > 0",
        5,
        "unexpected 'items' at column 5: expected a placeholder such as [BODY]",
    ),
    (
        "len([BODY].items > 0",
        18,
        "unexpected '>' at column 18: expected ')'",
    ),
    (
        "len([BODY].items) > many",
        21,
        "unexpected 'many' at column 21: expected a number (len(...) is a number)",
    ),
    (
        "[BODY] == \"ready",
        11,
        "unterminated string at column 11: expected a closing '\"'",
    ),
    (
        "[BODY] == has(ready)",
        11,
        "unknown function 'has(' at column 11: expected any(...), pat(...) or a value",
    ),
    (
        "[STATUS] == [BODY].status",
        13,
        "unexpected '[BODY].status' at column 13: expected a value: placeholders go on the left \
         of the operator",
    ),
    (
        "[BODY] == )",
        11,
        "unexpected ')' at column 11: expected a value",
    ),
    // Columns count characters, not bytes.
    (
        "[BODY].état == é )",
        18,
        "unexpected ')' at column 18: expected the end of the condition",
    ),
];

#[test]
fn every_error_names_its_column_and_what_was_expected() {
    for (text, column, message) in ERRORS {
        let error = Condition::parse(text).expect_err(text);
        assert_eq!(error.to_string(), *message, "for {text:?}");
        assert_eq!(error.position(), *column, "for {text:?}");
        // The byte offset points at the same character.
        let by_chars: usize = text.chars().take(column - 1).map(char::len_utf8).sum();
        assert_eq!(error.byte_offset(), by_chars, "for {text:?}");
    }
}

#[test]
fn quoted_values_keep_spaces_and_escapes() {
    let o = http(200, r#"{"message":"all \"good\", really"}"#, 0);
    assert!(holds(r#"[BODY].message == "all \"good\", really""#, &o));
}

#[test]
fn the_text_given_back_is_trimmed() {
    // Found by the fuzz target `condition`, whose first check expected the text untrimmed.
    let condition = Condition::parse("  [BODY].db.ok == t[BODY].db.okr \n").unwrap();
    assert_eq!(condition.as_str(), "[BODY].db.ok == t[BODY].db.okr");
    assert_eq!(condition.to_string(), condition.as_str());
}
