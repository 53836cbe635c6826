//! The alert receiver, fed over real HTTP: an Alertmanager webhook payload, other JSON,
//! malformed and oversized bodies; it keeps serving after each.

use std::time::Duration;

use drp_monitor::{AlertReceiver, ReceiverOptions};
use tokio::time::Instant;

/// What Alertmanager (webhook_config, payload version 4) POSTs for a group of two alerts.
const ALERTMANAGER: &str = r#"{
  "receiver": "drp",
  "status": "firing",
  "alerts": [
    {
      "status": "firing",
      "labels": {"alertname": "InstanceDown", "instance": "acme-web-1:9100", "job": "node", "severity": "critical"},
      "annotations": {"summary": "acme-web-1 is down", "description": "acme-web-1:9100 has been down for more than 1 minute."},
      "startsAt": "2026-11-29T10:15:00.123Z",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "http://prometheus.dc-a:9090/graph?g0.expr=up+%3D%3D+0",
      "fingerprint": "c2a6ab5b4a1f2a9e"
    },
    {
      "status": "resolved",
      "labels": {"alertname": "InstanceDown", "instance": "acme-db-1:9100", "job": "node", "severity": "critical"},
      "annotations": {"summary": "acme-db-1 is down"},
      "startsAt": "2026-11-29T10:14:30Z",
      "endsAt": "2026-11-29T10:16:00Z",
      "generatorURL": "http://prometheus.dc-a:9090/graph?g0.expr=up+%3D%3D+0",
      "fingerprint": "7be1d0c4e2b1f3a0"
    }
  ],
  "groupLabels": {"alertname": "InstanceDown"},
  "commonLabels": {"alertname": "InstanceDown", "job": "node", "severity": "critical"},
  "commonAnnotations": {},
  "externalURL": "http://alertmanager.dc-a:9093",
  "version": "4",
  "groupKey": "{}:{alertname=\"InstanceDown\"}",
  "truncatedAlerts": 0
}"#;

async fn receiver(max_body_bytes: usize) -> (AlertReceiver, String) {
    let receiver = AlertReceiver::bind(
        "127.0.0.1:0".parse().unwrap(),
        ReceiverOptions {
            max_body_bytes,
            ..ReceiverOptions::default()
        },
    )
    .await
    .unwrap();
    let base = format!("http://{}", receiver.local_addr());
    (receiver, base)
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

/// POSTs `body` with `Transfer-Encoding: chunked` (no Content-Length), in 1000-byte chunks;
/// returns the status.
async fn chunked_post(addr: std::net::SocketAddr, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = String::from(
        "POST /alertmanager HTTP/1.1\r\nHost: drp\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for chunk in body.as_bytes().chunks(1000) {
        request.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).unwrap()
        ));
    }
    request.push_str("0\r\n\r\n");
    // The server may answer and close before reading everything: ignore write errors.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {response:?}"))
}

#[tokio::test]
async fn alertmanager_payloads_give_one_alert_per_entry() {
    let (receiver, base) = receiver(1024 * 1024).await;
    let before = jiff::Timestamp::now();
    let (status, reply) = post(&format!("{base}/alertmanager"), ALERTMANAGER).await;
    assert_eq!(status, 200);
    assert_eq!(reply["received"], 2);

    let alerts = receiver.alerts();
    assert_eq!(alerts.len(), 2);
    let down = &alerts[0];
    assert_eq!(down.sequence, 1);
    assert_eq!(down.source, "alertmanager");
    assert_eq!(down.status.as_deref(), Some("firing"));
    assert!(down.is_firing());
    assert_eq!(down.label("alertname"), Some("InstanceDown"));
    assert_eq!(down.label("instance"), Some("acme-web-1:9100"));
    assert_eq!(down.annotations["summary"], "acme-web-1 is down");
    assert_eq!(
        down.starts_at,
        Some("2026-11-29T10:15:00.123Z".parse().unwrap())
    );
    assert!(down.received_at >= before);
    assert_eq!(down.body["fingerprint"], "c2a6ab5b4a1f2a9e");

    let resolved = &alerts[1];
    assert_eq!(resolved.sequence, 2);
    assert!(!resolved.is_firing());
    assert_eq!(resolved.label("instance"), Some("acme-db-1:9100"));
    assert_eq!(resolved.received_at, down.received_at);
}

