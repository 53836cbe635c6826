//! Probes against real servers on loopback: HTTP and HTTPS (a CA and a short-lived server
//! certificate made here), TCP, commands, the system resolver; and the runner's thresholds.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use drp_monitor::probe::{
    CommandProbeSpec, DnsProbeSpec, HttpProbeSpec, TcpProbeSpec, TlsProbeSpec,
};
use drp_monitor::{HealthProbe, HealthState, Monitor, ProbeRunner, ProbeSpec, RunnerOptions};
use support::{Pki, Server, respond};

fn http_spec(url: &str, conditions: &[&str]) -> HttpProbeSpec {
    HttpProbeSpec {
        url: url.to_owned(),
        conditions: conditions.iter().map(|c| c.to_string()).collect(),
        ..HttpProbeSpec::default()
    }
}

fn http_probe(spec: HttpProbeSpec) -> Arc<dyn HealthProbe> {
    ProbeSpec::Http(spec).build().unwrap()
}

#[tokio::test]
async fn http_probe_checks_status_json_body_and_sends_method_headers_body() {
    let server = Server::start(Arc::new(|_, request| {
        if request.path == "/health" {
            respond(200, r#"{"status":"UP","items":[{"name":"web"}]}"#)
        } else {
            respond(404, "no such page")
        }
    }))
    .await;
    let mut spec = http_spec(
        &server.url("/health"),
        &[
            "[STATUS] == 200",
            "[BODY].status == UP",
            "[BODY].items[0].name == web",
            "len([BODY].items) > 0",
        ],
    );
    spec.method = Some("post".into());
    spec.headers.insert("X-Probe".into(), "drp".into());
    spec.body = Some("ping".into());
    let result = http_probe(spec).check().await;
    assert!(result.healthy, "{}", result.message);
    assert_eq!(result.observation.status, Some(200));
    assert_eq!(result.observation.connected, Some(true));
    assert_eq!(result.observation.addresses, vec![server.addr.ip()]);
    assert!(
        result.conditions.iter().all(|c| c.ok),
        "{:?}",
        result.conditions
    );
    assert!(
        result
            .message
            .starts_with(&format!("HTTP 200 from {} after ", server.url("/health"))),
        "{}",
        result.message
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].headers["x-probe"], "drp");
    assert_eq!(&requests[0].body[..], b"ping");
}

#[tokio::test]
async fn http_probe_explains_what_failed() {
    let server = Server::start(Arc::new(|_, request| match request.path.as_str() {
        "/bad-gateway" => respond(502, "upstream connect error"),
        _ => respond(200, r#"{"status":"DOWN"}"#),
    }))
    .await;
    let url = server.url("/bad-gateway");
    let result = http_probe(http_spec(&url, &["[STATUS] == 200"]))
        .check()
        .await;
    assert!(!result.healthy);
    assert_eq!(
        result.observation.body.as_deref(),
        Some("upstream connect error")
    );
    let prefix = format!("HTTP 502 from {url} after ");
    assert!(result.message.starts_with(&prefix), "{}", result.message);
    assert!(
        result.message.ends_with(" ms; expected [STATUS] == 200"),
        "{}",
        result.message
    );

    let result = http_probe(http_spec(
        &server.url("/"),
        &["[STATUS] == 200", "[BODY].status == UP"],
    ))
    .check()
    .await;
    assert!(!result.healthy);
    assert!(
        result
            .message
            .ends_with("; expected [BODY].status == UP (got DOWN)"),
        "{}",
        result.message
    );
    assert_eq!(result.conditions.len(), 2);
    assert!(result.conditions[0].ok && !result.conditions[1].ok);

    // Without conditions, any status under 400 is healthy.
    assert!(!http_probe(http_spec(&url, &[])).check().await.healthy);
    assert!(
        http_probe(http_spec(&server.url("/"), &[]))
            .check()
            .await
            .healthy
    );
}

#[tokio::test]
async fn http_probe_reports_a_refused_connection_and_a_silent_server() {
    // A port nobody listens on: bound, then released.
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}/health");
    let result = http_probe(http_spec(&url, &["[STATUS] == 200"]))
        .check()
        .await;
    assert!(!result.healthy);
    assert_eq!(result.observation.connected, Some(false));
    assert!(
        result
            .message
            .starts_with(&format!("no HTTP response from {url} after ")),
        "{}",
        result.message
    );
    assert!(
        result.message.contains("Connection refused"),
        "{}",
        result.message
    );
    // ... and a probe that expects the service down is satisfied.
    assert!(
        http_probe(http_spec(&url, &["[CONNECTED] == false"]))
            .check()
            .await
            .healthy
    );

    // A server that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let mut spec = http_spec(&url, &[]);
    spec.timeout = Some(Duration::from_millis(300));
    let result = http_probe(spec).check().await;
    assert!(!result.healthy);
    assert_eq!(
        result.message,
        format!("no complete HTTP response from {url} within 300 ms")
    );
    assert_eq!(result.error.as_deref(), Some(result.message.as_str()));
    drop(listener);
}