#[tokio::test]
async fn any_json_is_one_alert_and_the_source_comes_from_query_header_or_path() {
    let (receiver, base) = receiver(1024 * 1024).await;
    let gatus = r#"{"endpoint":"acme-web","status":"unhealthy","description":"[STATUS] == 200"}"#;
    assert_eq!(
        post(&format!("{base}/hooks/any?source=gatus"), gatus)
            .await
            .0,
        200
    );
    let response = reqwest::Client::new()
        .post(format!("{base}/"))
        .header("x-drp-source", "statuscake")
        .body("[1, 2, 3]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        post(&format!("{base}/elastalert"), r#""disk full""#)
            .await
            .0,
        200
    );

    let alerts = receiver.alerts();
    let sources: Vec<&str> = alerts.iter().map(|a| a.source.as_str()).collect();
    assert_eq!(sources, ["gatus", "statuscake", "elastalert"]);
    assert!(
        alerts
            .iter()
            .all(|a| a.labels.is_empty() && a.status.is_none())
    );
    assert_eq!(
        alerts[0].body,
        serde_json::from_str::<serde_json::Value>(gatus).unwrap()
    );
    assert_eq!(alerts[1].body, serde_json::json!([1, 2, 3]));
    assert_eq!(alerts[2].body, "disk full");
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_and_it_keeps_serving() {
    let (receiver, base) = receiver(1024).await;
    let url = format!("{base}/alertmanager");

    let (status, reply) = post(&url, "{\"alerts\": [").await;
    assert_eq!(status, 400);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .starts_with("the body is not JSON"),
        "{reply}"
    );
    assert_eq!(post(&url, "").await.0, 400);
    assert_eq!(receiver.malformed_count(), 2);

    // Over the limit, announced by Content-Length...
    let big = format!("{{\"padding\": \"{}\"}}", "x".repeat(2048));
    let (status, reply) = post(&url, big.clone()).await;
    assert_eq!(status, 413);
    assert_eq!(reply["error"], "the body is over 1024 bytes");
    // ... or streamed without one.
    assert_eq!(chunked_post(receiver.local_addr(), &big).await, 413);
    assert_eq!(receiver.malformed_count(), 2, "too large is not malformed");

    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let wrong_method = client.get(&url).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");

    assert!(receiver.alerts().is_empty());
    let small = r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"InstanceDown"}}]}"#;
    let (status, _) = post(&url, small).await;
    assert_eq!(status, 200, "still serving");
    assert_eq!(receiver.alerts().len(), 1);
    assert_eq!(
        receiver.alerts()[0].label("alertname"),
        Some("InstanceDown")
    );
}

#[tokio::test]
async fn wait_for_sees_alerts_already_there_and_alerts_to_come() {
    let (receiver, base) = receiver(1024 * 1024).await;
    let url = format!("{base}/alertmanager");
    post(&url, ALERTMANAGER).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = receiver
        .wait_for(|a| a.label("instance") == Some("acme-db-1:9100"), deadline)
        .await
        .unwrap();
    assert_eq!(found.sequence, 2);

    // wait_for subscribes before the POST goes out (join! polls it first).
    let mut subscription = receiver.subscribe();
    let gatus_url = format!("{base}/?source=gatus");
    let (found, (status, _)) = tokio::join!(
        receiver.wait_for(|a| a.source == "gatus", deadline),
        post(&gatus_url, r#"{"status":"down"}"#),
    );
    assert_eq!(status, 200);
    let found = found.unwrap();
    assert_eq!(found.sequence, 3);
    assert_eq!(subscription.recv().await.unwrap(), found);

    // Nothing matches: None at the deadline.
    let nothing = receiver
        .wait_for(
            |a| a.source == "nobody",
            Instant::now() + Duration::from_millis(100),
        )
        .await;
    assert!(nothing.is_none());

    receiver.shutdown().await;
    assert!(
        reqwest::Client::new()
            .post(&url)
            .body("{}")
            .send()
            .await
            .is_err()
    );
}