#[tokio::test]
async fn https_verifies_certificates_by_default() {
    let pki = Pki::new(48);
    let server = Server::start_tls(Arc::new(|_, _| respond(200, "ok")), pki.acceptor()).await;
    let url = format!("https://127.0.0.1:{}/", server.addr.port());

    // Our CA is not among the system's roots: refused.
    let refused = http_probe(http_spec(&url, &["[STATUS] == 200"]))
        .check()
        .await;
    assert!(!refused.healthy);
    assert!(
        refused.message.contains("certificate"),
        "{}",
        refused.message
    );
    assert!(
        refused.message.contains("UnknownIssuer"),
        "{}",
        refused.message
    );
    assert_eq!(refused.observation.status, None);

    // Trusted through ca_file.
    let mut spec = http_spec(&url, &["[STATUS] == 200", "[CERTIFICATE_EXPIRATION] > 24h"]);
    spec.ca_file = Some(pki.ca_file.clone());
    let trusted = http_probe(spec).check().await;
    assert!(trusted.healthy, "{}", trusted.message);
    let certificate = trusted.observation.certificate.as_ref().unwrap();
    assert_eq!(certificate.not_after.as_second(), pki.not_after);
    assert_eq!(certificate.subject, "CN=localhost");

    // Or accepted unchecked, explicitly.
    let mut spec = http_spec(&url, &["[STATUS] == 200", "[CERTIFICATE_EXPIRATION] > 72h"]);
    spec.insecure = true;
    let insecure = http_probe(spec).check().await;
    assert!(!insecure.healthy, "the certificate expires in 48h");
    assert!(
        insecure
            .message
            .contains("expected [CERTIFICATE_EXPIRATION] > 72h (got 1d 23h)"),
        "{}",
        insecure.message
    );
}

fn tls_probe(port: u16, configure: impl FnOnce(&mut TlsProbeSpec)) -> Arc<dyn HealthProbe> {
    let mut spec = TlsProbeSpec {
        host: "127.0.0.1".into(),
        port: Some(port),
        ..TlsProbeSpec::default()
    };
    configure(&mut spec);
    ProbeSpec::Tls(spec).build().unwrap()
}

#[tokio::test]
async fn tls_probe_reports_expiry_and_trust() {
    let pki = Pki::new(48);
    let server = Server::start_tls(Arc::new(|_, _| respond(200, "ok")), pki.acceptor()).await;
    let port = server.addr.port();

    // Trusted, but the default condition wants more than 72h left.
    let ca_file = pki.ca_file.clone();
    let result = tls_probe(port, |s| s.ca_file = Some(ca_file)).check().await;
    assert!(!result.healthy);
    let certificate = result.observation.certificate.clone().unwrap();
    assert_eq!(certificate.not_after.as_second(), pki.not_after);
    assert!(
        certificate.expires_in_ms > 47 * 3_600_000 && certificate.expires_in_ms <= 48 * 3_600_000
    );
    assert!(
        result.message.starts_with(&format!(
            "127.0.0.1:{port} presented certificate CN=localhost expires "
        )),
        "{}",
        result.message
    );
    assert!(
        result
            .message
            .ends_with("; expected [CERTIFICATE_EXPIRATION] > 72h (got 1d 23h)"),
        "{}",
        result.message
    );

    let ca_file = pki.ca_file.clone();
    let result = tls_probe(port, |s| {
        s.ca_file = Some(ca_file);
        s.conditions = vec![
            "[CERTIFICATE_EXPIRATION] > 24h".into(),
            "[CONNECTED] == true".into(),
        ];
    })
    .check()
    .await;
    assert!(result.healthy, "{}", result.message);

    // Not trusted without the CA, and the message still gives the dates.
    let result = tls_probe(port, |s| {
        s.conditions = vec!["[CERTIFICATE_EXPIRATION] > 24h".into()]
    })
    .check()
    .await;
    assert!(!result.healthy);
    assert!(
        result
            .message
            .contains("presented an untrusted certificate CN=localhost expires"),
        "{}",
        result.message
    );
    assert!(
        result.message.contains("UnknownIssuer"),
        "{}",
        result.message
    );

    assert!(
        result
            .message
            .ends_with("(give its CA with ca_file, or set insecure to only check expiry)"),
        "{}",
        result.message
    );

    // insecure: expiry only.
    let result = tls_probe(port, |s| {
        s.insecure = true;
        s.conditions = vec!["[CERTIFICATE_EXPIRATION] > 24h".into()];
    })
    .check()
    .await;
    assert!(result.healthy, "{}", result.message);

    // The name must match the certificate, CA or not.
    let ca_file = pki.ca_file.clone();
    let result = tls_probe(port, |s| {
        s.ca_file = Some(ca_file);
        s.server_name = Some("acme.example".into());
        s.conditions = vec!["[CERTIFICATE_EXPIRATION] > 24h".into()];
    })
    .check()
    .await;
    assert!(!result.healthy);
    assert!(
        result
            .message
            .contains("certificate not valid for name \"acme.example\""),
        "{}",
        result.message
    );
    assert!(!result.message.contains("ca_file"), "{}", result.message);
}

#[tokio::test]
async fn tls_probe_on_a_plain_tcp_server_fails_the_handshake() {
    let server = Server::start(Arc::new(|_, _| respond(200, "plain"))).await;
    let result = tls_probe(server.addr.port(), |s| s.insecure = true)
        .check()
        .await;
    assert!(!result.healthy);
    assert!(
        result.message.starts_with(&format!(
            "TLS handshake with 127.0.0.1:{} failed after ",
            server.addr.port()
        )),
        "{}",
        result.message
    );
}

#[tokio::test]
async fn tcp_probe_connects_or_says_why_not() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = |conditions: &[&str]| {
        ProbeSpec::Tcp(TcpProbeSpec {
            host: "127.0.0.1".into(),
            port,
            conditions: conditions.iter().map(|c| c.to_string()).collect(),
            ..TcpProbeSpec::default()
        })
        .build()
        .unwrap()
    };
    let result = probe(&[]).check().await;
    assert!(result.healthy, "{}", result.message);
    assert_eq!(result.observation.connected, Some(true));
    assert!(
        result
            .message
            .starts_with(&format!("connected to 127.0.0.1:{port} after ")),
        "{}",
        result.message
    );

    drop(listener);
    let result = probe(&[]).check().await;
    assert!(!result.healthy);
    assert!(
        result
            .message
            .starts_with(&format!("cannot connect to 127.0.0.1:{port} after ")),
        "{}",
        result.message
    );
    assert!(
        result.message.ends_with("; expected [CONNECTED] == true"),
        "{}",
        result.message
    );
    assert!(probe(&["[CONNECTED] == false"]).check().await.healthy);
}

fn command_probe(
    command: &str,
    conditions: &[&str],
    timeout: Option<Duration>,
) -> Arc<dyn HealthProbe> {
    ProbeSpec::Command(CommandProbeSpec {
        command: command.into(),
        conditions: conditions.iter().map(|c| c.to_string()).collect(),
        timeout,
        ..CommandProbeSpec::default()
    })
    .build()
    .unwrap()
}

#[tokio::test]
async fn command_probe_checks_exit_status_and_output() {
    let result = command_probe(
        r#"echo '{"jobs": 3}'"#,
        &["[EXIT_CODE] == 0", "[BODY].jobs >= 3"],
        None,
    )
    .check()
    .await;
    assert!(result.healthy, "{}", result.message);
    assert_eq!(result.observation.exit_code, Some(0));

    let result = command_probe(
        "echo checking; echo 'disk /srv is full' >&2; exit 3",
        &[],
        None,
    )
    .check()
    .await;
    assert!(!result.healthy);
    assert_eq!(result.observation.exit_code, Some(3));
    assert!(
        result.message.starts_with(
            "`echo checking; echo 'disk /srv is full' >&2; exit 3` exited with status 3 after "
        ),
        "{}",
        result.message
    );
    assert!(
        result
            .message
            .ends_with("; expected [EXIT_CODE] == 0; stderr: disk /srv is full"),
        "{}",
        result.message
    );

    let result = command_probe("sleep 30", &[], Some(Duration::from_millis(200)))
        .check()
        .await;
    assert!(!result.healthy);
    assert_eq!(
        result.message,
        "`sleep 30` did not finish within 200 ms and was killed"
    );
}

#[tokio::test]
async fn dns_probe_resolves_through_the_system_resolver() {
    // What getaddrinfo gives for localhost on this machine, as getent reports it.
    let getent = std::process::Command::new("getent")
        .args(["ahosts", "localhost"])
        .output()
        .unwrap();
    assert!(getent.status.success(), "getent ahosts localhost failed");
    let mut expected: Vec<std::net::IpAddr> = String::from_utf8(getent.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    expected.sort();
    expected.dedup();
    assert!(!expected.is_empty());

    let probe = |expect: Vec<std::net::IpAddr>, name: &str| {
        ProbeSpec::Dns(DnsProbeSpec {
            name: name.into(),
            expect,
            timeout: Some(Duration::from_secs(20)),
            ..DnsProbeSpec::default()
        })
        .build()
        .unwrap()
    };
    let result = probe(expected.clone(), "localhost").check().await;
    assert!(result.healthy, "{}", result.message);
    let mut resolved = result.observation.addresses.clone();
    resolved.sort();
    assert_eq!(resolved, expected);

    let elsewhere: std::net::IpAddr = "192.0.2.10".parse().unwrap();
    let result = probe(vec![elsewhere], "localhost").check().await;
    assert!(!result.healthy);
    assert!(
        result
            .message
            .contains("; expected exactly 192.0.2.10 (missing 192.0.2.10; unexpected "),
        "{}",
        result.message
    );

    let result = probe(Vec::new(), "drp-test-no-such-name.invalid")
        .check()
        .await;
    assert!(!result.healthy);
    assert!(
        result
            .message
            .starts_with("cannot resolve drp-test-no-such-name.invalid"),
        "{}",
        result.message
    );
}

/// A server that fails its first `failures` requests, then answers 200.
async fn recovering_server(failures: usize) -> (Server, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let server = Server::start(Arc::new(move |n, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        if n < failures {
            respond(503, "starting")
        } else {
            respond(200, "ready")
        }
    }))
    .await;
    (server, served)
}

#[tokio::test]
async fn runner_waits_for_consecutive_successes() {
    let (server, served) = recovering_server(3).await;
    let options = RunnerOptions {
        interval: Duration::from_millis(10),
        failure_threshold: 2,
        success_threshold: 2,
    };
    let mut runner = ProbeRunner::new(
        http_probe(http_spec(&server.url("/"), &["[STATUS] == 200"])),
        options,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let outcome = runner.wait_until_healthy(deadline).await;
    assert!(outcome.reached);
    assert_eq!(outcome.state, HealthState::Healthy);
    // Three failures, then two successes: the second success flips the state.
    assert_eq!(outcome.attempts, 5);
    assert_eq!(served.load(Ordering::SeqCst), 5);
    assert!(outcome.last.unwrap().healthy);
}

#[tokio::test]
async fn runner_turns_unhealthy_after_the_failure_threshold() {
    let server = Server::start(Arc::new(|n, _| {
        if n == 0 {
            respond(200, "")
        } else {
            respond(500, "")
        }
    }))
    .await;
    let options = RunnerOptions {
        interval: Duration::from_millis(10),
        failure_threshold: 3,
        success_threshold: 1,
    };
    let mut runner = ProbeRunner::new(
        http_probe(http_spec(&server.url("/"), &["[STATUS] == 200"])),
        options,
    );
    let (_, state) = runner.check().await;
    assert_eq!(state, HealthState::Healthy);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let outcome = runner.wait_until_unhealthy(deadline).await;
    assert!(outcome.reached);
    assert_eq!(outcome.attempts, 3);
    assert!(outcome.last.unwrap().message.contains("HTTP 500"));
}

#[tokio::test]
async fn runner_gives_up_at_the_deadline_with_the_last_result() {
    let server = Server::start(Arc::new(|_, _| respond(500, "broken"))).await;
    let options = RunnerOptions {
        interval: Duration::from_millis(20),
        ..RunnerOptions::default()
    };
    let mut runner = ProbeRunner::new(
        http_probe(http_spec(&server.url("/"), &["[STATUS] == 200"])),
        options,
    );
    // One result before the wait, so there is a last result even if the machine is so slow
    // that no probe finishes within the (short) deadline.
    runner.check().await;
    let outcome = runner
        .wait_until_healthy(tokio::time::Instant::now() + Duration::from_millis(300))
        .await;
    assert!(!outcome.reached);
    assert!(outcome.last.unwrap().message.contains("HTTP 500"));
}

#[tokio::test]
async fn monitor_is_healthy_only_when_every_probe_is() {
    let (recovering, _) = recovering_server(1).await;
    let broken = Server::start(Arc::new(|_, _| respond(502, "bad gateway"))).await;
    let options = RunnerOptions {
        interval: Duration::from_millis(10),
        ..RunnerOptions::default()
    };
    let mut monitor = Monitor::new();
    monitor.add(
        http_probe(http_spec(&recovering.url("/"), &["[STATUS] == 200"])),
        options,
    );
    let outcome = monitor
        .wait_until_healthy(tokio::time::Instant::now() + Duration::from_secs(60))
        .await;
    assert!(outcome.reached);

    monitor.add(
        http_probe(http_spec(&broken.url("/"), &["[STATUS] == 200"])),
        options,
    );
    // Never healthy: this wait lasts until its deadline, long enough for a probe to finish.
    let outcome = monitor
        .wait_until_healthy(tokio::time::Instant::now() + Duration::from_secs(3))
        .await;
    assert!(!outcome.reached);
    let failures = outcome.failures();
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].starts_with(&format!("HTTP 502 from {}", broken.url("/"))),
        "{failures:?}"
    );
}

#[tokio::test]
async fn monitor_detects_the_first_probe_to_fail() {
    let healthy = Server::start(Arc::new(|_, _| respond(200, ""))).await;
    let failing = Server::start(Arc::new(|n, _| {
        if n < 2 {
            respond(200, "")
        } else {
            respond(503, "")
        }
    }))
    .await;
    let options = RunnerOptions {
        interval: Duration::from_millis(10),
        failure_threshold: 2,
        success_threshold: 1,
    };
    let mut monitor = Monitor::new();
    monitor.add(http_probe(http_spec(&healthy.url("/"), &[])), options);
    monitor.add(http_probe(http_spec(&failing.url("/"), &[])), options);
    let outcome = monitor
        .wait_until_any_unhealthy(tokio::time::Instant::now() + Duration::from_secs(60))
        .await;
    assert!(outcome.reached);
    assert!(!outcome.probes[0].reached);
    assert!(outcome.probes[1].reached);
    // Two successes, then two failures.
    assert_eq!(outcome.probes[1].attempts, 4);
}
